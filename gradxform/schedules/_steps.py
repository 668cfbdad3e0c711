"""Step handling shared by the schedules.

Every schedule turns its step into an array here, with explicit casts only, so
that schedules work under ``jax_numpy_dtype_promotion="strict"``:

- an integer step (Python, NumPy or a traced ``int32``) stays an ``int32`` array,
  so that offsets and comparisons with integer boundaries are exact at any step
  an ``int32`` counter can hold (a ``float32`` is exact only up to ``2**24``);
- a concrete integer beyond the ``int32`` range, or a floating step, becomes a
  ``float32`` array.

Step *counts* given to a schedule's factory (``transition_steps``, boundaries,
...) are structural: they must be concrete numbers and are turned into Python
``int`` (or ``float`` when fractional) once, at construction.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform._checks import check_non_negative, check_positive

_INT32 = np.iinfo(np.int32)

Count = Union[int, float]


def as_step(step: Any) -> jax.Array:
    """The step as an ``int32`` array when it is an integer, else as ``float32``."""
    if isinstance(step, (bool, np.bool_)):
        raise TypeError(f"A schedule's step must be a number, got the boolean {step!r}.")
    if isinstance(step, (int, np.integer)):
        # A concrete integer (a tracer is never an `int`): exact int32 when it fits.
        if _INT32.min <= int(step) <= _INT32.max:
            return jnp.asarray(int(step), dtype=jnp.int32)
        return jnp.asarray(float(step), dtype=jnp.float32)
    arr = jnp.asarray(step)
    if arr.dtype == jnp.bool_:
        raise TypeError(f"A schedule's step must be a number, got an array of dtype {arr.dtype}.")
    if jnp.issubdtype(arr.dtype, jnp.integer):
        return arr.astype(jnp.int32)
    return arr.astype(jnp.float32)


def to_f32(value: Any) -> jax.Array:
    """`value` as a strongly typed ``float32`` array (the dtype every schedule returns)."""
    return jnp.asarray(value, dtype=jnp.float32)


def hyper(value: Any) -> Any:
    """A hyperparameter ready to be mixed with ``float32`` arrays under strict promotion.

    Python scalars stay as they are (weakly typed, so they take the array's dtype);
    anything else (NumPy scalars, arrays, tracers) is cast to ``float32``.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    return to_f32(value)


def _is_integer(k: jax.Array) -> bool:
    return bool(jnp.issubdtype(k.dtype, jnp.integer))


def _as_float_if_needed(k: jax.Array, *counts: Optional[Count]) -> jax.Array:
    """Keeps `k` integer only when every count it meets is a Python int."""
    if _is_integer(k) and all(c is None or isinstance(c, int) for c in counts):
        return k
    return k.astype(jnp.float32)


def elapsed(step: Any, begin: Count = 0, limit: Optional[Count] = None) -> jax.Array:
    r"""``float32`` of :math:`\min(\max(k - \text{begin}, 0), \text{limit})`.

    The offset and the clipping are done in ``int32`` when the step and the counts
    are integers (exact, as in optax), and in ``float32`` otherwise.
    """
    k = _as_float_if_needed(as_step(step), begin, limit)
    d = jnp.maximum(k - begin, 0)
    if limit is not None:
        d = jnp.minimum(d, limit)
    return d.astype(jnp.float32)


def reached(k: jax.Array, boundary: Count) -> jax.Array:
    """Boolean ``k >= boundary`` for a step array `k` from `as_step`."""
    return _as_float_if_needed(k, boundary) >= boundary


def shift(k: jax.Array, boundary: Count) -> jax.Array:
    """The step counted from `boundary`: ``k - boundary`` (integer when both are)."""
    return _as_float_if_needed(k, boundary) - boundary


def _concrete_count(name: str, value: Any, fn: str) -> Count:
    """`value` as a Python int (float when fractional), or TypeError if not concrete."""
    if isinstance(value, (bool, np.bool_)) or callable(value) or isinstance(value, jax.core.Tracer):
        arr = None
    else:
        try:
            arr = np.asarray(value)
        except Exception:  # noqa: BLE001 - anything not array-like is rejected below
            arr = None
    if arr is None or arr.shape != () or not np.issubdtype(arr.dtype, np.number) or np.issubdtype(
        arr.dtype, np.complexfloating
    ):
        raise TypeError(
            f"{fn}: `{name}` must be a concrete real number of steps (a Python or NumPy "
            f"scalar), not a traced value, array or callable; got {name}={value!r}."
        )
    if np.issubdtype(arr.dtype, np.integer):
        return int(arr)
    return float(arr)


def step_count(name: str, value: Any, fn: str, *, positive: bool = False) -> Count:
    """Validates a number of steps (``>= 0``, or ``> 0`` with `positive`) and normalizes it.

    Returns a Python ``int`` when the value is integral and fits ``int32`` (so it
    can meet an ``int32`` step exactly), else a Python ``float``.
    """
    v = _concrete_count(name, value, fn)
    (check_positive if positive else check_non_negative)(name, v, fn=fn)
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        v = int(v)
    if isinstance(v, int) and v > _INT32.max:
        v = float(v)
    return v
