"""Registry entries as pytest parameters, with the CI/local split for the heavy laws.

The registry holds each factory once and its variants (``sgd_nesterov``,
``adafactor_factored_momentum``...) after it. The cheap checks (reference and optax
parity in float32, errors, validation) run on every entry in every run. The generic
laws (`heavy`) run on every factory's first entry in CI (but an alias
``x`` whose rule ``scale_by_x`` is registered: the rule carries them) and on every
variant and alias too with ``--runslow`` or ``GX_SLOW=1``, as the "dev" hypothesis profile
does for the property tests: CI stays within its budget on 2 cores while every
rule is still checked by every law on every run.

The sweeps that repeat what the laws already check on another tree (the dtype
policy's mixed-precision and jitted-step scans, the float32 accuracy law, the
bfloat16 reference parity, checkpoint continuation and state round trips) run in
CI on `CI_SAMPLE`, one entry per update path (`sampled`), and on every entry with
``--runslow``.
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


def ci_heavy(entries: Iterable) -> set[str]:
    """The entries that get the heavy checks in CI: each factory's first entry, except an
    optimizer alias ``x`` whose rule ``scale_by_x`` is registered too (``adam`` is
    ``chain(scale_by_adam(), scale_by_learning_rate())``): the rule gets them in CI,
    the alias with ``--runslow``, and its cheap checks (reference and optax parity,
    validation, key-path errors) in every run."""
    entries = list(entries)
    factories = {e.factory.__name__ for e in entries}
    return {
        name for name in first_per_factory(entries)
        for e in entries if e.name == name
        if not (e.name == e.factory.__name__ and f"scale_by_{e.name}" in factories)
    }


def heavy(entries: Iterable) -> list:
    """``entries`` as params; all but `ci_heavy` are marked slow (local thorough runs only)."""
    entries = list(entries)
    from gradxform.testing.registry import REGISTRY  # noqa: PLC0415

    first = ci_heavy(REGISTRY)
    return [
        pytest.param(e, id=e.name, marks=[] if (e.name in first and not e.slow) else [pytest.mark.slow])
        for e in entries
    ]


# One entry per update path: the per-leaf rules through `_tree.apply_rule` (moments,
# squares, signs, factored, layer-wise, second moments with eps inside and outside the
# root), the stateless ones, the wrappers (masking, accumulation, finiteness checks,
# partitions, flattening), contrib's own update code, the second-order rules.
CI_SAMPLE = frozenset({
    "scale", "clip_by_global_norm", "trace", "adagrad", "scale_by_rms", "scale_by_adam", "scale_by_belief",
    "scale_by_adadelta", "scale_by_rprop", "lion", "add_decayed_weights", "scale_by_amsgrad",
    "scale_by_factored_rms", "lamb", "scale_by_novograd", "scale_by_sm3", "scale_by_adahessian",
    "apply_if_finite", "MultiSteps", "partition", "scale_by_ademamix", "scale_by_adopt", "schedule_free_adamw",
    "scale_by_madgrad", "scale_by_lbfgs", "prodigy", "muon", "dpsgd", "scale_by_galore", "sophia",
})


def sampled(entries: Iterable) -> list:
    """``heavy(entries)`` with only `CI_SAMPLE` left unmarked: the rest run with ``--runslow``."""
    return [
        p if p.id in CI_SAMPLE else pytest.param(*p.values, id=p.id, marks=[pytest.mark.slow])
        for p in heavy(entries)
    ]


# Entries whose params-shaped state is float32 by default whatever the params: a wider state
# widens the updates (BUILD.md's dtype policy, item 5; as `mu_dtype` does; optax's dtype too),
# so bfloat16 params get float32 updates. tests/test_dtype_policy.py checks that exact dtype;
# the generic laws skip `updates_dtype` for them.
WIDE_STATE_BY_DEFAULT = {
    "adafactor_factored_momentum": "dtype_momentum=float32 (optax's default)",
    "scale_by_distance_over_gradients": "param_dtype=float32 (optax's default): the stored initial params",
}
