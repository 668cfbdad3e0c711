"""Combinators: `chain`, `named_chain`, `masked`, `multi_transform`; and `apply_updates`."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Hashable, Mapping, NamedTuple, Union

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation, Params, Updates


@functools.lru_cache(maxsize=None)
def _accepts_extra_args(update_fn: Callable) -> bool:
    try:
        sig = inspect.signature(update_fn)
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def call_update(tx: Any, updates, state, params, extra_args):
    """Calls `tx.update`, passing extra keyword arguments only if it takes them.

    Lets transformations from other libraries (optax's plain ones take no
    ``**extra_args``) sit inside a gradxform chain. Every combinator and wrapper
    calls its inner transformations through this one function.
    """
    update = tx.update
    if extra_args:
        try:
            takes = _accepts_extra_args(update)
        except TypeError:  # unhashable callable
            takes = True
        if takes:
            return update(updates, state, params, **extra_args)
    return update(updates, state, params)


def check_transform(tx: Any, where: str) -> None:
    """Raises ``TypeError`` unless `tx` has callable ``init`` and ``update`` (`where` names the argument)."""
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"{where} must be a gradient transformation (an object with .init and .update), "
            f"got {type(tx).__name__}: {tx!r}."
        )


def chain(*transforms: Any) -> GradientTransformation:
    """Applies the transformations in order; the state is the tuple of their states.

    Extra keyword arguments given to ``update`` reach every transformation that
    takes ``**extra_args``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.chain(gx.clip(1.0), gx.scale(-0.5))
        >>> updates, _ = tx.update({'w': jnp.array([3.0, -0.2])}, tx.init({'w': jnp.zeros(2)}))
        >>> updates['w'].tolist()
        [-0.5, 0.10000000149011612]
    """
    for i, tx in enumerate(transforms):
        check_transform(tx, f"chain: argument {i}")

    def init_fn(params):
        return tuple(tx.init(params) for tx in transforms)

    def update_fn(updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) or len(state) != len(transforms):
            found = f"a tuple of {len(state)} states" if isinstance(state, tuple) else type(state).__name__
            raise TypeError(
                f"chain.update expected the state built by chain.init: a tuple of "
                f"{len(transforms)} states, got {found}."
            )
        new_state = []
        for tx, s in zip(transforms, state):
            updates, s = call_update(tx, updates, s, params, extra_args)
            new_state.append(s)
        return updates, tuple(new_state)

    return GradientTransformation(init_fn, update_fn)


def named_chain(*transforms: tuple[str, Any]) -> GradientTransformation:
    """Like `chain`, with the states in a dict keyed by the given names."""
    names = [name for name, _ in transforms]
    if len(set(names)) != len(names):
        raise ValueError(f"named_chain: names must be unique, got {names!r}.")
    for name, tx in transforms:
        check_transform(tx, f"named_chain: transformation {name!r}")

    def init_fn(params):
        return {name: tx.init(params) for name, tx in transforms}

    def update_fn(updates, state, params=None, **extra_args):
        if not isinstance(state, Mapping) or set(state) != set(names):
            raise TypeError(
                f"named_chain.update expected a dict state with keys {names!r}, got "
                f"{type(state).__name__}{' with keys ' + repr(list(state)) if isinstance(state, Mapping) else ''}."
            )
        new_state = {}
        for name, tx in transforms:
            updates, new_state[name] = call_update(tx, updates, state[name], params, extra_args)
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Returns ``params + updates``, each leaf in its param's dtype.

    The sum is computed in at least float32 and then cast back, so bfloat16
    params with float32 updates stay bfloat16. ``None`` updates leave the
    param unchanged.

    Raises:
        TreeMismatchError: the updates do not have the params' structure or shapes,
            naming the key path of the first offending leaf.
    """
    _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn="apply_updates")

    def add(p, u):
        if u is None or p is None:
            return p
        p, u = jnp.asarray(p), jnp.asarray(u)
        cdt = _tree.compute_dtype(p.dtype)
        if p.dtype == cdt and u.dtype == cdt and p.shape == u.shape:
            # lax.add: the same sum as `+`, traced without jnp's dispatch (which costs
            # ~0.4 ms a leaf, over a second of the first call for 2,000 leaves).
            return jax.lax.add(p, u)
        return (p.astype(cdt) + u.astype(cdt)).astype(p.dtype)

    return jax.tree_util.tree_map(add, params, updates, is_leaf=_tree.is_none)


# ---------------------------------------------------------------------------- masked


class MaskedNode(NamedTuple):
    """Stands in for a leaf that a mask excludes: a node with no leaves."""


class MaskedState(NamedTuple):
    """State of `masked`: the inner transformation's state over the selected leaves."""

    inner_state: Any


def _mask_tree(mask: Any, params: Any) -> Any:
    return mask(params) if callable(mask) else mask


def _select(tree: Any, mask_tree: Any, keep: bool) -> Any:
    """`tree` with the leaves (or subtrees) whose mask is not `keep` replaced by MaskedNode."""

    def pick(m, sub):
        return sub if bool(m) == keep else MaskedNode()

    try:
        return jax.tree_util.tree_map(pick, mask_tree, tree, is_leaf=_tree.is_none)
    except ValueError as err:
        raise _checks.TreeMismatchError(
            f"masked: the mask's structure {jax.tree_util.tree_structure(mask_tree)} is not a "
            f"prefix of the tree's structure {jax.tree_util.tree_structure(tree)}: {err}"
        ) from None


def _merge(selected: Any, original: Any, mask_tree: Any) -> Any:
    def pick(m, new, old):
        return new if bool(m) else old

    return jax.tree_util.tree_map(
        pick, mask_tree, selected, original, is_leaf=lambda x: x is None or isinstance(x, MaskedNode)
    )


def masked(inner: Any, mask: Any) -> GradientTransformation:
    """Applies `inner` to the leaves where `mask` is True; the others pass through.

    Args:
        inner: the transformation for the selected leaves.
        mask: a tree of bools with the params' structure (or a prefix of it), or a
            function ``params -> such a tree``. The inner state holds only the
            selected leaves.
    """
    check_transform(inner, "masked: inner")

    def init_fn(params):
        mask_tree = _mask_tree(mask, params)
        return MaskedState(inner_state=inner.init(_select(params, mask_tree, True)))

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, MaskedState, "masked")
        mask_tree = _mask_tree(mask, updates if params is None else params)
        sel_updates = _select(updates, mask_tree, True)
        sel_params = None if params is None else _select(params, mask_tree, True)
        new_sel, inner_state = call_update(inner, sel_updates, state.inner_state, sel_params, extra_args)
        return _merge(new_sel, updates, mask_tree), MaskedState(inner_state=inner_state)

    return GradientTransformation(init_fn, update_fn)


class MultiTransformState(NamedTuple):
    inner_states: dict


def multi_transform(
    transforms: Mapping[Hashable, Any], param_labels: Union[Any, Callable[[Any], Any]]
) -> GradientTransformation:
    """Applies a different transformation to each group of leaves, chosen by label.

    Args:
        transforms: a mapping from label to transformation.
        param_labels: a tree of labels with the params' structure, or a function
            ``params -> such a tree``.

    Raises:
        ValueError: a leaf's label has no transformation (naming its key path and label).
    """
    for label, tx in transforms.items():
        check_transform(tx, f"multi_transform: transformation for label {label!r}")

    def labels_of(tree):
        labels = param_labels(tree) if callable(param_labels) else param_labels
        for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]:
            if label not in transforms:
                raise ValueError(
                    f"multi_transform: the parameter at {jax.tree_util.keystr(path)} has label "
                    f"{label!r}, which has no transformation; labels with one: {list(transforms)!r}."
                )
        return labels

    def masks(labels):
        return {
            label: jax.tree_util.tree_map(lambda lab, label=label: lab == label, labels)
            for label in transforms
        }

    def init_fn(params):
        mask_trees = masks(labels_of(params))
        return MultiTransformState(
            {label: masked(tx, mask_trees[label]).init(params) for label, tx in transforms.items()}
        )

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, MultiTransformState, "multi_transform")
        mask_trees = masks(labels_of(updates if params is None else params))
        new_states = {}
        for label, tx in transforms.items():
            updates, new_states[label] = masked(tx, mask_trees[label]).update(
                updates, state.inner_states[label], params, **extra_args
            )
        return updates, MultiTransformState(new_states)

    return GradientTransformation(init_fn, update_fn)
