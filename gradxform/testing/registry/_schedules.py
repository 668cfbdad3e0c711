"""Registry entries of `inject_stateful_hyperparams` (the schedules themselves are not transformations).

optax's counterpart cannot be named by one function (it is
``optax.inject_stateful_hyperparams(optax.adam)``), so optax parity and the state
layout are checked in tests/test_schedules_more.py.
"""

from __future__ import annotations

import jax.numpy as jnp

import gradxform as gx
from gradxform.testing.registry._entry import case


def _lr(count):
    """0.01 / (1 + count / 4), in float32."""
    return 0.01 / (1.0 + jnp.asarray(count).astype(jnp.float32) / 4)


ENTRIES = [
    case(gx.inject_stateful_hyperparams(gx.adam), {"learning_rate": 0.01},
         name="inject_stateful_hyperparams_adam", reference=lambda ref: ref.adam(0.01), optax=False),
    case(gx.inject_stateful_hyperparams(gx.sgd),
         {"learning_rate": gx.schedules.WrappedSchedule(_lr), "momentum": 0.9},
         name="inject_stateful_hyperparams_sgd_schedule", optax=False,
         reference=lambda ref: ref.sgd(lambda count: 0.01 / (1.0 + count / 4), momentum=0.9)),
]
