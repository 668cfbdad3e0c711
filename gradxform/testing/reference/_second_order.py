r"""Second-order methods: AdaHessian, damped Newton, L-BFGS (the library's ``second_order/``).

Extra arguments the transformation needs (``hessian_diag``, ``hessian``) are taken from
the keyword arguments of ``update`` when given, else computed by the ``*_fn`` given to
the factory from ``(params, grads)``, so a test's ``extra_args_fn`` and the reference
agree without sharing state.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from gradxform.testing.reference._common import Reference, _cast_like, _f64, _map, _ravel, _to64, _unravel

# ----------------------------------------------------------------------------- AdaHessian


def scale_by_adahessian(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    hessian_power: float = 1.0,
    *,
    spatial_average: bool = False,
    spatial_axes=(0, 1),
    hessian_diag_fn: Optional[Callable] = None,
) -> Reference:
    r"""AdaHessian scaling (Yao et al., 2021, Algorithm 1 and Eqs. 10-12).

    .. math::
        \mu_t = \beta_1 \mu_{t-1} + (1-\beta_1) g_t,\;
        \nu_t = \beta_2 \nu_{t-1} + (1-\beta_2) D_t^{(s)} D_t^{(s)},\;
        u_t = \frac{\mu_t/(1-\beta_1^t)}{\left(\sqrt{\nu_t}/\sqrt{1-\beta_2^t}\right)^k + \epsilon}

    :math:`D^{(s)}` is the block (spatial) average of :math:`|D|` over the kernel's
    spatial axes for 4-D leaves when ``spatial_average`` (the authors' code), else :math:`D`,
    the Hessian diagonal (``update(..., hessian_diag=D)`` or ``hessian_diag_fn(params, grads)``).
    """
    axes = tuple(spatial_axes)

    def block(d):
        d = _f64(d)
        if spatial_average and d.ndim == 4:
            return np.broadcast_to(np.abs(d).mean(axis=axes, keepdims=True), d.shape)
        return d

    def init(params):
        zeros = _map(lambda p: np.zeros(np.shape(p)), params)
        return {"count": 0, "mu": zeros, "nu": zeros}

    def update(grads, state, params=None, hessian_diag=None, **extra_args):
        if hessian_diag is None:
            hessian_diag = hessian_diag_fn(params, grads)
        t = state["count"] + 1
        mu = _map(lambda g, m: b1 * m + (1 - b1) * _f64(g), grads, state["mu"])
        nu = _map(lambda d, v: b2 * v + (1 - b2) * block(d) ** 2, hessian_diag, state["nu"])
        out = _map(
            lambda m, v: (m / (1 - b1**t)) / ((np.sqrt(v) / math.sqrt(1 - b2**t)) ** hessian_power + eps), mu, nu
        )
        return _cast_like(out, grads), {"count": t, "mu": mu, "nu": nu}

    return Reference(init, update)


def adahessian(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    hessian_power: float = 1.0,
    weight_decay: float = 0.0,
    **kwargs,
) -> Reference:
    r"""AdaHessian's full step (Yao et al., 2021; the authors' PyTorch optimizer).

    .. math:: u_t = -\eta\,(u^{ada}_t + \lambda \theta_t)

    :math:`u^{ada}_t` is :func:`scale_by_adahessian` (``kwargs`` go to it), computed in float64.
    """
    inner = scale_by_adahessian(b1, b2, eps, hessian_power, **kwargs)

    def update(grads, state, params=None, hessian_diag=None, **extra_args):
        if hessian_diag is None:  # from the grads as given (their dtype), as the transformation sees them
            hessian_diag = kwargs["hessian_diag_fn"](params, grads)
        u, state = inner.update(_to64(grads), state, params, hessian_diag=hessian_diag)
        out = _map(lambda x, p: -learning_rate * (x + weight_decay * _f64(p)), u, params)
        return _cast_like(out, grads), state

    return Reference(inner.init, update)


# ----------------------------------------------------------------------------- Newton


def levenberg_tau(h: np.ndarray, damping: float) -> float:
    r"""Nocedal & Wright (2006), Numerical Optimization, Algorithm 3.3 (Cholesky with added multiple of the identity).

    :math:`\beta = 10^{-3}\max(\max|H_{ij}|, 1)`; :math:`\tau_0` = damping if
    :math:`\min_i H_{ii} > 0` or damping > 0, else :math:`\beta - \min_i H_{ii}`;
    :math:`\tau_{k+1} = \max(2\tau_k, \beta)` until :math:`H + \tau I` has a Cholesky factor.
    """
    n = h.shape[0]
    if n == 0:
        return float(damping)
    beta = 1e-3 * max(float(np.max(np.abs(h))), 1.0)
    min_diag = float(np.min(np.diag(h)))
    tau = float(damping) if (min_diag > 0 or damping > 0) else beta - min_diag
    for _ in range(101):
        try:
            np.linalg.cholesky(h + tau * np.eye(n))
            return tau
        except np.linalg.LinAlgError:
            tau = max(2 * tau, beta)
    return tau


def scale_by_newton(damping: float = 0.0, *, hessian_fn: Optional[Callable] = None) -> Reference:
    r"""Damped Newton direction (Nocedal & Wright (2006), Section 3.4): :math:`u = (H + \tau I)^{-1} g`.

    :math:`g` and :math:`H` over the params flattened leaf by leaf (``ravel_pytree``'s
    order); :math:`\tau` from :func:`levenberg_tau`; solved with ``np.linalg.solve``. The
    Hessian is ``update(..., hessian=H)`` or ``hessian_fn(params, grads)``.
    """

    def update(grads, state, params=None, hessian=None, **extra_args):
        if hessian is None:
            hessian = hessian_fn(params, grads)
        h = _f64(hessian)
        h = 0.5 * (h + h.T)
        g = _ravel(grads)
        tau = levenberg_tau(h, damping)
        u = np.linalg.solve(h + tau * np.eye(len(g)), g) if len(g) else g
        return _unravel(u, grads), state

    return Reference(lambda params: {}, update)


# ----------------------------------------------------------------------------- L-BFGS


def _lbfgs_direction(g: np.ndarray, pairs: list, count: int, scale_init_precond: bool) -> np.ndarray:
    n = len(g)
    norm = np.linalg.norm(g)
    bounded = min(1.0, 1.0 / norm) if norm > 0 else 1.0
    if not scale_init_precond:
        gamma = 1.0
    elif count > 0 and pairs[-1][0] @ pairs[-1][1] > 0 and pairs[-1][1] @ pairs[-1][1] > 0:
        s, y = pairs[-1]
        gamma = (s @ y) / (y @ y)
    else:
        gamma = bounded
    h = gamma * np.eye(n)
    for s, y in pairs:
        sy = s @ y
        if sy <= 0:
            continue
        v = np.eye(n) - np.outer(y, s) / sy
        h = v.T @ h @ v + np.outer(s, s) / sy
    return h @ g


def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> Reference:
    r"""The L-BFGS inverse-Hessian approximation formed as a dense matrix (Nocedal & Wright (2006), Eq. 7.19).

    :math:`H_k = (V_{k-1}^\top \cdots V_{k-m}^\top)\, \gamma_k I\, (V_{k-m} \cdots V_{k-1}) + \ldots`, i.e.
    starting from :math:`\gamma_k I` and applying, oldest pair first,
    :math:`H \leftarrow V_i^\top H V_i + \rho_i s_i s_i^\top`, :math:`V_i = I - \rho_i y_i s_i^\top`,
    :math:`\rho_i = 1/\langle s_i, y_i\rangle`; a pair with :math:`\langle s_i, y_i\rangle \le 0`
    is skipped (Nocedal & Wright, Section 7.2) but still counted in the memory;
    :math:`\gamma_k = \langle s, y\rangle / \langle y, y\rangle` of the newest pair when it is
    used, else (and at the first step) :math:`\min(1, 1/\|g_k\|)` (optax's first step).
    Returns :math:`u = H_k g_k`.
    """

    def init(params):
        return {"count": 0, "pairs": [], "params": None, "grads": None}

    def update(grads, state, params=None, **extra_args):
        g, w = _ravel(grads), _ravel(params)
        pairs = list(state["pairs"])
        if state["count"] > 0:
            pairs.append((w - state["params"], g - state["grads"]))
            pairs = pairs[-memory_size:]
        u = _lbfgs_direction(g, pairs, state["count"], scale_init_precond)
        return _unravel(u, grads), {"count": state["count"] + 1, "pairs": pairs, "params": w, "grads": g}

    return Reference(init, update)


def lbfgs(learning_rate=None, memory_size: int = 10, scale_init_precond: bool = True, linesearch=None) -> Reference:
    r"""L-BFGS with a fixed step (no line search): :math:`u = -\eta H_k g_k`, :math:`H_k` as :func:`scale_by_lbfgs`.

    ``learning_rate=None`` is 1.
    """
    if linesearch is not None:
        raise ValueError("the NumPy reference covers lbfgs without a line search only")
    inner = scale_by_lbfgs(memory_size, scale_init_precond)
    lr = 1.0 if learning_rate is None else learning_rate

    def update(grads, state, params=None, **extra_args):
        u, state = inner.update(grads, state, params)
        return _map(lambda x: (-lr * _f64(x)).astype(np.asarray(x).dtype), u), state

    return Reference(inner.init, update)
