"""Property-based testing toolkit for gradient transformations.

- `check_transformation(tx, ...)`: the generic laws any transformation must obey
  (`laws.LAWS`), on small hypothesis-free examples (`default_examples`, `make_grads`);
  it raises `LawViolation`.
- `check_transformation_property(factory, ...)`: the same laws on examples hypothesis
  draws and shrinks.
- `strategies`: hypothesis strategies for pytrees, (params, grads) pairs, gradient
  sequences and valid hyperparameters.
- `reference`: NumPy textbook update rules, and `check_against_reference`.

Sub-modules are imported on first use, so `import gradxform` does not import hypothesis
(only `strategies` and `check_transformation_property` do).

Examples:
    >>> import gradxform as gx
    >>> gx.testing.check_transformation(gx.adam(1e-3), laws=['updates_dtype'])
    >>> gx.testing.check_against_reference(gx.sgd(0.1), gx.testing.reference.sgd(0.1))['steps']
    5
"""

import importlib

__all__ = [
    "Example",
    "LawViolation",
    "Layer",
    "Violation",
    "check_accuracy",
    "check_against_reference",
    "check_transformation",
    "check_transformation_property",
    "default_examples",
    "laws",
    "make_grads",
    "reference",
    "strategies",
]

_SUBMODULES = ("laws", "reference", "strategies")
# name -> the private module that defines it
_HOMES = {
    "Example": "_examples",
    "Layer": "_examples",
    "LawViolation": "_runner",
    "Violation": "_runner",
    "check_accuracy": "_accuracy",
    "check_against_reference": "reference._check",
    "check_transformation": "_runner",
    "check_transformation_property": "_property",
    "default_examples": "_examples",
    "make_grads": "_examples",
}


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"gradxform.testing.{name}")
    if name in _HOMES:
        return getattr(importlib.import_module(f"gradxform.testing.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'gradxform.testing' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
