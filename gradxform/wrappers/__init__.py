"""Wrappers: transformations that take a transformation and change when or how it runs."""

from gradxform.wrappers._apply_if_finite import ApplyIfFiniteState, apply_if_finite
from gradxform.wrappers._flatten import FlattenState, flatten
from gradxform.wrappers._inject import InjectHyperparamsState, inject_hyperparams, set_hyperparams
from gradxform.wrappers._lookahead import LookaheadParams, LookaheadState, lookahead
from gradxform.wrappers._multi_steps import MultiSteps, MultiStepsState, skip_not_finite
from gradxform.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau
from gradxform.wrappers._polyak import PolyakAveragingState, polyak_averaging, polyak_params

__all__ = [
    "ApplyIfFiniteState",
    "FlattenState",
    "InjectHyperparamsState",
    "LookaheadParams",
    "LookaheadState",
    "MultiSteps",
    "MultiStepsState",
    "PolyakAveragingState",
    "ReduceLROnPlateauState",
    "apply_if_finite",
    "flatten",
    "inject_hyperparams",
    "lookahead",
    "polyak_averaging",
    "polyak_params",
    "reduce_on_plateau",
    "set_hyperparams",
    "skip_not_finite",
]
