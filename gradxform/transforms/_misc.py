"""Sign, optimistic, Polyak and other rules: `normalize_by_update_norm`, `noisy_sgd`,
`scale_gradient`, and the families of `_sign`, `_optimistic`, `_polyak_sgd`, `_dog` and
`_centralize`, re-exported."""

from __future__ import annotations

import warnings
from typing import Any

import jax

from gradxform import _checks, _hyper, _linalg, _tree
from gradxform._base import EmptyState, GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._centralize import centralize
from gradxform.transforms._clipping import _scale2_rule
from gradxform.transforms._dog import (
    ScaleByDistanceOverGradientsState,
    scale_by_distance_over_gradients,
)
from gradxform.transforms._optimistic import (
    ScaleByOptimisticGradientState,
    optimistic_adam,
    optimistic_adam_v2,
    optimistic_gradient_descent,
    scale_by_optimistic_gradient,
)
from gradxform.transforms._polyak_sgd import polyak_sgd, scale_by_polyak
from gradxform.transforms._regularization import add_noise
from gradxform.transforms._scale import scale_by_learning_rate
from gradxform.transforms._sign import scale_by_sign, sign_sgd, signum

__all__ = [
    "ScaleByDistanceOverGradientsState",
    "ScaleByOptimisticGradientState",
    "centralize",
    "noisy_sgd",
    "normalize_by_update_norm",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "scale_by_distance_over_gradients",
    "scale_by_optimistic_gradient",
    "scale_by_polyak",
    "scale_by_sign",
    "scale_gradient",
    "sign_sgd",
    "signum",
]


@_tree.leaf_rule
def _times(g: jax.Array, factor: jax.Array) -> tuple[jax.Array]:
    return ((_tree.wide(g) * factor.astype(_tree.compute_dtype(g.dtype))).astype(g.dtype),)


@_hyper.declare(scale_factor=_hyper.number(draw=(-2.0, 2.0)), eps=_hyper.EPS._replace(draw=(1e-8, 1e-4)))
def normalize_by_update_norm(scale_factor=1.0, eps=1e-6) -> GradientTransformation:
    r"""Scales the updates to (about) a fixed norm: the update divided by its global norm.

    .. math:: u_t = s \frac{g_t}{\|g_t\| + \epsilon}

    with :math:`\|g_t\|` the norm of the whole tree, accumulated in at least float32.
    All-zero updates stay zero, even with :math:`\epsilon = 0` (optax gives NaN).

    Args:
        scale_factor: :math:`s`, any real number (``-1.0`` descends).
        eps: :math:`\epsilon \ge 0`.

    Returns:
        A stateless `GradientTransformation` (state `EmptyState`).

    Raises:
        ValueError: ``eps < 0`` or a NaN ``scale_factor``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.normalize_by_update_norm(scale_factor=-1.0, eps=0.0)
        >>> tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))[0].tolist()
        [-0.6000000238418579, -0.800000011920929]

    References:
        The normalized gradient method; see e.g. Hazan, Levy and Shalev-Shwartz,
        "Beyond Convexity: Stochastic Quasi-Convex Optimization", NeurIPS 2015, Algorithm 1.
    """
    fn = "normalize_by_update_norm"

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, fn)
        # The norm as value * scale (scale 2**k where the plain sum of squares overflowed: finite
        # gradients of 3e38 are normalized, not zeroed); s / (norm + eps) applied as two factors.
        # Where it overflowed, eps is below the norm's last bit.
        norm = _linalg._tree_norm_parts(updates)
        denom = jax.numpy.where(norm.scale == 1, norm.value + _tree.hp(eps, norm.value.dtype), norm.value)
        safe = jax.numpy.where(denom > 0, denom, jax.numpy.ones_like(denom))
        a = jax.numpy.where(denom > 0, _tree.hp(scale_factor, denom.dtype) / safe, jax.numpy.zeros_like(denom))
        b = 1 / norm.scale
        (updates,) = _tree.apply_rule(_scale2_rule, updates, scalars=lambda dtype: (a.astype(dtype), b.astype(dtype)))
        return updates, state

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    learning_rate=_hyper.LR,
    eta=_hyper.NONNEG._replace(draw=(0.0, 0.1)),
    gamma=_hyper.NONNEG._replace(draw=(0.0, 1.0)),
    key=_hyper.integer(0, 2**31 - 1, source="a seed (not validated)")._replace(validated=False),
)
def noisy_sgd(
    learning_rate: ScalarOrSchedule,
    eta=0.01,
    gamma=0.55,
    key: Any | None = None,
    *,
    seed: int | None = None,
) -> GradientTransformation:
    r"""SGD with annealed Gaussian gradient noise: ``chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))``.

    .. math::
        \theta_{t+1} = \theta_t - \eta_t\left(g_t + \mathcal N\!\left(0, \frac{\eta}{(1 + t)^{\gamma}}\right)\right),
        \quad t = 0, 1, \dots

    (Neelakantan et al., 2015, Eq. (1), with their :math:`\eta` and :math:`\gamma`);
    see `add_noise`.

    Args:
        learning_rate: :math:`\eta_t`, a number or a schedule.
        eta: the initial variance :math:`\eta \ge 0`.
        gamma: the annealing exponent :math:`\gamma \ge 0`.
        key: a PRNG key or an int seed (required).
        seed: deprecated spelling of an int ``key`` (warns).

    Raises:
        ValueError: ``eta`` or ``gamma`` negative, or both ``key`` and ``seed`` given.
        TypeError: no ``key`` (optax 0.2.8 warns and uses 0).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.noisy_sgd(0.1, eta=0.0, key=0)  # no noise: plain SGD
        >>> opt.update(jnp.array([1.0, -2.0]), opt.init(jnp.zeros(2)))[0].tolist()
        [-0.10000000149011612, 0.20000000298023224]

    References:
        Neelakantan et al., "Adding Gradient Noise Improves Learning for Very Deep
        Networks", 2015, Eq. (1).
    """
    if seed is not None:
        warnings.warn("noisy_sgd: `seed` is deprecated, use `key`.", DeprecationWarning, stacklevel=3)
        if key is not None:
            raise ValueError("noisy_sgd: give only one of `seed` and `key`.")
        key = seed
    if key is None:
        raise TypeError("noisy_sgd: `key` must be a PRNG key or an int seed, got None.")
    return chain(add_noise(eta, gamma, key), scale_by_learning_rate(learning_rate))


@jax.custom_vjp
def _scale_gradient(inputs: Any, scale: Any) -> Any:
    del scale  # read by the backward pass only
    return inputs


def _scale_gradient_fwd(inputs: Any, scale: Any) -> tuple[Any, Any]:
    return inputs, scale


def _scale_gradient_bwd(scale: Any, cotangent: Any) -> tuple[Any, None]:
    def leaf(c):
        return (_tree.wide(c) * jax.numpy.asarray(scale).astype(_tree.compute_dtype(c.dtype))).astype(c.dtype)

    return jax.tree_util.tree_map(leaf, cotangent), None


_scale_gradient.defvjp(_scale_gradient_fwd, _scale_gradient_bwd)


def _is_concrete_number(value: Any, target: float) -> bool:
    if isinstance(value, jax.core.Tracer):
        return False
    try:
        return bool(jax.numpy.asarray(value) == target) if jax.numpy.ndim(value) == 0 else False
    except Exception:  # noqa: BLE001 - anything unusual takes the general path
        return False


def scale_gradient(inputs: Any, scale: Any) -> Any:
    r"""The identity on `inputs`, whose gradient is multiplied by `scale` in the backward pass.

    A function on values (not a transformation): ``y = scale_gradient(x, s)`` gives
    :math:`y = x` and :math:`\partial L / \partial x = s\, \partial L / \partial y`.
    ``scale=1`` returns `inputs` itself and ``scale=0`` is ``lax.stop_gradient``;
    a traced `scale` is accepted (optax's comparison with 1 fails on one).

    Args:
        inputs: an array or a tree of arrays.
        scale: the factor applied to the cotangent (a number or a scalar array).

    Returns:
        `inputs`, with the scaled backward pass.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda x: jnp.sum(gx.scale_gradient(x, 0.5) ** 2)
        >>> jax.grad(f)(jnp.array([1.0, 2.0])).tolist()  # 0.5 * 2x
        [1.0, 2.0]
    """
    if _is_concrete_number(scale, 1.0):
        return inputs
    if _is_concrete_number(scale, 0.0):
        return jax.lax.stop_gradient(inputs)
    return _scale_gradient(inputs, scale)
