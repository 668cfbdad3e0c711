"""Validation of hyperparameters and of trees, with errors that say what and where.

One error style everywhere: what is wrong, where (the argument's name, or the
key path of the first offending leaf as `jax.tree_util.keystr` writes it), what
was expected, what was found, and how to fix it.

Hyperparameter checks are skipped for traced values (inside ``jax.jit``) and for
schedules (callables), whose values are only known step by step.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax
import numpy as np


class TreeMismatchError(ValueError):
    """A tree given to `update` does not match the one `init` saw."""


def _concrete_float(value: Any) -> Optional[float]:
    """The value as a Python float, or None if traced, callable or not scalar."""
    if value is None or callable(value) or isinstance(value, jax.core.Tracer):
        return None
    try:
        arr = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not array-like is not checked here
        return None
    if arr.shape != () or not np.issubdtype(arr.dtype, np.number):
        return None
    return float(arr)


def check_range(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    fn: Optional[str] = None,
) -> None:
    """Raises ``ValueError`` naming `name` and `value` when value is outside the range.

    NaN is always out of range. Traced values and schedules are not checked.
    """
    v = _concrete_float(value)
    if v is None:
        return
    ok = not math.isnan(v)
    ok = ok and (v >= low if low_inclusive else v > low)
    ok = ok and (v <= high if high_inclusive else v < high)
    if ok:
        return
    lo = ("[" if low_inclusive else "(") + (f"{low:g}" if math.isfinite(low) else "-inf")
    hi = (f"{high:g}" if math.isfinite(high) else "inf") + ("]" if high_inclusive else ")")
    where = f"{fn}: " if fn else ""
    shown = repr(value) if isinstance(value, (int, float)) else repr(v)
    raise ValueError(f"{where}`{name}` must be in {lo}, {hi}; got {name}={shown}.")


def check_non_negative(name: str, value: Any, fn: Optional[str] = None) -> None:
    check_range(name, value, 0.0, math.inf, fn=fn)


def check_positive(name: str, value: Any, fn: Optional[str] = None) -> None:
    check_range(name, value, 0.0, math.inf, low_inclusive=False, fn=fn)


def check_state_type(state: Any, expected: type | tuple[type, ...], fn: str) -> None:
    """Raises ``TypeError`` when `state` was not built by the transformation `fn`."""
    if isinstance(state, expected):
        return
    names = (
        " or ".join(t.__name__ for t in expected) if isinstance(expected, tuple) else expected.__name__
    )
    raise TypeError(
        f"{fn}.update expected a state of type {names} (built by {fn}.init), "
        f"got {type(state).__name__}. Was this state built by another transformation, "
        "or are the transformations of a chain in a different order?"
    )


def check_update(fn: str, state: Any, expected: type, updates: Any, field: str) -> None:
    """The checks every stateful `update` starts with: the state's type, then the updates' tree.

    `field` names the state field shaped like the params (``"mu"``), compared
    with the updates and named ``state.mu`` in the error.
    """
    check_state_type(state, expected, fn)
    check_tree_like(updates, getattr(state, field), tree_name="updates", like_name=f"state.{field}", fn=fn)


def require_params(params: Any, fn: str) -> None:
    """Raises ``ValueError`` when a transformation whose update reads the params got none,
    ``TypeError`` when a params leaf is an integer or boolean (`check_float_leaves`)."""
    if params is None:
        raise ValueError(
            f"{fn}.update needs the params: call update(updates, state, params) with the "
            "current parameters."
        )
    check_float_leaves(params, fn=f"{fn}.update")


def leaf_dtype(leaf: Any) -> Optional[np.dtype]:
    """The dtype of an array leaf, or of ``jnp.asarray(leaf)`` for a Python number; None otherwise."""
    dtype = getattr(leaf, "dtype", None)
    if dtype is not None:
        return np.dtype(dtype)
    if isinstance(leaf, bool):
        return np.dtype(np.bool_)
    if isinstance(leaf, int):
        return np.dtype(np.int32)
    if isinstance(leaf, (float, complex)):
        return np.dtype(np.float32 if isinstance(leaf, float) else np.complex64)
    return None


def _is_number_dtype(dtype: Optional[np.dtype]) -> bool:
    return dtype is not None and (dtype == np.bool_ or np.issubdtype(dtype, np.integer))


def check_float_leaves(tree: Any, *, fn: str, tree_name: str = "params") -> None:
    """Raises ``TypeError`` naming the key path and dtype of the first integer or boolean leaf.

    A gradient step moves a parameter by a real amount, which an integer or a
    boolean cannot hold (optax's updates for them are truncated to 0, or turn
    False into True). Python floats pass (weakly typed float32, as ``jnp.asarray``
    reads them); Python ints and bools do not. Costs one pass over the leaves'
    dtypes, nothing under jit.
    """
    if not any(_is_number_dtype(leaf_dtype(x)) for x in jax.tree_util.tree_leaves(tree)):
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = leaf_dtype(leaf)
        if _is_number_dtype(dtype):
            raise TypeError(
                f"{fn}: {tree_name}{jax.tree_util.keystr(path)} has dtype {dtype.name} "
                f"(shape {tuple(np.shape(leaf))}); gradient transformations need floating-point {tree_name}: "
                "an integer or boolean leaf cannot take a gradient step. Cast it to a float "
                "dtype, or keep it out of the optimized tree (gx.masked, gx.multi_transform "
                "with gx.set_to_zero)."
            )


def _describe(leaf: Any) -> str:
    if leaf is None:
        return "None"
    shape = getattr(leaf, "shape", None)
    dtype = getattr(leaf, "dtype", None)
    if shape is None:
        return f"Python {type(leaf).__name__} {leaf!r}" if isinstance(leaf, (bool, int, float)) else type(leaf).__name__
    return f"shape {tuple(shape)} dtype {dtype}"


def _is_none(x: Any) -> bool:
    return x is None


def check_tree_like(
    tree: Any, like: Any, *, tree_name: str, like_name: str, fn: str, allow_none: bool = True
) -> None:
    """Raises `TreeMismatchError` unless `tree` has the structure and leaf shapes of `like`.

    `None` leaves in `tree` (masked-out updates) are allowed where `like` has a
    leaf when `allow_none`. Costs nothing under jit (shapes are static); the slow
    path that builds the message runs only when something is wrong.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    like_leaves, like_def = jax.tree_util.tree_flatten(like)
    if treedef == like_def:
        for a, b in zip(leaves, like_leaves):
            if np.shape(a) != np.shape(b):
                break
        else:
            return
    # Slow path: walk both trees with key paths and report the first difference.
    with_none = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)[0]
    like_paths = jax.tree_util.tree_flatten_with_path(like, is_leaf=_is_none)[0]
    got = {jax.tree_util.keystr(p): v for p, v in with_none}
    want = {jax.tree_util.keystr(p): v for p, v in like_paths}
    for path, leaf in want.items():
        if path not in got:
            raise TreeMismatchError(
                f"{fn}: {tree_name} has no leaf at {path} where {like_name} has "
                f"{_describe(leaf)}. Expected the structure {like_def}, got {treedef}. "
                f"Pass {tree_name} with the same structure as the params given to init."
            )
        g = got[path]
        if g is None and (allow_none or leaf is None):
            continue
        if np.shape(g) != np.shape(leaf):
            raise TreeMismatchError(
                f"{fn}: {tree_name}{path} has {_describe(g)} but {like_name}{path} has "
                f"{_describe(leaf)}; expected shape {tuple(np.shape(leaf))}, "
                f"got {tuple(np.shape(g))}."
            )
    for path, leaf in got.items():
        if path not in want:
            raise TreeMismatchError(
                f"{fn}: {tree_name} has an unexpected leaf at {path} ({_describe(leaf)}) "
                f"that {like_name} does not have. Expected the structure {like_def}, "
                f"got {treedef}."
            )
    # Same paths but different node types (e.g. a tuple where a list was).
    if treedef != like_def and not (allow_none and _same_modulo_none(tree, like)):
        raise TreeMismatchError(
            f"{fn}: {tree_name} has the structure {treedef} but {like_name} has {like_def}."
        )


def _same_modulo_none(tree: Any, like: Any) -> bool:
    try:
        jax.tree_util.tree_map(lambda a, b: None, tree, like, is_leaf=_is_none)
    except (ValueError, TypeError):
        return False
    return True


def check_real_leaves(tree: Any, *, fn: str, why: str, tree_name: str = "params") -> None:
    """Raises ``TypeError`` naming the key path and dtype of the first complex leaf.

    For rules defined only for real numbers (`why` says which operation has no
    complex meaning: Rprop's sign of a gradient).
    """
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = leaf_dtype(leaf)
        if dtype is not None and np.issubdtype(dtype, np.complexfloating):
            raise TypeError(
                f"{fn}: {tree_name}{jax.tree_util.keystr(path)} has dtype {dtype.name}; {why}. "
                "Optimize the real and imaginary parts as separate real params "
                "(gx.split_real_and_imaginary)."
            )
