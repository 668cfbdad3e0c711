r"""Lion (Chen et al., 2023, Algorithm 2) (the library's ``transforms/_lion``)."""

from __future__ import annotations

import numpy as np

from gradxform.testing.reference._common import Reference, _full_like, _map, _rule, chain
from gradxform.testing.reference._scale import add_decayed_weights, scale_by_learning_rate


def scale_by_lion(b1: float = 0.9, b2: float = 0.99, mu_dtype=None, *, mode: str = "hard",
                  smooth_beta: float = 1.0) -> Reference:
    r"""Lion's update direction (Chen et al., 2023, "Symbolic Discovery of Optimization
    Algorithms", Algorithm 2, lines 5-8, without the learning rate and weight decay).

    .. math:: c_t = \beta_1 \mu_{t-1} + (1 - \beta_1) g_t, \quad
              u_t = \operatorname{sign}(c_t), \quad
              \mu_t = \beta_2 \mu_{t-1} + (1 - \beta_2) g_t

    ``mode="smooth"``: :math:`u_t = \tanh(\beta_s c_t)`; ``mode="refined"``: :math:`u_t = c_t`
    where :math:`|c_t| < 1`, else :math:`\operatorname{sign}(c_t)` (optax's variants).
    """
    del mu_dtype  # the reference keeps float64

    def direction(c):
        if mode == "smooth":
            return np.tanh(smooth_beta * c)
        if mode == "refined":
            return np.where(np.abs(c) < 1, c, np.sign(c))
        return np.sign(c)

    def update(g, state, params):
        out = _map(lambda x, m: direction(b1 * m + (1 - b1) * x), g, state["mu"])
        mu = _map(lambda x, m: b2 * m + (1 - b2) * x, g, state["mu"])
        return out, {"count": state["count"] + 1, "mu": mu}

    return _rule(lambda p: {"count": 0, "mu": _full_like(p, 0.0)}, update)


def lion(learning_rate, b1: float = 0.9, b2: float = 0.99, mu_dtype=None, weight_decay: float = 1e-3,
         mask=None) -> Reference:
    r"""Lion: :math:`\theta_t = \theta_{t-1} - \eta_t(\operatorname{sign}(c_t) + \lambda \theta_{t-1})`
    (Chen et al., 2023, Algorithm 2, line 7); see :func:`scale_by_lion`."""
    return chain(
        scale_by_lion(b1, b2, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
