"""Polyak step sizes (Loizou et al., 2021): `scale_by_polyak`, `polyak_sgd`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import EmptyState, GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._momentum import sgd

# optax's guard: a squared norm (plus eps) at most float64's machine epsilon gives a zero step.
_TINY = float(np.finfo(np.float64).eps)


@_tree.leaf_rule
def _times(g: jax.Array, step: jax.Array) -> tuple[jax.Array]:
    return ((g.astype(_tree.compute_dtype(g.dtype)) * step.astype(_tree.compute_dtype(g.dtype))).astype(g.dtype),)


_POLYAK = {
    "f_min": _hyper.number(draw=(-1.0, 0.0), source="a lower bound f* of the objective"),
    "max_learning_rate": _hyper.POSITIVE._replace(draw=(0.1, 10.0), source="Loizou et al. (2021): gamma_b > 0"),
    "eps": _hyper.EPS,
    "variant": _hyper.choice("sps", "sps+"),
}


@_hyper.declare(**_POLYAK)
def scale_by_polyak(f_min=0.0, max_learning_rate=1.0, eps=0.0, variant: str = "sps") -> GradientTransformation:
    r"""Scales the updates by the capped Polyak step size (SPS_max, Loizou et al., 2021).

    .. math::
        \gamma_t = \min\left(\frac{f(\theta_t) - f^\star}{\|g_t\|^2 + \epsilon},\ \gamma_b\right),
        \qquad u_t = \gamma_t\, g_t

    with :math:`\|g_t\|` the norm of the whole tree and :math:`\gamma_t = 0` where
    :math:`\|g_t\|^2 + \epsilon \le 2^{-52}` (no division by zero). ``variant="sps+"``
    uses :math:`\max(f(\theta_t) - f^\star, 0)` (Garrigos et al., 2023), so a value
    below :math:`f^\star` never ascends. ``update`` takes the objective's value:
    ``update(updates, state, params, value=f(params))``.

    Args:
        f_min: :math:`f^\star`, a lower bound on the objective (a real number).
        max_learning_rate: :math:`\gamma_b > 0`, the cap of the step size.
        eps: :math:`\epsilon \ge 0`, added to the squared norm.
        variant: ``"sps"`` or ``"sps+"``.

    Returns:
        A `GradientTransformation` with state `EmptyState`; its update needs ``value=``.

    Raises:
        ValueError: ``max_learning_rate <= 0``, ``eps < 0`` or an unknown ``variant``.
        TypeError: ``update`` called without ``value``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_polyak()
        >>> g = jnp.array([3.0, 4.0])  # |g|^2 = 25
        >>> tx.update(g, tx.init(g), value=jnp.array(5.0))[0].tolist()  # 5 / 25 * g
        [0.6000000238418579, 0.800000011920929]

    References:
        Loizou et al., "Stochastic Polyak Step-size for SGD: An Adaptive Learning Rate for
        Fast Convergence", AISTATS 2021, Eq. (5) (SPS_max, with c = 1).
        Garrigos et al., "Function Value Learning: Adaptive Learning Rates Based on the
        Polyak Stepsize and Function Splitting in ERM", 2023 (SPS+).
    """
    fn = "scale_by_polyak"

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, *, value: Any = None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, fn)
        if value is None:
            raise TypeError(f"{fn}.update needs the objective's value: call update(updates, state, params, value=f).")
        leaves = [x for x in jax.tree_util.tree_leaves(updates) if x is not None]
        acc = _tree.accumulation_dtype(leaves)
        sq = sum((jnp.sum(_tree.abs_sq(_tree.wide(x))).astype(acc) for x in leaves), jnp.zeros((), acc))
        gap = _tree.hp(value, acc) - _tree.hp(f_min, acc)
        if variant == "sps+":
            gap = jnp.maximum(gap, 0)
        denom = sq + _tree.hp(eps, acc)
        safe = jnp.where(denom <= _TINY, jnp.ones_like(denom), denom)
        step = jnp.where(denom <= _TINY, jnp.zeros_like(denom), jnp.minimum(gap / safe, _tree.hp(max_learning_rate, acc)))
        (updates,) = _tree.apply_rule(_times, updates, scalars=lambda dtype: step)
        return updates, state

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(scaling=_hyper.LR, **_POLYAK)
def polyak_sgd(
    max_learning_rate=1.0, scaling: ScalarOrSchedule = 1.0, f_min=0.0, eps=0.0, variant: str = "sps"
) -> GradientTransformation:
    r"""SGD with Polyak's step size: ``chain(sgd(learning_rate=scaling), scale_by_polyak(f_min, max_learning_rate, eps, variant))``.

    With :math:`c` the scaling, the Polyak step is computed on the scaled gradient
    :math:`-c\,g_t`, so

    .. math::
        \theta_{t+1} = \theta_t - \min\left(\frac{f(\theta_t) - f^\star}{c\,\|g_t\|^2 + \epsilon / c},\
        c\,\gamma_b\right) g_t

    which for :math:`\epsilon = 0` is SPS_max of Loizou et al. (2021), Eq. (5), with
    constant :math:`c` and cap :math:`c\gamma_b`. ``update`` takes ``value=``; see
    `scale_by_polyak`.

    Args:
        max_learning_rate: :math:`\gamma_b > 0`.
        scaling: :math:`c`, a number or a schedule.
        f_min: :math:`f^\star`.
        eps: :math:`\epsilon \ge 0`.
        variant: ``"sps"`` or ``"sps+"``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.polyak_sgd()
        >>> params = jnp.array([1.0, 2.0])
        >>> f = lambda p: jnp.sum(p ** 2)  # f* = 0; gradient 2p, |g|^2 = 20, f = 5
        >>> u, _ = opt.update(2 * params, opt.init(params), params, value=f(params))
        >>> u.tolist()  # -5 / 20 * g: the minimizer of this quadratic
        [-0.5, -1.0]

    References:
        Loizou et al., "Stochastic Polyak Step-size for SGD: An Adaptive Learning Rate for
        Fast Convergence", AISTATS 2021, Eq. (5).
    """
    return chain(
        sgd(learning_rate=scaling),
        scale_by_polyak(f_min=f_min, max_learning_rate=max_learning_rate, eps=eps, variant=variant),
    )
