"""Registry entries of Schedule-Free (Defazio et al., 2024) and MADGRAD (Defazio & Jelassi, 2021).

Both keep the initial params in their state by design (``z_1 = y_1``, ``x_0``), so
``init_reads_params=True`` waives ``init_value_independent`` for them. The warmup
variants have no optax counterpart: optax 0.2.8 steps with the previous warmup value
(tests/test_contrib_schedule_free.py shows the difference).
"""

from __future__ import annotations

import gradxform as gx
from gradxform.testing.registry._entry import case

_OWN = dict(needs_params=True, init_reads_params=True)
# Schedule-Free's float32 error is that of z_t, stored in float32: one ulp(z) per step, relative to
# a step that is smaller than z (measured 1.6e-6; 3.8e-6 during a warmup; optax's 6e-6 to 1.6e-5).
_SF = dict(_OWN, accuracy_budget=3.5e-6)

ENTRIES = [
    # MADGRAD
    case(gx.contrib.madgrad, {"learning_rate": 0.1}, optax="contrib.madgrad", **_OWN),
    case(gx.contrib.madgrad, {"learning_rate": 0.05, "momentum": 0.0, "weight_decay": 0.1, "eps": 0.0},
         "dual_averaging", optax="contrib.madgrad", **_OWN),
    case(gx.contrib.scale_by_madgrad, {"learning_rate": 0.1}, optax="contrib.scale_by_madgrad", **_OWN),
    # Schedule-Free
    case(gx.contrib.schedule_free_sgd, {"learning_rate": 0.1}, optax="contrib.schedule_free_sgd", **_SF),
    case(gx.contrib.schedule_free_sgd, {"learning_rate": 0.5, "warmup_steps": 3, "b1": 0.8, "weight_decay": 0.01},
         "warmup", optax=False, **_OWN),
    case(gx.contrib.schedule_free_adamw, {"learning_rate": 0.1, "weight_decay": 0.01},
         optax="contrib.schedule_free_adamw", **_SF),
    case(gx.contrib.schedule_free_adamw, {"learning_rate": 0.1, "warmup_steps": 4, "b1": 0.95, "b2": 0.99},
         "warmup", optax=False, **dict(_OWN, accuracy_budget=8e-6)),
    case(gx.contrib.schedule_free, {"base_optimizer": gx.scale_by_learning_rate(0.1), "learning_rate": 0.1,
                                    "b1": 0.8, "weight_lr_power": 1.0},
         reference=lambda ref: ref.schedule_free(ref.scale_by_learning_rate(0.1), 0.1, b1=0.8, weight_lr_power=1.0),
         optax="contrib.schedule_free",
         optax_kwargs=lambda optax: {"base_optimizer": optax.scale_by_learning_rate(0.1), "learning_rate": 0.1,
                                     "b1": 0.8, "weight_lr_power": 1.0},
         **_SF),
]
