"""Microbatching, as ``optax.microbatching``: split a batch, accumulate its gradients."""

from gradxform.wrappers._accumulate import AccumulationType, Accumulator, microbatch

__all__ = ["AccumulationType", "Accumulator", "microbatch"]
