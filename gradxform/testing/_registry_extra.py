"""Registry entries for the second-order methods and the wrappers (issue 5).

Listed in ``gradxform.testing._registry.EXTRA_ENTRY_MODULES`` (the registry
imports this module at its end). Importing this module first works too: the
registry, imported from here, finds ``ENTRIES`` through the module
``__getattr__`` below before this module has finished.

The extra arguments are deterministic functions of the gradients' shapes and
values only (never of the step), so the NumPy references, which get the same
functions, compute the same ones whatever step numbering a harness uses:

* ``hessian_diag = g * g + 1`` (>= 1, so no update blows up in float16);
* ``hessian``: a diagonally dominant symmetric matrix of the flattened size
  (positive definite), or one with alternating signs on the diagonal (indefinite,
  to exercise the Levenberg damping);
* ``value = -1`` for `reduce_on_plateau`: a negative metric that never improves;
* for the line searches, ``value_fn = 0.5 * sum |p|^2`` with ``value``
  its value at the params and ``grad`` the given gradients.

`scale_by_lbfgs` and `lbfgs` name no optax counterpart here: with random
gradients, pairs of negative curvature occur, which gradxform skips and optax
keeps (see `scale_by_lbfgs`'s note); tests/test_lbfgs.py checks the parity with
optax on a convex problem, where the two agree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import gradxform.testing._reference_extra as ref
from gradxform.second_order import (
    adahessian,
    lbfgs,
    scale_by_adahessian,
    scale_by_backtracking_linesearch,
    scale_by_lbfgs,
    scale_by_newton,
)
from gradxform.transforms import adam
from gradxform.wrappers import (
    MultiSteps,
    apply_if_finite,
    flatten,
    inject_hyperparams,
    polyak_averaging,
    reduce_on_plateau,
)


def hessian_diag_fn(params, grads):
    """``g * g + 1`` leaf by leaf (works on NumPy and JAX arrays alike)."""
    del params
    return jax.tree_util.tree_map(lambda g: g * g + 1.0, grads)


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


def _plateau_value(params, grads):
    del params, grads
    return -1.0


_INNER = adam(0.01)
_B_INVALID = (({"b1": 1.5}, "b1"), ({"b2": 1.0}, "b2"), ({"eps": -1e-8}, "eps"))

def _build_entries() -> list:
    from gradxform.testing._registry import Entry  # noqa: PLC0415 - see the module docstring

    return [
        # ---- AdaHessian
        Entry(
            name="scale_by_adahessian",
            factory=scale_by_adahessian,
            kwargs={},
            reference=lambda: ref.scale_by_adahessian(hessian_diag_fn=hessian_diag_fn),
            extra_args_fn=lambda step, params, grads: {"hessian_diag": hessian_diag_fn(params, grads)},
            invalid=_B_INVALID
            + (({"hessian_power": 1.5}, "hessian_power"), ({"hessian_power": -0.5}, "hessian_power")),
            ranges={
                "b1": (0.0, 1.0, True, False),
                "b2": (0.0, 1.0, True, False),
                "hessian_power": (0.0, 1.0, True, True),
            },
        ),
        Entry(
            name="scale_by_adahessian_spatial_k05",
            factory=scale_by_adahessian,
            kwargs={"hessian_power": 0.5, "spatial_average": True},
            reference=lambda: ref.scale_by_adahessian(
                hessian_power=0.5, spatial_average=True, hessian_diag_fn=hessian_diag_fn
            ),
            extra_args_fn=lambda step, params, grads: {"hessian_diag": hessian_diag_fn(params, grads)},
        ),
        Entry(
            name="adahessian",
            factory=adahessian,
            kwargs={"learning_rate": 0.1, "weight_decay": 0.01},
            reference=lambda: ref.adahessian(0.1, weight_decay=0.01, hessian_diag_fn=hessian_diag_fn),
            extra_args_fn=lambda step, params, grads: {"hessian_diag": hessian_diag_fn(params, grads)},
            invalid=(
                ({"learning_rate": -0.1}, "learning_rate"),
                ({"weight_decay": -1.0}, "weight_decay"),
            ) + _B_INVALID,
            ranges={"learning_rate": (0.0, 1.0, True, True)},
            needs_params=True,
        ),
        # ---- Newton
        Entry(
            name="scale_by_newton",
            factory=scale_by_newton,
            kwargs={},
            reference=lambda: ref.scale_by_newton(hessian_fn=dense_hessian_fn),
            extra_args_fn=lambda step, params, grads: {"hessian": dense_hessian_fn(params, grads)},
            invalid=(({"damping": -1.0}, "damping"),),
            ranges={"damping": (0.0, 1.0, True, True)},
        ),
        Entry(
            name="scale_by_newton_damped_indefinite",
            factory=scale_by_newton,
            kwargs={"damping": 0.5},
            reference=lambda: ref.scale_by_newton(0.5, hessian_fn=_indefinite_hessian_fn),
            extra_args_fn=lambda step, params, grads: {"hessian": _indefinite_hessian_fn(params, grads)},
        ),
        # ---- L-BFGS
        Entry(
            name="scale_by_lbfgs",
            factory=scale_by_lbfgs,
            kwargs={"memory_size": 3},
            reference=lambda: ref.scale_by_lbfgs(memory_size=3),
            invalid=(({"memory_size": 0}, "memory_size"),),
            needs_params=True,
        ),
        Entry(
            name="lbfgs_fixed_step",
            factory=lbfgs,
            kwargs={"learning_rate": 0.1, "memory_size": 4, "linesearch": None},
            reference=lambda: ref.lbfgs(learning_rate=0.1, memory_size=4),
            invalid=(({"memory_size": 0}, "memory_size"), ({"learning_rate": -0.1}, "learning_rate")),
            needs_params=True,
        ),
        Entry(
            name="lbfgs_zoom",
            factory=lbfgs,
            kwargs={"memory_size": 4},
            extra_args_fn=_linesearch_args,
            needs_params=True,
            slow=True,
        ),
        Entry(
            name="lbfgs_backtracking",
            factory=lbfgs,
            kwargs={"memory_size": 4, "linesearch": scale_by_backtracking_linesearch(10, store_grad=True)},
            extra_args_fn=_linesearch_args,
            needs_params=True,
            slow=True,
        ),
        # ---- wrappers (around adam(0.01))
        Entry(
            name="apply_if_finite",
            factory=apply_if_finite,
            kwargs={"inner": _INNER, "max_consecutive_errors": 2},
            reference=lambda: ref.apply_if_finite(ref.adam(0.01), 2),
            optax_name="apply_if_finite",
            invalid=(({"max_consecutive_errors": -1}, "max_consecutive_errors"),),
        ),
        Entry(
            name="flatten_adam",
            factory=flatten,
            kwargs={"inner": _INNER},
            reference=lambda: ref.adam(0.01),
            optax_name="flatten",
        ),
        Entry(
            name="MultiSteps",
            factory=MultiSteps,
            kwargs={"opt": _INNER, "every_k_schedule": 2},
            reference=lambda: ref.MultiSteps(ref.adam(0.01), 2),
            optax_name="MultiSteps",
            invalid=(({"every_k_schedule": 0}, "every_k_schedule"),),
        ),
        Entry(
            name="inject_hyperparams_adam",
            factory=inject_hyperparams(adam),
            kwargs={"learning_rate": 0.01},
            reference=lambda: ref.adam(0.01),
            invalid=(({"learning_rate": -0.1}, "learning_rate"), ({"b2": 1.0}, "b2")),
            ranges={"learning_rate": (0.0, 1.0, True, True), "b2": (0.0, 1.0, True, False)},
        ),
        Entry(
            name="reduce_on_plateau",
            factory=reduce_on_plateau,
            kwargs={"factor": 0.5, "patience": 1},
            reference=lambda: ref.reduce_on_plateau(factor=0.5, patience=1, value_fn=_plateau_value),
            extra_args_fn=lambda step, params, grads: {"value": _plateau_value(params, grads)},
            invalid=(
                ({"factor": 0.0}, "factor"),
                ({"factor": 1.5}, "factor"),
                ({"patience": 0}, "patience"),
                ({"rtol": -1.0}, "rtol"),
                ({"atol": -1.0}, "atol"),
                ({"cooldown": -1}, "cooldown"),
                ({"accumulation_size": 0}, "accumulation_size"),
                ({"min_scale": -1.0}, "min_scale"),
                ({"mode": "avg"}, "mode"),
            ),
        ),
        Entry(
            name="reduce_on_plateau_max_cooldown",
            factory=reduce_on_plateau,
            kwargs={"factor": 0.5, "patience": 1, "cooldown": 1, "mode": "max"},
            reference=lambda: ref.reduce_on_plateau(
                factor=0.5, patience=1, cooldown=1, mode="max", value_fn=_plateau_value
            ),
            extra_args_fn=lambda step, params, grads: {"value": _plateau_value(params, grads)},
        ),
        Entry(
            name="polyak_averaging",
            factory=polyak_averaging,
            kwargs={"inner": _INNER, "decay": 0.9},
            reference=lambda: ref.polyak_averaging(ref.adam(0.01), 0.9),
            invalid=(({"decay": 1.0}, "decay"),),
            needs_params=True,
        ),
    ]


_ENTRIES_CACHE: list = []


def _entries() -> list:
    if not _ENTRIES_CACHE:
        _ENTRIES_CACHE.extend(_build_entries())
    return _ENTRIES_CACHE


def __getattr__(name: str):
    if name == "ENTRIES":  # asked for by the registry while this module is still importing
        return _entries()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


from gradxform.testing._registry import Entry  # noqa: E402 - after __getattr__, see the module docstring

ENTRIES: list[Entry] = _entries()
