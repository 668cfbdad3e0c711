"""Microbatching, as ``optax.microbatching``: split a batch, accumulate its results, per-example gradients."""

from gradxform.wrappers._accumulate import AccumulationType, Accumulator, microbatch
from gradxform.wrappers._microbatching import micro_grad, micro_vmap, reshape_batch_axis

__all__ = [
    "AccumulationType",
    "Accumulator",
    "micro_grad",
    "micro_vmap",
    "microbatch",
    "reshape_batch_axis",
]
