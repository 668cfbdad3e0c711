"""Registry entries of `gradxform.transforms`: the first-order building blocks and optimizers."""

from __future__ import annotations

import jax.numpy as jnp

import gradxform as gx
from gradxform.testing.registry._entry import case


def _decaying_step_size(count):
    return 0.1 / (1.0 + jnp.asarray(count, jnp.float32))


ENTRIES = [
    # scaling and clipping
    case(gx.identity),
    case(gx.scale, {"step_size": -0.3}),
    case(gx.scale_by_learning_rate, {"learning_rate": 0.05}),
    case(gx.scale_by_schedule, {"step_size_fn": _decaying_step_size}, reference=None),
    case(gx.clip, {"max_delta": 0.4}),
    case(gx.clip_by_global_norm, {"max_norm": 1.0}),
    # momentum
    case(gx.trace, {"decay": 0.9}),
    case(gx.trace, {"decay": 0.8, "nesterov": True}, "nesterov"),
    case(gx.ema, {"decay": 0.9}),
    case(gx.ema, {"decay": 0.7, "debias": False}, "nodebias"),
    case(gx.sgd, {"learning_rate": 0.1}),
    case(gx.sgd, {"learning_rate": 0.1, "momentum": 0.9}, "momentum"),
    case(gx.sgd, {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True}, "nesterov"),
    # AdaGrad
    case(gx.scale_by_rss),
    # Goodfellow et al. (2016), Algorithm 8.4: r_0 = 0, delta outside the root.
    case(gx.scale_by_rss, {"initial_accumulator_value": 0.0, "eps": 1e-7, "eps_in_sqrt": False}, "book",
         optax=False),
    case(gx.adagrad, {"learning_rate": 0.1}),
    # RMSProp
    case(gx.scale_by_rms),
    case(gx.scale_by_rms, {"decay": 0.9, "eps": 1e-6, "eps_in_sqrt": False, "bias_correction": True}, "pytorch"),
    case(gx.scale_by_stddev),
    case(gx.rmsprop, {"learning_rate": 0.01}),
    case(gx.rmsprop, {"learning_rate": 0.01, "centered": True, "momentum": 0.9}, "centered_momentum"),
    case(gx.rmsprop, {"learning_rate": 0.01, "eps": 1e-6, "eps_in_sqrt": False}, "pytorch"),
    # Adam, NAdam, AdamW
    case(gx.scale_by_adam),
    case(gx.scale_by_adam, {"eps_root": 1e-8, "nesterov": True}, "nesterov_eps_root"),
    case(gx.adam, {"learning_rate": 0.01}),
    case(gx.adam, {"learning_rate": 0.01, "nesterov": True}, "nesterov"),
    case(gx.adamw, {"learning_rate": 0.01, "weight_decay": 0.1}, needs_params=True),
    # AdaBelief
    case(gx.scale_by_belief),
    case(gx.adabelief, {"learning_rate": 0.01}),
    # AdaDelta
    case(gx.scale_by_adadelta),
    case(gx.adadelta, {"learning_rate": 1.0}),
    # learning_rate=None descends (Zeiler's rule); optax 0.2.8's ascends, so no optax parity.
    case(gx.adadelta, {}, "no_lr", reference=lambda ref: ref.adadelta(variant="paper"), optax=False),
    # Rprop (iRprop-): optax 0.2.8 returns the previous step's update, so no optax parity.
    case(gx.scale_by_rprop, {"learning_rate": 0.01}, optax=False),
    case(gx.rprop, {"learning_rate": 0.01}, optax=False),
    # Lion
    case(gx.scale_by_lion),
    case(gx.scale_by_lion, {"mode": "smooth", "smooth_beta": 2.0}, "smooth"),
    case(gx.lion, {"learning_rate": 0.01}, needs_params=True),
    # regularization
    case(gx.add_decayed_weights, {"weight_decay": 0.1}, needs_params=True),
    case(gx.add_l1_decay, {"l1": 0.01}, optax=False, needs_params=True),
    case(gx.add_noise, {"eta": 0.01, "gamma": 0.55, "key": 0}, reference=None, optax=False, random=True),
]
