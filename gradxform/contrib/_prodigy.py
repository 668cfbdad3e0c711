"""Prodigy (Mishchenko & Defazio, 2023): `prodigy`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform.contrib._dadapt_adamw import (
    check_betas,
    estimate_distance,
    sqrt_decay,
    step_size,
)

__all__ = ["ProdigyState", "prodigy"]


class ProdigyState(NamedTuple):
    exp_avg: Any  # m, like params
    exp_avg_sq: Any  # v, like params (float32 for float16 params)
    grad_sum: Any  # s, like params
    params0: Any  # x_0, the params init saw
    estim_lr: jax.Array  # shape (), float32 (float64 for float64 params): d
    numerator_weighted: jax.Array  # shape (), float32 (float64): r
    count: jax.Array  # shape (), int32: number of updates so far


class _ProdigyScalars(NamedTuple):
    b1: _tree.Decay
    b2: _tree.Decay
    b3: jax.Array
    d: jax.Array  # d_k
    dlr: jax.Array  # gamma_k d_k
    s_weight: jax.Array  # gamma_k d_k^2 / d_0 (d_k^2 / d_0 with safeguard_warmup)
    eps: jax.Array
    weight_decay: jax.Array


@_tree.leaf_rule
def _prodigy_rule(g, m, v, s, p, p0, c: _ProdigyScalars):
    x = g.astype(c.eps.dtype)
    acc = c.dlr.dtype
    inner = jnp.vdot(x, p0.astype(x.dtype) - p.astype(x.dtype)).astype(acc)  # <g_k, x_0 - x_k>
    dg = c.d * x
    m_new = c.b1.rate * m.astype(x.dtype) + c.b1.complement * dg
    v_new = c.b2.rate * v.astype(x.dtype) + c.b2.complement * dg * dg
    s_new = c.b3 * s.astype(x.dtype) + c.s_weight * x
    l1 = jnp.sum(jnp.abs(s_new)).astype(acc)
    denom = jnp.sqrt(v_new) + c.d * c.eps
    step = jnp.where(denom > 0, m_new / jnp.where(denom > 0, denom, 1), 0)
    u = -c.weight_decay * c.dlr * p.astype(x.dtype) - c.dlr * step
    return u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype), s_new.astype(s.dtype), inner, l1


@_hyper.declare(
    learning_rate=_hyper.LR._replace(scalar=True),
    beta3=_hyper.MOMENTUM,
    eps=_hyper.EPS,
    estim_lr0=_hyper.POSITIVE._replace(draw=(1e-8, 1e-2), source="Mishchenko & Defazio (2023): d_0 > 0"),
    estim_lr_coef=_hyper.POSITIVE._replace(draw=(0.1, 10.0)),
    weight_decay=_hyper.NONNEG,
    safeguard_warmup=_hyper.BOOL,
)
def prodigy(
    learning_rate: ScalarOrSchedule = 1.0,
    betas: tuple = (0.9, 0.999),
    beta3: Any | None = None,
    eps=1e-8,
    estim_lr0=1e-6,
    estim_lr_coef=1.0,
    weight_decay=0.0,
    safeguard_warmup: bool = False,
) -> GradientTransformation:
    r"""Prodigy: AdamW whose step size is learned from the distance travelled (Mishchenko & Defazio, 2023).

    A D-Adaptation variant whose estimate :math:`d_k` of the distance to the
    solution weights recent gradients more. With :math:`\gamma_k = \eta_k
    \sqrt{1 - \beta_2^{k+1}} / (1 - \beta_1^{k+1})` (the learning rate with Adam's
    bias correction) and :math:`x_0` the params ``init`` saw, step
    :math:`k = 0, 1, \dots` is

    .. math::
        m_{k+1} &= \beta_1 m_k + (1 - \beta_1)\, d_k g_k, \qquad
        v_{k+1} = \beta_2 v_k + (1 - \beta_2)\, d_k^2 g_k^2 \\
        r_{k+1} &= \beta_3 r_k + \frac{\gamma_k d_k^2}{d_0} \langle g_k, x_0 - x_k\rangle, \qquad
        s_{k+1} = \beta_3 s_k + \frac{\gamma_k d_k^2}{d_0} g_k \\
        d_{k+1} &= \max\left(d_k, c_d \frac{r_{k+1}}{\|s_{k+1}\|_1}\right), \qquad
        u_k = -\lambda \gamma_k d_k x_k - \gamma_k d_k \frac{m_{k+1}}{\sqrt{v_{k+1}} + d_k \epsilon}

    :math:`d_{k+1} = d_k` while :math:`s_{k+1} = 0` (all-zero gradients so far,
    where optax gives NaN). ``safeguard_warmup`` drops :math:`\gamma_k` from
    :math:`s` (Section 6: for warm-up schedules). The factor :math:`1/d_0` (and
    the paper's :math:`1 - \beta_3`) cancels in the ratio. The update is the step
    to add to the params; ``init`` keeps a copy of them.

    Args:
        learning_rate: :math:`\eta_k`, a float or a schedule (typically 1.0, or a
            schedule with peak 1.0); any value finite in float32.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        beta3: :math:`\beta_3 \in [0, 1)`, the decay of :math:`r` and :math:`s`
            (None: :math:`\sqrt{\beta_2}`).
        eps: :math:`\epsilon \ge 0`, relative to :math:`d_k`.
        estim_lr0: :math:`d_0 > 0`, the initial under-estimate of the distance.
        estim_lr_coef: :math:`c_d > 0`, multiplies each estimate.
        weight_decay: :math:`\lambda \ge 0`, AdamW's decoupled weight decay.
        safeguard_warmup: leave the learning rate out of :math:`s`.

    Returns:
        A `GradientTransformation` with state `ProdigyState`; its update needs the
        params.

    Raises:
        ValueError: a ``betas`` entry or ``beta3`` outside [0, 1), ``eps < 0``,
            ``estim_lr0 <= 0``, ``estim_lr_coef <= 0``, ``weight_decay < 0``;
            ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.prodigy(eps=0.0)
        >>> params = jnp.array([1.0, 2.0])
        >>> u, state = tx.update(jnp.array([3.0, -4.0]), tx.init(params), params)
        >>> [round(x, 12) for x in u.tolist()]  # Adam's first step, -d_0 sign(g)
        [-1e-06, 1e-06]

    References:
        Mishchenko & Defazio, "Prodigy: An Expeditiously Adaptive Parameter-Free
        Learner", ICML 2024, Algorithm 4 (Prodigy, Adam version), with AdamW's
        decoupled weight decay and Adam's bias correction in the step size, as the
        authors' implementation.
    """
    fn = "prodigy"
    b1, b2 = check_betas(fn, betas)

    def init_fn(params):
        acc = _tree.accumulation_dtype(params)
        return ProdigyState(
            exp_avg=_tree.zeros_like(params),
            exp_avg_sq=_tree.square_zeros_like(params),
            grad_sum=_tree.zeros_like(params),
            params0=jax.tree_util.tree_map(lambda p: jnp.array(p, copy=True), params),  # own buffers (donation)
            estim_lr=_tree.hp(estim_lr0, acc),
            numerator_weighted=jnp.zeros((), acc),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_update(fn, state, ProdigyState, updates, "exp_avg")
        _checks.require_params(params, fn)
        updates = _tree.as_updates(updates, state.exp_avg, state.exp_avg_sq, state.grad_sum, squared=(False, True, False))
        d = state.estim_lr
        acc = d.dtype
        dlr = step_size(learning_rate, b1, b2, state.count, acc) * d
        d_over_d0 = d / _tree.hp(estim_lr0, acc)
        s_weight = d_over_d0 * (d if safeguard_warmup else dlr)
        b3 = sqrt_decay(b2, acc).rate if beta3 is None else _tree.hp(beta3, acc)

        def scalars(dtype):
            return _ProdigyScalars(
                _tree.decay(b1, dtype), _tree.decay(b2, dtype), _tree.cast(b3, dtype), _tree.cast(d, dtype),
                _tree.cast(dlr, dtype), _tree.cast(s_weight, dtype), _tree.hp(eps, dtype),
                _tree.hp(weight_decay, dtype),
            )

        by_dtype = _tree.per_dtype(scalars)

        def one(g, m, v, s, p, p0):
            if g is None:
                return None, m, v, s, None, None
            return _prodigy_rule(g, m, v, s, p, p0, by_dtype(_tree.compute_dtype(g.dtype)))

        u, m, v, s, inner, l1 = _tree.map_leaves(
            one, updates, state.exp_avg, state.exp_avg_sq, state.grad_sum, params, state.params0, n_out=6
        )
        inner = sum((x.astype(acc) for x in jax.tree_util.tree_leaves(inner)), jnp.zeros((), acc))
        l1 = sum((x.astype(acc) for x in jax.tree_util.tree_leaves(l1)), jnp.zeros((), acc))
        numerator = b3 * state.numerator_weighted + d_over_d0 * dlr * inner
        d_new = estimate_distance(d, numerator, l1, _tree.hp(estim_lr_coef, acc))
        new_state = ProdigyState(m, v, s, state.params0, d_new, numerator.astype(acc), _tree.safe_increment(state.count))
        return u, new_state

    return GradientTransformation(init_fn, update_fn)
