"""AdaDelta (Zeiler, 2012): `scale_by_adadelta` and `adadelta`."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, identity
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByAdaDeltaState(NamedTuple):
    e_g: Any  # like params: moving average of squared gradients
    e_x: Any  # like params: moving average of squared updates


@_tree.leaf_rule
def _adadelta_rule(g, e_g, e_x, scalars):
    rho, eps = scalars
    x = g.astype(eps.dtype)
    e_g_new = _tree.update_moment(_tree.abs_sq(x), e_g, rho)
    e_x_old = e_x.astype(eps.dtype)
    # eps = 0 and all-zero gradients: 0/0 * 0 is defined as 0 (a zero gradient, or no past step, moves nothing).
    u = jnp.where((x == 0) | (e_x_old + eps == 0), 0, (jnp.sqrt(e_x_old + eps) / jnp.sqrt(e_g_new + eps)) * x)
    e_x_new = _tree.update_moment(_tree.abs_sq(u), e_x_old, rho)
    return u.astype(g.dtype), e_g_new.astype(e_g.dtype), e_x_new.astype(e_x.dtype)


_ADADELTA = dict(rho=_hyper.DECAY, eps=_hyper.EPS)


@_hyper.declare(**_ADADELTA)
def scale_by_adadelta(rho=0.9, eps=1e-6) -> GradientTransformation:
    r"""AdaDelta's unit-correcting rescaling.

    .. math::
        E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) g_t^2, \qquad
        u_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}}\, g_t, \qquad
        E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1-\rho) u_t^2

    Raises:
        ValueError: ``rho`` outside [0, 1) or a negative ``eps``.
    """
    fn = "scale_by_adadelta"

    def init_fn(params):
        return ScaleByAdaDeltaState(e_g=_tree.square_zeros_like(params), e_x=_tree.square_zeros_like(params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAdaDeltaState, updates, "e_g")
        updates, e_g, e_x = _tree.apply_rule(
            _adadelta_rule, updates, state.e_g, state.e_x,
            scalars=lambda dtype: (_tree.decay(rho, dtype), _tree.hp(eps, dtype)),
        )
        return updates, ScaleByAdaDeltaState(e_g=e_g, e_x=e_x)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    learning_rate=_hyper.LR._replace(optional=True),
    **_ADADELTA,
    weight_decay=_hyper.NONNEG,
)
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
