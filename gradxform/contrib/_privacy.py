"""DP-SGD (Abadi et al., 2016): `differentially_private_aggregate` and `dpsgd`."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, identity
from gradxform._combine import chain
from gradxform.transforms._momentum import trace
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = ["DifferentiallyPrivateAggregateState", "differentially_private_aggregate", "dpsgd"]


class DifferentiallyPrivateAggregateState(NamedTuple):
    rng_key: jax.Array  # the next step's PRNG key as raw key data (uint32[2] for threefry), as PRNGKey


class _DPScalars(NamedTuple):
    factor: jax.Array  # shape (B,), real: each example's clipping factor min(1, C / ||g_i||)
    std: jax.Array  # shape (), real: sigma * C
    batch: jax.Array  # shape (), real: B


@_tree.leaf_rule
def _aggregate_rule(g, key, s: _DPScalars):
    cdt = _tree.compute_dtype(g.dtype)
    x = g.astype(cdt)
    factor = s.factor.reshape((-1,) + (1,) * (g.ndim - 1)).astype(cdt)
    total = jnp.sum(factor * x, axis=0)
    # Drawn in float32 (complex64) whatever the leaf's dtype: the same key gives the
    # same noise to a float64 run as to a float32 one.
    draw = jnp.complex64 if jnp.issubdtype(cdt, jnp.complexfloating) else jnp.float32
    noise = jax.random.normal(key, g.shape[1:], draw).astype(cdt)
    return (((total + s.std.astype(cdt) * noise) / s.batch.astype(cdt)).astype(g.dtype),)


def _canonical_key(key: Any, fn: str) -> jax.Array:
    """`key` as a typed PRNG key: an int seed, a ``jax.random.key`` or a raw ``PRNGKey``."""
    if isinstance(key, (int, np.integer)) and not isinstance(key, bool):
        return jax.random.key(int(key))
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)
    raise TypeError(
        f"{fn}: `key` must be an int seed or a PRNG key (jax.random.key or jax.random.PRNGKey); "
        f"got {type(key).__name__}: {key!r}."
    )


def _noise_std(l2_norm_clip: Any, noise_multiplier: Any, dtype: Any) -> jax.Array:
    """:math:`\\sigma C` in `dtype`, formed in double precision from Python numbers."""
    if _tree._python_number(l2_norm_clip) and _tree._python_number(noise_multiplier):
        return _tree.hp(float(l2_norm_clip) * float(noise_multiplier), dtype)
    return _tree.hp(l2_norm_clip, dtype) * _tree.hp(noise_multiplier, dtype)


def _batch_size(leaves: list, treedef: Any, fn: str) -> int:
    """The common length of the leading (example) axis of every leaf, or a ValueError naming the leaf."""
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(
        treedef.unflatten([0] * len(leaves)))[0]]
    batch = None
    for path, g in zip(paths, leaves):
        if g is None:
            continue
        if g.ndim == 0:
            raise ValueError(
                f"{fn}: expects per-example gradients with a leading batch axis, but the leaf at "
                f"updates{path} is a scalar. Compute them with jax.vmap(jax.grad(loss), in_axes=(None, 0))."
            )
        if batch is None:
            batch, first = g.shape[0], path
        elif g.shape[0] != batch:
            raise ValueError(
                f"{fn}: every leaf needs the same leading batch axis; updates{first} has {batch} "
                f"examples, updates{path} has shape {tuple(g.shape)}."
            )
    return batch or 0


_DP = {
    "l2_norm_clip": _hyper.NONNEG._replace(draw=(0.1, 10.0), source="Abadi et al. (2016): clipping bound C >= 0"),
    "noise_multiplier": _hyper.NONNEG._replace(draw=(0.0, 2.0), source="Abadi et al. (2016): sigma >= 0"),
}
_SEED = _hyper.integer(0, 2**31 - 1, source="a seed (not validated)")._replace(validated=False)


@_hyper.declare(**_DP, key=_SEED._replace(optional=True), seed=_SEED._replace(optional=True))
def differentially_private_aggregate(
    l2_norm_clip, noise_multiplier, key=None, *, seed: int | None = None
) -> GradientTransformation:
    r"""Clips each example's gradient, sums them, adds Gaussian noise and averages (DP-SGD).

    The updates are per-example gradients :math:`g_i`, :math:`i = 1 \dots B`, stacked
    on a leading axis of every leaf; the norm of an example is taken over all its leaves:

    .. math::
        \bar g_i = g_i \min\left(1, \frac{C}{\|g_i\|_2}\right), \qquad
        u = \frac{1}{B}\left(\sum_{i=1}^{B} \bar g_i + \mathcal N(0, \sigma^2 C^2 I)\right)

    The update has the params' shapes (the batch axis is summed out), so this must
    be the first transformation of a chain. The noise of each step is drawn from
    ``keys = jax.random.split(rng_key, n_leaves + 1)``: ``keys[0]`` is the next
    step's key and ``keys[1 + j]`` draws leaf ``j``'s noise, a float32 (complex64)
    standard normal whatever the leaf's dtype (optax's scheme: the same key gives
    optax's noise bit for bit for float32 leaves). The state keeps the key as raw
    key data (``jax.random.key_data``, uint32[2] for threefry) where optax keeps a
    typed key.

    Args:
        l2_norm_clip: :math:`C \ge 0`, the largest L2 norm of an example's gradient.
        noise_multiplier: :math:`\sigma \ge 0`, the noise's standard deviation
            relative to :math:`C` (0: no noise, only clipping).
        key: an int seed or a PRNG key (``jax.random.key`` or ``PRNGKey``); None
            warns and uses seed 0, as optax does.
        seed: deprecated spelling of an int ``key`` (optax's).

    Returns:
        A `GradientTransformation` with state `DifferentiallyPrivateAggregateState`.

    Raises:
        ValueError: a negative ``l2_norm_clip`` or ``noise_multiplier``; in
            ``update``, a scalar leaf or leaves with different batch sizes.
        TypeError: a ``key`` that is neither an int nor a PRNG key.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.differentially_private_aggregate(1.0, 0.0, key=0)
        >>> per_example = jnp.array([[3.0, 4.0], [0.3, 0.4]])  # norms 5 and 0.5
        >>> u, _ = tx.update(per_example, tx.init(jnp.zeros(2)))
        >>> u.tolist()  # ([0.6, 0.8] + [0.3, 0.4]) / 2
        [0.45000001788139343, 0.6000000238418579]

    References:
        Abadi et al., "Deep Learning with Differential Privacy", CCS 2016, Algorithm 1
        (per-example clipping, Gaussian noise of std :math:`\sigma C` on the sum, average).
    """
    fn = "differentially_private_aggregate"
    if key is None:
        if seed is None:
            warnings.warn(f"{fn}: no `key` given; using seed 0. Pass key= explicitly.", DeprecationWarning,
                          stacklevel=2)
        key = 0 if seed is None else seed
    typed_key = _canonical_key(key, fn)
    impl = jax.random.key_impl(typed_key)

    def init_fn(params):
        del params
        return DifferentiallyPrivateAggregateState(rng_key=jnp.array(jax.random.key_data(typed_key), copy=True))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = _tree.as_updates(updates)  # Python floats and integer gradients: float arrays
        _checks.check_state_type(state, DifferentiallyPrivateAggregateState, fn)
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_tree.is_none)
        batch = _batch_size(leaves, treedef, fn)
        present = [g for g in leaves if g is not None]
        keys = jax.random.split(jax.random.wrap_key_data(state.rng_key, impl=impl), len(present) + 1)
        leaf_keys, j = [], 1
        for g in leaves:
            leaf_keys.append(None if g is None else keys[j])
            j += g is not None
        acc = _tree.accumulation_dtype(present)
        sq = sum((jnp.sum(_tree.abs_sq(_tree.wide(g)).reshape(batch, -1), axis=1).astype(acc) for g in present),
                 jnp.zeros((batch,), acc))
        norm = jnp.sqrt(sq)
        clip = _tree.hp(l2_norm_clip, acc)
        factor = jnp.where(norm > clip, clip / jnp.where(norm > clip, norm, 1), jnp.ones_like(norm))

        def scalars(dtype):
            real = _tree.real_dtype(dtype)
            return _DPScalars(factor.astype(real), _noise_std(l2_norm_clip, noise_multiplier, real),
                              _tree.hp(batch, real))

        (out,) = _tree.apply_rule(_aggregate_rule, updates, inputs=(treedef.unflatten(leaf_keys),),
                                  scalars=scalars)
        return out, DifferentiallyPrivateAggregateState(rng_key=jax.random.key_data(keys[0]))

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    _hyper.NESTEROV_NEEDS_MOMENTUM,
    learning_rate=_hyper.LR,
    **_DP,
    seed=_SEED,
    momentum=_hyper.MOMENTUM,
    nesterov=_hyper.BOOL,
)
def dpsgd(
    learning_rate: ScalarOrSchedule,
    l2_norm_clip,
    noise_multiplier,
    seed: int,
    momentum=None,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""DP-SGD: ``chain(differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed), trace(momentum, nesterov) or identity(), scale_by_learning_rate(learning_rate))``.

    The step is :math:`-\eta_t u_t` with :math:`u_t` the clipped, noised average of
    the per-example gradients (see `differentially_private_aggregate`), through
    momentum when ``momentum`` is given. The updates must be per-example gradients
    with a leading batch axis (``jax.vmap(jax.grad(loss), in_axes=(None, 0))``).
    Gradient accumulation (`MultiSteps`, `apply_every`) does not compose with it.

    Raises:
        ValueError: as `differentially_private_aggregate`, a non-finite
            ``learning_rate``, ``momentum`` outside [0, 1), or ``nesterov=True``
            without ``momentum``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.dpsgd(0.1, l2_norm_clip=1.0, noise_multiplier=0.0, seed=0)
        >>> u, _ = opt.update(jnp.array([[3.0, 4.0], [0.3, 0.4]]), opt.init(jnp.zeros(2)))
        >>> u.tolist()
        [-0.04500000178813934, -0.06000000238418579]

    References:
        Abadi et al., "Deep Learning with Differential Privacy", CCS 2016, Algorithm 1.
    """
    return chain(
        differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed),
        trace(momentum, nesterov) if momentum is not None else identity(),
        scale_by_learning_rate(learning_rate),
    )
