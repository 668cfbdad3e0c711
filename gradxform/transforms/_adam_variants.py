"""Adam's variants: Adamax (Kingma & Ba, 2015), AMSGrad (Reddi et al., 2018) and NAdam (Dozat, 2016).

RAdam, Yogi and Adan live in their own modules (`_radam`, `_yogi`, `_adan`) and are
re-exported from here.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._adam import _MOMENTS, ScaleByAdamState, adam, adamw
from gradxform.transforms._adan import ScaleByAdanState, adan, scale_by_adan
from gradxform.transforms._radam import radam, scale_by_radam
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate
from gradxform.transforms._yogi import scale_by_yogi, yogi

__all__ = [
    "ScaleByAdanState",
    "ScaleByAmsgradState",
    "adamax",
    "adamaxw",
    "adan",
    "amsgrad",
    "nadam",
    "nadamw",
    "radam",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_amsgrad",
    "scale_by_radam",
    "scale_by_yogi",
    "yogi",
]


# --------------------------------------------------------------------------- Adamax


class _AdamaxScalars(NamedTuple):
    b1: _tree.Decay
    b2: _tree.Decay
    bc1: jax.Array  # 1 - b1^t
    eps: jax.Array


@_tree.leaf_rule
def _adamax_rule(g, mu, nu, s: _AdamaxScalars):
    x = g.astype(s.eps.dtype)
    mu_new = _tree.update_moment(x, mu, s.b1)
    nu_new = jnp.maximum(s.b2.rate * nu.astype(x.dtype), jnp.abs(x) + s.eps)
    # The update reads the unrounded nu: eps = 1e-8 underflows to 0 in float16, and the
    # stored value would then give 0 / 0 where the gradient has always been 0.
    u = jnp.where(mu_new == 0, 0, mu_new / s.bc1 / nu_new)  # eps = 0, g = 0: 0, not 0/0
    return u.astype(g.dtype), mu_new.astype(mu.dtype), nu_new.astype(nu.dtype)


_ADAMAX = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS)


@_hyper.declare(**_ADAMAX)
def scale_by_adamax(b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    r"""Rescales by Adamax's infinity norm (Kingma & Ba, 2015, Section 7.1, Algorithm 2).

    .. math::
        \mu_t = \beta_1 \mu_{t-1} + (1-\beta_1) g_t, \qquad
        \nu_t = \max(\beta_2 \nu_{t-1}, |g_t| + \epsilon), \qquad
        u_t = \frac{\mu_t}{(1-\beta_1^t)\,\nu_t}

    The exponentially weighted infinity norm :math:`\nu_t` needs no bias correction.

    Note:
        The paper has :math:`\nu_t = \max(\beta_2 \nu_{t-1}, |g_t|)` (no :math:`\epsilon`);
        optax and PyTorch add :math:`\epsilon` inside the max, as here, so that a
        coordinate whose gradient has always been 0 gets a zero update, not 0 / 0.
        ``eps=0`` is the paper's rule.

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the first moment.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the infinity norm.
        eps: :math:`\epsilon \ge 0`, added to :math:`|g_t|` inside the max.

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState` (``nu`` holds the
        infinity norm, as in optax).

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), or a negative ``eps``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_adamax()
        >>> state = tx.init(jnp.zeros(2))
        >>> u, state = tx.update(jnp.array([0.5, -2.0]), state)
        >>> [round(x, 6) for x in u.tolist()]  # the first step is sign(g) up to eps
        [1.0, -1.0]
        >>> u, state = tx.update(jnp.array([1.0, 0.0]), state)
        >>> [round(x, 4) for x in u.tolist()]  # (0.9 * 0.05 + 0.1) / 0.19 / 1, then (-0.18 / 0.19) / 1.998
        [0.7632, -0.4742]

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Section 7.1.
    """
    fn = "scale_by_adamax"

    def init_fn(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32), mu=_tree.zeros_like(params), nu=_tree.zeros_like(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAdamState, updates, "mu")
        count = _tree.safe_increment(state.count)

        def scalars(dtype):
            return _AdamaxScalars(
                _tree.decay(b1, dtype), _tree.decay(b2, dtype), _tree.bias_correction(b1, count, dtype),
                _tree.hp(eps, dtype),
            )

        updates, mu, nu = _tree.apply_rule(_adamax_rule, updates, state.mu, state.nu, scalars=scalars)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_ADAMAX)
def adamax(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8) -> GradientTransformation:
    """Adamax: ``chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))``.

    See `scale_by_adamax`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.adamax(0.1)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -0.5])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]
        [0.9, -0.9]
    """
    return chain(scale_by_adamax(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))


@_hyper.declare(learning_rate=_hyper.LR, weight_decay=_hyper.NONNEG, **_ADAMAX)
def adamaxw(
    learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=1e-4, mask=None
) -> GradientTransformation:
    r"""AdamaxW: ``chain(scale_by_adamax, add_decayed_weights(weight_decay, mask), scale_by_learning_rate)``.

    The update is :math:`-\eta_t (u^{adamax}_t + \lambda \theta_{t-1})`, Adamax with
    decoupled weight decay (Loshchilov & Hutter, 2019), scaled by the learning rate as
    in `adamw`; see `scale_by_adamax`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.adamaxw(0.1, weight_decay=0.5)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -0.5])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]  # -0.1 * (1 + 0.5)
        [0.85, -0.85]

    References:
        Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return chain(
        scale_by_adamax(b1=b1, b2=b2, eps=eps),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# --------------------------------------------------------------------------- AMSGrad


class ScaleByAmsgradState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    mu: Any  # first moment, like params (in mu_dtype if given)
    nu: Any  # second moment, like params (float32 for float16 params)
    nu_max: Any  # running max of the (bias-corrected) second moment, like nu


@_tree.leaf_rule(static=("debias_mu", "debias_nu"))
def _amsgrad_rule(g, mu, nu, nu_max, s: _tree.MomentScalars, *, debias_mu, debias_nu):
    x = g.astype(s.eps.dtype)
    mu_new = _tree.update_moment(x, mu, s.b1)
    nu_new = _tree.update_moment(_tree.abs_sq(x), nu, s.b2)
    mu_hat = mu_new / s.bc1 if debias_mu else mu_new
    nu_eff = nu_new / s.bc2 if debias_nu else nu_new
    nu_max_new = jnp.maximum(nu_max.astype(x.dtype), nu_eff)
    u = jnp.where(mu_hat == 0, 0, mu_hat / (jnp.sqrt(nu_max_new + s.eps_root) + s.eps))  # eps = 0, g = 0: 0
    return u.astype(g.dtype), mu_new.astype(mu.dtype), nu_new.astype(nu.dtype), nu_max_new.astype(nu_max.dtype)


_AMSGRAD = dict(
    b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT,
    bias_correction_mu=_hyper.BOOL, bias_correction_nu=_hyper.BOOL,
)


@_hyper.declare(**_AMSGRAD)
def scale_by_amsgrad(
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    r"""Rescales by AMSGrad's running maximum of the second moment (Reddi et al., 2018, Algorithm 2).

    .. math::
        \mu_t = \beta_1 \mu_{t-1} + (1-\beta_1) g_t, \qquad
        \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) g_t \odot g_t, \\
        \hat \mu_t = \frac{\mu_t}{1-\beta_1^t}, \qquad
        \hat \nu^{max}_t = \max\Big(\hat \nu^{max}_{t-1}, \frac{\nu_t}{1-\beta_2^t}\Big), \qquad
        u_t = \frac{\hat \mu_t}{\sqrt{\hat \nu^{max}_t + \epsilon_{root}} + \epsilon}

    ``bias_correction_mu=False`` uses :math:`\mu_t` for :math:`\hat \mu_t`,
    ``bias_correction_nu=False`` takes the max of the raw :math:`\nu_t`.

    Note:
        The paper's Algorithm 2 has no bias correction and no :math:`\epsilon`:
        ``bias_correction_mu=False, bias_correction_nu=False, eps=0``. By default the
        max is taken over the *bias-corrected* second moment (optax); PyTorch's
        ``Adam(amsgrad=True)`` takes it over the raw :math:`\nu_t` and divides the max
        by :math:`1-\beta_2^t` afterwards, which differs from this while the
        correction still changes (the first hundreds of steps).

    Args:
        b1, b2: decay rates :math:`\beta_1, \beta_2` in [0, 1).
        eps, eps_root: non-negative stabilizers outside / inside the root.
        mu_dtype: dtype of the first moment (default: the params' dtype).
        bias_correction_mu: divide the first moment by :math:`1-\beta_1^t`.
        bias_correction_nu: take the max of :math:`\nu_t / (1-\beta_2^t)`.

    Returns:
        A `GradientTransformation` with state `ScaleByAmsgradState`.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps`` or ``eps_root``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_amsgrad(b2=0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.array([2.0]), state)   # nu_hat = 4: max 4
        >>> u, state = tx.update(jnp.array([0.0]), state)   # nu_hat = 1 / 0.75 < 4: max stays 4
        >>> float(state.nu_max[0]), round(float(u[0]), 6)  # (0.9 * 0.2 / 0.19) / 2
        (4.0, 0.473684)

    References:
        Reddi, Kale & Kumar, "On the Convergence of Adam and Beyond", ICLR 2018, Algorithm 2.
    """
    fn = "scale_by_amsgrad"

    def init_fn(params):
        return ScaleByAmsgradState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.square_zeros_like(params),
            nu_max=_tree.square_zeros_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAmsgradState, updates, "mu")
        count = _tree.safe_increment(state.count)
        updates, mu, nu, nu_max = _tree.apply_rule(
            _amsgrad_rule, updates, state.mu, state.nu, state.nu_max,
            debias_mu=bool(bias_correction_mu), debias_nu=bool(bias_correction_nu),
            scalars=lambda dtype: _tree.moment_scalars(b1, b2, eps, eps_root, count, dtype),
        )
        return updates, ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_AMSGRAD)
def amsgrad(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
) -> GradientTransformation:
    """AMSGrad: ``chain(scale_by_amsgrad(...), scale_by_learning_rate(learning_rate))``; see `scale_by_amsgrad`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.amsgrad(0.1)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -0.5])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]
        [0.9, -0.9]
    """
    return chain(
        scale_by_amsgrad(
            b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype,
            bias_correction_mu=bias_correction_mu, bias_correction_nu=bias_correction_nu,
        ),
        scale_by_learning_rate(learning_rate),
    )


# --------------------------------------------------------------------------- NAdam


@_hyper.declare(learning_rate=_hyper.LR, **_MOMENTS)
def nadam(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = True,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""NAdam (Dozat, 2016): `adam` with ``nesterov=True`` (optax's ``nadam`` is that partial).

    The first moment is Nesterov's look-ahead,
    :math:`\hat \mu_t = \frac{\beta_1 \mu_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t}`,
    and the update :math:`-\eta_t \hat \mu_t / (\sqrt{\hat \nu_t + \epsilon_{root}} + \epsilon)`;
    see `scale_by_adam`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.nadam(0.1)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -0.5])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]  # 0.9*0.1/0.19 + 1
        [0.8526, -0.8526]

    References:
        Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016, Algorithm 2.
    """
    return adam(learning_rate, b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype)


@_hyper.declare(learning_rate=_hyper.LR, weight_decay=_hyper.NONNEG, **_MOMENTS)
def nadamw(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    weight_decay=1e-4,
    mask=None,
    *,
    nesterov: bool = True,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""NAdamW: `adamw` with ``nesterov=True``, :math:`-\eta_t (u^{nadam}_t + \lambda \theta_{t-1})`.

    See `nadam` and `adamw`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.nadamw(0.1, weight_decay=0.5)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -0.5])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]
        [0.8026, -0.8026]
    """
    return adamw(
        learning_rate, b1, b2, eps, eps_root, mu_dtype, weight_decay, mask, nesterov=nesterov, nu_dtype=nu_dtype
    )
