"""MoMo and MoMo-Adam (Schaipp et al., 2024): `momo`, `momo_adam`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformationExtraArgs, ScalarOrSchedule

__all__ = ["MomoAdamState", "MomoState", "momo", "momo_adam"]


class MomoState(NamedTuple):
    exp_avg: Any  # d_k, the average of the gradients, like params
    barf: jax.Array  # shape (), float32 (float64 for float64 params): the average of the losses
    gamma: jax.Array  # shape (), float32 (float64): the average of <g_k, x_k>
    lb: jax.Array  # shape (), float32 (float64): the lower bound f_* of the loss
    count: jax.Array  # shape (), int32: number of updates so far


class MomoAdamState(NamedTuple):
    exp_avg: Any  # d_k, the average of the gradients, like params
    exp_avg_sq: Any  # v_k, the average of the squared gradients, like params
    barf: jax.Array  # shape (), float32 (float64 for float64 params): the average of the losses
    gamma: jax.Array  # shape (), float32 (float64): the average of <g_k, x_k>
    lb: jax.Array  # shape (), float32 (float64): the lower bound f_* of the loss
    count: jax.Array  # shape (), int32: number of updates so far


class _AvgScalars(NamedTuple):
    b1: _tree.Decay
    b2: _tree.Decay
    bc2: jax.Array  # 1 - b2^(k+1)
    eps: jax.Array


class _StepScalars(NamedTuple):
    tau: jax.Array  # the step size tau_k
    wd: jax.Array  # alpha_k * lambda
    bc2: jax.Array
    eps: jax.Array


def _sum(x: jax.Array, acc: Any) -> jax.Array:
    return jnp.sum(x).astype(acc)


@_tree.leaf_rule(static=("adam", "acc"))
def _averages_rule(g, d, v, x, s: _AvgScalars, *, adam, acc):
    """The new averages d_k (and v_k) of one leaf, and its terms of <g, x>, <d, x>, ||d||^2_{D^-1}."""
    gw = g.astype(s.eps.dtype)
    xw = x.astype(gw.dtype)
    d_new = _tree.update_moment(gw, d, s.b1).astype(d.dtype)
    dw = d_new.astype(gw.dtype)
    if adam:
        v_new = _tree.update_moment(gw * gw, v, s.b2).astype(v.dtype)
        sq = jnp.where(dw == 0, 0, dw * dw / (jnp.sqrt(v_new.astype(gw.dtype) / s.bc2) + s.eps))  # never 0/0
    else:
        v_new = v
        sq = dw * dw
    return d_new, v_new, _sum(gw * xw, acc), _sum(dw * xw, acc), _sum(sq, acc)


@_tree.leaf_rule(static=("adam",))
def _step_rule(g, d, v, x, s: _StepScalars, *, adam):
    """u = (x - tau D^-1 d) / (1 + alpha lambda) - x = -(tau D^-1 d + alpha lambda x) / (1 + alpha lambda)."""
    dw = d.astype(s.tau.dtype)
    if adam:
        dw = jnp.where(dw == 0, 0, dw / (jnp.sqrt(v.astype(dw.dtype) / s.bc2) + s.eps))  # eps = 0, d = 0: 0
    u = -(s.tau * dw + s.wd * x.astype(dw.dtype)) / (1 + s.wd)
    return (u.astype(g.dtype),)


def _momo_update(
    fn, updates, state, params, value, *, adam, learning_rate, betas, eps, lower_bound, weight_decay, adapt
):
    state_type = MomoAdamState if adam else MomoState
    _checks.check_update(fn, state, state_type, updates, "exp_avg")
    _checks.require_params(params, fn)
    if value is None:
        raise ValueError(f"{fn}.update needs the loss: call update(updates, state, params, value=loss).")
    acc = state.barf.dtype
    count = state.count
    b1, b2 = betas
    if adam:
        beta = _tree.decay(b1, acc)
        rho = _tree.bias_correction(b1, _tree.safe_increment(count), acc)
    else:  # the averages start at the first sample: beta = 0 at k = 0
        first = count == 0
        d = _tree.decay(b1, acc)
        beta = _tree.Decay(jnp.where(first, 0, d.rate).astype(acc), jnp.where(first, 1, d.complement).astype(acc))
        rho = jnp.ones((), acc)
    v_state = state.exp_avg_sq if adam else state.exp_avg

    def avg_scalars(dtype):
        if adam:
            dec = _tree.decay(b1, dtype)
            bc2 = _tree.bias_correction(b2, _tree.safe_increment(count), dtype)
        else:
            dec = _tree.Decay(beta.rate.astype(dtype), beta.complement.astype(dtype))
            bc2 = jnp.ones((), dtype)
        return _AvgScalars(dec, _tree.decay(b2 if adam else 0.0, dtype), bc2, _tree.hp(eps, dtype))

    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_tree.is_none)
    d_leaves = treedef.flatten_up_to(state.exp_avg)
    v_leaves = treedef.flatten_up_to(v_state)
    x_leaves = treedef.flatten_up_to(params)
    by_dtype = _tree.per_dtype(avg_scalars)
    new_d, new_v = list(d_leaves), list(v_leaves)
    gx = dx = dd = jnp.zeros((), acc)
    for i, g in enumerate(leaves):
        if g is None:
            continue
        s = by_dtype(_tree.compute_dtype(g.dtype))
        new_d[i], new_v[i], a, b, c = _averages_rule(
            g, d_leaves[i], v_leaves[i], x_leaves[i], s, adam=adam, acc=np.dtype(acc)
        )
        gx, dx, dd = gx + a, dx + b, dd + c

    f = jnp.asarray(value).astype(acc)
    barf = _tree.update_moment(f, state.barf, beta).astype(acc)
    gamma = _tree.update_moment(gx, state.gamma, beta).astype(acc)
    alpha = learning_rate(count) if callable(learning_rate) else learning_rate
    if callable(learning_rate) or not isinstance(weight_decay, (int, float)):
        wd = _tree.hp(alpha, acc) * _tree.hp(weight_decay, acc)
    else:
        wd = _tree.hp(float(alpha) * float(weight_decay), acc)
    alpha = _tree.hp(alpha, acc)
    one_wd = 1 + wd
    lb0 = _tree.hp(lower_bound, acc)
    lb = state.lb
    if adapt:  # reset f_* where the model's value is below it (Section 4)
        cap = one_wd * barf + dx - one_wd * gamma
        lb = jnp.where(cap < one_wd * rho * lb, jnp.maximum(cap / (2 * one_wd * rho), lb0), lb)
    nom = jnp.maximum(one_wd * (barf - rho * lb - gamma) + dx, 0)
    t1 = jnp.where(dd > 0, nom / jnp.where(dd > 0, dd, 1), 0)  # d = 0: no step, never 0 / 0
    tau = jnp.minimum(alpha / rho, t1)
    if adapt:
        lb = jnp.maximum((barf + dx - gamma - tau * dd / 2) / rho, lb0)
    lb = lb.astype(acc)

    def step_scalars(dtype):
        bc2 = _tree.bias_correction(b2, _tree.safe_increment(count), dtype) if adam else jnp.ones((), dtype)
        return _StepScalars(tau.astype(dtype), wd.astype(dtype), bc2, _tree.hp(eps, dtype))

    d_tree, v_tree = treedef.unflatten(new_d), treedef.unflatten(new_v)
    cast = _tree.as_updates(updates, state.exp_avg, squared=(False,))  # the dtype policy
    (out,) = _tree.apply_rule(_step_rule, cast, inputs=(d_tree, v_tree, params), scalars=step_scalars, adam=adam)
    count = _tree.safe_increment(count)
    if adam:
        return out, MomoAdamState(d_tree, v_tree, barf, gamma, lb, count)
    return out, MomoState(d_tree, barf, gamma, lb, count)


def _scalar_dtype(params: Any) -> np.dtype:
    return _tree.accumulation_dtype(params)


_MOMO_LR = _hyper.number(0.0, _hyper.F32_MAX, draw=(1e-2, 1.0), source="Schaipp et al. (2024): alpha_k >= 0 caps the step")._replace(
    scalar=True
)
_COMMON = {
    "lower_bound": _hyper.number(-_hyper.F32_MAX, _hyper.F32_MAX, draw=(-1.0, 0.0)),
    "weight_decay": _hyper.NONNEG,
    "adapt_lower_bound": _hyper.BOOL,
}


@_hyper.declare(learning_rate=_MOMO_LR, beta=_hyper.DECAY, **_COMMON)
def momo(
    learning_rate: ScalarOrSchedule = 1.0,
    beta=0.9,
    lower_bound=0.0,
    weight_decay=0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformationExtraArgs:
    r"""MoMo: SGD with momentum and a Polyak-type step size from a momentum model (Schaipp et al., 2024, Algorithm 1).

    With the loss :math:`f_k`, gradient :math:`g_k` and params :math:`x_k` of step :math:`k`,

    .. math::
        d_k = \beta d_{k-1} + (1-\beta) g_k, \quad
        \bar f_k = \beta \bar f_{k-1} + (1-\beta) f_k, \quad
        \gamma_k = \beta \gamma_{k-1} + (1-\beta) \langle g_k, x_k \rangle

        \tau_k = \min\left\{\alpha_k, \frac{\big((1+\alpha_k\lambda)(\bar f_k - f_* - \gamma_k)
        + \langle d_k, x_k\rangle\big)_+}{\|d_k\|^2}\right\}, \qquad
        x_{k+1} = \frac{x_k - \tau_k d_k}{1 + \alpha_k\lambda}

    The averages start at the first sample (:math:`d_0 = g_0`, the paper's variant
    without bias correction). The update is :math:`x_{k+1} - x_k`; :math:`d_k = 0`
    gives a zero update. ``adapt_lower_bound`` estimates :math:`f_*` on the fly
    (Section 4): it is reset to half the model's value where that falls below
    it, and set to :math:`h_k - \tau_k\|d_k\|^2/2` after the step
    (:math:`h_k = \bar f_k + \langle d_k, x_k\rangle - \gamma_k`), never below
    ``lower_bound``.

    ``update(updates, state, params, value=loss)`` needs the params and the loss.

    Note:
        optax 0.2.8 takes the weight decay as
        :math:`x_{k+1} = x_k - \tau_k d_k - \frac{\alpha_k\lambda}{1+\alpha_k\lambda} x_k`,
        its gradient step not divided by :math:`1 + \alpha_k\lambda`; this is the
        proximal step of the paper (and of the authors' code). The two agree
        for ``weight_decay=0``.

    Args:
        learning_rate: :math:`\alpha_k \ge 0`, the cap of the step size (or a schedule).
        beta: :math:`\beta \in [0, 1)`, the momentum of the averages.
        lower_bound: :math:`f_*`, a lower bound of the loss (any real number; 0 for most losses).
        weight_decay: :math:`\lambda \ge 0`.
        adapt_lower_bound: estimate :math:`f_*` on the fly, never below ``lower_bound``.

    Returns:
        A `GradientTransformationExtraArgs` with state `MomoState`.

    Raises:
        ValueError: ``learning_rate < 0``, ``beta`` outside [0, 1), ``weight_decay < 0``;
            ``update`` without params or without ``value``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda x: jnp.sum(x ** 2)
        >>> opt = gx.contrib.momo()
        >>> x = jnp.array([1.0, 2.0, 3.0])
        >>> value, g = jax.value_and_grad(f)(x)  # 14, [2, 4, 6]
        >>> u, state = opt.update(g, opt.init(x), x, value=value)
        >>> u.tolist()  # tau = min(1, (14 + 28 - 28) / 56) = 0.25
        [-0.5, -1.0, -1.5]

    References:
        Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: Momentum Models for Adaptive
        Learning Rates", ICML 2024, Algorithm 1 (MoMo), its proximal weight decay and
        Section 4 (the lower bound estimated on the fly).
    """
    fn = "momo"

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays
        acc = _scalar_dtype(params)
        z = jnp.zeros((), acc)
        return MomoState(  # one buffer per field (donation)
            _tree.zeros_like(params), z, jnp.zeros((), acc), _tree.hp(lower_bound, acc), jnp.zeros([], jnp.int32)
        )

    def update_fn(updates, state, params=None, value=None, **extra_args):
        updates, params = _tree.arrays(updates), _tree.arrays(params)  # Python floats: arrays
        del extra_args
        return _momo_update(
            fn, updates, state, params, value, adam=False, learning_rate=learning_rate, betas=(beta, None),
            eps=0.0, lower_bound=lower_bound, weight_decay=weight_decay, adapt=adapt_lower_bound,
        )

    return GradientTransformationExtraArgs(init_fn, update_fn)


@_hyper.declare(learning_rate=_MOMO_LR, b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, **_COMMON)
def momo_adam(
    learning_rate: ScalarOrSchedule = 1e-2,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    lower_bound=0.0,
    weight_decay=0.0,
    adapt_lower_bound: bool = False,
) -> GradientTransformationExtraArgs:
    r"""MoMo-Adam: Adam with MoMo's Polyak-type step size (Schaipp et al., 2024, Algorithm 2).

    MoMo's averages with :math:`\beta_1`, started at zero and bias-corrected by
    :math:`\rho_k = 1 - \beta_1^{k+1}`, with Adam's preconditioner:

    .. math::
        v_k = \beta_2 v_{k-1} + (1-\beta_2) g_k^2, \qquad
        D_k = \sqrt{v_k / (1 - \beta_2^{k+1})} + \epsilon

        \tau_k = \min\left\{\frac{\alpha_k}{\rho_k}, \frac{\big((1+\alpha_k\lambda)(\bar f_k - \rho_k f_*
        - \gamma_k) + \langle d_k, x_k\rangle\big)_+}{\|d_k\|^2_{D_k^{-1}}}\right\}, \qquad
        x_{k+1} = \frac{x_k - \tau_k D_k^{-1} d_k}{1 + \alpha_k\lambda}

    (:math:`d_k, \bar f_k, \gamma_k` as in `momo`). ``adapt_lower_bound`` as in
    `momo`, with :math:`\rho_k`. ``update(updates, state, params, value=loss)``.

    Note:
        As for `momo`, optax 0.2.8's weight decay does not divide the gradient step
        by :math:`1 + \alpha_k\lambda`; this follows the paper.

    Args:
        learning_rate: :math:`\alpha_k \ge 0`, the cap of the step size (or a schedule).
        b1, b2: :math:`\beta_1, \beta_2 \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`, added to :math:`D_k`.
        lower_bound: :math:`f_*`, a lower bound of the loss.
        weight_decay: :math:`\lambda \ge 0`.
        adapt_lower_bound: estimate :math:`f_*` on the fly, never below ``lower_bound``.

    Returns:
        A `GradientTransformationExtraArgs` with state `MomoAdamState`.

    Raises:
        ValueError: ``learning_rate < 0``, ``b1`` or ``b2`` outside [0, 1), ``eps < 0``,
            ``weight_decay < 0``; ``update`` without params or without ``value``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda x: jnp.sum(x ** 2)
        >>> opt = gx.contrib.momo_adam(learning_rate=0.5, eps=0.0)
        >>> x = jnp.array([1.0, 2.0, 3.0])
        >>> value, g = jax.value_and_grad(f)(x)
        >>> u, state = opt.update(g, opt.init(x), x, value=value)
        >>> [round(v, 6) for v in u.tolist()]  # D = |g|, tau = min(0.5 / 0.1, 1.4 / 0.12) = 5, u = -5 * 0.1 * sign(g)
        [-0.5, -0.5, -0.5]

    References:
        Schaipp, Ohana, Eickenberg, Defazio & Gower, "MoMo: Momentum Models for Adaptive
        Learning Rates", ICML 2024, Algorithm 2 (MoMo-Adam), its proximal weight decay and Section 4.
    """
    fn = "momo_adam"

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays
        acc = _scalar_dtype(params)
        z = jnp.zeros((), acc)
        return MomoAdamState(
            _tree.zeros_like(params), _tree.square_zeros_like(params), z, jnp.zeros((), acc),  # own buffers
            _tree.hp(lower_bound, acc),
            jnp.zeros([], jnp.int32),
        )

    def update_fn(updates, state, params=None, value=None, **extra_args):
        updates, params = _tree.arrays(updates), _tree.arrays(params)  # Python floats: arrays
        del extra_args
        return _momo_update(
            fn, updates, state, params, value, adam=True, learning_rate=learning_rate, betas=(b1, b2),
            eps=eps, lower_bound=lower_bound, weight_decay=weight_decay, adapt=adapt_lower_bound,
        )

    return GradientTransformationExtraArgs(init_fn, update_fn)
