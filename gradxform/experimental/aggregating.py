r"""Aggregating per-example gradients, as ``optax.experimental.aggregating``.

A `GradientTransformation` maps the batch's gradient to an update. An
`Aggregator` has the same ``(init, update)`` pair but takes *per-example*
gradients, with batch axes (``per_elt_axis``) in front of each parameter's
shape, and returns one update of the parameter's shape::

    grads = jax.vmap(jax.grad(loss), in_axes=(None, 0))(params, batch)
    updates, state = aggregator.update(grads, state)

`process` chains a preprocessor (on per-example gradients: a clip), an
aggregator (a mean, possibly over several microbatches) and a postprocessor
(the optimizer), which runs only when the aggregator has a complete update.

Means over microbatches are incremental, :math:`\bar g_k = \bar g_{k-1} + (g_k -
\bar g_{k-1}) / k`, and the sum of squared deviations over microbatches of
:math:`B` examples uses Chan, Golub and LeVeque's pairwise update (a two-pass
mean and sum of squares within each microbatch), never a difference of sums
of squares.

References:
    Welford (1962), "Note on a method for calculating corrected sums of squares
    and products", Technometrics 4(3); Chan, Golub and LeVeque (1979), "Updating
    formulae and a pairwise algorithm for computing sample variances", Stanford
    CS report STAN-CS-79-773, eq. (2.1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import (
    EmptyState,
    GradientTransformation,
    GradientTransformationExtraArgs,
    TransformInitFn,
    identity,
)
from gradxform._combine import call_update, chain, check_transform

__all__ = [
    "AccumulateAvgUpdatesState",
    "AggregatedUpdates",
    "Aggregator",
    "AggregatorUpdateFn",
    "MaybeAxis",
    "PerElementMeanAndSumSqDiffGradsState",
    "PerElementMeanAndVarianceEMAState",
    "PerElementUpdates",
    "accumulate_avg_updates",
    "add_mean_variance_to_opt",
    "average_incrementally_updates",
    "average_per_element_updates",
    "get_batch_size_from_per_elt_updates",
    "get_per_element_mean_and_sum_sq_diff_grads",
    "get_unbiased_mean_and_variance_ema",
    "process",
    "track_per_element_mean_and_variance_with_ema",
]

# A pytree of arrays: each parameter's shape with batch axes at per_elt_axis.
PerElementUpdates = Any
# A pytree of arrays shaped like the params.
AggregatedUpdates = Any
# The batch axis (axes) of per-element updates, or None for updates already averaged.
MaybeAxis = int | Sequence[int] | None


class AggregatorUpdateFn(Protocol):
    """``update(per_elt_updates, state, params=None, **extra_args) -> (updates, state)``."""

    def __call__(
        self,
        per_elt_updates: PerElementUpdates,
        state: Any,
        params: Any = None,
        **extra_args: Any,
    ) -> tuple[AggregatedUpdates, Any]: ...


class Aggregator(NamedTuple):
    """A pure ``(init, update)`` pair whose ``update`` takes per-example gradients.

    ``init(params) -> state``; ``update(per_elt_updates, state, params=None,
    **extra_args) -> (updates, state)``, where each leaf of ``per_elt_updates``
    has batch axes besides the parameter's shape and ``updates`` has the
    parameter's shape. Not a `GradientTransformation` (``isinstance`` says so),
    so that one is never fed per-example gradients by mistake.
    """

    init: TransformInitFn
    update: AggregatorUpdateFn


# ---------------------------------------------------------------------------- helpers


def _steps(fn: str, accumulation_steps: Any) -> int:
    """`accumulation_steps` as an int (the declaration checked its range); rejects 2.5 and True."""
    k = accumulation_steps
    if isinstance(k, bool) or not (
        isinstance(k, (int, np.integer)) or (isinstance(k, float) and k.is_integer())
    ):
        raise ValueError(
            f"{fn}: `accumulation_steps` must be an integer >= 1, got {k!r}."
        )
    return int(k)


def _axes(per_elt_axis: Any, fn: str = "aggregating") -> tuple[int, ...]:
    if isinstance(per_elt_axis, (int, np.integer)) and not isinstance(
        per_elt_axis, bool
    ):
        return (int(per_elt_axis),)
    if (
        isinstance(per_elt_axis, Sequence)
        and per_elt_axis
        and all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool)
            for a in per_elt_axis
        )
    ):
        return tuple(int(a) for a in per_elt_axis)
    raise ValueError(
        f"{fn}: `per_elt_axis` must be an int or a non-empty sequence of ints, got {per_elt_axis!r}."
    )


def get_batch_size_from_per_elt_updates(
    per_elt_updates: PerElementUpdates, per_elt_axis: int | list[int]
) -> int:
    r"""The number of examples in per-element updates: the product of the sizes of `per_elt_axis`.

    .. math:: B = \prod_{a \in \text{per\_elt\_axis}} \text{shape}_a

    Args:
        per_elt_updates: a pytree of arrays with batch axes.
        per_elt_axis: the batch axis, or a sequence of them.

    Returns:
        ``B``, a Python int (the same for every leaf).

    Raises:
        ValueError: the leaves' batch sizes differ, or there are no leaves.

    Examples:
        >>> import jax.numpy as jnp
        >>> from gradxform.experimental import aggregating
        >>> aggregating.get_batch_size_from_per_elt_updates({'w': jnp.zeros((3, 5, 2))}, (0, 1))
        15
    """
    axes = _axes(per_elt_axis, "get_batch_size_from_per_elt_updates")
    leaves = [x for x in jax.tree_util.tree_leaves(per_elt_updates) if x is not None]
    if not leaves:
        raise ValueError(
            "get_batch_size_from_per_elt_updates: the per-element updates hold no arrays."
        )
    sizes = [math.prod(np.shape(x)[a] for a in axes) for x in leaves]
    if len(set(sizes)) > 1:
        raise ValueError(
            f"Per-element updates must have the same batch size. Got: {sizes}"
        )
    return sizes[0]


def _batch_mean(x: jax.Array, axes: tuple[int, ...]) -> jax.Array:
    """The mean over `axes`, accumulated in the compute dtype of `x`."""
    return jnp.mean(_tree.wide(jnp.asarray(x)), axis=axes)


def _batch_mean_and_ssd(
    x: jax.Array, axes: tuple[int, ...]
) -> tuple[jax.Array, jax.Array]:
    """Two passes: the mean over `axes`, then the sum of squared deviations from it (compute dtype)."""
    xw = _tree.wide(jnp.asarray(x))
    mean = jnp.mean(xw, axis=axes, keepdims=True)
    ssd = jnp.sum(_tree.abs_sq(xw - mean), axis=axes)
    return jnp.squeeze(mean, axis=axes), ssd


def _is_state_with(field: str):
    def test(x: Any) -> bool:
        return isinstance(x, tuple) and hasattr(x, "_fields") and field in x._fields

    return test


def _find(tree: Any, test) -> list:
    """The nodes of `tree` (NamedTuples, tuples, lists, dicts) for which `test` holds, outermost first."""
    found: list = []

    def walk(node):
        if test(node):
            found.append(node)
            return
        if isinstance(node, (tuple, list)):
            for child in node:
                walk(child)
        elif isinstance(node, dict):
            for child in node.values():
                walk(child)

    walk(tree)
    return found


def _without_axes(tree: Any, axes: tuple[int, ...]) -> Any:
    """Shape-only stand-ins for `tree`'s leaves with the batch `axes` removed (for the key-path check)."""

    def one(x):
        shape = np.shape(x)
        drop = {a % len(shape) for a in axes} if shape else set()
        return jax.ShapeDtypeStruct(
            tuple(d for i, d in enumerate(shape) if i not in drop), jnp.asarray(x).dtype
        )

    return jax.tree_util.tree_map(one, tree)


# ------------------------------------------------------------------- averaging aggregators


def average_per_element_updates(per_elt_axis: int | Sequence[int] = 0) -> Aggregator:
    r"""The mean of the per-element updates over their batch axes.

    .. math:: u = \frac1B \sum_{i=1}^B g_i

    Args:
        per_elt_axis: the batch axis (or axes) of every leaf.

    Returns:
        An `Aggregator` with state `EmptyState`; the mean is accumulated in at
        least float32 and returned in the updates' dtype.

    Raises:
        ValueError: `per_elt_axis` is not an int or a sequence of ints.

    Examples:
        >>> import jax.numpy as jnp
        >>> from gradxform.experimental import aggregating
        >>> agg = aggregating.average_per_element_updates()
        >>> u, _ = agg.update({'w': jnp.array([[1.0, 2.0], [3.0, 6.0]])}, agg.init({'w': jnp.zeros(2)}))
        >>> u['w'].tolist()
        [2.0, 4.0]
    """
    axes = _axes(per_elt_axis, "average_per_element_updates")

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(per_elt_updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "average_per_element_updates")
        return jax.tree_util.tree_map(
            lambda g: _batch_mean(g, axes).astype(g.dtype), per_elt_updates
        ), state

    return Aggregator(init_fn, update_fn)


class AccumulateAvgUpdatesState(NamedTuple):
    """The state of `accumulate_avg_updates`."""

    micro_step: (
        jax.Array
    )  # shape (), int32: microbatches averaged so far in this window, in [0, k)
    ready: jax.Array  # shape (), bool: the last update was a complete average
    avg_grad: (
        Any  # like params (params' dtype): the mean of this window's updates so far
    )


class _AvgScalars(NamedTuple):
    n: (
        jax.Array
    )  # the number of microbatches in the mean, this one included (compute dtype)
    ready: jax.Array  # bool: this microbatch completes the window


@_tree.leaf_rule
def _accumulate_avg_rule(g, avg, s: _AvgScalars):
    a = avg.astype(s.n.dtype)
    mean = a + (g.astype(s.n.dtype) - a) / s.n
    zero = jnp.zeros_like(mean)
    return jnp.where(s.ready, mean, zero).astype(g.dtype), jnp.where(
        s.ready, zero, mean
    ).astype(avg.dtype)


@_hyper.declare(accumulation_steps=_hyper.integer(1, draw=(1, 4), source="validator"))
def accumulate_avg_updates(accumulation_steps: int) -> GradientTransformationExtraArgs:
    r"""Averages the updates of ``accumulation_steps`` microbatches; emits the mean at the last one.

    .. math:: \bar g_j = \bar g_{j-1} + \frac{g_j - \bar g_{j-1}}{j}, \quad j = 1..k, \qquad
              u = \begin{cases} \bar g_k & \text{at the } k\text{-th microbatch} \\ 0 & \text{otherwise} \end{cases}

    (Welford's incremental mean, with :math:`\bar g_0 = 0`.) ``ready`` says
    whether the step's update is a complete average; `process` runs its
    postprocessor only then.

    Args:
        accumulation_steps: ``k``, the number of microbatches averaged, an integer >= 1.

    Returns:
        A `GradientTransformationExtraArgs` with state `AccumulateAvgUpdatesState`
        (for ``k = 1``, `identity()`, whose state is `EmptyState`, as in optax).

    Raises:
        ValueError: ``accumulation_steps < 1``.
        TypeError: at update, a state of another type.

    Examples:
        >>> import jax.numpy as jnp
        >>> from gradxform.experimental import aggregating
        >>> tx = aggregating.accumulate_avg_updates(2)
        >>> state = tx.init(jnp.zeros(1))
        >>> u1, state = tx.update(jnp.array([1.0]), state)
        >>> u2, state = tx.update(jnp.array([4.0]), state)
        >>> u1.tolist(), u2.tolist(), bool(state.ready)  # zeros, then (1 + 4) / 2
        ([0.0], [2.5], True)

    References:
        Welford (1962), Technometrics 4(3) (the incremental mean).
    """
    fn = "accumulate_avg_updates"
    k = _steps(fn, accumulation_steps)
    if k == 1:
        return (
            identity()
        )  # every update is a complete average of one (optax's state: EmptyState)

    def init_fn(params):
        return AccumulateAvgUpdatesState(
            micro_step=jnp.zeros([], jnp.int32),
            ready=jnp.zeros([], bool),
            avg_grad=_tree.zeros_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, AccumulateAvgUpdatesState, updates, "avg_grad")
        n = (
            state.micro_step + 1
        )  # microbatches in the mean, this one included (at most k)
        ready = n >= k

        def scalars(dtype):
            return _AvgScalars(n=n.astype(dtype), ready=ready)

        new_updates, avg_grad = _tree.apply_rule(
            _accumulate_avg_rule, updates, state.avg_grad, scalars=scalars
        )
        micro_step = jnp.where(ready, 0, n).astype(jnp.int32)
        return new_updates, AccumulateAvgUpdatesState(
            micro_step=micro_step, ready=ready, avg_grad=avg_grad
        )

    return GradientTransformationExtraArgs(init_fn, update_fn)


def _then(first: Aggregator, second: Any) -> Aggregator:
    """An aggregator followed by a transformation; the state is the pair of their states."""

    def init_fn(params):
        return (first.init(params), second.init(params))

    def update_fn(per_elt_updates, state, params=None, **extra_args):
        updates, s0 = call_update(first, per_elt_updates, state[0], params, extra_args)
        updates, s1 = call_update(second, updates, state[1], params, extra_args)
        return updates, (s0, s1)

    return Aggregator(init_fn, update_fn)


@_hyper.declare(accumulation_steps=_hyper.integer(1, draw=(1, 4), source="validator"))
def average_incrementally_updates(
    per_elt_axis: MaybeAxis, accumulation_steps: int
) -> Aggregator | GradientTransformation:
    r"""The mean over the batch axes (if any), averaged over ``accumulation_steps`` microbatches.

    .. math:: u = \frac1k \sum_{j=1}^k \frac1B \sum_{i=1}^B g_{j,i}

    emitted at every ``k``-th step (zeros otherwise; see `accumulate_avg_updates`).

    Args:
        per_elt_axis: the batch axis (or axes) of the per-element updates, or
            ``None`` for updates already averaged over the batch.
        accumulation_steps: ``k``, an integer >= 1.

    Returns:
        With ``per_elt_axis=None``: `identity()` (``k = 1``) or
        `accumulate_avg_updates(k)`. Otherwise an `Aggregator` whose state is
        ``(EmptyState(), inner_state)``, the inner transformation being the
        former.

    Raises:
        ValueError: ``accumulation_steps < 1``; a `per_elt_axis` that is not an
            int, a sequence of ints or None.

    Examples:
        >>> import jax.numpy as jnp
        >>> from gradxform.experimental import aggregating
        >>> agg = aggregating.average_incrementally_updates(per_elt_axis=0, accumulation_steps=2)
        >>> state = agg.init(jnp.zeros(1))
        >>> u1, state = agg.update(jnp.array([[1.0], [3.0]]), state)
        >>> u2, state = agg.update(jnp.array([[5.0], [7.0]]), state)
        >>> u1.tolist(), u2.tolist()  # zeros, then the mean of the four
        ([0.0], [4.0])
    """
    fn = "average_incrementally_updates"
    inner = accumulate_avg_updates(
        _steps(fn, accumulation_steps)
    )  # identity() for k = 1
    if per_elt_axis is None:
        return inner
    _axes(per_elt_axis, fn)
    return _then(average_per_element_updates(per_elt_axis), inner)


# ------------------------------------------------------------- mean and variance of gradients


class PerElementMeanAndSumSqDiffGradsState(NamedTuple):
    """The state of `get_per_element_mean_and_sum_sq_diff_grads` (``accumulation_steps > 1``)."""

    micro_step: (
        jax.Array
    )  # shape (), int32: microbatches combined so far in this window, in [0, k)
    ready: jax.Array  # shape (), bool: the last update was complete
    mean_grads: Any  # like params (params' dtype): the mean of this window's per-element gradients
    sum_sq_diff_grads: Any  # like params (float32 for f16/bf16 params): their sum of squared deviations


def _aux(sample_size: jax.Array, ssd: Any) -> dict:
    return {"sample_size": sample_size, "sum_sq_diff_grads": ssd}


@_hyper.declare(accumulation_steps=_hyper.integer(1, draw=(1, 4), source="validator"))
def get_per_element_mean_and_sum_sq_diff_grads(
    per_elt_axis: int | Sequence[int] = 0, accumulation_steps: int = 1
) -> Aggregator:
    r"""The mean of the per-element gradients and their sum of squared deviations, over ``k`` microbatches.

    Within microbatch :math:`j` of :math:`B` examples (two passes):
    :math:`m_j = \frac1B \sum_i g_{j,i}`, :math:`S_j = \sum_i (g_{j,i} - m_j)^2`.
    Across microbatches (Chan et al. 1979, eq. 2.1, with :math:`n_a = (j-1)B`
    examples so far and :math:`n_b = B`):

    .. math:: \delta = m_j - \bar m_{j-1}, \qquad \bar m_j = \bar m_{j-1} + \frac{\delta}{j}, \qquad
              \bar S_j = \bar S_{j-1} + S_j + \delta^2 \, \frac{(j-1) B}{j}

    At the ``k``-th microbatch the update is :math:`\bar m_k` with the auxiliary
    ``{'sample_size': kB, 'sum_sq_diff_grads': \bar S_k}``, and the state resets;
    before it, zeros and ``sample_size`` 0. The update is therefore the pair
    ``(mean, aux)``: use it through `process` with ``aggregator_has_aux=True``,
    which hands ``aux`` to the postprocessor as extra arguments
    (`track_per_element_mean_and_variance_with_ema` reads them).

    Args:
        per_elt_axis: the batch axis (or axes) of every leaf.
        accumulation_steps: ``k``, an integer >= 1.

    Returns:
        An `Aggregator`; its state is `EmptyState` for ``k = 1``, else
        `PerElementMeanAndSumSqDiffGradsState`. The statistics are formed in at
        least float32.

    Raises:
        ValueError: ``accumulation_steps < 1``; a bad `per_elt_axis`.
        TypeError: at update, a state of another type.

    Examples:
        >>> import jax.numpy as jnp
        >>> from gradxform.experimental import aggregating
        >>> agg = aggregating.get_per_element_mean_and_sum_sq_diff_grads(0, 2)
        >>> state = agg.init(jnp.zeros(1))
        >>> _, state = agg.update(jnp.array([[1.0], [3.0]]), state)
        >>> (mean, aux), state = agg.update(jnp.array([[5.0], [7.0]]), state)
        >>> mean.tolist(), int(aux['sample_size']), aux['sum_sq_diff_grads'].tolist()  # 9 + 1 + 1 + 9
        ([4.0], 4, [20.0])

    References:
        Chan, Golub and LeVeque (1979), "Updating formulae and a pairwise
        algorithm for computing sample variances", eq. (2.1).
    """
    fn = "get_per_element_mean_and_sum_sq_diff_grads"
    axes = _axes(per_elt_axis, fn)
    k = _steps(fn, accumulation_steps)

    if k == 1:

        def init_fn(params):
            del params
            return EmptyState()

        def update_fn(per_elt_updates, state, params=None, **extra_args):
            del params, extra_args
            _checks.check_state_type(state, EmptyState, fn)
            b = get_batch_size_from_per_elt_updates(per_elt_updates, axes)

            def one(g):
                mean, ssd = _batch_mean_and_ssd(g, axes)
                return mean.astype(g.dtype), ssd.astype(_tree.square_dtype(g.dtype))

            mean, ssd = _tree.map_leaves(one, per_elt_updates, n_out=2)
            return (mean, _aux(jnp.asarray(b, jnp.int32), ssd)), state

        return Aggregator(init_fn, update_fn)

    def init_fn(params):
        return PerElementMeanAndSumSqDiffGradsState(
            micro_step=jnp.zeros([], jnp.int32),
            ready=jnp.zeros([], bool),
            mean_grads=_tree.zeros_like(params),
            sum_sq_diff_grads=_tree.square_zeros_like(params),
        )

    def update_fn(per_elt_updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, PerElementMeanAndSumSqDiffGradsState, fn)
        b = get_batch_size_from_per_elt_updates(per_elt_updates, axes)
        j = state.micro_step + 1  # this microbatch's number in the window, 1..k
        ready = j >= k

        def one(g, m_old, s_old):
            m_b, s_b = _batch_mean_and_ssd(g, axes)
            cdt = m_b.dtype
            jf = j.astype(cdt)
            m_a = m_old.astype(cdt)
            delta = m_b - m_a
            mean = m_a + delta / jf
            ssd = s_old.astype(cdt) + s_b + _tree.abs_sq(delta) * (b * (jf - 1) / jf)
            return mean, ssd

        _checks.check_tree_like(
            _without_axes(per_elt_updates, axes),
            state.mean_grads,
            tree_name="per-element updates (batch axes removed)",
            like_name="state.mean_grads",
            fn=fn,
        )
        mean, ssd = _tree.map_leaves(
            one, per_elt_updates, state.mean_grads, state.sum_sq_diff_grads, n_out=2
        )
        emit = lambda new, like: jax.tree_util.tree_map(
            lambda x, o: jnp.where(ready, x, 0).astype(o.dtype), new, like
        )
        keep = lambda new, like: jax.tree_util.tree_map(
            lambda x, o: jnp.where(ready, 0, x).astype(o.dtype), new, like
        )
        out_mean = emit(mean, per_elt_updates)
        out_ssd = emit(ssd, state.sum_sq_diff_grads)
        sample_size = jnp.where(ready, b * k, 0).astype(jnp.int32)
        new_state = PerElementMeanAndSumSqDiffGradsState(
            micro_step=jnp.where(ready, 0, j).astype(jnp.int32),
            ready=ready,
            mean_grads=keep(mean, state.mean_grads),
            sum_sq_diff_grads=keep(ssd, state.sum_sq_diff_grads),
        )
        return (out_mean, _aux(sample_size, out_ssd)), new_state

    return Aggregator(init_fn, update_fn)


class PerElementMeanAndVarianceEMAState(NamedTuple):
    """The state of `track_per_element_mean_and_variance_with_ema`."""

    count: jax.Array  # shape (), int32: the number of EMA updates
    ema_decay: (
        jax.Array
    )  # shape (), float32: the decay, kept for `get_unbiased_mean_and_variance_ema`
    mean_grads_ema: Any  # like params (params' dtype): the EMA of the gradients' mean
    variance_grads_ema: (
        Any  # like params (float32 for f16/bf16): the EMA of their sample variance
    )


class _EmaScalars(NamedTuple):
    beta: _tree.Decay  # the EMA decay and its complement
    denom: jax.Array  # max(n - 1, 1)


@_tree.leaf_rule
def _ema_rule(m, mu, v, ssd, s: _EmaScalars):
    cdt = s.denom.dtype
    variance = ssd.astype(cdt) / s.denom
    new_mu = _tree.update_moment(m.astype(cdt), mu, s.beta)
    new_v = _tree.update_moment(variance, v, s.beta)
    return m, new_mu.astype(mu.dtype), new_v.astype(v.dtype)


@_hyper.declare(ema_decay=_hyper.DECAY)
def track_per_element_mean_and_variance_with_ema(
    ema_decay: float = 0.9,
) -> GradientTransformationExtraArgs:
    r"""EMAs of the per-element gradients' mean and (unbiased) variance; passes the updates through.

    With :math:`m` the incoming (mean) update, :math:`S` the extra argument
    ``sum_sq_diff_grads`` and :math:`n` the extra argument ``sample_size``:

    .. math:: \sigma^2 = \frac{S}{\max(n - 1, 1)}, \qquad
              \mu_t = \beta \mu_{t-1} + (1 - \beta) m, \qquad
              v_t = \beta v_{t-1} + (1 - \beta) \sigma^2

    Use after `get_per_element_mean_and_sum_sq_diff_grads` in `process`
    (``aggregator_has_aux=True``), as `add_mean_variance_to_opt` does, and read
    the debiased values with `get_unbiased_mean_and_variance_ema`.

    Args:
        ema_decay: :math:`\beta \in [0, 1)`.

    Returns:
        A `GradientTransformationExtraArgs` with state
        `PerElementMeanAndVarianceEMAState`; its ``update`` needs the keyword
        arguments ``sum_sq_diff_grads`` and ``sample_size``.

    Raises:
        ValueError: ``ema_decay`` outside :math:`[0, 1)`.
        TypeError: at update, a state of another type, or the keyword arguments missing.

    Note:
        optax divides by :math:`n - 1`, which is infinite or NaN for
        :math:`n = 1` (a batch of one); here a single sample has variance 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> from gradxform.experimental import aggregating
        >>> tx = aggregating.track_per_element_mean_and_variance_with_ema(0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.array([4.0]), state, sum_sq_diff_grads=jnp.array([20.0]), sample_size=4)
        >>> state.mean_grads_ema.tolist(), state.variance_grads_ema.tolist()  # 0.5 * 4, 0.5 * 20 / 3
        ([2.0], [3.3333332538604736])
    """
    fn = "track_per_element_mean_and_variance_with_ema"

    def init_fn(params):
        return PerElementMeanAndVarianceEMAState(
            count=jnp.zeros([], jnp.int32),
            ema_decay=jnp.asarray(ema_decay, jnp.float32),
            mean_grads_ema=_tree.zeros_like(params),
            variance_grads_ema=_tree.square_zeros_like(params),
        )

    def update_fn(
        updates,
        state,
        params=None,
        *,
        sum_sq_diff_grads=None,
        sample_size=None,
        **extra_args,
    ):
        del params, extra_args
        _checks.check_update(
            fn, state, PerElementMeanAndVarianceEMAState, updates, "mean_grads_ema"
        )
        if sum_sq_diff_grads is None or sample_size is None:
            raise TypeError(
                f"{fn}.update needs the keyword arguments sum_sq_diff_grads and sample_size (given by "
                "get_per_element_mean_and_sum_sq_diff_grads through process(..., aggregator_has_aux=True))."
            )

        def scalars(dtype):
            denom = jnp.maximum(
                jnp.asarray(sample_size).astype(dtype) - 1, 1
            )  # n - 1, or 1 for n <= 1
            return _EmaScalars(beta=_tree.decay(ema_decay, dtype), denom=denom)

        updates, mu, v = _tree.apply_rule(
            _ema_rule,
            updates,
            state.mean_grads_ema,
            state.variance_grads_ema,
            inputs=(sum_sq_diff_grads,),
            scalars=scalars,
        )
        return updates, PerElementMeanAndVarianceEMAState(
            count=_tree.safe_increment(state.count),
            ema_decay=state.ema_decay,
            mean_grads_ema=mu,
            variance_grads_ema=v,
        )

    return GradientTransformationExtraArgs(init_fn, update_fn)


def get_unbiased_mean_and_variance_ema(state: Any) -> tuple[Any, Any]:
    r"""The debiased EMAs of `track_per_element_mean_and_variance_with_ema`, found anywhere in `state`.

    .. math:: \hat\mu = \frac{\mu_t}{1 - \beta^t}, \qquad \hat v = \frac{v_t}{1 - \beta^t}

    Args:
        state: a `PerElementMeanAndVarianceEMAState`, or an optimizer state
            holding one (``add_mean_variance_to_opt``'s).

    Returns:
        ``(mean, variance)``, trees like the params. Before the first update
        (:math:`t = 0`) both are zeros (optax returns NaN: 0 / 0).

    Raises:
        ValueError: `state` holds no `PerElementMeanAndVarianceEMAState`.

    Examples:
        >>> import jax.numpy as jnp
        >>> from gradxform.experimental import aggregating
        >>> tx = aggregating.track_per_element_mean_and_variance_with_ema(0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> _, state = tx.update(jnp.array([4.0]), state, sum_sq_diff_grads=jnp.array([20.0]), sample_size=4)
        >>> mean, var = aggregating.get_unbiased_mean_and_variance_ema((None, state))
        >>> mean.tolist(), var.tolist()
        ([4.0], [6.666666507720947])
    """
    found = _find(state, lambda x: isinstance(x, PerElementMeanAndVarianceEMAState))
    if not found:
        raise ValueError(
            "get_unbiased_mean_and_variance_ema: the state holds no PerElementMeanAndVarianceEMAState "
            "(built by track_per_element_mean_and_variance_with_ema or add_mean_variance_to_opt)."
        )
    s = found[0]

    def debias(x):
        cdt = _tree.compute_dtype(x.dtype)
        bc = _tree.bias_correction(s.ema_decay, jnp.maximum(s.count, 1), cdt)
        return jnp.where(s.count > 0, x.astype(cdt) / bc, 0).astype(x.dtype)

    return (
        jax.tree_util.tree_map(debias, s.mean_grads_ema),
        jax.tree_util.tree_map(debias, s.variance_grads_ema),
    )


# ------------------------------------------------------------------------------- process


def process(
    preprocessor: GradientTransformation,
    aggregator: GradientTransformation | Aggregator,
    postprocessor: GradientTransformation,
    aggregator_has_aux: bool = False,
) -> GradientTransformation | Aggregator:
    r"""Per-example preprocessing, aggregation, then an optimizer that runs when the aggregate is complete.

    .. math:: \tilde g = \text{pre}(g), \qquad (u, a) = \text{agg}(\tilde g), \qquad
              \text{out} = \begin{cases} \text{post}(u; a) & \text{ready} \\ 0 & \text{otherwise} \end{cases}

    "ready" is the ``ready`` field of the aggregator's state (found in nested
    tuples too: `accumulate_avg_updates`, `get_per_element_mean_and_sum_sq_diff_grads`);
    an aggregator without one is always ready. When not ready the
    postprocessor's state is left as it was (``lax.cond``: it is not run).

    Args:
        preprocessor: a transformation of the per-example updates (e.g. a
            per-example clip); use `identity()` for none.
        aggregator: an `Aggregator` (per-example in, one update out), or a
            `GradientTransformation` accumulating already-averaged updates.
        postprocessor: the transformation of the aggregated update (the optimizer).
        aggregator_has_aux: the aggregator's update is ``(updates, aux)``; the
            dict ``aux`` is passed to the postprocessor as keyword arguments.

    Returns:
        An `Aggregator` if `aggregator` is one, else a
        `GradientTransformationExtraArgs`; the state is ``(pre_state, agg_state,
        post_state)``. Extra keyword arguments reach all three.

    Raises:
        TypeError: an argument without ``init`` and ``update``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> from gradxform.experimental import aggregating
        >>> opt = aggregating.process(gx.identity(), aggregating.average_incrementally_updates(0, 2), gx.sgd(1.0))
        >>> state = opt.init(jnp.zeros(1))
        >>> u1, state = opt.update(jnp.array([[1.0], [3.0]]), state)
        >>> u2, state = opt.update(jnp.array([[5.0], [7.0]]), state)
        >>> u1.tolist(), u2.tolist()
        ([0.0], [-4.0])
    """
    check_transform(preprocessor, "process: preprocessor")
    check_transform(aggregator, "process: aggregator")
    check_transform(postprocessor, "process: postprocessor")

    def init_fn(params):
        return (
            preprocessor.init(params),
            aggregator.init(params),
            postprocessor.init(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        if not isinstance(state, tuple) or len(state) != 3:
            raise TypeError(
                "process.update expected the state built by process.init: a tuple "
                f"(pre_state, agg_state, post_state), got {type(state).__name__}."
            )
        pre_state, agg_state, post_state = state
        updates, pre_state = call_update(
            preprocessor, updates, pre_state, params, extra_args
        )
        out, agg_state = call_update(aggregator, updates, agg_state, params, extra_args)
        if aggregator_has_aux:
            updates, aux = out
            post_args = {**extra_args, **dict(aux)}
        else:
            updates, post_args = out, extra_args

        def run(updates, post_state):
            return call_update(postprocessor, updates, post_state, params, post_args)

        readies = _find(agg_state, _is_state_with("ready"))
        if not readies:
            new_updates, post_state = run(updates, post_state)
        else:
            ready = readies[0].ready
            shapes = jax.eval_shape(run, updates, post_state)

            def skip(updates, post_state):
                del updates
                zeros = jax.tree_util.tree_map(
                    lambda s: jnp.zeros(s.shape, s.dtype), shapes[0]
                )
                return zeros, post_state

            new_updates, post_state = jax.lax.cond(
                ready, run, skip, updates, post_state
            )
        return new_updates, (pre_state, agg_state, post_state)

    if isinstance(aggregator, Aggregator):
        return Aggregator(init_fn, update_fn)
    return GradientTransformationExtraArgs(init_fn, update_fn)


@_hyper.declare(
    ema_decay=_hyper.DECAY,
    accumulation_steps=_hyper.integer(1, draw=(1, 4), source="validator"),
)
def add_mean_variance_to_opt(
    opt: GradientTransformation,
    ema_decay: Any = 0.9,
    per_elt_axis: int | list[int] = 0,
    accumulation_steps: int = 1,
) -> Aggregator:
    r"""`opt` on per-example gradients, tracking EMAs of their mean and variance on the way.

    ``process(identity(), get_per_element_mean_and_sum_sq_diff_grads(per_elt_axis,
    accumulation_steps), chain(track_per_element_mean_and_variance_with_ema(ema_decay),
    opt), aggregator_has_aux=True)``: `opt` sees the mean gradient over
    ``accumulation_steps`` microbatches, and `get_unbiased_mean_and_variance_ema`
    reads the EMAs from the state.

    Args:
        opt: the optimizer (a `GradientTransformation`).
        ema_decay: the EMAs' decay, in :math:`[0, 1)`.
        per_elt_axis: the batch axis (or axes) of the per-example gradients.
        accumulation_steps: microbatches per update, an integer >= 1.

    Returns:
        An `Aggregator` with state ``(EmptyState(), agg_state, (ema_state, opt_state))``.

    Raises:
        ValueError: ``ema_decay`` outside :math:`[0, 1)`, ``accumulation_steps < 1``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> from gradxform.experimental import aggregating
        >>> opt = aggregating.add_mean_variance_to_opt(gx.sgd(1.0), ema_decay=0.5)
        >>> state = opt.init(jnp.zeros(1))
        >>> u, state = opt.update(jnp.array([[1.0], [3.0]]), state)
        >>> mean, var = aggregating.get_unbiased_mean_and_variance_ema(state)
        >>> u.tolist(), mean.tolist(), var.tolist()
        ([-2.0], [2.0], [2.0])
    """
    fn = "add_mean_variance_to_opt"
    check_transform(opt, f"{fn}: opt")
    _axes(per_elt_axis, fn)
    _steps(fn, accumulation_steps)
    return process(
        identity(),
        get_per_element_mean_and_sum_sq_diff_grads(per_elt_axis, accumulation_steps),
        chain(track_per_element_mean_and_variance_with_ema(ema_decay), opt),
        aggregator_has_aux=True,
    )
