"""RMSProp (Hinton, 2012): `scale_by_rms`, centered `scale_by_stddev`, and `rmsprop`."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, identity
from gradxform._combine import chain
from gradxform.transforms._momentum import trace
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByRmsState(NamedTuple):
    count: jax.Array  # shape (), int32 (used for the bias correction)
    nu: Any  # like params


class ScaleByRStdDevState(NamedTuple):
    count: jax.Array  # shape (), int32
    mu: Any  # like params
    nu: Any  # like params


def _validate(fn, decay, eps, initial_scale):
    _checks.check_decay("decay", decay, fn=fn)
    _checks.check_non_negative("eps", eps, fn=fn)
    _checks.check_non_negative("initial_scale", initial_scale, fn=fn)


def _scaling(denominator_sq, eps, eps_in_sqrt):
    if eps_in_sqrt:
        return jax.lax.rsqrt(_tree.add(denominator_sq, eps))
    return 1 / _tree.add(_tree.sqrt(denominator_sq), eps)


def _scalars(decay, eps, count, cdt, bias_correction):
    rho = _tree.hp(decay, cdt)
    bc = _tree.bias_correction(decay, count, cdt) if bias_correction else None
    return rho, 1 - rho, bc, _tree.hp(eps, cdt)


def scale_by_rms(
    decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True, bias_correction: bool = False
) -> GradientTransformation:
    r"""Divides by the root of a moving average of squared gradients (RMSProp).

    .. math::
        r_t = \rho r_{t-1} + (1 - \rho) g_t \odot g_t, \qquad
        u_t = \frac{g_t}{\sqrt{\hat r_t + \delta}} \;(\texttt{eps\_in\_sqrt=True})
        \quad\text{or}\quad \frac{g_t}{\sqrt{\hat r_t} + \delta} \;(\texttt{False})

    with :math:`\hat r_t = r_t / (1 - \rho^t)` when ``bias_correction`` else :math:`r_t`,
    and :math:`r_0` = ``initial_scale``.

    Note:
        The decks disagree on eps: deck 003 (Goodfellow et al. Algorithm 8.5)
        writes :math:`\sqrt{\delta + r}` (the default here, as in optax), decks 000
        and 002 write :math:`\delta + \sqrt{r}` (``eps_in_sqrt=False``, as in PyTorch).

    Raises:
        ValueError: ``decay`` outside [0, 1), negative ``eps`` or ``initial_scale``.
    """
    fn = "scale_by_rms"
    _validate(fn, decay, eps, initial_scale)

    def init_fn(params):
        return ScaleByRmsState(count=jnp.zeros([], jnp.int32), nu=_tree.square_full_like(params, initial_scale))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByRmsState, fn)
        _checks.check_tree_like(updates, state.nu, tree_name="updates", like_name="state.nu", fn=fn)
        count = _tree.safe_increment(state.count) if bias_correction else state.count

        scalars = _tree.per_dtype(lambda cdt: _scalars(decay, eps, count, cdt, bias_correction))

        def leaf(g, v):
            if g is None:
                return None, v
            t = _tree
            cdt = t.compute_dtype(g.dtype)
            rho, one_m_rho, bc, e = scalars(cdt)
            g_ = t.cast(g, cdt)
            v_new = t.add(t.mul(one_m_rho, t.abs_sq(g_)), t.mul(rho, t.cast(v, cdt)))
            v_hat = t.div(v_new, bc) if bias_correction else v_new
            u = t.mul(g_, _scaling(v_hat, e, eps_in_sqrt))
            return t.cast(u, g.dtype), t.cast(v_new, v.dtype)

        updates, nu = _tree.map_leaves(leaf, updates, state.nu, n_out=2)
        return updates, ScaleByRmsState(count=count, nu=nu)

    return GradientTransformation(init_fn, update_fn)


def scale_by_stddev(
    decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True, bias_correction: bool = False
) -> GradientTransformation:
    r"""Centered RMSProp: divides by a moving estimate of the gradients' standard deviation.

    .. math::
        m_t = \rho m_{t-1} + (1-\rho) g_t, \quad r_t = \rho r_{t-1} + (1-\rho) g_t^2, \quad
        u_t = \frac{g_t}{\sqrt{\hat r_t - \hat m_t^2 + \delta}}

    (or :math:`g_t / (\sqrt{\hat r_t - \hat m_t^2} + \delta)` with ``eps_in_sqrt=False``).

    Raises:
        ValueError: ``decay`` outside [0, 1), negative ``eps`` or ``initial_scale``.
    """
    fn = "scale_by_stddev"
    _validate(fn, decay, eps, initial_scale)

    def init_fn(params):
        return ScaleByRStdDevState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params),
            nu=_tree.square_full_like(params, initial_scale),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByRStdDevState, fn)
        _checks.check_tree_like(updates, state.nu, tree_name="updates", like_name="state.nu", fn=fn)
        count = _tree.safe_increment(state.count) if bias_correction else state.count

        scalars = _tree.per_dtype(lambda cdt: _scalars(decay, eps, count, cdt, bias_correction))

        def leaf(g, m, v):
            if g is None:
                return None, m, v
            t = _tree
            cdt = t.compute_dtype(g.dtype)
            rho, one_m_rho, bc, e = scalars(cdt)
            g_ = t.cast(g, cdt)
            m_new = t.add(t.mul(one_m_rho, g_), t.mul(rho, t.cast(m, cdt)))
            v_new = t.add(t.mul(one_m_rho, t.abs_sq(g_)), t.mul(rho, t.cast(v, cdt)))
            if bias_correction:
                m_hat, v_hat = t.div(m_new, bc), t.div(v_new, bc)
            else:
                m_hat, v_hat = m_new, v_new
            u = t.mul(g_, _scaling(t.sub(v_hat, t.abs_sq(m_hat)), e, eps_in_sqrt))
            return t.cast(u, g.dtype), t.cast(m_new, m.dtype), t.cast(v_new, v.dtype)

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByRStdDevState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


def rmsprop(
    learning_rate: ScalarOrSchedule,
    decay=0.9,
    eps=1e-8,
    initial_scale=0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: Optional[float] = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> GradientTransformation:
    """RMSProp: ``chain(scale_by_rms or scale_by_stddev, scale_by_learning_rate, trace(momentum))``.

    As in optax, the momentum (when given) accumulates the already-scaled step, so
    the learning rate sits inside the velocity here, as in the seed decks.
    """
    scaler = scale_by_stddev if centered else scale_by_rms
    if momentum is None and nesterov:
        raise ValueError("rmsprop: `nesterov=True` needs a `momentum`; got momentum=None.")
    if momentum is not None:
        _checks.check_decay("momentum", momentum, fn="rmsprop")
    return chain(
        scaler(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov) if momentum is not None else identity(),
    )
