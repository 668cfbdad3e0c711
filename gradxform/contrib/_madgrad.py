"""MADGRAD, a momentumized, adaptive, dual averaged gradient method (Defazio & Jelassi, 2021)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights

__all__ = ["MadgradState", "madgrad", "scale_by_madgrad"]


class MadgradState(NamedTuple):
    count: jax.Array  # shape (), int32: k, the number of updates so far
    grad_sum_sq: Any  # nu_k = sum_i lambda_i g_i^2, like params
    s: Any  # s_k = sum_i lambda_i g_i, like params
    x0: Any  # x_0, the params init saw, like params


class _MadgradScalars(NamedTuple):
    lam: jax.Array  # lambda_k = (gamma_k + eps) sqrt(k + 1)
    eps: jax.Array
    c: jax.Array  # 1 - momentum


@_tree.leaf_rule
def _madgrad_rule(g, nu, s, x, x0, k: _MadgradScalars):
    grad = g.astype(k.lam.dtype)
    nu_new = nu.astype(grad.dtype) + k.lam * grad * grad
    s_new = s.astype(grad.dtype) + k.lam * grad
    root = jnp.cbrt(nu_new) + k.eps
    # root = 0 only where eps = 0 and every lambda_i g_i so far was 0, so s = 0 too: z = x_0, not 0/0.
    safe = root > 0
    z = x0.astype(grad.dtype) - jnp.where(safe, s_new / jnp.where(safe, root, 1), 0)
    u = k.c * (z - x.astype(grad.dtype))  # x_{k+1} - x_k = c (z_{k+1} - x_k)
    return u.astype(g.dtype), nu_new.astype(nu.dtype), s_new.astype(s.dtype)


_MADGRAD = dict(
    learning_rate=_hyper.NONNEG._replace(
        draw=(1e-3, 0.1), source="Defazio & Jelassi (2021): gamma_k >= 0 (it enters nu^(1/3), not a plain scale)",
        scalar=True,
    ),
    momentum=_hyper.DECAY,
    eps=_hyper.EPS._replace(draw=(1e-8, 1e-5)),
)


def _plus(a: Any, b: Any, dtype: Any) -> jax.Array:
    """a + b in `dtype`, summed in double precision first when both are Python numbers."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return _tree.hp(float(a) + float(b), dtype)
    return _tree.hp(a, dtype) + _tree.hp(b, dtype)


@_hyper.declare(**_MADGRAD)
def scale_by_madgrad(learning_rate: ScalarOrSchedule, momentum=0.9, eps=1e-6) -> GradientTransformation:
    r"""MADGRAD's step (Defazio & Jelassi, 2021, Algorithm 1), learning rate included.

    With :math:`x_k` the params, :math:`x_0` the params ``init`` saw and
    :math:`c = 1 - \text{momentum}`,

    .. math::
        \lambda_k = (\gamma_k + \epsilon)\sqrt{k + 1}, \quad
        s_{k+1} = s_k + \lambda_k g_k, \quad
        \nu_{k+1} = \nu_k + \lambda_k g_k^2, \\
        z_{k+1} = x_0 - \frac{s_{k+1}}{\nu_{k+1}^{1/3} + \epsilon}, \qquad
        u_k = x_{k+1} - x_k = c\,(z_{k+1} - x_k)

    The update already descends (it is the step, not a direction): do not chain a
    learning rate after it. :math:`\gamma_k + \epsilon` in :math:`\lambda_k` is the
    authors' implementation (and optax's); Algorithm 1 has :math:`\gamma_k`.
    ``momentum=0`` is plain dual averaging, :math:`x_{k+1} = z_{k+1}`.

    Args:
        learning_rate: :math:`\gamma_k \ge 0`, a number or a schedule of the
            0-based step :math:`k`.
        momentum: :math:`1 - c \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`, added to :math:`\nu^{1/3}` and to :math:`\gamma_k`.

    Returns:
        A `GradientTransformation` with state `MadgradState`; its update needs the params.

    Raises:
        ValueError: ``learning_rate < 0``, ``momentum`` outside [0, 1) or ``eps < 0``;
            ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.scale_by_madgrad(0.125, momentum=0.5, eps=0.0)
        >>> params = jnp.array([1.0, 1.0])
        >>> u, state = tx.update(jnp.array([1.0, 0.0]), tx.init(params), params)
        >>> u.tolist()  # 0.5 * (-0.125 / 0.125^(1/3)), and 0 where g = 0
        [-0.125, 0.0]

    References:
        Defazio & Jelassi, "Adaptivity without Compromise: A Momentumized, Adaptive,
        Dual Averaged Gradient Method for Stochastic Optimization", JMLR 2022
        (arXiv:2101.11075, 2021), Algorithm 1.
    """
    fn = "scale_by_madgrad"

    def init_fn(params):
        return MadgradState(
            count=jnp.zeros([], jnp.int32),
            grad_sum_sq=_tree.square_zeros_like(params),
            s=_tree.zeros_like(params),
            x0=jax.tree_util.tree_map(lambda p: jnp.array(p, copy=True), params),  # own buffers (donation)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_update(fn, state, MadgradState, updates, "s")
        _checks.require_params(params, fn)
        gamma = learning_rate(state.count) if callable(learning_rate) else learning_rate

        def scalars(dtype):
            lam = _plus(gamma, eps, dtype) * jnp.sqrt(state.count.astype(dtype) + 1)
            return _MadgradScalars(lam, _tree.hp(eps, dtype), _tree.decay(momentum, dtype).complement)

        updates, nu, s = _tree.apply_rule(
            _madgrad_rule, updates, state.grad_sum_sq, state.s, inputs=(params, state.x0), scalars=scalars
        )
        return updates, MadgradState(_tree.safe_increment(state.count), nu, s, state.x0)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(**_MADGRAD, weight_decay=_hyper.NONNEG)
def madgrad(learning_rate: ScalarOrSchedule, momentum=0.9, weight_decay=0.0, eps=1e-6) -> GradientTransformation:
    r"""MADGRAD: ``chain(add_decayed_weights(weight_decay), scale_by_madgrad(learning_rate, momentum, eps))``.

    The weight decay is added to the gradient, :math:`g_k + \lambda x_k`, before the
    dual averaging (the authors' default, not decoupled); see `scale_by_madgrad`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.madgrad(0.125, momentum=0.0, eps=0.0)
        >>> params = jnp.array([1.0, -1.0])
        >>> updates, _ = opt.update(jnp.array([1.0, 1.0]), opt.init(params), params)
        >>> gx.apply_updates(params, updates).tolist()  # x_0 - 0.125 / 0.125^(1/3)
        [0.75, -1.25]
    """
    return chain(add_decayed_weights(weight_decay), scale_by_madgrad(learning_rate, momentum, eps))
