"""Experimental APIs, as ``optax.experimental``: `aggregating` (per-example gradient aggregators)."""

from gradxform.experimental import aggregating

__all__ = ["aggregating"]
