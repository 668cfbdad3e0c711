r"""Wrappers around an inner rule: apply_if_finite, MultiSteps, reduce_on_plateau, polyak_averaging.

The library's ``wrappers/``. ``inner`` / ``opt`` is any reference (typically :func:`adam`);
extra keyword arguments of ``update`` are passed on to it.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

import numpy as np

from gradxform.testing.reference._common import Reference, _cast_like, _f64, _finite, _map, _zeros_like


def apply_if_finite(inner: Reference, max_consecutive_errors: int) -> Reference:
    r"""Skips non-finite steps: the inner update on a finite step, else zeros and the inner state kept.

    .. math:: (u_t, s_t) = \begin{cases} \text{inner}(g_t, s_{t-1}) & g_t \text{ finite} \\
              (0, s_{t-1}) & \text{otherwise} \end{cases}

    as optax's ``apply_if_finite`` for fewer than ``max_consecutive_errors`` non-finite steps
    in a row (after that optax passes the gradient on; gradxform keeps skipping, and so does
    this reference, which ignores ``max_consecutive_errors``). Counters: ``count``
    (consecutive non-finite steps, reset by a finite one) and ``total``.
    """
    del max_consecutive_errors

    def init(params):
        return {"inner": inner.init(params), "count": 0, "total": 0}

    def update(grads, state, params=None, **extra_args):
        if _finite(grads):
            u, inner_state = inner.update(grads, state["inner"], params, **extra_args)
            return u, {"inner": inner_state, "count": 0, "total": state["total"]}
        return _zeros_like(grads), {"inner": state["inner"], "count": state["count"] + 1, "total": state["total"] + 1}

    return Reference(init, update)


def MultiSteps(opt: Reference, every_k_schedule, use_grad_mean: bool = True) -> Reference:  # noqa: N802 - optax's name
    r"""Gradient accumulation (optax ``MultiSteps``): one inner step on the mean (or sum) of every k gradients.

    .. math:: u_t = \begin{cases} \text{inner}\big(\tfrac1k \sum_{j=t-k+1}^{t} g_j\big) & k \mid t \\
              0 & \text{otherwise} \end{cases}

    The mean is the plain average (the transformation computes it by Welford's recursion),
    rounded to the gradients' dtype before the inner step. ``every_k_schedule`` may be a
    function of the number of inner steps taken.
    """

    def init(params):
        return {"inner": opt.init(params), "buf": [], "step": 0}

    def update(grads, state, params=None, **extra_args):
        k = every_k_schedule(state["step"]) if callable(every_k_schedule) else every_k_schedule
        buf = state["buf"] + [grads]
        if len(buf) < k:
            return _zeros_like(grads), {"inner": state["inner"], "buf": buf, "step": state["step"]}
        total = _map(lambda *gs: sum(_f64(g) for g in gs), *buf)
        acc = _cast_like(_map(lambda s: s / len(buf) if use_grad_mean else s, total), grads)
        u, inner_state = opt.update(acc, state["inner"], params, **extra_args)
        return u, {"inner": inner_state, "buf": [], "step": state["step"] + 1}

    return Reference(init, update)


def reduce_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    rtol: float = 1e-4,
    atol: float = 0.0,
    cooldown: int = 0,
    accumulation_size: int = 1,
    min_scale: float = 0.0,
    *,
    mode: str = "min",
    value_fn: Optional[Callable] = None,
) -> Reference:
    r"""Reduce-on-plateau: PyTorch's ``ReduceLROnPlateau`` (``threshold_mode="rel"``), optax.contrib's state machine.

    Average ``accumulation_size`` values; improvement iff :math:`\bar v < b - \text{rtol}|b| - \text{atol}`
    (mode "min"; "max" negates the metric). ``patience`` evaluations without improvement multiply the
    scale by ``factor`` (floored at ``min_scale``) and start ``cooldown`` evaluations that count nothing.
    Returns :math:`u = s\, g`. The value is ``update(..., value=v)`` or ``value_fn(params, grads)``.
    """
    sign = 1.0 if mode == "min" else -1.0

    def init(params):
        return {"scale": 1.0, "best": math.inf, "plateau": 0, "cool": 0, "values": []}

    def update(grads, state, params=None, value=None, **extra_args):
        if value is None:
            value = value_fn(params, grads)
        st = dict(state)
        st["values"] = state["values"] + [sign * float(np.asarray(value))]
        if len(st["values"]) == accumulation_size:
            avg = sum(st["values"]) / accumulation_size
            st["values"] = []
            best = st["best"]
            improved = avg < (best - rtol * abs(best) - atol if math.isfinite(best) else best)
            if improved:
                st["best"], st["plateau"] = avg, 0
            else:
                st["plateau"] += 1
            if st["cool"] > 0:
                st["cool"] -= 1
                st["plateau"] = 0
            elif st["plateau"] >= patience:
                st["scale"] = max(st["scale"] * factor, min_scale)
                st["plateau"], st["cool"] = 0, cooldown
        return _cast_like(_map(lambda g: st["scale"] * _f64(g), grads), grads), st

    return Reference(init, update)


def polyak_averaging(inner: Reference, decay: Optional[float] = 0.999, debias: bool = True) -> Reference:
    r"""The inner rule's updates, unchanged (Polyak & Juditsky (1992) averaging only adds state).

    Also keeps :math:`\bar\theta_t` (the debiased EMA
    :math:`m_t = \beta m_{t-1} + (1 - \beta)\theta_t`, or the uniform mean when ``decay`` is
    None) of :math:`\theta_t = \theta_{t-1} + u_t` in ``state['avg']``, for tests that read it.
    """

    def init(params):
        return {"inner": inner.init(params), "m": _map(lambda p: np.zeros(np.shape(p)), params), "t": 0}

    def update(grads, state, params=None, **extra_args):
        u, inner_state = inner.update(grads, state["inner"], params, **extra_args)
        t = state["t"] + 1
        new_p = _map(lambda p, uu: _f64(p) + _f64(uu), params, u)
        if decay is None:
            m = _map(lambda m, p: m + (p - m) / t, state["m"], new_p)
            avg = m
        else:
            m = _map(lambda m, p: decay * m + (1 - decay) * p, state["m"], new_p)
            avg = _map(lambda x: x / (1 - decay**t), m) if debias else m
        return u, {"inner": inner_state, "m": m, "t": t, "avg": avg}

    return Reference(init, update)
