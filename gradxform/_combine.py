"""Combinators: `chain`, `named_chain`, `masked`, `partition` (`multi_transform`); and `apply_updates`."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import (
    GradientTransformationExtraArgs,
    Params,
    Updates,
    accepts_extra_args,
    is_placeholder,
)

__all__ = ["PartitionState", "partition"]


def call_update(tx: Any, updates, state, params, extra_args):
    """Calls `tx.update`, passing extra keyword arguments only if it takes them.

    Lets transformations from other libraries (optax's plain ones take no
    ``**extra_args``) sit inside a gradxform chain. Every combinator and wrapper
    calls its inner transformations through this one function.
    """
    if extra_args and accepts_extra_args(tx.update):
        return tx.update(updates, state, params, **extra_args)
    return tx.update(updates, state, params)


def check_transform(tx: Any, where: str) -> None:
    """Raises ``TypeError`` unless `tx` has callable ``init`` and ``update`` (`where` names the argument)."""
    if not (callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None))):
        raise TypeError(
            f"{where} must be a gradient transformation (an object with .init and .update), "
            f"got {type(tx).__name__}: {tx!r}."
        )


def chain(*transforms: Any) -> GradientTransformationExtraArgs:
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

    return GradientTransformationExtraArgs(init_fn, update_fn)


def named_chain(*transforms: tuple[str, Any]) -> GradientTransformationExtraArgs:
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

    return GradientTransformationExtraArgs(init_fn, update_fn)


def apply_updates(params: Params, updates: Updates) -> Params:
    """Returns ``params + updates``, each leaf in its param's dtype.

    The sum is computed in at least float32 and then cast back, so bfloat16
    params with float32 updates stay bfloat16. ``None`` updates leave the
    param unchanged.

    Python float params are read as float32 scalars (as ``jnp.asarray`` reads them);
    integer or boolean updates are added in the params' dtype.

    Raises:
        TreeMismatchError: the updates do not have the params' structure or shapes,
            naming the key path of the first offending leaf.
        TypeError: an integer or boolean params leaf (a float update would be
            truncated, or turn False into True), naming its key path and dtype.
    """
    _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn="apply_updates")
    _checks.check_float_leaves(params, fn="apply_updates")

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


def _same_structure(tree: Any, like: Any) -> bool:
    try:
        return jax.tree_util.tree_structure(tree) == jax.tree_util.tree_structure(like)
    except Exception:  # noqa: BLE001 - anything that is not a tree is not masked
        return False


def masked(inner: Any, mask: Any, *, mask_compatible_extra_args: bool = False) -> GradientTransformationExtraArgs:
    """Applies `inner` to the leaves where `mask` is True; the others pass through.

    Args:
        inner: the transformation for the selected leaves.
        mask: a tree of bools with the params' structure (or a prefix of it), or a
            function ``params -> such a tree``. The inner state holds only the
            selected leaves (a `MaskedNode` stands for each other one). The mask
            must be static (Python bools) for the transformation to be jitted.
        mask_compatible_extra_args: also mask every extra keyword argument of
            ``update`` that has the updates' tree structure (a per-parameter
            Hessian diagonal, ...), so the inner update sees it over the same leaves.

    Returns:
        A `GradientTransformationExtraArgs` with state `MaskedState`.

    Raises:
        TypeError: `inner` is not a transformation; at update, a state of another type.
        TreeMismatchError: the mask is not a prefix of the params' structure.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.masked(gx.scale(-1.0), {'w': True, 'b': False})
        >>> params = {'w': jnp.ones(2), 'b': jnp.ones(2)}
        >>> u, _ = tx.update(params, tx.init(params))
        >>> u['w'].tolist(), u['b'].tolist()
        ([-1.0, -1.0], [1.0, 1.0])
    """
    check_transform(inner, "masked: inner")

    def init_fn(params):
        if is_placeholder(params):  # tree_map_params: the inner state's params-shaped trees
            return MaskedState(inner_state=inner.init(params))
        mask_tree = _mask_tree(mask, params)
        return MaskedState(inner_state=inner.init(_select(params, mask_tree, True)))

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, MaskedState, "masked")
        if params is not None:  # a mismatch named by its key path, before the mask is applied
            _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn="masked")
        mask_tree = _mask_tree(mask, updates if params is None else params)
        sel_updates = _select(updates, mask_tree, True)
        sel_params = None if params is None else _select(params, mask_tree, True)
        if mask_compatible_extra_args:
            extra_args = {
                k: _select(v, mask_tree, True) if _same_structure(v, updates) else v for k, v in extra_args.items()
            }
        new_sel, inner_state = call_update(inner, sel_updates, state.inner_state, sel_params, extra_args)
        return _merge(new_sel, updates, mask_tree), MaskedState(inner_state=inner_state)

    return GradientTransformationExtraArgs(init_fn, update_fn)


class PartitionState(NamedTuple):
    """State of `partition` (alias `MultiTransformState`): one `MaskedState` per label.

    Flattens to the same leaves, in the same order, as optax's ``PartitionState``
    (``MultiTransformState``), so a checkpoint moves between the two libraries.
    """

    inner_states: Mapping[Hashable, Any]  # label -> MaskedState of that label's transformation


def partition(
    transforms: Mapping[Hashable, Any],
    param_labels: Any | Callable[[Any], Any],
    *,
    mask_compatible_extra_args: bool = False,
) -> GradientTransformationExtraArgs:
    """Applies a different transformation to each group of leaves, chosen by label.

    Each label's transformation runs as ``masked(tx, labels == label)``, in the
    order of `transforms`; its state keeps only that group's leaves.
    `multi_transform` is the same function (its older name in optax).

    Args:
        transforms: a mapping from label to transformation.
        param_labels: a tree of labels with the params' structure (or a prefix of
            it), or a function ``params -> such a tree``.
        mask_compatible_extra_args: passed to each `masked`: extra keyword
            arguments with the updates' structure are split by label too.

    Returns:
        A `GradientTransformationExtraArgs` with state `PartitionState`.

    Raises:
        ValueError: a leaf's label has no transformation (naming its key path and label).
        TypeError: a value of `transforms` is not a transformation; at update, a
            state of another type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.partition({'fast': gx.sgd(1.0), 'slow': gx.sgd(0.1)}, {'w': 'fast', 'b': 'slow'})
        >>> params = {'w': jnp.ones(1), 'b': jnp.ones(1)}
        >>> u, state = tx.update(params, tx.init(params))
        >>> u['w'].tolist(), u['b'].tolist()
        ([-1.0], [-0.10000000149011612])
    """
    for label, tx in transforms.items():
        check_transform(tx, f"partition: transformation for label {label!r}")
    transforms = dict(transforms)

    def labels_of(tree):
        labels = param_labels(tree) if callable(param_labels) else param_labels
        for path, label in jax.tree_util.tree_flatten_with_path(labels)[0]:
            if label not in transforms:
                raise ValueError(
                    f"partition: the parameter at {jax.tree_util.keystr(path)} has label "
                    f"{label!r}, which has no transformation; labels with one: {list(transforms)!r}."
                )
        return labels

    def masked_txs(labels):
        return {
            label: masked(
                tx,
                jax.tree_util.tree_map(lambda lab, label=label: lab == label, labels),
                mask_compatible_extra_args=mask_compatible_extra_args,
            )
            for label, tx in transforms.items()
        }

    def init_fn(params):
        if is_placeholder(params):  # tree_map_params: no labels needed
            return PartitionState({label: MaskedState(tx.init(params)) for label, tx in transforms.items()})
        txs = masked_txs(labels_of(params))
        return PartitionState({label: tx.init(params) for label, tx in txs.items()})

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, PartitionState, "partition")
        if not isinstance(state.inner_states, Mapping) or set(state.inner_states) != set(transforms):
            found = list(state.inner_states) if isinstance(state.inner_states, Mapping) else state.inner_states
            raise TypeError(
                f"partition.update expected state.inner_states keyed by the labels {list(transforms)!r}, "
                f"got {found!r}."
            )
        txs = masked_txs(labels_of(updates if params is None else params))
        new_states = {}
        for label, tx in txs.items():
            updates, new_states[label] = tx.update(updates, state.inner_states[label], params, **extra_args)
        return updates, PartitionState(new_states)

    return GradientTransformationExtraArgs(init_fn, update_fn)


# optax's older names, kept by optax for backwards compatibility: the same objects.
MultiTransformState = PartitionState
multi_transform = partition
