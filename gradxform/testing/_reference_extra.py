"""Plain NumPy references for the second-order methods and the wrappers.

Each factory takes the transformation's own arguments and returns an object
with ``init(params)`` and ``update(grads, state, params=None, **extra_args)``
over pytrees of NumPy arrays (``jax.tree_util`` is used for the tree structure
only; all arithmetic is NumPy float64, the updates are returned in the
gradients' dtypes). Extra arguments the transformation needs (``hessian_diag``,
``hessian``, ``value``) are taken from the keyword arguments when given, else
computed by the ``*_fn`` given to the factory from ``(params, grads)``, so the
registry's ``extra_args_fn`` and the reference agree without sharing state.

Every docstring names the formula it implements and where it comes from; none
is derived from gradxform's code.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import jax
import numpy as np


def _leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def _map(fn, *trees):
    return jax.tree_util.tree_map(fn, *trees)


def _f64(x) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _like(x: np.ndarray, ref) -> np.ndarray:
    return np.asarray(x).astype(np.asarray(ref).dtype)


def _ravel(tree) -> np.ndarray:
    leaves = [_f64(x).ravel() for x in _leaves(tree)]
    return np.concatenate(leaves) if leaves else np.zeros((0,))


def _unravel(vec: np.ndarray, like):
    leaves, treedef = jax.tree_util.tree_flatten(like)
    out, start = [], 0
    for x in leaves:
        x = np.asarray(x)
        out.append(vec[start : start + x.size].reshape(x.shape).astype(x.dtype))
        start += x.size
    return treedef.unflatten(out)


# ----------------------------------------------------------------------------- Adam (inner of the wrappers)


class adam:
    r"""Adam (Kingma & Ba, 2015, Algorithm 1), learning rate included.

    :math:`u = -\eta\, \hat m / (\sqrt{\hat v} + \epsilon)` with the bias-corrected moments.
    """

    def __init__(self, learning_rate, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps = learning_rate, b1, b2, eps

    def init(self, params):
        zeros = _map(lambda p: np.zeros(np.shape(p)), params)
        return {"t": 0, "m": zeros, "v": zeros}

    def update(self, grads, state, params=None, **extra_args):
        t = state["t"] + 1
        m = _map(lambda g, m: self.b1 * m + (1 - self.b1) * _f64(g), grads, state["m"])
        v = _map(lambda g, v: self.b2 * v + (1 - self.b2) * _f64(g) ** 2, grads, state["v"])
        u = _map(
            lambda g, m, v: _like(
                -self.lr * (m / (1 - self.b1**t)) / (np.sqrt(v / (1 - self.b2**t)) + self.eps), g
            ),
            grads, m, v,
        )
        return u, {"t": t, "m": m, "v": v}


# ----------------------------------------------------------------------------- AdaHessian


class scale_by_adahessian:
    r"""AdaHessian, Yao et al. 2021 (arXiv:2006.00719), Algorithm 1 and Eqs. 10-12.

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,\;
        v_t = \beta_2 v_{t-1} + (1-\beta_2) D_t^{(s)} D_t^{(s)},\;
        u_t = \frac{m_t/(1-\beta_1^t)}{\left(\sqrt{v_t}/\sqrt{1-\beta_2^t}\right)^k + \epsilon}

    :math:`D^{(s)}` is the block (spatial) average of :math:`|D|` over the kernel's
    spatial axes for 4-D leaves when ``spatial_average`` (the authors' code), else :math:`D`.
    """

    def __init__(self, b1=0.9, b2=0.999, eps=1e-8, hessian_power=1.0, *, spatial_average=False,
                 spatial_axes=(0, 1), hessian_diag_fn: Optional[Callable] = None):
        self.b1, self.b2, self.eps, self.k = b1, b2, eps, hessian_power
        self.spatial_average, self.axes, self.fn = spatial_average, tuple(spatial_axes), hessian_diag_fn

    def init(self, params):
        z = _map(lambda p: np.zeros(np.shape(p)), params)
        return {"t": 0, "m": z, "v": z}

    def _block(self, d):
        d = _f64(d)
        if self.spatial_average and d.ndim == 4:
            return np.broadcast_to(np.abs(d).mean(axis=self.axes, keepdims=True), d.shape)
        return d

    def update(self, grads, state, params=None, hessian_diag=None, **extra_args):
        if hessian_diag is None:
            hessian_diag = self.fn(params, grads)
        t = state["t"] + 1
        m = _map(lambda g, m: self.b1 * m + (1 - self.b1) * _f64(g), grads, state["m"])
        v = _map(lambda d, v: self.b2 * v + (1 - self.b2) * self._block(d) ** 2, hessian_diag, state["v"])
        u = _map(
            lambda g, m, v: _like(
                (m / (1 - self.b1**t)) / ((np.sqrt(v) / math.sqrt(1 - self.b2**t)) ** self.k + self.eps), g
            ),
            grads, m, v,
        )
        return u, {"t": t, "m": m, "v": v}


class adahessian(scale_by_adahessian):
    r"""AdaHessian's full step (the authors' PyTorch optimizer): :math:`u = -\eta\,(u^{ada}_t + \lambda \theta_t)`."""

    def __init__(self, learning_rate, b1=0.9, b2=0.999, eps=1e-8, hessian_power=1.0, weight_decay=0.0, **kw):
        super().__init__(b1, b2, eps, hessian_power, **kw)
        self.lr, self.wd = learning_rate, weight_decay

    def update(self, grads, state, params=None, hessian_diag=None, **extra_args):
        u, state = super().update(grads, state, params, hessian_diag=hessian_diag)
        return _map(lambda u, p: _like(-self.lr * (_f64(u) + self.wd * _f64(p)), u), u, params), state


# ----------------------------------------------------------------------------- Newton


def levenberg_tau(h: np.ndarray, damping: float) -> float:
    r"""Nocedal & Wright (2006) Algorithm 3.3, Cholesky with added multiple of the identity.

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


class scale_by_newton:
    r"""Damped Newton direction, seed deck 001 / Nocedal & Wright Section 3.4: :math:`u = (H + \tau I)^{-1} g`.

    :math:`g` and :math:`H` over the params flattened leaf by leaf (``ravel_pytree``'s
    order); :math:`\tau` from `levenberg_tau`; solved with ``np.linalg.solve``.
    """

    def __init__(self, damping=0.0, *, hessian_fn: Optional[Callable] = None):
        self.damping, self.fn = damping, hessian_fn

    def init(self, params):
        return {}

    def update(self, grads, state, params=None, hessian=None, **extra_args):
        if hessian is None:
            hessian = self.fn(params, grads)
        h = _f64(hessian)
        h = 0.5 * (h + h.T)
        g = _ravel(grads)
        tau = levenberg_tau(h, self.damping)
        u = np.linalg.solve(h + tau * np.eye(len(g)), g) if len(g) else g
        return _unravel(u, grads), state


# ----------------------------------------------------------------------------- L-BFGS


class scale_by_lbfgs:
    r"""The L-BFGS inverse-Hessian approximation formed as a dense matrix, Nocedal & Wright (2006) eq. 7.19.

    :math:`H_k = (V_{k-1}^\top \cdots V_{k-m}^\top)\, \gamma_k I\, (V_{k-m} \cdots V_{k-1}) + \ldots`, i.e.
    starting from :math:`\gamma_k I` and applying, oldest pair first,
    :math:`H \leftarrow V_i^\top H V_i + \rho_i s_i s_i^\top`, :math:`V_i = I - \rho_i y_i s_i^\top`,
    :math:`\rho_i = 1/\langle s_i, y_i\rangle`; a pair with :math:`\langle s_i, y_i\rangle \le 0`
    is skipped (Nocedal & Wright Section 7.2) but still counted in the memory;
    :math:`\gamma_k = \langle s, y\rangle / \langle y, y\rangle` of the newest pair when it is
    used, else (and at the first step) :math:`\min(1, 1/\|g_k\|)` (optax's first step).
    Returns :math:`u = H_k g_k`.
    """

    def __init__(self, memory_size=10, scale_init_precond=True):
        self.m, self.scale = memory_size, scale_init_precond

    def init(self, params):
        return {"t": 0, "pairs": [], "w": None, "g": None}

    def _direction(self, g, pairs, t):
        n = len(g)
        norm = np.linalg.norm(g)
        bounded = min(1.0, 1.0 / norm) if norm > 0 else 1.0
        if not self.scale:
            gamma = 1.0
        elif t > 0 and pairs[-1][0] @ pairs[-1][1] > 0 and pairs[-1][1] @ pairs[-1][1] > 0:
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

    def update(self, grads, state, params=None, **extra_args):
        g, w = _ravel(grads), _ravel(params)
        pairs = list(state["pairs"])
        if state["t"] > 0:
            pairs.append((w - state["w"], g - state["g"]))
            pairs = pairs[-self.m :]
        u = self._direction(g, pairs, state["t"])
        return _unravel(u, grads), {"t": state["t"] + 1, "pairs": pairs, "w": w, "g": g}


class lbfgs(scale_by_lbfgs):
    r"""L-BFGS with a fixed step (no line search): :math:`u = -\eta H_k g_k`, :math:`H_k` as `scale_by_lbfgs`."""

    def __init__(self, learning_rate=None, memory_size=10, scale_init_precond=True, linesearch=None):
        if linesearch is not None:
            raise ValueError("the NumPy reference covers lbfgs without a line search only")
        super().__init__(memory_size, scale_init_precond)
        self.lr = 1.0 if learning_rate is None else learning_rate

    def update(self, grads, state, params=None, **extra_args):
        u, state = super().update(grads, state, params)
        return _map(lambda x: _like(-self.lr * _f64(x), x), u), state


# ----------------------------------------------------------------------------- wrappers


def _finite(tree) -> bool:
    return all(np.all(np.isfinite(_f64(x))) for x in _leaves(tree))


class apply_if_finite:
    r"""gradxform's contract (API.md, Wrappers): a non-finite step returns zeros and keeps the inner state.

    Counters: ``notfinite_count`` (consecutive, reset by a finite step), ``total_notfinite``.
    """

    def __init__(self, inner, max_consecutive_errors):
        self.inner = inner

    def init(self, params):
        return {"inner": self.inner.init(params), "count": 0, "total": 0}

    def update(self, grads, state, params=None, **extra_args):
        if _finite(grads):
            u, inner = self.inner.update(grads, state["inner"], params, **extra_args)
            return u, {"inner": inner, "count": 0, "total": state["total"]}
        zeros = _map(lambda g: np.zeros(np.shape(g), np.asarray(g).dtype), grads)
        return zeros, {"inner": state["inner"], "count": state["count"] + 1, "total": state["total"] + 1}


class MultiSteps:
    r"""Gradient accumulation (optax.MultiSteps' contract): the mean (or sum) of k gradients, one inner step every k.

    Between inner steps the updates are zero. The mean is the plain average
    :math:`\frac1k\sum_j g_j` (the transformation computes it by Welford's recursion).
    """

    def __init__(self, opt, every_k_schedule, use_grad_mean=True):
        self.inner, self.k, self.mean = opt, every_k_schedule, use_grad_mean

    def init(self, params):
        return {"inner": self.inner.init(params), "buf": [], "step": 0}

    def update(self, grads, state, params=None, **extra_args):
        k = self.k(state["step"]) if callable(self.k) else self.k
        buf = state["buf"] + [grads]
        if len(buf) < k:
            zeros = _map(lambda g: np.zeros(np.shape(g), np.asarray(g).dtype), grads)
            return zeros, {"inner": state["inner"], "buf": buf, "step": state["step"]}
        total = _map(lambda *gs: sum(_f64(g) for g in gs), *buf)
        acc = _map(lambda s, g: _like(s / len(buf) if self.mean else s, g), total, grads)
        u, inner = self.inner.update(acc, state["inner"], params, **extra_args)
        return u, {"inner": inner, "buf": [], "step": state["step"] + 1}


class reduce_on_plateau:
    r"""Reduce-on-plateau, PyTorch ``ReduceLROnPlateau`` (threshold_mode="rel") with optax.contrib's state machine.

    Average ``accumulation_size`` values; improvement iff :math:`\bar v < b - \text{rtol}|b| - \text{atol}`
    (mode "min"; "max" negates the metric). ``patience`` evaluations without improvement multiply the
    scale by ``factor`` (floored at ``min_scale``) and start ``cooldown`` evaluations that count nothing.
    Returns :math:`u = s\, g`.
    """

    def __init__(self, factor=0.1, patience=10, rtol=1e-4, atol=0.0, cooldown=0, accumulation_size=1,
                 min_scale=0.0, *, mode="min", value_fn: Optional[Callable] = None):
        self.__dict__.update(factor=factor, patience=patience, rtol=rtol, atol=atol, cooldown=cooldown,
                             acc=accumulation_size, min_scale=min_scale, sign=1.0 if mode == "min" else -1.0,
                             fn=value_fn)

    def init(self, params):
        return {"scale": 1.0, "best": math.inf, "plateau": 0, "cool": 0, "values": []}

    def update(self, grads, state, params=None, value=None, **extra_args):
        if value is None:
            value = self.fn(params, grads)
        st = dict(state)
        st["values"] = state["values"] + [self.sign * float(np.asarray(value))]
        if len(st["values"]) == self.acc:
            avg = sum(st["values"]) / self.acc
            st["values"] = []
            best = st["best"]
            improved = avg < (best - self.rtol * abs(best) - self.atol if math.isfinite(best) else best)
            if improved:
                st["best"], st["plateau"] = avg, 0
            else:
                st["plateau"] += 1
            if st["cool"] > 0:
                st["cool"] -= 1
                st["plateau"] = 0
            elif st["plateau"] >= self.patience:
                st["scale"] = max(st["scale"] * self.factor, self.min_scale)
                st["plateau"], st["cool"] = 0, self.cooldown
        return _map(lambda g: _like(st["scale"] * _f64(g), g), grads), st


class polyak_averaging:
    r"""The inner optimizer's updates, unchanged (Polyak & Juditsky 1992 averaging only adds state).

    Also keeps :math:`\bar\theta_t` (debiased EMA, or the uniform mean when ``decay`` is None) of
    :math:`\theta_t = \theta_{t-1} + u_t` in ``state['avg']``, for tests that read it.
    """

    def __init__(self, inner, decay=0.999, debias=True):
        self.inner, self.decay, self.debias = inner, decay, debias

    def init(self, params):
        return {"inner": self.inner.init(params), "m": _map(lambda p: np.zeros(np.shape(p)), params), "t": 0}

    def update(self, grads, state, params=None, **extra_args):
        u, inner = self.inner.update(grads, state["inner"], params, **extra_args)
        t = state["t"] + 1
        new_p = _map(lambda p, uu: _f64(p) + _f64(uu), params, u)
        if self.decay is None:
            m = _map(lambda m, p: m + (p - m) / t, state["m"], new_p)
            avg = m
        else:
            m = _map(lambda m, p: self.decay * m + (1 - self.decay) * p, state["m"], new_p)
            avg = _map(lambda x: x / (1 - self.decay**t), m) if self.debias else m
        return u, {"inner": inner, "m": m, "t": t, "avg": avg}
