r"""Numerical helpers of optax's top level: norms, counters, power iteration, matrix roots, NNLS.

Norms here do not overflow where the true value is representable: a gradient of
``3e38`` in every coordinate has a float32 sum of squares of ``inf``; its norm is
then recomputed from a sum of squares scaled by a power of two, in a `lax.cond`
branch that runs only when a sum overflowed (`_parts_many`), so the finite path
reads each leaf once, as a plain norm does.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _tree

__all__ = [
    "global_norm",
    "matrix_inverse_pth_root",
    "multi_normal",
    "nnls",
    "power_iteration",
    "safe_increment",
    "safe_int32_increment",
    "safe_norm",
    "safe_root_mean_squares",
]


# --------------------------------------------------------------------------- overflow-safe sums of squares


def _scale_exponent(real: Any) -> int:
    """k such that summing ``(x * 2**-k)**2`` cannot overflow where ``x**2`` did."""
    return 600 if np.dtype(real) == np.float64 else 100


class NormParts(NamedTuple):
    """A norm as ``value * scale``: ``scale`` is 1, or ``2**k`` where the plain sum of squares overflowed.

    A clipping factor ``c / norm`` is formed as two factors (`clip_factors`), which
    stay normal numbers even where the norm exceeds the dtype's largest number.
    """

    value: jax.Array
    scale: jax.Array

    def norm(self) -> jax.Array:
        return self.value * self.scale

    def clip_factors(self, bound: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``(clipping, a, b)``: ``norm > bound``, and ``bound / norm = a * b`` where clipping (1, 1 elsewhere).

        ``a = bound / value`` and ``b = 1 / scale`` are each normal numbers where
        their product may not be (``1 / 4.2e38`` is subnormal in float32 and
        flushed to 0): apply them as ``(x * b) * a``.
        """
        clipping = self.exceeds(bound)
        a = jnp.where(clipping, bound / jnp.where(clipping, self.value, 1), 1)
        b = jnp.where(clipping, 1 / self.scale, 1)
        return clipping, a.astype(self.value.dtype), b.astype(self.value.dtype)

    def exceeds(self, c: jax.Array) -> jax.Array:
        """``norm > c``."""
        return self.value > c / self.scale


def _combine(plain: jax.Array, small: jax.Array, real: Any) -> NormParts:
    k = _scale_exponent(real)
    over = jnp.isinf(plain) & jnp.isfinite(small)
    value = jnp.sqrt(jnp.where(over, small, plain))
    scale = jnp.where(over, jnp.asarray(2.0**k, real), jnp.asarray(1.0, real))
    return NormParts(value, scale)


def _read_once(x: jax.Array) -> jax.Array:
    """`x`, behind an optimization barrier when it will be widened (see `_tree._sum_sq`)."""
    x = jnp.asarray(x)
    return jax.lax.optimization_barrier(x) if x.dtype != _tree.compute_dtype(x.dtype) else x


def _opaque_scale(x: jax.Array, dtype: Any, real: Any) -> jax.Array:
    """``2**-k`` (`_scale_exponent`) in `dtype`, as a value XLA cannot see (`x` is the leaf).

    Multiplied by a constant, ``(w c)(w c)`` is rewritten as ``(w w)(c c)``, which overflows
    and underflows again (and an optimization barrier around ``w c`` materializes a copy of
    the leaf). ``x``'s first entry times 0 is 0, or NaN for a non-finite ``x``, whose plain
    sum is not finite either and is kept as it is.
    """
    c = jnp.asarray(2.0 ** -_scale_exponent(real), real)
    if x.size:  # read from `x` itself, not from a widened copy (which would then be materialized)
        c = c * (1 + 0 * jnp.ravel(x)[0].real.astype(real))
    return c.astype(dtype)


def _sum_squares(x: jax.Array, axis: Any = None, keepdims: bool = False, scaled: bool = False) -> jax.Array:
    """``sum |x|^2`` (or ``sum |x 2^-k|^2`` when `scaled`) over `axis`, in `x`'s real compute dtype."""
    real = _tree.real_dtype(x.dtype)
    w = _tree.wide(_read_once(x))
    if scaled:
        w = w * _opaque_scale(x, w.dtype, real)
    return jnp.sum(_tree.abs_sq(w), axis=axis, keepdims=keepdims).astype(real)


# `_sum_squares` traced once per shape, dtype and axes (`_tree.leaf_rule`): for the per-leaf
# norms of trees of many leaves of few shapes. `axis` must be a tuple or None.
_leaf_sum_squares = _tree.leaf_rule(_sum_squares, static=("axis", "keepdims", "scaled"))


def _branch(pred: jax.Array, true_fn: Callable[[], Any], false_fn: Callable[[], Any]) -> Any:
    """``lax.cond`` under a trace; Python's ``if`` on a concrete `pred` (eager code).

    An eager ``lax.cond`` traces and compiles both branches on every call (about 0.25 s
    for a clip of a small tree, against 2 ms without it).
    """
    if isinstance(pred, jax.core.Tracer):
        return jax.lax.cond(pred, true_fn, false_fn)
    return true_fn() if bool(pred) else false_fn()


def _parts_many(plains: list, rescaled: Callable[[], list]) -> list:
    """`NormParts` from sums of squares `plains`; where any is infinite, from ``rescaled()`` as well.

    ``rescaled()`` returns the scaled sums of squares (same shapes). It runs in
    a `lax.cond` branch only when some plain sum overflowed, so the finite path
    reads the data once, as a plain norm does.
    """
    if not plains:
        return []
    reals = [p.dtype for p in plains]

    def finite():
        return [NormParts(jnp.sqrt(p), jnp.ones_like(p)) for p in plains]

    def overflowed():
        return [_combine(p, s, r) for p, s, r in zip(plains, rescaled(), reals)]

    anyinf = jnp.any(jnp.stack([jnp.any(jnp.isinf(p)) for p in plains]))
    return _branch(anyinf, overflowed, finite)


def _norm_parts(x: jax.Array, axis: Any = None, keepdims: bool = False) -> NormParts:
    """The L2 norm of `x` over `axis` as `NormParts`, in its real compute dtype."""
    (parts,) = _parts_many([_sum_squares(x, axis, keepdims)], lambda: [_sum_squares(x, axis, keepdims, True)])
    return parts


def _tree_norm_parts(tree: Any) -> NormParts:
    """The global L2 norm of every leaf of `tree` as `NormParts` (float32, float64 if a leaf is).

    The finite path is `_tree.global_norm`; the scaled sum runs only when it is infinite.
    """
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if x is not None]
    acc = _tree.accumulation_dtype(leaves)
    norm = _tree.global_norm(leaves).astype(acc)

    def rescaled():
        return [sum((_sum_squares(x, scaled=True).astype(acc) for x in leaves), jnp.zeros((), acc))]

    (parts,) = _parts_many([norm * norm], rescaled) if leaves else [NormParts(norm, jnp.ones_like(norm))]
    # The finite branch takes sqrt(norm**2): use `norm` itself there (no extra rounding).
    return NormParts(jnp.where(parts.scale == 1, norm, parts.value), parts.scale)


# --------------------------------------------------------------------------- norms


def global_norm(updates: Any) -> jax.Array:
    r"""The global L2 norm of a tree, :math:`\sqrt{\sum_{leaves} \sum_i |x_i|^2}`.

    Accumulated in at least float32 (float64 if any leaf is float64), like
    ``gx.clip_by_global_norm``'s norm. Where the plain sum of squares
    overflows but the norm does not (float32 leaves of ``3e38``), the norm is
    computed from a scaled sum, read in the same pass.

    Args:
        updates: a tree of arrays (``None`` leaves are skipped).

    Returns:
        A float32 scalar (float64 if any leaf is float64); 0 for an empty tree.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> float(gx.global_norm({'a': jnp.array([3.0]), 'b': jnp.array([4.0])}))
        5.0
        >>> round(float(gx.global_norm([jnp.array([3e38])])) / 1e38, 6)  # the sum of squares overflows
        3.0
    """
    return _tree_norm_parts(updates).norm()


def _homogeneous_scale(x: jax.Array, axis: Any) -> jax.Array:
    """A power of two bringing ``max |x|`` over `axis` near 1 (1 where that max is 0 or not finite).

    The exponent is clamped so that the scale and its inverse are normal numbers
    (a subnormal scale would be flushed to zero).
    """
    real = x.real.dtype
    m = jnp.max(jnp.abs(x), axis=axis, keepdims=True) if x.size else jnp.ones((1,) * x.ndim, real)
    ok = (m > 0) & jnp.isfinite(m)
    info = jnp.finfo(real)
    e = jnp.clip(jnp.floor(jnp.log2(jnp.where(ok, m, 1))), info.minexp, info.maxexp - 2)
    return jnp.where(ok, jnp.ldexp(jnp.ones_like(m, real), (-e).astype(jnp.int32)), 1).astype(real)


def _overflow_safe(x: jax.Array, value: jax.Array, norm_fn: Callable, axis: Any, keepdims: bool) -> jax.Array:
    """`value` (``norm_fn(x)``), recomputed on `x` scaled by a power of two where it overflowed.

    Norms are homogeneous: ``||x|| = ||s x|| / s``. The rescaled branch runs only
    when `value` is infinite for a finite `x` (a `lax.cond`), so the finite path
    costs one more comparison.
    """

    def rescaled():
        s = _homogeneous_scale(x, axis)
        out = norm_fn(jax.lax.optimization_barrier(x * s.astype(x.dtype)))  # no (x s)^2 -> x^2 s^2
        s_out = s if keepdims else jnp.squeeze(s, axis=_norm_axes(x.ndim, axis))
        return (out / s_out).astype(value.dtype)

    needed = jnp.any(jnp.isinf(value)) & jnp.all(jnp.isfinite(x))
    return _branch(needed, rescaled, lambda: value)


def _norm_axes(ndim: int, axis: Any) -> tuple:
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))


def _float_input(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.complexfloating)):
        x = x.astype(jnp.float32)
    return x


def safe_norm(x: Any, min_norm: Any, ord: Union[int, float, str, None] = None, axis: Any = None,
              keepdims: bool = False) -> jax.Array:
    r"""``max(jnp.linalg.norm(x, ord, axis, keepdims), min_norm)``, with a gradient of 0 below `min_norm`.

    .. math:: \operatorname{safe\_norm}(x) = \max(\|x\|, m)

    The gradient of ``jnp.maximum(jnp.linalg.norm(x), m)`` at :math:`x = 0` is NaN
    (the norm's branch is differentiated too); here it is 0. The norm is
    computed in at least float32 and returned in `x`'s dtype (float32 for
    integers); where it overflows for a finite `x`, it is recomputed on `x`
    scaled by a power of two.

    Args:
        x: an array.
        min_norm: the lower bound :math:`m \ge 0`.
        ord, axis, keepdims: as ``jnp.linalg.norm``.

    Returns:
        The bounded norm.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> float(gx.safe_norm(jnp.array([3.0, 4.0]), 1.0))
        5.0
        >>> jax.grad(lambda x: gx.safe_norm(x, 1.0))(jnp.zeros(2)).tolist()
        [0.0, 0.0]
    """
    x = _float_input(x)
    out_dtype = x.real.dtype
    w = _tree.wide(x)

    def norm_fn(y):
        return jnp.linalg.norm(y, ord=ord, axis=axis, keepdims=True)

    def guarded(y):
        return _overflow_safe(y, norm_fn(y), norm_fn, axis, True)

    norm = guarded(w)
    floor = _tree.hp(min_norm, norm.dtype)
    small = norm <= floor
    out = jnp.where(small, floor, guarded(jnp.where(small, jnp.ones_like(w), w)))
    if not keepdims:
        out = jnp.squeeze(out, axis=_norm_axes(w.ndim, axis))
    return out.astype(out_dtype)


def safe_root_mean_squares(x: Any, min_rms: Any) -> jax.Array:
    r"""``max(sqrt(mean(|x|^2)), min_rms)``, with a gradient of 0 below `min_rms`.

    .. math:: \max\Big(\sqrt{\tfrac1n \textstyle\sum_i |x_i|^2},\; m\Big)

    Computed in at least float32 and returned in `x`'s real dtype (float32 for
    integers); where the mean of squares overflows for a finite `x`, it is
    recomputed on `x` scaled by a power of two.

    Args:
        x: an array.
        min_rms: the lower bound :math:`m \ge 0`.

    Returns:
        A scalar.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> float(gx.safe_root_mean_squares(jnp.array([3.0, 4.0]), 1.0))  # sqrt(12.5)
        3.535533905029297
        >>> jax.grad(lambda x: gx.safe_root_mean_squares(x, 1.0))(jnp.zeros(2)).tolist()
        [0.0, 0.0]
    """
    x = _float_input(x)
    out_dtype = x.real.dtype
    w = _tree.wide(x)

    def rms_fn(y):
        return jnp.sqrt(jnp.mean(_tree.abs_sq(y)))

    def guarded(y):
        return _overflow_safe(y, rms_fn(y), rms_fn, None, False)

    rms = guarded(w)
    floor = _tree.hp(min_rms, rms.dtype)
    small = rms <= floor
    w_safe = jnp.where(small, jnp.ones_like(w), w)
    return jnp.where(small, floor, guarded(w_safe)).astype(out_dtype)


# --------------------------------------------------------------------------- counters


def safe_increment(count: Any) -> jax.Array:
    """``count + 1``, staying at the largest value of `count`'s dtype instead of wrapping around.

    Integer counters saturate at ``iinfo(dtype).max`` (int32: 2147483647),
    floating ones at ``finfo(dtype).max``.

    Args:
        count: an integer or floating scalar or array (a Python int is int32).

    Returns:
        The incremented counter, in `count`'s dtype.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> int(gx.safe_increment(jnp.asarray(1, jnp.int32)))
        2
        >>> int(gx.safe_increment(jnp.asarray(2147483647, jnp.int32)))
        2147483647
    """
    count = jnp.asarray(count)
    if jnp.issubdtype(count.dtype, jnp.integer):
        return _tree.safe_increment(count)
    max_value = jnp.finfo(count.dtype).max
    return jnp.where(count < max_value, count + 1, max_value).astype(count.dtype)


safe_int32_increment = safe_increment  # optax's older name, the same function


# --------------------------------------------------------------------------- power iteration


def _tree_vdot(a: Any, b: Any) -> jax.Array:
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def _tree_l2(a: Any) -> jax.Array:
    return _tree_norm_parts(a).norm()


def _tree_scale(a: Any, c: jax.Array) -> Any:
    return jax.tree_util.tree_map(lambda x: (x * c.astype(x.dtype)).astype(x.dtype), a)


def power_iteration(
    matrix: Any,
    *,
    v0: Any = None,
    num_iters: Any = 100,
    error_tolerance: Any = 1e-6,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
    key: Optional[jax.Array] = None,
) -> tuple[jax.Array, Any]:
    r"""The dominant eigenvalue of a diagonalizable matrix and its eigenvector, by power iteration.

    From :math:`v_1 = A v_0 / \|A v_0\|`, each iteration computes

    .. math::
        z_k = A v_k, \qquad \lambda_k = v_k^\top z_k, \qquad
        v_{k+1} = z_k / \|z_k\|

    and stops after `num_iters` iterations or when the relative residual
    :math:`\|z_k - \lambda_k v_k\| / |\lambda_k|` is at most `error_tolerance`.
    A zero product keeps the previous vector (the eigenvalue is then 0, where
    optax returns NaN).

    Args:
        matrix: a square ``(n, n)`` array, or a callable ``v -> A v`` on trees.
        v0: the starting vector (a tree shaped like the callable's input); by
            default uniform on :math:`[-1, 1]^n` drawn with `key`.
        num_iters: the largest number of iterations (``>= 0``).
        error_tolerance: the relative residual at which to stop.
        precision: the precision of ``matrix @ v``.
        key: the PRNG key of the default `v0` (``jax.random.PRNGKey(0)`` if None).

    Returns:
        ``(eigenvalue, eigenvector)``: :math:`\lambda_k` and :math:`v_{k+1}`
        (unit norm; a tree like `v0` for a callable).

    Raises:
        ValueError: `matrix` is a callable and `v0` is None.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> value, vector = gx.power_iteration(jnp.array([[2.0, 0.0], [0.0, 1.0]]), v0=jnp.ones(2))
        >>> round(float(value), 4), [round(float(v), 4) for v in vector]
        (2.0, [1.0, 0.0])

    References:
        Golub & Van Loan, "Matrix Computations", 4th ed., section 7.3.1 (the power method).
    """
    if callable(matrix):
        if v0 is None:
            raise ValueError("power_iteration: `v0` is needed when `matrix` is a callable.")
        mvp = matrix
    else:
        matrix = jnp.asarray(matrix)

        def mvp(v):
            return jnp.matmul(matrix, v, precision=precision)

        if v0 is None:
            key = jax.random.PRNGKey(0) if key is None else key
            v0 = jax.random.uniform(key, (matrix.shape[-1],), dtype=matrix.dtype, minval=-1.0, maxval=1.0)

    def normalized(z, fallback):
        n = _tree_l2(z)
        ok = n > 0
        inv = jnp.where(ok, 1 / jnp.where(ok, n, 1), 1)
        return jax.tree_util.tree_map(lambda a, b: jnp.where(ok, a * inv.astype(a.dtype), b), z, fallback)

    v_start = normalized(v0, v0)
    v1 = normalized(mvp(v_start), v_start)
    leaves = jax.tree_util.tree_leaves(v1)
    eig_dtype = jnp.result_type(*leaves)
    tol = jnp.asarray(error_tolerance).astype(_tree.real_dtype(eig_dtype))

    def cond(state):
        i, _, _, err = state
        return (i < num_iters) & (err > tol)

    def body(state):
        i, v, _, _ = state
        z = mvp(v)
        eig = _tree_vdot(v, z).astype(eig_dtype)
        residual = _tree_l2(jax.tree_util.tree_map(lambda a, b: a - eig.astype(a.dtype) * b, z, v))
        err = jnp.where(residual == 0, 0, residual / jnp.abs(eig)).astype(tol.dtype)
        return i + 1, normalized(z, v), eig, err

    init = (jnp.zeros((), jnp.int32), v1, jnp.zeros((), eig_dtype), jnp.asarray(jnp.inf, tol.dtype))
    _, v, eig, _ = jax.lax.while_loop(cond, body, init)
    return eig, v


# --------------------------------------------------------------------------- matrix inverse p-th root


def _frobenius(m: jax.Array) -> jax.Array:
    """The Frobenius norm, computed on `m` scaled by a power of two (no underflow of a ridge-sized matrix)."""
    s = _homogeneous_scale(m, None).reshape(())
    return jnp.linalg.norm(m * s) / s


def _matrix_power(m: jax.Array, p: int, precision: Any) -> jax.Array:
    """``m ** p`` for a static positive integer `p`, by repeated squaring."""
    result, base = None, m
    while p:
        if p & 1:
            result = base if result is None else jnp.matmul(result, base, precision=precision)
        p >>= 1
        if p:
            base = jnp.matmul(base, base, precision=precision)
    return result


def matrix_inverse_pth_root(
    matrix: Any,
    p: Any,
    num_iters: Any = 100,
    ridge_epsilon: Any = 1e-6,
    error_tolerance: Any = 1e-6,
    precision: jax.lax.Precision = jax.lax.Precision.HIGHEST,
) -> tuple[jax.Array, jax.Array]:
    r""":math:`(A + \epsilon \lambda_{max} I)^{-1/p}` of a symmetric PSD matrix, by coupled Newton iterations.

    With :math:`\tilde A = A + \epsilon \lambda_{max}(A) I` (:math:`\lambda_{max}`
    by `power_iteration`), :math:`z = (1 + p) / (2 \|\tilde A\|_F)`,
    :math:`M_0 = z \tilde A` and :math:`H_0 = z^{1/p} I`, each iteration
    (Higham 2008, eq. 7.18) computes

    .. math::
        T_k = \frac{(p + 1) I - M_k}{p}, \qquad
        M_{k+1} = T_k^p M_k, \qquad H_{k+1} = H_k T_k

    so that :math:`M_k \to I` and :math:`H_k \to \tilde A^{-1/p}`. It stops after
    `num_iters` iterations, when :math:`e_k = \max_{ij} |M_k - I|_{ij}` is at most
    `error_tolerance`, or when the error grows by more than 1.2x (then the
    previous :math:`H` is returned).

    Args:
        matrix: a symmetric positive semi-definite ``(n, n)`` matrix.
        p: the root, a positive Python integer.
        num_iters: the largest number of iterations.
        ridge_epsilon: :math:`\epsilon \ge 0`, relative to the largest eigenvalue.
        error_tolerance: the error :math:`e_k` at which to stop.
        precision: the precision of the matrix products.

    Returns:
        ``(root, error)``: :math:`H` in `matrix`'s dtype and the final :math:`e_k`.

    Raises:
        ValueError: `p` is not a positive integer.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> root, error = gx.matrix_inverse_pth_root(jnp.diag(jnp.array([4.0, 16.0])), 2, ridge_epsilon=0.0)
        >>> [round(float(v), 4) for v in jnp.diag(root)]
        [0.5, 0.25]

    References:
        Higham, "Functions of Matrices: Theory and Computation", SIAM 2008,
        section 7.3, eq. 7.18; Gupta, Koren & Singer, "Shampoo", ICML 2018.
    """
    p_int = int(p)
    if p_int != p or p_int < 1:
        raise ValueError(f"matrix_inverse_pth_root: `p` must be a positive integer; got p={p!r}.")
    matrix = jnp.asarray(matrix)
    dtype = _tree.compute_dtype(matrix.dtype)
    a = matrix.astype(dtype)
    n = a.shape[0]
    identity = jnp.eye(n, dtype=dtype)
    max_ev, _ = power_iteration(a, num_iters=100, error_tolerance=1e-6, precision=precision)
    ridge = _tree.hp(ridge_epsilon, dtype) * jnp.maximum(max_ev, 1e-16)
    alpha = jnp.asarray(-1.0 / p_int, dtype)

    if n == 1:
        return ((a + ridge) ** alpha).astype(matrix.dtype), jnp.zeros((), dtype)

    damped = a + ridge * identity
    z = (1 + p_int) / (2 * _frobenius(damped))
    m0 = damped * z
    h0 = identity * z ** (1.0 / p_int)
    tol = _tree.hp(error_tolerance, dtype)

    def cond(state):
        i, _, _, _, err, improving = state
        return (i < num_iters) & (err > tol) & improving

    def body(state):
        i, m, h, _, err, _ = state
        t = ((p_int + 1) * identity - m) / p_int
        m_new = jnp.matmul(_matrix_power(t, p_int, precision), m, precision=precision)
        h_new = jnp.matmul(h, t, precision=precision)
        err_new = jnp.max(jnp.abs(m_new - identity))
        return i + 1, m_new, h_new, h, err_new, err_new < 1.2 * err

    err0 = jnp.max(jnp.abs(m0 - identity))
    init = (jnp.zeros((), jnp.int32), m0, h0, h0, err0, jnp.asarray(True))
    _, m, h, h_prev, _, improving = jax.lax.while_loop(cond, body, init)
    root = jnp.where(improving, h, h_prev)
    error = jnp.max(jnp.abs(m - identity))
    return root.astype(matrix.dtype), error


# --------------------------------------------------------------------------- diagonal normal


class MultiNormalDiagFromLogScale:
    r"""A normal distribution with diagonal covariance :math:`\operatorname{diag}(e^{2 s})` and mean :math:`\mu`."""

    def __init__(self, loc: Any, log_scale: Any):
        self._mean = jnp.asarray(loc)
        self._log_scale = jnp.asarray(log_scale)
        self._scale = jnp.exp(self._log_scale)
        self._param_shape = jax.lax.broadcast_shapes(self._mean.shape, self._scale.shape)

    def sample(self, shape: Sequence[int], key: jax.Array) -> jax.Array:
        r""":math:`\mu + e^{s} \odot \xi`, :math:`\xi \sim N(0, I)` of shape ``shape + param_shape``."""
        noise = jax.random.normal(key, tuple(shape) + tuple(self._param_shape))
        dtype = jnp.promote_types(jnp.result_type(self._mean, self._scale), noise.dtype)
        return self._mean.astype(dtype) + self._scale.astype(dtype) * noise.astype(dtype)

    def log_prob(self, x: Any) -> jax.Array:
        r""":math:`\sum_i -\tfrac12 \log 2\pi - s_i - \tfrac12 ((x_i - \mu_i) / e^{s_i})^2` over the parameter axes."""
        x = jnp.asarray(x)
        dtype = jnp.promote_types(jnp.result_type(self._mean, self._scale), x.dtype)
        z = (x.astype(dtype) - self._mean.astype(dtype)) / self._scale.astype(dtype)
        per_coordinate = -0.5 * jnp.log(2 * jnp.pi).astype(dtype) - self._log_scale.astype(dtype) - 0.5 * z * z
        axes = tuple(range(per_coordinate.ndim - len(self._param_shape), per_coordinate.ndim))
        return jnp.sum(per_coordinate, axis=axes)

    @property
    def params(self) -> list:
        """``[loc, log_scale]``."""
        return [self._mean, self._log_scale]

    @property
    def log_scale(self) -> jax.Array:
        return self._log_scale


def multi_normal(loc: Any, log_scale: Any) -> MultiNormalDiagFromLogScale:
    r"""A normal distribution with mean `loc` and diagonal standard deviations ``exp(log_scale)``.

    .. math:: x \sim N\big(\mu, \operatorname{diag}(e^{2 s})\big)

    Args:
        loc: the mean :math:`\mu`.
        log_scale: :math:`s`, the log standard deviations.

    Returns:
        An object with ``sample(shape, key)``, ``log_prob(x)`` (summed over the
        parameter axes), ``params`` and ``log_scale``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> dist = gx.multi_normal(jnp.zeros(2), jnp.zeros(2))
        >>> round(float(dist.log_prob(jnp.zeros(2))), 5)  # -log(2 pi)
        -1.83788
    """
    return MultiNormalDiagFromLogScale(loc, log_scale)


# --------------------------------------------------------------------------- NNLS


def nnls(A: jax.Array, b: jax.Array, iters: int, unroll: Union[int, bool] = 1, L: Any = None) -> jax.Array:
    r"""Non-negative least squares, :math:`\min_{x \ge 0} \|A x - b\|_2`, by the fast projected gradient method.

    With :math:`L \ge \lambda_{max}(A^\top A)` (by default the bound
    :math:`\|A^\top A\|_F`, as optax), :math:`x_0 = y_1 = 0` and :math:`t_1 = 1`, each iteration
    :math:`k = 1, \dots, \text{iters}` computes (FISTA with projection)

    .. math::
        x_k = \max\big(0,\; y_k - \tfrac1L A^\top (A y_k - b)\big), \qquad
        t_{k+1} = \frac{1 + \sqrt{1 + 4 t_k^2}}{2}, \qquad
        y_{k+1} = x_k + \frac{t_k - 1}{t_{k+1}} (x_k - x_{k-1})

    and returns :math:`x_{\text{iters}}`. optax 0.2.8 starts at :math:`t_0 = 0`,
    which repeats its first iteration: ``gx.nnls(A, b, n)`` equals
    ``optax.nnls(A, b, n + 1)``.

    Args:
        A: a ``(M, N)`` matrix.
        b: a ``(M,)`` vector or ``(M, K)`` matrix.
        iters: the number of iterations (a Python int ``>= 0``).
        unroll: passed to ``lax.scan``.
        L: an upper bound on the largest eigenvalue of :math:`A^\top A` (optional).

    Returns:
        :math:`x`, of shape ``(N,)`` or ``(N, K)``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> x = gx.nnls(jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([5.0, 6.0]), 1000)
        >>> [round(float(v), 2) for v in x]
        [0.0, 1.7]

    References:
        Polyak, "Projected gradient method for non-negative least square",
        Contemporary Mathematics 636, 2015; Beck & Teboulle, "A fast iterative
        shrinkage-thresholding algorithm", SIAM J. Imaging Sci. 2009 (the momentum).
    """
    A = jnp.asarray(A)
    b = jnp.asarray(b)
    dtype = jnp.promote_types(_tree.compute_dtype(A.dtype), _tree.compute_dtype(b.dtype))
    A, b = A.astype(dtype), b.astype(dtype)
    gram = A.T @ A
    atb = A.T @ b
    lipschitz = _frobenius(gram) if L is None else jnp.asarray(L).astype(dtype)
    x0 = jnp.zeros((A.shape[1],) + b.shape[1:], dtype)

    def step(carry, _):
        x_prev, y, t = carry
        x = jnp.maximum(y - (gram @ y - atb) / lipschitz, 0)
        t_next = (1 + jnp.sqrt(1 + 4 * t * t)) / 2
        y_next = x + ((t - 1) / t_next) * (x - x_prev)
        return (x, y_next, t_next), None

    (x, _, _), _ = jax.lax.scan(step, (x0, x0, jnp.ones((), dtype)), None, length=iters, unroll=unroll)
    return x
