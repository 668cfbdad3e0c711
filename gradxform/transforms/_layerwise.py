"""Layer-wise and factored rules (in progress, issue 19)."""

__all__: list = []
