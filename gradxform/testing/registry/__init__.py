"""The registry: every built-in transformation in the configurations the tests run.

One module per family, like the library (`_transforms`, `_second_order`,
`_wrappers`), each listing its `case`s. A transformation's NumPy reference is
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
]

# TEMPORARY (issue 17 in progress): every ``_contrib_*`` module's ENTRIES join the registry;
# replaced by explicit imports when the modules land.
import importlib as _importlib  # noqa: E402
import pkgutil as _pkgutil  # noqa: E402

for _info in sorted(_pkgutil.iter_modules(__path__), key=lambda i: i.name):
    if _info.name.startswith("_contrib_"):
        REGISTRY.extend(_importlib.import_module(f"{__name__}.{_info.name}").ENTRIES)

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
