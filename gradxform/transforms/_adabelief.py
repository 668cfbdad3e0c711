"""AdaBelief (Zhuang et al., 2020): `scale_by_belief` and `adabelief`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByBeliefState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Any  # like params
    nu: Any  # like params: moving average of the squared prediction error


def scale_by_belief(b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, *, nesterov: bool = False) -> GradientTransformation:
    r"""Rescales by the "belief" in the gradient: the deviation from its moving average.

    .. math::
        s_t = \beta_1 s_{t-1} + (1-\beta_1) g_t, \qquad
        r_t = \beta_2 r_{t-1} + (1-\beta_2)(g_t - s_t)^2 + \epsilon_{root}, \\
        u_t = \frac{s_t / (1-\beta_1^t)}{\sqrt{r_t / (1-\beta_2^t)} + \epsilon}

    Deck 002 states the second moment as in Adam with :math:`g` replaced by
    :math:`g - s^{(t+1)}`; :math:`\epsilon_{root}` is added to the stored moment
    each step, as in the paper's algorithm and optax.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps`` or ``eps_root``.
    """
    fn = "scale_by_belief"
    _checks.check_decay("b1", b1, fn=fn)
    _checks.check_decay("b2", b2, fn=fn)
    _checks.check_non_negative("eps", eps, fn=fn)
    _checks.check_non_negative("eps_root", eps_root, fn=fn)

    def init_fn(params):
        return ScaleByBeliefState(
            count=jnp.zeros([], jnp.int32), mu=_tree.zeros_like(params), nu=_tree.square_zeros_like(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByBeliefState, fn)
        _checks.check_tree_like(updates, state.mu, tree_name="updates", like_name="state.mu", fn=fn)
        count = _tree.safe_increment(state.count)

        def make_scalars(cdt):
            beta1, beta2 = _tree.hp(b1, cdt), _tree.hp(b2, cdt)
            bc1_next = _tree.bias_correction(b1, _tree.safe_increment(count), cdt) if nesterov else None
            return (beta1, beta2, 1 - beta1, 1 - beta2, _tree.hp(eps_root, cdt), _tree.hp(eps, cdt),
                    _tree.bias_correction(b1, count, cdt), bc1_next, _tree.bias_correction(b2, count, cdt))

        scalars = _tree.per_dtype(make_scalars)

        def leaf(g, m, v):
            if g is None:
                return None, m, v
            t = _tree
            cdt = t.compute_dtype(g.dtype)
            beta1, beta2, one_m_b1, one_m_b2, e_root, e, bc1, bc1_next, bc2 = scalars(cdt)
            g_ = t.cast(g, cdt)
            m_new = t.add(t.mul(one_m_b1, g_), t.mul(beta1, t.cast(m, cdt)))
            v_new = t.add(t.add(t.mul(one_m_b2, t.abs_sq(t.sub(g_, m_new))), t.mul(beta2, t.cast(v, cdt))), e_root)
            if nesterov:
                m_hat = t.add(t.div(t.mul(beta1, m_new), bc1_next), t.div(t.mul(one_m_b1, g_), bc1))
            else:
                m_hat = t.div(m_new, bc1)
            v_hat = t.div(v_new, bc2)
            u = t.div(m_hat, t.add(t.sqrt(v_hat), e))
            return t.cast(u, g.dtype), t.cast(m_new, m.dtype), t.cast(v_new, v.dtype)

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByBeliefState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


def adabelief(
    learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16, *, nesterov: bool = False
) -> GradientTransformation:
    """AdaBelief: ``chain(scale_by_belief(...), scale_by_learning_rate(learning_rate))``."""
    return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov), scale_by_learning_rate(learning_rate))
