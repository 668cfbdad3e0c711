"""Registry entries of the sign, optimistic, Polyak, DoG, centralization and normalization rules."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import gradxform as gx
from gradxform.testing.registry._entry import case


def _value(step, params, grads):
    """The objective's value for the Polyak step: 1/2 |params|^2 + 0.1 (f* = 0 below it), float32."""
    del step, grads
    leaves = [jnp.asarray(p).astype(jnp.float32) for p in jax.tree_util.tree_leaves(params)]
    return {"value": 0.1 + 0.5 * sum((jnp.sum(p * p) for p in leaves), jnp.zeros((), jnp.float32))}


ENTRIES = [
    # signSGD, Signum
    case(gx.scale_by_sign),
    case(gx.sign_sgd, {"learning_rate": 0.1}),
    case(gx.signum, {"learning_rate": 0.1}),
    case(gx.signum, {"learning_rate": 0.05, "beta": 0.5}, "beta"),
    # optimistic gradient
    case(gx.scale_by_optimistic_gradient),
    case(gx.scale_by_optimistic_gradient, {"alpha": 0.5, "beta": 2.0}, "alpha_beta"),
    case(gx.optimistic_gradient_descent, {"learning_rate": 0.1}),
    case(gx.optimistic_adam, {"learning_rate": 0.01}),
    case(gx.optimistic_adam, {"learning_rate": 0.01, "optimism": 0.005, "nesterov": False}, "optimism"),
    case(gx.optimistic_adam_v2, {"learning_rate": 0.01}),
    case(gx.optimistic_adam_v2, {"learning_rate": 0.01, "alpha": 0.5, "beta": 0.3, "nesterov": False}, "plain"),
    # Polyak step (update takes value=; optax's parity is in tests/test_misc_transforms.py)
    case(gx.scale_by_polyak, {}, extra_args_fn=_value, optax=False),
    case(gx.scale_by_polyak, {"f_min": 3.0, "max_learning_rate": 0.5, "eps": 1e-3, "variant": "sps+"}, "plus",
         extra_args_fn=_value, optax=False),
    case(gx.polyak_sgd, {"max_learning_rate": 0.5, "scaling": 2.0}, extra_args_fn=_value, optax=False),
    # normalization, centralization
    case(gx.normalize_by_update_norm),
    case(gx.normalize_by_update_norm, {"scale_factor": -0.5, "eps": 0.0}, "no_eps"),
    case(gx.centralize),
    # noisy SGD: random (its distribution is checked in tests/test_misc_transforms.py)
    case(gx.noisy_sgd, {"learning_rate": 0.1, "key": 0}, reference=None, optax=False, random=True),
    # DoG: init keeps theta_0 (API.md waives the init_value_independent law for it)
    case(gx.scale_by_distance_over_gradients, {"reps_rel": 1e-2, "global_scale": -1.0}, needs_params=True,
         init_reads_params=True),
]
