"""Sign, optimistic, Polyak and other rules (in progress, issue 19)."""

__all__: list = []
