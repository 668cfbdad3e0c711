"""Benchmark gradxform against optax and the memory-bandwidth roofline: the one command.

    python -m benchmarks.run                       # every case: ~7 min on 2 cores (15 min if busy)
    python -m benchmarks.run --quick               # tiny trees, 2-3 rounds: a smoke run
    python -m benchmarks.run --cases resnet50,small2000/adam --json out.json
    python -m benchmarks.run --no-optax            # roofline, memory and compile figures only

Each case (a tree and an optimizer) runs in its own process (`benchmarks._worker`);
this process only starts them, prints a Markdown table, the performance targets met
or missed, and writes all figures as JSON. Read benchmarks/README.md for what
every column means.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # run as `python benchmarks/run.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import _cases  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NO_OPTAX_ENV = "GRADXFORM_BENCH_NO_OPTAX"


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny trees and 2-3 rounds (a smoke run; figures meaningless)")
    ap.add_argument("--cases", default=None,
                    help="comma-separated cases, trees, optimizers or globs (default: all); see --list")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--json", default=None, dest="json_path",
                    help="where to write the JSON (default benchmarks/results/latest.json, quick.json with --quick)")
    ap.add_argument("--markdown", default=None, help="also write the table to this file")
    ap.add_argument("--no-optax", action="store_true",
                    help=f"measure without optax even if it is installed (same as {NO_OPTAX_ENV}=1)")
    ap.add_argument("--min-rounds", type=int, default=15, help="paired rounds per case at least (default 15)")
    ap.add_argument("--max-rounds", type=int, default=60, help="paired rounds per case at most (default 60)")
    ap.add_argument("--budget-s", type=float, default=8.0,
                    help="seconds of paired rounds per case once --min-rounds are done (default 8)")
    ap.add_argument("--timeout-s", type=float, default=1200.0, help="per-case limit (default 1200)")
    ap.add_argument("--from-json", default=None, metavar="PATH",
                    help="print the table and targets of an earlier run's JSON and exit (runs nothing)")
    return ap.parse_args(argv)


def _optax_installed() -> bool:
    try:
        import importlib.util
        return importlib.util.find_spec("optax") is not None
    except (ImportError, ValueError):
        return False


def run_case(case: str, index: int, ns: argparse.Namespace, no_optax: bool) -> Dict[str, Any]:
    """Runs one case in a fresh process and returns its JSON (or an error record)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "case.json")
        cmd = [sys.executable, "-m", "benchmarks._worker", "--case", case, "--out", out,
               "--min-rounds", str(ns.min_rounds), "--max-rounds", str(ns.max_rounds),
               "--budget-s", str(ns.budget_s)]
        if ns.quick:
            cmd.append("--quick")
        if no_optax:
            cmd.append("--no-optax")
        if index % 2:
            cmd.append("--optax-first")
        env = dict(os.environ)
        env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        if no_optax:
            env[NO_OPTAX_ENV] = "1"
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=ns.timeout_s)
        except subprocess.TimeoutExpired:
            return {"case": case, "error": f"timed out after {ns.timeout_s:.0f} s"}
        if proc.returncode != 0 or not os.path.exists(out):
            tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-15:]
            return {"case": case, "error": f"worker exited with {proc.returncode}", "stderr_tail": tail}
        with open(out) as f:
            res = json.load(f)
        res["process_wall_s"] = time.perf_counter() - t0
        return res


# ------------------------------------------------------------------------- table


def _fmt(x: Any, spec: str) -> str:
    if x is None or (isinstance(x, float) and x != x):
        return "–"
    return format(x, spec)


def _count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


COLUMNS = [
    "case", "leaves", "params", "B/param mem·traffic", "gx ms", "×optax step [IQR]",
    "gx first call s", "×optax first call", "mem/ideal gx·optax", "compile peak MB gx",
    "×optax peak", "roofline gx [IQR]·optax", "kernels gx·optax",
]


def table(results: List[Dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['case']} | " + " | ".join(["error: " + r["error"]] + [""] * (len(COLUMNS) - 2)) + " |")
            continue
        libs = r["libs"]
        hlo = lambda name: (libs.get(name) or {}).get("hlo") or {}  # noqa: E731
        kern = _fmt(hlo("gx").get("kernels"), "d") + "·" + _fmt(hlo("optax").get("kernels"), "d")
        ratio = _fmt(r["step_ratio"], ".2f")
        if r["step_ratio"] is not None:
            ratio += f" [{r['step_ratio_p25']:.2f}, {r['step_ratio_p75']:.2f}]"
        row = [
            r["case"], str(r["n_leaves"]), _count(r["n_params"]),
            f"{r['ideal_footprint_per_param']:.0f}·{r['ideal_traffic_per_param']:.0f}",
            _fmt(r["step_ms_gx"], ".1f"), ratio,
            _fmt(r["first_call_s_gx"], ".1f"), _fmt(r["first_call_ratio"], ".2f"),
            _fmt(r["mem_ratio_gx"], ".2f") + "·" + _fmt(r["mem_ratio_optax"], ".2f"),
            _fmt(r["compile_peak_mb_gx"], ".0f"), _fmt(r["compile_peak_ratio"], ".2f"),
            _fmt(r["roofline_gx"], ".0%") + " [{:.0f}, {:.0f}]".format(
                100 * libs["gx"]["roofline"]["p25"], 100 * libs["gx"]["roofline"]["p75"])
            + "·" + _fmt(r["roofline_optax"], ".0%"),
            kern,
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# The four ratios of the many-leaves tree (issue 16): (label, case, metric, what it compares).
MANY_LEAVES = [
    ("plain step", "small2000/adam", "step_ratio", "gx.adam vs optax.adam"),
    ("plain first call", "small2000/adam", "first_call_ratio", "gx.adam vs optax.adam"),
    ("flat step", "small2000/flat_adam_both", "step_ratio", "gx.flatten(adam) vs optax.flatten(adam)"),
    ("flat first call", "small2000/flat_adam", "first_call_ratio", "gx.flatten(adam) vs optax.adam"),
    ("flat clip-chain step", "small2000/flat_clip_chain_both", "step_ratio",
     "gx.flatten(clip_chain) vs optax.flatten(clip_chain)"),
    ("flat clip-chain first call", "small2000/flat_clip_chain", "first_call_ratio",
     "gx.flatten(clip_chain) vs optax clip_chain"),
]


def many_leaves(results: List[Dict[str, Any]]) -> Dict[str, Any]:
    """The 2,000-leaf ratios that were measured, and the state layout of each variant run."""
    by_case = {r["case"]: r for r in results if "error" not in r}
    ratios = []
    for label, case, metric, compares in MANY_LEAVES:
        r = by_case.get(case)
        if r is None:
            continue
        measured = metric == "step_ratio" and r.get(metric) is not None
        iqr = [r["step_ratio_p25"], r["step_ratio_p75"]] if measured else None
        ratios.append({"label": label, "case": case, "metric": metric, "value": r.get(metric), "iqr": iqr,
                       "compares": compares})
    layouts = {}
    for case, r in by_case.items():
        if case.startswith("small2000/"):
            for lib, res in r["libs"].items():
                if res.get("state_layout"):
                    layouts[f"{case} {lib}"] = res["state_layout"]
    return {"ratios": ratios, "state_layouts": layouts}


def many_leaves_text(summary: Dict[str, Any]) -> str:
    if not summary["ratios"] and not summary["state_layouts"]:
        return ""
    lines = ["2,000 leaves (ratios from this run; state layout of each variant):"]
    for x in summary["ratios"]:
        val = _fmt(x["value"], ".2f") + (f" [{x['iqr'][0]:.2f}, {x['iqr'][1]:.2f}]" if x["iqr"] else "")
        lines.append(f"  {x['label']:<27} {val:<18} {x['compares']} ({x['case']})")
    for name, layout in summary["state_layouts"].items():
        lines.append(f"  state {name:<34} {layout}")
    return "\n".join(lines)


def targets_text(targets: List[Dict[str, Any]]) -> str:
    if not targets:
        return "(no performance target applies to the cases run)"
    lines = ["(~: the bound lies inside the ratio's interquartile range, so this run cannot tell)"]
    for t in targets:
        mark = {True: "met   ", False: "MISSED", None: "n/a   "}[t["met"]]
        if t["met"] is not None and t.get("within_iqr"):
            mark = "~met  " if t["met"] else "~miss "
        val = "not measured" if t["value"] is None else f"{t['value']:.3g}"
        if t["met"] is None and t["value"] is not None:
            mark = "quick "
        lines.append(f"{mark} {t['case']:<28} {t['metric']:<20} {val:>12} {t['cmp']} {t['bound']:<5} ({t['target']})")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    ns = _parse(argv)
    if ns.list:
        print("\n".join(_cases.all_cases()))
        return 0
    if ns.from_json:
        with open(ns.from_json) as f:
            doc = json.load(f)
        print(table(doc["cases"]))
        print()
        text = many_leaves_text(many_leaves(doc["cases"]))
        if text:
            print(text + "\n")
        print("Performance targets (ratios measured in that run):")
        print(targets_text(_cases.check_targets([r for r in doc["cases"] if "error" not in r])))
        return 0
    cases = _cases.select_cases(ns.cases)
    no_optax = ns.no_optax or os.environ.get(NO_OPTAX_ENV) == "1" or not _optax_installed()
    json_path = ns.json_path or os.path.join(ROOT, "benchmarks", "results", "quick.json" if ns.quick else "latest.json")
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    print(f"gradxform benchmarks: {len(cases)} case(s), {'quick, ' if ns.quick else ''}"
          f"{'without optax' if no_optax else 'against optax'}; load average {load0:.1f} "
          f"on {os.cpu_count()} CPUs", file=sys.stderr, flush=True)
    results = []
    for i, case in enumerate(cases):
        res = run_case(case, i, ns, no_optax)
        results.append(res)
        if "error" in res:
            msg = res["error"] + ("\n    " + "\n    ".join(res.get("stderr_tail", [])) if res.get("stderr_tail") else "")
        else:
            msg = (f"gx {res['step_ms_gx']:.1f} ms, x{_fmt(res['step_ratio'], '.2f')} optax, "
                   f"roofline {res['roofline_gx']:.0%}, first call {res['first_call_s_gx']:.1f} s "
                   f"({res['process_wall_s']:.0f} s)")
        print(f"  [{i + 1}/{len(cases)}] {case}: {msg}", file=sys.stderr, flush=True)
    ok = [r for r in results if "error" not in r]
    targets = _cases.check_targets(ok)
    doc = {
        "meta": {
            "started_utc": started.isoformat(timespec="seconds"),
            "wall_s": time.perf_counter() - t0,
            "command": " ".join(["python -m benchmarks.run"] + (argv if argv is not None else sys.argv[1:])),
            "quick": ns.quick, "optax": not no_optax,
            "xla_flags": os.environ.get("XLA_FLAGS"),
            "load_avg": [load0, os.getloadavg()[0]],
            "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                        "cpus": os.cpu_count(), "python": platform.python_version()},
            "versions": ok[0]["versions"] if ok else None,
            "columns": COLUMNS,
        },
        "cases": results,
        "targets": targets,
        "many_leaves": many_leaves(results),
    }
    os.makedirs(os.path.dirname(os.path.abspath(json_path)), exist_ok=True)
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1)
    tab = table(results)
    if ns.markdown:
        with open(ns.markdown, "w") as f:
            f.write(tab + "\n")
    print(tab)
    print()
    text = many_leaves_text(doc["many_leaves"])
    if text:
        print(text + "\n")
    print("Performance targets (ratios measured in this run):")
    print(targets_text(targets))
    print(f"\nJSON: {json_path}  ({doc['meta']['wall_s']:.0f} s)")
    return 1 if len(ok) < len(results) else 0


if __name__ == "__main__":
    sys.exit(main())
