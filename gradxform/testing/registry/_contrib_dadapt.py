"""Registry entries of gx.contrib's learning-rate-free rules: D-Adaptation AdamW, Prodigy, Mechanic.

Prodigy and Mechanic keep the initial params in their state by design (``init_reads_params=True``);
D-Adaptation's init reads only shapes and dtypes, so the ``init_value_independent`` law holds for it.
"""

from __future__ import annotations

import gradxform as gx
from gradxform.testing.registry._entry import case


def _warmup(step):
    """A linear warm-up to 1.0 over 4 steps (the schedules these rules are meant for)."""
    import jax.numpy as jnp

    return jnp.minimum((jnp.asarray(step, jnp.float32) + 1) / 4, 1.0)


# d_0 (estim_lr0) and s_init are raised from their defaults (1e-6) so that the updates (about d_0 in
# size at first) stand well above the reference check's atol of 1e-6.
ENTRIES = [
    # D-Adaptation AdamW
    case(gx.contrib.dadapt_adamw, {"estim_lr0": 1e-2}, optax="contrib.dadapt_adamw", needs_params=True),
    case(gx.contrib.dadapt_adamw, {"learning_rate": 0.5, "betas": (0.5, 0.9), "eps": 1e-6, "estim_lr0": 0.1,
                                   "weight_decay": 0.1}, "decay", optax="contrib.dadapt_adamw", needs_params=True),
    # Prodigy
    case(gx.contrib.prodigy, {"estim_lr0": 1e-2}, optax="contrib.prodigy", needs_params=True, init_reads_params=True),
    case(gx.contrib.prodigy, {"learning_rate": _warmup, "beta3": 0.9, "estim_lr0": 0.1, "estim_lr_coef": 2.0,
                              "weight_decay": 0.1, "safeguard_warmup": True}, "safeguard",
         optax="contrib.prodigy", needs_params=True, init_reads_params=True),
    # Mechanic: optax recovers Delta_t as (x_t - x_1) / (sum(s_t) + eps), 1% off the paper at the default
    # s_init, and returns its float32 update as a difference of params (quantized to their ulp); parity
    # with it is checked on the params' trajectory in tests/test_contrib_dadapt.py.
    # Delta_t is read back from the float32 params, whose rounding (an ulp of x) is divided by sum(s_t):
    # float32 runs leave float64 ones by 3.5e-5 at s_init = 1e-2 (seeds 0-2; budget twice that), and by
    # up to 50% at the default s_init = 1e-6 (optax alike).
    case(gx.contrib.mechanize, {"base_optimizer": gx.sgd(0.1), "s_init": 1e-2},
         reference=lambda ref: ref.mechanize(ref.sgd(0.1), s_init=1e-2),
         optax=False, needs_params=True, init_reads_params=True, accuracy_budget=7e-5),
    case(gx.contrib.mechanize, {"base_optimizer": gx.adam(0.1), "weight_decay": 0.0, "s_init": 0.1,
                                "num_betas": 3}, "adam",
         reference=lambda ref: ref.mechanize(ref.adam(0.1), weight_decay=0.0, s_init=0.1, num_betas=3),
         optax=False, needs_params=True, init_reads_params=True, accuracy_budget=7e-5),
]
