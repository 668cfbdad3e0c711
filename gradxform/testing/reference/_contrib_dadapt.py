r"""NumPy references of D-Adaptation's AdamW, Prodigy and Mechanic (the library's
``contrib/_dadapt_adamw``, ``contrib/_prodigy`` and ``contrib/_mechanic``).

Written from the papers' algorithms, in float64:

* Defazio & Mishchenko (2023), "Learning-Rate-Free Learning by D-Adaptation", the Adam
  variant (Algorithm 4, "Adam with D-Adaptation", appendix);
* Mishchenko & Defazio (2023), "Prodigy: An Expeditiously Adaptive Parameter-Free
  Learner", the Adam version (Algorithm 4);
* Cutkosky, Defazio & Mehta (2023), "Mechanic: A Learning Rate Tuner", Algorithm 1.

Both D-Adaptation rules take an arbitrary step-size sequence :math:`\gamma_k`; as in the
authors' implementations (their ``use_bias_correction=True``) and optax, it is the
learning rate times Adam's bias correction,
:math:`\gamma_k = \eta_k \sqrt{1 - \beta_2^{k+1}} / (1 - \beta_1^{k+1})`.
"""

from __future__ import annotations

import math

import numpy as np

from gradxform.testing.reference._common import (
    Reference,
    _ratio,
    _at,
    _cast_like,
    _full_like,
    _leaves,
    _map,
    _to64,
)

__all__ = ["dadapt_adamw", "mechanize", "prodigy"]


def _bias_corrected_rate(learning_rate, betas, k: int) -> float:
    b1, b2 = (float(b) for b in betas)
    return _at(learning_rate, k) * math.sqrt(1 - b2 ** (k + 1)) / (1 - b1 ** (k + 1))


def _l1(tree) -> float:
    return float(sum(np.sum(np.abs(x)) for x in _leaves(tree)))


def _vdot(a, b) -> float:
    return float(sum(np.sum(x * y) for x, y in zip(_leaves(a), _leaves(b))))


def dadapt_adamw(learning_rate=1.0, betas=(0.9, 0.999), eps: float = 1e-8, estim_lr0: float = 1e-6,
                 weight_decay: float = 0.0) -> Reference:
    r"""AdamW with D-Adaptation (Defazio & Mishchenko, 2023, Algorithm 4, Adam with D-Adaptation,
    with :math:`\gamma_k` the bias-corrected rate and AdamW's decoupled weight decay :math:`\lambda`):

    .. math::
        c_k &= \gamma_k d_k, \quad A_k = \operatorname{diag}(\sqrt{v_k} + \epsilon) \\
        r_{k+1} &= \sqrt{\beta_2} r_k + (1 - \sqrt{\beta_2})\, c_k \langle g_k, s_k\rangle_{A_k^{-1}} \\
        m_{k+1} &= \beta_1 m_k + (1 - \beta_1) c_k g_k, \quad v_{k+1} = \beta_2 v_k + (1 - \beta_2) g_k^2 \\
        s_{k+1} &= \sqrt{\beta_2} s_k + (1 - \sqrt{\beta_2})\, c_k g_k \\
        d_{k+1} &= \max\left(d_k, \frac{r_{k+1}}{(1 - \sqrt{\beta_2}) \|s_{k+1}\|_1}\right) \quad (d_k \text{ where } s_{k+1} = 0) \\
        u_k &= -\lambda c_k x_k - m_{k+1} / (\sqrt{v_{k+1}} + \epsilon)
    """
    b1, b2 = (float(b) for b in betas)
    sb2 = math.sqrt(b2)

    def init(params):
        p = _to64(params)
        return {"m": _full_like(p, 0.0), "v": _full_like(p, 0.0), "s": _full_like(p, 0.0), "d": float(estim_lr0),
                "r": 0.0, "count": 0}

    def update(grads, state, params=None, **extra_args):
        del extra_args
        g, x = _to64(grads), _to64(params)
        k, d = state["count"], state["d"]
        c = _bias_corrected_rate(learning_rate, betas, k) * d
        inner = _vdot(g, _map(lambda s, v: _ratio(s, np.sqrt(v) + eps), state["s"], state["v"]))
        r = sb2 * state["r"] + (1 - sb2) * c * inner
        m = _map(lambda m, gi: b1 * m + (1 - b1) * c * gi, state["m"], g)
        v = _map(lambda v, gi: b2 * v + (1 - b2) * gi * gi, state["v"], g)
        s = _map(lambda s, gi: sb2 * s + (1 - sb2) * c * gi, state["s"], g)
        l1 = _l1(s)
        d_new = max(d, r / ((1 - sb2) * l1)) if l1 > 0 else d
        u = _map(lambda mi, vi, xi: -weight_decay * c * xi - _ratio(mi, np.sqrt(vi) + eps), m, v, x)
        return _cast_like(u, grads), {"m": m, "v": v, "s": s, "d": d_new, "r": r, "count": k + 1}

    return Reference(init, update)


def prodigy(learning_rate=1.0, betas=(0.9, 0.999), beta3=None, eps: float = 1e-8, estim_lr0: float = 1e-6,
            estim_lr_coef: float = 1.0, weight_decay: float = 0.0, safeguard_warmup: bool = False) -> Reference:
    r"""Prodigy, Adam version (Mishchenko & Defazio, 2023, Algorithm 4, with :math:`\gamma_k` the
    bias-corrected rate, AdamW's decoupled weight decay :math:`\lambda` and the coefficient :math:`c_d`):

    .. math::
        m_{k+1} &= \beta_1 m_k + (1 - \beta_1) d_k g_k, \quad
        v_{k+1} = \beta_2 v_k + (1 - \beta_2) d_k^2 g_k^2 \\
        r_{k+1} &= \beta_3 r_k + \gamma_k d_k^2 \langle g_k, x_0 - x_k\rangle, \quad
        s_{k+1} = \beta_3 s_k + \gamma_k d_k^2 g_k \\
        d_{k+1} &= \max\left(d_k, c_d \frac{r_{k+1}}{\|s_{k+1}\|_1}\right) \quad (d_k \text{ where } s_{k+1} = 0) \\
        u_k &= -\lambda \gamma_k d_k x_k - \gamma_k d_k \frac{m_{k+1}}{\sqrt{v_{k+1}} + d_k \epsilon}

    (the paper's factor :math:`1 - \beta_3` of :math:`r` and :math:`s` cancels in the ratio).
    ``safeguard_warmup``: :math:`s_{k+1} = \beta_3 s_k + d_k^2 g_k` (no :math:`\gamma_k`, Section 6).
    """
    b1, b2 = (float(b) for b in betas)
    b3 = math.sqrt(b2) if beta3 is None else float(beta3)

    def init(params):
        p = _to64(params)
        return {"m": _full_like(p, 0.0), "v": _full_like(p, 0.0), "s": _full_like(p, 0.0), "x0": p,
                "d": float(estim_lr0), "r": 0.0, "count": 0}

    def update(grads, state, params=None, **extra_args):
        del extra_args
        g, x = _to64(grads), _to64(params)
        k, d = state["count"], state["d"]
        gamma = _bias_corrected_rate(learning_rate, betas, k)
        r = b3 * state["r"] + gamma * d * d * _vdot(g, _map(lambda a, b: a - b, state["x0"], x))
        m = _map(lambda m, gi: b1 * m + (1 - b1) * d * gi, state["m"], g)
        v = _map(lambda v, gi: b2 * v + (1 - b2) * d * d * gi * gi, state["v"], g)
        weight = d * d if safeguard_warmup else gamma * d * d
        s = _map(lambda s, gi: b3 * s + weight * gi, state["s"], g)
        l1 = _l1(s)
        d_new = max(d, estim_lr_coef * r / l1) if l1 > 0 else d
        u = _map(lambda mi, vi, xi: -weight_decay * gamma * d * xi - _ratio(gamma * d * mi, np.sqrt(vi) + d * eps), m, v, x)
        new = {"m": m, "v": v, "s": s, "x0": state["x0"], "d": d_new, "r": r, "count": k + 1}
        return _cast_like(u, grads), new

    return Reference(init, update)


def mechanize(base_optimizer: Reference, weight_decay: float = 1e-2, eps: float = 1e-8, s_init: float = 1e-6,
              num_betas: int = 6) -> Reference:
    r"""Mechanic (Cutkosky, Defazio & Mehta, 2023, Algorithm 1) around ``base_optimizer``'s updates
    :math:`u_t`, with :math:`\beta_i = 1 - 10^{-i}`, :math:`i = 1..n`:

    .. math::
        \Delta_{t+1} &= \Delta_t + u_t, \quad \Delta_1 = 0 \\
        h_t &= \left\langle \Delta_t,\ g_t + \lambda \frac{\|g_t\| \textstyle\sum_i s_{t,i}}{\|x_t\| + \epsilon} x_t\right\rangle \\
        m_t &= \max(\beta m_{t-1}, |h_t| + \epsilon), \quad v_t = \beta^2 v_{t-1} + h_t^2 \\
        r_t &= \beta r_{t-1} - s_t \operatorname{clip}(h_t, -m_{t-1}, m_{t-1}), \quad
        W_t = \frac{s_{\mathrm{init}}}{n} m_t + \max(0, r_t) \\
        s_{t+1} &= \frac{W_t}{\sqrt{v_t} + \epsilon}, \quad
        x_{t+1} = x_1 + \textstyle\sum_i s_{t+1,i}\, \Delta_{t+1}, \quad s_1 = s_{\mathrm{init}}

    The clip of :math:`h_t` by :math:`m_{t-1}` and the :math:`+\epsilon` in :math:`m_t` are the
    authors' later additions (optax's implementation, by the authors); :math:`r_t` is kept
    unclipped and only the wealth clips it at 0. :math:`\Delta_t` is recovered from the params,
    :math:`\Delta_t = (x_t - x_1) / \sum_i s_{t,i}` (the memory-efficient form of the paper's
    :math:`x_t = x_1 + \sum_i s_{t,i} \Delta_t`; storing it instead would leave a float32
    training loop, whose params are rounded, behind the reference).
    """
    betas = np.array([1.0 - 0.1**i for i in range(1, num_betas + 1)])

    def init(params):
        p = _to64(params)
        return {"base": base_optimizer.init(params), "count": 0, "r": np.zeros(num_betas),
                "m": np.zeros(num_betas), "v": np.zeros(num_betas), "s": np.full(num_betas, float(s_init)),
                "x0": p}

    def update(grads, state, params=None, **extra_args):
        g, x = _to64(grads), _to64(params)
        u, base = base_optimizer.update(grads, state["base"], params, **extra_args)
        u = _to64(u)
        s_sum = float(np.sum(state["s"]))
        gnorm = math.sqrt(_vdot(g, g))
        xnorm = math.sqrt(_vdot(x, x))
        g_wd = _map(lambda gi, xi: gi + weight_decay * s_sum * gnorm / (xnorm + eps) * xi, g, x)
        delta_t = _map(lambda xi, x0: (xi - x0) / s_sum, x, state["x0"])
        h = _vdot(delta_t, g_wd)
        delta = _map(lambda a, b: a + b, delta_t, u)
        m_old = state["m"]
        m = np.maximum(betas * m_old, abs(h) + eps)
        v = betas**2 * state["v"] + h * h
        r = betas * state["r"] - state["s"] * np.clip(h, -m_old, m_old)
        wealth = s_init / num_betas * m + np.maximum(0.0, r)
        s = wealth / (np.sqrt(v) + eps)
        x_new = _map(lambda x0, dl: x0 + np.sum(s) * dl, state["x0"], delta)
        out = _map(lambda a, b: a - b, x_new, x)
        new = {"base": base, "count": state["count"] + 1, "r": r, "m": m, "v": v, "s": s, "x0": state["x0"]}
        return _cast_like(out, grads), new

    return Reference(init, update)
