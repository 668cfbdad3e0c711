"""What every NumPy reference shares: the `Reference` type, float64 conversions, `chain`."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
from jax import tree_util as jtu


class Reference(NamedTuple):
    """A NumPy update rule: ``init(params) -> state``, ``update(grads, state, params=None) -> (updates, state)``."""

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]


# ----------------------------------------------------------------------------- tree helpers


def _map(fn, tree, *rest):
    return jtu.tree_map(fn, tree, *rest)


def _leaves(tree) -> list:
    return jtu.tree_leaves(tree)


def _f64(x) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _to64(tree):
    return _map(_f64, tree)


def _out_dtype(leaf) -> np.dtype:
    dtype = np.asarray(leaf).dtype
    # ml_dtypes' bfloat16 & co. are kind 'V' and not np.inexact subtypes.
    return dtype if np.issubdtype(dtype, np.inexact) or dtype.kind == "V" else np.dtype(np.float64)


def _cast_like(tree, like):
    """``tree`` with each leaf in the dtype of ``like``'s leaf (float64 for non-float ones)."""
    return _map(lambda u, g: np.asarray(u).astype(_out_dtype(g)), tree, like)


def _full_like(tree, value: float):
    return _map(lambda x: np.full(np.shape(x), value, dtype=np.float64), tree)


def _zeros_like(tree):
    """Zeros in each leaf's own dtype (the update of a skipped step)."""
    return _map(lambda g: np.zeros(np.shape(g), np.asarray(g).dtype), tree)


def _ravel(tree) -> np.ndarray:
    """The leaves flattened and concatenated in flattening order (``ravel_pytree``'s), in float64."""
    leaves = [_f64(x).ravel() for x in _leaves(tree)]
    return np.concatenate(leaves) if leaves else np.zeros((0,))


def _unravel(vec: np.ndarray, like):
    """The inverse of `_ravel`: a tree like ``like``, each leaf in its dtype."""
    leaves, treedef = jtu.tree_flatten(like)
    out, start = [], 0
    for x in leaves:
        x = np.asarray(x)
        out.append(vec[start : start + x.size].reshape(x.shape).astype(x.dtype))
        start += x.size
    return treedef.unflatten(out)


def _finite(tree) -> bool:
    return all(np.all(np.isfinite(_f64(x))) for x in _leaves(tree))


def _at(value, count: int) -> float:
    """A float hyperparameter, or a schedule evaluated at the 0-based ``count``."""
    return float(value(count)) if callable(value) else float(value)


def _denominator(second: np.ndarray, eps: float, eps_in_sqrt: bool) -> np.ndarray:
    r""":math:`\sqrt{\nu + \epsilon}` (``eps_in_sqrt``) or :math:`\sqrt{\nu} + \epsilon`."""
    return np.sqrt(second + eps) if eps_in_sqrt else np.sqrt(second) + eps


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``num`` is 0 (the 0/0 of all-zero gradients at eps = 0 is 0)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(num == 0, 0.0, num / den)


# ----------------------------------------------------------------------------- building rules


def _rule(init64, update64) -> Reference:
    """Wraps float64 ``init64(params)`` / ``update64(g, state, params)`` with the dtype conversions.

    Extra keyword arguments of ``update`` are accepted and ignored.
    """

    def init(params):
        return init64(_to64(params))

    def update(grads, state, params=None, **extra_args):
        del extra_args
        params64 = None if params is None else _to64(params)
        updates, new_state = update64(_to64(grads), state, params64)
        return _cast_like(updates, grads), new_state

    return Reference(init, update)


def _no_state(params):
    del params
    return {}


def _counted(params):
    del params
    return {"count": 0}


def chain(*references: Reference) -> Reference:
    """Applies references in order (as ``optax.chain``); the state is the tuple of their states.

    Intermediate results stay in float64; only the final updates are cast to the grads' dtype.
    """

    def init(params):
        return tuple(r.init(params) for r in references)

    def update(grads, state, params=None, **extra_args):
        updates, new_state = _to64(grads), []
        for ref, inner in zip(references, state):
            updates, inner = ref.update(updates, inner, params, **extra_args)
            new_state.append(inner)
        return _cast_like(updates, grads), tuple(new_state)

    return Reference(init, update)


def identity() -> Reference:
    r"""Identity, :math:`u_t = g_t`."""
    return _rule(_no_state, lambda g, state, params: (g, state))
