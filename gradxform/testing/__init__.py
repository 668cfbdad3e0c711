"""Property-based testing toolkit for gradient transformations.

- `strategies`: hypothesis strategies for pytrees, (params, grads) pairs, gradient
  sequences and valid hyperparameters.
- `check_transformation(tx, ...)`: the generic laws any transformation must obey.
- `reference`: NumPy textbook update rules, and `check_against_reference`.

Sub-modules are imported on first use, so `import gradxform` does not import hypothesis.
"""

import importlib

__all__ = [
    "strategies",
    "reference",
    "check_transformation",
    "check_transformation_property",
    "check_against_reference",
    "LawViolation",
]


def __getattr__(name):
    if name in ("strategies", "reference"):
        return importlib.import_module(f"gradxform.testing.{name}")
    if name in ("check_transformation", "check_transformation_property", "LawViolation"):
        return getattr(importlib.import_module("gradxform.testing.laws"), name)
    if name == "check_against_reference":
        return importlib.import_module("gradxform.testing.reference").check_against_reference
    raise AttributeError(f"module 'gradxform.testing' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
