r"""NumPy references of MoMo, MoMo-Adam, Sophia and the normalized gradient of SAM's ascent step
(the library's ``contrib/_momo``, ``contrib/_sophia`` and ``contrib/_sam``).

Each is written from its paper's algorithm, in float64, one step at a time.
"""

from __future__ import annotations

import numpy as np

from gradxform.testing.reference._common import (
    Reference,
    _ratio,
    _at,
    _cast_like,
    _f64,
    _leaves,
    _map,
    _to64,
)

__all__ = [
    "momo",
    "momo_adam",
    "normalize",
    "sophia",
]


def _dot(a, b) -> float:
    return float(sum(np.sum(x * y) for x, y in zip(_leaves(a), _leaves(b))))


def _lower_bound_reset(cap: float, rho: float, lb: float, lb0: float, wd: float) -> float:
    r"""The on-the-fly lower bound's reset (Schaipp et al., 2024, Section 4, ResetStar):
    where the model's value :math:`\text{cap} < (1 + \alpha\lambda)\rho f_*`, restart
    :math:`f_*` at half the model's value, never below the initial bound."""
    if cap < wd * rho * lb:
        return max(cap / (2 * wd * rho), lb0)
    return lb


def momo(learning_rate=1.0, beta: float = 0.9, lower_bound: float = 0.0, weight_decay: float = 0.0,
         adapt_lower_bound: bool = False) -> Reference:
    r"""MoMo (Schaipp et al., 2024, "MoMo: Momentum Models for Adaptive Learning Rates", ICML 2024,
    Algorithm 1; weight decay as its proximal step (the appendix on weight decay, and the authors' code); the lower bound estimated
    on the fly as in Section 4 where ``adapt_lower_bound``), the averages started at the first
    sample (the paper's variant without bias correction, :math:`\rho = 1`):

    .. math::
        d_k = \beta d_{k-1} + (1-\beta) g_k,\quad
        \bar f_k = \beta \bar f_{k-1} + (1-\beta) f_k,\quad
        \gamma_k = \beta \gamma_{k-1} + (1-\beta) \langle g_k, x_k\rangle

        \tau_k = \min\left\{\alpha_k, \frac{\big((1+\alpha_k\lambda)(\bar f_k - f_* - \gamma_k)
        + \langle d_k, x_k\rangle\big)_+}{\|d_k\|^2}\right\},\quad
        x_{k+1} = \frac{x_k - \tau_k d_k}{1 + \alpha_k\lambda}

    (:math:`d_0 = g_0`, :math:`\bar f_0 = f_0`, :math:`\gamma_0 = \langle g_0, x_0\rangle`).
    ``update`` needs ``params`` and ``value=``; it returns :math:`x_{k+1} - x_k`.
    """
    return _momo(learning_rate, (beta, None), 0.0, lower_bound, weight_decay, adapt_lower_bound, adam=False)


def momo_adam(learning_rate=1e-2, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
              lower_bound: float = 0.0, weight_decay: float = 0.0, adapt_lower_bound: bool = False) -> Reference:
    r"""MoMo-Adam (Schaipp et al., 2024, Algorithm 2, with the proximal weight decay
    and the on-the-fly lower bound of Section 4): the averages start at zero and are
    bias-corrected with :math:`\rho_k = 1 - \beta_1^{k+1}`,

    .. math::
        v_k = \beta_2 v_{k-1} + (1-\beta_2) g_k^2,\quad
        D_k = \sqrt{v_k / (1 - \beta_2^{k+1})} + \epsilon

        \tau_k = \min\left\{\frac{\alpha_k}{\rho_k}, \frac{\big((1+\alpha_k\lambda)(\bar f_k - \rho_k f_*
        - \gamma_k) + \langle d_k, x_k\rangle\big)_+}{\|d_k\|^2_{D_k^{-1}}}\right\},\quad
        x_{k+1} = \frac{x_k - \tau_k D_k^{-1} d_k}{1 + \alpha_k\lambda}

    with :math:`d_k, \bar f_k, \gamma_k` MoMo's averages with :math:`\beta_1`.
    ``update`` needs ``params`` and ``value=``.
    """
    return _momo(learning_rate, (b1, b2), eps, lower_bound, weight_decay, adapt_lower_bound, adam=True)


def _momo(learning_rate, betas, eps, lower_bound, weight_decay, adapt_lower_bound, *, adam) -> Reference:
    b1, b2 = betas

    def init(params):
        p = _to64(params)
        state = {"count": 0, "d": _map(np.zeros_like, p), "barf": 0.0, "gamma": 0.0, "lb": float(lower_bound)}
        if adam:
            state["v"] = _map(np.zeros_like, p)
        return state

    def update(grads, state, params=None, *, value, **extra_args):
        del extra_args
        g, x, k = _to64(grads), _to64(params), state["count"]
        beta = b1 if (adam or k > 0) else 0.0  # MoMo: d_0 = g_0, f_0, <g_0, x_0>
        d = _map(lambda m, gi: beta * m + (1 - beta) * gi, state["d"], g)
        barf = beta * state["barf"] + (1 - beta) * float(_f64(value))
        gamma = beta * state["gamma"] + (1 - beta) * _dot(g, x)
        if adam:
            v = _map(lambda s, gi: b2 * s + (1 - b2) * gi * gi, state["v"], g)
            rho = 1 - b1 ** (k + 1)
            D = _map(lambda s: np.sqrt(s / (1 - b2 ** (k + 1))) + eps, v)
            direction = _map(lambda m, dd: _ratio(m, dd), d, D)
        else:
            rho = 1.0
            direction = d
        alpha = _at(learning_rate, k)
        wd = 1 + alpha * weight_decay
        dot = _dot(d, x)
        norm = _dot(d, direction)
        lb = state["lb"]
        if adapt_lower_bound:
            lb = _lower_bound_reset(wd * barf + dot - wd * gamma, rho, lb, lower_bound, wd)
        nom = max(wd * (barf - rho * lb - gamma) + dot, 0.0)
        t1 = nom / norm if norm > 0 else 0.0
        tau = min(alpha / rho, t1)
        if adapt_lower_bound:
            h = barf + dot - gamma
            lb = max((h - 0.5 * tau * norm) / rho, lower_bound)
        u = _map(lambda xi, di: (xi - tau * di) / wd - xi, x, direction)
        new = {"count": k + 1, "d": d, "barf": barf, "gamma": gamma, "lb": lb}
        if adam:
            new["v"] = v
        return _cast_like(u, grads), new

    return Reference(init, update)


def sophia(learning_rate, b1: float = 0.965, b2: float = 0.99, eps: float = 1e-8, weight_decay: float = 1e-4,
           weight_decay_mask=None, gamma: float = 0.01, clip_threshold=1.0, update_interval: int = 10,
           hessian_diagonal_fn=None, mu_dtype=None, verbose: bool = False,
           print_win_rate_every_n_steps: int = 0) -> Reference:
    r"""Sophia (Liu et al., 2023, "Sophia: A Scalable Stochastic Second-order Optimizer for Language
    Model Pre-training", ICLR 2024, Algorithm 3), the Hessian diagonal estimate :math:`\hat h_t` given
    as ``hessian_diag=`` to ``update`` (what the Hessian-diagonal function returns on refresh steps;
    Hutchinson's, Algorithm 1, in Sophia-H):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\qquad
        h_t = \begin{cases}\beta_2 h_{t-1} + (1-\beta_2)\hat h_t & t \bmod k = 0\\ h_{t-1} & \text{else}\end{cases}

        u_t = -\eta_t\left(\operatorname{clip}\left(\frac{m_t}{\max(\gamma h_t, \epsilon)}, \rho\right)
        + \lambda\theta_t\right)

    (:math:`t` counted from 0; :math:`\rho` = ``clip_threshold``, no clipping where None;
    ``weight_decay_mask`` True where the decay applies). ``update`` needs ``params``.
    """
    del hessian_diagonal_fn, mu_dtype, verbose, print_win_rate_every_n_steps
    def init(params):
        p = _to64(params)
        return {"count": 0, "m": _map(np.zeros_like, p), "h": _map(np.zeros_like, p)}

    def update(grads, state, params=None, *, hessian_diag, **extra_args):
        del extra_args
        g, x, t = _to64(grads), _to64(params), state["count"]
        m = _map(lambda mi, gi: b1 * mi + (1 - b1) * gi, state["m"], g)
        h = state["h"]
        if t % update_interval == 0:
            h = _map(lambda hi, e: b2 * hi + (1 - b2) * e, h, _to64(hessian_diag))
        eta = _at(learning_rate, t)
        mask = weight_decay_mask(params) if callable(weight_decay_mask) else weight_decay_mask
        if mask is None:
            mask = _map(lambda _: True, x)

        def step(mi, hi, xi, on):
            r = _ratio(mi, np.maximum(gamma * hi, eps))
            if clip_threshold is not None:
                r = np.clip(r, -clip_threshold, clip_threshold)
            return -eta * (r + (weight_decay * xi if on else 0.0))

        u = _map(step, m, h, x, mask)
        return _cast_like(u, grads), {"count": t + 1, "m": m, "h": h}

    return Reference(init, update)


def normalize() -> Reference:
    r"""The gradient divided by its global norm, :math:`u_t = g_t / \|g_t\|_2` (the normalized
    ascent direction of SAM, Foret et al., 2021, "Sharpness-Aware Minimization for Efficiently
    Improving Generalization", Eq. (2) with :math:`p = 2`), and :math:`u_t = 0` where
    :math:`g_t = 0`."""

    def update(grads, state, params=None, **extra_args):
        del params, extra_args
        g = _to64(grads)
        norm = np.sqrt(_dot(g, g))
        return _cast_like(_map(lambda x: x / norm if norm > 0 else np.zeros_like(x), g), grads), state

    return Reference(lambda params: {}, update)
