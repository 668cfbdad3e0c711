"""Kernel counts of a compiled XLA program (its optimized HLO text), for the benchmarks."""

from __future__ import annotations

import re
from typing import Dict

_SKIP_OPS = {"parameter", "constant", "tuple", "get-tuple-element", "bitcast"}
_OP_RE = re.compile(r"=\s.*?\s([a-z][a-z0-9\-_]*)\(")


def hlo_stats(text: str) -> Dict[str, int]:
    """Kernel counts in the ENTRY computation of an optimized HLO module's text."""
    entry = text[text.index("\nENTRY"):]
    entry = entry[: entry.index("\n}")]
    counts: Dict[str, int] = {}
    fusion_kinds: Dict[str, int] = {}
    for line in entry.splitlines()[1:]:
        m = _OP_RE.search(line)
        if not m:
            continue
        op = m.group(1)
        counts[op] = counts.get(op, 0) + 1
        if op == "fusion":
            k = re.search(r"kind=(k\w+)", line)
            if k:
                fusion_kinds[k.group(1)] = fusion_kinds.get(k.group(1), 0) + 1
    kernels = sum(v for k, v in counts.items() if k not in _SKIP_OPS)
    return {
        "kernels": kernels,
        "fusions": counts.get("fusion", 0),
        "loop_fusions": fusion_kinds.get("kLoop", 0),
        "input_fusions": fusion_kinds.get("kInput", 0),  # reductions
        "copies": counts.get("copy", 0),
        "whiles": counts.get("while", 0),
        "other_ops": {k: v for k, v in sorted(counts.items()) if k not in _SKIP_OPS | {"fusion"}},
    }
