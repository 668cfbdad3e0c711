"""AdamW with D-Adaptation (Defazio & Mishchenko, 2023): `dadapt_adamw`."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule

__all__ = ["DAdaptAdamWState", "dadapt_adamw"]


class DAdaptAdamWState(NamedTuple):
    exp_avg: Any  # m, like params
    exp_avg_sq: Any  # v, like params (float32 for float16 params)
    grad_sum: Any  # s, like params
    estim_lr: jax.Array  # shape (), float32 (float64 for float64 params): d
    numerator_weighted: jax.Array  # shape (), float32 (float64): r
    count: jax.Array  # shape (), int32: number of updates so far


class _DAdaptScalars(NamedTuple):
    b1: _tree.Decay
    b2: _tree.Decay
    sb2: _tree.Decay  # sqrt(beta2) and 1 - sqrt(beta2)
    dlr: jax.Array  # gamma_k d_k
    eps: jax.Array
    weight_decay: jax.Array


def check_betas(fn: str, betas: Any) -> tuple:
    """``betas = (b1, b2)``, each in [0, 1) (traced values are not checked)."""
    try:
        b1, b2 = betas
    except (TypeError, ValueError):
        raise ValueError(f"{fn}: `betas` must be a pair (b1, b2); got betas={betas!r}.") from None
    for b in (b1, b2):
        _checks.check_range("betas", b, 0.0, 1.0, high_inclusive=False, fn=fn)
    return b1, b2


def sqrt_decay(beta: Any, dtype: Any) -> _tree.Decay:
    r""":math:`\sqrt\beta` and :math:`1 - \sqrt\beta`, formed in double precision for a Python number."""
    if isinstance(beta, (int, float)) and not isinstance(beta, bool):
        root = math.sqrt(float(beta))
        return _tree.Decay(_tree.hp(root, dtype), _tree.hp(1.0 - root, dtype))
    root = jnp.sqrt(_tree.hp(beta, dtype))
    return _tree.Decay(root, 1 - root)


def step_size(learning_rate: Any, b1: Any, b2: Any, count: jax.Array, dtype: Any) -> jax.Array:
    r""":math:`\gamma_k = \eta_k \sqrt{1 - \beta_2^{k+1}} / (1 - \beta_1^{k+1})` in `dtype` (`count` = k)."""
    t = _tree.safe_increment(count)
    rate = learning_rate(count) if callable(learning_rate) else learning_rate
    bc = jnp.sqrt(_tree.bias_correction(b2, t, dtype)) / _tree.bias_correction(b1, t, dtype)
    return _tree.hp(rate, dtype) * bc


@_tree.leaf_rule
def _dadapt_rule(g, m, v, s, p, c: _DAdaptScalars):
    x = g.astype(c.eps.dtype)
    acc = c.dlr.dtype
    sw = s.astype(x.dtype)
    weighted = jnp.where(sw == 0, 0, sw / (jnp.sqrt(v.astype(x.dtype)) + c.eps))  # eps = 0 at step 0: 0, not 0/0
    inner = jnp.vdot(x, weighted).astype(acc)  # <g_k, s_k>_{A_k^{-1}}
    cg = c.dlr.astype(x.dtype) * x
    m_new = c.b1.rate * m.astype(x.dtype) + c.b1.complement * cg
    v_new = c.b2.rate * v.astype(x.dtype) + c.b2.complement * x * x
    s_new = c.sb2.rate * s.astype(x.dtype) + c.sb2.complement * cg
    l1 = jnp.sum(jnp.abs(s_new)).astype(acc)
    denom = jnp.sqrt(v_new) + c.eps
    step = jnp.where(denom > 0, m_new / jnp.where(denom > 0, denom, 1), 0)
    u = -c.weight_decay * c.dlr.astype(x.dtype) * p.astype(x.dtype) - step
    return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype), s_new.astype(s.dtype), inner, l1


def estimate_distance(d, numerator, l1, coef):
    r""":math:`\max(d, \mathrm{coef} \cdot r / \|s\|_1)`, and :math:`d` where :math:`\|s\|_1 = 0`."""
    positive = l1 > 0
    d_hat = coef * numerator / jnp.where(positive, l1, 1)
    return jnp.where(positive, jnp.maximum(d, d_hat), d).astype(d.dtype)


@_hyper.declare(
    learning_rate=_hyper.LR._replace(scalar=True),
    eps=_hyper.EPS,
    estim_lr0=_hyper.POSITIVE._replace(draw=(1e-8, 1e-2), source="Defazio & Mishchenko (2023): d_0 > 0"),
    weight_decay=_hyper.NONNEG,
)
def dadapt_adamw(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple = (0.9, 0.999),
    eps=1e-8,
    estim_lr0=1e-6,
    weight_decay=0.0,
) -> GradientTransformation:
    r"""AdamW whose step size is learned by D-Adaptation (Defazio & Mishchenko, 2023).

    D-Adaptation estimates :math:`d_k`, a lower bound on the distance to the
    solution, and scales Adam's steps by it. With :math:`\gamma_k = \eta_k
    \sqrt{1 - \beta_2^{k+1}} / (1 - \beta_1^{k+1})` (the learning rate with Adam's
    bias correction), :math:`c_k = \gamma_k d_k` and :math:`A_k =
    \operatorname{diag}(\sqrt{v_k} + \epsilon)`, step :math:`k = 0, 1, \dots` is

    .. math::
        r_{k+1} &= \sqrt{\beta_2}\, r_k + (1 - \sqrt{\beta_2})\, c_k \langle g_k, s_k\rangle_{A_k^{-1}} \\
        m_{k+1} &= \beta_1 m_k + (1 - \beta_1)\, c_k g_k, \qquad
        v_{k+1} = \beta_2 v_k + (1 - \beta_2)\, g_k^2 \\
        s_{k+1} &= \sqrt{\beta_2}\, s_k + (1 - \sqrt{\beta_2})\, c_k g_k \\
        d_{k+1} &= \max\left(d_k, \frac{r_{k+1}}{(1 - \sqrt{\beta_2}) \|s_{k+1}\|_1}\right), \qquad
        u_k = -\lambda c_k \theta_k - \frac{m_{k+1}}{\sqrt{v_{k+1}} + \epsilon}

    :math:`d_{k+1} = d_k` while :math:`s_{k+1} = 0` (all-zero gradients so far,
    where optax gives NaN). The update is the step to add to the params (it
    already points downhill); the learning rate is a schedule around 1.0.
    ``init`` reads only the params' shapes and dtypes.

    Args:
        learning_rate: :math:`\eta_k`, a float or a schedule (typically 1.0, or a
            schedule with peak 1.0); any value finite in float32.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        eps: :math:`\epsilon \ge 0`.
        estim_lr0: :math:`d_0 > 0`, the initial under-estimate of the distance.
        weight_decay: :math:`\lambda \ge 0`, AdamW's decoupled weight decay.

    Returns:
        A `GradientTransformation` with state `DAdaptAdamWState`; its update
        needs the params.

    Raises:
        ValueError: a ``betas`` entry outside [0, 1), ``eps < 0``,
            ``estim_lr0 <= 0``, ``weight_decay < 0``; ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.dadapt_adamw(eps=0.0)
        >>> params = jnp.array([1.0, 2.0])
        >>> u, state = tx.update(jnp.array([3.0, -4.0]), tx.init(params), params)
        >>> [round(x, 12) for x in u.tolist()]  # Adam's first step, -d_0 sign(g)
        [-1e-06, 1e-06]

    References:
        Defazio & Mishchenko, "Learning-Rate-Free Learning by D-Adaptation",
        ICML 2023, Algorithm 4 (Adam with D-Adaptation), with AdamW's decoupled
        weight decay and Adam's bias correction in the step size, as the authors'
        implementation.
    """
    fn = "dadapt_adamw"
    b1, b2 = check_betas(fn, betas)

    def init_fn(params):
        acc = _tree.accumulation_dtype(params)
        return DAdaptAdamWState(
            exp_avg=_tree.zeros_like(params),
            exp_avg_sq=_tree.square_zeros_like(params),
            grad_sum=_tree.zeros_like(params),
            estim_lr=_tree.hp(estim_lr0, acc),
            numerator_weighted=jnp.zeros((), acc),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_update(fn, state, DAdaptAdamWState, updates, "exp_avg")
        _checks.require_params(params, fn)
        updates = _tree.as_updates(updates, state.exp_avg, state.exp_avg_sq, state.grad_sum, squared=(False, True, False))
        d = state.estim_lr
        acc = d.dtype
        dlr = step_size(learning_rate, b1, b2, state.count, acc) * d

        def scalars(dtype):
            return _DAdaptScalars(
                _tree.decay(b1, dtype), _tree.decay(b2, dtype), sqrt_decay(b2, dtype), _tree.cast(dlr, dtype),
                _tree.hp(eps, dtype), _tree.hp(weight_decay, dtype),
            )

        by_dtype = _tree.per_dtype(scalars)

        def one(g, m, v, s, p):
            if g is None:
                return None, m, v, s, None, None
            return _dadapt_rule(g, m, v, s, p, by_dtype(_tree.compute_dtype(g.dtype)))

        u, m, v, s, inner, l1 = _tree.map_leaves(
            one, updates, state.exp_avg, state.exp_avg_sq, state.grad_sum, params, n_out=6
        )
        inner = sum((x.astype(acc) for x in jax.tree_util.tree_leaves(inner)), jnp.zeros((), acc))
        l1 = sum((x.astype(acc) for x in jax.tree_util.tree_leaves(l1)), jnp.zeros((), acc))
        sb2 = sqrt_decay(b2, acc)
        numerator = sb2.rate * state.numerator_weighted + sb2.complement * dlr * inner
        d_new = estimate_distance(d, numerator, sb2.complement * l1, np.ones((), acc))
        return u, DAdaptAdamWState(m, v, s, d_new, numerator.astype(acc), _tree.safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)
