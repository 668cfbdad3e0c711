"""The transformations, one algorithm family per module."""

from gradxform.transforms._adabelief import ScaleByBeliefState, adabelief, scale_by_belief
from gradxform.transforms._adadelta import ScaleByAdaDeltaState, adadelta, scale_by_adadelta
from gradxform.transforms._adagrad import ScaleByRssState, adagrad, scale_by_rss
from gradxform.transforms._adam import ScaleByAdamState, adam, adamw, scale_by_adam
from gradxform.transforms._clipping import clip, clip_by_global_norm
from gradxform.transforms._lion import ScaleByLionState, lion, scale_by_lion
from gradxform.transforms._momentum import EmaState, TraceState, ema, sgd, trace
from gradxform.transforms._regularization import AddNoiseState, add_decayed_weights, add_l1_decay, add_noise
from gradxform.transforms._rmsprop import (
    ScaleByRmsState,
    ScaleByRStdDevState,
    rmsprop,
    scale_by_rms,
    scale_by_stddev,
)
from gradxform.transforms._rprop import ScaleByRpropState, rprop, scale_by_rprop
from gradxform.transforms._scale import ScaleByScheduleState, scale, scale_by_learning_rate, scale_by_schedule

__all__ = [
    "AddNoiseState",
    "EmaState",
    "ScaleByAdaDeltaState",
    "ScaleByAdamState",
    "ScaleByBeliefState",
    "ScaleByLionState",
    "ScaleByRStdDevState",
    "ScaleByRmsState",
    "ScaleByRpropState",
    "ScaleByRssState",
    "ScaleByScheduleState",
    "TraceState",
    "adabelief",
    "adadelta",
    "adagrad",
    "adam",
    "adamw",
    "add_decayed_weights",
    "add_l1_decay",
    "add_noise",
    "clip",
    "clip_by_global_norm",
    "ema",
    "lion",
    "rmsprop",
    "rprop",
    "scale",
    "scale_by_adadelta",
    "scale_by_adam",
    "scale_by_belief",
    "scale_by_learning_rate",
    "scale_by_lion",
    "scale_by_rms",
    "scale_by_rprop",
    "scale_by_rss",
    "scale_by_schedule",
    "scale_by_stddev",
    "sgd",
    "trace",
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


__all__ = _merge_in_progress(['gradxform.transforms._adam_variants', 'gradxform.transforms._layerwise', 'gradxform.transforms._misc', 'gradxform.transforms._constraints', 'gradxform.transforms._clipping'])
