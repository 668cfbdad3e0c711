"""Registry entries of gx.contrib's Adam-family rules: ACProp, AdEMAMix, Simplified-AdEMAMix, ADOPT."""

from __future__ import annotations

import jax.numpy as jnp

import gradxform as gx
from gradxform.testing.registry._entry import case


def _b3_warmup(step):
    """A schedule of AdEMAMix's slow decay (the paper warms b3 up; a short ramp here)."""
    t = jnp.asarray(step, jnp.float32)
    return 0.9 + 0.09 * t / (t + 4)


def _alpha_warmup(step):
    """A linear warm-up of AdEMAMix's mixing weight to 5 over 8 steps."""
    return 5.0 * jnp.minimum(jnp.asarray(step, jnp.float32) / 8, 1.0)


ENTRIES = [
    # ACProp: state ScaleByBeliefState, as optax's
    case(gx.contrib.scale_by_acprop, optax="contrib.scale_by_acprop"),
    case(gx.contrib.acprop, {"learning_rate": 0.01}, optax="contrib.acprop"),
    case(gx.contrib.acprop, {"learning_rate": 0.01, "b1": 0.5, "b2": 0.9, "eps": 1e-3, "eps_root": 1e-8,
                             "weight_decay": 0.1}, "decay", optax="contrib.acprop"),
    # AdEMAMix: b3 and alpha may be schedules (of the 0-based count_m2)
    case(gx.contrib.scale_by_ademamix, optax="contrib.scale_by_ademamix"),
    case(gx.contrib.ademamix, {"learning_rate": 0.01}, optax="contrib.ademamix"),
    case(gx.contrib.ademamix, {"learning_rate": 0.01, "b3": _b3_warmup, "alpha": _alpha_warmup, "eps_root": 1e-8,
                               "weight_decay": 0.1}, "schedules", optax="contrib.ademamix"),
    # Simplified-AdEMAMix
    case(gx.contrib.scale_by_simplified_ademamix, {"alpha": 2.0}, optax="contrib.scale_by_simplified_ademamix"),
    case(gx.contrib.simplified_ademamix, {"learning_rate": 0.01}, optax="contrib.simplified_ademamix"),
    case(gx.contrib.simplified_ademamix, {"learning_rate": 0.01, "alpha": _alpha_warmup, "weight_decay": 0.1},
         "schedule", optax="contrib.simplified_ademamix"),
    # ADOPT: state ScaleByAdamState, as optax's; the first update only sets v_0
    case(gx.contrib.scale_by_adopt, optax="contrib.scale_by_adopt"),
    case(gx.contrib.adopt, {"learning_rate": 0.01}, optax="contrib.adopt"),
    case(gx.contrib.scale_by_adopt, {"b2": 0.99, "nesterov": True}, "nesterov", optax="contrib.scale_by_adopt"),
    case(gx.contrib.scale_by_adopt, {"b2": 0.99, "use_clipping": False}, "no_clipping",
         optax="contrib.scale_by_adopt"),
]
