"""`apply_if_finite`: skips every step whose updates hold a NaN or an infinity."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformationExtraArgs
from gradxform._combine import check_transform
from gradxform._treeops import call_update


def all_finite(tree: Any) -> jax.Array:
    """A bool scalar: True iff every element of every (non-None) leaf is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if x is not None]
    if not leaves:
        return jnp.asarray(True)
    return jnp.all(jnp.stack(leaves))


def _stays_finite(old: Any, new: Any) -> jax.Array:
    """A bool scalar: no element of a float leaf of `new` is non-finite where `old`'s was finite.

    An element that already held an infinity (a "best loss so far" starting at inf) may keep it.
    """
    checks = [
        jnp.all(jnp.isfinite(n) | ~jnp.isfinite(o))
        for o, n in zip(jax.tree_util.tree_leaves(old), jax.tree_util.tree_leaves(new))
        if jnp.issubdtype(jnp.asarray(n).dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(checks)) if checks else jnp.asarray(True)


def _checked_inner_update(finite_in, inner, updates, inner_state, params, extra_args):
    """The inner update where the gradients are finite and it keeps its updates and state finite.

    Returns ``(updates, inner_state, accepted)``: a rejected step gives zero updates and the
    old inner state. The inner update runs only where the gradients are finite (``lax.cond``).
    """

    def run(u, s):
        new_u, new_s = call_update(inner, u, s, params, extra_args)
        new_s = _tree.cast_like(new_s, s)
        return new_u, new_s, all_finite(new_u) & _stays_finite(s, new_s)

    def skip(u, s):
        out_u, _, _ = jax.eval_shape(run, u, s)
        zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), out_u)
        return zeros, _tree.cast_like(s, s), jnp.asarray(False)

    new_u, new_s, ok = jax.lax.cond(finite_in, run, skip, updates, inner_state)
    # A second branch, not an element-wise select: the old state is returned as it is.
    return jax.lax.cond(
        ok,
        lambda: (new_u, new_s, ok),
        lambda: (jax.tree_util.tree_map(jnp.zeros_like, new_u), _tree.cast_like(inner_state, inner_state), ok),
    )


class ApplyIfFiniteState(NamedTuple):
    """State of `apply_if_finite`: the fields, order and dtypes of optax's, so checkpoints move between them."""

    notfinite_count: jax.Array  # shape (), int32: consecutive non-finite steps (0 after a finite one)
    last_finite: jax.Array  # shape (), bool: whether the last step's updates were all finite
    total_notfinite: jax.Array  # shape (), int32: non-finite steps since init, never reset
    inner_state: Any  # the inner transformation's state


@_hyper.declare(max_consecutive_errors=_hyper.integer(0, draw=(0, 5), source="validator"))
def apply_if_finite(inner: Any, max_consecutive_errors: int) -> GradientTransformationExtraArgs:
    r"""Wraps `inner` so that a step with a NaN or an infinity in the updates changes nothing.

    A step is rejected when the gradients hold a NaN or an infinity, and also when
    the inner update, run on finite gradients, returns non-finite updates or makes
    a finite element of its state non-finite (a finite gradient of 2e19 whose
    square overflows Adam's ``nu`` to inf would otherwise be accepted and freeze
    training: every later update is ``mu / inf = 0``).

    .. math::
        (u_t, s_t) = \begin{cases}
            \text{inner.update}(g_t, s_{t-1}) & \text{if } g_t, u_t, s_t \text{ are finite} \\
            (0, s_{t-1}) & \text{otherwise}
        \end{cases}

    The inner update runs only on finite steps, so a non-finite gradient never
    reaches the inner state, however many come in a row. The counters tell the
    training loop what happened: ``notfinite_count`` (consecutive non-finite
    steps), ``total_notfinite`` and ``last_finite``. When ``notfinite_count``
    exceeds ``max_consecutive_errors`` the training has diverged: the wrapper
    still returns zeros and keeps the inner state (nothing changes but the
    counters), and the loop can stop on ``state.notfinite_count > max_consecutive_errors``.

    Note:
        optax checks only the gradients: a finite gradient that overflows the
        inner state is applied (``last_finite=True``) and Adam stops moving.
        optax's ``apply_if_finite`` also gives up after ``max_consecutive_errors`` and
        passes the non-finite gradient to the inner transformation, which puts
        NaN into its state (Adam's moments) for good. Here the bound is only a
        threshold for the caller to read.

    Args:
        inner: the transformation to protect (any object with ``init``/``update``).
        max_consecutive_errors: an integer >= 0; see above.

    Returns:
        A `GradientTransformationExtraArgs` with state `ApplyIfFiniteState`; extra
        keyword arguments reach the inner update.

    Raises:
        ValueError: a negative ``max_consecutive_errors``.
        TypeError: `inner` is not a transformation; at update, a state of another type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.apply_if_finite(gx.sgd(0.1), max_consecutive_errors=2)
        >>> state = tx.init(jnp.zeros(2))
        >>> u, state = tx.update(jnp.array([1.0, jnp.nan]), state)
        >>> u.tolist(), int(state.notfinite_count), bool(state.last_finite)
        ([0.0, 0.0], 1, False)

    References:
        optax.apply_if_finite (the counters' names and meaning).
    """
    fn = "apply_if_finite"
    check_transform(inner, f"{fn}: inner")

    def init_fn(params):
        return ApplyIfFiniteState(
            notfinite_count=jnp.zeros([], jnp.int32),
            last_finite=jnp.asarray(True, jnp.bool_),
            total_notfinite=jnp.zeros([], jnp.int32),
            inner_state=inner.init(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, ApplyIfFiniteState, fn)
        new_updates, inner_state, finite = _checked_inner_update(
            all_finite(updates), inner, updates, state.inner_state, params, extra_args
        )
        zero = jnp.zeros([], jnp.int32)
        return new_updates, ApplyIfFiniteState(
            notfinite_count=jnp.where(finite, zero, _tree.safe_increment(state.notfinite_count)),
            last_finite=finite,
            total_notfinite=jnp.where(
                finite, state.total_notfinite, _tree.safe_increment(state.total_notfinite)
            ).astype(jnp.int32),
            inner_state=inner_state,
        )

    return GradientTransformationExtraArgs(init_fn, update_fn)

