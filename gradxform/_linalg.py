"""Linear algebra helpers of optax's top level (in progress, issue 19)."""

__all__: list = []
