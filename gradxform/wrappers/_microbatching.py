"""Microbatched vmap and per-example gradients: `micro_vmap`, `micro_grad`, `reshape_batch_axis`.

The loop itself is `microbatch` (`gradxform.wrappers._accumulate`): these build
on it. Per-example gradients transformed before they are summed (clipped, for
DP-SGD; squared, for the gradient noise) are the setting of Anil et al. (2025),
"Per-example gradient computations in JAX", arXiv:2510.00236.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform.wrappers._accumulate import (
    AccumulationType,
    Accumulator,
    _canonical,
    microbatch,
)

__all__ = ["Aux", "micro_grad", "micro_vmap", "reshape_batch_axis"]


def _check_microbatch_size(fn: str, microbatch_size: Any, optional: bool) -> None:
    if optional and microbatch_size is None:
        return
    if (
        isinstance(microbatch_size, bool)
        or not isinstance(microbatch_size, (int, np.integer))
        or microbatch_size < 1
    ):
        allowed = "a positive integer or None" if optional else "a positive integer"
        raise ValueError(
            f"{fn}: `microbatch_size` must be {allowed}, got {microbatch_size!r}."
        )


def reshape_batch_axis(tree: Any, microbatch_size: int, axis: int = 0) -> Any:
    r"""Splits each leaf's batch axis into ``(num_microbatches, microbatch_size)``, column-major.

    A leaf of shape :math:`(\dots, B, \dots)` (``B`` at `axis`) becomes
    :math:`(\dots, B / m, m, \dots)` with :math:`m` = ``microbatch_size``, and
    microbatch :math:`j` holds the rows :math:`j, j + B/m, j + 2B/m, \dots`
    (column-major order: a sharding of the batch axis carries over to the new
    ``microbatch_size`` axis, and the ``num_microbatches`` axis is replicated).

    Args:
        tree: a pytree of arrays, each with a batch axis at `axis`.
        microbatch_size: rows per microbatch, a positive integer dividing every
            leaf's batch size.
        axis: the batch axis (negative counts from the end).

    Returns:
        The pytree of reshaped arrays (one more dimension each).

    Raises:
        ValueError: ``microbatch_size`` is not a positive integer, or does not
            divide a leaf's batch size (the message names both and the leaf's key path).

    Note:
        optax 0.2.8 fails on a negative `axis`, and raises a reshape
        ``TypeError`` for an indivisible batch.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.microbatching.reshape_batch_axis(jnp.arange(6), 2).tolist()
        [[0, 3], [1, 4], [2, 5]]

    References:
        optax.microbatching.reshape_batch_axis (the layout).
    """
    _check_microbatch_size("reshape_batch_axis", microbatch_size, optional=False)

    def one(path, x):
        x = jnp.asarray(x)
        ax = axis + x.ndim if axis < 0 else axis
        if not 0 <= ax < x.ndim:
            raise ValueError(
                f"reshape_batch_axis: axis {axis} is out of range for the leaf at {jax.tree_util.keystr(path)} "
                f"of shape {x.shape}."
            )
        size = x.shape[ax]
        if size % microbatch_size:
            raise ValueError(
                f"reshape_batch_axis: batch size {size} (leaf {jax.tree_util.keystr(path) or '<root>'}, "
                f"axis {axis}) is not divisible by microbatch_size={microbatch_size}."
            )
        return x.reshape(
            x.shape[:ax]
            + (size // microbatch_size, microbatch_size)
            + x.shape[ax + 1 :],
            order="F",
        )

    return jax.tree_util.tree_map_with_path(one, tree)


def micro_vmap(
    fun: Callable[..., Any],
    in_axes: int | Sequence[int] = 0,
    out_axes: Any = 0,
    *,
    microbatch_size: int | None = None,
    vmap_fn: Callable[..., Callable[..., Any]] = jax.vmap,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.CONCAT,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., Any]:
    r"""`jax.vmap` one microbatch at a time, with the outputs concatenated or reduced.

    .. math:: \text{CONCAT}: [f(x_1); \dots; f(x_B)], \qquad
              \text{SUM}: \sum_{i=1}^B f(x_i), \qquad \text{MEAN}: \frac1B \sum_{i=1}^B f(x_i)

    Each microbatch of ``microbatch_size`` rows is vmapped, reduced with the
    accumulator's ``aggregate`` (identity for CONCAT), and combined across
    microbatches in a ``lax.fori_loop`` (`microbatch`), so only one
    microbatch's intermediates are alive at a time. Without ``microbatch_size``
    it is ``aggregate(vmap(fun)(...))``. Keyword arguments are mapped along
    axis 0, as `jax.vmap` does.

    Args:
        fun: the function to map.
        in_axes: the mapped axis of each positional argument (``None``: not
            mapped); one int applies to every positional argument.
        out_axes: must be 0.
        microbatch_size: rows per microbatch, a positive integer dividing the
            batch size; ``None`` maps the whole batch at once.
        vmap_fn: called as ``vmap_fn(fun, in_axes, 0)``, like `jax.vmap`.
        accumulator: an `AccumulationType`, an `Accumulator`, or a tree of them
            that is a prefix of `fun`'s output.
        num_real_microbatches: run only the first this many microbatches (a
            traced count shares one compilation); CONCAT leaves zeros for the rest.

    Returns:
        A function with `fun`'s arguments, each mapped argument with a batch axis.

    Raises:
        NotImplementedError: ``out_axes != 0``.
        ValueError: ``microbatch_size`` is not a positive integer or does not
            divide the batch size (both named); ``in_axes`` has the wrong length;
            the mapped arguments' batch sizes differ.

    Note:
        An int ``in_axes`` maps every positional argument, as in `jax.vmap`
        (optax 0.2.8 maps only the first and fails with two or more arguments).
        Sums and means of floating outputs are accumulated in at least float32
        (optax's carry has the outputs' dtype: 512 bfloat16 values of 1.0078125
        sum to 512 there, 516 here).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> f = gx.microbatching.micro_vmap(lambda x: x**2, microbatch_size=2)
        >>> f(jnp.arange(6)).tolist()
        [0, 1, 4, 9, 16, 25]
        >>> g = gx.microbatching.micro_vmap(lambda x, w: x * w, in_axes=(0, None), microbatch_size=3,
        ...                                 accumulator=gx.microbatching.AccumulationType.SUM)
        >>> float(g(jnp.arange(6.0), 2.0))  # 2 * (0 + 1 + ... + 5)
        30.0

    References:
        optax.microbatching.micro_vmap (the signature and accumulation types).
    """
    if not (
        isinstance(out_axes, int) and not isinstance(out_axes, bool) and out_axes == 0
    ):
        raise NotImplementedError(
            f"micro_vmap: only out_axes=0 is supported, got out_axes={out_axes!r}."
        )
    _check_microbatch_size("micro_vmap", microbatch_size, optional=True)
    # `aggregate` reduces one microbatch's batch axis (the count only matters to MEAN's finalize).
    aggregate = _canonical(accumulator, 1).aggregate

    def mapped(*args, **kwargs):
        if in_axes is None or isinstance(in_axes, int):
            axes = (in_axes,) * len(args)
        else:
            axes = tuple(in_axes)
            if len(axes) != len(args):
                raise ValueError(
                    f"micro_vmap: in_axes has {len(axes)} entries, but the function was called with "
                    f"{len(args)} positional arguments."
                )
        for ax in axes:
            if not (ax is None or (isinstance(ax, int) and not isinstance(ax, bool))):
                raise ValueError(
                    f"micro_vmap: each entry of in_axes must be an int or None, got {ax!r}."
                )
        vmapped = vmap_fn(fun, axes, 0)

        def one(*a, **kw):
            return aggregate(vmapped(*a, **kw))

        if microbatch_size is None:
            return one(*args, **kwargs)
        argnums = tuple(i for i, ax in enumerate(axes) if ax is not None)
        batch_axes = tuple(axes[i] for i in argnums) + (0,) * len(kwargs)
        return microbatch(
            one,
            argnums,
            microbatch_size,
            accumulator,
            argnames=tuple(kwargs),
            in_axes=batch_axes,
            num_real_microbatches=num_real_microbatches,
        )(*args, **kwargs)

    return mapped


class Aux(NamedTuple):
    """`micro_grad`'s second output: per-example values, metrics and ``fun``'s auxiliary output."""

    values: Any  # fun's value for each example, shape (batch,)
    metrics: (
        Any  # metrics_fn(per-example gradient), with a batch axis (None by default)
    )
    aux: Any  # fun's auxiliary output for each example, with a batch axis (None without has_aux)


def _identity(x: Any) -> Any:
    return x


def _no_metrics(x: Any) -> None:
    del x


def micro_grad(
    fun: Callable[..., Any],
    has_aux: bool = False,
    argnums: int | Sequence[int] = 0,
    *,
    batch_argnums: int | Sequence[int] = 1,
    keep_batch_dim: bool = True,
    microbatch_size: int | None = None,
    accumulator: Accumulator | AccumulationType | Any = AccumulationType.SUM,
    transform_fn: Callable[[Any], Any] = _identity,
    metrics_fn: Callable[[Any], Any] = _no_metrics,
    num_real_microbatches: int | jax.Array | None = None,
) -> Callable[..., tuple[Any, Aux]]:
    r"""Per-example gradients, transformed and then summed (or averaged), one microbatch at a time.

    With :math:`g_i = \nabla f(\theta; x_i)` the gradient of `fun` on example :math:`i`
    alone (a batch of one),

    .. math:: \text{SUM}: \sum_{i=1}^B T(g_i), \qquad \text{MEAN}: \frac1B \sum_{i=1}^B T(g_i),
              \qquad \text{metrics}_i = M(g_i)

    with :math:`T` = ``transform_fn`` (a clip, for DP-SGD) and :math:`M` =
    ``metrics_fn``. It is `micro_vmap` over ``jax.value_and_grad(fun)``.

    Args:
        fun: ``fun(*args, **kwargs) -> loss`` (or ``(loss, aux)`` with `has_aux`).
        has_aux: whether `fun` returns ``(loss, aux)``.
        argnums: the argument(s) to differentiate with respect to.
        batch_argnums: the positional argument(s) with a batch axis (axis 0);
            keyword arguments are batched too.
        keep_batch_dim: pass each example to `fun` with a batch axis of size 1
            (True) or without one (False); keyword arguments get no size-1 axis.
        microbatch_size: examples per microbatch (see `micro_vmap`); ``None``: all at once.
        accumulator: how the transformed gradients are combined over the batch
            (an `AccumulationType`, an `Accumulator`, or a tree of them that is a
            prefix of ``transform_fn``'s output).
        transform_fn: applied to each example's gradient before the accumulation.
        metrics_fn: applied to each example's (untransformed) gradient; returned
            per example, so keep it small.
        num_real_microbatches: run only the first this many microbatches.

    Returns:
        A function of `fun`'s arguments returning ``(gradients, Aux(values, metrics, aux))``;
        everything in the `Aux` has a batch axis.

    Raises:
        ValueError: as `micro_vmap` (``microbatch_size`` not dividing the batch size, ...).

    Note:
        Positional arguments after the last batch argument are passed through
        unbatched (optax 0.2.8 raises for them).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> loss = lambda w, x, y: 0.5 * jnp.mean((x @ w - y) ** 2)
        >>> (g, g2), aux = gx.microbatching.micro_grad(
        ...     loss, batch_argnums=(1, 2), accumulator=gx.microbatching.AccumulationType.MEAN,
        ...     transform_fn=lambda g: (g, g**2))(jnp.zeros(1), jnp.ones((4, 1)), jnp.array([0.0, 2.0, 4.0, 6.0]))
        >>> g.tolist(), g2.tolist(), aux.values.tolist()  # per-example gradients -y_i
        ([-3.0], [14.0], [0.0, 2.0, 8.0, 18.0])

    References:
        Anil et al. (2025), "Per-example gradient computations in JAX",
        arXiv:2510.00236; optax.microbatching.micro_grad (the signature).
    """
    _check_microbatch_size("micro_grad", microbatch_size, optional=True)
    batch = (batch_argnums,) if isinstance(batch_argnums, int) else tuple(batch_argnums)
    value_and_grad = jax.value_and_grad(fun, argnums=argnums, has_aux=has_aux)

    def per_example(batch_set):
        def f(*args, **kwargs):
            if keep_batch_dim:
                args = tuple(
                    jax.tree_util.tree_map(lambda x: jnp.expand_dims(x, 0), a)
                    if i in batch_set
                    else a
                    for i, a in enumerate(args)
                )
            out = value_and_grad(*args, **kwargs)
            (value, aux), grads = out if has_aux else ((out[0], None), out[1])
            return transform_fn(grads), Aux(
                values=value, metrics=metrics_fn(grads), aux=aux
            )

        return f

    def wrapped(*args, **kwargs):
        n = len(args)
        for i in batch:
            if not -n <= i < n:
                raise ValueError(
                    f"micro_grad: batch_argnums names argument {i}, but only {n} were given."
                )
        batch_set = frozenset(i % n for i in batch)
        return micro_vmap(
            per_example(batch_set),
            tuple(0 if i in batch_set else None for i in range(n)),
            microbatch_size=microbatch_size,
            accumulator=(accumulator, AccumulationType.CONCAT),
            num_real_microbatches=num_real_microbatches,
        )(*args, **kwargs)

    return wrapped
