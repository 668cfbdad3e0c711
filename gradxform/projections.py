r"""Euclidean projections of pytrees onto convex sets (and two spheres), as in ``optax.projections``.

Each function returns :math:`\operatorname{argmin}_{y \in C} \|x - y\|_2^2` for
its set :math:`C`, treating the whole tree as one vector (``l1``, ``l2``,
simplex, halfspace, ...) or element by element (box, non-negative orthant).
Typical use: projected gradient descent, ``params = projection(apply_updates(params, updates))``.

Dtypes: the arithmetic is done in at least float32 and each leaf is returned
in its own dtype (float32 for integer leaves); inner products and norms over
the tree are accumulated in float32 (float64 if any leaf is float64).
``None`` leaves stay ``None``.

References:
    Parikh & Boyd, "Proximal Algorithms", Foundations and Trends in
    Optimization 1(3), 2014, Section 6.2 (projections onto boxes, affine sets,
    halfspaces, Euclidean and l1 balls, the simplex).
    Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient Projections onto the
    l1-Ball for Learning in High Dimensions", ICML 2008, Figure 1 (the sort-based
    simplex projection) and Section 4 (the l1 ball).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _tree

__all__ = [
    "projection_box",
    "projection_halfspace",
    "projection_hypercube",
    "projection_hyperplane",
    "projection_l1_ball",
    "projection_l1_sphere",
    "projection_l2_ball",
    "projection_l2_sphere",
    "projection_linf_ball",
    "projection_non_negative",
    "projection_simplex",
    "projection_vector",
]


# --------------------------------------------------------------------------- helpers


def _out_dtype(x: jax.Array) -> np.dtype:
    """A leaf's result dtype: its own if inexact, else float32 (the compute dtype)."""
    return np.dtype(x.dtype) if jnp.issubdtype(x.dtype, jnp.inexact) else _tree.compute_dtype(x.dtype)


def _leaves(tree: Any) -> tuple[list, Any]:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return [jnp.asarray(x) for x in leaves], treedef


def _acc_dtype(leaves: list) -> np.dtype:
    acc = _tree.accumulation_dtype(leaves)
    if any(jnp.iscomplexobj(x) for x in leaves):
        return np.dtype(np.complex128 if acc == np.float64 else np.complex64)
    return acc


def _flatten(tree: Any) -> tuple[jax.Array, Any]:
    """The tree as one vector in its accumulation dtype, and the function putting a vector back."""
    leaves, treedef = _leaves(tree)
    dtype = _acc_dtype(leaves)
    shapes = [x.shape for x in leaves]
    outs = [_out_dtype(x) for x in leaves]
    sizes = [int(np.prod(s)) for s in shapes]
    flat = (
        jnp.concatenate([jnp.ravel(x).astype(dtype) for x in leaves]) if leaves else jnp.zeros((0,), dtype)
    )

    def unflatten(vec: jax.Array) -> Any:
        pieces, start = [], 0
        for shape, out, n in zip(shapes, outs, sizes):
            pieces.append(vec[start : start + n].reshape(shape).astype(out))
            start += n
        return treedef.unflatten(pieces)

    return flat, unflatten


def _check_scale(name: str, value: Any, fn: str) -> None:
    for leaf in jax.tree_util.tree_leaves(value):
        _checks.check_non_negative(name, leaf, fn=fn)


def _simplex(v: jax.Array, scale: Any) -> jax.Array:
    r"""Projection of the real vector `v` onto :math:`\{p \ge 0, \sum p = s\}` (Duchi et al. 2008, Fig. 1).

    With :math:`u` = `v` sorted in decreasing order, :math:`\rho` is the largest
    :math:`j` with :math:`u_j - (\sum_{i \le j} u_i - s) / j > 0` and
    :math:`\theta = (\sum_{i \le \rho} u_i - s) / \rho`; then :math:`p = \max(v - \theta, 0)`.
    For :math:`s = 0` no :math:`j` qualifies and :math:`\rho = 1` gives :math:`p = 0`.
    """
    s = _tree.hp(scale, v.dtype)
    u = jnp.sort(v)[::-1]
    css = jnp.cumsum(u) - s
    j = jnp.arange(1, v.shape[0] + 1, dtype=v.dtype)
    rho = jnp.maximum(jnp.sum(u - css / j > 0), 1)
    theta = css[rho - 1] / rho.astype(v.dtype)
    return jnp.maximum(v - theta, 0)


def _modulus_and_direction(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``|v|`` and ``v / |v|``, with direction +1 where ``v == 0``."""
    mod = jnp.abs(v)
    safe = jnp.where(mod > 0, mod, 1)
    return mod, jnp.where(mod > 0, v / safe.astype(v.dtype), jnp.ones_like(v))


def _l1_sphere_vec(v: jax.Array, scale: Any) -> jax.Array:
    mod, direction = _modulus_and_direction(v)
    return direction * _simplex(mod, scale).astype(v.dtype)


def _map_leaves(fn, tree: Any, *others: Any) -> Any:
    """``fn(leaf_in_compute_dtype, *other_leaves)`` per leaf, cast back to the leaf's result dtype."""

    def one(x, *rest):
        x = jnp.asarray(x)
        out = _out_dtype(x)
        return fn(x.astype(_tree.compute_dtype(out)), *rest).astype(out)

    return jax.tree_util.tree_map(one, tree, *others)


def _is_scalar(value: Any) -> bool:
    return jax.tree_util.treedef_is_leaf(jax.tree_util.tree_structure(value)) and np.ndim(value) == 0


def _inner(x: Any, a: Any, fn: str) -> tuple[jax.Array, jax.Array, np.dtype]:
    """:math:`\\langle a, x \\rangle` and :math:`\\|a\\|^2`, accumulated in float32 or float64."""
    _checks.check_tree_like(a, x, tree_name="a", like_name="x", fn=fn, allow_none=False)
    xs, _ = _leaves(x)
    as_, _ = _leaves(a)
    acc = _tree.accumulation_dtype(xs + as_)
    ax = sum((jnp.sum(xi.astype(acc) * ai.astype(acc)) for xi, ai in zip(xs, as_)), jnp.zeros((), acc))
    aa = sum((jnp.sum(ai.astype(acc) * ai.astype(acc)) for ai in as_), jnp.zeros((), acc))
    return ax, aa, acc


def _minus_multiple(x: Any, coef: jax.Array, a: Any) -> Any:
    """:math:`x - c\\,a` leaf by leaf, in at least float32."""
    return _map_leaves(lambda xi, ai: xi - coef.astype(xi.dtype) * jnp.asarray(ai).astype(xi.dtype), x, a)


# --------------------------------------------------------------------------- element-wise sets


def projection_box(tree: Any, lower: Any, upper: Any) -> Any:
    r"""Projection onto the box :math:`\{p : \text{lower} \le p \le \text{upper}\}`.

    .. math::
        \operatorname{argmin}_{p} \|x - p\|_2^2 \ \text{ s.t. }\ l \le p \le u
        \quad\Longrightarrow\quad p = \min(\max(x, l), u)

    element by element (Parikh & Boyd 2014, Section 6.2.4).

    Args:
        tree: the tree :math:`x` to project.
        lower: :math:`l`, a scalar or a tree with the structure of `tree`.
        upper: :math:`u \ge l`, a scalar or a tree with the structure of `tree`.

    Returns:
        The projected tree, each leaf in its own dtype.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_box({'w': jnp.array([-2.0, 0.5, 3.0])}, -1.0, 1.0)
        {'w': Array([-1. ,  0.5,  1. ], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.2.4.
    """

    def clip(x, lo, hi):
        return jnp.minimum(jnp.maximum(x, jnp.asarray(lo).astype(x.dtype)), jnp.asarray(hi).astype(x.dtype))

    lower_scalar, upper_scalar = _is_scalar(lower), _is_scalar(upper)
    if lower_scalar and upper_scalar:
        return _map_leaves(lambda x: clip(x, lower, upper), tree)
    if lower_scalar:
        return _map_leaves(lambda x, hi: clip(x, lower, hi), tree, upper)
    if upper_scalar:
        return _map_leaves(lambda x, lo: clip(x, lo, upper), tree, lower)
    return _map_leaves(clip, tree, lower, upper)


def projection_hypercube(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the hypercube :math:`\{p : 0 \le p \le \text{scale}\}`: ``projection_box(tree, 0, scale)``.

    Args:
        tree: the tree to project.
        scale: the side :math:`s \ge 0`, a scalar or a tree with the structure of `tree` (default 1).

    Returns:
        The projected tree.

    Raises:
        ValueError: for a concrete negative `scale`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_hypercube({'w': jnp.array([-2.0, 0.5, 3.0])})
        {'w': Array([0. , 0.5, 1. ], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.2.4.
    """
    _check_scale("scale", scale, "projection_hypercube")
    return projection_box(tree, 0, scale)


def projection_non_negative(tree: Any) -> Any:
    r"""Projection onto the non-negative orthant: :math:`p = \max(x, 0)` element by element.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_non_negative({'w': jnp.array([-2.0, 0.5])})
        {'w': Array([0. , 0.5], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.2.4.
    """
    return _map_leaves(lambda x: jnp.maximum(x, 0), tree)


def projection_linf_ball(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the :math:`\ell_\infty` ball :math:`\{p : \|p\|_\infty \le s\}`: clipping to :math:`[-s, s]`.

    Args:
        tree: the tree to project.
        scale: the radius :math:`s \ge 0` (a scalar, or a tree of per-leaf radii).

    Returns:
        The projected tree.

    Raises:
        ValueError: for a concrete negative `scale`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_linf_ball({'w': jnp.array([-2.0, 0.5])})
        {'w': Array([-1. ,  0.5], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.2.4.
    """
    _check_scale("scale", scale, "projection_linf_ball")
    lower = -jnp.asarray(scale) if _is_scalar(scale) else jax.tree_util.tree_map(lambda s: -jnp.asarray(s), scale)
    return projection_box(tree, lower, scale)


# --------------------------------------------------------------------------- norm balls, spheres, simplex


def projection_simplex(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the simplex :math:`\{p \ge 0 : \sum_i p_i = s\}` (the whole tree as one vector).

    .. math::
        p = \max(x - \theta, 0), \quad \theta \text{ such that } \textstyle\sum_i \max(x_i - \theta, 0) = s,

    found by sorting (Duchi et al. 2008, Figure 1).

    Args:
        tree: the tree :math:`x` to project (real leaves).
        scale: the sum :math:`s \ge 0` (default 1: the probability simplex).

    Returns:
        The projected tree, each leaf in its own dtype.

    Raises:
        ValueError: for a concrete negative `scale`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_simplex({'w': jnp.array([2.5, 3.0]), 'b': jnp.array([0.5])})
        {'b': Array([0.], dtype=float32), 'w': Array([0.25, 0.75], dtype=float32)}

    References:
        Duchi, Shalev-Shwartz, Singer & Chandra, "Efficient Projections onto the
        l1-Ball for Learning in High Dimensions", ICML 2008, Figure 1.
    """
    _check_scale("scale", scale, "projection_simplex")
    flat, unflatten = _flatten(tree)
    if flat.size == 0:
        return tree
    return unflatten(_simplex(flat, scale))


def projection_l1_sphere(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the :math:`\ell_1` sphere :math:`\{p : \|p\|_1 = s\}`.

    .. math::
        p = \operatorname{sign}(x) \odot \Pi_{\Delta_s}(|x|)

    with :math:`\Pi_{\Delta_s}` the simplex projection: the nearest point keeps
    the signs of :math:`x` (a zero element takes sign +1, so the result is on
    the sphere even for :math:`x = 0`). Complex elements keep their phase.

    Args:
        tree: the tree :math:`x` to project.
        scale: the radius :math:`s \ge 0` (default 1).

    Returns:
        The projected tree.

    Raises:
        ValueError: for a concrete negative `scale`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_l1_sphere({'w': jnp.array([0.1, -0.2])})
        {'w': Array([ 0.45, -0.55], dtype=float32)}

    References:
        Duchi et al., ICML 2008, Section 4 (the l1 ball through the simplex).
    """
    _check_scale("scale", scale, "projection_l1_sphere")
    flat, unflatten = _flatten(tree)
    if flat.size == 0:
        return tree
    return unflatten(_l1_sphere_vec(flat, scale))


def projection_l1_ball(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the :math:`\ell_1` ball :math:`\{p : \|p\|_1 \le s\}`.

    .. math::
        p = \begin{cases} x & \|x\|_1 \le s \\
        \operatorname{sign}(x) \odot \Pi_{\Delta_s}(|x|) & \text{otherwise}\end{cases}

    (soft thresholding :math:`\max(|x_i| - \theta, 0)` with the threshold of
    the simplex projection). Complex elements keep their phase.

    Args:
        tree: the tree :math:`x` to project.
        scale: the radius :math:`s \ge 0` (default 1).

    Returns:
        The projected tree.

    Raises:
        ValueError: for a concrete negative `scale`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_l1_ball({'w': jnp.array([2.5, -3.0]), 'b': jnp.array([0.5])})
        {'b': Array([0.], dtype=float32), 'w': Array([ 0.25, -0.75], dtype=float32)}

    References:
        Duchi et al., ICML 2008, Section 4; Parikh & Boyd 2014, Section 6.5.2.
    """
    _check_scale("scale", scale, "projection_l1_ball")
    flat, unflatten = _flatten(tree)
    if flat.size == 0:
        return tree
    inside = jnp.sum(jnp.abs(flat)) <= _tree.hp(scale, _tree.real_dtype(flat.dtype))
    return unflatten(jnp.where(inside, flat, _l1_sphere_vec(flat, scale)))


def _l2_norm(tree: Any) -> tuple[jax.Array, int]:
    leaves, _ = _leaves(tree)
    return _tree.global_norm(leaves), sum(int(np.size(x)) for x in leaves)


def projection_l2_ball(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the Euclidean ball :math:`\{p : \|p\|_2 \le s\}`.

    .. math::
        p = x \cdot \min\!\Big(1, \frac{s}{\|x\|_2}\Big)

    Args:
        tree: the tree :math:`x` to project.
        scale: the radius :math:`s \ge 0` (default 1).

    Returns:
        The projected tree.

    Raises:
        ValueError: for a concrete negative `scale`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_l2_ball({'w': jnp.array([3.0, -4.0])})
        {'w': Array([ 0.6, -0.8], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.5.1.
    """
    _check_scale("scale", scale, "projection_l2_ball")
    n, _ = _l2_norm(tree)
    s = _tree.hp(scale, n.dtype)
    factor = jnp.where(n > s, s / jnp.where(n > 0, n, 1), 1)
    return _map_leaves(lambda x: x * factor.astype(x.dtype), tree)


def projection_l2_sphere(tree: Any, scale: Any = 1) -> Any:
    r"""Projection onto the Euclidean sphere :math:`\{p : \|p\|_2 = s\}`: :math:`p = s\,x / \|x\|_2`.

    Every point of the sphere is nearest to :math:`x = 0`; this function then
    returns the point with all :math:`n` elements equal to :math:`s / \sqrt{n}`.

    Args:
        tree: the tree :math:`x` to project.
        scale: the radius :math:`s \ge 0` (default 1).

    Returns:
        The projected tree.

    Raises:
        ValueError: for a concrete negative `scale`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_l2_sphere({'w': jnp.array([0.3, -0.4])})
        {'w': Array([ 0.6, -0.8], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.5.1.
    """
    _check_scale("scale", scale, "projection_l2_sphere")
    n, size = _l2_norm(tree)
    s = _tree.hp(scale, n.dtype)
    factor = s / jnp.where(n > 0, n, 1)
    fill = s / np.sqrt(max(size, 1))
    return _map_leaves(
        lambda x: jnp.where(n > 0, x * factor.astype(x.dtype), fill.astype(x.dtype)), tree
    )


# --------------------------------------------------------------------------- affine sets


def projection_hyperplane(x: Any, a: Any, b: Any) -> Any:
    r"""Projection onto the hyperplane :math:`\{y : \langle a, y \rangle = b\}`.

    .. math::
        y = x - \frac{\langle a, x \rangle - b}{\|a\|_2^2}\, a

    Args:
        x: the tree to project.
        a: the normal, a tree with the structure and shapes of `x` (not all zero).
        b: the offset, a scalar.

    Returns:
        A tree with the structure of `x`, each leaf in its own dtype.

    Raises:
        TreeMismatchError: when `a` does not have the structure of `x`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_hyperplane({'w': jnp.array([1.0, 3.0])}, {'w': jnp.array([1.0, 1.0])}, 2.0)
        {'w': Array([0., 2.], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.2.2.
    """
    ax, aa, acc = _inner(x, a, "projection_hyperplane")
    coef = (ax - _tree.hp(b, acc)) / aa
    return _minus_multiple(x, coef, a)


def projection_halfspace(x: Any, a: Any, b: Any) -> Any:
    r"""Projection onto the halfspace :math:`\{y : \langle a, y \rangle \le b\}`.

    .. math::
        y = x - \frac{\max(\langle a, x \rangle - b,\ 0)}{\|a\|_2^2}\, a

    Args:
        x: the tree to project.
        a: the normal, a tree with the structure and shapes of `x`.
        b: the offset, a scalar.

    Returns:
        A tree with the structure of `x`, each leaf in its own dtype.

    Raises:
        TreeMismatchError: when `a` does not have the structure of `x`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_halfspace({'w': jnp.array([1.0, 3.0])}, {'w': jnp.array([1.0, 1.0])}, 2.0)
        {'w': Array([0., 2.], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.2.3.
    """
    ax, aa, acc = _inner(x, a, "projection_halfspace")
    excess = jnp.maximum(ax - _tree.hp(b, acc), 0)
    coef = jnp.where(excess > 0, excess / jnp.where(aa > 0, aa, 1), 0)
    return _minus_multiple(x, coef, a)


def projection_vector(x: Any, a: Any) -> Any:
    r"""Projection onto the line spanned by :math:`a`: :math:`\frac{\langle x, a \rangle}{\langle a, a \rangle}\, a`.

    For :math:`a = 0` the line is :math:`\{0\}` and the result is zero.

    Args:
        x: the tree to project.
        a: the direction, a tree with the structure and shapes of `x`.

    Returns:
        A tree with the structure of `x`, each leaf in `x`'s dtype.

    Raises:
        TreeMismatchError: when `a` does not have the structure of `x`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.projections.projection_vector({'w': jnp.array([1.0, 3.0])}, {'w': jnp.array([1.0, 1.0])})
        {'w': Array([2., 2.], dtype=float32)}

    References:
        Parikh & Boyd, "Proximal Algorithms", 2014, Section 6.2.2 (a line is an affine set).
    """
    ax, aa, _ = _inner(x, a, "projection_vector")
    coef = jnp.where(aa > 0, ax / jnp.where(aa > 0, aa, 1), 0)
    return _map_leaves(lambda xi, ai: coef.astype(xi.dtype) * jnp.asarray(ai).astype(xi.dtype), x, a)
