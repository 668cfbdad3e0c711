"""Constraints on updates and params (in progress, issue 19)."""

__all__: list = []
