r"""Layer-wise and factored rules: Adafactor, LAMB, LARS, Fromage, NovoGrad, SM3 (the library's
``transforms/_layerwise``, ``_factored`` and ``_sm3``).

Each rule works leaf by leaf ("layer-wise": a leaf of the params is a layer's block), in
float64, written from its paper.
"""

from __future__ import annotations

import numpy as np
from jax import tree_util as jtu

from gradxform.testing.reference._adam import scale_by_adam
from gradxform.testing.reference._common import (
    Reference,
    _at,
    _full_like,
    _leaves,
    _map,
    _ratio,
    _rule,
    chain,
)
from gradxform.testing.reference._momentum import trace
from gradxform.testing.reference._scale import (
    add_decayed_weights,
    scale_by_learning_rate,
)

__all__ = [
    "adafactor",
    "fromage",
    "lamb",
    "lars",
    "novograd",
    "scale_by_factored_rms",
    "scale_by_novograd",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_sm3",
    "scale_by_trust_ratio",
    "sm3",
]


def _need_params(params, name: str):
    if params is None:
        raise ValueError(f"reference.{name} needs the params")
    return params


def _norm(x) -> float:
    return float(np.sqrt(np.sum(np.abs(x) ** 2)))


def _rms(x) -> float:
    x = np.asarray(x)
    return float(np.sqrt(np.sum(np.abs(x) ** 2) / max(x.size, 1)))


# ----------------------------------------------------------------------------- Adafactor


def _leaf_states(params):
    """A count and one (initially empty) dict of statistics per leaf, in flattening order."""
    return {"count": 0, "leaves": [{} for _ in _leaves(params)]}


def _per_leaf(g, states: list, fn):
    """``fn(leaf, leaf_state) -> (update, new_leaf_state)`` over the leaves of ``g``."""
    leaves, treedef = jtu.tree_flatten(g)
    outs = [fn(x, st) for x, st in zip(leaves, states)]
    return treedef.unflatten([o[0] for o in outs]), [o[1] for o in outs]


def _factored_axes(shape, factored: bool, min_dim_size_to_factor: int):
    """``(rows, cols)``: the second-largest and largest axes (ties as ``np.argsort``), or None."""
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def scale_by_factored_rms(factored: bool = True, decay_rate: float = 0.8, step_offset: int = 0,
                          min_dim_size_to_factor: int = 128, epsilon: float = 1e-30,
                          decay_rate_fn=None) -> Reference:
    r"""Adafactor's rescaling (Shazeer & Stern, 2018, "Adafactor: Adaptive Learning Rates with
    Sublinear Memory Cost", Algorithm 4 for factored leaves, Algorithm 5 for the others;
    :math:`\hat\beta_{2t} = 1 - t^{-c}`, section 7.2).

    With the rows the leaf's second-largest axis and the columns its largest (any other axes
    are batch axes), and sums as in the paper:

    .. math::
        R_t = \hat\beta_{2t} R_{t-1} + (1 - \hat\beta_{2t}) (G_t^2 + \epsilon_1) 1_m, \quad
        C_t = \hat\beta_{2t} C_{t-1} + (1 - \hat\beta_{2t}) 1_n^\top (G_t^2 + \epsilon_1), \quad
        \hat V_t = R_t C_t / (1_n^\top R_t), \quad U_t = G_t / \sqrt{\hat V_t}

    and unfactored :math:`V_t = \hat\beta_{2t} V_{t-1} + (1 - \hat\beta_{2t})(G_t^2 + \epsilon_1)`,
    :math:`U_t = G_t / \sqrt{V_t}`; :math:`t` = count + 1 - ``step_offset``.
    """

    def beta_at(count):
        if decay_rate_fn is not None:
            return float(decay_rate_fn(count - step_offset, decay_rate))
        t = float(count + 1 - step_offset)
        return 1.0 - t ** (-decay_rate)

    def one(g, st, beta):
        g2 = np.abs(g) ** 2 + epsilon
        axes = _factored_axes(g.shape, factored, min_dim_size_to_factor)
        if axes is None:
            v = beta * st.get("v", 0.0) + (1 - beta) * g2
            return _ratio(g, np.sqrt(v)), {"v": v}
        rows, cols = axes
        x2 = np.moveaxis(g2, (rows, cols), (-2, -1))  # (..., n, m)
        r = beta * st.get("r", 0.0) + (1 - beta) * np.sum(x2, axis=-1)  # (..., n)
        c = beta * st.get("c", 0.0) + (1 - beta) * np.sum(x2, axis=-2)  # (..., m)
        with np.errstate(invalid="ignore", divide="ignore"):
            v_hat = r[..., :, None] * c[..., None, :] / np.sum(r, axis=-1)[..., None, None]
            u = _ratio(np.moveaxis(g, (rows, cols), (-2, -1)), np.sqrt(v_hat))
        return np.moveaxis(u, (-2, -1), (rows, cols)), {"r": r, "c": c}

    def update(g, state, params):
        beta = beta_at(state["count"])
        u, stats = _per_leaf(g, state["leaves"], lambda x, st: one(x, st, beta))
        return u, {"count": state["count"] + 1, "leaves": stats}

    return _rule(_leaf_states, update)


def scale_by_param_block_norm(min_scale: float = 1e-3) -> Reference:
    r""":math:`u_t = \max(\|\theta_{t-1}\|_2, \epsilon_2)\, g_t` per leaf (Shazeer & Stern, 2018,
    section 8's relative step size, with the block's norm in place of its RMS)."""

    def update(g, state, params):
        params = _need_params(params, "scale_by_param_block_norm")
        return _map(lambda x, p: max(_norm(p), min_scale) * x, g, params), state

    return _rule(lambda p: {}, update)


def scale_by_param_block_rms(min_scale: float = 1e-3) -> Reference:
    r""":math:`u_t = \max(\mathrm{RMS}(\theta_{t-1}), \epsilon_2)\, g_t` per leaf: Adafactor's relative
    step size (Shazeer & Stern, 2018, Algorithm 4, line 8: :math:`\alpha_t = \max(\epsilon_2,
    \mathrm{RMS}(X_{t-1}))\rho_t`)."""

    def update(g, state, params):
        params = _need_params(params, "scale_by_param_block_rms")
        return _map(lambda x, p: max(_rms(p), min_scale) * x, g, params), state

    return _rule(lambda p: {}, update)


def adafactor(learning_rate=None, min_dim_size_to_factor: int = 128, decay_rate: float = 0.8,
              decay_offset: int = 0, multiply_by_parameter_scale: bool = True,
              clipping_threshold: float | None = 1.0, momentum: float | None = None, dtype_momentum=None,
              weight_decay_rate=None, eps: float = 1e-30, factored: bool = True,
              weight_decay_mask=None) -> Reference:
    r"""Adafactor (Shazeer & Stern, 2018, Algorithm 4 / 5, lines 5-9), with optax's options.

    .. math::
        \hat U_t = U_t / \max(1, \mathrm{RMS}(U_t) / d), \quad
        \alpha_t = \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))\,\rho_t, \quad
        \theta_t = \theta_{t-1} - \alpha_t \hat U_t

    with :math:`U_t` of :func:`scale_by_factored_rms`, :math:`d` = ``clipping_threshold``
    (no clipping when None), :math:`\rho_t` = ``learning_rate`` (1 when None) and
    :math:`\epsilon_2 = 10^{-3}` (1 when ``multiply_by_parameter_scale=False``). optax's
    extras: ``momentum`` :math:`\beta_1` keeps :math:`m_t = \beta_1 m_{t-1} + (1 - \beta_1)
    \alpha_t \hat U_t` (no bias correction) and steps along it; ``weight_decay_rate``
    :math:`\lambda` adds :math:`\lambda\theta_{t-1}` to the step (not scaled by :math:`\rho_t`).
    """
    del dtype_momentum  # float64 here
    core = scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)

    def init(params):
        return {"core": core.init(params), "count": 0, "m": _full_like(params, 0.0)}

    def update(g, state, params):
        count = state["count"]
        u, inner = core.update(g, state["core"])  # g is float64 here, and so is u
        if clipping_threshold is not None:
            u = _map(lambda x: x / max(1.0, _rms(x) / clipping_threshold), u)
        if learning_rate is not None:
            u = _map(lambda x: _at(learning_rate, count) * x, u)
        if multiply_by_parameter_scale:
            p = _need_params(params, "adafactor")
            u = _map(lambda x, q: max(_rms(q), 1e-3) * x, u, p)
        m = state["m"]
        if momentum is not None:
            m = _map(lambda x, mm: momentum * mm + (1 - momentum) * x, u, m)
            u = m
        if weight_decay_rate is not None:
            p = _need_params(params, "adafactor")
            wd = _at(weight_decay_rate, count)
            mask = weight_decay_mask(p) if callable(weight_decay_mask) else weight_decay_mask
            if mask is None:
                u = _map(lambda x, q: x + wd * q, u, p)
            else:
                u = _map(lambda k, x, q: _map(lambda xi, qi: xi + wd * qi, x, q) if k else x, mask, u, p)
        return _map(lambda x: -x, u), {"core": inner, "count": count + 1, "m": m}

    return _rule(init, update)


# ----------------------------------------------------------------------------- trust ratios


def scale_by_trust_ratio(min_norm: float = 0.0, trust_coefficient: float = 1.0, eps: float = 0.0) -> Reference:
    r"""The layer-wise trust ratio of LARS (You et al., 2017, "Large Batch Training of
    Convolutional Networks", equation 6) and LAMB (You et al., 2020, "Large Batch
    Optimization for Deep Learning: Training BERT in 76 minutes", Algorithm 2, line 9,
    with :math:`\phi(z) = z`), per leaf:

    .. math::
        u_t = \frac{c\,\max(\|\theta_{t-1}\|, n_{min})}{\max(\|g_t\|, n_{min}) + \epsilon}\, g_t

    and :math:`u_t = g_t` where either norm is 0 (a zero layer, or no update).
    """

    def one(x, p):
        pn, un = max(_norm(p), min_norm), max(_norm(x), min_norm)
        if pn == 0.0 or un == 0.0:
            return x
        return trust_coefficient * pn / (un + eps) * x

    def update(g, state, params):
        params = _need_params(params, "scale_by_trust_ratio")
        return _map(one, g, params), state

    return _rule(lambda p: {}, update)


def lamb(learning_rate, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, eps_root: float = 0.0,
         weight_decay: float = 0.0, mask=None) -> Reference:
    r"""LAMB (You et al., 2020, Algorithm 2): Adam's direction plus decoupled weight decay,
    rescaled per layer by the trust ratio.

    .. math::
        r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}, \quad
        \theta_t = \theta_{t-1} - \eta_t \frac{\|\theta_{t-1}\|}{\|r_t + \lambda\theta_{t-1}\|}
                   (r_t + \lambda\theta_{t-1})
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


def _masked(inner: Reference, mask) -> Reference:
    """``inner`` (stateless here) on the leaves (or subtrees) whose mask is True."""
    if mask is True or mask is None:
        return inner

    def update(g, state, params=None, **extra):
        m = mask(params) if callable(mask) else mask
        out, _ = inner.update(g, inner.init(params), params)
        return _map(lambda k, new, old: new if k else old, m, out, g), state

    return Reference(lambda p: {}, update)


def lars(learning_rate, weight_decay: float = 0.0, weight_decay_mask=True, trust_coefficient: float = 0.001,
         eps: float = 0.0, trust_ratio_mask=True, momentum: float = 0.9, nesterov: bool = False) -> Reference:
    r"""LARS (You et al., 2017, Algorithm 1), with optax's trust ratio.

    .. math::
        d_t = g_t + \beta\theta_{t-1}, \quad
        \lambda_t = c \frac{\|\theta_{t-1}\|}{\|d_t\| + \epsilon}, \quad
        v_t = m v_{t-1} - \eta_t \lambda_t d_t, \quad u_t = v_t

    Note: the paper's local rate is :math:`c\|w\| / (\|\nabla L\| + \beta\|w\|)`; optax's (and
    gradxform's) divides by the norm of the decayed gradient :math:`\|\nabla L + \beta w\|`, as
    LAMB does. Nesterov: :math:`u_t = -\eta_t\lambda_t d_t + m v_t`.
    """
    trust = _masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask)
    wd_mask = None if weight_decay_mask is True else weight_decay_mask
    return chain(
        add_decayed_weights(weight_decay, wd_mask),
        trust,
        scale_by_learning_rate(learning_rate),
        trace(momentum, nesterov),
    )


def fromage(learning_rate: float, min_norm: float = 1e-6) -> Reference:
    r"""Fromage (Bernstein et al., 2020, "On the distance between two neural networks and the
    stability of learning", Algorithm 1), per layer:

    .. math::
        \theta_t = \frac{1}{\sqrt{1 + \eta^2}} \left(\theta_{t-1}
                   - \eta \frac{\|\theta_{t-1}\|}{\|g_t\|} g_t\right)

    (norms at least ``min_norm``; the ratio is 1 where a norm is 0), returned as the update
    :math:`u_t = \theta_t - \theta_{t-1}`.
    """
    ratio = scale_by_trust_ratio(min_norm)
    shrink = 1.0 / np.sqrt(1.0 + learning_rate**2)

    def update(g, state, params):
        params = _need_params(params, "fromage")
        r, _ = ratio.update(g, {}, params)
        return _map(lambda x, p: shrink * (p - learning_rate * x) - p, r, params), state

    return _rule(lambda p: {}, update)


# ----------------------------------------------------------------------------- NovoGrad


def scale_by_novograd(b1: float = 0.9, b2: float = 0.25, eps: float = 1e-8, eps_root: float = 0.0,
                      weight_decay: float = 0.0, mu_dtype=None) -> Reference:
    r"""NovoGrad (Ginsburg et al., 2019, "Stochastic Gradient Methods with Layer-wise Adaptive
    Moments for Training of Deep Networks", Algorithm 1), per layer :math:`l`:

    .. math::
        v_1 = \|g_1\|^2, \quad v_t = \beta_2 v_{t-1} + (1 - \beta_2)\|g_t\|^2, \\
        m_1 = \frac{g_1}{\sqrt{v_1 + \epsilon_{root}} + \epsilon} + d\,\theta_0, \quad
        m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_{root}} + \epsilon} + d\,\theta_{t-1}

    and :math:`u_t = m_t` (the optimizer steps by :math:`-\eta_t m_t`).
    """
    del mu_dtype

    def one(x, st, p, first):
        n2 = _norm(x) ** 2
        v = n2 if first else b2 * st["v"] + (1 - b2) * n2
        step = _ratio(x, np.sqrt(v + eps_root) + eps) + (weight_decay * p if weight_decay else 0.0)
        m = step if first else b1 * st["m"] + step
        return m, {"v": v, "m": m}

    def update(g, state, params):
        first = state["count"] == 0
        if weight_decay:
            params = _need_params(params, "scale_by_novograd")
        else:
            params = _map(lambda x: 0.0, g)
        p_leaves = _leaves(params)
        leaves, treedef = jtu.tree_flatten(g)
        outs = [one(x, st, p, first) for x, st, p in zip(leaves, state["leaves"], p_leaves)]
        return treedef.unflatten([o[0] for o in outs]), {
            "count": state["count"] + 1, "leaves": [o[1] for o in outs]}

    return _rule(_leaf_states, update)


def novograd(learning_rate, b1: float = 0.9, b2: float = 0.25, eps: float = 1e-6, eps_root: float = 0.0,
             weight_decay: float = 0.0) -> Reference:
    r"""NovoGrad: :math:`\theta_t = \theta_{t-1} - \eta_t m_t` (Ginsburg et al., 2019, Algorithm 1);
    see :func:`scale_by_novograd`."""
    return chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay), scale_by_learning_rate(learning_rate))


# ----------------------------------------------------------------------------- SM3


def scale_by_sm3(b1: float = 0.9, b2: float = 1.0, eps: float = 1e-8) -> Reference:
    r"""SM3-II (Anil et al., 2019, "Memory-Efficient Adaptive Optimization", Algorithm SM3-II)
    with the cover of a rank-:math:`k` leaf by its slices along each axis (rows and columns of
    a matrix), and momentum.

    For a leaf of rank :math:`\ge 2`, with :math:`\mu^{(a)}` one accumulator per index of
    axis :math:`a`:

    .. math::
        \nu'_t(i) = \beta_2' \min_a \mu^{(a)}_{t-1}(i_a) + (1 - \beta_2')\, g_t(i)^2, \quad
        \mu^{(a)}_t(j) = \max_{i: i_a = j} \nu'_t(i)

    with :math:`1 - \beta_2'` read as 1 when :math:`\beta_2 = 1` (the paper's sum); a leaf
    of rank :math:`\le 1` keeps :math:`\nu'` itself (the cover by singletons; a scalar is
    one singleton). Then

    .. math::
        \hat g_t = g_t / \sqrt{\nu'_t + \epsilon} \ (0 \text{ where } \nu'_t = 0), \quad
        m_t = \beta_1 m_{t-1} + (1 - \beta_1)\hat g_t, \quad u_t = m_t
    """
    a = 1.0 if b2 == 1.0 else 1.0 - b2

    def one(x, st):
        if x.ndim < 2:
            prev = st.get("acc", np.zeros(x.shape))
        else:
            mus = st.get("mu", [np.zeros(n) for n in x.shape])
            prev = np.full(x.shape, np.inf)
            for axis, mu in enumerate(mus):
                shape = [1] * x.ndim
                shape[axis] = x.shape[axis]
                prev = np.minimum(prev, mu.reshape(shape))
        acc = a * x**2 + b2 * prev
        with np.errstate(divide="ignore", invalid="ignore"):
            gh = np.where(acc > 0, x / np.sqrt(acc + eps), 0.0)
        m = b1 * st.get("m", np.zeros(x.shape)) + (1 - b1) * gh
        new = {"m": m}
        if x.ndim < 2:
            new["acc"] = acc
        else:
            others = lambda axis: tuple(k for k in range(x.ndim) if k != axis)
            new["mu"] = [np.max(acc, axis=others(axis)) if x.size else np.zeros(x.shape[axis])
                         for axis in range(x.ndim)]
        return m, new

    def update(g, state, params):
        u, stats = _per_leaf(g, state["leaves"], one)
        return u, {"count": state["count"] + 1, "leaves": stats}

    return _rule(_leaf_states, update)


def sm3(learning_rate, momentum: float = 0.9) -> Reference:
    r"""SM3: ``chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))``
    (Anil et al., 2019); see :func:`scale_by_sm3`."""
    return chain(scale_by_sm3(momentum), scale_by_learning_rate(learning_rate))
