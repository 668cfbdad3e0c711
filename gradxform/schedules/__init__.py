"""Schedules: pure functions ``step -> float32 value`` for learning rates and other hyperparameters.

Every schedule takes a Python or NumPy integer or a (traced) ``int32`` step and
returns a ``float32`` scalar, inside ``jax.jit`` and ``lax.scan`` alike. The
factories check their arguments when the schedule is built.

As in ``optax.schedules``, this namespace also holds the hyperparameter
injection wrappers (`inject_hyperparams`, `inject_stateful_hyperparams`, their
states), the stateful-schedule interface (`StatefulSchedule`, `WrappedSchedule`)
and the `Schedule` type.
"""

from gradxform._base import Schedule
from gradxform.schedules._interpolate import (
    cosine_onecycle_schedule,
    linear_onecycle_schedule,
    piecewise_interpolate_schedule,
    warmup_constant_schedule,
)
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
from gradxform.wrappers._inject import (
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    StatefulSchedule,
    WrappedSchedule,
    inject_hyperparams,
    inject_stateful_hyperparams,
)

__all__ = [
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "Schedule",
    "StatefulSchedule",
    "WrappedSchedule",
    "constant_schedule",
    "cosine_decay_schedule",
    "cosine_onecycle_schedule",
    "exponential_decay",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "inverse_time_decay",
    "join_schedules",
    "linear_onecycle_schedule",
    "linear_schedule",
    "piecewise_constant_schedule",
    "piecewise_interpolate_schedule",
    "polynomial_schedule",
    "sgdr_schedule",
    "warmup_constant_schedule",
    "warmup_cosine_decay_schedule",
    "warmup_exponential_decay_schedule",
]
