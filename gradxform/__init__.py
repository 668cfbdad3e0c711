"""gradxform: composable, verified gradient transformations for JAX.

    import gradxform as gx
    tx = gx.chain(gx.clip_by_global_norm(1.0), gx.scale_by_adam(),
                  gx.add_decayed_weights(1e-4), gx.scale_by_learning_rate(1e-3))
"""

from gradxform import nn, schedules, second_order, testing, training, transforms, wrappers
from gradxform._base import (
    EmptyState,
    GradientTransformation,
    OptState,
    Params,
    Schedule,
    Updates,
    identity,
    set_to_zero,
    stateless,
    stateless_with_tree_map,
)
from gradxform._checks import TreeMismatchError
from gradxform._combine import (
    MaskedNode,
    MaskedState,
    MultiTransformState,
    apply_updates,
    chain,
    masked,
    multi_transform,
    named_chain,
)
from gradxform.second_order import (
    ScaleByAdaHessianState,
    ScaleByLBFGSState,
    ScaleByNewtonState,
    adahessian,
    lbfgs,
    scale_by_adahessian,
    scale_by_backtracking_linesearch,
    scale_by_lbfgs,
    scale_by_newton,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)
from gradxform.schedules import *  # noqa: F403 - schedules are re-exported, as API.md promises
from gradxform.schedules import __all__ as _schedules_all
from gradxform.transforms import *  # noqa: F403 - the transforms package lists what it exports
from gradxform.transforms import __all__ as _transforms_all
from gradxform.wrappers import *  # noqa: F403
from gradxform.wrappers import __all__ as _wrappers_all

__version__ = "0.1.0"

__all__ = [
    "EmptyState",
    "GradientTransformation",
    "MaskedNode",
    "MaskedState",
    "MultiTransformState",
    "OptState",
    "Params",
    "Schedule",
    "TreeMismatchError",
    "Updates",
    "apply_updates",
    "chain",
    "identity",
    "masked",
    "multi_transform",
    "named_chain",
    "nn",
    "ScaleByAdaHessianState",
    "ScaleByLBFGSState",
    "ScaleByNewtonState",
    "adahessian",
    "lbfgs",
    "scale_by_adahessian",
    "scale_by_backtracking_linesearch",
    "scale_by_lbfgs",
    "scale_by_newton",
    "scale_by_zoom_linesearch",
    "second_order",
    "value_and_grad_from_state",
    "wrappers",
    "schedules",
    "set_to_zero",
    "stateless",
    "stateless_with_tree_map",
    "testing",
    "training",
    "transforms",
    *_schedules_all,
    *_transforms_all,
    *_wrappers_all,
]
