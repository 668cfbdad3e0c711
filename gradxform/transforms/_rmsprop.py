"""RMSProp (Tieleman & Hinton, 2012), centered RMSProp (Graves, 2013): `scale_by_rms`, `scale_by_stddev`, `rmsprop`."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, identity
from gradxform._combine import chain
from gradxform.transforms._momentum import trace
from gradxform.transforms._scale import scale_by_learning_rate

# As in optax, the state has a `count` only with ``bias_correction=True`` (the
# ``*WithCountState`` types), so that a checkpoint's leaves flatten the same.


class ScaleByRmsState(NamedTuple):
    nu: Any  # like params


class ScaleByRmsWithCountState(NamedTuple):
    count: jax.Array  # shape (), int32 (used for the bias correction)
    nu: Any  # like params


class ScaleByRStdDevState(NamedTuple):
    mu: Any  # like params
    nu: Any  # like params


class ScaleByRStdDevWithCountState(NamedTuple):
    count: jax.Array  # shape (), int32 (used for the bias correction)
    mu: Any  # like params
    nu: Any  # like params


class _RmsScalars(NamedTuple):
    rho: _tree.Decay
    bc: Optional[jax.Array]  # 1 - rho^t when bias_correction, else None
    eps: jax.Array


def _rms_scalars(decay, eps, count, bias_correction):
    def make(dtype):
        bc = _tree.bias_correction(decay, count, dtype) if bias_correction else None
        return _RmsScalars(_tree.decay(decay, dtype), bc, _tree.hp(eps, dtype))

    return make


def _debiased(x, s: _RmsScalars):
    return x if s.bc is None else x / s.bc


@_tree.leaf_rule(static=("eps_in_sqrt",))
def _rms_rule(g, nu, s: _RmsScalars, *, eps_in_sqrt):
    x = g.astype(s.eps.dtype)
    nu_new = _tree.update_moment(_tree.abs_sq(x), nu, s.rho)
    u = _tree.inverse_root(_debiased(nu_new, s), s.eps, eps_in_sqrt, x)  # 0 where g = 0 (eps = 0: never 0/0)
    return u.astype(g.dtype), nu_new.astype(nu.dtype)


@_tree.leaf_rule(static=("eps_in_sqrt",))
def _stddev_rule(g, mu, nu, s: _RmsScalars, *, eps_in_sqrt):
    x = g.astype(s.eps.dtype)
    mu_new = _tree.update_moment(x, mu, s.rho)
    nu_new = _tree.update_moment(_tree.abs_sq(x), nu, s.rho)
    # Non-negative in exact arithmetic; rounding can make it slightly negative (decay=0,
    # where nu = g^2 and mu^2 = g^2), and the root of that would be NaN.
    variance = jnp.maximum(_debiased(nu_new, s) - _tree.abs_sq(_debiased(mu_new, s)), 0)
    u = _tree.inverse_root(variance, s.eps, eps_in_sqrt, x)  # 0 where g = 0 (eps = 0: never 0/0)
    return u.astype(g.dtype), mu_new.astype(mu.dtype), nu_new.astype(nu.dtype)


_RMS = dict(
    decay=_hyper.DECAY,
    eps=_hyper.EPS,
    initial_scale=_hyper.NONNEG._replace(draw=(0.0, 1.0), source="validator"),
    eps_in_sqrt=_hyper.BOOL,
    bias_correction=_hyper.BOOL,
)


@_hyper.declare(**_RMS)
def scale_by_rms(
    decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True, bias_correction: bool = False
) -> GradientTransformation:
    r"""Divides by the root of a moving average of squared gradients (RMSProp).

    .. math::
        \nu_t = \rho \nu_{t-1} + (1 - \rho) g_t \odot g_t, \qquad
        u_t = \frac{g_t}{\sqrt{\hat \nu_t + \epsilon}} \;(\texttt{eps\_in\_sqrt=True})
        \quad\text{or}\quad \frac{g_t}{\sqrt{\hat \nu_t} + \epsilon} \;(\texttt{False})

    with :math:`\hat \nu_t = \nu_t / (1 - \rho^t)` when ``bias_correction`` else :math:`\nu_t`,
    and :math:`\nu_0` = ``initial_scale``.

    Note:
        Texts disagree on eps: Goodfellow et al. (2016), Algorithm 8.5, write
        :math:`\sqrt{\nu + \epsilon}` (the default here, as in optax and TensorFlow);
        PyTorch writes :math:`\sqrt{\nu} + \epsilon`
        (``eps_in_sqrt=False``).

    Returns:
        A `GradientTransformation` whose state is `ScaleByRmsState` (``nu``), or
        ``ScaleByRmsWithCountState`` (``count, nu``) with ``bias_correction``, as in optax.

    Raises:
        ValueError: ``decay`` outside [0, 1), negative ``eps`` or ``initial_scale``.
    """
    fn = "scale_by_rms"
    state_type = ScaleByRmsWithCountState if bias_correction else ScaleByRmsState

    def init_fn(params):
        nu = _tree.square_full_like(params, initial_scale)
        if bias_correction:
            return ScaleByRmsWithCountState(count=jnp.zeros([], jnp.int32), nu=nu)
        return ScaleByRmsState(nu=nu)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, state_type, updates, "nu")
        count = _tree.safe_increment(state.count) if bias_correction else None
        updates, nu = _tree.apply_rule(
            _rms_rule, updates, state.nu, eps_in_sqrt=eps_in_sqrt,
            scalars=_rms_scalars(decay, eps, count, bias_correction),
        )
        if bias_correction:
            return updates, ScaleByRmsWithCountState(count=count, nu=nu)
        return updates, ScaleByRmsState(nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(**_RMS)
def scale_by_stddev(
    decay=0.9, eps=1e-8, initial_scale=0.0, eps_in_sqrt: bool = True, bias_correction: bool = False
) -> GradientTransformation:
    r"""Centered RMSProp: divides by a moving estimate of the gradients' standard deviation.

    .. math::
        \mu_t = \rho \mu_{t-1} + (1-\rho) g_t, \quad \nu_t = \rho \nu_{t-1} + (1-\rho) g_t^2, \quad
        u_t = \frac{g_t}{\sqrt{\hat \nu_t - \hat \mu_t^2 + \epsilon}}

    (or :math:`g_t / (\sqrt{\hat \nu_t - \hat \mu_t^2} + \epsilon)` with ``eps_in_sqrt=False``).

    Returns:
        A `GradientTransformation` whose state is `ScaleByRStdDevState` (``mu, nu``), or
        ``ScaleByRStdDevWithCountState`` (``count, mu, nu``) with ``bias_correction``, as in
        optax.

    Raises:
        ValueError: ``decay`` outside [0, 1), negative ``eps`` or ``initial_scale``.
    """
    fn = "scale_by_stddev"
    state_type = ScaleByRStdDevWithCountState if bias_correction else ScaleByRStdDevState

    def init_fn(params):
        mu, nu = _tree.zeros_like(params), _tree.square_full_like(params, initial_scale)
        if bias_correction:
            return ScaleByRStdDevWithCountState(count=jnp.zeros([], jnp.int32), mu=mu, nu=nu)
        return ScaleByRStdDevState(mu=mu, nu=nu)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, state_type, updates, "nu")
        count = _tree.safe_increment(state.count) if bias_correction else None
        updates, mu, nu = _tree.apply_rule(
            _stddev_rule, updates, state.mu, state.nu, eps_in_sqrt=eps_in_sqrt,
            scalars=_rms_scalars(decay, eps, count, bias_correction),
        )
        if bias_correction:
            return updates, ScaleByRStdDevWithCountState(count=count, mu=mu, nu=nu)
        return updates, ScaleByRStdDevState(mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    _hyper.NESTEROV_NEEDS_MOMENTUM,
    learning_rate=_hyper.LR,
    **{k: v for k, v in _RMS.items() if k != "bias_correction"},
    centered=_hyper.BOOL,
    momentum=_hyper.MOMENTUM,
    nesterov=_hyper.BOOL,
)
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
    the learning rate sits inside the velocity here, as in Goodfellow et al. (2016),
    Algorithm 8.6 (RMSProp with Nesterov momentum).
    """
    scaler = scale_by_stddev if centered else scale_by_rms
    return chain(
        scaler(decay, eps, initial_scale, eps_in_sqrt, bias_correction),
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov) if momentum is not None else identity(),
    )
