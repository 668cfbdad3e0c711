"""ACProp (Zhuang et al., 2021): `scale_by_acprop` and `acprop`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._adabelief import ScaleByBeliefState
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = ["acprop", "scale_by_acprop"]


class _ACPropScalars(NamedTuple):
    b1: _tree.Decay
    b2: _tree.Decay
    bc2_prev: jax.Array  # 1 - b2^(t-1), at least 1 - b2 (its value at t = 1 is not read)
    first: jax.Array  # bool, shape (): t = 1, when s_0 holds no gradient yet
    eps: jax.Array
    eps_root: jax.Array


@_tree.leaf_rule
def _acprop_rule(g, mu, nu, s: _ACPropScalars):
    x = g.astype(s.eps.dtype)
    # Asynchronous: the step divides g_t by the second moment of the steps before it.
    s_hat = nu.astype(s.bc2_prev.dtype) / s.bc2_prev
    u = x / (jnp.where(s.first, jnp.ones_like(s_hat), jnp.sqrt(s_hat)) + s.eps)
    # Centered: the prediction error of g_t by the momentum the previous steps built.
    residual = x - mu.astype(x.dtype)
    mu_new = _tree.update_moment(x, mu, s.b1)
    nu_new = _tree.update_moment(_tree.abs_sq(residual), nu, s.b2) + s.eps_root
    return u.astype(g.dtype), mu_new.astype(mu.dtype), nu_new.astype(nu.dtype)


_ACPROP = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT)


@_hyper.declare(**_ACPROP)
def scale_by_acprop(b1=0.9, b2=0.999, eps=1e-16, eps_root=1e-16) -> GradientTransformation:
    r"""Rescales by ACProp's asynchronous, centered second moment (Zhuang et al., 2021).

    .. math::
        u_t = \frac{g_t}{\sqrt{\hat s_{t-1}} + \epsilon}, \qquad
        \hat s_{t-1} = \frac{s_{t-1}}{1 - \beta_2^{t-1}} \ (\sqrt{\hat s_0} := 1), \\
        s_t = \beta_2 s_{t-1} + (1 - \beta_2)(g_t - m_{t-1})^2 + \epsilon_{root}, \qquad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t

    The denominator of step :math:`t` holds the gradients up to step :math:`t - 1`
    only (the *asynchronous* update), and the second moment tracks the deviation of
    each gradient from the momentum that predicted it (the *centering* of AdaBelief).
    At :math:`t = 1` no second moment is known yet and the step is
    :math:`g_1 / (1 + \epsilon)`. As in the authors' implementation and optax, the
    numerator is the gradient, not the momentum.

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the momentum.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
        eps: :math:`\epsilon \ge 0`, added to the root.
        eps_root: :math:`\epsilon_{root} \ge 0`, added to the second moment at every step.

    Returns:
        A `GradientTransformation` with state `ScaleByBeliefState` (optax's layout).

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps`` or ``eps_root``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.scale_by_acprop(b1=0.5, b2=0.8, eps=0.5, eps_root=0.0)
        >>> u, state = tx.update(jnp.array([3.0, -1.0]), tx.init(jnp.zeros(2)))
        >>> u.tolist()  # g / (1 + eps)
        [2.0, -0.6666666865348816]
        >>> u, state = tx.update(jnp.array([1.0, 2.0]), state)
        >>> [round(x, 6) for x in u.tolist()]  # s_1 = 0.2 g_1^2, so sqrt(s_1 / 0.2) = |g_1|
        [0.285714, 1.333333]

    References:
        Zhuang et al., "Momentum Centering and Asynchronous Update for Adaptive Gradient
        Methods", NeurIPS 2021, Algorithm 2 (ACProp), in the ordering of the authors'
        implementation (github.com/juntang-zhuang/ACProp-Optimizer).
    """
    fn = "scale_by_acprop"

    def init_fn(params):
        return ScaleByBeliefState(
            count=jnp.zeros([], jnp.int32), mu=_tree.zeros_like(params), nu=_tree.square_zeros_like(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByBeliefState, updates, "mu")
        first = state.count == 0

        def scalars(dtype):
            real = _tree.real_dtype(dtype)
            return _ACPropScalars(
                b1=_tree.decay(b1, dtype),
                b2=_tree.decay(b2, real),
                bc2_prev=_tree.bias_correction(b2, jnp.maximum(state.count, 1), real),
                first=first,
                eps=_tree.hp(eps, dtype),
                eps_root=_tree.hp(eps_root, real),
            )

        updates, mu, nu = _tree.apply_rule(_acprop_rule, updates, state.mu, state.nu, scalars=scalars)
        return updates, ScaleByBeliefState(count=_tree.safe_increment(state.count), mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_ACPROP, weight_decay=_hyper.NONNEG)
def acprop(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-16,
    eps_root=1e-16,
    weight_decay=0.0,
    mask: Any = None,
) -> GradientTransformation:
    r"""ACProp: ``chain(scale_by_acprop(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))``.

    The step is :math:`-\eta_t(u_t + \lambda\theta_{t-1})` with :math:`u_t` of
    `scale_by_acprop` (the weight decay is scaled by the learning rate, as in optax
    and PyTorch).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.acprop(0.1)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, 0.5])}, opt.init(params), params)
        >>> gx.apply_updates(params, updates)['w'].tolist()  # the first step is -lr * g
        [0.949999988079071, -1.0499999523162842]

    References:
        Zhuang et al., "Momentum Centering and Asynchronous Update for Adaptive Gradient
        Methods", NeurIPS 2021.
    """
    return chain(
        scale_by_acprop(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
