"""Registry entries of gx.contrib's parameter-free rules: COCOB-Backprop, DoG, DoWG.

Each keeps the initial params in its state by design (``init_reads_params=True``)
and reads the current params in ``update`` (``needs_params=True``).
"""

from __future__ import annotations

import jax.numpy as jnp

import gradxform as gx
from gradxform.testing.registry._entry import case


def _decaying(count):
    """A schedule for the COCOB variant: COCOB ignores a constant learning rate, not a schedule."""
    return 1.0 / (1.0 + 0.5 * jnp.asarray(count).astype(jnp.float32))


_FREE = {"needs_params": True, "init_reads_params": True}

# accuracy_budget: about twice the float32 error measured by tests/test_accuracy.py over seeds
# 0-2 (optax's, in parentheses, is the same). COCOB's update (w_1 + beta (L + R)) - w_t
# and DoG/DoWG's distance |x_t - x_0| read float32 params, each rounded to 6e-8 relatively:
# COCOB 2.3e-5 (with a schedule 7e-6); DoG's default first steps move x by 1e-6 relatively, a few
# ulps, so its distance and then its step size are known to about 1% in float32 (1.0e-2,
# optax the same); DoWG's default start 4.4e-6 (the same as optax).

ENTRIES = [
    # COCOB-Backprop (Orabona & Tommasi, 2017, Algorithm 2)
    case(gx.contrib.scale_by_cocob, optax="contrib.scale_by_cocob", accuracy_budget=5e-5, **_FREE),
    case(gx.contrib.cocob, optax="contrib.cocob", accuracy_budget=5e-5, **_FREE),
    case(gx.contrib.cocob, {"learning_rate": _decaying, "alpha": 10.0, "weight_decay": 1e-2},
         "schedule_decay", optax="contrib.cocob", accuracy_budget=1.5e-5, **_FREE),
    # DoG (Ivgi et al., 2023, Algorithm 1), one step size for the whole tree
    case(gx.contrib.dog, optax="contrib.dog", accuracy_budget=2e-2, **_FREE),
    case(gx.contrib.dog, {"learning_rate": 0.5, "init_step": ("learning_rate", 0.1), "weight_decay": 1e-2},
         "learning_rate_decay", optax="contrib.dog", **_FREE),
    case(gx.contrib.dog, {"init_step": ("distance", 0.1), "eps": 0.0}, "distance", optax="contrib.dog", **_FREE),
    # DoWG (Khaled et al., 2023, Algorithm 1)
    case(gx.contrib.dowg, optax="contrib.dowg", accuracy_budget=1e-5, **_FREE),
    case(gx.contrib.dowg, {"learning_rate": 0.5, "init_estim_sq_dist": 1e-2, "weight_decay": 1e-2},
         "sq_dist_decay", optax="contrib.dowg", **_FREE),
]
