r"""Per-coordinate adaptive step sizes: AdaGrad, RMSProp (plain and centered), AdaDelta, Rprop.

The library's ``transforms/_adagrad``, ``_rmsprop``, ``_adadelta`` and ``_rprop``; the Adam
family is in ``_adam``.
"""

from __future__ import annotations

import numpy as np

from gradxform.testing.reference._common import Reference, _denominator, _full_like, _map, _ratio, _rule, chain, identity
from gradxform.testing.reference._momentum import trace
from gradxform.testing.reference._scale import add_decayed_weights, scale, scale_by_learning_rate

# ----------------------------------------------------------------------------- AdaGrad


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7, *, eps_in_sqrt: bool = True) -> Reference:
    r"""AdaGrad scaling by the root of the sum of squares (Duchi, Hazan & Singer, 2011).

    .. math:: r_t = r_{t-1} + g_t^2, \quad r_0 = r_{init}

    * ``eps_in_sqrt=True`` (optax ``scale_by_rss``): :math:`u_t = g_t / \sqrt{r_t + \epsilon}`,
      and :math:`u_t = 0` where :math:`r_t = 0`;
    * ``eps_in_sqrt=False`` (Goodfellow, Bengio & Courville (2016), Algorithm 8.4; PyTorch's
      ``Adagrad``): :math:`u_t = g_t / (\epsilon + \sqrt{r_t})`. The book starts the
      accumulator at 0: pass ``initial_accumulator_value=0.``.
    """

    def update(g, state, params):
        acc = _map(lambda x, r: r + x * x, g, state["sum_of_squares"])
        if eps_in_sqrt:
            with np.errstate(divide="ignore"):
                out = _map(lambda x, r: np.where(r > 0, 1.0 / np.sqrt(r + eps), 0.0) * x, g, acc)
        else:
            out = _map(lambda x, r: _ratio(x, eps + np.sqrt(r)), g, acc)
        return out, {"sum_of_squares": acc}

    return _rule(lambda p: {"sum_of_squares": _full_like(p, initial_accumulator_value)}, update)


def adagrad(
    learning_rate, initial_accumulator_value: float = 0.1, eps: float = 1e-7, *, eps_in_sqrt: bool = True
) -> Reference:
    r"""AdaGrad (Duchi et al., 2011): :math:`u_t = -\eta_t\, \mathrm{scale\_by\_rss}(g)_t`, see :func:`scale_by_rss`.

    Default: optax's :math:`-\eta g_t / \sqrt{r_t + \epsilon}`, :math:`r_0 = 0.1`. Goodfellow,
    Bengio & Courville (2016), Algorithm 8.4, is
    ``adagrad(lr, initial_accumulator_value=0., eps_in_sqrt=False)``:
    :math:`-\eta g_t / (\delta + \sqrt{r_t})`, :math:`r_0 = 0`.
    """
    return chain(
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- RMSProp


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Reference:
    r"""RMSProp scaling (Tieleman & Hinton, 2012), optax ``scale_by_rms``.

    .. math:: \nu_t = \rho \nu_{t-1} + (1 - \rho) g_t^2, \quad \nu_0 = \nu_{init}, \quad
              \hat\nu_t = \nu_t / (1 - \rho^t) \ \text{if bias\_correction else}\ \nu_t

    * ``eps_in_sqrt=True`` (optax; Goodfellow, Bengio & Courville (2016), Algorithm 8.5):
      :math:`u_t = g_t / \sqrt{\hat\nu_t + \epsilon}`;
    * ``eps_in_sqrt=False`` (PyTorch's ``RMSprop``): :math:`u_t = g_t / (\sqrt{\hat\nu_t} + \epsilon)`.
    """

    def update(g, state, params):
        count = state["count"] + 1
        nu = _map(lambda x, n: decay * n + (1 - decay) * x * x, g, state["nu"])
        nu_hat = _map(lambda n: n / (1 - decay**count), nu) if bias_correction else nu
        out = _map(lambda x, n: _ratio(x, _denominator(n, eps, eps_in_sqrt)), g, nu_hat)
        return out, {"count": count, "nu": nu}

    return _rule(lambda p: {"count": 0, "nu": _full_like(p, initial_scale)}, update)


def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Reference:
    r"""Centered RMSProp (Graves, 2013), optax ``scale_by_stddev``.

    .. math:: \mu_t = \rho \mu_{t-1} + (1 - \rho) g_t, \quad
              \nu_t = \rho \nu_{t-1} + (1 - \rho) g_t^2, \quad \mu_0 = 0, \ \nu_0 = \nu_{init}

    .. math:: u_t = g_t / \sqrt{\hat\nu_t - \hat\mu_t^2 + \epsilon}
              \quad (\text{eps\_in\_sqrt=False: } g_t / (\sqrt{\hat\nu_t - \hat\mu_t^2} + \epsilon))

    with hats the bias-corrected moments when ``bias_correction`` (else the moments).
    """

    def update(g, state, params):
        count = state["count"] + 1
        mu = _map(lambda x, m: decay * m + (1 - decay) * x, g, state["mu"])
        nu = _map(lambda x, n: decay * n + (1 - decay) * x * x, g, state["nu"])
        corr = (1 - decay**count) if bias_correction else 1.0
        out = _map(lambda x, m, n: _ratio(x, _denominator(n / corr - (m / corr) ** 2, eps, eps_in_sqrt)), g, mu, nu)
        return out, {"count": count, "mu": mu, "nu": nu}

    return _rule(lambda p: {"count": 0, "mu": _full_like(p, 0.0), "nu": _full_like(p, initial_scale)}, update)


def rmsprop(
    learning_rate,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> Reference:
    r"""RMSProp as optax: ``chain(scale_by_rms | scale_by_stddev, scale_by_learning_rate, trace)``.

    .. math:: s_t = -\eta_t\, g_t / \sqrt{\hat\nu_t + \epsilon}, \quad
              u_t = s_t \ \ \text{or, with momentum,}\ \ \tau_t = s_t + \alpha \tau_{t-1},\ u_t = \tau_t

    The momentum trace comes *after* the learning rate (so past steps keep their learning
    rate). ``centered`` uses :func:`scale_by_stddev`; eps placement as :func:`scale_by_rms`
    (the default is Goodfellow, Bengio & Courville (2016), Algorithm 8.5; ``eps_in_sqrt=False``
    is PyTorch's).
    """
    if centered:
        scaling = scale_by_stddev(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
    else:
        scaling = scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
    last = identity() if momentum is None else trace(momentum, nesterov)
    return chain(scaling, scale_by_learning_rate(learning_rate), last)


# ----------------------------------------------------------------------------- AdaDelta


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> Reference:
    r"""AdaDelta scaling (Zeiler, 2012, Algorithm 1), optax ``scale_by_adadelta``.

    .. math:: E[g^2]_t = \rho E[g^2]_{t-1} + (1 - \rho) g_t^2, \quad
              u_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t, \quad
              E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1 - \rho) u_t^2

    (positive: the paper's :math:`\Delta x_t` is :math:`-u_t`; the sign comes from the learning rate).
    """

    def update(g, state, params):
        e_g = _map(lambda x, e: rho * e + (1 - rho) * x * x, g, state["e_g"])
        out = _map(lambda x, eg, ex: _ratio(np.sqrt(ex + eps) * x, np.sqrt(eg + eps)), g, e_g, state["e_x"])
        e_x = _map(lambda u, e: rho * e + (1 - rho) * u * u, out, state["e_x"])
        return out, {"e_g": e_g, "e_x": e_x}

    return _rule(lambda p: {"e_g": _full_like(p, 0.0), "e_x": _full_like(p, 0.0)}, update)


def adadelta(
    learning_rate=None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay=0.0,
    weight_decay_mask=None,
    *,
    variant: str = "optax",
) -> Reference:
    r"""AdaDelta as optax: ``chain(add_decayed_weights, scale_by_adadelta, scale_by_learning_rate)``.

    With a learning rate: :math:`u_t = -\eta_t\, \mathrm{adadelta}(g_t + \lambda\theta_{t-1})`.

    ``learning_rate=None``:

    * ``variant="optax"`` (default, optax 0.2.8's numerics): no learning-rate transform at all,
      so :math:`u_t = +\sqrt{E[\Delta^2]_{t-1} + \epsilon} / \sqrt{E[g^2]_t + \epsilon}\, g_t`,
      a step *up* the gradient;
    * ``variant="paper"`` (Zeiler, 2012): :math:`u_t = \Delta x_t = -(\dots) g_t`, descent
      (the same as ``learning_rate=1.``).
    """
    if variant not in ("optax", "paper"):
        raise ValueError(f"reference.adadelta: variant must be 'optax' or 'paper', got {variant!r}")
    if learning_rate is None and variant == "paper":
        learning_rate = 1.0
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- Rprop


def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> Reference:
    r"""iRprop- (Igel & Hüsken, 2000; the sign rule of Riedmiller & Braun, 1993) as PyTorch's ``Rprop``.

    Per coordinate, with step sizes :math:`\Delta_0 = \eta` (the learning rate) and
    :math:`g'_0 = 0`:

    .. math:: \Delta_t = \begin{cases}
                \mathrm{clip}(\eta^+ \Delta_{t-1}, \Delta_{min}, \Delta_{max}) & g_t g'_{t-1} > 0 \\
                \mathrm{clip}(\eta^- \Delta_{t-1}, \Delta_{min}, \Delta_{max}) & g_t g'_{t-1} < 0 \\
                \Delta_{t-1} & \text{otherwise} \end{cases}, \quad
              g'_t = \begin{cases} 0 & g_t g'_{t-1} < 0 \\ g_t & \text{otherwise} \end{cases}

    .. math:: u_t = \Delta_t \, \mathrm{sign}(g'_t)

    (positive; ``rprop`` negates it). A coordinate whose gradient changed sign takes no step
    this time and forgets its gradient. The update uses the *current* step's sign and size.

    Note:
      optax 0.2.8's ``scale_by_rprop`` has the same step-size rule (clipping to
      :math:`[\Delta_{min}, \Delta_{max}]` on every change, like PyTorch) but returns the
      previous step's :math:`u_{t-1}` (zero at the first step): a bug not reproduced here.
    """

    def update(g, state, params):
        prod = _map(lambda x, p: x * p, g, state["prev_grads"])
        step = _map(
            lambda s, size: np.where(
                s > 0,
                np.clip(size * eta_plus, min_step_size, max_step_size),
                np.where(s < 0, np.clip(size * eta_minus, min_step_size, max_step_size), size),
            ),
            prod,
            state["step_sizes"],
        )
        g_eff = _map(lambda x, s: np.where(s < 0, 0.0, x), g, prod)
        out = _map(lambda size, x: size * np.sign(x), step, g_eff)
        return out, {"step_sizes": step, "prev_grads": g_eff}

    return _rule(lambda p: {"step_sizes": _full_like(p, learning_rate), "prev_grads": _full_like(p, 0.0)}, update)


def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> Reference:
    r"""iRprop- as PyTorch: :math:`u_t = -\Delta_t \mathrm{sign}(g'_t)`, see :func:`scale_by_rprop`
    (which does not copy optax 0.2.8's one-step lag)."""
    return chain(scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0))
