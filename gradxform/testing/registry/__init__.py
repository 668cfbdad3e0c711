"""The registry: every built-in transformation in the configurations the tests run.

One module per family, like the library (`_transforms`, `_second_order`,
`_wrappers`), each listing its `case` calls. A transformation's NumPy reference is
found by the factory's name in `gradxform.testing.reference`, its optax
counterpart by the same name, and its invalid hyperparameters are derived from
the factory's declaration (`gradxform._hyper.declare`). The registry-driven
tests (reference parity in float32 and bfloat16, optax parity, the laws, the
dtype policy, validation, key-path errors) iterate over `REGISTRY` and never
branch on a name.
"""

from __future__ import annotations

from gradxform.testing.registry import (
    _adam_variants,
    _clipping,
    _contrib_adam,
    _contrib_dadapt,
    _contrib_free,
    _contrib_matrix,
    _contrib_misc,
    _contrib_privacy,
    _contrib_schedule_free,
    _layerwise,
    _misc,
    _schedules,
    _second_order,
    _transforms,
    _wrappers,
)
from gradxform.testing.registry._entry import BY_NAME, Entry, case

__all__ = ["BY_NAME", "ENTRIES_BY_NAME", "Entry", "INVALID_CASES", "REGISTRY", "case"]

REGISTRY: list[Entry] = [
    *_transforms.ENTRIES,
    *_adam_variants.ENTRIES,
    *_layerwise.ENTRIES,
    *_misc.ENTRIES,
    *_clipping.ENTRIES,
    *_second_order.ENTRIES,
    *_wrappers.ENTRIES,
    *_schedules.ENTRIES,
    *_contrib_adam.ENTRIES,
    *_contrib_dadapt.ENTRIES,
    *_contrib_free.ENTRIES,
    *_contrib_matrix.ENTRIES,
    *_contrib_misc.ENTRIES,
    *_contrib_privacy.ENTRIES,
    *_contrib_schedule_free.ENTRIES,
]

ENTRIES_BY_NAME: dict[str, Entry] = {entry.name: entry for entry in REGISTRY}
if len(ENTRIES_BY_NAME) != len(REGISTRY):
    raise RuntimeError("two registry entries share a name")


def _invalid_cases() -> list[tuple[Entry, dict, str]]:
    """Each factory's invalid cases once, on its first entry (variants add nothing)."""
    seen: set = set()
    out = []
    for entry in REGISTRY:
        if id(entry.factory) in seen:
            continue
        seen.add(id(entry.factory))
        out.extend((entry, override, arg) for override, arg in entry.invalid_cases())
    return out


INVALID_CASES: list[tuple[Entry, dict, str]] = _invalid_cases()
