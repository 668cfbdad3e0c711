"""Scaling: `scale`, `scale_by_learning_rate`, `scale_by_schedule`."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import EmptyState, GradientTransformation, ScalarOrSchedule, identity, stateless

ScaleState = EmptyState  # `scale`'s state (optax's name)


@_hyper.declare(step_size=_hyper.number(draw=(-1.0, 1.0)))
def scale(step_size: Any) -> GradientTransformation:
    r"""Multiplies every update by a constant: :math:`u \leftarrow \alpha g`.

    Args:
        step_size: the constant :math:`\alpha` (any real number).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale(-2.0)
        >>> tx.update(jnp.array([1.0, 0.5]), tx.init(jnp.zeros(2)))[0].tolist()
        [-2.0, -1.0]
    """

    return _scaled(step_size, "scale", "step_size")


def check_factor_shape(fn: str, name: str, factor: Any, updates: Any) -> None:
    """Raises ``ValueError`` when an array `factor` does not broadcast to each leaf's shape.

    A scalar always does; an array must broadcast *to* the leaf (the product keeps
    the leaf's shape): ``(3,)`` to ``(4, 3)`` yes, ``(2,)`` to ``(3,)`` or
    ``(2, 1)`` to ``(3,)`` no. Shapes are static, so under ``jit`` this runs once,
    at trace time, and costs nothing at run time.
    """
    shape = tuple(np.shape(factor))
    if shape == ():
        return
    for path, leaf in jax.tree_util.tree_flatten_with_path(updates)[0]:
        leaf_shape = getattr(leaf, "shape", None)
        if leaf_shape is None:
            continue
        try:
            fits = np.broadcast_shapes(shape, tuple(leaf_shape)) == tuple(leaf_shape)
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(
                f"{fn}: `{name}` of shape {shape} does not broadcast to the update at "
                f"{jax.tree_util.keystr(path) or '(root)'} of shape {tuple(leaf_shape)}; give a scalar, a "
                "schedule, or an array whose shape broadcasts to every leaf."
            )


def _scaled(factor: Any, fn: str, name: str) -> GradientTransformation:
    """`scale` by `factor`, its shape checked against the updates' (`check_factor_shape`)."""

    def f(updates, params):
        del params
        check_factor_shape(fn, name, factor, updates)
        return _tree.scale_tree(updates, factor)

    return stateless(f, name="scale")


class ScaleByScheduleState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far


def scale_by_schedule(step_size_fn: Callable[[jax.Array], Any]) -> GradientTransformation:
    r"""Multiplies the updates by a schedule's value: :math:`u_t \leftarrow s(t) g_t`, t from 0.

    Args:
        step_size_fn: a schedule ``count -> value``; the count starts at 0.
    """
    if not callable(step_size_fn):
        raise TypeError(f"scale_by_schedule: `step_size_fn` must be callable, got {step_size_fn!r}.")

    def init_fn(params):
        del params
        return ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByScheduleState, "scale_by_schedule")
        step_size = step_size_fn(state.count)
        check_factor_shape("scale_by_schedule", "step_size_fn(count)", step_size, updates)
        updates = _tree.scale_tree(updates, step_size)
        return updates, ScaleByScheduleState(count=_tree.safe_increment(state.count))

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR._replace(optional=True), flip_sign=_hyper.BOOL)
def scale_by_learning_rate(learning_rate: ScalarOrSchedule, *, flip_sign: bool = True) -> GradientTransformation:
    r"""Scales by a learning rate (or schedule), by default with a minus sign for descent.

    :math:`u \leftarrow -\eta g` (or :math:`+\eta g` with ``flip_sign=False``).

    Args:
        learning_rate: a float (finite in float32; negative is ascent), an
            array of floats whose shape broadcasts to every leaf of the updates,
            or a schedule ``count -> float``; ``None`` means no scaling (the
            identity, as in optax).
        flip_sign: multiply by ``-learning_rate`` (descent) when True.

    Raises:
        ValueError: NaN, a value that overflows float32, a bool, a str or a list;
            at update time, an array that does not broadcast to a leaf's shape
            (naming the leaf's key path and both shapes).
    """
    if learning_rate is None:
        return identity()
    m = -1 if flip_sign else 1
    if callable(learning_rate):
        return scale_by_schedule(lambda count: m * jnp.asarray(learning_rate(count), jnp.float32))
    return _scaled(m * learning_rate, "scale_by_learning_rate", "learning_rate")
