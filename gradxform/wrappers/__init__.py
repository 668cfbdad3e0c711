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


# --- Scaffolding while issue 19's families are written: each module's ``__all__`` is
# merged here; replaced by explicit imports when they land.
def _merge_in_progress(modules):
    import importlib

    names = set(__all__)
    for module_name in modules:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            globals()[name] = getattr(module, name)
            names.add(name)
    return sorted(names)


__all__ = _merge_in_progress(['gradxform.wrappers._partition', 'gradxform.wrappers._conditional', 'gradxform.wrappers._accumulate', 'gradxform.wrappers._monitor', 'gradxform.wrappers._periodic'])
