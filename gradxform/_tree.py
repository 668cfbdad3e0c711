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

import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

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


def accumulation_dtype(tree: Any) -> np.dtype:
    """float64 if any leaf's real compute dtype is float64, else float32.

    The dtype in which a sum over every leaf of `tree` is accumulated (a norm, an
    inner product, a penalty, a line search's values), so that a float16 or
    bfloat16 tree is summed in float32 and a float64 one loses nothing.
    """
    for x in jax.tree_util.tree_leaves(tree):
        if real_dtype(jnp.asarray(x).dtype) == np.float64:
            return np.dtype(np.float64)
    return np.dtype(np.float32)


def wide(x: jax.Array) -> jax.Array:
    """`x` cast to its compute dtype."""
    return x.astype(compute_dtype(x.dtype))


def hp(value: Any, dtype: Any) -> jax.Array:
    """A hyperparameter (Python float, array or tracer) as an array of `dtype`."""
    return jnp.asarray(value).astype(dtype)


def abs_sq(x: jax.Array) -> jax.Array:
    """|x|^2 (real for complex x)."""
    if jnp.iscomplexobj(x):
        return x.real * x.real + x.imag * x.imag
    return x * x


def per_dtype(make: Callable[[np.dtype], Any]) -> Callable[[np.dtype], Any]:
    """`make(dtype)` memoized: a transformation's scalars built once per compute dtype, not once per leaf."""
    cache: dict = {}

    def get(dtype):
        if dtype not in cache:
            cache[dtype] = make(dtype)
        return cache[dtype]

    return get


# --------------------------------------------------------------------------- per-leaf rules
#
# A transformation's arithmetic on one leaf is a *rule*: a function of the gradient
# leaf, the matching state leaves and a NamedTuple of scalars, written with jnp's
# operators so that it reads like the docstring's formula. `leaf_rule` jits it, so
# that under an outer `jax.jit` it is traced once per distinct (shape, dtype) and
# every other leaf of that kind reuses the trace: 2,000 leaves of one shape trace
# one rule, not 2,000 copies of it (tracing and lowering took 6 s for plain jnp
# operators, 2 s with jitted rules; XLA inlines the calls, so the compiled step is
# the same). `apply_rule` maps a rule over the leaves.


def leaf_rule(fn: Optional[Callable] = None, *, static: Sequence[str] = ()) -> Any:
    """Decorator: a per-leaf rule, traced once per (shape, dtype) of its arguments.

    `static` names keyword arguments that select a variant of the rule
    (``nesterov``); they must be hashable.
    """
    if fn is None:
        return lambda f: leaf_rule(f, static=static)
    return jax.jit(fn, static_argnames=tuple(static))


def apply_rule(
    rule: Callable[..., Any],
    updates: Any,
    *states: Any,
    scalars: Optional[Callable[[np.dtype], Any]] = None,
    inputs: Sequence[Any] = (),
    **static: Any,
) -> tuple[Any, ...]:
    """Runs ``rule(g, *state_leaves, *input_leaves, scalars(compute_dtype(g)), **static)`` leaf by leaf.

    The rule returns ``(update, *new_state_leaves)``; `apply_rule` returns the
    update tree followed by one tree per state. `states` and `inputs` (params, a
    Hessian diagonal: read, not returned) must have the structure of `updates`.
    A ``None`` update leaf (masked out) keeps its state leaves and the rule is not
    called. `scalars` is called once per compute dtype, not once per leaf.
    """
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    state_leaves = [treedef.flatten_up_to(s) for s in states]
    input_leaves = [treedef.flatten_up_to(x) for x in inputs]
    by_dtype = per_dtype(scalars) if scalars is not None else None
    outs = []
    for i, g in enumerate(leaves):
        olds = [s[i] for s in state_leaves]
        if g is None:
            outs.append((None, *olds))
            continue
        args = [g, *olds, *(x[i] for x in input_leaves)]
        if by_dtype is not None:
            args.append(by_dtype(compute_dtype(g.dtype)))
        outs.append(rule(*args, **static))
    n_out = 1 + len(states)
    return tuple(treedef.unflatten([out[k] for out in outs]) for k in range(n_out))


@leaf_rule
def _scale_rule(g: jax.Array, factor: jax.Array) -> jax.Array:
    return ((g.astype(factor.dtype) * factor).astype(g.dtype),)


def scale_tree(updates: Any, factor: Any) -> Any:
    """Every leaf times the scalar `factor`, multiplied in `compute_dtype`, kept in the leaf's dtype."""
    (scaled,) = apply_rule(_scale_rule, updates, scalars=lambda dtype: hp(factor, dtype))
    return scaled


class Decay(NamedTuple):
    """A decay rate :math:`\\beta` and its complement :math:`1 - \\beta`, as arrays of one dtype."""

    rate: jax.Array
    complement: jax.Array


def _python_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def decay(beta: Any, dtype: Any) -> Decay:
    """`beta` and ``1 - beta`` in `dtype`: the one place a decay's complement is formed.

    For a Python number the complement is formed in double precision and rounded
    once: ``1 - f32(0.999)`` is 1.3e-5 relatively off 0.001, ``f32(1 - 0.999)`` is
    exact to float32. An array (a traced or injected rate) is already rounded, and
    ``1 - beta`` is then exact in its own dtype.
    """
    rate = hp(beta, dtype)
    if _python_number(beta):
        return Decay(rate, hp(1.0 - float(beta), dtype))
    return Decay(rate, 1 - rate)


def update_moment(x: jax.Array, moment: jax.Array, beta: Decay) -> jax.Array:
    """:math:`(1 - \\beta)\\,x + \\beta\\,m`: an exponential moving average of `x`, in `x`'s dtype."""
    return beta.complement * x + beta.rate * moment.astype(x.dtype)


class MomentScalars(NamedTuple):
    """The scalars of a rule with bias-corrected first and second moments (Adam, AdaBelief, AdaHessian)."""

    b1: Decay
    b2: Decay
    bc1: jax.Array  # 1 - b1^t
    bc2: jax.Array  # 1 - b2^t
    bc1_next: Optional[jax.Array]  # 1 - b1^(t+1), for Nesterov's look-ahead (None otherwise)
    eps: jax.Array
    eps_root: jax.Array


def moment_scalars(
    b1: Any, b2: Any, eps: Any, eps_root: Any, count: jax.Array, dtype: Any, nesterov: bool = False
) -> MomentScalars:
    """`MomentScalars` in `dtype` at step `count` (already incremented)."""
    return MomentScalars(
        b1=decay(b1, dtype),
        b2=decay(b2, dtype),
        bc1=bias_correction(b1, count, dtype),
        bc2=bias_correction(b2, count, dtype),
        bc1_next=bias_correction(b1, safe_increment(count), dtype) if nesterov else None,
        eps=hp(eps, dtype),
        eps_root=hp(eps_root, dtype),
    )


def debiased_first_moment(m: jax.Array, g: jax.Array, s: MomentScalars, nesterov: bool) -> jax.Array:
    r""":math:`\hat m_t = m_t / (1 - \beta_1^t)`, or Nesterov's (NAdam's) look-ahead.

    .. math::
        \hat m_t = \frac{\beta_1 m_t}{1 - \beta_1^{t+1}} + \frac{(1 - \beta_1) g_t}{1 - \beta_1^t}
    """
    if nesterov:
        return s.b1.rate * m / s.bc1_next + s.b1.complement * g / s.bc1
    return m / s.bc1


def inverse_root(r: jax.Array, eps: jax.Array, eps_in_sqrt: bool) -> jax.Array:
    r""":math:`1 / \sqrt{r + \epsilon}` (`eps_in_sqrt`) or :math:`1 / (\sqrt{r} + \epsilon)`."""
    if eps_in_sqrt:
        return jax.lax.rsqrt(r + eps)
    return 1 / (jnp.sqrt(r) + eps)


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


def bias_correction(beta: Any, count: jax.Array, dtype: Any = np.float32) -> jax.Array:
    """:math:`1 - \\beta^t` in `dtype`, with :math:`t` the int32 `count` (at least 1).

    Computed as :math:`-\\mathrm{expm1}(t \\log\\beta)`: accurate to a few ulps for
    every :math:`t`, where ``1 - f32(beta)**t`` loses up to 1.3e-5 relatively at
    :math:`\\beta = 0.999, t = 1`. For a Python number the logarithm is taken in
    double precision; for an array (traced or injected) it is ``log1p(beta - 1)``,
    whose ``beta - 1`` is exact in float32 for :math:`\\beta \\in [0.5, 1]`.
    :math:`\\beta = 0` gives 1.
    """
    real = real_dtype(dtype)
    t = count.astype(real)
    if _python_number(beta):
        if beta == 0:
            return jnp.ones_like(t).astype(dtype)
        log_beta = hp(math.log(float(beta)), real)
    else:
        log_beta = jnp.log1p(hp(beta, real) - 1)
    return (-jnp.expm1(t * log_beta)).astype(dtype)


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
    """Each leaf of `tree` cast to the dtype of the matching leaf of `like` (strongly typed).

    `like` may hold Python numbers (read as ``jnp.asarray``); a ``None`` in either
    tree keeps the leaf of `tree` as it is (masked updates, an inner state's empty
    slots). The one helper for "cast a new state like the old one".
    """
    return jax.tree_util.tree_map(
        lambda x, y: x if x is None or y is None else jnp.asarray(x).astype(jnp.asarray(y).dtype),
        tree,
        like,
        is_leaf=is_none,
    )


def global_norm(tree: Any) -> jax.Array:
    """sqrt(sum of |x|^2 over every leaf), accumulated in at least float32.

    Returns a float32 scalar (float64 if any leaf is float64).
    """
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if x is not None]
    if not leaves:
        return jnp.zeros((), jnp.float32)
    acc_dtype = accumulation_dtype(leaves)
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
