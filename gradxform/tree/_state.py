"""Finding and replacing values in a tree by name: ``gx.tree.get``, ``set``, ``get_all_with_path``.

A *name* matches a node of the tree when it is

* the key of a dict entry (``hyperparams['learning_rate']``),
* the field of a NamedTuple (``ScaleByAdamState.mu``), or
* the class name of a NamedTuple node (``'ScaleByAdamState'``: the whole state).

The search walks the whole tree, into matched nodes too. Paths are tuples of
JAX key entries, except that a NamedTuple field is a `NamedTupleKey`, which
also names the tuple's class, so a `filtering` function can tell apart two
``count`` fields of a chain.
"""

from __future__ import annotations

import builtins
import dataclasses
from typing import Any, Callable, Optional

import jax

KeyPath = tuple
Filter = Callable[[KeyPath, Any], bool]


@dataclasses.dataclass(frozen=True)
class NamedTupleKey:
    """A path entry for the field `name` of a NamedTuple of class `tuple_name`.

    Used instead of ``jax.tree_util.GetAttrKey`` in the paths that
    `get_all_with_path`, `get` and `set` give to a `filtering` function, so the
    class of the tuple can be checked.

    Attributes:
        tuple_name: the class name of the NamedTuple (``'ScaleByAdamState'``).
        name: the field (``'mu'``).

    Examples:
        >>> import jax, gradxform as gx
        >>> jax.tree_util.keystr((gx.tree_utils.NamedTupleKey('ScaleByAdamState', 'mu'),))
        'ScaleByAdamState.mu'
    """

    tuple_name: str
    name: str

    def __str__(self) -> str:
        return f"{self.tuple_name}.{self.name}"


def _is_namedtuple(x: Any) -> bool:
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def _children(node: Any) -> Optional[tuple[list, Callable[[list], Any]]]:
    """``([(entry, child), ...], rebuild)`` for an inner node; ``None`` for a leaf.

    Dicts are rebuilt in their own key order; other nodes through JAX's
    registry (so any registered pytree is walked).
    """
    if node is None:
        return None
    with_path, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    if len(with_path) == 1 and with_path[0][0] == () and with_path[0][1] is node:
        return None  # a leaf
    entries = [path[0] for path, _ in with_path]
    children = [child for _, child in with_path]
    if _is_namedtuple(node):
        tuple_name = type(node).__name__
        entries = [NamedTupleKey(tuple_name, e.name) for e in entries]
    if type(node) is dict:
        order = list(node.keys())

        def rebuild(new: list) -> Any:
            by_key = {e.key: v for e, v in zip(entries, new)}
            return {k: by_key[k] for k in order}

    else:

        def rebuild(new: list) -> Any:
            return treedef.unflatten(new)

    return list(zip(entries, children)), rebuild


def _matches(key: Any, entry: Any, node: Any) -> bool:
    if isinstance(entry, jax.tree_util.DictKey) and _same(entry.key, key):
        return True
    if isinstance(entry, NamedTupleKey) and entry.name == key:
        return True
    return _is_namedtuple(node) and type(node).__name__ == key


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _walk(tree: Any):
    """Yields ``(path, entry, node)`` for every node, parents before children."""
    stack = [((), None, tree)]
    while stack:
        path, entry, node = stack.pop()
        yield path, entry, node
        kids = _children(node)
        if kids is not None:
            for e, child in reversed(kids[0]):
                stack.append((path + (e,), e, child))


def get_all_with_path(tree: Any, key: Any, filtering: Optional[Filter] = None) -> list[tuple[KeyPath, Any]]:
    """Every value of `tree` named `key`, with its path.

    Args:
        tree: the tree to search (an optimizer state, params, ...).
        key: a dict key, a NamedTuple field or a NamedTuple class name.
        filtering: optional ``filtering(path, value) -> bool`` keeping only some
            of the matches (by the value's type, or by a `NamedTupleKey` in its
            path).

    Returns:
        A list of ``(path, value)`` pairs in the order of
        ``jax.tree_util.tree_flatten``, outer matches before the matches inside
        them; ``jax.tree_util.keystr(path)`` prints a path.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> state = gx.chain(gx.trace(0.9), gx.scale_by_adam()).init(jnp.zeros(2))
        >>> [jax.tree_util.keystr(p) for p, _ in gx.tree.get_all_with_path(state, 'count')]
        ['[1]ScaleByAdamState.count']
    """
    found = []
    for path, entry, node in _walk(tree):
        if _matches(key, entry, node) and (filtering is None or filtering(path, node)):
            found.append((path, node))
    return found


def _paths(found: list) -> str:
    return ", ".join(jax.tree_util.keystr(p) or "<root>" for p, _ in found)


def get(tree: Any, key: Any, default: Optional[Any] = None, filtering: Optional[Filter] = None) -> Any:
    """The one value of `tree` named `key` (a dict key, a NamedTuple field or class name).

    Args:
        tree: the tree to search.
        key: the name to look for.
        default: returned when nothing matches.
        filtering: optional ``filtering(path, value) -> bool`` to choose among
            several matches (see `get_all_with_path`).

    Returns:
        The value, or `default` when `key` is not found (after filtering).

    Raises:
        KeyError: when several values match `key`; the message lists their paths.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> state = gx.inject_hyperparams(gx.adam)(learning_rate=0.1).init(jnp.zeros(2))
        >>> gx.tree.get(state, 'learning_rate')
        Array(0.1, dtype=float32)
        >>> gx.tree.get(state, 'mu')
        Array([0., 0.], dtype=float32)
    """
    found = get_all_with_path(tree, key, filtering)
    if not found:
        return default
    if len(found) > 1:
        raise KeyError(
            f"Found multiple values for {key!r} in the tree: at {_paths(found)}. Pass "
            "filtering=lambda path, value: ... to choose one (a path's NamedTupleKey names "
            "the state's class)."
        )
    return found[0][1]


def _available_names(tree: Any) -> list[str]:
    names = builtins.set()
    for _, entry, node in _walk(tree):
        if isinstance(entry, jax.tree_util.DictKey):
            names.add(repr(entry.key))
        elif isinstance(entry, NamedTupleKey):
            names.add(repr(entry.name))
        if _is_namedtuple(node):
            names.add(repr(type(node).__name__))
    return sorted(names)


def set(tree: Any, filtering: Optional[Filter] = None, /, **kwargs: Any) -> Any:
    """A copy of `tree` with every value named by a keyword replaced by that keyword's value.

    The tree keeps its node types (NamedTuple classes, dicts, lists); the new
    values are used as given (pass an array of the old dtype, e.g.
    ``jnp.float32(1e-4)``, to keep a jitted step from recompiling). A match
    inside a replaced value is replaced with it.

    Args:
        tree: the tree (e.g. an optimizer state).
        filtering: optional ``filtering(path, value) -> bool`` restricting which
            matches are replaced (positional only).
        **kwargs: ``name=new_value`` for each dict key, NamedTuple field or
            NamedTuple class name to replace.

    Returns:
        A tree with the structure of `tree` except where values were replaced.

    Raises:
        KeyError: naming a keyword that matches nothing in `tree` (after
            filtering), with the names the tree does have.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.inject_hyperparams(gx.adam)(learning_rate=0.1)
        >>> state = gx.tree.set(tx.init(jnp.zeros(2)), learning_rate=jnp.float32(0.01))
        >>> gx.tree.get(state, 'learning_rate')
        Array(0.01, dtype=float32)
    """
    for key in kwargs:
        if not get_all_with_path(tree, key, filtering):
            given = " given the filtering operation" if filtering is not None else ""
            raise KeyError(
                f"Found no values matching {key!r}{given} in the tree; it has the names "
                f"{', '.join(_available_names(tree)) or '(none)'}."
            )

    def replace(path: KeyPath, entry: Any, node: Any) -> Any:
        for key, value in kwargs.items():
            if _matches(key, entry, node) and (filtering is None or filtering(path, node)):
                return value
        kids = _children(node)
        if kids is None:
            return node
        pairs, rebuild = kids
        return rebuild([replace(path + (e,), e, child) for e, child in pairs])

    return replace((), None, tree)
