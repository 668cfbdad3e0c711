"""Registry entries of gx.contrib's MoMo, MoMo-Adam, Sophia and normalize.

SAM is a wrapper needing a gradient function (and ``sync_period`` calls per step) and
Hutchinson's estimator is random and needs the objective: both are checked against
optax step by step in tests/test_contrib_misc.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

import gradxform as gx
from gradxform.testing.registry._entry import case


def _value(step, params, grads):
    """The loss for MoMo's ``value=``: 1/2 |params|^2 + 0.1 (above the lower bound 0), float32."""
    del step, grads
    leaves = [jnp.asarray(p).astype(jnp.float32) for p in jax.tree_util.tree_leaves(params)]
    return {"value": 0.1 + 0.5 * sum((jnp.sum(p * p) for p in leaves), jnp.zeros((), jnp.float32))}


def _given_diagonal() -> gx.GradientTransformationExtraArgs:
    """A Hessian-diagonal function for Sophia that returns the ``hessian_diag=`` it is given."""

    def init(params):
        del params
        return gx.EmptyState()

    def update(updates, state, params=None, *, hessian_diag, **extra_args):
        del updates, params, extra_args
        return hessian_diag, state

    return gx.GradientTransformationExtraArgs(init, update)


def _hessian_diag(step, params, grads):
    """A Hessian diagonal of mixed signs (a negative one meets Sophia's floor eps) that changes with the params."""
    del step, grads
    return {"hessian_diag": jax.tree_util.tree_map(lambda p: 4.0 * p + 1.0, params)}


ENTRIES = [
    # MoMo: update takes value= as optax's does
    case(gx.contrib.momo, {}, optax="contrib.momo", extra_args_fn=_value, optax_extra_args=True, needs_params=True,
         accuracy_budget=1.2e-5),  # tau_k = (f - f* - gamma + <d, x>) / |d|^2 cancels: optax measures the same 5.8e-6
    case(gx.contrib.momo, {"learning_rate": 0.5, "beta": 0.5, "lower_bound": 0.05, "adapt_lower_bound": True},
         "adapt", optax="contrib.momo", extra_args_fn=_value, optax_extra_args=True, needs_params=True,
         accuracy_budget=1.5e-4),  # the reset lower bound sits at the model's value: 7.0e-5, optax's too
    # weight decay: optax does not divide the gradient step by 1 + lr * wd (the paper does)
    case(gx.contrib.momo, {"learning_rate": 0.5, "weight_decay": 0.1}, "weight_decay", optax=False,
         extra_args_fn=_value, needs_params=True, accuracy_budget=6e-6),
    case(gx.contrib.momo_adam, {}, optax="contrib.momo_adam", extra_args_fn=_value, optax_extra_args=True,
         needs_params=True),
    case(gx.contrib.momo_adam, {"learning_rate": 0.1, "weight_decay": 0.1, "adapt_lower_bound": True},
         "weight_decay", optax=False, extra_args_fn=_value, needs_params=True, accuracy_budget=6e-5),
    # Sophia with a given Hessian diagonal; optax=False: optax bias-corrects m_t and steps with the Hessian
    # average from before the refresh (tests/test_contrib_misc.py pins that difference down against optax)
    case(gx.contrib.sophia, {"learning_rate": 0.1, "gamma": 0.5, "b2": 0.5, "update_interval": 2,
                             "hessian_diagonal_fn": _given_diagonal()},
         optax=False, extra_args_fn=_hessian_diag, needs_params=True),
    case(gx.contrib.sophia, {"learning_rate": 0.1, "b1": 0.5, "gamma": 2.0, "clip_threshold": None, "eps": 0.5,
                             "update_interval": 1, "weight_decay": 0.0, "hessian_diagonal_fn": _given_diagonal()},
         "no_clip", optax=False, extra_args_fn=_hessian_diag, needs_params=True),
    # SAM's ascent direction; all-zero gradients give zeros (optax: NaN)
    case(gx.contrib.normalize, optax="contrib.normalize"),
]
