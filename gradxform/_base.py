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

from typing import Any, Callable, NamedTuple, Optional, Protocol, Union

import jax
import jax.numpy as jnp

from gradxform import _checks

Params = Any  # a pytree of arrays
Updates = Any  # a pytree of arrays shaped like Params (or with None leaves)
OptState = Any  # a pytree of arrays and NamedTuples
Schedule = Callable[[Any], Any]
ScalarOrSchedule = Union[float, jax.Array, Schedule]


class TransformInitFn(Protocol):
    def __call__(self, params: Params) -> OptState: ...


class TransformUpdateFn(Protocol):
    def __call__(
        self, updates: Updates, state: OptState, params: Optional[Params] = None, **extra_args: Any
    ) -> tuple[Updates, OptState]: ...


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


class EmptyState(NamedTuple):
    """The state of a transformation that keeps none."""


def identity() -> GradientTransformation:
    """Returns the updates unchanged."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "identity")
        return updates, state

    return GradientTransformation(init_fn, update_fn)


def set_to_zero() -> GradientTransformation:
    """Replaces every update by zeros of the same shape and dtype (freezes params)."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "set_to_zero")
        return jax.tree_util.tree_map(jnp.zeros_like, updates), state

    return GradientTransformation(init_fn, update_fn)


def stateless(
    f: Callable[[Updates, Optional[Params]], Updates], *, name: str = "stateless"
) -> GradientTransformation:
    """Builds a state-free transformation from ``f(updates, params) -> updates``."""

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_state_type(state, EmptyState, name)
        return f(updates, params), state

    return GradientTransformation(init_fn, update_fn)


def stateless_with_tree_map(
    f: Callable[[jax.Array, Optional[jax.Array]], jax.Array], *, name: str = "stateless_with_tree_map"
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
