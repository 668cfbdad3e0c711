r"""NumPy references of Schedule-Free (Defazio et al., 2024) and MADGRAD (Defazio & Jelassi, 2021)
(the library's ``contrib/_schedule_free`` and ``contrib/_madgrad``).

Both keep the paper's iterates in their state (:math:`x` and :math:`z`) and return
the difference of the iterates the algorithm produces, so that they check the
library's cheaper bookkeeping (which keeps only :math:`z` and recovers :math:`x`
from the params) against the algorithm as written.
"""

from __future__ import annotations

import math

import numpy as np

from gradxform.testing.reference._common import (
    Reference,
    _full_like,
    _ratio,
    _map,
    _rule,
    _to64,
)

__all__ = [
    "madgrad",
    "scale_by_madgrad",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_sgd",
]


def _value(learning_rate, step: int) -> float:
    return float(learning_rate(step)) if callable(learning_rate) else float(learning_rate)


# ----------------------------------------------------------------------------- MADGRAD


def madgrad(learning_rate, momentum: float = 0.9, weight_decay: float = 0.0, eps: float = 1e-6) -> Reference:
    r"""MADGRAD (Defazio & Jelassi, 2021, "Adaptivity without Compromise: A Momentumized, Adaptive,
    Dual Averaged Gradient Method for Stochastic Optimization", Algorithm 1), with the authors'
    implementation's two additions: the weight decay :math:`\lambda x_k` added to the gradient, and
    :math:`\epsilon` added to :math:`\gamma_k` in :math:`\lambda_k`.

    .. math::
        \lambda_k = (\gamma_k + \epsilon)\sqrt{k + 1}, \quad
        s_{k+1} = s_k + \lambda_k g_k, \quad
        \nu_{k+1} = \nu_k + \lambda_k g_k^2, \\
        z_{k+1} = x_0 - \frac{s_{k+1}}{\nu_{k+1}^{1/3} + \epsilon}, \quad
        x_{k+1} = (1 - c)\,x_k + c\,z_{k+1}, \quad c = 1 - \text{momentum}

    The state keeps the iterate :math:`x_k`; the update is :math:`x_{k+1} - x_k`. Where
    :math:`\nu^{1/3} + \epsilon = 0` (``eps=0`` and only zero gradients so far) :math:`s = 0` and
    :math:`z = x_0`.
    """
    c = 1.0 - momentum

    def init(params):
        return {"k": 0, "x0": params, "x": params, "s": _full_like(params, 0.0), "nu": _full_like(params, 0.0)}

    def update(g, state, params):
        k = state["k"]
        lam = (_value(learning_rate, k) + eps) * math.sqrt(k + 1)
        g = _map(lambda gi, xi: gi + weight_decay * xi, g, params)
        s = _map(lambda si, gi: si + lam * gi, state["s"], g)
        nu = _map(lambda ni, gi: ni + lam * gi * gi, state["nu"], g)

        def z_of(x0, si, ni):
            root = np.cbrt(ni) + eps
            return x0 - np.divide(si, root, out=np.zeros_like(si), where=root > 0)

        z = _map(z_of, state["x0"], s, nu)
        x = _map(lambda xi, zi: (1 - c) * xi + c * zi, state["x"], z)
        updates = _map(lambda new, old: new - old, x, state["x"])
        return updates, {"k": k + 1, "x0": state["x0"], "x": x, "s": s, "nu": nu}

    return _rule(lambda p: init(_to64(p)), update)


def scale_by_madgrad(learning_rate, momentum: float = 0.9, eps: float = 1e-6) -> Reference:
    r"""MADGRAD's step without weight decay (Defazio & Jelassi, 2021, Algorithm 1); see :func:`madgrad`."""
    return madgrad(learning_rate, momentum, 0.0, eps)


# ----------------------------------------------------------------------------- Schedule-Free


def schedule_free(base_optimizer: Reference, learning_rate, b1: float = 0.9, weight_lr_power: float = 2.0,
                  state_dtype=None) -> Reference:
    r"""Schedule-Free wrapping of a base step (Defazio et al., 2024, "The Road Less Scheduled",
    Algorithm 1 with the base optimizer's step in place of :math:`-\gamma_t \nabla f(y_t)`).

    .. math::
        y_t = (1 - \beta) z_t + \beta x_t, \quad
        z_{t+1} = z_t + \Delta_t(\nabla f(y_t)), \\
        c_{t+1} = \frac{\gamma_{\max,t}^r}{\sum_{i=1}^{t} \gamma_{\max,i}^r}, \quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}

    with :math:`\Delta_t` the base optimizer's update at :math:`y_t`, :math:`\gamma_t` the
    learning rate at the 1-based step :math:`t`, :math:`\gamma_{\max,t} = \max_{i \le t} \gamma_i`
    (the paper's warmup-aware weighting, Section 4.3) and :math:`r` ``weight_lr_power``
    (:math:`c = 0` while every weight is 0). :math:`x_1 = z_1 = y_1` are the initial params. The
    state keeps :math:`x_t` and :math:`z_t`; the update is :math:`y_{t+1} - y_t`.
    """
    del state_dtype  # the reference keeps float64

    def init(params):
        p = _to64(params)
        return {"t": 1, "x": p, "z": p, "weight_sum": 0.0, "max_lr": 0.0, "base": base_optimizer.init(params)}

    def update(g, state, params):
        t = state["t"]
        max_lr = max(state["max_lr"], _value(learning_rate, t))
        weight = max_lr**weight_lr_power
        weight_sum = state["weight_sum"] + weight
        c = weight / weight_sum if weight_sum != 0 else 0.0
        step, base = base_optimizer.update(g, state["base"], params)
        z = _map(lambda zi, di: zi + np.asarray(di, np.float64), state["z"], step)
        x = _map(lambda xi, zi: (1 - c) * xi + c * zi, state["x"], z)
        y_old = _map(lambda xi, zi: (1 - b1) * zi + b1 * xi, state["x"], state["z"])
        y_new = _map(lambda xi, zi: (1 - b1) * zi + b1 * xi, x, z)
        updates = _map(lambda new, old: new - old, y_new, y_old)
        return updates, {"t": t + 1, "x": x, "z": z, "weight_sum": weight_sum, "max_lr": max_lr, "base": base}

    return _rule(init, update)


def _warmup(learning_rate: float, warmup_steps):
    r""":math:`\gamma_t = \gamma \min(1, t / T_{warmup})` at the 1-based step :math:`t` (the paper's warmup)."""
    if not warmup_steps:
        return lambda t: learning_rate
    return lambda t: learning_rate * min(1.0, t / warmup_steps)


def _direct(step_fn, init_fn=None) -> Reference:
    """A base step written out: ``step_fn(g, state, y, t) -> (delta, state)`` at the 1-based step t."""

    def init(params):
        return {"t": 1, **(init_fn(_to64(params)) if init_fn else {})}

    def update(g, state, params):
        delta, new = step_fn(g, state, params, state["t"])
        return delta, {**new, "t": state["t"] + 1}

    return _rule(init, update)


def schedule_free_sgd(learning_rate: float = 1.0, warmup_steps=None, b1: float = 0.9, weight_decay=None,
                      weight_lr_power: float = 2.0, state_dtype=None) -> Reference:
    r"""Schedule-Free SGD (Defazio et al., 2024, Algorithm 1 with the SGD step):
    :math:`z_{t+1} = z_t - \gamma_t (\nabla f(y_t) + \lambda y_t)`, with the same :math:`\gamma_t`
    (warmup included) in the step and in the weight :math:`c_{t+1}`; see :func:`schedule_free`."""
    gamma = _warmup(learning_rate, warmup_steps)
    wd = weight_decay or 0.0

    def step(g, state, y, t):
        return _map(lambda gi, yi: -gamma(t) * (gi + wd * yi), g, y), state

    return schedule_free(_direct(step), gamma, b1, weight_lr_power, state_dtype)


def schedule_free_adamw(learning_rate: float = 0.0025, warmup_steps=None, b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-8, weight_decay: float = 0.0, weight_lr_power: float = 2.0,
                        state_dtype=None) -> Reference:
    r"""Schedule-Free AdamW (Defazio et al., 2024, Algorithm 1, the AdamW version):

    .. math::
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        z_{t+1} = z_t - \gamma_t \left(\frac{g_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
        + \lambda y_t\right)

    with the same :math:`\gamma_t` (warmup included) in the step and in the weight
    :math:`c_{t+1} \propto \gamma_{\max,t}^r` (optax's weighting; the paper also folds
    :math:`\sqrt{1 - \beta_2^t}` into :math:`\gamma_t`); see :func:`schedule_free`.
    """
    gamma = _warmup(learning_rate, warmup_steps)

    def step(g, state, y, t):
        v = _map(lambda vi, gi: b2 * vi + (1 - b2) * gi * gi, state["v"], g)
        bc = 1 - b2**t
        delta = _map(lambda gi, vi, yi: -gamma(t) * (_ratio(gi, np.sqrt(vi / bc) + eps) + weight_decay * yi), g, v, y)
        return delta, {"v": v}

    return schedule_free(_direct(step, lambda p: {"v": _full_like(p, 0.0)}), gamma, b1, weight_lr_power,
                         state_dtype)
