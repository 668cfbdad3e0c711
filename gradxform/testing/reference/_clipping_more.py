r"""NumPy references for the clipping and constraint rules beyond ``clip`` and ``clip_by_global_norm``.

Block-RMS clipping, adaptive gradient clipping (Brock et al., 2021), per-example
clipping for DP-SGD (Abadi et al., 2016; McMahan et al., 2018), ``zero_nans`` and
``keep_params_nonnegative``; all in float64 from the papers' formulas.
"""

from __future__ import annotations

import numpy as np
from jax import tree_util as jtu

from gradxform.testing.reference._common import Reference, _f64, _map, _no_state, _rule

__all__ = [
    "adaptive_grad_clip",
    "clip_by_block_rms",
    "keep_params_nonnegative",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "unitwise_norm",
    "zero_nans",
]


def clip_by_block_rms(threshold: float) -> Reference:
    r"""Clipping of each leaf (block) to a root mean square of at most :math:`c` (Pascanu, Mikolov &
    Bengio (2013), "On the difficulty of training recurrent neural networks", section 3.2, per block
    and on the RMS; optax ``clip_by_block_rms``).

    .. math:: u = g \, \frac{c}{\max(\operatorname{rms}(g), c)}, \qquad \operatorname{rms}(g) = \sqrt{\tfrac1n \textstyle\sum_i g_i^2}
    """

    def update(g, state, params):
        def one(x):
            rms = np.sqrt(np.mean(x * x)) if x.size else 0.0
            return x * (threshold / max(rms, threshold))

        return _map(one, g), state

    return _rule(_no_state, update)


def unitwise_norm(x, axis=None) -> np.ndarray:
    r"""The Frobenius norm of each unit of :math:`x`, broadcast to its shape (Brock, De, Smith & Simonyan
    (2021), "High-Performance Large-Scale Image Recognition Without Normalization", section 4.1, and the
    NFNets code's reduction axes: the whole array for vectors, axis 0 for rank 2 and 3, axes (0, 1, 2)
    for rank 4, axes (0, 1, 2, 3) for rank 5)."""
    x = _f64(x)
    if axis is None:
        if sum(d != 1 for d in x.shape) <= 1:
            axis = None
        else:
            axis = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}[x.ndim]
    n = np.sqrt(np.sum(x * x, axis=axis, keepdims=True))
    return np.broadcast_to(n, x.shape)


def adaptive_grad_clip(clipping: float, eps: float = 1e-3, axis=None) -> Reference:
    r"""Adaptive gradient clipping (Brock, De, Smith & Simonyan (2021), "High-Performance Large-Scale Image
    Recognition Without Normalization", section 4.1, eq. 3), unit by unit:

    .. math::
        G_i \leftarrow \lambda \frac{\|W_i\|^\star_F}{\|G_i\|_F} G_i \ \text{ if }
        \frac{\|G_i\|_F}{\|W_i\|^\star_F} > \lambda, \qquad \|W_i\|^\star_F = \max(\|W_i\|_F, \epsilon)
    """

    def update(g, state, params):
        if params is None:
            raise ValueError("reference.adaptive_grad_clip needs the params")

        def one(x, w):
            w_norm = np.maximum(unitwise_norm(w, axis), eps)
            g_norm = unitwise_norm(x, axis)
            clip = g_norm / w_norm > clipping
            return np.where(clip, x * clipping * w_norm / np.where(clip, g_norm, 1.0), x)

        return _map(one, g, params), state

    return _rule(_no_state, update)


def zero_nans() -> Reference:
    r"""NaN entries of the updates replaced by 0, infinities kept: :math:`u_i = 0` where :math:`g_i` is NaN,
    else :math:`g_i` (optax ``zero_nans``); the state records, per leaf, whether a NaN was seen."""

    def update(g, state, params):
        found = _map(lambda x: bool(np.any(np.isnan(x))), g)
        return _map(lambda x: np.where(np.isnan(x), 0.0, x), g), {"found_nan": found}

    return _rule(lambda p: {"found_nan": _map(lambda x: False, p)}, update)


def keep_params_nonnegative() -> Reference:
    r"""The projection of :math:`\theta + u` onto the non-negative orthant, as an update (projected
    gradient; Bertsekas, "Nonlinear Programming", 3rd ed., section 3.3):
    :math:`u_i \leftarrow -\theta_i` where :math:`\theta_i + u_i < 0`."""

    def update(g, state, params):
        if params is None:
            raise ValueError("reference.keep_params_nonnegative needs the params")
        return _map(lambda u, p: np.where(p + u < 0, -p, u), g, params), state

    return _rule(_no_state, update)


def _clip_rows(rows: np.ndarray, norms: np.ndarray, bound: float):
    factor = np.where(norms > bound, bound / np.where(norms > bound, norms, 1.0), 1.0)
    return np.einsum("b,b...->...", factor, rows), int(np.sum(norms > bound))


def per_example_global_norm_clip(grads, l2_norm_clip: float):
    r"""DP-SGD's per-example clipping, summed (Abadi et al. (2016), "Deep Learning with Differential
    Privacy", Algorithm 1, "clip gradient"):

    .. math:: \bar g = \sum_b g^{(b)} \min\Big(1, \frac{C}{\|g^{(b)}\|_2}\Big)

    Returns ``(summed tree, number of examples with norm above C)``, in float64.
    """
    leaves, treedef = jtu.tree_flatten(grads)
    leaves = [_f64(x) for x in leaves]
    norms = np.sqrt(sum(np.sum(x.reshape(x.shape[0], -1) ** 2, axis=1) for x in leaves))
    out = [_clip_rows(x, norms, l2_norm_clip)[0] for x in leaves]
    return treedef.unflatten(out), int(np.sum(norms > l2_norm_clip))


def per_example_layer_norm_clip(grads, global_l2_norm_clip: float, uniform: bool = True):
    r"""Per-layer clipping (McMahan, Ramage, Talwar & Zhang (2018), "Learning Differentially Private
    Recurrent Language Models", section 3): layer :math:`k` of each example is clipped to
    :math:`C_k = C / \sqrt K` (uniform) or :math:`C \sqrt{D_k / D}`, then summed over the batch.

    Returns ``(summed tree, tree of per-layer clipped counts)``, in float64.
    """
    leaves, treedef = jtu.tree_flatten(grads)
    leaves = [_f64(x) for x in leaves]
    sizes = [x[0].size for x in leaves]
    total = sum(sizes)
    out, counts = [], []
    for x, size in zip(leaves, sizes):
        bound = global_l2_norm_clip / np.sqrt(len(leaves)) if uniform else global_l2_norm_clip * np.sqrt(size / total)
        norms = np.sqrt(np.sum(x.reshape(x.shape[0], -1) ** 2, axis=1))
        summed, count = _clip_rows(x, norms, bound)
        out.append(summed)
        counts.append(count)
    return treedef.unflatten(out), treedef.unflatten(counts)
