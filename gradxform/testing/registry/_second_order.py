"""Registry entries of `gradxform.second_order`: AdaHessian, Newton, L-BFGS.

The extra arguments are deterministic functions of the gradients' shapes and
values only (never of the step), so the NumPy references, which get the same
functions, compute the same ones whatever step numbering a harness uses:

* ``hessian_diag = g * g + 1`` (>= 1, so no update blows up in float16);
* ``hessian``: a diagonally dominant symmetric matrix of the flattened size
  (positive definite), or one with alternating signs on the diagonal (indefinite,
  to exercise the Levenberg damping);
* for the line searches, ``value_fn = 0.5 * sum |p|^2`` with ``value``
  its value at the params and ``grad`` the given gradients.

`scale_by_lbfgs` and `lbfgs` name no optax counterpart here: with random
gradients, pairs of negative curvature occur, which gradxform skips and optax
keeps (see `scale_by_lbfgs`'s note); tests/test_lbfgs.py checks the parity with
optax on a convex problem, where the two agree.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx
from gradxform.testing.registry._entry import case


def _at_least_float32(g):
    g = jnp.asarray(g)
    return g if g.dtype == np.float64 else g.astype(np.float32)


def hessian_diag_fn(params, grads):
    """``g * g + 1`` leaf by leaf, in at least float32 (a float16 gradient of 300 would square
    to inf in float16); works on NumPy and JAX arrays alike."""
    del params
    return jax.tree_util.tree_map(lambda g: _at_least_float32(g) * _at_least_float32(g) + 1.0, grads)


def _size(tree) -> int:
    return int(sum(np.size(x) for x in jax.tree_util.tree_leaves(tree)))


def dense_hessian_fn(params, grads, *, indefinite: bool = False) -> np.ndarray:
    r"""A fixed symmetric ``(p, p)`` matrix: diagonal :math:`\pm(1 + 0.01 i)`, off-diagonal :math:`0.02/(1+|i-j|)^2`.

    The off-diagonal row sums stay below 0.07, so with the positive diagonal the
    matrix is positive definite; with alternating signs (``indefinite``) it is not.
    """
    del params
    p = _size(grads)
    i = np.arange(p)
    off = 0.02 / (1.0 + np.abs(i[:, None] - i[None, :])) ** 2
    diag = 1.0 + 0.01 * i
    if indefinite:
        diag = diag * np.where(i % 2 == 0, 1.0, -1.0)
    h = off - np.diag(np.diag(off)) + np.diag(diag)
    return h.astype(np.float32)


def _indefinite_hessian_fn(params, grads):
    return dense_hessian_fn(params, grads, indefinite=True)


def half_squared_norm(params):
    """``0.5 * sum |p|^2`` over the leaves, in float32: the line searches' test objective."""
    leaves = jax.tree_util.tree_leaves(params)
    total = jnp.zeros([], jnp.float32)
    for x in leaves:
        total = total + 0.5 * jnp.sum(jnp.square(jnp.asarray(x).astype(jnp.float32)))
    return total


# A `Partial` is a pytree without leaves, so it can be an argument of a jitted update; one
# object for every step, so that a harness passing it as a static argument does not retrace.
_VALUE_FN = jax.tree_util.Partial(half_squared_norm)


def _linesearch_args(step, params, grads):
    del step
    return {"value": half_squared_norm(params), "grad": grads, "value_fn": _VALUE_FN}


def _hessian_diag_args(step, params, grads):
    del step
    return {"hessian_diag": hessian_diag_fn(params, grads)}


def _hessian_args(step, params, grads):
    del step
    return {"hessian": dense_hessian_fn(params, grads)}


def _indefinite_hessian_args(step, params, grads):
    del step
    return {"hessian": _indefinite_hessian_fn(params, grads)}


ENTRIES = [
    # AdaHessian
    case(gx.second_order.scale_by_adahessian, {},
         reference=lambda ref: ref.scale_by_adahessian(hessian_diag_fn=hessian_diag_fn),
         extra_args_fn=_hessian_diag_args, optax=False),
    case(gx.second_order.scale_by_adahessian, {"hessian_power": 0.5, "spatial_average": True}, "spatial_k05",
         reference=lambda ref: ref.scale_by_adahessian(
             hessian_power=0.5, spatial_average=True, hessian_diag_fn=hessian_diag_fn),
         extra_args_fn=_hessian_diag_args, optax=False),
    case(gx.second_order.adahessian, {"learning_rate": 0.1, "weight_decay": 0.01},
         reference=lambda ref: ref.adahessian(0.1, weight_decay=0.01, hessian_diag_fn=hessian_diag_fn),
         extra_args_fn=_hessian_diag_args, optax=False, needs_params=True),
    # Newton
    case(gx.second_order.scale_by_newton, {},
         reference=lambda ref: ref.scale_by_newton(hessian_fn=dense_hessian_fn),
         extra_args_fn=_hessian_args, optax=False),
    case(gx.second_order.scale_by_newton, {"damping": 0.5}, "damped_indefinite",
         reference=lambda ref: ref.scale_by_newton(0.5, hessian_fn=_indefinite_hessian_fn),
         extra_args_fn=_indefinite_hessian_args, optax=False),
    # L-BFGS
    case(gx.second_order.scale_by_lbfgs, {"memory_size": 3}, optax=False, needs_params=True),
    # accuracy_budget: none can be set. On random gradients (no objective behind them) the
    # curvature pairs make the trajectory itself ill-conditioned: float32 and float64 part
    # (1e-3 relative at step 5, 1e8 by step 14), so check_accuracy only checks that it runs.
    case(gx.second_order.lbfgs, {"learning_rate": 0.1, "memory_size": 4, "linesearch": None}, "fixed_step",
         reference=lambda ref: ref.lbfgs(learning_rate=0.1, memory_size=4), optax=False, needs_params=True,
         accuracy_budget=math.inf),
    case(gx.second_order.lbfgs, {"memory_size": 4}, "zoom", reference=None, optax=False,
         extra_args_fn=_linesearch_args, needs_params=True, slow=True),
    case(gx.second_order.lbfgs,
         {"memory_size": 4, "linesearch": gx.second_order.scale_by_backtracking_linesearch(10, store_grad=True)},
         "backtracking", reference=None, optax=False, extra_args_fn=_linesearch_args, needs_params=True,
         slow=True),
]
