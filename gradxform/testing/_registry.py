"""One registry of every built-in transformation, for the laws, parity and sweep tests.

Each `Entry` says how to build the transformation, which extra arguments its
update needs, which NumPy reference it must equal step by step, its optax
counterpart (by name, for the oracle tests), and which hyperparameter values are
impossible (for the validation tests). Tests iterate over `REGISTRY`; nothing
in the tests special-cases a name.

Other modules add their entries by listing them in `EXTRA_ENTRY_MODULES`; each
such module defines ``ENTRIES: list[Entry]``.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Optional

import jax.numpy as jnp

import gradxform as gx


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable[..., Any]
    kwargs: dict
    # () -> a NumPy reference object (gradxform.testing.reference), or None.
    reference: Optional[Callable[[], Any]] = None
    # (step, params, grads) -> dict of extra keyword arguments for update.
    extra_args_fn: Optional[Callable[[int, Any, Any], dict]] = None
    # Name of the optax function with the same signature and numerics, if any.
    optax_name: Optional[str] = None
    optax_kwargs: Optional[dict] = None  # defaults to kwargs
    # Impossible hyperparameters: (kwargs override, the argument the error must name).
    invalid: tuple = ()
    # Keyword arguments that are hyperparameters with valid ranges, for fuzzing:
    # name -> (low, high, low_inclusive, high_inclusive).
    ranges: dict = dataclasses.field(default_factory=dict)
    # The update reads the params.
    needs_params: bool = False
    # The output is random (compare distributions, not values).
    random: bool = False
    # Compiles for long (line searches): the generic-law run skips it unless --runslow.
    slow: bool = False

    def build(self, **overrides):
        return self.factory(**{**self.kwargs, **overrides})

    def __repr__(self):  # shown in pytest ids
        return self.name


def _ref(name, **kwargs):
    def make():
        from gradxform.testing import reference

        return getattr(reference, name)(**kwargs)

    return make


_DECAY = (0.0, 1.0, True, False)
_NONNEG = (0.0, 1.0, True, True)
_LR = (0.0, 1.0, True, True)

_LR_INVALID = (({"learning_rate": -0.1}, "learning_rate"), ({"learning_rate": float("nan")}, "learning_rate"))
_B_INVALID = (
    ({"b1": 1.5}, "b1"),
    ({"b1": -0.1}, "b1"),
    ({"b2": 1.0}, "b2"),
    ({"eps": -1e-8}, "eps"),
    ({"eps_root": -1.0}, "eps_root"),
)


def _e(name, factory, kwargs, ref=None, optax_name=None, **more):
    return Entry(name=name, factory=factory, kwargs=kwargs, reference=ref, optax_name=optax_name, **more)


REGISTRY: list[Entry] = [
    # ---- building blocks
    _e("identity", gx.identity, {}, optax_name="identity"),
    _e("scale", gx.scale, {"step_size": -0.3}, _ref("scale", step_size=-0.3), "scale"),
    _e(
        "scale_by_learning_rate",
        gx.scale_by_learning_rate,
        {"learning_rate": 0.05},
        _ref("scale", step_size=-0.05),
        "scale_by_learning_rate",
        invalid=_LR_INVALID,
    ),
    _e(
        "scale_by_schedule",
        gx.scale_by_schedule,
        {"step_size_fn": lambda count: 0.1 / (1.0 + jnp.asarray(count, jnp.float32))},
        optax_name="scale_by_schedule",
    ),
    _e(
        "clip",
        gx.clip,
        {"max_delta": 0.4},
        _ref("clip", max_delta=0.4),
        "clip",
        invalid=(({"max_delta": 0.0}, "max_delta"), ({"max_delta": -1.0}, "max_delta")),
    ),
    _e(
        "clip_by_global_norm",
        gx.clip_by_global_norm,
        {"max_norm": 1.0},
        _ref("clip_by_global_norm", max_norm=1.0),
        "clip_by_global_norm",
        invalid=(({"max_norm": 0.0}, "max_norm"), ({"max_norm": -2.0}, "max_norm")),
    ),
    _e(
        "trace",
        gx.trace,
        {"decay": 0.9},
        _ref("trace", decay=0.9),
        "trace",
        invalid=(({"decay": 1.0}, "decay"), ({"decay": -0.5}, "decay")),
        ranges={"decay": _DECAY},
    ),
    _e("trace_nesterov", gx.trace, {"decay": 0.8, "nesterov": True}, _ref("trace", decay=0.8, nesterov=True), "trace"),
    _e(
        "ema",
        gx.ema,
        {"decay": 0.9},
        _ref("ema", decay=0.9),
        "ema",
        invalid=(({"decay": 1.2}, "decay"),),
        ranges={"decay": _DECAY},
    ),
    _e("ema_nodebias", gx.ema, {"decay": 0.7, "debias": False}, _ref("ema", decay=0.7, debias=False), "ema"),
    _e(
        "scale_by_rss",
        gx.scale_by_rss,
        {},
        _ref("scale_by_rss"),
        "scale_by_rss",
        invalid=(({"initial_accumulator_value": -0.1}, "initial_accumulator_value"), ({"eps": -1.0}, "eps")),
    ),
    _e(
        "scale_by_rss_seed",
        gx.scale_by_rss,
        {"initial_accumulator_value": 0.0, "eps": 1e-7, "eps_in_sqrt": False},
        _ref("scale_by_rss", initial_accumulator_value=0.0, eps=1e-7, eps_in_sqrt=False),
    ),
    _e(
        "scale_by_rms",
        gx.scale_by_rms,
        {},
        _ref("scale_by_rms"),
        "scale_by_rms",
        invalid=(({"decay": 1.0}, "decay"), ({"eps": -1e-3}, "eps"), ({"initial_scale": -1.0}, "initial_scale")),
    ),
    _e(
        "scale_by_rms_seed",
        gx.scale_by_rms,
        {"decay": 0.9, "eps": 1e-6, "eps_in_sqrt": False, "bias_correction": True},
        _ref("scale_by_rms", decay=0.9, eps=1e-6, eps_in_sqrt=False, bias_correction=True),
        "scale_by_rms",
    ),
    _e("scale_by_stddev", gx.scale_by_stddev, {}, _ref("scale_by_stddev"), "scale_by_stddev"),
    _e("scale_by_adam", gx.scale_by_adam, {}, _ref("scale_by_adam"), "scale_by_adam", invalid=_B_INVALID),
    _e(
        "scale_by_adam_nesterov_eps_root",
        gx.scale_by_adam,
        {"eps_root": 1e-8, "nesterov": True},
        _ref("scale_by_adam", eps_root=1e-8, nesterov=True),
        "scale_by_adam",
    ),
    _e("scale_by_belief", gx.scale_by_belief, {}, _ref("scale_by_belief"), "scale_by_belief", invalid=_B_INVALID),
    _e(
        "scale_by_adadelta",
        gx.scale_by_adadelta,
        {},
        _ref("scale_by_adadelta"),
        "scale_by_adadelta",
        invalid=(({"rho": 1.0}, "rho"), ({"eps": -1.0}, "eps")),
    ),
    _e(
        "scale_by_rprop",
        gx.scale_by_rprop,
        {"learning_rate": 0.01},
        _ref("scale_by_rprop", learning_rate=0.01),
        invalid=(
            ({"learning_rate": -1.0}, "learning_rate"),
            ({"eta_minus": 0.0}, "eta_minus"),
            ({"eta_plus": 0.9}, "eta_plus"),
            ({"max_step_size": 1e-9}, "max_step_size"),
        ),
    ),
    _e(
        "add_decayed_weights",
        gx.add_decayed_weights,
        {"weight_decay": 0.1},
        _ref("add_decayed_weights", weight_decay=0.1),
        "add_decayed_weights",
        invalid=(({"weight_decay": -1e-4}, "weight_decay"),),
        needs_params=True,
    ),
    _e(
        "add_l1_decay",
        gx.add_l1_decay,
        {"l1": 0.01},
        _ref("add_l1_decay", l1=0.01),
        invalid=(({"l1": -1.0}, "l1"),),
        needs_params=True,
    ),
    _e(
        "add_noise",
        gx.add_noise,
        {"eta": 0.01, "gamma": 0.55, "key": 0},
        invalid=(({"eta": -1.0}, "eta"), ({"gamma": -0.5}, "gamma")),
        random=True,
    ),
    # ---- optimizers
    _e(
        "sgd",
        gx.sgd,
        {"learning_rate": 0.1},
        _ref("sgd", learning_rate=0.1),
        "sgd",
        invalid=_LR_INVALID,
        ranges={"learning_rate": _LR},
    ),
    _e(
        "sgd_momentum",
        gx.sgd,
        {"learning_rate": 0.1, "momentum": 0.9},
        _ref("sgd", learning_rate=0.1, momentum=0.9),
        "sgd",
        invalid=(({"momentum": 1.0}, "momentum"),),
        ranges={"learning_rate": _LR, "momentum": _DECAY},
    ),
    _e(
        "sgd_nesterov",
        gx.sgd,
        {"learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
        _ref("sgd", learning_rate=0.1, momentum=0.9, nesterov=True),
        "sgd",
    ),
    _e(
        "adagrad",
        gx.adagrad,
        {"learning_rate": 0.1},
        _ref("adagrad", learning_rate=0.1),
        "adagrad",
        invalid=_LR_INVALID,
        ranges={"learning_rate": _LR, "initial_accumulator_value": _NONNEG, "eps": (1e-10, 1e-3, True, True)},
    ),
    _e(
        "rmsprop",
        gx.rmsprop,
        {"learning_rate": 0.01},
        _ref("rmsprop", learning_rate=0.01),
        "rmsprop",
        invalid=_LR_INVALID + (({"decay": 1.0}, "decay"),),
        ranges={"learning_rate": _LR, "decay": _DECAY, "eps": (1e-10, 1e-3, True, True)},
    ),
    _e(
        "rmsprop_centered_momentum",
        gx.rmsprop,
        {"learning_rate": 0.01, "centered": True, "momentum": 0.9},
        _ref("rmsprop", learning_rate=0.01, centered=True, momentum=0.9),
        "rmsprop",
    ),
    _e(
        "rmsprop_seed",
        gx.rmsprop,
        {"learning_rate": 0.01, "eps": 1e-6, "eps_in_sqrt": False},
        _ref("rmsprop", learning_rate=0.01, eps=1e-6, eps_in_sqrt=False),
        "rmsprop",
    ),
    _e(
        "adam",
        gx.adam,
        {"learning_rate": 0.01},
        _ref("adam", learning_rate=0.01),
        "adam",
        invalid=_LR_INVALID + _B_INVALID,
        ranges={"learning_rate": _LR, "b1": _DECAY, "b2": _DECAY, "eps": (1e-10, 1e-3, True, True)},
    ),
    _e(
        "adam_nesterov",
        gx.adam,
        {"learning_rate": 0.01, "nesterov": True},
        _ref("adam", learning_rate=0.01, nesterov=True),
        "adam",
    ),
    _e(
        "adamw",
        gx.adamw,
        {"learning_rate": 0.01, "weight_decay": 0.1},
        _ref("adamw", learning_rate=0.01, weight_decay=0.1),
        "adamw",
        invalid=_LR_INVALID + _B_INVALID + (({"weight_decay": -0.1}, "weight_decay"),),
        ranges={"learning_rate": _LR, "b1": _DECAY, "b2": _DECAY, "weight_decay": _NONNEG},
        needs_params=True,
    ),
    _e(
        "adabelief",
        gx.adabelief,
        {"learning_rate": 0.01},
        _ref("adabelief", learning_rate=0.01),
        "adabelief",
        invalid=_LR_INVALID + _B_INVALID,
        ranges={"learning_rate": _LR, "b1": _DECAY, "b2": _DECAY},
    ),
    _e(
        "adadelta",
        gx.adadelta,
        {"learning_rate": 1.0},
        _ref("adadelta", learning_rate=1.0),
        "adadelta",
        invalid=_LR_INVALID + (({"rho": 1.0}, "rho"), ({"eps": -1.0}, "eps")),
        ranges={"learning_rate": _LR, "rho": _DECAY, "eps": (1e-8, 1e-3, True, True)},
    ),
    # learning_rate=None descends (Zeiler's rule); optax 0.2.8's ascends, so no optax parity here.
    _e("adadelta_no_lr", gx.adadelta, {}, _ref("adadelta", variant="paper")),
    _e(
        "rprop",
        gx.rprop,
        {"learning_rate": 0.01},
        _ref("rprop", learning_rate=0.01),
        invalid=_LR_INVALID,
        ranges={"learning_rate": (1e-6, 1.0, True, True)},
    ),
]

EXTRA_ENTRY_MODULES: list[str] = ["gradxform.testing._registry_extra"]

for _module in EXTRA_ENTRY_MODULES:
    REGISTRY.extend(importlib.import_module(_module).ENTRIES)

BY_NAME = {entry.name: entry for entry in REGISTRY}
