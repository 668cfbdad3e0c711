"""Rprop, as iRprop- (Igel & Husken, 2000; PyTorch's `torch.optim.Rprop`)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation
from gradxform._combine import chain
from gradxform.transforms._scale import scale


class ScaleByRpropState(NamedTuple):
    step_sizes: Any  # like params: the per-coordinate step sizes
    prev_updates: Any  # like params: last step's signed step (0 where the sign flipped)


class _RpropScalars(NamedTuple):
    eta_minus: jax.Array
    eta_plus: jax.Array
    min_step_size: jax.Array
    max_step_size: jax.Array


@_tree.leaf_rule
def _rprop_rule(g, step, prev, s: _RpropScalars):
    x = g.astype(s.eta_plus.dtype)
    step_ = step.astype(x.dtype)
    agreement = x * prev.astype(x.dtype)
    grown = jnp.minimum(step_ * s.eta_plus, s.max_step_size)
    shrunk = jnp.maximum(step_ * s.eta_minus, s.min_step_size)
    new_step = jnp.where(agreement > 0, grown, jnp.where(agreement < 0, shrunk, step_))
    u = jnp.where(agreement < 0, jnp.zeros_like(x), new_step * jnp.sign(x))
    return u.astype(g.dtype), new_step.astype(step.dtype), u.astype(prev.dtype)


# Rprop adapts each step size from the agreement of successive gradients' signs
# (Riedmiller & Braun, 1993; Igel & Husken, 2000), defined for real coordinates only.
# A complex step size (what `full_like` of complex params would store) is compared
# with `>` on a complex product, which is meaningless: the run stopped moving.
_NO_COMPLEX_SIGN = "Rprop adapts step sizes from gradient signs, which complex numbers do not have"

_RPROP = dict(
    # The initial step size, not a factor of the update: positive (a negative one would
    # step uphill and a zero one never move), finite in float32.
    learning_rate=_hyper.number(
        0.0, _hyper.F32_MAX, low_inclusive=False, draw=(1e-4, 1e-1), source="validator (a step size)"
    )._replace(scalar=True),
    eta_minus=_hyper.number(0.0, 1.0, low_inclusive=False, draw=(0.1, 0.9), source="validator"),
    eta_plus=_hyper.number(1.0, draw=(1.0, 2.0), source="validator"),
    min_step_size=_hyper.NONNEG._replace(draw=(1e-7, 1e-3), source="validator"),
    max_step_size=_hyper.NONNEG._replace(draw=(1.0, 50.0), source="validator"),
)

_MAX_AT_LEAST_MIN = _hyper.Constraint(
    ("min_step_size", "max_step_size"),
    lambda kw: kw["max_step_size"] >= kw["min_step_size"],
    "`max_step_size` must be at least `min_step_size`; got max_step_size={max_step_size!r}, "
    "min_step_size={min_step_size!r}.",
    lambda kw: kw | {"max_step_size": max(kw["max_step_size"], kw["min_step_size"])},
)


@_hyper.declare(_MAX_AT_LEAST_MIN, **_RPROP)
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
        TypeError: complex params or updates (a sign-based rule: optimize the real
            and imaginary parts separately with `split_real_and_imaginary`).
        ValueError: a ``learning_rate`` that is not positive (it is the initial
            step size, not a factor of the update: to ascend, drop `rprop`'s
            final ``scale(-1)``), ``eta_minus`` outside (0, 1], ``eta_plus`` below
            1, ``min_step_size`` negative or ``max_step_size < min_step_size``.
    """
    fn = "scale_by_rprop"

    def init_fn(params):
        _checks.check_real_leaves(params, fn=f"{fn}.init", why=_NO_COMPLEX_SIGN)
        return ScaleByRpropState(
            step_sizes=_tree.full_like(params, learning_rate), prev_updates=_tree.zeros_like(params)
        )

    def scalars(dtype):
        return _RpropScalars(*(_tree.hp(v, dtype) for v in (eta_minus, eta_plus, min_step_size, max_step_size)))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByRpropState, updates, "step_sizes")
        _checks.check_real_leaves(updates, fn=f"{fn}.update", why=_NO_COMPLEX_SIGN, tree_name="updates")
        updates, steps, prev = _tree.apply_rule(
            _rprop_rule, updates, state.step_sizes, state.prev_updates, scalars=scalars
        )
        return updates, ScaleByRpropState(step_sizes=steps, prev_updates=prev)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(_MAX_AT_LEAST_MIN, **_RPROP)
def rprop(
    learning_rate, eta_minus=0.5, eta_plus=1.2, min_step_size=1e-6, max_step_size=50.0
) -> GradientTransformation:
    """Rprop (iRprop-): ``chain(scale_by_rprop(...), scale(-1))``; see `scale_by_rprop`."""
    return chain(scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0))
