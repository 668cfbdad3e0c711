"""Registry entries of Adam's variants: Adamax, AMSGrad, NAdam, RAdam, Yogi, Adan."""

from __future__ import annotations

import gradxform as gx
from gradxform.testing.registry._entry import case

ENTRIES = [
    # Adamax
    case(gx.scale_by_adamax),
    case(gx.adamax, {"learning_rate": 0.01}),
    case(gx.adamaxw, {"learning_rate": 0.01, "weight_decay": 0.1}, needs_params=True),
    # AMSGrad: optax's max over the bias-corrected nu, and the paper's (no bias corrections; the
    # paper has no eps either, but eps = 0 gives 0 / 0 where the gradients have all been 0)
    case(gx.scale_by_amsgrad),
    case(gx.scale_by_amsgrad, {"bias_correction_mu": False, "bias_correction_nu": False}, "paper"),
    case(gx.amsgrad, {"learning_rate": 0.01}),
    # NAdam (adam with nesterov=True, as optax's partials)
    case(gx.nadam, {"learning_rate": 0.01}),
    case(gx.nadamw, {"learning_rate": 0.01, "weight_decay": 0.1}, needs_params=True),
    # RAdam: optax 0.2.8 forms rho_t in float32 with cancellation (r_t ~1% off at t = 6 for
    # b2 = 0.999), so optax parity is checked where its rho_t is accurate (b2 = 0.9).
    case(gx.scale_by_radam, optax=False),
    case(gx.scale_by_radam, {"b2": 0.9}, "b2_0.9"),
    case(gx.scale_by_radam, {"b2": 0.9, "threshold": 4.0, "nesterov": True}, "nesterov"),
    case(gx.radam, {"learning_rate": 0.01, "b2": 0.9}),
    # Yogi
    case(gx.scale_by_yogi),
    case(gx.scale_by_yogi, {"eps_root": 1e-8, "initial_accumulator_value": 0.1}, "init"),
    case(gx.yogi, {"learning_rate": 0.01}),
    # Adan: optax 0.2.8 scales the gradient difference by 1 - b2 instead of b2 (paper and
    # authors' code); the two agree at b2 = 0.5, where optax parity is checked. The other
    # rates are binary fractions too: optax's float32 1 - b**t for b1 = 0.98 is 1e-6 off, and
    # m_hat + b2 v_hat cancels, so with the defaults optax is 1e-4 off the float64 reference
    # on some elements (gradxform: 1e-5).
    case(gx.scale_by_adan, optax=False),
    case(gx.scale_by_adan, {"b1": 0.75, "b2": 0.5, "b3": 0.875, "eps_root": 1e-8}, "b2_half"),
    case(gx.adan, {"learning_rate": 0.01, "weight_decay": 0.1}, optax=False, needs_params=True),
    case(gx.adan, {"learning_rate": 0.01, "b1": 0.75, "b2": 0.5, "b3": 0.875, "weight_decay": 0.1}, "b2_half",
         needs_params=True),
]
