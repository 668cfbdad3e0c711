"""Registry entries as pytest parameters, with the CI/local split for the heavy laws.

The registry holds each factory once and its variants (``sgd_nesterov``,
``adafactor_factored_momentum``...) after it. The cheap checks (reference and optax
parity in float32, errors, validation) run on every entry in every run. The heavy
ones (the generic laws, the float32 accuracy law, the dtype-policy scans, the
checkpoint continuation) run on every factory's first entry in CI and on every
variant too with ``--runslow`` or ``GX_SLOW=1``, as the "dev" hypothesis profile
does for the property tests: CI stays within its budget on 2 cores while every
factory is still checked by every law on every run.
"""

from __future__ import annotations

from typing import Iterable

import pytest


def first_per_factory(entries: Iterable) -> set[str]:
    seen, first = set(), set()
    for entry in entries:
        if id(entry.factory) not in seen:
            seen.add(id(entry.factory))
            first.add(entry.name)
    return first


def heavy(entries: Iterable) -> list:
    """``entries`` as params; a factory's variants are marked slow (local thorough runs only)."""
    entries = list(entries)
    from gradxform.testing.registry import REGISTRY  # noqa: PLC0415

    first = first_per_factory(REGISTRY)
    return [
        pytest.param(e, id=e.name, marks=[] if (e.name in first and not e.slow) else [pytest.mark.slow])
        for e in entries
    ]
