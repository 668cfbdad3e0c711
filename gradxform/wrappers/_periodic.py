"""Wrappers (in progress, issue 19)."""

__all__: list = []
