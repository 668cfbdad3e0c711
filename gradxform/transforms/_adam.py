"""Adam (Kingma & Ba, 2015), NAdam (Dozat, 2016) and AdamW (Loshchilov & Hutter, 2019)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByAdamState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    mu: Any  # first moment, like params (in mu_dtype if given)
    nu: Any  # second moment, like params (in nu_dtype if given)


_MOMENTS = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT, nesterov=_hyper.BOOL)


@_tree.leaf_rule(static=("nesterov",))
def _adam_rule(g, mu, nu, s: _tree.MomentScalars, *, nesterov):
    x = g.astype(s.eps.dtype)
    # The update reads the new moments before they are rounded to their storage dtype
    # (mu_dtype=bfloat16 loses nothing this step), as optax does; only the state is rounded.
    m = _tree.update_moment(x, mu, s.b1)
    v = _tree.update_moment(_tree.abs_sq(x), nu, s.b2)
    m_hat = _tree.debiased_first_moment(m, x, s, nesterov)
    v_hat = v / s.bc2
    # eps = eps_root = 0 allows v = 0, which forces m = 0 (m^2 <= v / (1 - b2) in exact arithmetic):
    # 0/0 is defined as 0, its limit; a nonzero m over v = 0 (g^2 underflowed) stays inf.
    u = jnp.where(m_hat == 0, 0, m_hat / (jnp.sqrt(v_hat + s.eps_root) + s.eps))
    return u.astype(g.dtype), m.astype(mu.dtype), v.astype(nu.dtype)


@_hyper.declare(**_MOMENTS)
def scale_by_adam(
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""Rescales by Adam's bias-corrected moment estimates (Kingma & Ba, 2015, Algorithm 1).

    .. math::
        \mu_t = \beta_1 \mu_{t-1} + (1-\beta_1) g_t, \qquad
        \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) g_t \odot g_t, \\
        \hat \mu_t = \frac{\mu_t}{1-\beta_1^t}, \qquad \hat \nu_t = \frac{\nu_t}{1-\beta_2^t}, \qquad
        u_t = \frac{\hat \mu_t}{\sqrt{\hat \nu_t + \epsilon_{root}} + \epsilon}

    With ``nesterov=True`` (NAdam, Dozat 2016),
    :math:`\hat \mu_t = \frac{\beta_1 \mu_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t}`.

    Note:
        The paper (and optax, PyTorch) puts :math:`\epsilon` outside the root, as
        here; Goodfellow et al. (2016), Algorithm 8.7, writes
        :math:`\hat \mu / (\delta + \sqrt{\hat \nu})` too, while some texts write
        :math:`\sqrt{\hat \nu + \delta}`, which is ``eps=0, eps_root=delta``.

    Args:
        b1, b2: decay rates :math:`\beta_1, \beta_2` in [0, 1).
        eps, eps_root: non-negative stabilizers outside / inside the root.
        mu_dtype: dtype of the first moment (default: the params' dtype).
        nesterov: use NAdam's look-ahead first moment.
        nu_dtype: dtype of the second moment (default: the params' dtype, float32 for
            float16 params, whose range cannot hold squared gradients above 256).

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState`.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps`` or ``eps_root``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_adam()
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 6) for x in u.tolist()]  # the first step is sign(g) up to eps
        [1.0, -1.0]

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
        Dozat, "Incorporating Nesterov Momentum into Adam", ICLR workshop 2016.
    """
    fn = "scale_by_adam"

    def init_fn(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.square_zeros_like(params, nu_dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAdamState, updates, "mu")
        count = _tree.safe_increment(state.count)
        updates, mu, nu = _tree.apply_rule(
            _adam_rule, updates, state.mu, state.nu, nesterov=nesterov, squared=(False, True),
            scalars=lambda dtype: _tree.moment_scalars(b1, b2, eps, eps_root, count, dtype, nesterov),
        )
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_MOMENTS)
def adam(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    """Adam: ``chain(scale_by_adam(...), scale_by_learning_rate(learning_rate))``; see `scale_by_adam`.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> opt = gx.adam(1e-2)
        >>> params = {'w': jnp.ones(3)}
        >>> state = opt.init(params)
        >>> grads = jax.grad(lambda p: jnp.sum(p['w'] ** 2))(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]
        [0.99, 0.99, 0.99]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


@_hyper.declare(learning_rate=_hyper.LR, weight_decay=_hyper.NONNEG, **_MOMENTS)
def adamw(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    weight_decay=1e-4,
    mask=None,
    *,
    nesterov: bool = False,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""AdamW: ``chain(scale_by_adam, add_decayed_weights(weight_decay, mask), scale_by_learning_rate)``.

    The update is :math:`-\eta\,(u^{adam}_t + \lambda \theta_t)` (optax's and PyTorch's
    form: the decay is scaled by the learning rate). Loshchilov & Hutter (2019),
    Algorithm 2, write :math:`-\eta_t(\alpha u^{adam}_t + \lambda\theta_t)` with a
    schedule multiplier :math:`\eta_t`; the form :math:`-\alpha u^{adam}_t - \lambda\theta_t`
    (decay not scaled by the learning rate) is ``weight_decay = lambda / alpha`` at a
    constant learning rate.

    References:
        Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
