"""Experimental APIs, as ``optax.experimental``."""

__all__: list = []
