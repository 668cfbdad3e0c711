"""Core types: `GradientTransformation`, `EmptyState` and the stateless helpers.

Purity contract
---------------
A gradient transformation is a pair of pure functions:

* ``init(params) -> state``: builds the state from the parameters' shapes and
  dtypes only (never their values, except where documented); it fixes the
  dtypes of every state leaf.
* ``update(updates, state, params=None, **extra_args) -> (updates, state)``:
  returns new updates and a new state of *exactly* the same tree structure and
  dtypes as the one it was given, so it can run as the body of ``lax.scan``.

Neither function may read or write anything outside its arguments; both run
under ``jax.jit``. Extra keyword arguments (``value=``, ``hessian_diag=``,
...) are ignored by transformations that do not use them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, Union

import jax
import jax.numpy as jnp

from gradxform import _checks

__all__ = [
    "ConditionFn",
    "GradientTransformationExtraArgs",
    "MaskOrFn",
    "ScalarOrSchedule",
    "TransformInitFn",
    "TransformUpdateExtraArgsFn",
    "TransformUpdateFn",
    "init_empty_state",
    "tree_map_params",
    "with_extra_args_support",
]

Params = Any  # a pytree of arrays
Updates = Any  # a pytree of arrays shaped like Params (or with None leaves)
OptState = Any  # a pytree of arrays and NamedTuples
Schedule = Callable[[Any], Any]
ScalarOrSchedule = Union[float, jax.Array, Schedule]  # a hyperparameter: a number, an array, or step -> value
MaskOrFn = Union[Any, Callable[[Params], Any]]  # a tree of bools (a prefix of the params'), or params -> one


class TransformInitFn(Protocol):
    """The type of ``init``: builds the state from the params' shapes and dtypes."""

    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    """The type of ``update``: ``(updates, state, params=None) -> (updates, state)``."""

    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None
    ) -> tuple[Updates, OptState]: ...


class TransformUpdateExtraArgsFn(Protocol):
    """The type of an ``update`` that also takes (and ignores unless it needs them) keyword arguments.

    A transformation that needs one (``value=``) takes it keyword-only, so a
    missing one is an explicit error; every other keyword is ignored.
    """

    def __call__(
        self, updates: Updates, state: OptState, params: Params | None = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


class ConditionFn(Protocol):
    """``(step, **extra_args) -> bool scalar``: whether a conditional wrapper runs its inner update.

    ``step`` is the wrapper's int32 counter of previous updates; the extra
    arguments are passed only when the wrapper is built with ``forward_extra_args=True``.
    """

    def __call__(self, step: jax.Array, **extra_args: Any) -> jax.Array: ...


class GradientTransformation(NamedTuple):
    """A pure `(init, update)` pair; see the module docstring for the contract.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale(-0.1)
        >>> state = tx.init({'w': jnp.ones(2)})
        >>> updates, state = tx.update({'w': jnp.ones(2)}, state)
        >>> updates['w'].tolist()
        [-0.10000000149011612, -0.10000000149011612]
    """

    init: TransformInitFn
    update: TransformUpdateFn


class GradientTransformationExtraArgs(GradientTransformation):
    """A `GradientTransformation` whose ``update`` takes ``**extra_args``.

    A subclass, as in optax: ``isinstance(tx, gx.GradientTransformation)`` holds
    for it too, and it is the same pair ``(init, update)``. Every gradxform
    transformation accepts (and ignores) extra keyword arguments whatever its
    class; `with_extra_args_support` gives this type to one from elsewhere.

    Examples:
        >>> import gradxform as gx
        >>> tx = gx.with_extra_args_support(gx.scale(2.0))
        >>> isinstance(tx, gx.GradientTransformationExtraArgs), isinstance(tx, gx.GradientTransformation)
        (True, True)
    """

    update: TransformUpdateExtraArgsFn


@functools.cache
def _signature_takes_extra_args(update_fn: Callable) -> bool:
    try:
        sig = inspect.signature(update_fn)
    except (TypeError, ValueError):
        return True
    return any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values())


def accepts_extra_args(update_fn: Callable) -> bool:
    """Whether `update_fn` takes ``**extra_args`` (True when its signature cannot be read)."""
    try:
        return _signature_takes_extra_args(update_fn)
    except TypeError:  # unhashable callable
        return True


def with_extra_args_support(tx: Any) -> GradientTransformationExtraArgs:
    """`tx` as a `GradientTransformationExtraArgs`: an update that accepts any keyword arguments.

    An update that already takes ``**extra_args`` (every gradxform
    transformation's) keeps them; one that does not (a plain optax
    transformation's) is wrapped so that the keywords are dropped.

    Args:
        tx: any object with ``init`` and ``update``.

    Returns:
        `tx` itself if it is already a `GradientTransformationExtraArgs`, else the
        same pair with that type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> class Plain:  # an update without **extra_args
        ...     init = staticmethod(lambda params: gx.EmptyState())
        ...     update = staticmethod(lambda u, s, params=None: (u, s))
        >>> tx = gx.with_extra_args_support(Plain())
        >>> tx.update(jnp.ones(1), tx.init(jnp.ones(1)), value=3.0)[0].tolist()
        [1.0]
    """
    if isinstance(tx, GradientTransformationExtraArgs):
        return tx
    if accepts_extra_args(tx.update):
        return GradientTransformationExtraArgs(tx.init, tx.update)
    inner_update = tx.update

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        return inner_update(updates, state, params)

    return GradientTransformationExtraArgs(tx.init, update_fn)


class EmptyState(NamedTuple):
    """The state of a transformation that keeps none."""


def init_empty_state(params: Params) -> EmptyState:
    """The ``init`` of a transformation without state: returns `EmptyState` whatever the params.

    Examples:
        >>> import gradxform as gx
        >>> gx.init_empty_state({'w': 1.0})
        EmptyState()
    """
    del params
    return EmptyState()


def identity() -> GradientTransformation:
    """Returns the updates unchanged."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "identity")
        return updates, state

    return GradientTransformationExtraArgs(init_fn, update_fn)


def set_to_zero() -> GradientTransformation:
    """Replaces every update by zeros of the same shape and dtype (freezes params)."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "set_to_zero")
        return jax.tree_util.tree_map(jnp.zeros_like, updates), state

    return GradientTransformationExtraArgs(init_fn, update_fn)


def stateless(
    f: Callable[[Updates, Params | None], Updates], *, name: str = "stateless"
) -> GradientTransformation:
    """Builds a state-free transformation from ``f(updates, params) -> updates``."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_state_type(state, EmptyState, name)
        return f(updates, params), state

    return GradientTransformationExtraArgs(init_fn, update_fn)


def stateless_with_tree_map(
    f: Callable[[jax.Array, jax.Array | None], jax.Array], *, name: str = "stateless_with_tree_map"
) -> GradientTransformation:
    """Builds a state-free transformation applying ``f(g, p)`` leaf by leaf.

    ``p`` is ``None`` when the update is called without params. ``None`` leaves
    of the updates stay ``None``.
    """

    def apply(updates, params):
        if params is None:
            return jax.tree_util.tree_map(lambda g: f(g, None), updates)
        return jax.tree_util.tree_map(
            lambda g, p: None if g is None else f(g, p), updates, params, is_leaf=lambda x: x is None
        )

    return stateless(apply, name=name)


# ----------------------------------------------------------------------- tree_map_params


@jax.tree_util.register_pytree_node_class
class ParamsPlaceholder:
    """Stands for the params when `tree_map_params` calls ``init``: a node with no leaves.

    ``init`` functions that map over the params return it where a params-shaped
    tree would be; wrappers that transform the params first (``masked``) pass it on
    unchanged.
    """

    def tree_flatten(self):
        return (), None

    @classmethod
    def tree_unflatten(cls, aux, children):
        del aux, children
        return cls()

    def __repr__(self) -> str:
        return "ParamsPlaceholder()"


def is_placeholder(x: Any) -> bool:
    """Whether `x` is the `ParamsPlaceholder` that `tree_map_params` passes to ``init``."""
    return isinstance(x, ParamsPlaceholder)


def tree_map_params(
    initable: Any,
    f: Callable[..., Any],
    state: OptState,
    /,
    *rest: Any,
    transform_non_params: Callable[..., Any] | None = None,
    is_leaf: Callable[[Any], bool] | None = None,
) -> OptState:
    """Applies `f` to every params-shaped tree inside an optimizer state.

    ``initable.init`` (or ``initable`` itself, a function ``params -> state``) is
    called with a placeholder for the params; the subtrees of `state` in the
    places where the placeholder lands are the params-shaped ones (Adam's ``mu``
    and ``nu``, ...). Each is replaced by ``jax.tree_util.tree_map(f, subtree,
    *rest, is_leaf=is_leaf)``; every other subtree by
    ``transform_non_params(subtree)`` (default: kept). Typical use: a sharding
    spec for each state leaf from the params' specs.

    Args:
        initable: a transformation, or a function ``params -> state``.
        f: applied leaf by leaf to each params-shaped subtree (and to `rest`).
        state: the state, as ``initable.init(params)`` built it.
        *rest: trees with the params' structure, passed to `f` alongside.
        transform_non_params: applied to each leaf of the state that is not in a
            params-shaped subtree (counters, ...).
        is_leaf: passed to ``tree_map`` (e.g. to stop at ``gx.MaskedNode``).

    Returns:
        A tree with the structure of `state`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> params = {'w': jnp.ones(3)}
        >>> tx = gx.adam(1e-3)
        >>> specs = gx.tree_map_params(tx, lambda p: 'P', tx.init(params), transform_non_params=lambda _: None)
        >>> specs[0].mu, specs[0].count
        ({'w': 'P'}, None)
    """
    init = initable.init if hasattr(initable, "init") else initable
    with_placeholders = init(ParamsPlaceholder())

    def map_params(template, value):
        if is_placeholder(template):
            return jax.tree_util.tree_map(f, value, *rest, is_leaf=is_leaf)
        if transform_non_params is not None:
            return transform_non_params(value)
        return value

    return jax.tree_util.tree_map(map_params, with_placeholders, state, is_leaf=is_placeholder)
