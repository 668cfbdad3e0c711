r"""Wrappers that choose when or where an inner rule runs: conditional steps, windows, partitions, freezing.

The library's ``wrappers/_conditional``, ``_accumulate`` and ``_partition``. ``inner`` /
``optimizer`` and the values of ``transforms`` are references (typically :func:`adam`); extra
keyword arguments of ``update`` are passed on to them. Each rule is the plain definition, written
step by step over lists of leaves: which leaves and which steps reach the inner rule.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from jax import tree_util as jtu

from gradxform.testing.reference._common import (
    Reference,
    _cast_like,
    _f64,
    _map,
    _zeros_like,
)

__all__ = [
    "apply_every",
    "conditionally_mask",
    "conditionally_transform",
    "freeze",
    "partition",
    "selective_transform",
]


def conditionally_transform(inner: Reference, should_transform_fn: Callable, forward_extra_args: bool = False) -> Reference:
    r"""The inner rule on the steps :math:`t` (0-based) where :math:`c(t)` holds; the gradient unchanged on the others.

    .. math:: (u_t, s_t) = \begin{cases} \text{inner}(g_t, s_{t-1}) & c(t - 1) \\ (g_t, s_{t-1}) & \text{otherwise} \end{cases}
    """

    def init(params):
        return {"inner": inner.init(params), "step": 0}

    def update(grads, state, params=None, **extra_args):
        kwargs = extra_args if forward_extra_args else {}
        if bool(np.asarray(should_transform_fn(state["step"], **kwargs))):
            u, inner_state = inner.update(grads, state["inner"], params, **extra_args)
        else:
            u, inner_state = grads, state["inner"]
        return u, {"inner": inner_state, "step": state["step"] + 1}

    return Reference(init, update)


def conditionally_mask(inner: Reference, should_transform_fn: Callable, forward_extra_args: bool = False) -> Reference:
    r"""The inner rule on the steps where :math:`c(t)` holds; a zero update (and the inner state kept) on the others.

    .. math:: (u_t, s_t) = \begin{cases} \text{inner}(g_t, s_{t-1}) & c(t - 1) \\ (0, s_{t-1}) & \text{otherwise} \end{cases}
    """

    def init(params):
        return {"inner": inner.init(params), "step": 0}

    def update(grads, state, params=None, **extra_args):
        kwargs = extra_args if forward_extra_args else {}
        if bool(np.asarray(should_transform_fn(state["step"], **kwargs))):
            u, inner_state = inner.update(grads, state["inner"], params, **extra_args)
        else:
            u, inner_state = _zeros_like(grads), state["inner"]
        return u, {"inner": inner_state, "step": state["step"] + 1}

    return Reference(init, update)


def apply_every(k: int = 1) -> Reference:
    r"""The sum of the gradients of each window of ``k`` steps, emitted at its last step (zeros before).

    .. math:: u_t = \begin{cases} \sum_{j = t - k + 1}^{t} g_j & k \mid t \\ 0 & \text{otherwise} \end{cases}
    """

    def init(params):
        del params
        return {"window": []}

    def update(grads, state, params=None, **extra_args):
        del params, extra_args
        window = state["window"] + [grads]
        if len(window) < k:
            return _zeros_like(grads), {"window": window}
        total = _map(lambda *gs: sum(_f64(g) for g in gs), *window)
        return _cast_like(total, grads), {"window": []}

    return Reference(init, update)


def _full_labels(labels: Any, params: Any) -> list:
    """One label per leaf of `params` (a prefix tree of labels broadcast over its subtrees)."""
    leaves, treedef = jtu.tree_flatten(params)
    if jtu.treedef_is_leaf(jtu.tree_structure(labels)):
        return [labels] * len(leaves)
    per_leaf = treedef.flatten_up_to(
        jtu.tree_map(lambda lab, sub: jtu.tree_map(lambda _: lab, sub), labels, params)
    )
    return list(per_leaf)


def partition(transforms: Mapping[Any, Reference], param_labels: Any) -> Reference:
    r"""Each leaf goes to the rule of its label: rule :math:`\ell` sees exactly the leaves labelled :math:`\ell`.

    .. math:: u_i = \text{transforms}[\ell_i](g_{\{j : \ell_j = \ell_i\}})_i

    Each rule's state covers only its group (a list of that group's leaves, in flattening order).
    """

    def groups(tree):
        labels = param_labels(tree) if callable(param_labels) else param_labels
        per_leaf = _full_labels(labels, tree)
        return {label: [i for i, lab in enumerate(per_leaf) if lab == label] for label in transforms}

    def init(params):
        leaves = jtu.tree_leaves(params)
        return {label: transforms[label].init([leaves[i] for i in idx]) for label, idx in groups(params).items()}

    def update(grads, state, params=None, **extra_args):
        leaves, treedef = jtu.tree_flatten(grads)
        p_leaves = None if params is None else jtu.tree_leaves(params)
        out = list(leaves)
        new_state = {}
        for label, idx in groups(grads if params is None else params).items():
            sub_p = None if p_leaves is None else [p_leaves[i] for i in idx]
            u, new_state[label] = transforms[label].update([leaves[i] for i in idx], state[label], sub_p, **extra_args)
            for i, ui in zip(idx, u):
                out[i] = ui
        return treedef.unflatten(out), new_state

    return Reference(init, update)


def freeze(mask: Any) -> Reference:
    r"""Zero updates where the mask is True, the gradient unchanged elsewhere: :math:`u_i = [\lnot m_i]\, g_i`."""

    def update(grads, state, params=None, **extra_args):
        del extra_args
        m = mask(grads if params is None else params) if callable(mask) else mask
        frozen = _full_labels(m, grads)
        leaves, treedef = jtu.tree_flatten(grads)
        out = [np.zeros(np.shape(g), np.asarray(g).dtype) if bool(f) else g for g, f in zip(leaves, frozen)]
        return treedef.unflatten(out), state

    return Reference(lambda params: {}, update)


def selective_transform(optimizer: Reference, *, freeze_mask: Any) -> Reference:
    r"""`optimizer` on the leaves where ``freeze_mask`` is False, zero updates on the others.

    .. math:: u_i = \begin{cases} 0 & m_i \\ \text{optimizer}(g_{\{j : \lnot m_j\}})_i & \text{otherwise} \end{cases}
    """

    def labels(params):
        m = freeze_mask(params) if callable(freeze_mask) else freeze_mask
        return jtu.tree_map(lambda frozen: "freeze" if frozen else "train", m)

    zero = Reference(lambda params: {}, lambda g, s, p=None, **kw: (_zeros_like(g), s))
    return partition({"train": optimizer, "freeze": zero}, labels)
