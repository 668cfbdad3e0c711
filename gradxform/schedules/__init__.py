"""Schedules: pure functions ``step -> float32 value`` for learning rates and other hyperparameters.

Every schedule takes a Python or NumPy integer or a (traced) ``int32`` step and
returns a ``float32`` scalar, inside ``jax.jit`` and ``lax.scan`` alike. The
factories check their arguments when the schedule is built.
"""

from gradxform.schedules._join import (
    join_schedules,
    piecewise_constant_schedule,
    sgdr_schedule,
    warmup_cosine_decay_schedule,
    warmup_exponential_decay_schedule,
)
from gradxform.schedules._schedules import (
    constant_schedule,
    cosine_decay_schedule,
    exponential_decay,
    inverse_time_decay,
    linear_schedule,
    polynomial_schedule,
)

__all__ = [
    "constant_schedule",
    "cosine_decay_schedule",
    "exponential_decay",
    "inverse_time_decay",
    "join_schedules",
    "linear_schedule",
    "piecewise_constant_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]
