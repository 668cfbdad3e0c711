"""Registry entries of `gradxform.wrappers`, each around ``adam(0.01)``."""

from __future__ import annotations

import jax
import jax.numpy as jnp

import gradxform as gx
from gradxform.testing.registry._entry import case

_INNER = gx.adam(0.01)


def _even_steps(step):
    """A should_transform_fn: steps 0, 2, 4, ..."""
    return step % 2 == 0


def _matrix_or_vector(params):
    """Labels for partition: "m" for leaves with two or more axes, "v" for the others."""
    return jax.tree_util.tree_map(lambda p: "m" if jnp.ndim(p) >= 2 else "v", params)


def _global_norm(updates):
    """A measure for snapshot / monitor: the global norm, in float32."""
    leaves = [jnp.sum(jnp.square(jnp.asarray(x).astype(jnp.float32))) for x in jax.tree_util.tree_leaves(updates)]
    return jnp.sqrt(sum(leaves, jnp.zeros([], jnp.float32)))


def _vectors(params):
    """A mask: True for leaves with fewer than two axes (biases, scalars)."""
    return jax.tree_util.tree_map(lambda p: jnp.ndim(p) < 2, params)


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
    case(gx.conditionally_mask, {"inner": _INNER, "should_transform_fn": _even_steps},
         optax_kwargs=lambda optax: {"inner": optax.adam(0.01), "should_transform_fn": _even_steps},
         reference=lambda ref: ref.conditionally_mask(ref.adam(0.01), _even_steps)),
    case(gx.conditionally_transform, {"inner": _INNER, "should_transform_fn": _even_steps},
         optax_kwargs=lambda optax: {"inner": optax.adam(0.01), "should_transform_fn": _even_steps},
         reference=lambda ref: ref.conditionally_transform(ref.adam(0.01), _even_steps)),
    case(gx.apply_every, {"k": 3}),
    case(gx.partition, {"transforms": {"m": _INNER, "v": gx.sgd(0.1, momentum=0.9)}, "param_labels": _matrix_or_vector},
         optax_kwargs=lambda optax: {"transforms": {"m": optax.adam(0.01), "v": optax.sgd(0.1, momentum=0.9)},
                                    "param_labels": _matrix_or_vector},
         reference=lambda ref: ref.partition({"m": ref.adam(0.01), "v": ref.sgd(0.1, momentum=0.9)}, _matrix_or_vector)),
    case(gx.freeze, {"mask": _vectors}, reference=lambda ref: ref.freeze(_vectors)),
    case(gx.selective_transform, {"optimizer": _INNER, "freeze_mask": False},
         optax_kwargs=lambda optax: {"optimizer": optax.adam(0.01), "freeze_mask": False},
         reference=lambda ref: ref.selective_transform(ref.adam(0.01), freeze_mask=False)),
    case(gx.selective_transform, {"optimizer": _INNER, "freeze_mask": _vectors}, "mask_fn", optax=False,
         reference=lambda ref: ref.selective_transform(ref.adam(0.01), freeze_mask=_vectors)),
    case(gx.snapshot, {"measure_name": "norm", "measure": _global_norm}, reference=lambda ref: ref.identity()),
    case(gx.monitor, {"measures": {"norm": _global_norm, "ema": gx.measure_with_ema(_global_norm, decay=0.9)}},
         optax_kwargs=lambda optax: {"measures": {"norm": _global_norm,
                                                "ema": optax.measure_with_ema(_global_norm, decay=0.9)}},
         reference=lambda ref: ref.identity()),
]
