r"""NumPy references of the matrix optimizers of ``gx.contrib``: Muon (Jordan et al., 2024) and
GaLore (Zhao et al., 2024) (the library's ``contrib/_muon`` and ``contrib/_galore``).

Dimension numbers are read by duck typing (``reduction_axis`` / ``output_axis``), so nothing
here imports the library's transformations.
"""

from __future__ import annotations

import math

import numpy as np
from jax import tree_util as jtu

from gradxform.testing.reference._adam import adamw as _adamw
from gradxform.testing.reference._adam import scale_by_adam as _scale_by_adam
from gradxform.testing.reference._common import Reference, _at, _cast_like, _f64, _ratio, _to64, chain
from gradxform.testing.reference._scale import add_decayed_weights, scale_by_learning_rate

__all__ = ["galore", "muon", "scale_by_galore", "scale_by_muon"]

_DEFAULT_NS_COEFFS = (3.4445, -4.775, 2.0315)
_PRESETS = {
    "standard": _DEFAULT_NS_COEFFS,
    "dion": ((4.0848, -6.8946, 2.9270), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037),
             (2.8769, -3.1427, 1.2046), (2.8366, -3.0525, 1.2012)),
}


def _is_spec(x) -> bool:
    return x is None or hasattr(x, "reduction_axis")


def _numbers(spec, tree) -> list:
    """One dimension-numbers object (or None) per leaf of `tree`, matched by key path."""
    paths = jtu.tree_flatten_with_path(tree)[0]
    if callable(spec) and not hasattr(spec, "reduction_axis"):
        spec = spec(tree)
    if spec is None or hasattr(spec, "reduction_axis"):
        return [spec] * len(paths)
    by_path = {jtu.keystr(p): d for p, d in jtu.tree_flatten_with_path(spec, is_leaf=_is_spec)[0]}
    return [by_path[jtu.keystr(p)] for p, _ in paths]


def _axes(axis, ndim) -> tuple:
    return tuple(int(a) % ndim for a in ((axis,) if isinstance(axis, (int, np.integer)) else axis))


def _as_matrices(x: np.ndarray, dn):
    """``x`` as a batch of (fan_in, fan_out) matrices, and the function that undoes it."""
    if dn is None:
        assert x.ndim == 2, f"Muon needs a matrix or dimension numbers; got shape {x.shape}"
        red, out = (0,), (1,)
    else:
        red, out = _axes(dn.reduction_axis, x.ndim), _axes(dn.output_axis, x.ndim)
    batch = tuple(a for a in range(x.ndim) if a not in red and a not in out)
    perm = batch + red + out
    moved = np.transpose(x, perm)
    rows, cols = math.prod(x.shape[a] for a in red), math.prod(x.shape[a] for a in out)

    def back(m):
        return np.transpose(m.reshape(moved.shape), np.argsort(perm))

    return moved.reshape(math.prod(x.shape[a] for a in batch), rows, cols), back, (rows, cols)


def _orthogonalize(m: np.ndarray, coeffs: np.ndarray, steps: int, preconditioning: str, eps: float):
    r"""The quintic Newton-Schulz iteration (Jordan et al., 2024): :math:`X_0 = M / (\|M\|_F + \epsilon)`,
    :math:`X_{k+1} = a X_k + (b A_k + c A_k^2) X_k`, :math:`A_k = X_k X_k^\top`, on the wide orientation."""
    out = np.empty_like(m)
    for i, x in enumerate(m):
        tall = x.shape[0] > x.shape[1]
        if tall:
            x = x.T
        if preconditioning == "frobenius":
            x = _ratio(x, np.linalg.norm(x) + eps)
        elif preconditioning == "spectral":
            x = _ratio(x, np.linalg.norm(x, 2) + eps)
        elif steps > 0 and preconditioning == "schatten":  # Grishina et al. (2025): the Schatten-4 norm
            x = _ratio(x, np.sqrt(np.linalg.norm(x @ x.T)))
        elif steps > 0:  # "aol", Boissin et al. (2025): rows scaled by (sum_j |X X^T|_ij)^(-1/2)
            x = _ratio(x, np.sqrt(np.abs(x @ x.T).sum(axis=1))[:, None])
        for k in range(steps):
            a, b, c = coeffs if coeffs.ndim == 1 else coeffs[k]
            g = x @ x.T
            x = a * x + (b * g + c * g @ g) @ x
        out[i] = x.T if tall else x
    return out


def scale_by_muon(ns_coeffs=_DEFAULT_NS_COEFFS, ns_steps: int = 5, beta: float = 0.95, eps: float = 1e-8,
                  mu_dtype=None, *, nesterov: bool = True, adaptive: bool = False,
                  preconditioning: str = "frobenius", weight_dimension_numbers=None) -> Reference:
    r"""Muon's orthogonalized momentum (Jordan et al., 2024, "Muon: An optimizer for hidden layers
    in neural networks", the algorithm box: momentum, Nesterov, ``NewtonSchulz5``), with optax's
    exponential-moving-average momentum and NAdam-style bias correction:

    .. math:: \mu_t = \beta\mu_{t-1} + (1-\beta) g_t, \quad
              \hat\mu_t = \frac{\beta\mu_t}{1-\beta^{t+1}} + \frac{(1-\beta) g_t}{1-\beta^t}
              \ (\text{else } \mu_t / (1-\beta^t)), \quad u_t = \mathrm{NS}_K(\hat\mu_t)

    The blog's :math:`B_t = \beta B_{t-1} + g_t`, :math:`g_t + \beta B_t` is the same direction
    up to the bias correction's weighting of the first :math:`\sim 1/(1-\beta)` steps (the
    iteration is scale-invariant but for :math:`\epsilon`). ``adaptive``: :math:`u_t \langle u_t,
    \hat\mu_t\rangle` (Bernstein & Newhouse, 2024).
    """
    del mu_dtype
    coeffs = np.asarray(ns_coeffs, np.float64)
    steps = coeffs.shape[0] if coeffs.ndim == 2 else int(ns_steps)

    def init(params):
        return {"count": 0, "mu": jtu.tree_map(lambda x: np.zeros(np.shape(x)), params)}

    def update(grads, state, params=None, **extra_args):
        del params, extra_args
        t = state["count"] + 1
        g_leaves, treedef = jtu.tree_flatten(grads)
        numbers = _numbers(weight_dimension_numbers, grads)
        mus = treedef.flatten_up_to(state["mu"])
        outs, new_mu = [], []
        for g, m, dn in zip(g_leaves, mus, numbers):
            g = _f64(g)
            m = beta * m + (1 - beta) * g
            if nesterov:
                m_hat = beta * m / (1 - beta ** (t + 1)) + (1 - beta) * g / (1 - beta**t)
            else:
                m_hat = m / (1 - beta**t)
            mats, back, _ = _as_matrices(m_hat, dn)
            o = back(_orthogonalize(mats, coeffs, steps, preconditioning, eps))
            if adaptive:
                o = o * np.sum(o * m_hat)
            outs.append(o)
            new_mu.append(m)
        return (_cast_like(treedef.unflatten(outs), grads),
                {"count": t, "mu": treedef.unflatten(new_mu)})

    return Reference(init, update)


def muon(learning_rate, ns_coeffs=_DEFAULT_NS_COEFFS, ns_steps: int = 5, beta: float = 0.95, eps: float = 1e-8,
         weight_decay: float = 0.0, weight_decay_mask=None, mu_dtype=None, *, nesterov: bool = True,
         adaptive: bool = False, preconditioning: str = "frobenius", adam_b1: float = 0.9,
         adam_b2: float = 0.999, adam_eps_root: float = 0.0, adam_weight_decay: float = 0.0,
         adam_learning_rate=None, muon_weight_dimension_numbers=None, consistent_rms=None) -> Reference:
    r"""Muon on the matrices, AdamW elsewhere (Jordan et al., 2024; Liu et al., 2025, "Muon is
    Scalable for LLM Training", Section 2.2 for the update-RMS scaling):

    .. math:: u_t = -\eta_t\,(s\,\mathrm{muon}_t + \lambda\theta_{t-1}), \quad
              s = \sqrt{\max(1, n_{out}/n_{in})} \ \text{or}\ r\sqrt{\max(n_{in}, n_{out})}

    (:math:`r` = ``consistent_rms``; Liu et al. use :math:`0.2\sqrt{\max(A, B)}`); the other leaves
    take AdamW (Loshchilov & Hutter, 2019) with ``adam_*`` and Nesterov's first moment.
    """
    if isinstance(ns_coeffs, str):
        ns_coeffs = _PRESETS[ns_coeffs]
    spec = muon_weight_dimension_numbers
    inner = scale_by_muon(ns_coeffs, ns_steps, beta, eps, nesterov=nesterov, adaptive=adaptive,
                          preconditioning=preconditioning)
    adam = _adamw(adam_learning_rate if adam_learning_rate is not None else learning_rate, adam_b1, adam_b2,
                  eps, adam_eps_root, weight_decay=adam_weight_decay, nesterov=nesterov)

    def split(tree):
        leaves = jtu.tree_leaves(tree)
        if spec is None:
            numbers = [_Default() if np.ndim(x) == 2 else None for x in leaves]
        else:
            numbers = _numbers(spec, tree)
        return [i for i, d in enumerate(numbers) if d is not None], numbers

    def decay_flags(params):
        leaves = jtu.tree_leaves(params)
        if weight_decay_mask is None:
            return [True] * len(leaves)
        mask = weight_decay_mask(params) if callable(weight_decay_mask) else weight_decay_mask
        full = jtu.tree_map(lambda m, sub: jtu.tree_map(lambda _: bool(m), sub), mask, params)
        return jtu.tree_leaves(full)

    def init(params):
        idx, _ = split(params)
        leaves = _to64(jtu.tree_leaves(params))
        rest = [x for i, x in enumerate(leaves) if i not in idx]
        return {"count": 0, "muon": inner.init([leaves[i] for i in idx]), "adam": adam.init(rest)}

    def update(grads, state, params=None, **extra_args):
        del extra_args
        idx, numbers = split(params)
        g_leaves, treedef = jtu.tree_flatten(_to64(grads))
        p_leaves = jtu.tree_leaves(_to64(params))
        flags = decay_flags(params)
        rest = [i for i in range(len(g_leaves)) if i not in idx]
        mu_in = [g_leaves[i] for i in idx]
        inner_numbers = [numbers[i] if not isinstance(numbers[i], _Default) else None for i in idx]
        inner_ref = scale_by_muon(ns_coeffs, ns_steps, beta, eps, nesterov=nesterov, adaptive=adaptive,
                                  preconditioning=preconditioning, weight_dimension_numbers=inner_numbers)
        o, mu_state = inner_ref.update(mu_in, state["muon"])
        a, adam_state = adam.update([g_leaves[i] for i in rest], state["adam"], [p_leaves[i] for i in rest])
        lr = _at(learning_rate, state["count"])
        out = list(g_leaves)
        for i, oi, dn in zip(idx, o, inner_numbers):
            _, _, (fan_in, fan_out) = _as_matrices(p_leaves[i], dn)
            s = (math.sqrt(max(1.0, fan_out / fan_in)) if fan_in else 1.0) if consistent_rms is None else (
                consistent_rms * math.sqrt(max(fan_in, fan_out)))
            out[i] = -lr * (s * oi + (weight_decay * p_leaves[i] if flags[i] else 0.0))
        for i, ai in zip(rest, a):
            out[i] = ai
        return (_cast_like(treedef.unflatten(out), grads),
                {"count": state["count"] + 1, "muon": mu_state, "adam": adam_state})

    return Reference(init, update)


class _Default:
    """The default numbers of a 2-D leaf (rows: fan-in, columns: fan-out)."""

    reduction_axis = 0
    output_axis = 1


# ----------------------------------------------------------------------------- GaLore


def _galore_matrix(x, dn):
    """(perm, rows, cols) of a projected leaf, or None (GaLore projects the 2-D leaves by default)."""
    if dn is None:
        return None
    red, out = _axes(dn.reduction_axis, np.ndim(x)), _axes(dn.output_axis, np.ndim(x))
    shape = np.shape(x)
    return red + out, math.prod(shape[a] for a in red), math.prod(shape[a] for a in out)


def scale_by_galore(rank: int = 128, update_proj_gap: int = 200, scale: float = 1.0, base_optimizer=None,
                    weight_dimension_numbers=None) -> Reference:
    r"""GaLore (Zhao et al., 2024, "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
    Projection", Algorithm 2): every :math:`T` steps (from step 0) :math:`P_t` = the top-:math:`r`
    left singular vectors of :math:`G_t` (:math:`m \ge n`; else the right ones, :math:`R_t = G_t P_t`),
    :math:`R_t = P_t^\top G_t`, :math:`u_t = \alpha P_t \rho(R_t)`, the base rule :math:`\rho`
    (Adam by default, a `Reference` otherwise) keeping its state across projector changes.
    Non-matrix leaves take :math:`\rho(g_t)` unscaled.
    """
    base = base_optimizer if base_optimizer is not None else _scale_by_adam()
    spec = weight_dimension_numbers

    def plans(tree):
        leaves = jtu.tree_leaves(tree)
        if spec is None:
            numbers = [_Default() if np.ndim(x) == 2 else None for x in leaves]
        else:
            numbers = _numbers(spec, tree)
        out = []
        for x, dn in zip(leaves, numbers):
            m = _galore_matrix(x, dn)
            out.append(None if m is None else (m[0], m[1], m[2], min(rank, m[1], m[2])))
        return out

    def low(x, plan):
        if plan is None:
            return np.zeros(np.shape(x))
        _, rows, cols, r = plan
        return np.zeros((r, cols) if rows >= cols else (rows, r))

    def init(params):
        leaves = jtu.tree_leaves(params)
        ps = plans(params)
        return {"count": 0, "base": base.init([low(x, p) for x, p in zip(leaves, ps)]),
                "projector": [None] * len(leaves)}

    def update(grads, state, params=None, **extra_args):
        del params
        leaves, treedef = jtu.tree_flatten(_to64(grads))
        ps = plans(grads)
        projectors = list(state["projector"])
        lows = []
        for i, (g, plan) in enumerate(zip(leaves, ps)):
            if plan is None:
                lows.append(g)
                continue
            perm, rows, cols, r = plan
            m = np.transpose(g, perm).reshape(rows, cols)
            if state["count"] % update_proj_gap == 0:
                u, _, vt = np.linalg.svd(m, full_matrices=False)
                projectors[i] = u[:, :r] if rows >= cols else vt[:r].T
            p = projectors[i]
            lows.append(p.T @ m if rows >= cols else m @ p)
        rho, base_state = base.update(lows, state["base"], None, **extra_args)
        out = []
        for g, plan, r_, p in zip(leaves, ps, rho, projectors):
            if plan is None:
                out.append(_f64(r_))
                continue
            perm, rows, cols, _ = plan
            full = scale * (p @ _f64(r_) if rows >= cols else _f64(r_) @ p.T)
            moved = tuple(np.shape(g)[a] for a in perm)
            out.append(np.transpose(full.reshape(moved), np.argsort(perm)))
        return (_cast_like(treedef.unflatten(out), grads),
                {"count": state["count"] + 1, "base": base_state, "projector": projectors})

    return Reference(init, update)


def galore(learning_rate, rank: int = 128, update_proj_gap: int = 200, scale: float = 1.0, base_optimizer=None,
           weight_decay: float = 0.0, mask=None, weight_dimension_numbers=None) -> Reference:
    r"""GaLore with decoupled weight decay in the full space (Zhao et al., 2024, Algorithm 2):
    :math:`u_t = -\eta_t(\alpha P_t \rho(R_t) + \lambda\theta_{t-1})`; see :func:`scale_by_galore`."""
    return chain(
        scale_by_galore(rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
