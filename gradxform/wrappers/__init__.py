"""Wrappers: transformations that take a transformation and change when or how it runs."""

from gradxform.wrappers._apply_if_finite import ApplyIfFiniteState, apply_if_finite
from gradxform.wrappers._flatten import FlattenState, flatten
from gradxform.wrappers._inject import (
    InjectHyperparamsState,
    InjectStatefulHyperparamsState,
    StatefulSchedule,
    WrappedSchedule,
    WrappedScheduleState,
    inject_hyperparams,
    inject_stateful_hyperparams,
    set_hyperparams,
)
from gradxform.wrappers._lookahead import LookaheadParams, LookaheadState, lookahead
from gradxform.wrappers._multi_steps import MultiSteps, MultiStepsState, skip_not_finite
from gradxform.wrappers._plateau import ReduceLROnPlateauState, reduce_on_plateau
from gradxform.wrappers._polyak import PolyakAveragingState, polyak_averaging, polyak_params
from gradxform.wrappers._partition import PartitionState, freeze, partition, selective_transform
from gradxform.wrappers._conditional import (
    ConditionallyMaskState,
    ConditionallyTransformState,
    conditionally_mask,
    conditionally_transform,
)
from gradxform.wrappers._accumulate import (
    AccumulationType,
    Accumulator,
    ApplyEvery,
    ShouldSkipUpdateFunction,
    apply_every,
    microbatch,
    skip_large_updates,
)
from gradxform.wrappers._monitor import (
    MonitorState,
    SnapshotState,
    measure_with_ema,
    monitor,
    snapshot,
)
from gradxform.wrappers._periodic import incremental_update, periodic_update

__all__ = [
    "AccumulationType",
    "Accumulator",
    "ApplyEvery",
    "ApplyIfFiniteState",
    "ConditionallyMaskState",
    "ConditionallyTransformState",
    "FlattenState",
    "InjectHyperparamsState",
    "InjectStatefulHyperparamsState",
    "LookaheadParams",
    "LookaheadState",
    "MonitorState",
    "MultiSteps",
    "MultiStepsState",
    "PartitionState",
    "PolyakAveragingState",
    "ReduceLROnPlateauState",
    "ShouldSkipUpdateFunction",
    "SnapshotState",
    "StatefulSchedule",
    "WrappedSchedule",
    "WrappedScheduleState",
    "apply_every",
    "apply_if_finite",
    "conditionally_mask",
    "conditionally_transform",
    "flatten",
    "freeze",
    "incremental_update",
    "inject_hyperparams",
    "inject_stateful_hyperparams",
    "lookahead",
    "measure_with_ema",
    "microbatch",
    "monitor",
    "partition",
    "periodic_update",
    "polyak_averaging",
    "polyak_params",
    "reduce_on_plateau",
    "selective_transform",
    "set_hyperparams",
    "skip_large_updates",
    "skip_not_finite",
    "snapshot",
]
