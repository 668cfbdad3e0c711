r"""The Adam family: Adam and NAdam, AdamW, AdaBelief (the library's ``transforms/_adam`` and ``_adabelief``)."""

from __future__ import annotations

import numpy as np

from gradxform.testing.reference._common import Reference, _denominator, _full_like, _map, _ratio, _rule, chain
from gradxform.testing.reference._scale import add_decayed_weights, scale_by_learning_rate


def _first_moment_hat(mu, g, b1: float, count: int, nesterov: bool):
    r"""Bias-corrected first moment; Nesterov (NAdam, Dozat 2016, as optax, without the extra
    :math:`\beta_2`): :math:`\beta_1 \mu_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)`."""
    if nesterov:
        return _map(lambda m, x: b1 * m / (1 - b1 ** (count + 1)) + (1 - b1) * x / (1 - b1**count), mu, g)
    return _map(lambda m: m / (1 - b1**count), mu)


def _stored(tree, dtype):
    """The tree as a state in ``dtype`` holds it (rounded), kept as float64."""
    return tree if dtype is None else _map(lambda x: x.astype(np.dtype(dtype)).astype(np.float64), tree)


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    *,
    nesterov: bool = False,
    eps_in_sqrt: bool = False,
) -> Reference:
    r"""Adam scaling (Kingma & Ba, 2015, Algorithm 1), optax ``scale_by_adam``.

    .. math:: \mu_t = \beta_1 \mu_{t-1} + (1 - \beta_1) g_t, \quad
              \nu_t = \beta_2 \nu_{t-1} + (1 - \beta_2) g_t^2, \quad
              \hat\mu_t = \frac{\mu_t}{1 - \beta_1^t}, \quad \hat\nu_t = \frac{\nu_t}{1 - \beta_2^t}

    * default (optax, PyTorch; Kingma & Ba's Algorithm 1 and Goodfellow, Bengio & Courville
      (2016), Algorithm 8.7, when :math:`\epsilon_{root} = 0`):
      :math:`u_t = \hat\mu_t / (\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon)`;
    * ``eps_in_sqrt=True``: :math:`u_t = \hat\mu_t / \sqrt{\hat\nu_t + \epsilon_{root} + \epsilon}`,
      :math:`\epsilon` inside the root as in RMSProp's Algorithm 8.5 of Goodfellow et al. (2016)
      (the same as ``eps=0, eps_root=eps``);
    * ``nesterov=True`` (NAdam as optax):
      :math:`\hat\mu_t = \beta_1 \mu_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)`.

    ``mu_dtype`` rounds the stored first moment to that dtype after each step (as optax
    stores it), while the current step uses the unrounded value.
    """

    def update(g, state, params):
        count = state["count"] + 1
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        nu = _map(lambda x, n: b2 * n + (1 - b2) * x * x, g, state["nu"])
        mu_hat = _first_moment_hat(mu, g, b1, count, nesterov)
        out = _map(lambda m, n: _ratio(m, _denominator(n / (1 - b2**count) + eps_root, eps, eps_in_sqrt)), mu_hat, nu)
        return out, {"count": count, "mu": _stored(mu, mu_dtype), "nu": nu}

    return _rule(lambda p: {"count": 0, "mu": _full_like(p, 0.0), "nu": _full_like(p, 0.0)}, update)


def adam(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    *,
    nesterov: bool = False,
    eps_in_sqrt: bool = False,
) -> Reference:
    r"""Adam (Kingma & Ba, 2015, Algorithm 1).

    .. math:: u_t = -\eta_t \hat\mu_t / (\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon)

    ``chain(scale_by_adam, scale_by_learning_rate)``; see :func:`scale_by_adam`.
    ``nesterov=True`` is optax's NAdam; ``eps_in_sqrt=True`` is
    :math:`-\eta \hat\mu_t / \sqrt{\hat\nu_t + \epsilon}`. The wrappers' references
    (``apply_if_finite``, ``MultiSteps``, ``polyak_averaging``) take this one as their inner rule.
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )


def _negated(value):
    return (lambda count: -value(count)) if callable(value) else -value


def adamw(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    weight_decay=1e-4,
    mask=None,
    *,
    nesterov: bool = False,
    variant: str = "optax",
) -> Reference:
    r"""AdamW (Loshchilov & Hutter, 2019, Algorithm 2). With :math:`a_t` the :func:`scale_by_adam` output:

    * ``variant="optax"`` (optax, PyTorch): :math:`u_t = -\eta_t (a_t + \lambda \theta_{t-1})`,
      the decay scaled by the learning rate
      (``chain(scale_by_adam, add_decayed_weights, scale_by_learning_rate)``);
    * ``variant="paper"``: :math:`u_t = -\eta_t a_t - \lambda \theta_{t-1}`, the decay *not*
      multiplied by the learning rate: the paper's Algorithm 2 with its schedule multiplier
      fixed at 1. (Adding :math:`\lambda\theta` to the gradient instead is the coupled L2
      "Adam" the paper compares against, not AdamW.)
    """
    adam_part = scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)
    if variant == "optax":
        return chain(adam_part, add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))
    if variant == "paper":
        decay = add_decayed_weights(_negated(weight_decay), mask)
        return chain(adam_part, scale_by_learning_rate(learning_rate), decay)
    raise ValueError(f"reference.adamw: variant must be 'optax' or 'paper', got {variant!r}")


def scale_by_belief(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16, *, nesterov: bool = False
) -> Reference:
    r"""AdaBelief scaling (Zhuang et al., 2020, Algorithm 2), optax ``scale_by_belief``.

    .. math:: \mu_t = \beta_1 \mu_{t-1} + (1 - \beta_1) g_t, \quad
              s_t = \beta_2 s_{t-1} + (1 - \beta_2) (g_t - \mu_t)^2 + \epsilon_{root}

    .. math:: u_t = \hat\mu_t / (\sqrt{s_t / (1 - \beta_2^t)} + \epsilon)

    :math:`\epsilon_{root}` is added to the *stored* second moment every step (so it
    accumulates, as in the paper's Algorithm 2 and in optax) and is bias-corrected with it.
    ``nesterov`` as in :func:`scale_by_adam`.
    """

    def update(g, state, params):
        count = state["count"] + 1
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        nu = _map(lambda x, m, s: b2 * s + (1 - b2) * (x - m) ** 2 + eps_root, g, mu, state["nu"])
        mu_hat = _first_moment_hat(mu, g, b1, count, nesterov)
        out = _map(lambda m, s: _ratio(m, np.sqrt(s / (1 - b2**count)) + eps), mu_hat, nu)
        return out, {"count": count, "mu": mu, "nu": nu}

    return _rule(lambda p: {"count": 0, "mu": _full_like(p, 0.0), "nu": _full_like(p, 0.0)}, update)


def adabelief(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> Reference:
    r"""AdaBelief: :math:`u_t = -\eta_t \hat\mu_t / (\sqrt{\hat s_t} + \epsilon)`, see :func:`scale_by_belief`
    (where :math:`\epsilon_{root}` goes)."""
    return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov), scale_by_learning_rate(learning_rate))
