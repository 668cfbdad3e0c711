"""Arithmetic, reductions, norms and dtype helpers on whole trees (``gx.tree.*``).

Every function takes and returns pytrees, with optax 0.2.8's signatures and
result dtypes. Two differences in how the numbers are formed, both within the
result dtype optax returns:

* reductions (`sum`, `vdot`, `norm`) and `scale` / `add_scale` compute in at
  least float32 (`_tree.compute_dtype`) and round once at the end, so a
  float16 norm of moderate values does not overflow through its squares and a
  bfloat16 sum is accurate to its last bit;
* reductions over leaves of different dtypes promote explicitly (standard
  promotion), so they also work under ``jax_numpy_dtype_promotion='strict'``.
"""

from __future__ import annotations

import builtins
import functools
import math
import operator
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _linalg, _tree
from gradxform._moments import _promote, _real


def _leaves(tree: Any) -> list:
    return [jnp.asarray(x) for x in jax.tree_util.tree_leaves(tree)]


def _inexact(dtype: Any) -> bool:
    return bool(jnp.issubdtype(dtype, jnp.inexact))


def _default_float() -> np.dtype:
    return np.dtype(jnp.asarray(0.0).dtype)


# --------------------------------------------------------------------------- element-wise


def add(tree_x: Any, tree_y: Any, *other_trees: Any) -> Any:
    r"""Leaf-wise sum of two or more trees: :math:`x + y + \dots`.

    Args:
        tree_x: a tree.
        tree_y: a tree with the structure of `tree_x`.
        *other_trees: more trees with that structure.

    Returns:
        A tree with the structure of `tree_x`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.add({'a': jnp.float32(1.0)}, {'a': jnp.float32(2.0)}, {'a': jnp.float32(3.0)})
        {'a': Array(6., dtype=float32)}
    """
    return jax.tree_util.tree_map(lambda *xs: functools.reduce(operator.add, xs), tree_x, tree_y, *other_trees)


def sub(tree_x: Any, tree_y: Any) -> Any:
    r"""Leaf-wise difference :math:`x - y`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.sub({'a': jnp.float32(1.0)}, {'a': jnp.float32(3.0)})
        {'a': Array(-2., dtype=float32)}
    """
    return jax.tree_util.tree_map(operator.sub, tree_x, tree_y)


def mul(tree_x: Any, tree_y: Any) -> Any:
    r"""Leaf-wise (Hadamard) product :math:`x \odot y`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.mul({'a': jnp.float32(2.0)}, {'a': jnp.float32(3.0)})
        {'a': Array(6., dtype=float32)}
    """
    return jax.tree_util.tree_map(operator.mul, tree_x, tree_y)


def div(tree_x: Any, tree_y: Any) -> Any:
    r"""Leaf-wise quotient :math:`x / y` (true division: integers give floats).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.div({'a': jnp.float32(3.0)}, {'a': jnp.float32(2.0)})
        {'a': Array(1.5, dtype=float32)}
    """
    return jax.tree_util.tree_map(operator.truediv, tree_x, tree_y)


def _scaled(x: Any, scalar: Any, y: Any = None) -> jax.Array:
    """``scalar * x`` (or ``y + scalar * x``) in at least float32, in optax's result dtype."""
    with jax.numpy_dtype_promotion("standard"):  # a Python float times integers is a float, as in optax
        out = jnp.result_type(scalar, x) if y is None else jnp.result_type(y, scalar, x)
    if not _inexact(out):
        return scalar * x if y is None else y + scalar * x
    cd = _tree.compute_dtype(out)
    prod = _tree.hp(scalar, cd) * jnp.asarray(x).astype(cd)
    if y is not None:
        prod = jnp.asarray(y).astype(cd) + prod
    return prod.astype(out)


def scale(scalar: Any, tree: Any) -> Any:
    r"""Every leaf times a scalar: :math:`s\,x`.

    The product is formed in at least float32 and rounded once to the leaf's
    dtype (a Python number keeps the leaf's dtype, as in JAX).

    Args:
        scalar: :math:`s`, a number or a scalar array.
        tree: a tree.

    Returns:
        A tree with the structure of `tree`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.scale(0.5, {'a': jnp.array([2.0, 4.0])})
        {'a': Array([1., 2.], dtype=float32)}
    """
    return jax.tree_util.tree_map(lambda x: _scaled(x, scalar), tree)


def add_scale(tree_x: Any, scalar: Any, tree_y: Any) -> Any:
    r"""Leaf-wise :math:`x + s\,y`, formed in at least float32.

    Args:
        tree_x: a tree :math:`x`.
        scalar: :math:`s`, a number or a scalar array.
        tree_y: a tree :math:`y` with the structure of `tree_x`.

    Returns:
        A tree with the structure of `tree_x`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.add_scale({'a': jnp.float32(1.0)}, 2.0, {'a': jnp.float32(3.0)})
        {'a': Array(7., dtype=float32)}
    """
    return jax.tree_util.tree_map(lambda x, y: _scaled(y, scalar, x), tree_x, tree_y)


def where(condition, tree_x, tree_y):
    r"""Leaf-wise ``jnp.where(condition, x, y)``.

    Args:
        condition: a boolean (scalar, or broadcastable to every leaf).
        tree_x: the tree chosen where `condition` is true.
        tree_y: the tree chosen elsewhere; same structure as `tree_x`.

    Returns:
        A tree with the structure of `tree_x`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.where(jnp.array(False), {'a': jnp.float32(1.0)}, {'a': jnp.float32(2.0)})
        {'a': Array(2., dtype=float32)}
    """
    return jax.tree_util.tree_map(lambda x, y: jnp.where(condition, x, y), tree_x, tree_y)


def clip(tree: Any, min_value: Optional[Any] = None, max_value: Optional[Any] = None) -> Any:
    r"""Every element clipped to :math:`[\text{min\_value}, \text{max\_value}]`.

    Args:
        tree: a tree.
        min_value: the lower bound, or ``None`` for none.
        max_value: the upper bound, or ``None`` for none.

    Returns:
        A tree with the structure of `tree`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.clip({'a': jnp.array([-2.0, 0.5, 3.0])}, -1.0, 1.0)
        {'a': Array([-1. ,  0.5,  1. ], dtype=float32)}
    """
    return jax.tree_util.tree_map(lambda x: jnp.clip(x, min_value, max_value), tree)


def real(tree: Any) -> Any:
    """The real part of every leaf.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.real({'a': jnp.complex64(1.0 + 2.0j)})
        {'a': Array(1., dtype=float32)}
    """
    return jax.tree_util.tree_map(jnp.real, tree)


def conj(tree: Any) -> Any:
    """The complex conjugate of every leaf (real leaves unchanged).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.conj({'a': jnp.complex64(1.0 + 2.0j)})
        {'a': Array(1.-2.j, dtype=complex64)}
    """
    return jax.tree_util.tree_map(jnp.conj, tree)


# --------------------------------------------------------------------------- reductions


def _leaf_sum(x: jax.Array) -> tuple[jax.Array, np.dtype]:
    if _inexact(x.dtype):
        return jnp.sum(x.astype(_tree.compute_dtype(x.dtype))), np.dtype(x.dtype)
    s = jnp.sum(x)
    return s, np.dtype(s.dtype)


def _combine(parts: list, dtypes: list, out: Optional[np.dtype] = None) -> jax.Array:
    out = _promote(*dtypes) if out is None else out
    acc = _tree.compute_dtype(out) if _inexact(out) else out
    total = parts[0].astype(acc)
    for p in parts[1:]:
        total = total + p.astype(acc)
    return total.astype(out)


def sum(tree: Any, associative_reduction: bool = False) -> Any:
    r"""The sum of every element of every leaf, :math:`\sum_i x_i`.

    Each leaf is summed in at least float32 and the total rounded once to the
    promotion of the leaves' dtypes.

    Args:
        tree: a tree.
        associative_reduction: accepted for optax compatibility; the order of
            summation here is fixed, so results do not depend on it.

    Returns:
        A scalar array (``0`` for a tree without leaves).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.sum({'a': jnp.array([1.0, 2.0]), 'b': jnp.float32(3.0)})
        Array(6., dtype=float32)
    """
    del associative_reduction
    leaves = _leaves(tree)
    if not leaves:
        return 0
    parts, dtypes = zip(*(_leaf_sum(x) for x in leaves))
    return _combine(list(parts), list(dtypes))


def _extremum(tree: Any, reduce, pairwise, empty: float) -> Any:
    leaves = [x for x in _leaves(tree) if x.size]
    if not leaves:
        return empty
    out = _promote(*(x.dtype for x in leaves))
    result = reduce(leaves[0]).astype(out)
    for x in leaves[1:]:
        result = pairwise(result, reduce(x).astype(out))
    return result


def max(tree: Any) -> Any:
    """The largest element of the tree (``-inf`` for a tree without elements).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.max({'a': jnp.array([1.0, 5.0]), 'b': jnp.float32(3.0)})
        Array(5., dtype=float32)
    """
    return _extremum(tree, jnp.max, jnp.maximum, -math.inf)


def min(tree: Any) -> Any:
    """The smallest element of the tree (``inf`` for a tree without elements).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.min({'a': jnp.array([1.0, 5.0]), 'b': jnp.float32(3.0)})
        Array(1., dtype=float32)
    """
    return _extremum(tree, jnp.min, jnp.minimum, math.inf)


def vdot(tree_x: Any, tree_y: Any) -> Any:
    r"""The inner product :math:`\langle x, y \rangle = \sum_i \bar x_i\, y_i` of two trees.

    Like ``jnp.vdot``, the first argument is conjugated. Each leaf's product is
    formed and summed in at least float32; the result has the promotion of
    every leaf's dtype.

    Args:
        tree_x: a tree :math:`x`.
        tree_y: a tree :math:`y` with the structure of `tree_x`.

    Returns:
        A scalar array (``0`` for trees without leaves).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.vdot({'a': jnp.array([1.0, 2.0])}, {'a': jnp.array([3.0, 4.0])})
        Array(11., dtype=float32)
    """
    pairs = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda x, y: (x, y), tree_x, tree_y))
    xs, ys = pairs[0::2], pairs[1::2]
    if not xs:
        return 0
    parts, dtypes = [], []
    for x, y in zip(xs, ys):
        x, y = jnp.asarray(x), jnp.asarray(y)
        out = _promote(x.dtype, y.dtype)
        cd = _tree.compute_dtype(out) if _inexact(out) else out
        parts.append(
            jnp.vdot(x.astype(cd).ravel(), y.astype(cd).ravel(), precision=jax.lax.Precision.HIGHEST)
        )
        dtypes.append(out)
    return _combine(parts, dtypes)


def _norm_kind(ord: Any) -> str:
    if ord is None or (not isinstance(ord, str) and ord == 2):
        return "l2"
    if not isinstance(ord, str) and ord == 1:
        return "l1"
    if ord == "inf" or (not isinstance(ord, str) and ord == math.inf):
        return "linf"
    raise ValueError(f"Unsupported ord: {ord}. tree.norm supports ord=None, 1, 2 and inf ('inf').")


def norm(tree: Any, ord: int | str | float | None = None, squared: bool = False) -> jax.Array:
    r"""A vector norm of the whole tree, as if its leaves were one vector.

    .. math::
        \|x\|_1 = \sum_i |x_i|, \quad
        \|x\|_2 = \Big(\sum_i |x_i|^2\Big)^{1/2}, \quad
        \|x\|_\infty = \max_i |x_i|

    Accumulated in at least float32 (float64 for float64 leaves), without
    overflow where only the squares overflow (``norm`` of float32 ``1e20``), and
    rounded once to the promotion of the leaves' real dtypes (the 2-norm of integers
    is a float, as ``jnp.sqrt`` gives). Complex elements count by modulus.

    Args:
        tree: a tree.
        ord: ``None`` or 2 (Euclidean), 1, or ``inf`` (``jnp.inf`` or ``'inf'``).
        squared: return the square of the norm (for ``ord=2``: the sum of
            squares, without a square root).

    Returns:
        A scalar array; 0 for a tree without elements.

    Raises:
        ValueError: for any other `ord`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> t = {'a': jnp.array([3.0, -4.0])}
        >>> gx.tree.norm(t), gx.tree.norm(t, ord=1), gx.tree.norm(t, ord=jnp.inf), gx.tree.norm(t, squared=True)
        (Array(5., dtype=float32), Array(7., dtype=float32), Array(4., dtype=float32), Array(25., dtype=float32))
    """
    kind = _norm_kind(ord)
    leaves = _leaves(tree)
    if not leaves:
        return jnp.asarray(0.0)
    target = _promote(*(_real(x.dtype) for x in leaves))
    if _inexact(target):
        out, acc = target, _tree.compute_dtype(target)
    else:
        # Integer trees: exact integer sums for the 1-norm, the infinity norm and the
        # squared 2-norm (as optax); the 2-norm itself is a float.
        out = target if (kind != "l2" or squared) else _default_float()
        acc = target if out == target else _tree.compute_dtype(out)

    def prepared(x):
        return x.astype(_tree.compute_dtype(x.dtype)) if (_inexact(acc) or _inexact(x.dtype)) else x

    if kind == "l2" and not squared and _inexact(target):
        # Overflow-safe: where the sum of squares overflows (float32 leaves of 1e20), the norm
        # comes from a rescaled sum (`gx.global_norm`).
        return _linalg.global_norm(leaves).astype(out)
    if kind == "l2":
        total = builtins.sum(jnp.sum(_tree.abs_sq(prepared(x))).astype(acc) for x in leaves)
        result = total if squared else jnp.sqrt(total)
        return jnp.asarray(result).astype(out)
    if kind == "l1":
        total = builtins.sum(jnp.sum(jnp.abs(prepared(x))).astype(acc) for x in leaves)
    else:
        sized = [x for x in leaves if x.size]
        total = jnp.zeros((), acc)
        for x in sized:
            total = jnp.maximum(total, jnp.max(jnp.abs(prepared(x))).astype(acc))
    total = jnp.asarray(total)
    return (total * total if squared else total).astype(out)


def size(tree: Any) -> int:
    """The number of elements in the tree (a Python int).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.size({'a': jnp.ones((2, 3)), 'b': jnp.float32(1.0)})
        7
    """
    return builtins.sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(tree))


def allclose(a: Any, b: Any, rtol: Any = 1e-05, atol: Any = 1e-08, equal_nan: bool = False):
    r"""Whether two trees are element-wise close: :math:`|a - b| \le \text{atol} + \text{rtol}\,|b|`.

    Leaves of different dtypes are compared in their promoted dtype.

    Args:
        a: a tree.
        b: a tree with the structure of `a`.
        rtol: relative tolerance.
        atol: absolute tolerance.
        equal_nan: whether NaNs in the same places compare equal.

    Returns:
        A boolean scalar array (``True`` for trees without leaves).

    Raises:
        ValueError: when the structures differ.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.allclose({'a': jnp.float32(1.0)}, {'a': jnp.float32(1.0 + 1e-7)})
        Array(True, dtype=bool)
    """

    def close(x, y):
        x, y = jnp.asarray(x), jnp.asarray(y)
        if x.dtype != y.dtype:
            d = _promote(x.dtype, y.dtype)
            x, y = x.astype(d), y.astype(d)
        return jnp.allclose(x, y, rtol=rtol, atol=atol, equal_nan=equal_nan)

    results = jax.tree_util.tree_leaves(jax.tree_util.tree_map(close, a, b))
    return functools.reduce(jnp.logical_and, results, True)


# --------------------------------------------------------------------------- construction and dtypes


def zeros_like(tree: Any, dtype: Optional[Any] = None) -> Any:
    """Zeros shaped like each leaf, in `dtype` or the leaf's dtype.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.zeros_like({'a': jnp.ones(2)})
        {'a': Array([0., 0.], dtype=float32)}
    """
    return jax.tree_util.tree_map(lambda x: jnp.zeros_like(x, dtype=dtype), tree)


def ones_like(tree: Any, dtype: Optional[Any] = None) -> Any:
    """Ones shaped like each leaf, in `dtype` or the leaf's dtype.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.ones_like({'a': jnp.zeros(2)}, dtype=jnp.int32)
        {'a': Array([1, 1], dtype=int32)}
    """
    return jax.tree_util.tree_map(lambda x: jnp.ones_like(x, dtype=dtype), tree)


def full_like(tree: Any, fill_value: Any, dtype: Optional[Any] = None) -> Any:
    """`fill_value` shaped like each leaf, in `dtype` or the leaf's dtype.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.full_like({'a': jnp.zeros(2)}, 3.0)
        {'a': Array([3., 3.], dtype=float32)}
    """
    return jax.tree_util.tree_map(lambda x: jnp.full_like(x, fill_value, dtype=dtype), tree)


def cast(tree: Any, dtype: Optional[Any]) -> Any:
    """Every leaf cast to `dtype`; the tree unchanged when `dtype` is ``None``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.cast({'a': jnp.float32(1.0)}, jnp.bfloat16)
        {'a': Array(1, dtype=bfloat16)}
    """
    if dtype is None:
        return tree
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if hasattr(x, "astype") else jnp.asarray(x).astype(dtype), tree
    )


def cast_like(tree: Any, other_tree: Any) -> Any:
    """Each leaf of `tree` cast to the dtype of the matching leaf of `other_tree`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.cast_like({'a': jnp.float32(1.0)}, {'a': jnp.array(0, jnp.int32)})
        {'a': Array(1, dtype=int32)}
    """
    return _tree.cast_like(tree, other_tree)


_HANDLERS = (None, "promote", "highest", "lowest")


def dtype(tree: Any, mixed_dtype_handler: Optional[str] = None) -> Any:
    """The dtype of the tree's leaves.

    Args:
        tree: a tree (Python numbers count with JAX's dtype for them).
        mixed_dtype_handler: what to do when the leaves' dtypes differ:
            ``None`` raises; ``'promote'`` returns their JAX promotion;
            ``'highest'`` / ``'lowest'`` return the greatest / least dtype in the
            order "``a <= b`` when ``a`` promotes to ``b``", and raise when two
            leaves' dtypes are not ordered that way.

    Returns:
        A NumPy dtype; JAX's default float dtype for a tree without leaves.

    Raises:
        ValueError: for mixed dtypes with ``mixed_dtype_handler=None`` (naming
            the first leaf that differs), for unordered dtypes with
            ``'highest'`` / ``'lowest'``, and for any other handler.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> t = {'a': jnp.ones(2, jnp.float16), 'b': jnp.ones(2, jnp.float32)}
        >>> gx.tree.dtype(t, 'lowest'), gx.tree.dtype(t, 'highest')
        (dtype('float16'), dtype('float32'))
    """
    if mixed_dtype_handler not in _HANDLERS:
        raise ValueError(
            f"Invalid value for mixed_dtype_handler={mixed_dtype_handler!r}, possible values are: "
            'None, "promote", "highest", "lowest".'
        )
    with_path = jax.tree_util.tree_flatten_with_path(tree)[0]
    if not with_path:
        return _default_float()
    dtypes = [(path, np.dtype(jnp.asarray(x).dtype)) for path, x in with_path]
    first = dtypes[0][1]
    if mixed_dtype_handler is None:
        for path, d in dtypes[1:]:
            if d != first:
                raise ValueError(
                    f"Expected dtype={first!r} for {jax.tree_util.keystr(path)} but got {d}: the tree "
                    "mixes dtypes. Pass mixed_dtype_handler='promote', 'highest' or 'lowest' to choose one."
                )
        return first
    if mixed_dtype_handler == "promote":
        return _promote(*(d for _, d in dtypes))
    current = first
    for path, d in dtypes[1:]:
        joined = _promote(current, d)
        if joined not in (current, d):
            raise ValueError(
                f"dtypes {current} and {d} (at {jax.tree_util.keystr(path)}) cannot be promoted to one "
                f"another, so the {mixed_dtype_handler!r} dtype of the tree is undefined; use "
                "mixed_dtype_handler='promote'."
            )
        if mixed_dtype_handler == "highest":
            current = joined
        elif joined == current:
            current = d
    return current


def batch_shape(tree: Any, shape: tuple[int, ...] = ()):
    """Every leaf broadcast to ``shape + leaf.shape`` (leading batch dimensions).

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> jax.tree.map(jnp.shape, gx.tree.batch_shape({'a': jnp.ones(3)}, (2,)))
        {'a': (2, 3)}
    """
    shape = tuple(shape)
    return jax.tree_util.tree_map(lambda x: jnp.broadcast_to(x, shape + tuple(np.shape(x))), tree)
