"""Polyak(-Ruppert) averaging of the parameters: an exponential (or uniform) moving average of the iterates."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation
from gradxform._combine import apply_updates, call_update, check_transform


class PolyakAveragingState(NamedTuple):
    count: jax.Array  # shape (), int32: number of iterates averaged so far
    ema: Any  # raw average m_t of the params, like params, in at least float32 (or accumulator_dtype)
    correction: jax.Array  # shape (), float32: 1 - decay**count if debiasing, else 1
    inner_state: Any  # the wrapped transformation's state


@_hyper.declare(decay=_hyper.DECAY._replace(optional=True), debias=_hyper.BOOL)
def polyak_averaging(
    inner: Any, decay: Optional[float] = 0.999, debias: bool = True, accumulator_dtype: Optional[Any] = None
) -> GradientTransformation:
    r"""Wraps `inner` and keeps a moving average of the parameters it produces.

    With :math:`\theta_t = \theta_{t-1} + u_t` the params after step :math:`t`
    (:math:`u_t` the inner update, returned unchanged):

    .. math::
        m_t = \beta m_{t-1} + (1-\beta)\, \theta_t, \quad m_0 = 0, \qquad
        \bar\theta_t = \frac{m_t}{1-\beta^t} \;\text{(debias)}

    and with ``decay=None`` the uniform Polyak-Ruppert average
    :math:`\bar\theta_t = \frac1t \sum_{s=1}^t \theta_s`
    (:math:`m_t = m_{t-1} + (\theta_t - m_{t-1})/t`). Read the average with
    `polyak_params` (debiased, in the params' dtypes); evaluate with it, keep
    training with the raw params.

    Note:
        Like ``optax.ema`` applied to the params rather than the updates. The
        average is kept in at least float32 by default: in bfloat16 the increments
        :math:`(1-\beta)(\theta_t - m_{t-1})` fall below the resolution of
        :math:`m` for :math:`\beta` close to 1. Without `debias`, :math:`m_t`
        starts at 0 and is biased towards it for the first
        :math:`\sim 1/(1-\beta)` steps.

    Args:
        inner: the optimizer whose iterates are averaged.
        decay: :math:`\beta \in [0, 1)`, or None for the uniform average.
        debias: divide by :math:`1 - \beta^t` (ignored for the uniform average).
        accumulator_dtype: dtype of the average (default: float32, float64 for float64 params).

    Returns:
        A `GradientTransformation` with state `PolyakAveragingState`; its
        ``update`` needs the params.

    Raises:
        ValueError: ``decay`` outside [0, 1); at update, missing params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.polyak_averaging(gx.sgd(1.0), decay=None)
        >>> params = jnp.array([0.0])
        >>> state = opt.init(params)
        >>> for g in [-1.0, -1.0, -1.0]:  # iterates 1, 2, 3
        ...     u, state = opt.update(jnp.array([g]), state, params)
        ...     params = gx.apply_updates(params, u)
        >>> gx.polyak_params(state, like=params).tolist()
        [2.0]

    References:
        Polyak & Juditsky, `Acceleration of stochastic approximation by averaging
        <https://doi.org/10.1137/0330046>`_, 1992; Ruppert, 1988.
    """
    fn = "polyak_averaging"
    check_transform(inner, f"{fn}: inner")

    def acc_dtype(p):
        return accumulator_dtype if accumulator_dtype is not None else _tree.compute_dtype(p.dtype)

    def init_fn(params):
        return PolyakAveragingState(
            count=jnp.zeros([], jnp.int32),
            ema=jax.tree_util.tree_map(lambda p: jnp.zeros_like(p, dtype=acc_dtype(jnp.asarray(p))), params),
            correction=jnp.ones([], jnp.float32),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, PolyakAveragingState, fn)
        _checks.require_params(params, fn)
        updates, inner_state = call_update(inner, updates, state.inner_state, params, extra_args)
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)
        count = _tree.safe_increment(state.count)

        def average(new_p, m):  # new_p: the params after this step, as apply_updates computes them
            cdt = _tree.compute_dtype(m.dtype)
            theta = jnp.asarray(new_p).astype(cdt)
            if decay is None:
                m_new = m.astype(cdt) + (theta - m.astype(cdt)) / count.astype(cdt)
            else:
                b = _tree.hp(decay, cdt)
                m_new = b * m.astype(cdt) + (1 - b) * theta
            return m_new.astype(m.dtype)

        ema = jax.tree_util.tree_map(average, apply_updates(params, updates), state.ema)
        if decay is not None and debias:
            correction = _tree.bias_correction(decay, count, jnp.float32)
        else:
            correction = jnp.ones([], jnp.float32)
        return updates, PolyakAveragingState(count=count, ema=ema, correction=correction, inner_state=inner_state)

    return GradientTransformation(init_fn, update_fn)


def polyak_params(state: PolyakAveragingState, like: Any = None) -> Any:
    r"""The averaged params :math:`\bar\theta_t = m_t / \text{state.correction}` of a `polyak_averaging` state.

    Args:
        state: the wrapper's state (not nested: pass ``state[i]`` from a chain).
        like: optional params whose dtypes the result takes (default: the average's dtype).

    Returns:
        A tree like the params. Before any update (count 0) it is the zero tree.

    Raises:
        TypeError: `state` is not a `PolyakAveragingState`.
    """
    _checks.check_state_type(state, PolyakAveragingState, "polyak_params")

    def unbias(m):
        cdt = _tree.compute_dtype(m.dtype)
        c = state.correction.astype(cdt)
        return (m.astype(cdt) / jnp.where(c > 0, c, jnp.ones_like(c))).astype(m.dtype)

    ema = jax.tree_util.tree_map(unbias, state.ema)
    if like is not None:
        ema = _tree.cast_like(ema, like)
    return ema
