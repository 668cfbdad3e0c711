"""`conditionally_transform` and `conditionally_mask`: the inner update only on the steps a condition picks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformationExtraArgs
from gradxform._combine import call_update, check_transform
from gradxform._treeops import cond_inner_update

__all__ = [
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "conditionally_mask",
    "conditionally_transform",
]


class ConditionallyTransformState(NamedTuple):
    inner_state: Any  # the inner transformation's state
    step: jax.Array  # shape (), int32: updates seen so far (taken or not)


class ConditionallyMaskState(NamedTuple):
    step: jax.Array  # shape (), int32: updates seen so far (taken or not)
    inner_state: Any  # the inner transformation's state


def _check_condition(fn: str, should_transform_fn: Any) -> None:
    if not callable(should_transform_fn):
        raise TypeError(
            f"{fn}: should_transform_fn must be a function (step, **extra_args) -> bool, "
            f"got {type(should_transform_fn).__name__}: {should_transform_fn!r}."
        )


def _condition(should_transform_fn: Callable, step: jax.Array, forward_extra_args: bool, extra_args: dict):
    kwargs = extra_args if forward_extra_args else {}
    return jnp.asarray(should_transform_fn(step, **kwargs)).astype(jnp.bool_).reshape(())


def conditionally_transform(
    inner: Any, should_transform_fn: Callable[..., Any], forward_extra_args: bool = False
) -> GradientTransformationExtraArgs:
    r"""Runs `inner` on the steps where ``should_transform_fn(step)`` is True; passes updates through on the others.

    .. math::
        (u_t, s_t) = \begin{cases}
            \text{inner.update}(g_t, s_{t-1}) & \text{if } c(t - 1) \\
            (g_t, s_{t-1}) & \text{otherwise}
        \end{cases}

    with :math:`c` = ``should_transform_fn`` evaluated at the 0-based count of
    previous updates. The inner update runs only on the taken branch
    (``lax.cond``), so the inner state does not move on the other steps.

    Args:
        inner: the transformation to run conditionally.
        should_transform_fn: ``(step, **extra_args) -> bool`` scalar; ``step`` is an
            int32 scalar counting the previous updates.
        forward_extra_args: also pass ``update``'s extra keyword arguments to
            ``should_transform_fn``.

    Returns:
        A `GradientTransformationExtraArgs` with state `ConditionallyTransformState`.

    Raises:
        TypeError: `inner` is not a transformation or ``should_transform_fn`` is not
            callable; at update, a state of another type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.conditionally_transform(gx.scale(10.0), lambda step: step % 2 == 0)
        >>> state = tx.init(jnp.zeros(1))
        >>> u1, state = tx.update(jnp.ones(1), state)
        >>> u2, state = tx.update(jnp.ones(1), state)
        >>> u1.tolist(), u2.tolist()
        ([10.0], [1.0])

    References:
        optax.conditionally_transform (the state's fields and their order).
    """
    fn = "conditionally_transform"
    check_transform(inner, f"{fn}: inner")
    _check_condition(fn, should_transform_fn)

    def init_fn(params):
        return ConditionallyTransformState(inner_state=inner.init(params), step=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, ConditionallyTransformState, fn)
        take = _condition(should_transform_fn, state.step, forward_extra_args, extra_args)

        def run(u, s):
            new_u, new_s = call_update(inner, u, s, params, extra_args)
            return new_u, _tree.cast_like(new_s, s)

        def skip(u, s):
            out_u, _ = jax.eval_shape(run, u, s)
            passed = jax.tree_util.tree_map(lambda x, o: jnp.asarray(x).astype(o.dtype), u, out_u)
            return passed, _tree.cast_like(s, s)

        new_updates, inner_state = jax.lax.cond(take, run, skip, updates, state.inner_state)
        return new_updates, ConditionallyTransformState(inner_state=inner_state, step=_tree.safe_increment(state.step))

    return GradientTransformationExtraArgs(init_fn, update_fn)


def conditionally_mask(
    inner: Any, should_transform_fn: Callable[..., Any], forward_extra_args: bool = False
) -> GradientTransformationExtraArgs:
    r"""Runs `inner` on the steps where ``should_transform_fn(step)`` is True; returns zeros on the others.

    .. math::
        (u_t, s_t) = \begin{cases}
            \text{inner.update}(g_t, s_{t-1}) & \text{if } c(t - 1) \\
            (0, s_{t-1}) & \text{otherwise}
        \end{cases}

    with :math:`c` = ``should_transform_fn`` evaluated at the 0-based count of
    previous updates; the parameters do not move on the masked steps.

    Args:
        inner: the transformation to run conditionally.
        should_transform_fn: ``(step, **extra_args) -> bool`` scalar; ``step`` is an
            int32 scalar counting the previous updates.
        forward_extra_args: also pass ``update``'s extra keyword arguments to
            ``should_transform_fn``.

    Returns:
        A `GradientTransformationExtraArgs` with state `ConditionallyMaskState`.

    Raises:
        TypeError: `inner` is not a transformation or ``should_transform_fn`` is not
            callable; at update, a state of another type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.conditionally_mask(gx.sgd(1.0), lambda step: step >= 1)
        >>> state = tx.init(jnp.zeros(1))
        >>> u1, state = tx.update(jnp.ones(1), state)
        >>> u2, state = tx.update(jnp.ones(1), state)
        >>> u1.tolist(), u2.tolist()
        ([0.0], [-1.0])

    References:
        optax.conditionally_mask (the state's fields and their order).
    """
    fn = "conditionally_mask"
    check_transform(inner, f"{fn}: inner")
    _check_condition(fn, should_transform_fn)

    def init_fn(params):
        return ConditionallyMaskState(step=jnp.zeros([], jnp.int32), inner_state=inner.init(params))

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, ConditionallyMaskState, fn)
        take = _condition(should_transform_fn, state.step, forward_extra_args, extra_args)
        new_updates, inner_state = cond_inner_update(take, inner, updates, state.inner_state, params, extra_args)
        return new_updates, ConditionallyMaskState(step=_tree.safe_increment(state.step), inner_state=inner_state)

    return GradientTransformationExtraArgs(init_fn, update_fn)
