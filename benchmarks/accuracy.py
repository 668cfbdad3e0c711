"""Float32 accuracy against float64: gradxform now, gradxform before, and optax.

    python -m benchmarks.accuracy                       # 200 steps, seeds 0-2 (a few minutes)
    python -m benchmarks.accuracy --steps 30 --seeds 0 --before /tmp/before

For every registry entry with an optax counterpart whose arguments are plain values
(the wrappers wrap gradxform's own Adam, so they are left out), plus RMSProp with
``decay=0.999``, it measures `gradxform.testing.check_accuracy`'s error, the worst
``max|u32 - u64| / max|u64|`` over steps, leaves and seeds (each leaf's scale its largest
exact update within two steps, ``window=2``; the "strict" columns: that step's alone,
``window=0``, from the same runs), for gradxform, for optax's
function of the same name, and (with ``--before DIR``) for the gradxform checked out at
DIR, in a subprocess with ``cwd=DIR`` and ``PYTHONPATH=DIR``. The subprocess loads the
measuring module (``gradxform/testing/_accuracy.py``, which imports only jax and NumPy)
by its path, so it measures the old library with today's yardstick. Prints a Markdown
table; ratios are ours / optax's (errors below 2**-22, two float32 ulps, count as equal).
"""

from __future__ import annotations

import argparse
import fnmatch
import functools
import importlib.util
import json
import os
import subprocess
import sys
from typing import Any

import jax

ACCURACY_FILE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "gradxform", "testing",
                             "_accuracy.py")

# Cases beyond the registry's: (label, factory name, kwargs, optax name or None).
EXTRA_CASES = [
    ("rmsprop (decay=0.999)", "rmsprop", {"learning_rate": 1e-3, "decay": 0.999}, "rmsprop"),
    ("scale_by_rms (decay=0.999)", "scale_by_rms", {"decay": 0.999}, "scale_by_rms"),
    ("nadam = adam(nesterov=True)", "adam", {"learning_rate": 0.01, "nesterov": True}, "nadam"),
]


def load_accuracy_module() -> Any:
    """`gradxform/testing/_accuracy.py` of this checkout, loaded by path (it imports only jax, NumPy)."""
    spec = importlib.util.spec_from_file_location("_gx_accuracy_standalone", ACCURACY_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


_ACCURACY = None


def measure(lib: Any, factory: str, kwargs: dict, steps: int, seeds: list) -> dict:
    """The worst float32 error of ``lib.<factory>(**kwargs)`` (any library module): ``{'error', 'where', 'strict'}``.

    ``error`` is `check_accuracy`'s (each leaf's error relative to its scale over five
    steps, ``window=2``); ``strict`` is the same runs' per-step measure (``window=0``).

    Run with the standard dtype-promotion rules (optax needs them). Failures are
    reported, not raised, so one missing factory does not stop the table.
    """
    global _ACCURACY
    if _ACCURACY is None:
        _ACCURACY = load_accuracy_module()
    accuracy = _ACCURACY
    try:
        make = functools.reduce(getattr, factory.split("."), lib)  # "contrib.muon": lib.contrib.muon
        with jax.numpy_dtype_promotion("standard"):
            runs = accuracy._runs(make(**kwargs), None, steps, tuple(seeds), None, factory)
        result, strict = accuracy._worst(runs, accuracy.WINDOW), accuracy._worst(runs, 0)
    except Exception as err:  # noqa: BLE001 - a row says what failed
        return {"error": None, "strict": None, "where": f"{type(err).__name__}: {str(err)[:80]}"}
    return {"error": result.error, "strict": strict.error,
            "where": f"step {result.step}, {result.path}, seed {result.seed}"}


def cases() -> list[tuple[str, str, dict, str]]:
    from gradxform.testing.registry import REGISTRY  # noqa: PLC0415

    out = []
    for entry in REGISTRY:
        if entry.optax_name is None or entry.random or entry.slow or entry.extra_args_fn is not None:
            continue
        try:
            json.dumps(entry.kwargs)
        except TypeError:  # an inner transformation: a wrapper around gradxform's Adam
            continue
        prefix = "contrib." if entry.optax_name.startswith("contrib.") else ""  # gx.contrib as optax.contrib
        out.append((entry.name, prefix + entry.factory.__name__, entry.kwargs, entry.optax_name))
    return out + EXTRA_CASES


_CHILD = """
import json, sys, importlib.util
spec = importlib.util.spec_from_file_location("_bench_accuracy", sys.argv[1])
bench = importlib.util.module_from_spec(spec); sys.modules[spec.name] = bench; spec.loader.exec_module(bench)
import gradxform
assert gradxform.__file__.startswith(sys.argv[2]), gradxform.__file__
job = json.loads(sys.stdin.read())
print(json.dumps([bench.measure(gradxform, f, kw, job["steps"], job["seeds"]) for f, kw in job["cases"]]))
"""


def measure_before(before: str, rows: list, steps: int, seeds: list) -> list[dict]:
    """`measure` for every row, with the gradxform at `before`, in a subprocess."""
    env = {**os.environ, "PYTHONPATH": before}
    job = json.dumps({"steps": steps, "seeds": seeds, "cases": [(f, kw) for _, f, kw, _ in rows]})
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, os.path.abspath(__file__), os.path.abspath(before)],
        input=job, capture_output=True, text=True, cwd=before, env=env,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the measurement of {before} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _fmt(x: Any) -> str:
    return "-" if x is None else f"{x:.2e}"


def _ratio(ours: Any, theirs: Any) -> str:
    if ours is None or theirs is None:
        return "-"
    floor = 2.0**-22  # gradxform.testing._accuracy.RATIO_FLOOR: two float32 ulps
    return f"{max(ours, floor) / max(theirs, floor):.2f}"


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--before", default=None, help="a checkout of gradxform to measure too")
    parser.add_argument("--cases", default="*", help="comma-separated globs of the rows to measure (default: all)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]

    import optax  # noqa: PLC0415

    import gradxform as gx  # noqa: PLC0415

    rows = [r for r in cases() if any(fnmatch.fnmatch(r[0], g) for g in args.cases.split(","))]
    before = measure_before(args.before, rows, args.steps, seeds) if args.before else [None] * len(rows)
    print(f"float32 error max|u32 - u64| / max|u64| (window 2; strict: window 0): {args.steps} steps, "
          f"seeds {args.seeds}, worst\n")
    head = "| case | gradxform | optax | ratio | strict gradxform | strict optax | strict ratio |"
    sep = "|---|---|---|---|---|---|---|"
    if args.before:
        head += " before | before/optax | where (gradxform) |"
        sep += "---|---|---|"
    else:
        head += " where (gradxform) |"
        sep += "---|"
    print(head)
    print(sep)
    for (label, factory, kwargs, optax_name), old in zip(rows, before):
        ours = measure(gx, factory, kwargs, args.steps, seeds)
        theirs = measure(optax, optax_name, kwargs, args.steps, seeds) if optax_name else {"error": None}
        line = (f"| {label} | {_fmt(ours['error'])} | {_fmt(theirs['error'])} | {_ratio(ours['error'], theirs['error'])} "
                f"| {_fmt(ours['strict'])} | {_fmt(theirs.get('strict'))} | {_ratio(ours['strict'], theirs.get('strict'))} |")
        if args.before:
            line += f" {_fmt(old['error'])} | {_ratio(old['error'], theirs['error'])} |"
        print(line + f" {ours['where']} |", flush=True)


if __name__ == "__main__":
    main()
