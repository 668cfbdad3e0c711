"""Small tree helpers shared by the transformations.

The dtype policy lives here (see BUILD.md, "Dtype policy"):

* arithmetic on a leaf happens in `compute_dtype(leaf.dtype)`: float32 for
  float16 / bfloat16 / float32, float64 for float64;
* hyperparameters are cast to that compute dtype (so a Python ``0.999`` is
  never rounded to bfloat16's ``1.0``);
* results are cast back: state leaves to the dtype `init` gave them; updates to
  `update_dtype`: the wider of the gradient's dtype and its state leaves' dtypes
  (float32 master params with bfloat16 gradients get float32 updates).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks


def is_none(x: Any) -> bool:
    return x is None


def arrays(tree: Any) -> Any:
    """`tree` with each leaf that is not a jax array (a Python number, a NumPy array) read
    by ``jnp.asarray`` (a Python float: a weakly typed float32 scalar); None leaves stay None.

    For code that reads ``.dtype``, ``.shape`` or ``.astype`` of params or gradients, which
    may be Python floats (``tx.init({'w': 1.0})``, as optax accepts).
    """
    leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=is_none)
    if all(isinstance(x, jax.Array) or x is None for x in leaves):
        return tree
    return treedef.unflatten([x if isinstance(x, jax.Array) or x is None else jnp.asarray(x) for x in leaves])


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
    """`x` cast to its compute dtype (a Python number: read as ``jnp.asarray`` reads it)."""
    if not isinstance(x, jax.Array):
        x = jnp.asarray(x)
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


def default_float() -> np.dtype:
    """jnp's default floating dtype (float32; float64 with ``jax_enable_x64``)."""
    return np.dtype(jax.dtypes.canonicalize_dtype(np.float64))


def _inexact(dtype: Any) -> bool:
    return dtype is not None and jnp.issubdtype(dtype, jnp.inexact)


@functools.lru_cache(maxsize=None)
def wider(a: Any, b: Any) -> np.dtype:
    """The smallest dtype holding both `a` and `b` (jnp's standard promotion, in any promotion mode).

    bfloat16 and float16 give float32; a real and a complex dtype give a complex one.
    """
    a, b = np.dtype(a), np.dtype(b)
    if a == b:
        return a
    with jax.numpy_dtype_promotion("standard"):
        return np.dtype(jnp.promote_types(a, b))


def update_dtype(g_dtype: Any, state_dtypes: Sequence[Any], squared: Optional[Sequence[bool]] = None) -> np.dtype:
    """The dtype of a stateful rule's update: the wider of the gradient's and its state's dtypes.

    `state_dtypes` are the dtypes of the leaf's state leaves (non-float ones, such
    as counters, are ignored); the result is ``jnp.promote_types`` over the float
    ones and `g_dtype`: float32 master params (float32 state) with bfloat16
    gradients give float32 updates, bfloat16 params and gradients keep bfloat16,
    and a stateless rule (no state dtypes) keeps the gradient's dtype.

    float16 is the one ambiguous case: squared-gradient accumulators are kept in
    float32 for float16 params by policy (`square_dtype`), so a float32 state leaf
    may belong to float16 params. For a float16 gradient a float32 state leaf
    therefore counts as float16 (float16 params with float16 gradients keep
    float16 updates), unless `squared` (one flag per state, as the rule knows
    them) says that it is not a squared accumulator: then it was created in the
    params' dtype, and float32 master params with float16 gradients get float32
    updates. An integer or boolean gradient takes the state's float dtype, or
    `default_float` without one (as ``jnp.asarray(g) * 0.5`` would).
    """
    g_dtype = np.dtype(g_dtype)
    out = g_dtype if _inexact(g_dtype) else None
    for k, d in enumerate(state_dtypes):
        if not _inexact(d):
            continue
        d = np.dtype(d)
        is_square = squared is None or k >= len(squared) or squared[k]
        if is_square and d == np.float32 and g_dtype == np.float16:
            d = g_dtype
        out = d if out is None else wider(out, d)
    return default_float() if out is None else out


def as_update(g: Any, olds: Sequence[Any] = (), squared: Optional[Sequence[bool]] = None) -> jax.Array:
    """The gradient leaf `g` as an array of `update_dtype` given the state leaves `olds`.

    One-element state leaves of a larger gradient (per-leaf norms and distances) do
    not count. A Python number becomes a weakly typed array (as ``jnp.asarray`` makes it);
    `g` itself is returned when it already has that dtype (no operation added).
    """
    if not isinstance(g, jax.Array):
        g = jnp.asarray(g)
    # A state leaf of one element next to a larger gradient is a per-leaf statistic (a norm,
    # a distance: NovoGrad, DoG), kept in float32 by design: not the params' dtype.
    size = np.size(g)
    dtype = update_dtype(
        g.dtype, [getattr(s, "dtype", None) if size <= 1 or getattr(s, "size", 2) > 1 else None for s in olds], squared
    )
    return g if g.dtype == dtype else g.astype(dtype)


def as_updates(updates: Any, *states: Any, squared: Optional[Sequence[bool]] = None) -> Any:
    """`as_update` over a tree: each gradient leaf given the leaves of `states` at its
    position (trees of the structure of `updates`); None leaves stay None.

    For rules that do not go through `apply_rule` (a global step size, a wrapper
    around a base optimizer): their updates then follow the dtype policy too.
    """
    leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=is_none)
    state_leaves = [treedef.flatten_up_to(s) for s in states]
    return treedef.unflatten(
        [None if g is None else as_update(g, [s[i] for s in state_leaves], squared) for i, g in enumerate(leaves)]
    )


def apply_rule(
    rule: Callable[..., Any],
    updates: Any,
    *states: Any,
    scalars: Optional[Callable[[np.dtype], Any]] = None,
    inputs: Sequence[Any] = (),
    squared: Optional[Sequence[bool]] = None,
    **static: Any,
) -> tuple[Any, ...]:
    """Runs ``rule(g, *state_leaves, *input_leaves, scalars(compute_dtype(g)), **static)`` leaf by leaf.

    The rule returns ``(update, *new_state_leaves)``; `apply_rule` returns the
    update tree followed by one tree per state. `states` and `inputs` (params, a
    Hessian diagonal: read, not returned) must have the structure of `updates`.
    A ``None`` update leaf (masked out) keeps its state leaves and the rule is not
    called. `scalars` is called once per compute dtype, not once per leaf.

    Each gradient leaf reaches the rule as `as_update` makes it: in `update_dtype`
    of its own and its state leaves' dtypes (`squared[k]`: whether ``states[k]`` is
    a squared-gradient accumulator; without it every state may be one, which
    matters only for float16 gradients, see `update_dtype`). A rule that returns its update in ``g.dtype``
    thus follows the dtype policy without further code: float32 state with
    bfloat16 gradients gives float32 updates (the cast of ``g`` is exact), and
    an integer gradient is made a float one. When every dtype agrees nothing is
    added to the program.
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
        g = as_update(g, olds, squared)
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


def inverse_root(r: jax.Array, eps: jax.Array, eps_in_sqrt: bool, x: Optional[jax.Array] = None) -> jax.Array:
    r""":math:`1 / \sqrt{r + \epsilon}` (`eps_in_sqrt`) or :math:`1 / (\sqrt{r} + \epsilon)`; with `x`, `x` times it.

    With `x`, a zero `x` gives 0 whatever the root (0/0 is 0, not NaN): with
    :math:`\epsilon = 0` allowed, all-zero gradients give :math:`r = 0`, and the
    update of a gradient that is 0 is 0. A nonzero `x` over a zero root stays inf.
    The select fuses into the rule's elementwise kernel.
    """
    if eps_in_sqrt:
        inv = jax.lax.rsqrt(r + eps)
    else:
        inv = 1 / (jnp.sqrt(r) + eps)
    if x is None:
        return inv
    return jnp.where(x == 0, jnp.zeros_like(x), x * inv)


def cast(x: Any, dtype: Any) -> Any:
    """`x.astype(dtype)`, and `x` itself when it already has that dtype."""
    dtype = np.dtype(dtype)
    if isinstance(x, jax.Array) and x.dtype == dtype:
        return x
    return jnp.asarray(x).astype(dtype)


# The init path: every params-shaped state leaf is made by one of the four helpers
# below, so they are where integer and boolean params are refused (`_checks.
# check_float_leaves`) and where a Python float param is read as a float32 scalar.
# The state leaves they make are strongly typed, so `update` (whose results are
# strongly typed) returns the same types and a jitted step does not retrace.


def _param_dtype(x: Any) -> np.dtype:
    """The dtype of a params leaf: its own, or float32 for a Python float (as jnp.asarray)."""
    return np.dtype(getattr(x, "dtype", None) or jnp.asarray(x).dtype)


def _state_like(make: Callable[[Any, np.dtype], Any], tree: Any, dtype: Any) -> Any:
    _checks.check_float_leaves(tree, fn="init")
    return jax.tree_util.tree_map(lambda x: make(x, dtype(_param_dtype(x))), tree)


def zeros_like(tree: Any, dtype: Optional[Any] = None) -> Any:
    """Zeros shaped (and sharded) like each leaf, in `dtype` or the leaf's dtype.

    Raises:
        TypeError: an integer or boolean leaf in `tree` (the params), naming its key path.
    """
    return _state_like(lambda x, d: jnp.zeros_like(x, dtype=d), tree, lambda p: dtype or p)


def full_like(tree: Any, value: Any, dtype: Optional[Any] = None) -> Any:
    """`value` broadcast like each leaf (keeping its sharding), in `dtype` or the leaf's dtype.

    Raises:
        TypeError: an integer or boolean leaf in `tree` (the params), naming its key path.
    """
    return _state_like(lambda x, d: jnp.full_like(x, value, dtype=d), tree, lambda p: dtype or p)


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
    return _state_like(lambda x, d: jnp.zeros_like(x, dtype=d), tree, lambda p: dtype or square_dtype(p))


def square_full_like(tree: Any, value: Any, dtype: Optional[Any] = None) -> Any:
    """`value` for a squared-gradient accumulator: `dtype`, or `square_dtype` of each leaf."""
    return _state_like(lambda x, d: jnp.full_like(x, value, dtype=d), tree, lambda p: dtype or square_dtype(p))


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
    leaves = [x for x in jax.tree_util.tree_leaves(arrays(tree)) if x is not None]
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
