"""AdaDelta (Zeiler, 2012): `scale_by_adadelta` and `adadelta`."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, identity
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByAdaDeltaState(NamedTuple):
    e_g: Any  # like params: moving average of squared gradients
    e_x: Any  # like params: moving average of squared updates


def scale_by_adadelta(rho=0.9, eps=1e-6) -> GradientTransformation:
    r"""AdaDelta's unit-correcting rescaling.

    .. math::
        E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) g_t^2, \qquad
        u_t = \frac{\sqrt{E[\Delta x^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t, \qquad
        E[\Delta x^2]_t = \rho E[\Delta x^2]_{t-1} + (1-\rho) u_t^2

    Raises:
        ValueError: ``rho`` outside [0, 1) or a negative ``eps``.
    """
    fn = "scale_by_adadelta"
    _checks.check_decay("rho", rho, fn=fn)
    _checks.check_non_negative("eps", eps, fn=fn)

    def init_fn(params):
        return ScaleByAdaDeltaState(e_g=_tree.square_zeros_like(params), e_x=_tree.square_zeros_like(params))

    def leaf(g, eg, ex):
        if g is None:
            return None, eg, ex
        cdt = _tree.compute_dtype(g.dtype)
        r, e = _tree.hp(rho, cdt), _tree.hp(eps, cdt)
        g_ = g.astype(cdt)
        eg_new = (1 - r) * _tree.abs_sq(g_) + r * eg.astype(cdt)
        ex_old = ex.astype(cdt)
        u = (jnp.sqrt(ex_old + e) / jnp.sqrt(eg_new + e)) * g_
        ex_new = (1 - r) * _tree.abs_sq(u) + r * ex_old
        return u.astype(g.dtype), eg_new.astype(eg.dtype), ex_new.astype(ex.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByAdaDeltaState, fn)
        _checks.check_tree_like(updates, state.e_g, tree_name="updates", like_name="state.e_g", fn=fn)
        updates, e_g, e_x = _tree.map_leaves(leaf, updates, state.e_g, state.e_x, n_out=3)
        return updates, ScaleByAdaDeltaState(e_g=e_g, e_x=e_x)

    return GradientTransformation(init_fn, update_fn)


def adadelta(
    learning_rate: Optional[ScalarOrSchedule] = None,
    rho=0.9,
    eps=1e-6,
    weight_decay=0.0,
    weight_decay_mask: Any = None,
) -> GradientTransformation:
    """AdaDelta: ``chain(add_decayed_weights, scale_by_adadelta, scale_by_learning_rate)``.

    ``learning_rate=None`` means no extra scaling beyond the descent sign
    (Zeiler's original rule, a learning rate of 1).
    """
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask) if weight_decay else identity(),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(1.0 if learning_rate is None else learning_rate),
    )
