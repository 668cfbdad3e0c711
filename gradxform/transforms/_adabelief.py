"""AdaBelief (Zhuang et al., 2020): `scale_by_belief` and `adabelief`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByBeliefState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Any  # like params
    nu: Any  # like params: moving average of the squared prediction error


@_tree.leaf_rule(static=("nesterov",))
def _belief_rule(g, mu, nu, s: _tree.MomentScalars, *, nesterov):
    x = g.astype(s.eps.dtype)
    mu_new = _tree.update_moment(x, mu, s.b1)
    nu_new = _tree.update_moment(_tree.abs_sq(x - mu_new), nu, s.b2) + s.eps_root
    m_hat = _tree.debiased_first_moment(mu_new, x, s, nesterov)
    # eps = eps_root = 0 and s = 0: 0/0 (all-zero gradients) is 0; m / 0 with m != 0 (a constant
    # gradient with b1 = 0: no surprise at all) stays inf, as the formula says.
    u = jnp.where(m_hat == 0, 0, m_hat / (jnp.sqrt(nu_new / s.bc2) + s.eps))
    return u.astype(g.dtype), mu_new.astype(mu.dtype), nu_new.astype(nu.dtype)


_BELIEF = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT, nesterov=_hyper.BOOL)


@_hyper.declare(**_BELIEF)
def scale_by_belief(b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, *, nesterov: bool = False) -> GradientTransformation:
    r"""Rescales by the "belief" in the gradient: the deviation from its moving average.

    .. math::
        \mu_t = \beta_1 \mu_{t-1} + (1-\beta_1) g_t, \qquad
        s_t = \beta_2 s_{t-1} + (1-\beta_2)(g_t - \mu_t)^2 + \epsilon_{root}, \\
        u_t = \frac{\mu_t / (1-\beta_1^t)}{\sqrt{s_t / (1-\beta_2^t)} + \epsilon}

    The second moment is Adam's with :math:`g` replaced by :math:`g - \mu_t` (Zhuang
    et al., 2020, Algorithm 2); :math:`\epsilon_{root}` is added to the stored moment
    each step, as in the paper's algorithm and optax.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps`` or ``eps_root``.
    """
    fn = "scale_by_belief"

    def init_fn(params):
        return ScaleByBeliefState(
            count=jnp.zeros([], jnp.int32), mu=_tree.zeros_like(params), nu=_tree.square_zeros_like(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByBeliefState, updates, "mu")
        count = _tree.safe_increment(state.count)
        updates, mu, nu = _tree.apply_rule(
            _belief_rule, updates, state.mu, state.nu, nesterov=nesterov,
            scalars=lambda dtype: _tree.moment_scalars(b1, b2, eps, eps_root, count, dtype, nesterov),
        )
        return updates, ScaleByBeliefState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_BELIEF)
def adabelief(
    learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, *, nesterov: bool = False
) -> GradientTransformation:
    """AdaBelief: ``chain(scale_by_belief(...), scale_by_learning_rate(learning_rate))``."""
    return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov), scale_by_learning_rate(learning_rate))
