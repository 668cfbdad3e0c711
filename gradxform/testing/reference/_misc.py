r"""NumPy references of the sign, optimistic, Polyak, DoG, centralization and normalization rules
(the library's ``transforms/_sign``, ``_optimistic``, ``_polyak_sgd``, ``_dog``, ``_centralize``
and ``_misc``)."""

from __future__ import annotations

import numpy as np

from gradxform.testing.reference._adam import scale_by_adam
from gradxform.testing.reference._common import (
    Reference,
    _ratio,
    _cast_like,
    _f64,
    _full_like,
    _leaves,
    _map,
    _no_state,
    _rule,
    _to64,
    chain,
)
from gradxform.testing.reference._momentum import ema, sgd
from gradxform.testing.reference._scale import scale_by_learning_rate

__all__ = [
    "centralize",
    "normalize_by_update_norm",
    "optimistic_adam",
    "optimistic_adam_v2",
    "optimistic_gradient_descent",
    "polyak_sgd",
    "scale_by_distance_over_gradients",
    "scale_by_optimistic_gradient",
    "scale_by_polyak",
    "scale_by_sign",
    "sign_sgd",
    "signum",
]


# ----------------------------------------------------------------------------- sign


def scale_by_sign() -> Reference:
    r"""The sign of the gradient, :math:`u_t = \operatorname{sign}(g_t)` (Bernstein et al., 2018,
    "signSGD: Compressed Optimisation for Non-Convex Problems", Algorithm 1)."""
    return _rule(_no_state, lambda g, state, params: (_map(np.sign, g), state))


def sign_sgd(learning_rate) -> Reference:
    r"""signSGD, :math:`\theta_{t+1} = \theta_t - \eta_t \operatorname{sign}(g_t)` (Bernstein et al.,
    2018, Algorithm 1)."""
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


def signum(learning_rate, beta: float = 0.9, accumulator_dtype=None) -> Reference:
    r"""Signum (Bernstein et al., 2018, Algorithm 3):
    :math:`m_t = \beta m_{t-1} + (1 - \beta) g_t`, :math:`\theta_{t+1} = \theta_t - \eta_t \operatorname{sign}(m_t)`."""
    del accumulator_dtype
    return chain(ema(beta, debias=False), scale_by_sign(), scale_by_learning_rate(learning_rate))


# ----------------------------------------------------------------------------- optimistic


def scale_by_optimistic_gradient(alpha: float = 1.0, beta: float = 1.0) -> Reference:
    r"""Generalized optimistic gradient (Daskalakis et al., 2018, "Training GANs with Optimism",
    Section 3, for :math:`\alpha = \beta = 1`; Mokhtari et al., 2020, in general):

    .. math:: u_t = (\alpha + \beta) g_t - \beta g_{t-1}, \quad g_0 := g_1
    """

    def update(g, state, params):
        prev = g if state["first"] else state["prev"]
        out = _map(lambda x, p: (alpha + beta) * x - beta * p, g, prev)
        return out, {"first": False, "prev": g}

    return _rule(lambda p: {"first": True, "prev": _full_like(p, 0.0)}, update)


def optimistic_gradient_descent(learning_rate, alpha: float = 1.0, beta: float = 1.0) -> Reference:
    r"""Optimistic gradient descent, :math:`\theta_{t+1} = \theta_t - \eta((\alpha + \beta) g_t - \beta g_{t-1})`
    (Daskalakis et al., 2018: :math:`-2\eta g_t + \eta g_{t-1}` for the defaults)."""
    return chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))


def optimistic_adam(learning_rate, optimism=None, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                    eps_root: float = 0.0, mu_dtype=None, *, nesterov: bool = True) -> Reference:
    r"""Optimistic Adam (Daskalakis et al., 2018, Algorithm 1), with :math:`a_t` Adam's direction:
    :math:`\theta_{t+1} = \theta_t - (\eta + \rho) a_t + \rho a_{t-1}`, :math:`\rho` = optimism (default :math:`\eta`)."""
    rho = learning_rate if optimism is None else optimism
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(learning_rate, rho),
        scale_by_learning_rate(1.0),
    )


def optimistic_adam_v2(learning_rate, *, alpha: float = 1.0, beta: float = 1.0, b1: float = 0.9,
                       b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0, mu_dtype=None,
                       nesterov: bool = True) -> Reference:
    r"""Optimistic Adam (Daskalakis et al., 2018, Algorithm 1, generalized):
    :math:`\theta_{t+1} = \theta_t - \eta_t((\alpha + \beta) a_t - \beta a_{t-1})`."""
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha, beta),
        scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- Polyak


def scale_by_polyak(f_min: float = 0.0, max_learning_rate: float = 1.0, eps: float = 0.0,
                    variant: str = "sps") -> Reference:
    r"""The capped stochastic Polyak step (Loizou et al., 2021, "Stochastic Polyak Step-size for SGD",
    Eq. (5), SPS_max with :math:`c = 1`; ``"sps+"``: the gap clipped at 0, Garrigos et al., 2023):

    .. math:: u_t = \min\left(\frac{f(\theta_t) - f^\star}{\|g_t\|^2 + \epsilon}, \gamma_b\right) g_t

    and :math:`u_t = 0` where :math:`\|g_t\|^2 + \epsilon \le 2^{-52}`. ``update`` needs ``value=``.
    """

    def init(params):
        return {}

    def update(grads, state, params=None, *, value, **extra_args):
        g = _to64(grads)
        sq = sum(float(np.sum(x * x)) for x in _leaves(g))
        gap = float(_f64(value)) - f_min
        if variant == "sps+":
            gap = max(gap, 0.0)
        denom = sq + eps
        step = 0.0 if denom <= np.finfo(np.float64).eps else min(gap / denom, max_learning_rate)
        return _cast_like(_map(lambda x: step * x, g), grads), state

    return Reference(init, update)


def polyak_sgd(max_learning_rate: float = 1.0, scaling=1.0, f_min: float = 0.0, eps: float = 0.0,
               variant: str = "sps") -> Reference:
    r"""SGD with the Polyak step (Loizou et al., 2021, Eq. (5)): the Polyak step of the scaled
    gradient :math:`-c g_t`, i.e. :math:`\theta_{t+1} = \theta_t - \min(\frac{f - f^\star}{c\|g\|^2 + \epsilon/c}, c\gamma_b) g_t`."""
    return chain(sgd(scaling), scale_by_polyak(f_min, max_learning_rate, eps, variant))


# ----------------------------------------------------------------------------- DoG


def scale_by_distance_over_gradients(reps_rel: float = 1e-6, eps: float = 1e-8, param_dtype=None,
                                     global_scale: float = 1.0) -> Reference:
    r"""Layer-wise DoG (Ivgi et al., 2023, "DoG is SGD's Best Friend", Eq. (1), LDoG of Section 3.3),
    per leaf:

    .. math:: r_t = \max(r_{t-1}, \|\theta_t - \theta_0\|), \ r_0 = r_\epsilon(1 + \|\theta_0\|), \quad
              G_t = G_{t-1} + \|g_t\|^2, \quad u_t = s\, r_t g_t / \sqrt{G_t + \epsilon}
    """
    del param_dtype

    def init(params):
        return {
            "r": _map(lambda p: reps_rel * (1 + np.linalg.norm(p.ravel())), params),
            "G": _map(lambda p: 0.0, params),
            "p0": params,
        }

    def update(g, state, params):
        r = _map(lambda r0, p, p0: max(r0, float(np.linalg.norm((p - p0).ravel()))), state["r"], params, state["p0"])
        G = _map(lambda acc, x: acc + float(np.sum(x * x)), state["G"], g)
        out = _map(lambda x, rt, gt: _ratio(global_scale * rt * x, np.sqrt(gt + eps)), g, r, G)
        return out, {"r": r, "G": G, "p0": state["p0"]}

    return _rule(lambda p: init(p), update)


# ----------------------------------------------------------------------------- stateless


def centralize() -> Reference:
    r"""Gradient centralization (Yong et al., 2020, "Gradient Centralization", Eq. (2)): for a leaf of
    rank >= 2, each slice along the leading axis minus its mean over the other axes."""

    def one(x):
        return x - x.mean(axis=tuple(range(1, x.ndim)), keepdims=True) if x.ndim > 1 else x

    return _rule(_no_state, lambda g, state, params: (_map(one, g), state))


def normalize_by_update_norm(scale_factor: float = 1.0, eps: float = 1e-6) -> Reference:
    r"""The normalized update, :math:`u_t = s g_t / (\|g_t\| + \epsilon)` over the whole tree
    (normalized gradient descent; Hazan et al., 2015, Algorithm 1); zero for zero updates."""

    def update(g, state, params):
        norm = np.sqrt(sum(float(np.sum(x * x)) for x in _leaves(g)))
        factor = scale_factor / (norm + eps) if norm + eps > 0 else 0.0
        return _map(lambda x: factor * x, g), state

    return _rule(_no_state, update)
