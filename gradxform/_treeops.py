"""Whole-tree helpers shared by the wrappers, the second-order methods and `gradxform.nn`.

Each helper is written once, here; the modules import it rather than keeping a
copy of their own:

* `tree_vdot`: :math:`\\sum_{\\text{leaves}} \\langle a, b \\rangle`;
* `ravel`: a tree as one vector, and back (Newton's dense solve);
* `tree_where`: selecting whole trees (states);
* `cond_inner_update`: an inner transformation's update on the steps that use it.

Helpers that already had a home keep it: `_tree.scale_tree` (a tree times a
scalar), `_tree.cast_like`, `_tree.compute_dtype` / `_tree.real_dtype` /
`_tree.wide`, `_tree.accumulation_dtype` (the "at least float32" rule), `_combine.call_update` (an inner
update, with the extra arguments it takes), `_combine.check_transform` and
`_checks.require_params` (the "update needs the params" error).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _tree
from gradxform._combine import call_update


def tree_vdot(a: Any, b: Any, dtype: Any) -> jax.Array:
    """:math:`\\sum_{\\text{leaves}} \\sum_i a_i b_i`, each product and the sum in `dtype` (no conjugation)."""
    total = jnp.zeros([], dtype)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        total = total + jnp.sum(jnp.asarray(x).astype(dtype) * jnp.asarray(y).astype(dtype))
    return total


def ravel(tree: Any) -> tuple[jax.Array, Callable[[jax.Array], Any]]:
    """Flattens a tree to one vector in its compute dtype, in ``ravel_pytree``'s order.

    Unlike ``jax.flatten_util.ravel_pytree`` it never promotes between leaf
    dtypes implicitly: every leaf goes to `accumulation_dtype` (float32, or
    float64 if any leaf is float64), and the returned ``unravel`` casts each
    piece back to its leaf's dtype.
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [jnp.asarray(x) for x in leaves]
    dtype = _tree.accumulation_dtype(leaves)
    shapes = [x.shape for x in leaves]
    dtypes = [x.dtype for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = (
        jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves])
        if leaves
        else jnp.zeros((0,), dtype)
    )

    def unravel(vec: jax.Array) -> Any:
        out, start = [], 0
        for shape, dt, size in zip(shapes, dtypes, sizes):
            out.append(vec[start : start + size].reshape(shape).astype(dt))
            start += size
        return treedef.unflatten(out)

    return flat, unravel


def tree_where(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    """``jnp.where(pred, t, f)`` leaf by leaf, `t` cast to `f`'s dtype: the result has `on_false`'s dtypes."""
    return jax.tree_util.tree_map(
        lambda t, f: jnp.where(pred, jnp.asarray(t).astype(jnp.asarray(f).dtype), f), on_true, on_false
    )


def cond_inner_update(
    pred: jax.Array, inner: Any, updates: Any, inner_state: Any, params: Any, extra_args: dict
) -> tuple[Any, Any]:
    """``inner.update(...)`` where `pred` is True, else (zero updates, `inner_state` unchanged).

    Runs the inner update only on the taken branch (``lax.cond``); the zeros have
    the shapes and dtypes the inner update would return. The new inner state is
    cast to the old one's dtypes so both branches agree and nothing drifts.
    """

    def run(u, s):
        new_u, new_s = call_update(inner, u, s, params, extra_args)
        return new_u, _tree.cast_like(new_s, s)

    def skip(u, s):
        out_u, _ = jax.eval_shape(run, u, s)
        zeros = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), out_u)
        return zeros, _tree.cast_like(s, s)

    return jax.lax.cond(pred, run, skip, updates, inner_state)
