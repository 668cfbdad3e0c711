"""RAdam, the rectified Adam (Liu et al., 2020): `scale_by_radam` and `radam`."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._adam import ScaleByAdamState
from gradxform.transforms._scale import scale_by_learning_rate


class _RadamScalars(NamedTuple):
    moments: _tree.MomentScalars
    rectify: jax.Array  # bool scalar: rho_t >= threshold
    r: jax.Array  # the rectification factor r_t (1 where not rectified)


def _python_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# (expm1(x) - x) / x^2 = sum_k x^k / (k + 2)!, for x < 1: 17 terms reach float64's precision.
_SERIES = tuple(1.0 / math.factorial(k + 2) for k in range(17))


def _one_minus_x_over_expm1(x: jax.Array) -> jax.Array:
    r""":math:`1 - x / (e^x - 1)` for :math:`x > 0`, without cancellation near 0."""
    em1 = jnp.expm1(x)
    series = jnp.zeros_like(x)
    for c in reversed(_SERIES):
        series = series * x + c
    small = x * x * series / em1
    large = 1 - x / jnp.where(x < 1, 1, em1)  # expm1 overflows to inf for large x: then 1
    return jnp.where(x < 1, small, large)


# 1/delta - 1/2 - 1/(-log(1 - delta)) = sum_n |G_n| delta^(n-1), G_n Gregory's coefficients.
_GREGORY = (
    1 / 12, 1 / 24, 19 / 720, 3 / 160, 863 / 60480, 275 / 24192, 33953 / 3628800, 8183 / 1036800,
    3250433 / 479001600,
)


def _rho(b2: Any, count: jax.Array, dtype: Any) -> tuple[jax.Array, jax.Array]:
    r"""RAdam's :math:`\rho_t = \rho_\infty - 2t\beta_2^t / (1-\beta_2^t)` and :math:`\rho_\infty = 2/(1-\beta_2) - 1`.

    Written directly, :math:`\rho_t` is the difference of two numbers close to
    :math:`\rho_\infty` (1999 for :math:`\beta_2 = 0.999`), and float32 loses 1e-4 of it
    (optax's ``1 - b2**t`` in float32 loses 4e-2 at t = 6). With :math:`\ell = -\log\beta_2`
    and :math:`x = t\ell`, :math:`\rho_t = c + (2/\ell)(1 - x/\mathrm{expm1}(x))` where
    :math:`c = \rho_\infty - 2/\ell`, formed in double precision for a Python number and
    from its series in :math:`\delta = 1 - \beta_2` for an array (traced or injected); the
    last factor has no cancellation.
    """
    real = _tree.real_dtype(dtype)
    t = count.astype(real)
    if _python_number(b2):
        if b2 == 0:  # rho_t = rho_inf = 1
            return jnp.ones_like(t), jnp.ones_like(t)
        ell = -math.log(b2)
        rho_inf_value = 2.0 / (1.0 - b2) - 1.0
        c = _tree.hp(rho_inf_value - 2.0 / ell, real)
        rho_inf, ell = _tree.hp(rho_inf_value, real), _tree.hp(ell, real)
    else:
        beta = _tree.hp(b2, real)
        delta = 1 - beta  # exact for beta in [0.5, 1]
        ell = -jnp.log1p(-delta)
        rho_inf = 2 / delta - 1
        series = jnp.zeros_like(delta)
        for g in reversed(_GREGORY):
            series = series * delta + g
        c = jnp.where(delta < 0.1, 2 * delta * series, rho_inf - 2 / ell)  # series: 1e-10 off at 0.1
    rho = c + (2 / ell) * _one_minus_x_over_expm1(t * ell)
    if not _python_number(b2):
        rho = jnp.where(beta == 0, 1, rho)
    return rho, rho_inf


def _radam_scalars(b1, b2, eps, eps_root, threshold, count, dtype, nesterov) -> _RadamScalars:
    moments = _tree.moment_scalars(b1, b2, eps, eps_root, count, dtype, nesterov)
    real = _tree.real_dtype(dtype)
    rho, rho_inf = _rho(b2, count, dtype)
    # rho_t < rho_inf: with rho_inf <= 4 (b2 <= 0.6) r_t is undefined and the step never rectified
    rectify = (rho >= _tree.hp(threshold, real)) & (rho_inf > 4)
    rho_safe = jnp.where(rectify, rho, rho_inf)  # r = 1 where not rectified, never sqrt(< 0)
    r2 = (rho_safe - 4) * (rho_safe - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_safe)
    r = jnp.where(rectify, jnp.sqrt(jnp.where(rectify, r2, 1)), 1)
    return _RadamScalars(moments, rectify, r.astype(dtype))


@_tree.leaf_rule(static=("nesterov",))
def _radam_rule(g, mu, nu, s: _RadamScalars, *, nesterov):
    m = s.moments
    x = g.astype(m.eps.dtype)
    mu_new = _tree.update_moment(x, mu, m.b1)
    nu_new = _tree.update_moment(_tree.abs_sq(x), nu, m.b2)
    mu_hat = _tree.debiased_first_moment(mu_new, x, m, nesterov)
    nu_hat = nu_new / m.bc2
    adaptive = s.r * mu_hat / (jnp.sqrt(nu_hat + m.eps_root) + m.eps)
    u = jnp.where(s.rectify, adaptive, mu_hat)
    return u.astype(g.dtype), mu_new.astype(mu.dtype), nu_new.astype(nu.dtype)


_RADAM = dict(
    b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT,
    threshold=_hyper.number(
        4.0, draw=(4.0, 8.0),
        source="Liu et al. (2020): r_t needs rho_t > 4; below 4 its root is of a negative number",
    ),
    nesterov=_hyper.BOOL,
)


@_hyper.declare(**_RADAM)
def scale_by_radam(
    b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, threshold=5.0, *, nesterov: bool = False
) -> GradientTransformation:
    r"""Rescales by RAdam's rectified Adam step (Liu et al., 2020, Algorithm 2).

    With Adam's moments :math:`\mu_t, \nu_t` and their bias-corrected values
    :math:`\hat \mu_t, \hat \nu_t` (see `scale_by_adam`),

    .. math::
        \rho_\infty = \frac{2}{1-\beta_2} - 1, \qquad
        \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1-\beta_2^t}, \qquad
        r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}, \\
        u_t = r_t \frac{\hat \mu_t}{\sqrt{\hat \nu_t + \epsilon_{root}} + \epsilon}
        \quad \text{if } \rho_t \ge \tau, \qquad u_t = \hat \mu_t \quad \text{otherwise}

    While the variance of the adaptive learning rate is intractable (:math:`\rho_t < \tau`,
    the first steps), the update is SGD with momentum. ``nesterov=True`` uses NAdam's
    look-ahead :math:`\hat \mu_t` (as in optax).

    Note:
        The paper rectifies when :math:`\rho_t > 4`; optax and PyTorch use
        :math:`\rho_t \ge \tau` with :math:`\tau = 5`, as here. :math:`\rho_t` is computed
        without cancellation (from :math:`\mathrm{expm1}(-t \log \beta_2)` and a constant
        formed in double precision), so in float32 this is more accurate
        than optax 0.2.8, whose :math:`r_t` is about 1% off at :math:`t = 6` for
        :math:`\beta_2 = 0.999`.

    Args:
        b1, b2: decay rates :math:`\beta_1, \beta_2` in [0, 1).
        eps, eps_root: non-negative stabilizers outside / inside the root.
        threshold: :math:`\tau \ge 4`, the :math:`\rho_t` from which the step is rectified.
        nesterov: use NAdam's look-ahead first moment.

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState`.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps`` or ``eps_root``,
            ``threshold < 4``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_radam()
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 6) for x in u.tolist()]  # rho_1 = 1 < 5: the bias-corrected momentum, g
        [0.5, -2.0]

    References:
        Liu et al., "On the Variance of the Adaptive Learning Rate and Beyond", ICLR 2020,
        Algorithm 2.
    """
    fn = "scale_by_radam"

    def init_fn(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=_tree.zeros_like(params), nu=_tree.square_zeros_like(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAdamState, updates, "mu")
        count = _tree.safe_increment(state.count)
        updates, mu, nu = _tree.apply_rule(
            _radam_rule, updates, state.mu, state.nu, nesterov=nesterov,
            scalars=lambda dtype: _radam_scalars(b1, b2, eps, eps_root, threshold, count, dtype, nesterov),
        )
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_RADAM)
def radam(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    threshold=5.0,
    *,
    nesterov: bool = False,
) -> GradientTransformation:
    """RAdam: ``chain(scale_by_radam(...), scale_by_learning_rate(learning_rate))``; see `scale_by_radam`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.radam(0.1)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -0.5])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]
        [0.95, -0.95]
    """
    return chain(
        scale_by_radam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, threshold=threshold, nesterov=nesterov),
        scale_by_learning_rate(learning_rate),
    )
