"""Registry entries of the layer-wise and factored rules: Adafactor, LAMB, LARS, Fromage, NovoGrad, SM3."""

from __future__ import annotations

import math

import gradxform as gx
from gradxform.testing.registry._entry import case

# The default example trees hold leaves of rank 0 to 2 with axes of 2 and 3 entries (and
# an empty axis): min_dim_size_to_factor=2 factors every matrix there, 128 (the default)
# none; the registry's own parity trees add a (3, 4) matrix.
ENTRIES = [
    # Adafactor (Shazeer & Stern, 2018)
    case(gx.scale_by_factored_rms),
    case(gx.scale_by_factored_rms, {"min_dim_size_to_factor": 2}, "factored"),
    case(gx.scale_by_factored_rms, {"min_dim_size_to_factor": 3, "decay_rate": 0.5, "step_offset": -2,
                                    "epsilon": 1e-6}, "offset"),
    # u = ||theta|| g grows the params of tests/test_accuracy.py (which follow the updates)
    # geometrically, to inf in float32 by step 30, optax's too: no accuracy law there (budget
    # inf, and no optax baseline, whose ratio inf/inf fails); its optax parity is in
    # tests/test_layerwise.py.
    case(gx.scale_by_param_block_norm, needs_params=True, optax=False, accuracy_budget=math.inf),
    case(gx.scale_by_param_block_rms, needs_params=True),
    case(gx.adafactor, needs_params=True),
    # momentum 0.875 is exact in float32: gx.ema's weights f32(0.9) + f32(1 - 0.9) do not sum
    # to 1, a steady-state bias of 2.4e-7 that fails test_accuracy's 1.25x-optax ratio.
    case(gx.adafactor, {"learning_rate": 0.1, "min_dim_size_to_factor": 2, "momentum": 0.875,
                        "weight_decay_rate": 0.01}, "factored_momentum", needs_params=True),
    case(gx.adafactor, {"learning_rate": 0.01, "min_dim_size_to_factor": 2, "clipping_threshold": None,
                        "multiply_by_parameter_scale": False, "decay_offset": -2}, "plain"),
    # trust ratios: LARS (You et al., 2017), LAMB (You et al., 2020), Fromage (Bernstein et al., 2020)
    case(gx.scale_by_trust_ratio, needs_params=True),
    case(gx.scale_by_trust_ratio, {"min_norm": 0.1, "trust_coefficient": 0.5, "eps": 1e-3}, "clipped",
         needs_params=True),
    case(gx.lamb, {"learning_rate": 0.01, "weight_decay": 0.01}, needs_params=True),
    case(gx.lars, {"learning_rate": 0.1, "weight_decay": 0.01}, needs_params=True),
    case(gx.lars, {"learning_rate": 0.1, "nesterov": True, "trust_coefficient": 0.01}, "nesterov",
         needs_params=True),
    case(gx.fromage, {"learning_rate": 0.1}, needs_params=True),
    # NovoGrad (Ginsburg et al., 2019)
    case(gx.scale_by_novograd),
    case(gx.scale_by_novograd, {"weight_decay": 0.1, "eps_root": 1e-8}, "decay", needs_params=True),
    case(gx.novograd, {"learning_rate": 0.01}),
    # SM3 (Anil et al., 2019): optax 0.2.8 fails on the scalar leaf of the parity trees (its
    # parity on trees without one is in tests/test_layerwise.py).
    case(gx.scale_by_sm3, optax=False),
    case(gx.scale_by_sm3, {"b1": 0.5, "b2": 0.9, "eps": 1e-6}, "ema", optax=False),
    case(gx.sm3, {"learning_rate": 0.1}, optax=False),
]
