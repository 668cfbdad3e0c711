"""Accumulating gradients: `apply_every`, `skip_large_updates` (for `MultiSteps`) and `microbatch`."""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformationExtraArgs

__all__ = [
    "AccumulationType",
    "Accumulator",
    "ApplyEvery",
    "ShouldSkipUpdateFunction",
    "apply_every",
    "microbatch",
    "skip_large_updates",
]


# ------------------------------------------------------------------------- apply_every


class ApplyEvery(NamedTuple):
    count: jax.Array  # shape (), int32: steps since the last emission, in [0, k)
    grad_acc: Any  # like params (params' dtype): the sum of the gradients since the last emission


class _EveryScalars(NamedTuple):
    keep: jax.Array  # 1 if the accumulator carries over, 0 at the first step of a window
    emit: jax.Array  # 1 at the last step of a window, else 0


@_tree.leaf_rule
def _apply_every_rule(g, acc, s: _EveryScalars):
    cdt = s.keep.dtype
    total = s.keep * acc.astype(cdt) + g.astype(cdt)
    return (s.emit * total).astype(g.dtype), total.astype(acc.dtype)


@_hyper.declare(k=_hyper.integer(1, draw=(1, 4), source="validator"))
def apply_every(k: int = 1) -> GradientTransformationExtraArgs:
    r"""Sums the gradients over windows of ``k`` steps and emits the sum at the last step of each.

    .. math::
        a_t = \begin{cases} g_t & (t - 1) \bmod k = 0 \\ a_{t-1} + g_t & \text{otherwise} \end{cases},
        \qquad u_t = \begin{cases} a_t & t \bmod k = 0 \\ 0 & \text{otherwise} \end{cases}

    Unlike `MultiSteps`, the transformations before it in a chain still update
    their state at every step (so two half batches are not one full batch for
    a stateful optimizer), and the sum is not averaged.

    Args:
        k: the window length, an integer >= 1 (1 passes every gradient through).

    Returns:
        A `GradientTransformationExtraArgs` with state `ApplyEvery`; the
        accumulator has the params' dtype (the sum is formed in at least float32).

    Raises:
        ValueError: ``k < 1``.
        TypeError: at update, a state of another type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.apply_every(2)
        >>> state = tx.init(jnp.zeros(1))
        >>> u1, state = tx.update(jnp.array([1.0]), state)
        >>> u2, state = tx.update(jnp.array([3.0]), state)
        >>> u1.tolist(), u2.tolist()  # zeros, then 1 + 3
        ([0.0], [4.0])

    References:
        optax.apply_every (the state's fields).
    """
    fn = "apply_every"

    def init_fn(params):
        return ApplyEvery(count=jnp.zeros([], jnp.int32), grad_acc=_tree.zeros_like(params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ApplyEvery, updates, "grad_acc")
        c = state.count % k

        def scalars(dtype):
            return _EveryScalars(keep=(c != 0).astype(dtype), emit=(c == k - 1).astype(dtype))

        new_updates, grad_acc = _tree.apply_rule(_apply_every_rule, updates, state.grad_acc, scalars=scalars)
        count = (_tree.safe_increment(state.count) % k).astype(jnp.int32)
        return new_updates, ApplyEvery(count=count, grad_acc=grad_acc)

    return GradientTransformationExtraArgs(init_fn, update_fn)


# ------------------------------------------------------------- MultiSteps' skip functions


class ShouldSkipUpdateFunction(Protocol):
    """The type of `MultiSteps`' ``should_skip_update_fn``.

    ``(updates, gradient_step, params) -> (should_skip, skip_state)``: a bool
    scalar (True rejects the mini-step: nothing but ``skip_state`` changes) and
    any tree, stored in ``MultiStepsState.skip_state`` (its structure and dtypes
    must not depend on the values).
    """

    def __call__(self, updates: Any, gradient_step: jax.Array, params: Any | None) -> tuple[jax.Array, Any]: ...


def skip_large_updates(
    updates: Any, gradient_step: jax.Array, params: Any | None, max_squared_norm: Any
) -> tuple[jax.Array, dict]:
    r"""A `ShouldSkipUpdateFunction` rejecting mini-steps whose squared global norm is too large.

    .. math:: \text{skip} = \lnot\Big(\sum_i |g_i|^2 < \text{max\_squared\_norm}\Big)

    (so a NaN norm is skipped too). Bind ``max_squared_norm`` with
    ``functools.partial`` to pass it as ``MultiSteps(should_skip_update_fn=...)``.

    Args:
        updates: the mini-step's gradients.
        gradient_step: unused (the `ShouldSkipUpdateFunction` signature).
        params: unused.
        max_squared_norm: the largest accepted :math:`\|g\|_2^2` (exclusive).

    Returns:
        ``(should_skip, {'should_skip': bool, 'norm_squared': float32 scalar})``;
        the squared norm is accumulated in at least float32.

    Examples:
        >>> import functools, jax.numpy as jnp, gradxform as gx
        >>> skip, info = gx.skip_large_updates(jnp.array([3.0, 4.0]), 0, None, max_squared_norm=20.0)
        >>> bool(skip), float(info['norm_squared'])
        (True, 25.0)
        >>> opt = gx.MultiSteps(gx.sgd(0.1), 2, should_skip_update_fn=functools.partial(
        ...     gx.skip_large_updates, max_squared_norm=20.0))
    """
    del gradient_step, params
    leaves = [x for x in jax.tree_util.tree_leaves(updates) if x is not None]
    acc = _tree.accumulation_dtype(leaves) if leaves else np.dtype(np.float32)
    norm_sq = sum((jnp.sum(_tree.abs_sq(jnp.asarray(x).astype(acc))) for x in leaves), jnp.zeros([], acc))
    should_skip = jnp.logical_not(norm_sq < jnp.asarray(max_squared_norm).astype(acc))
    return should_skip, {"should_skip": should_skip, "norm_squared": norm_sq}


# ---------------------------------------------------------------------------- microbatch


@dataclasses.dataclass(frozen=True)
class Accumulator:
    """How `microbatch` combines the microbatches' results (optax.microbatching's type).

    The loop it describes: ``carry = init(shape_of_one_result)``, then
    ``carry = update(carry, result_i, i)`` for each microbatch, and
    ``finalize(carry)``; ``aggregate(values)`` reduces a stacked batch axis.
    """

    init: Callable[[Any], Any]
    update: Callable[[Any, Any, Any], Any]
    finalize: Callable[[Any], Any]
    aggregate: Callable[[Any], Any]


class AccumulationType(enum.Enum):
    """How `microbatch` combines the microbatches' results, when the count is known only at call time."""

    MEAN = enum.auto()  # the mean over the microbatches (floating results only)
    SUM = enum.auto()  # the sum over the microbatches
    RUNNING_MEAN = enum.auto()  # the mean over the microbatches actually run (num_real_microbatches)
    CONCAT = enum.auto()  # the results concatenated along axis 0, in the batch's order


def _carry_dtype(dtype: Any) -> np.dtype:
    """Sums of floats are carried in at least float32; integers and bools in their own dtype."""
    dtype = np.dtype(dtype)
    return _tree.compute_dtype(dtype) if jnp.issubdtype(dtype, jnp.inexact) else dtype


class _Wide(NamedTuple):
    """A built-in accumulator's carry: the running value in `_carry_dtype`, and a scalar in the result's dtype."""

    value: jax.Array
    like: jax.Array


def _is_wide(x: Any) -> bool:
    return isinstance(x, _Wide)


def _leafwise(init, update, finalize, aggregate) -> Accumulator:
    """An Accumulator over trees from one over arrays (whose carry may be a `_Wide`)."""
    return Accumulator(
        init=lambda value: jax.tree_util.tree_map(init, value),
        update=lambda carry, value, i: jax.tree_util.tree_map(lambda v, c: update(c, v, i), value, carry),
        finalize=lambda carry: jax.tree_util.tree_map(finalize, carry, is_leaf=_is_wide),
        aggregate=lambda values: jax.tree_util.tree_map(aggregate, values),
    )


def _wide_zeros(sd: Any, kind: str | None = None) -> _Wide:
    if kind is not None and not jnp.issubdtype(sd.dtype, jnp.inexact):
        raise ValueError(f"microbatch: the {kind} accumulator needs floating-point results, got {sd.dtype}.")
    return _Wide(jnp.zeros(sd.shape, _carry_dtype(sd.dtype)), jnp.zeros([], sd.dtype))


def _add(carry: _Wide, value: Any, i: Any) -> _Wide:
    del i
    return _Wide(carry.value + jnp.asarray(value).astype(carry.value.dtype), carry.like)


def _sum_accumulator() -> Accumulator:
    return _leafwise(
        _wide_zeros, _add, lambda c: c.value.astype(c.like.dtype), functools.partial(jnp.sum, axis=0)
    )


def _mean_accumulator(num_microbatches: int) -> Accumulator:
    if num_microbatches <= 0:
        raise ValueError(f"microbatch: the number of microbatches must be positive, got {num_microbatches}.")
    return _leafwise(
        functools.partial(_wide_zeros, kind="MEAN"),
        _add,
        lambda c: (c.value / num_microbatches).astype(c.like.dtype),
        functools.partial(jnp.mean, axis=0),
    )


def _running_mean_accumulator() -> Accumulator:
    def update(carry, value, i):
        # m_{i+1} = m_i + (x_i - m_i) / (i + 1): the mean of the i + 1 results so far.
        m = carry.value
        n = (jnp.asarray(i) + 1).astype(m.dtype)
        return _Wide(m + (jnp.asarray(value).astype(m.dtype) - m) / n, carry.like)

    return _leafwise(
        functools.partial(_wide_zeros, kind="RUNNING_MEAN"),
        update,
        lambda c: c.value.astype(c.like.dtype),
        functools.partial(jnp.mean, axis=0),
    )


def _concat_accumulator(num_microbatches: int) -> Accumulator:
    if num_microbatches <= 0:
        raise ValueError(f"microbatch: the number of microbatches must be positive, got {num_microbatches}.")

    def init(sd):
        return jnp.zeros((num_microbatches, *sd.shape), sd.dtype)

    def update(carry, value, i):
        return carry.at[i].set(jnp.asarray(value).astype(carry.dtype))

    def finalize(carry):
        # Microbatch j holds rows j, j + n, j + 2n, ... (see _split): column-major order puts them back.
        return carry.reshape(-1, *carry.shape[2:], order="F")

    return _leafwise(init, update, finalize, lambda x: x)


def _canonical(accumulator: Any, num_microbatches: int) -> Accumulator:
    def one(acc):
        if isinstance(acc, Accumulator):
            return acc
        if acc is AccumulationType.SUM:
            return _sum_accumulator()
        if acc is AccumulationType.MEAN:
            return _mean_accumulator(num_microbatches)
        if acc is AccumulationType.RUNNING_MEAN:
            return _running_mean_accumulator()
        if acc is AccumulationType.CONCAT:
            return _concat_accumulator(num_microbatches)
        raise ValueError(f"microbatch: unknown accumulator {acc!r}; use an AccumulationType or an Accumulator.")

    accs = jax.tree_util.tree_map(one, accumulator, is_leaf=lambda x: isinstance(x, (Accumulator, AccumulationType)))
    is_acc = lambda x: isinstance(x, Accumulator)

    def over(method):
        def run(*trees):
            return jax.tree_util.tree_map(lambda a, *t: getattr(a, method)(*t), accs, *trees, is_leaf=is_acc)

        return run

    return Accumulator(
        init=over("init"),
        update=lambda carry, value, i: jax.tree_util.tree_map(
            lambda a, c, v: a.update(c, v, i), accs, carry, value, is_leaf=is_acc
        ),
        finalize=over("finalize"),
        aggregate=over("aggregate"),
    )


def _split(tree: Any, microbatch_size: int, axis: int) -> Any:
    """Each leaf's batch axis as (num_microbatches, microbatch_size), column-major (microbatch j: rows j, j+n, ...)."""

    def one(x):
        x = jnp.asarray(x)
        return x.reshape(x.shape[:axis] + (-1, microbatch_size) + x.shape[axis + 1 :], order="F")

    return jax.tree_util.tree_map(one, tree)


def microbatch(
    fun: Callable[..., Any],
    argnums: int | Sequence[int],
    microbatch_size: int | None,
    accumulator: Any = AccumulationType.SUM,
    *,
    argnames: str | Sequence[str] = (),
    in_axes: int | Sequence[int] = 0,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., Any]:
    r"""Evaluates `fun` on a batch one microbatch at a time and combines the results.

    .. math:: \text{SUM}: \sum_{j=0}^{n-1} f(x_j), \qquad \text{MEAN}: \frac1n \sum_j f(x_j), \qquad
              \text{CONCAT}: [f(x_0); \dots; f(x_{n-1})] \text{ in the batch's order}

    with :math:`n` = batch size / ``microbatch_size``. The loop is a
    ``lax.fori_loop``, so only one microbatch's intermediates are alive at a time
    (e.g. ``jax.grad`` of a loss summed over examples, for a batch too large for
    memory). Sums and means of floating results are accumulated in at least
    float32 and returned in the results' dtype.

    Args:
        fun: any function.
        argnums: the index (or indices) of the positional arguments with a batch axis.
        microbatch_size: rows per microbatch; must divide the batch size. ``None``
            returns `fun` itself.
        accumulator: an `AccumulationType`, an `Accumulator`, or a tree of them
            that is a prefix of `fun`'s output (one per output).
        argnames: the keyword arguments with a batch axis.
        in_axes: the batch axis of each of ``argnums + argnames`` (one int for all).
        num_real_microbatches: run only this many microbatches (a traced count
            lets variable batch sizes share one compilation).

    Returns:
        A function with `fun`'s arguments.

    Raises:
        ValueError: the batch arguments' batch sizes differ, or ``microbatch_size``
            does not divide them; a MEAN accumulator over non-floating results.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> fun = lambda x: (x + 1, jnp.sum(3 * x))
        >>> f = gx.microbatch(fun, argnums=0, microbatch_size=2,
        ...                   accumulator=(gx.AccumulationType.CONCAT, gx.AccumulationType.SUM))
        >>> out = f(jnp.array([1, 2, 3, 4]))
        >>> out[0].tolist(), int(out[1])
        ([2, 3, 4, 5], 30)

    References:
        optax.microbatch (the signature and the accumulation types).
    """
    if microbatch_size is None:
        return fun
    argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    argnames = (argnames,) if isinstance(argnames, str) else tuple(argnames)
    n_batch_args = len(argnums) + len(argnames)
    in_axes = (in_axes,) * n_batch_args if isinstance(in_axes, int) else tuple(in_axes)
    if len(in_axes) != n_batch_args:
        raise ValueError(
            f"microbatch: in_axes has {len(in_axes)} entries, but argnums + argnames name {n_batch_args} arguments."
        )
    if not isinstance(microbatch_size, (int, np.integer)) or microbatch_size < 1:
        raise ValueError(f"microbatch: `microbatch_size` must be a positive integer or None, got {microbatch_size!r}.")

    def microbatched(*args, **kwargs):
        batch = [args[i] for i in argnums] + [kwargs[name] for name in argnames]
        sizes = sorted(
            {int(jnp.shape(x)[ax]) for ax, tree in zip(in_axes, batch) for x in jax.tree_util.tree_leaves(tree)}
        )
        if len(sizes) > 1:
            raise ValueError(f"microbatch: the batch arguments' batch axes differ in size: {sizes}.")
        if not sizes:
            raise ValueError("microbatch: the batch arguments hold no arrays.")
        batch_size = sizes[0]
        if batch_size % microbatch_size:
            raise ValueError(f"microbatch: batch size {batch_size} is not divisible by microbatch_size={microbatch_size}.")
        n = batch_size // microbatch_size
        split_args = list(args)
        split_kwargs = dict(kwargs)
        for i, ax in zip(argnums, in_axes):
            split_args[i] = _split(args[i], microbatch_size, ax)
        for name, ax in zip(argnames, in_axes[len(argnums) :]):
            split_kwargs[name] = _split(kwargs[name], microbatch_size, ax)
        acc = _canonical(accumulator, n)

        def call(j):
            a, kw = list(split_args), dict(split_kwargs)
            for i, ax in zip(argnums, in_axes):
                a[i] = jax.tree_util.tree_map(lambda x, ax=ax: jnp.take(x, j, axis=ax), split_args[i])
            for name, ax in zip(argnames, in_axes[len(argnums) :]):
                kw[name] = jax.tree_util.tree_map(lambda x, ax=ax: jnp.take(x, j, axis=ax), split_kwargs[name])
            return fun(*a, **kw)

        carry = acc.init(jax.eval_shape(call, 0))
        steps = n if num_real_microbatches is None else num_real_microbatches
        carry = jax.lax.fori_loop(0, steps, lambda j, c: acc.update(c, call(j), j), carry)
        return acc.finalize(carry)

    return microbatched
