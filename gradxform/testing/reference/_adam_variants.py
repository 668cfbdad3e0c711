r"""Adam's variants: Adamax, AMSGrad, NAdam, RAdam, Yogi, Adan (the library's ``transforms/_adam_variants``).

Each rule is written from its paper's algorithm, in float64, with optax's conventions as
the defaults and the paper's variant as an option where they differ.
"""

from __future__ import annotations

import math

import numpy as np

from gradxform.testing.reference._adam import _stored, scale_by_adam
from gradxform.testing.reference._common import (
    Reference,
    _ratio,
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
    "adamax",
    "adamaxw",
    "adan",
    "amsgrad",
    "nadam",
    "nadamw",
    "radam",
    "scale_by_adamax",
    "scale_by_adan",
    "scale_by_amsgrad",
    "scale_by_radam",
    "scale_by_yogi",
    "yogi",
]


def _zeros_state(params, *names):
    return {"count": 0, **{name: _full_like(params, 0.0) for name in names}}


# ----------------------------------------------------------------------------- Adamax


def scale_by_adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Reference:
    r"""Adamax (Kingma & Ba, 2015, "Adam: A Method for Stochastic Optimization", Section 7.1,
    Algorithm 2), without the step size:

    .. math:: m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
              u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon), \quad
              \Delta_t = \frac{m_t}{(1 - \beta_1^t)\, u_t}

    The paper has no :math:`\epsilon` (``eps=0``); optax and PyTorch add it inside the max.
    """

    def update(g, state, params):
        t = state["count"] + 1
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        nu = _map(lambda x, u: np.maximum(b2 * u, np.abs(x) + eps), g, state["nu"])
        out = _map(lambda m, u: _ratio(m / (1 - b1**t), u), mu, nu)
        return out, {"count": t, "mu": mu, "nu": nu}

    return _rule(lambda p: _zeros_state(p, "mu", "nu"), update)


def adamax(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Reference:
    r"""Adamax: :math:`\theta_t = \theta_{t-1} - \eta_t m_t / ((1 - \beta_1^t) u_t)`
    (Kingma & Ba, 2015, Algorithm 2); see :func:`scale_by_adamax`."""
    return chain(scale_by_adamax(b1, b2, eps), scale_by_learning_rate(learning_rate))


def adamaxw(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay=1e-4,
            mask=None) -> Reference:
    r"""Adamax with decoupled weight decay (Loshchilov & Hutter, 2019, as optax's ``adamaxw``):
    :math:`-\eta_t (\Delta_t + \lambda \theta_{t-1})`; see :func:`scale_by_adamax`."""
    return chain(
        scale_by_adamax(b1, b2, eps), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate)
    )


# ----------------------------------------------------------------------------- AMSGrad


def scale_by_amsgrad(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    bias_correction_mu: bool = True,
    bias_correction_nu: bool = True,
    *,
    max_of: str = "corrected",
) -> Reference:
    r"""AMSGrad (Reddi, Kale & Kumar, 2018, "On the Convergence of Adam and Beyond", Algorithm 2).

    .. math:: m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
              v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
              \hat v_t = \max(\hat v_{t-1}, v_t), \quad
              \Delta_t = m_t / \sqrt{\hat v_t}

    The paper has no bias correction and no :math:`\epsilon`: ``bias_correction_mu=False,
    bias_correction_nu=False, eps=0``. The defaults are optax's: :math:`m_t` divided by
    :math:`1 - \beta_1^t`, the max taken over :math:`v_t / (1 - \beta_2^t)`, and
    :math:`\Delta_t = \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)`.
    ``max_of="raw"`` is PyTorch's ``Adam(amsgrad=True)``: the max over the raw :math:`v_t`,
    divided by :math:`1 - \beta_2^t` afterwards (the state then holds the raw max).
    """
    if max_of not in ("corrected", "raw"):
        raise ValueError(f"reference.scale_by_amsgrad: max_of must be 'corrected' or 'raw', got {max_of!r}")

    def update(g, state, params):
        t = state["count"] + 1
        c1 = (1 - b1**t) if bias_correction_mu else 1.0
        c2 = (1 - b2**t) if bias_correction_nu else 1.0
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        nu = _map(lambda x, v: b2 * v + (1 - b2) * x * x, g, state["nu"])
        if max_of == "raw":
            nu_max = _map(np.maximum, state["nu_max"], nu)
            denom = _map(lambda v: np.sqrt(v / c2 + eps_root) + eps, nu_max)
        else:
            nu_max = _map(lambda old, v: np.maximum(old, v / c2), state["nu_max"], nu)
            denom = _map(lambda v: np.sqrt(v + eps_root) + eps, nu_max)
        out = _map(lambda m, d: _ratio(m / c1, d), mu, denom)
        return out, {"count": t, "mu": _stored(mu, mu_dtype), "nu": nu, "nu_max": nu_max}

    return _rule(lambda p: _zeros_state(p, "mu", "nu", "nu_max"), update)


def amsgrad(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
            mu_dtype=None, bias_correction_mu: bool = True, bias_correction_nu: bool = True, *,
            max_of: str = "corrected") -> Reference:
    r"""AMSGrad: :math:`\theta_t = \theta_{t-1} - \eta_t \Delta_t` (Reddi et al., 2018, Algorithm 2);
    see :func:`scale_by_amsgrad`."""
    return chain(
        scale_by_amsgrad(b1, b2, eps, eps_root, mu_dtype, bias_correction_mu, bias_correction_nu, max_of=max_of),
        scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- NAdam


def _scale_by_nadam(mu: float, nu: float, eps: float, eps_root: float) -> Reference:
    r"""NAdam's direction (Dozat, 2016, "Incorporating Nesterov Momentum into Adam", Algorithm 2,
    with a constant momentum schedule :math:`\mu_t = \mu`):

    .. math:: \hat g_t = \frac{g_t}{1 - \mu^t}, \quad m_t = \mu m_{t-1} + (1 - \mu) g_t, \quad
              \hat m_t = \frac{m_t}{1 - \mu^{t+1}}, \quad n_t = \nu n_{t-1} + (1 - \nu) g_t^2, \quad
              \hat n_t = \frac{n_t}{1 - \nu^t}, \quad
              \bar m_t = (1 - \mu) \hat g_t + \mu \hat m_t, \quad
              \Delta_t = \frac{\bar m_t}{\sqrt{\hat n_t + \epsilon_{root}} + \epsilon}

    (:math:`\epsilon_{root}` is optax's; the paper has :math:`\epsilon_{root} = 0`.)
    """

    def update(g, state, params):
        t = state["count"] + 1
        m = _map(lambda x, old: mu * old + (1 - mu) * x, g, state["mu"])
        n = _map(lambda x, old: nu * old + (1 - nu) * x * x, g, state["nu"])

        def step(x, m_t, n_t):
            g_hat, m_hat, n_hat = x / (1 - mu**t), m_t / (1 - mu ** (t + 1)), n_t / (1 - nu**t)
            return _ratio((1 - mu) * g_hat + mu * m_hat, np.sqrt(n_hat + eps_root) + eps)

        return _map(step, g, m, n), {"count": t, "mu": m, "nu": n}

    return _rule(lambda p: _zeros_state(p, "mu", "nu"), update)


def nadam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
          mu_dtype=None, *, nesterov: bool = True, nu_dtype=None) -> Reference:
    r"""NAdam: :math:`\theta_t = \theta_{t-1} - \eta_t \Delta_t` (Dozat, 2016, Algorithm 2), with
    :math:`\mu = \beta_1`, :math:`\nu = \beta_2`; ``nesterov=False`` is Adam."""
    del nu_dtype  # the reference keeps float64
    if not nesterov:
        return chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype), scale_by_learning_rate(learning_rate))
    del mu_dtype
    return chain(_scale_by_nadam(b1, b2, eps, eps_root), scale_by_learning_rate(learning_rate))


def nadamw(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
           mu_dtype=None, weight_decay=1e-4, mask=None, *, nesterov: bool = True, nu_dtype=None) -> Reference:
    r"""NAdam with decoupled weight decay (optax's ``nadamw``):
    :math:`-\eta_t (\Delta_t + \lambda \theta_{t-1})`; see :func:`nadam`."""
    del nu_dtype
    inner = (_scale_by_nadam(b1, b2, eps, eps_root) if nesterov
             else scale_by_adam(b1, b2, eps, eps_root, mu_dtype))
    return chain(inner, add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))


# ----------------------------------------------------------------------------- RAdam


def scale_by_radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
                   threshold: float = 5.0, *, nesterov: bool = False) -> Reference:
    r"""RAdam (Liu et al., 2020, "On the Variance of the Adaptive Learning Rate and Beyond",
    Algorithm 2), without the step size:

    .. math:: \rho_\infty = \frac{2}{1 - \beta_2} - 1, \quad
              \rho_t = \rho_\infty - \frac{2 t \beta_2^t}{1 - \beta_2^t}, \quad
              r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}

    .. math:: \Delta_t = r_t \hat m_t / (\sqrt{\hat v_t + \epsilon_{root}} + \epsilon)
              \text{ if } \rho_t \ge \tau, \qquad \Delta_t = \hat m_t \text{ otherwise}

    The paper rectifies when :math:`\rho_t > 4` and has :math:`l_t = \sqrt{(1-\beta_2^t)/v_t}`
    (``threshold`` just above 4, ``eps=0``); optax uses :math:`\tau = 5` and :math:`\epsilon`
    outside the root. ``nesterov=True``: NAdam's look-ahead
    :math:`\hat m_t = \beta_1 m_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)` (optax).
    """
    rho_inf = 2 / (1 - b2) - 1

    def update(g, state, params):
        t = state["count"] + 1
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        nu = _map(lambda x, v: b2 * v + (1 - b2) * x * x, g, state["nu"])
        if nesterov:
            m_hat = _map(lambda m, x: b1 * m / (1 - b1 ** (t + 1)) + (1 - b1) * x / (1 - b1**t), mu, g)
        else:
            m_hat = _map(lambda m: m / (1 - b1**t), mu)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        if rho >= threshold:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            out = _map(lambda m, v: _ratio(r * m, np.sqrt(v / (1 - b2**t) + eps_root) + eps), m_hat, nu)
        else:
            out = m_hat
        return out, {"count": t, "mu": mu, "nu": nu}

    return _rule(lambda p: _zeros_state(p, "mu", "nu"), update)


def radam(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
          threshold: float = 5.0, *, nesterov: bool = False) -> Reference:
    r"""RAdam: :math:`\theta_t = \theta_{t-1} - \eta_t \Delta_t` (Liu et al., 2020, Algorithm 2);
    see :func:`scale_by_radam`."""
    return chain(scale_by_radam(b1, b2, eps, eps_root, threshold, nesterov=nesterov),
                 scale_by_learning_rate(learning_rate))


# ----------------------------------------------------------------------------- Yogi


def scale_by_yogi(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3, eps_root: float = 0.0,
                  initial_accumulator_value: float = 1e-6, *, bias_correction: bool = True) -> Reference:
    r"""Yogi (Zaheer et al., 2018, "Adaptive Methods for Nonconvex Optimization", Algorithm 2):

    .. math:: m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t, \quad
              v_t = v_{t-1} - (1 - \beta_2) \operatorname{sign}(v_{t-1} - g_t^2) g_t^2, \quad
              \Delta_t = \frac{m_t}{\sqrt{v_t} + \epsilon}

    with :math:`m_0 = v_0 = ` ``initial_accumulator_value``. The paper has no bias
    correction (``bias_correction=False``); optax divides :math:`m_t` by :math:`1 - \beta_1^t`
    and :math:`v_t` by :math:`1 - \beta_2^t` and adds :math:`\epsilon_{root}` under the root.
    """

    def update(g, state, params):
        t = state["count"] + 1
        c1, c2 = ((1 - b1**t), (1 - b2**t)) if bias_correction else (1.0, 1.0)
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        nu = _map(lambda x, v: v - (1 - b2) * np.sign(v - x * x) * x * x, g, state["nu"])
        out = _map(lambda m, v: (m / c1) / (np.sqrt(v / c2 + eps_root) + eps), mu, nu)
        return out, {"count": t, "mu": mu, "nu": nu}

    def init(p):
        return {"count": 0, "mu": _full_like(p, initial_accumulator_value),
                "nu": _full_like(p, initial_accumulator_value)}

    return _rule(init, update)


def yogi(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3) -> Reference:
    r"""Yogi: :math:`\theta_t = \theta_{t-1} - \eta_t \Delta_t` (Zaheer et al., 2018, Algorithm 2),
    optax's alias (``eps_root=0``, ``initial_accumulator_value=1e-6``); see :func:`scale_by_yogi`."""
    return chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))


# ----------------------------------------------------------------------------- Adan


def scale_by_adan(b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
                  eps_root: float = 0.0) -> Reference:
    r"""Adan (Xie et al., 2022, "Adan: Adaptive Nesterov Momentum Algorithm for Faster Optimizing
    Deep Models", arXiv:2208.06677, Algorithm 1), without the step size and weight decay.

    The paper's :math:`\beta_1, \beta_2, \beta_3` (0.02, 0.08, 0.01) weigh the *new* term; with
    :math:`\bar\beta_i = 1 - \beta_i^{paper}` (the arguments here, 0.98, 0.92, 0.99):

    .. math:: m_k = \bar\beta_1 m_{k-1} + (1 - \bar\beta_1) g_k, \quad
              v_k = \bar\beta_2 v_{k-1} + (1 - \bar\beta_2)(g_k - g_{k-1}), \\
              n_k = \bar\beta_3 n_{k-1} + (1 - \bar\beta_3)[g_k + \bar\beta_2 (g_k - g_{k-1})]^2, \quad
              \Delta_k = \frac{\hat m_k + \bar\beta_2 \hat v_k}{\sqrt{\hat n_k + \epsilon_{root}} + \epsilon}

    (the paper's :math:`(1 - \beta_2)` is :math:`\bar\beta_2`), with :math:`g_0 = g_1` (no
    difference at the first step) and the hats dividing by :math:`1 - \bar\beta_i^k`, as in the
    authors' code.
    """

    def update(g, state, params):
        t = state["count"] + 1
        diff = _map(lambda x, prev: x - prev, g, state["g"]) if t > 1 else _map(np.zeros_like, g)
        m = _map(lambda x, old: b1 * old + (1 - b1) * x, g, state["m"])
        v = _map(lambda d, old: b2 * old + (1 - b2) * d, diff, state["v"])
        n = _map(lambda x, d, old: b3 * old + (1 - b3) * (x + b2 * d) ** 2, g, diff, state["n"])

        def step(m_k, v_k, n_k):
            direction = m_k / (1 - b1**t) + b2 * v_k / (1 - b2**t)
            return _ratio(direction, np.sqrt(n_k / (1 - b3**t) + eps_root) + eps)

        return _map(step, m, v, n), {"count": t, "m": m, "v": v, "n": n, "g": g}

    return _rule(lambda p: _zeros_state(p, "m", "v", "n", "g"), update)


def adan(learning_rate, b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
         eps_root: float = 1e-8, weight_decay=0.0, mask=None, *, variant: str = "optax") -> Reference:
    r"""Adan (Xie et al., 2022, Algorithm 1) with weight decay:

    * ``variant="optax"``: decoupled, :math:`u_k = -\eta_k (\Delta_k + \lambda \theta_{k-1})`
      (optax's chain; the authors' ``no_prox=True``);
    * ``variant="paper"``: proximal, :math:`\theta_k = (\theta_{k-1} - \eta \Delta_k) / (1 + \lambda\eta)`,
      i.e. :math:`u_k = -\eta (\Delta_k + \lambda \theta_{k-1}) / (1 + \lambda \eta)` (constant
      learning rate only).
    """
    inner = scale_by_adan(b1, b2, b3, eps, eps_root)
    if variant == "optax":
        return chain(inner, add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))
    if variant != "paper" or callable(learning_rate) or mask is not None:
        raise ValueError("reference.adan: variant must be 'optax', or 'paper' with a constant rate and no mask")
    factor = 1.0 / (1.0 + weight_decay * learning_rate)
    return chain(inner, add_decayed_weights(weight_decay), scale_by_learning_rate(learning_rate * factor))
