"""Small tree helpers shared by the transformations.

The dtype policy lives here (see BUILD.md, "Dtype policy"):

* arithmetic on a leaf happens in `compute_dtype(leaf.dtype)`: float32 for
  float16 / bfloat16 / float32, float64 for float64;
* hyperparameters are cast to that compute dtype (so a Python ``0.999`` is
  never rounded to bfloat16's ``1.0``);
* results are cast back: updates to the incoming updates' dtype, state leaves
  to the dtype `init` gave them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def is_none(x: Any) -> bool:
    return x is None


def compute_dtype(dtype: Any) -> np.dtype:
    """The dtype arithmetic on a leaf of `dtype` is done in: at least float32."""
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        return np.dtype(np.float64)
    if dtype == np.complex128:
        return np.dtype(np.complex128)
    if np.issubdtype(dtype, np.complexfloating):
        return np.dtype(np.complex64)
    return np.dtype(np.float32)


def real_dtype(dtype: Any) -> np.dtype:
    """The real dtype of `compute_dtype(dtype)` (for norms of complex leaves)."""
    cdt = compute_dtype(dtype)
    return np.dtype(np.float64) if cdt in (np.float64, np.complex128) else np.dtype(np.float32)


def wide(x: jax.Array) -> jax.Array:
    """`x` cast to its compute dtype."""
    return x.astype(compute_dtype(x.dtype))


def hp(value: Any, dtype: Any) -> jax.Array:
    """A hyperparameter (Python float, array or tracer) as an array of `dtype`."""
    return jnp.asarray(value).astype(dtype)


def abs_sq(x: jax.Array) -> jax.Array:
    """|x|^2 (real for complex x)."""
    if jnp.iscomplexobj(x):
        return (x.real * x.real + x.imag * x.imag)
    return mul(x, x)


# Element-wise arithmetic for the per-leaf loops. Where both operands have one dtype
# and the shapes match (or one is a scalar) these bind the lax primitive that jnp's
# operator would bind, so the numbers are the same; they skip jnp's dispatch, which
# costs ~0.15 ms per operation while tracing: seconds of the first call on a tree of
# thousands of leaves. Anything else (mixed dtypes, broadcasting) goes through jnp.


def _lax_ok(a: Any, b: Any) -> bool:
    return (
        isinstance(a, jax.Array) and isinstance(b, jax.Array) and a.dtype == b.dtype
        and (a.shape == b.shape or a.ndim == 0 or b.ndim == 0)
    )


def add(a: Any, b: Any) -> Any:
    return jax.lax.add(a, b) if _lax_ok(a, b) else a + b


def sub(a: Any, b: Any) -> Any:
    return jax.lax.sub(a, b) if _lax_ok(a, b) else a - b


def mul(a: Any, b: Any) -> Any:
    return jax.lax.mul(a, b) if _lax_ok(a, b) else a * b


def div(a: Any, b: Any) -> Any:
    return jax.lax.div(a, b) if _lax_ok(a, b) and jnp.issubdtype(a.dtype, jnp.inexact) else a / b


def sqrt(x: Any) -> Any:
    return jax.lax.sqrt(x) if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.inexact) else jnp.sqrt(x)


def per_dtype(make: Callable[[np.dtype], Any]) -> Callable[[np.dtype], Any]:
    """`make(dtype)` memoized: a transformation's scalars built once per compute dtype, not once per leaf."""
    cache: dict = {}

    def get(dtype):
        if dtype not in cache:
            cache[dtype] = make(dtype)
        return cache[dtype]

    return get


def cast(x: Any, dtype: Any) -> Any:
    """`x.astype(dtype)`, and `x` itself when it already has that dtype."""
    dtype = np.dtype(dtype)
    if isinstance(x, jax.Array) and x.dtype == dtype:
        return x
    return jnp.asarray(x).astype(dtype)


def zeros_like(tree: Any, dtype: Optional[Any] = None) -> Any:
    """Zeros shaped (and sharded) like each leaf, in `dtype` or the leaf's dtype."""
    return jax.tree_util.tree_map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def full_like(tree: Any, value: Any, dtype: Optional[Any] = None) -> Any:
    """`value` broadcast like each leaf (keeping its sharding), in `dtype` or the leaf's dtype."""
    return jax.tree_util.tree_map(lambda x: jnp.full_like(x, value, dtype=dtype), tree)


def square_dtype(dtype: Any) -> np.dtype:
    """The default dtype of a squared-gradient accumulator for params of `dtype`.

    float16's largest number is 65504, so a stored squared gradient overflows to
    inf as soon as a gradient exceeds 256 in magnitude; such accumulators are
    kept in float32 for float16 params. Every other dtype keeps its own (bfloat16
    has float32's range).
    """
    dtype = np.dtype(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def square_zeros_like(tree: Any, dtype: Optional[Any] = None) -> Any:
    """Zeros for a squared-gradient accumulator: `dtype`, or `square_dtype` of each leaf."""
    return jax.tree_util.tree_map(lambda x: jnp.zeros_like(x, dtype=dtype or square_dtype(x.dtype)), tree)


def square_full_like(tree: Any, value: Any, dtype: Optional[Any] = None) -> Any:
    """`value` for a squared-gradient accumulator: `dtype`, or `square_dtype` of each leaf."""
    return jax.tree_util.tree_map(lambda x: jnp.full_like(x, value, dtype=dtype or square_dtype(x.dtype)), tree)


def safe_increment(count: jax.Array) -> jax.Array:
    """count + 1, saturating at the largest value of its integer dtype."""
    max_value = jnp.iinfo(count.dtype).max
    return jnp.where(count < max_value, count + 1, max_value).astype(count.dtype)


def bias_correction(decay: Any, count: jax.Array, dtype: Any = np.float32) -> jax.Array:
    """1 - decay**count, in `dtype`."""
    return 1 - hp(decay, dtype) ** count.astype(dtype)


def map_leaves(
    fn: Callable[..., Sequence[Any]], updates: Any, *others: Any, n_out: int
) -> tuple[Any, ...]:
    """Applies `fn(g, *other_leaves) -> n_out values` leaf by leaf; returns n_out trees.

    The trees in `others` must have the structure of `updates` (state trees,
    params). A ``None`` update leaf calls `fn` with ``g=None``; `fn` is expected
    to return ``None`` for the update and to keep the state leaves unchanged, so
    the state keeps its structure when some updates are masked out.
    """
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    other_leaves = [treedef.flatten_up_to(o) for o in others]
    outs = [fn(*args) for args in zip(leaves, *other_leaves)]
    return tuple(treedef.unflatten([out[i] for out in outs]) for i in range(n_out))


def cast_like(tree: Any, like: Any) -> Any:
    """Each leaf of `tree` cast to the dtype of the matching leaf of `like`."""
    return jax.tree_util.tree_map(
        lambda x, y: None if x is None else jnp.asarray(x).astype(y.dtype), tree, like, is_leaf=is_none
    )


def global_norm(tree: Any) -> jax.Array:
    """sqrt(sum of |x|^2 over every leaf), accumulated in at least float32.

    Returns a float32 scalar (float64 if any leaf is float64).
    """
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if x is not None]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    acc_dtype = np.dtype(np.float32)
    for x in leaves:
        if real_dtype(x.dtype) == np.float64:
            acc_dtype = np.dtype(np.float64)
    total = sum(_sum_sq(x, acc_dtype) for x in leaves)
    return jnp.sqrt(total)


def _sum_sq(x: jax.Array, acc_dtype: Any) -> jax.Array:
    """sum |x|^2 as an `acc_dtype` scalar, reading `x` once.

    The optimization barrier gives the reduction its own copy of the widening
    convert: without it XLA's CSE shares the convert with the consumers that
    scale the same leaf (`clip_by_global_norm`), and a shared convert is
    materialized, a float32 copy of every float16/bfloat16 leaf.
    """
    if x.dtype != compute_dtype(x.dtype):
        x = jax.lax.optimization_barrier(x)
    return jnp.sum(abs_sq(wide(x))).astype(acc_dtype)
