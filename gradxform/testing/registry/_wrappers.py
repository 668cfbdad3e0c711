"""Registry entries of `gradxform.wrappers`, each around ``adam(0.01)``."""

from __future__ import annotations

import gradxform as gx
from gradxform.testing.registry._entry import case

_INNER = gx.adam(0.01)


def _plateau_value(params, grads):
    """A negative metric that never improves."""
    del params, grads
    return -1.0


def _plateau_args(step, params, grads):
    del step
    return {"value": _plateau_value(params, grads)}


ENTRIES = [
    case(gx.apply_if_finite, {"inner": _INNER, "max_consecutive_errors": 2},
         reference=lambda ref: ref.apply_if_finite(ref.adam(0.01), 2)),
    case(gx.flatten, {"inner": _INNER}, "adam", reference=lambda ref: ref.adam(0.01)),
    case(gx.MultiSteps, {"opt": _INNER, "every_k_schedule": 2},
         reference=lambda ref: ref.MultiSteps(ref.adam(0.01), 2)),
    case(gx.inject_hyperparams(gx.adam), {"learning_rate": 0.01}, name="inject_hyperparams_adam",
         reference=lambda ref: ref.adam(0.01), optax=False),
    case(gx.reduce_on_plateau, {"factor": 0.5, "patience": 1}, optax=False,
         reference=lambda ref: ref.reduce_on_plateau(factor=0.5, patience=1, value_fn=_plateau_value),
         extra_args_fn=_plateau_args),
    case(gx.reduce_on_plateau, {"factor": 0.5, "patience": 1, "cooldown": 1, "mode": "max"}, "max_cooldown",
         optax=False, extra_args_fn=_plateau_args,
         reference=lambda ref: ref.reduce_on_plateau(
             factor=0.5, patience=1, cooldown=1, mode="max", value_fn=_plateau_value)),
    case(gx.polyak_averaging, {"inner": _INNER, "decay": 0.9}, optax=False, needs_params=True,
         reference=lambda ref: ref.polyak_averaging(ref.adam(0.01), 0.9)),
]
