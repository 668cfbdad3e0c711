r"""NumPy references of the Adam-family rules of ``gx.contrib``: ACProp, AdEMAMix,
Simplified-AdEMAMix and ADOPT (the library's ``contrib/_acprop``, ``_ademamix``, ``_adopt``).

Each is written from its paper's algorithm, in float64, step by step with the paper's
letters; schedules (``b3``, ``alpha``, the learning rate) are evaluated at the 0-based
count, as optax does.
"""

from __future__ import annotations

import numpy as np

from gradxform.testing.reference._common import (
    Reference,
    _ratio,
    _at,
    _full_like,
    _map,
    _rule,
    chain,
)
from gradxform.testing.reference._scale import (
    add_decayed_weights,
    scale_by_learning_rate,
)

__all__ = [
    "acprop",
    "ademamix",
    "adopt",
    "scale_by_acprop",
    "scale_by_ademamix",
    "scale_by_adopt",
    "scale_by_simplified_ademamix",
    "simplified_ademamix",
]


def _zeros(params) -> dict:
    return _full_like(params, 0.0)


# ----------------------------------------------------------------------------- ACProp


def scale_by_acprop(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16) -> Reference:
    r"""ACProp's direction (Zhuang et al., 2021, "Momentum Centering and Asynchronous Update for
    Adaptive Gradient Methods", NeurIPS 2021, Algorithm 2), in the order of the authors'
    implementation (github.com/juntang-zhuang/ACProp-Optimizer), which optax follows:

    .. math::
        u_t = g_t / (\sqrt{s_{t-1} / (1 - \beta_2^{t-1})} + \epsilon) \quad (\text{the root is 1 at } t = 1), \\
        s_t = \beta_2 s_{t-1} + (1 - \beta_2)(g_t - m_{t-1})^2 + \epsilon_{root}, \qquad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t

    The denominator is *asynchronous* (it holds the gradients before step :math:`t`) and
    *centered* (the deviation of :math:`g_t` from the momentum that predicted it).
    """

    def update(g, state, params):
        t = state["count"] + 1

        def root(s):
            return 1.0 if t == 1 else np.sqrt(s / (1 - b2 ** (t - 1)))

        u = _map(lambda x, s: x / (root(s) + eps), g, state["nu"])
        nu = _map(lambda x, m, s: b2 * s + (1 - b2) * (x - m) ** 2 + eps_root, g, state["mu"], state["nu"])
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        return u, {"count": t, "mu": mu, "nu": nu}

    return _rule(lambda p: {"count": 0, "mu": _zeros(p), "nu": _zeros(p)}, update)


def acprop(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16,
           weight_decay: float = 0.0, mask=None) -> Reference:
    r"""ACProp with decoupled weight decay: :math:`\theta_t = \theta_{t-1} - \eta_t(u_t + \lambda\theta_{t-1})`
    (Zhuang et al., 2021, Algorithm 2); see :func:`scale_by_acprop`."""
    return chain(
        scale_by_acprop(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- AdEMAMix


def scale_by_ademamix(b1: float = 0.9, b2: float = 0.999, b3=0.9999, alpha=6.0, eps: float = 1e-8,
                      eps_root: float = 0.0, mu_dtype=None) -> Reference:
    r"""AdEMAMix's direction (Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better,
    Faster, Older", arXiv:2409.03137, Algorithm 1, lines 6-12 without the learning rate and
    weight decay):

    .. math::
        m^{(1)}_t = \beta_1 m^{(1)}_{t-1} + (1 - \beta_1) g_t, \quad
        m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1 - \beta_3) g_t, \quad
        \nu_t = \beta_2 \nu_{t-1} + (1 - \beta_2) g_t^2, \\
        u_t = \frac{\hat m^{(1)}_t + \alpha m^{(2)}_t}{\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon}, \quad
        \hat m^{(1)}_t = \frac{m^{(1)}_t}{1 - \beta_1^t}, \quad \hat\nu_t = \frac{\nu_t}{1 - \beta_2^t}

    The slow EMA is not bias-corrected. ``b3`` and ``alpha`` may be schedules of the 0-based
    step (the paper's :math:`\beta_3(t)`, :math:`\alpha(t)` warm-ups); ``eps_root`` (0 in the
    paper) is optax's.
    """
    del mu_dtype

    def update(g, state, params):
        t = state["count"] + 1
        b3_t, alpha_t = _at(b3, t - 1), _at(alpha, t - 1)
        m1 = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["m1"])
        m2 = _map(lambda x, m: b3_t * m + (1 - b3_t) * x, g, state["m2"])
        nu = _map(lambda x, v: b2 * v + (1 - b2) * x * x, g, state["nu"])
        u = _map(
            lambda a, b, v: _ratio(a / (1 - b1**t) + alpha_t * b, np.sqrt(v / (1 - b2**t) + eps_root) + eps),
            m1, m2, nu,
        )
        return u, {"count": t, "m1": m1, "m2": m2, "nu": nu}

    return _rule(lambda p: {"count": 0, "m1": _zeros(p), "m2": _zeros(p), "nu": _zeros(p)}, update)


def ademamix(learning_rate, b1: float = 0.9, b2: float = 0.999, b3=0.9999, alpha=5.0, eps: float = 1e-8,
             eps_root: float = 0.0, mu_dtype=None, weight_decay: float = 0.0, mask=None) -> Reference:
    r"""AdEMAMix: :math:`\theta_t = \theta_{t-1} - \eta_t(u_t + \lambda\theta_{t-1})` (Pagliardini et
    al., 2024, Algorithm 1, line 12); see :func:`scale_by_ademamix`."""
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


def scale_by_simplified_ademamix(b1: float = 0.99, b2: float = 0.95, alpha=0.0, eps: float = 1e-8,
                                 eps_root: float = 0.0) -> Reference:
    r"""Simplified-AdEMAMix's direction (Morwani, Vyas, Zhang & Kakade, "Connections between
    Schedule-Free Optimizers, AdEMAMix, and Accelerated SGD Variants", arXiv:2502.02431, the
    Simplified-AdEMAMix algorithm, without the learning rate and weight decay):

    .. math::
        m_t = \beta_1 m_{t-1} + g_t, \quad \nu_t = \beta_2 \nu_{t-1} + (1 - \beta_2) g_t^2, \quad
        u_t = \frac{m_t + \alpha g_t}{\sqrt{\nu_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon}

    The momentum is an unnormalized sum (no :math:`1 - \beta_1`, no bias correction).
    ``alpha`` may be a schedule of the 0-based step.
    """

    def update(g, state, params):
        t = state["t"] + 1
        alpha_t = _at(alpha, t - 1)
        m = _map(lambda x, mm: b1 * mm + x, g, state["m"])
        n = _map(lambda x, v: b2 * v + (1 - b2) * x * x, g, state["n"])
        u = _map(lambda x, mm, v: _ratio(mm + alpha_t * x, np.sqrt(v / (1 - b2**t) + eps_root) + eps), g, m, n)
        return u, {"t": t, "m": m, "n": n}

    return _rule(lambda p: {"t": 0, "m": _zeros(p), "n": _zeros(p)}, update)


def simplified_ademamix(learning_rate, b1: float = 0.99, b2: float = 0.95, alpha=0.0, eps: float = 1e-8,
                        eps_root: float = 0.0, weight_decay: float = 0.0, mask=None) -> Reference:
    r"""Simplified-AdEMAMix: :math:`\theta_t = \theta_{t-1} - \eta_t(u_t + \lambda\theta_{t-1})`
    (Morwani et al., 2025); see :func:`scale_by_simplified_ademamix`."""
    return chain(
        scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- ADOPT


def scale_by_adopt(b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6, mu_dtype=None, *,
                   nesterov: bool = False, use_clipping: bool = True, clip_value_fn=None) -> Reference:
    r"""ADOPT's direction (Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any
    :math:`\beta_2` with the Optimal Rate", NeurIPS 2024, Algorithm 2 with clipping, Algorithm 1
    without): the first update sets :math:`v_0 = g_0^2` and returns 0; then, for :math:`t \ge 1`,

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1)\operatorname{clip}\left(\frac{g_t}{\max(\sqrt{v_{t-1}},
        \epsilon)}, c_t\right), \quad u_t = m_t, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2

    with :math:`c_t = t^{1/4}` (or ``clip_value_fn(t)``). ``nesterov=True`` (optax's option,
    not in the paper) returns :math:`\beta_1 m_t + (1 - \beta_1)\operatorname{clip}(\cdot)`.
    """
    del mu_dtype

    def update(g, state, params):
        t = state["count"]  # the paper's t: 0 at the first update
        if t == 0:
            return _map(np.zeros_like, g), {"count": 1, "mu": state["mu"], "nu": _map(lambda x: x * x, g)}
        c = (float(clip_value_fn(t)) if clip_value_fn is not None else t**0.25) if use_clipping else np.inf
        d = _map(lambda x, v: np.clip(x / np.maximum(np.sqrt(v), eps), -c, c), g, state["nu"])
        mu = _map(lambda m, y: b1 * m + (1 - b1) * y, state["mu"], d)
        u = _map(lambda m, y: b1 * m + (1 - b1) * y, mu, d) if nesterov else mu
        nu = _map(lambda x, v: b2 * v + (1 - b2) * x * x, g, state["nu"])
        return u, {"count": t + 1, "mu": mu, "nu": nu}

    return _rule(lambda p: {"count": 0, "mu": _zeros(p), "nu": _zeros(p)}, update)


def adopt(learning_rate, b1: float = 0.9, b2: float = 0.9999, eps: float = 1e-6, mu_dtype=None, *,
          nesterov: bool = False, use_clipping: bool = True, clip_value_fn=None) -> Reference:
    r"""ADOPT: :math:`\theta_t = \theta_{t-1} - \eta_t m_t` (Taniguchi et al., 2024, Algorithm 2,
    line 6); see :func:`scale_by_adopt`."""
    return chain(
        scale_by_adopt(b1, b2, eps, mu_dtype, nesterov=nesterov, use_clipping=use_clipping,
                       clip_value_fn=clip_value_fn),
        scale_by_learning_rate(learning_rate),
    )
