"""SM3 (Anil et al., 2019): `scale_by_sm3` and `sm3`, memory-efficient adaptive steps."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleBySM3State(NamedTuple):
    mu: Any  # per leaf, a list of accumulators: one vector per axis (rank >= 2), else [one like the leaf]
    nu: Any  # the momentum, like params


class _SM3Scalars(NamedTuple):
    b1: _tree.Decay
    b2: jax.Array  # weight of the previous accumulator
    fresh: jax.Array  # weight of g^2: 1 - b2, or 1 when b2 == 1 (the paper's sum)
    eps: jax.Array


def _expanded(v: jax.Array, ndim: int, axis: int) -> jax.Array:
    """A vector along `axis` of a rank-`ndim` array: shape ``[1, .., n, .., 1]``."""
    shape = [1] * ndim
    shape[axis] = v.shape[0]
    return v.reshape(shape)


@_tree.leaf_rule
def _sm3_rule(g, mu, nu, s: _SM3Scalars):
    x = g.astype(s.eps.dtype)
    if x.ndim < 2:  # the cover by singletons: one accumulator per entry (a scalar is one entry)
        previous = mu[0].astype(x.dtype)
    else:  # the cover by the slices along each axis
        previous = functools.reduce(
            jnp.minimum, [_expanded(m.astype(x.dtype), x.ndim, a) for a, m in enumerate(mu)]
        )
    acc = s.fresh * _tree.abs_sq(x) + s.b2 * previous
    positive = acc > 0
    g_hat = jnp.where(positive, x * jax.lax.rsqrt(jnp.where(positive, acc, 1) + s.eps), 0)
    m = _tree.update_moment(g_hat, nu, s.b1)
    if x.ndim < 2:
        new_mu = [acc.astype(mu[0].dtype)]
    else:
        new_mu = [
            jnp.max(acc, axis=tuple(k for k in range(x.ndim) if k != a), initial=0.0).astype(mu[a].dtype)
            for a in range(x.ndim)
        ]
    return m.astype(g.dtype), new_mu, m.astype(nu.dtype)


@_hyper.declare(
    b1=_hyper.DECAY,
    b2=_hyper.number(0.0, 1.0, draw=(0.9, 1.0), source="Anil et al. (2019): 1 is SM3-II's sum"),
    eps=_hyper.EPS,
)
def scale_by_sm3(b1=0.9, b2=1.0, eps=1e-8) -> GradientTransformation:
    r"""SM3-II's adaptive scaling with momentum (Anil et al., 2019, Algorithm SM3-II).

    A leaf of rank :math:`k \ge 2` keeps one accumulator per index of each axis,
    :math:`\mu^{(a)}` (a vector of the axis' length: :math:`\sum_a n_a` numbers for
    :math:`\prod_a n_a` parameters); a leaf of rank :math:`\le 1` keeps one per entry.

    .. math::
        \nu'_t(i) = \beta_2 \min_a \mu^{(a)}_{t-1}(i_a) + (1 - \beta_2)\, g_t(i)^2, \qquad
        \mu^{(a)}_t(j) = \max_{i:\, i_a = j} \nu'_t(i), \\
        \hat g_t = \frac{g_t}{\sqrt{\nu'_t + \epsilon}} \ (0 \text{ where } \nu'_t = 0), \qquad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1)\hat g_t, \qquad u_t = m_t

    with :math:`1 - \beta_2` read as 1 when :math:`\beta_2 = 1` (the paper's running sum).

    Note:
        optax 0.2.8 fails on a scalar (rank-0) leaf (``IndexError``: it keeps no
        accumulator for it); here a scalar keeps one accumulator, ``mu = [array(0.)]``.
        The accumulators are float32 (float64 for float64 params), as optax's, whatever
        the params' dtype: with :math:`\beta_2 = 1` they grow without bound.

    Args:
        b1: the momentum :math:`\beta_1 \in [0, 1)`.
        b2: :math:`\beta_2 \in [0, 1]`; 1 is the paper's sum of squares.
        eps: :math:`\epsilon \ge 0`, added under the root.

    Returns:
        A `GradientTransformation` with state `ScaleBySM3State`.

    Raises:
        ValueError: ``b1`` outside [0, 1), ``b2`` outside [0, 1], a negative ``eps``;
            at init, complex params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_sm3(b1=0.0)
        >>> g = jnp.array([[1.0, 2.0], [0.0, -2.0]])
        >>> u, state = tx.update(g, tx.init(g))
        >>> [round(x, 4) for x in u.ravel().tolist()]  # g / sqrt(g^2 + eps) on the first step
        [1.0, 1.0, 0.0, -1.0]
        >>> [m.tolist() for m in state.mu]  # the row and column maxima of g^2
        [[4.0, 4.0], [1.0, 4.0]]

    References:
        Anil, Gupta, Koren & Singer, "Memory-Efficient Adaptive Optimization", NeurIPS 2019,
        Algorithm SM3-II.
    """
    fn = "scale_by_sm3"

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays

        def accumulators(p):
            if jnp.iscomplexobj(p):
                raise ValueError(f"{fn}: complex params are not supported; got a leaf of dtype {p.dtype}.")
            dtype = _tree.real_dtype(p.dtype)
            if p.ndim < 2:
                return [jnp.zeros(p.shape, dtype)]
            return [jnp.zeros((n,), dtype) for n in p.shape]

        mu = jax.tree_util.tree_map(accumulators, params)
        return ScaleBySM3State(mu=mu, nu=_tree.zeros_like(params))

    def scalars(dtype):
        b2_ = _tree.hp(b2, dtype)
        if isinstance(b2, (int, float)) and not isinstance(b2, bool):
            fresh = _tree.hp(1.0 if b2 == 1 else 1.0 - float(b2), dtype)
        else:
            fresh = jnp.where(b2_ == 1, 1, 1 - b2_)
        return _SM3Scalars(_tree.decay(b1, dtype), b2_, fresh, _tree.hp(eps, dtype))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        updates = _tree.arrays(updates)  # Python floats: arrays
        _checks.check_update(fn, state, ScaleBySM3State, updates, "nu")
        updates, mu, nu = _tree.apply_rule(_sm3_rule, updates, state.mu, state.nu, scalars=scalars)
        return updates, ScaleBySM3State(mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, momentum=_hyper.DECAY)
def sm3(learning_rate: ScalarOrSchedule, momentum=0.9) -> GradientTransformation:
    """SM3: ``chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))``; see `scale_by_sm3`.

    optax builds ``scale(-learning_rate)``: the same state (`EmptyState`) for a number;
    a schedule is accepted here too.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.sm3(0.1)
        >>> params = {'w': jnp.ones((2, 2)), 's': jnp.array(1.0)}  # a scalar leaf works
        >>> updates, _ = opt.update({'w': jnp.ones((2, 2)), 's': jnp.array(2.0)}, opt.init(params))
        >>> [round(x, 4) for x in (updates['w'][0, 0].item(), updates['s'].item())]
        [-0.01, -0.01]
    """
    return chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))
