"""Monitoring inside a chain: `snapshot`, `monitor` and `measure_with_ema` record measurements in the state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformationExtraArgs, stateless
from gradxform._combine import call_update, chain, check_transform
from gradxform.transforms._momentum import ema

__all__ = ["MonitorState", "SnapshotState", "measure_with_ema", "monitor", "snapshot"]


def _zeros_shaped(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), tree)


class SnapshotState(NamedTuple):
    measurement: dict  # {measure_name: measure(updates)}, shapes and dtypes fixed by init (measure(params))


def snapshot(measure_name: str, measure: Callable[[Any], Any]) -> GradientTransformationExtraArgs:
    r"""Passes the updates through and stores ``measure(updates)`` in the state under ``measure_name``.

    .. math:: u_t = g_t, \qquad s_t = \{\text{name}: m(g_t)\}

    For looking at the updates at one point of a chain (the norm before
    clipping, ...): read it back with ``state[i].measurement[measure_name]``.
    ``init`` stores zeros shaped like ``measure(params)``, which fixes the
    measurement's tree, shapes and dtypes; later measurements are cast to those
    dtypes.

    Note:
        optax's ``init`` stores ``measure(params)`` itself, so its state before the
        first update holds a value computed from the params; here ``init`` reads
        only their shapes and dtypes (the library's contract), and the state after
        any update is the same as optax's.

    Args:
        measure_name: the key of the measurement in the state.
        measure: ``updates -> tree of arrays`` (a norm, a copy, ...).

    Returns:
        A `GradientTransformationExtraArgs` with state `SnapshotState`.

    Raises:
        TypeError: ``measure`` is not callable; at update, a state of another type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.chain(gx.snapshot('norm', lambda u: jnp.sqrt(jnp.sum(u ** 2))), gx.clip_by_global_norm(1.0))
        >>> u, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> float(state[0].measurement['norm']), u.tolist()
        (5.0, [0.6000000238418579, 0.800000011920929])

    References:
        optax.snapshot (the state's field).
    """
    fn = "snapshot"
    if not callable(measure):
        raise TypeError(f"{fn}: measure must be a function updates -> measurement, got {measure!r}.")

    def init_fn(params):
        return SnapshotState({measure_name: _zeros_shaped(jax.eval_shape(measure, params))})

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, SnapshotState, fn)
        new = _tree.cast_like(measure(updates), state.measurement[measure_name])
        return updates, SnapshotState({measure_name: new})

    return GradientTransformationExtraArgs(init_fn, update_fn)


class MonitorState(NamedTuple):
    measurements: dict  # {name: the measure's latest output}, zeros (of the right shapes) before the first update
    measure_states: tuple  # the measures' states, in the order of `measures`


def monitor(measures: dict) -> GradientTransformationExtraArgs:
    r"""Passes the updates through and records several (possibly stateful) measurements of them.

    .. math:: u_t = g_t, \qquad (m^{(k)}_t, s^{(k)}_t) = M_k.\text{update}(g_t, s^{(k)}_{t-1})

    Each measure is a function ``updates -> measurement`` (stateless) or a
    transformation whose ``update`` returns ``(measurement, state)``, such as
    `measure_with_ema`. Read a measurement with ``state.measurements[name]``.

    Note:
        optax's ``monitor`` starts with an empty ``measurements`` dict and fills it
        at the first update, so its state changes structure (it cannot be a
        ``lax.scan`` carry and a jitted step retraces). Here ``init`` fills it with
        zeros of the measurements' shapes and dtypes (from the params), so the state
        has the structure of optax's after one step, and checkpoints taken after a
        step load into either.

    Args:
        measures: a dict from name to measure function or transformation.

    Returns:
        A `GradientTransformationExtraArgs` with state `MonitorState`; the extra
        keyword arguments of ``update`` reach the measures.

    Raises:
        TypeError: a measure is neither callable nor a transformation; at update,
            a state of another type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.monitor({'norm': lambda u: jnp.sqrt(jnp.sum(u ** 2)),
        ...                  'ema': gx.measure_with_ema(lambda u: jnp.sum(u), decay=0.5)})
        >>> state = tx.init(jnp.zeros(2))
        >>> u, state = tx.update(jnp.array([3.0, 4.0]), state)
        >>> float(state.measurements['norm']), float(state.measurements['ema'])
        (5.0, 7.0)

    References:
        optax.monitor (the state's fields).
    """
    fn = "monitor"
    txs = {}
    for name, measure in measures.items():
        if hasattr(measure, "init") and hasattr(measure, "update"):
            check_transform(measure, f"{fn}: measure {name!r}")
            txs[name] = measure
        elif callable(measure):
            txs[name] = stateless(lambda u, _, m=measure: m(u), name=f"{fn} measure {name!r}")
        else:
            raise TypeError(f"{fn}: measure {name!r} must be a function or a transformation, got {measure!r}.")
    names = tuple(txs)

    def init_fn(params):
        measure_states = tuple(txs[name].init(params) for name in names)
        measurements = {
            name: _zeros_shaped(jax.eval_shape(lambda p, s, tx=txs[name]: tx.update(p, s, p)[0], params, state))
            for name, state in zip(names, measure_states)
        }
        return MonitorState(measurements, measure_states)

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, MonitorState, fn)
        measurements, new_states = {}, []
        for name, old in zip(names, state.measure_states):
            value, new = call_update(txs[name], updates, old, params, extra_args)
            measurements[name] = _tree.cast_like(value, state.measurements[name])
            new_states.append(_tree.cast_like(new, old))
        return updates, MonitorState(measurements, tuple(new_states))

    return GradientTransformationExtraArgs(init_fn, update_fn)


def _float_dtype(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    return dtype if jnp.issubdtype(dtype, jnp.inexact) else np.dtype(np.float32)


@_hyper.declare(decay=_hyper.DECAY, debias=_hyper.BOOL)
def measure_with_ema(
    measure: Callable[[Any], Any], decay: float, debias: bool = True, accumulator_dtype: Any | None = None
) -> GradientTransformationExtraArgs:
    r"""A measure for `monitor`: the exponential moving average of ``measure(updates)``.

    .. math:: m_t = (1 - \beta)\, x_t + \beta\, m_{t-1}, \qquad
              \text{output}_t = m_t / (1 - \beta^t) \text{ if debias, else } m_t

    with :math:`x_t` = ``measure(updates)``. Its ``update`` returns the averaged
    measurement in place of the updates, so use it inside `monitor`, not in a
    chain of its own.

    Args:
        measure: ``updates -> tree of arrays``; a bool or integer measurement (a
            "was clipped" flag) is averaged as float32.
        decay: :math:`\beta \in [0, 1)`.
        debias: divide by :math:`1 - \beta^t`.
        accumulator_dtype: dtype of the average (default: the measurement's, or
            float32 for a non-float one).

    Returns:
        A `GradientTransformationExtraArgs`: ``chain(stateless(measure), ema)``, state
        ``(EmptyState(), EmaState(count, ema))`` as in optax.

    Raises:
        ValueError: ``decay`` outside [0, 1).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.measure_with_ema(lambda u: jnp.max(u) > 1.0, decay=0.5, debias=False)
        >>> state = tx.init(jnp.zeros(2))
        >>> m, state = tx.update(jnp.array([2.0, 0.0]), state)
        >>> float(m)  # 0.5 * 1 + 0.5 * 0
        0.5

    References:
        optax.measure_with_ema (the state's structure).
    """
    if not callable(measure):
        raise TypeError(f"measure_with_ema: measure must be a function updates -> measurement, got {measure!r}.")

    def measured(tree):
        return jax.tree_util.tree_map(
            lambda x: jnp.asarray(x).astype(_float_dtype(accumulator_dtype or jnp.asarray(x).dtype)), measure(tree)
        )

    average = ema(decay, debias, accumulator_dtype)
    from_measurement = GradientTransformationExtraArgs(lambda params: average.init(measured(params)), average.update)
    return chain(stateless(lambda u, _: measured(u), name="measure_with_ema"), from_measurement)
