r"""Parameter-free rules of ``gx.contrib``: COCOB-Backprop, DoG, DoWG (float64, from the papers).

Orabona & Tommasi (2017), "Training Deep Networks without Learning Rates Through Coin
Betting", Algorithm 2; Ivgi, Hinder & Carmon (2023), "DoG is SGD's Best Friend",
Algorithm 1; Khaled, Mishchenko & Jin (2023), "DoWG Unleashed", Algorithm 1. Each
paper's algorithm is written for the plain step; the learning rate, weight decay and
:math:`\epsilon` options are optax's, chained around it as ``optax.contrib`` does.
"""

from __future__ import annotations

import numpy as np
from jax import tree_util as jtu

from gradxform.testing.reference._common import (
    Reference,
    _f64,
    _leaves,
    _map,
    _rule,
    chain,
    identity,
)
from gradxform.testing.reference._scale import (
    add_decayed_weights,
    scale_by_learning_rate,
)

__all__ = ["cocob", "dog", "dowg", "scale_by_cocob"]


# ----------------------------------------------------------------------------- COCOB


def scale_by_cocob(alpha: float = 100.0, eps: float = 1e-8) -> Reference:
    r"""COCOB-Backprop (Orabona & Tommasi, 2017, "Training Deep Networks without Learning Rates
    Through Coin Betting", NeurIPS, Algorithm 2), per coordinate, with :math:`g_t = -\nabla_t`
    the negative gradient (line 4) and :math:`w_1` the initial params:

    .. math:: L_t = \max(L_{t-1}, |g_t|), \ G_t = G_{t-1} + |g_t|, \
              R_t = \max(R_{t-1} + (w_t - w_1) g_t, 0), \ \theta_t = \theta_{t-1} + g_t,

    .. math:: w_{t+1} = w_1 + \frac{\theta_t}{L_t \max(G_t + L_t, \alpha L_t)} (L_t + R_t), \quad
              u_t = w_{t+1} - w_t

    from :math:`L_0 = \epsilon`, :math:`G_0 = R_0 = \theta_0 = 0` (lines 1-10); no bet where
    the denominator is 0 (``eps=0`` before any nonzero gradient).
    """

    def init(params):
        return {
            "w1": params,
            "theta": _map(np.zeros_like, params),
            "L": _map(lambda p: np.full(np.shape(p), float(eps)), params),
            "G": _map(np.zeros_like, params),
            "R": _map(np.zeros_like, params),
        }

    def update(grads, state, params):
        if params is None:
            raise ValueError("scale_by_cocob needs the params")
        out = {k: [] for k in ("u", "theta", "L", "G", "R")}
        leaves = zip(*(_leaves(t) for t in (grads, params, state["w1"], state["theta"], state["L"],
                                            state["G"], state["R"])))
        for grad, w, w1, theta, L, G, R in leaves:
            g = -grad
            L = np.maximum(L, np.abs(g))
            G = G + np.abs(g)
            R = np.maximum(R + (w - w1) * g, 0.0)
            theta = theta + g
            den = L * np.maximum(G + L, alpha * L)
            beta = np.divide(theta, den, out=np.zeros_like(theta), where=den > 0)
            w_next = w1 + beta * (L + R)
            for k, v in zip(out, (w_next - w, theta, L, G, R)):
                out[k].append(v)
        treedef = jtu.tree_structure(grads)
        trees = {k: treedef.unflatten(v) for k, v in out.items()}
        return trees.pop("u"), {"w1": state["w1"], **trees}

    return _rule(init, update)


def cocob(learning_rate=1.0, alpha: float = 100.0, eps: float = 1e-8, weight_decay: float = 0.0,
          mask=None) -> Reference:
    r"""COCOB-Backprop (Orabona & Tommasi, 2017, Algorithm 2) on the gradients plus weight decay,
    scaled by the learning rate *before* the bet (optax's chain; the paper has neither):
    :math:`\tilde\nabla_t = \alpha_t(\nabla_t + \lambda w_t)`; see :func:`scale_by_cocob`."""
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )


# ----------------------------------------------------------------------------- DoG, DoWG


def _sq_norm(tree) -> float:
    return float(sum(np.sum(_f64(x) ** 2) for x in _leaves(tree)))


def _sq_dist(tree, origin) -> float:
    return float(sum(np.sum((_f64(x) - _f64(y)) ** 2) for x, y in zip(_leaves(tree), _leaves(origin))))


def _scale_by_dog(init_step, eps: float) -> Reference:
    r"""DoG (Ivgi et al., 2023, Algorithm 1) without the sign: :math:`u_t = \eta_t g_t`."""
    tag, value = init_step

    def init(params):
        if tag == "heuristic":
            r0 = value * (1 + np.sqrt(_sq_norm(params)))
        elif tag == "distance":
            r0 = float(value)
        else:
            r0 = 0.0
        return {"first": True, "x0": params, "r": r0, "G": 0.0}

    def update(g, state, params):
        if params is None:
            raise ValueError("dog needs the params")
        r = max(state["r"], np.sqrt(_sq_dist(params, state["x0"])))
        G = state["G"] + _sq_norm(g)
        if tag == "learning_rate" and state["first"]:
            eta = float(value)
        else:
            eta = r / np.sqrt(G + eps) if G + eps > 0 else 0.0
        return _map(lambda x: eta * x, g), {"first": False, "x0": state["x0"], "r": r, "G": G}

    return _rule(init, update)


def dog(learning_rate=1.0, init_step=("heuristic", 1e-6), eps: float = 1e-8, weight_decay=None,
        mask=None) -> Reference:
    r"""DoG (Ivgi, Hinder & Carmon, 2023, "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step
    Size Schedule", ICML, Algorithm 1), over the whole parameter vector:

    .. math:: \bar r_t = \max(\bar r_{t-1}, \|x_t - x_0\|), \quad G_t = G_{t-1} + \|g_t\|^2, \quad
              \eta_t = \bar r_t / \sqrt{G_t + \epsilon}, \quad u_t = -\alpha_t \eta_t g_t

    :math:`\bar r_{-1} = r_\epsilon` is ``value`` (``"distance"``) or :math:`a(1 + \|x_0\|)`
    (``"heuristic"``, the paper's suggestion); ``("learning_rate", e)`` takes
    :math:`\eta_0 = e` (equivalently :math:`r_\epsilon = e \|g_0\|` in the paper) and
    :math:`\bar r_{-1} = 0`. :math:`\epsilon` (optax's) is 0 in the paper; weight decay and the
    learning rate :math:`\alpha_t` are optax's additions.
    """
    return chain(
        identity() if weight_decay is None else add_decayed_weights(weight_decay, mask),
        _scale_by_dog(init_step, eps),
        scale_by_learning_rate(learning_rate),
    )


def _scale_by_dowg(init_estim_sq_dist, eps: float) -> Reference:
    r"""DoWG (Khaled et al., 2023, Algorithm 1) without the sign: :math:`u_t = \eta_t g_t`."""

    def init(params):
        r0_sq = eps if init_estim_sq_dist is None else init_estim_sq_dist
        return {"x0": params, "v": 0.0, "r_sq": float(r0_sq)}

    def update(g, state, params):
        if params is None:
            raise ValueError("dowg needs the params")
        r_sq = max(state["r_sq"], _sq_dist(params, state["x0"]))
        v = state["v"] + r_sq * _sq_norm(g)
        den = np.sqrt(v) + eps
        eta = r_sq / den if den > 0 else 0.0
        return _map(lambda x: eta * x, g), {"x0": state["x0"], "v": v, "r_sq": r_sq}

    return _rule(init, update)


def dowg(learning_rate=1.0, init_estim_sq_dist=None, eps: float = 1e-4, weight_decay=None,
         mask=None) -> Reference:
    r"""DoWG (Khaled, Mishchenko & Jin, 2023, "DoWG Unleashed: An Efficient Universal
    Parameter-Free Gradient Descent Method", NeurIPS, Algorithm 1), over the whole vector:

    .. math:: \bar r_t^2 = \max(\bar r_{t-1}^2, \|x_t - x_0\|^2), \quad
              v_t = v_{t-1} + \bar r_t^2 \|g_t\|^2, \quad
              \eta_t = \bar r_t^2 / (\sqrt{v_t} + \epsilon), \quad u_t = -\alpha_t \eta_t g_t

    from :math:`v_{-1} = 0` and :math:`\bar r_{-1}^2 = r_\epsilon^2` = ``init_estim_sq_dist``
    (:math:`\epsilon` when None). :math:`\epsilon` is 0 in the paper; weight decay and the
    learning rate :math:`\alpha_t` are optax's additions.
    """
    return chain(
        identity() if weight_decay is None else add_decayed_weights(weight_decay, mask),
        _scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )
