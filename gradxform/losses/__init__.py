"""Losses (in progress, issue 12)."""

__all__: list = []
