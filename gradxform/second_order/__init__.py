"""Second-order methods: Hessian-vector products, AdaHessian, Newton, L-BFGS and line searches."""

from gradxform.second_order._adahessian import (
    ScaleByAdaHessianState,
    adahessian,
    scale_by_adahessian,
)
from gradxform.second_order._hvp import (
    dense_hessian,
    grad_and_hutchinson_diagonal,
    hutchinson_diagonal,
    hvp,
)
from gradxform.second_order._lbfgs import ScaleByLBFGSState, lbfgs, scale_by_lbfgs
from gradxform.second_order._linesearch import (
    BacktrackingLinesearchInfo,
    ScaleByBacktrackingLinesearchState,
    ScaleByZoomLinesearchState,
    ZoomLinesearchInfo,
    scale_by_backtracking_linesearch,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)
from gradxform.second_order._newton import ScaleByNewtonState, scale_by_newton

__all__ = [
    "BacktrackingLinesearchInfo",
    "ScaleByAdaHessianState",
    "ScaleByBacktrackingLinesearchState",
    "ScaleByLBFGSState",
    "ScaleByNewtonState",
    "ScaleByZoomLinesearchState",
    "ZoomLinesearchInfo",
    "adahessian",
    "dense_hessian",
    "grad_and_hutchinson_diagonal",
    "hutchinson_diagonal",
    "hvp",
    "lbfgs",
    "scale_by_adahessian",
    "scale_by_backtracking_linesearch",
    "scale_by_lbfgs",
    "scale_by_newton",
    "scale_by_zoom_linesearch",
    "value_and_grad_from_state",
]
