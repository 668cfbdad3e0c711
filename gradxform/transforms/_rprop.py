"""Rprop, as iRprop- (Igel & Husken, 2000; PyTorch's `torch.optim.Rprop`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation
from gradxform._combine import chain
from gradxform.transforms._scale import scale


class ScaleByRpropState(NamedTuple):
    step_sizes: Any  # like params: the per-coordinate step sizes
    prev_updates: Any  # like params: last step's signed step (0 where the sign flipped)


def scale_by_rprop(
    learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0
) -> GradientTransformation:
    r"""iRprop-: per-coordinate step sizes driven by the signs of successive gradients.

    With :math:`s = g_t \cdot u_{t-1}` (the previous signed step, 0 at the start):

    .. math::
        \Delta_t = \begin{cases}
            \min(\eta^+ \Delta_{t-1}, \Delta_{max}) & s > 0 \\
            \max(\eta^- \Delta_{t-1}, \Delta_{min}) & s < 0 \\
            \Delta_{t-1} & s = 0 \end{cases}, \qquad
        u_t = \begin{cases} 0 & s < 0 \\ \Delta_t \operatorname{sign}(g_t) & \text{otherwise} \end{cases}

    and :math:`u_t` is stored as the previous step, so a coordinate whose gradient
    changed sign takes no step now and is treated as "no sign information" next time.
    :math:`\Delta_0` = ``learning_rate``. The result is a step to *add with a minus
    sign*: `rprop` follows it with ``scale(-1)``.

    Note:
        This returns the current step's update, as PyTorch does. optax 0.2.8's
        ``scale_by_rprop`` returns the previous step's update instead (a known bug).

    Raises:
        ValueError: a negative ``learning_rate``, ``eta_minus`` outside (0, 1],
            ``eta_plus`` below 1, ``min_step_size`` negative or
            ``max_step_size < min_step_size``.
    """
    fn = "scale_by_rprop"
    _checks.check_non_negative("learning_rate", learning_rate, fn=fn)
    _checks.check_range("eta_minus", eta_minus, 0.0, 1.0, low_inclusive=False, fn=fn)
    _checks.check_range("eta_plus", eta_plus, 1.0, fn=fn)
    _checks.check_non_negative("min_step_size", min_step_size, fn=fn)
    lo = _checks._concrete_float(min_step_size)
    _checks.check_range("max_step_size", max_step_size, lo if lo is not None else 0.0, fn=fn)

    def init_fn(params):
        return ScaleByRpropState(
            step_sizes=_tree.full_like(params, learning_rate), prev_updates=_tree.zeros_like(params)
        )

    def leaf(g, step, prev):
        if g is None:
            return None, step, prev
        cdt = _tree.compute_dtype(g.dtype)
        g_ = g.astype(cdt)
        step_ = step.astype(cdt)
        s = g_ * prev.astype(cdt)
        grown = jnp.minimum(step_ * _tree.hp(eta_plus, cdt), _tree.hp(max_step_size, cdt))
        shrunk = jnp.maximum(step_ * _tree.hp(eta_minus, cdt), _tree.hp(min_step_size, cdt))
        new_step = jnp.where(s > 0, grown, jnp.where(s < 0, shrunk, step_))
        u = jnp.where(s < 0, jnp.zeros_like(g_), new_step * jnp.sign(g_))
        return u.astype(g.dtype), new_step.astype(step.dtype), u.astype(prev.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByRpropState, fn)
        _checks.check_tree_like(
            updates, state.step_sizes, tree_name="updates", like_name="state.step_sizes", fn=fn
        )
        updates, steps, prev = _tree.map_leaves(leaf, updates, state.step_sizes, state.prev_updates, n_out=3)
        return updates, ScaleByRpropState(step_sizes=steps, prev_updates=prev)

    return GradientTransformation(init_fn, update_fn)


def rprop(
    learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0
) -> GradientTransformation:
    """Rprop (iRprop-): ``chain(scale_by_rprop(...), scale(-1))``; see `scale_by_rprop`."""
    return chain(scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0))
