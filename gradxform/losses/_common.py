"""Helpers shared by the loss modules: dtypes, ``where`` masks and stable log-softmax.

Dtype policy for losses: arithmetic happens in at least float32
(`gradxform._tree.compute_dtype`), and the result is returned in the float
dtype of the first (prediction) argument, so a bfloat16 model gets a bfloat16
loss computed without bfloat16 rounding inside the reduction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _tree

Axis = int | Sequence[int] | None


def float_dtype(x: jax.Array) -> np.dtype:
    """The dtype a loss of `x` is returned in: `x`'s float dtype, float32 for integers."""
    dtype = np.dtype(x.dtype)
    return dtype if jnp.issubdtype(dtype, jnp.floating) else np.dtype(np.float32)


def as_compute(x: Any, like: jax.Array | None = None) -> jax.Array:
    """`x` as an array in the compute dtype of `like` (or of `x` itself): at least float32."""
    x = jnp.asarray(x)
    ref = x if like is None else like
    return x.astype(_tree.compute_dtype(float_dtype(ref)))


def cast_out(value: jax.Array, like: jax.Array) -> jax.Array:
    """Round the loss back to `like`'s float dtype (once, at the end)."""
    return value.astype(float_dtype(like))


def axes_tuple(axis: Axis, ndim: int) -> tuple[int, ...]:
    """`axis` (None, an int or a sequence) as a tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (int, np.integer)):
        axis = (int(axis),)
    return tuple(sorted(int(a) % ndim for a in axis))


def expand_where(where: Any, ndim: int, axis: Axis) -> jax.Array | None:
    """A ``where`` mask broadcastable to the input: a mask with the reduced axes
    missing (one per batch row) gets them back as size-one axes."""
    if where is None:
        return None
    where = jnp.asarray(where)
    if where.dtype != jnp.bool_:
        where = where.astype(jnp.bool_)
    axes = axes_tuple(axis, ndim)
    if where.ndim == ndim - len(axes) and len(axes) > 0:
        where = jnp.expand_dims(where, axes)
    return where


def masked_sum(x: jax.Array, axis: Axis, where: jax.Array | None) -> jax.Array:
    """``sum(x)`` over `axis`, counting only entries where `where` is True (0 elsewhere)."""
    if where is not None:
        x = jnp.where(where, x, jnp.zeros((), x.dtype))
    return jnp.sum(x, axis=axis)


def log_softmax(x: jax.Array, axis: Axis, where: jax.Array | None) -> jax.Array:
    r"""Stable :math:`x - \log\sum_{j \in \text{where}} e^{x_j}` (max subtracted first).

    Entries outside `where` are left finite but meaningless; callers mask them.
    """
    neg_inf = jnp.array(-jnp.inf, x.dtype)
    m = jnp.max(
        x if where is None else jnp.where(where, x, neg_inf), axis=axis, keepdims=True
    )
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, jnp.zeros((), x.dtype)))
    shifted = x - m
    e = jnp.exp(shifted)
    if where is not None:
        e = jnp.where(where, e, jnp.zeros((), x.dtype))
    total = jnp.sum(e, axis=axis, keepdims=True)
    if where is not None:  # a row with nothing selected: finite values, zero gradients
        total = jnp.where(total > 0, total, jnp.ones((), x.dtype))
    return shifted - jnp.log(total)


def is_concrete(*xs: Any) -> bool:
    """True when no argument is a tracer (so values can be checked in Python)."""
    return not any(isinstance(x, jax.core.Tracer) for x in xs)
