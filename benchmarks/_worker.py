"""One benchmark case in one process: ``python -m benchmarks._worker --case TREE/OPT --out FILE``.

The runner (`benchmarks.run`) starts one of these per case. In this process:

1. warm-up: both libraries run the same optimizer on a two-leaf tree, and the
   triad runs once, so neither library's first call pays for JAX's own start;
2. first call, library by library (the order alternates between cases): trace,
   lower, compile and the first execution of the jitted, donated step, timed
   separately, with the process's peak RSS (VmHWM, reset through
   /proc/self/clear_refs after `malloc_trim`) read around it;
3. the compiled step's memory (`Compiled.memory_analysis()`) and a count of the
   kernels in its optimized HLO;
4. steady state: rounds in which the triad and each library's step run once,
   in an order that cycles through all permutations; ratios are formed inside a
   round and their median is reported.

It writes one JSON object to ``--out``. With ``--no-optax`` (or when optax is
not installed) only gradxform and the triad are measured.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import itertools
import json
import os
import sys
import time
from typing import Any, Dict, List

NO_OPTAX_ENV = "GRADXFORM_BENCH_NO_OPTAX"


def _parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", required=True, help="TREE/OPT, e.g. resnet50/adam")
    ap.add_argument("--out", required=True, help="where to write the JSON result")
    ap.add_argument("--quick", action="store_true", help="tiny trees, a small triad")
    ap.add_argument("--no-optax", action="store_true", help="measure gradxform and the triad only")
    ap.add_argument("--optax-first", action="store_true", help="compile optax's step before gradxform's")
    ap.add_argument("--min-rounds", type=int, default=15)
    ap.add_argument("--max-rounds", type=int, default=60)
    ap.add_argument("--budget-s", type=float, default=8.0, help="steady-state time per case (after min rounds)")
    ap.add_argument("--triad-floats", type=int, default=1 << 24, help="floats per triad array")
    return ap.parse_args()


args = _parse()
if args.no_optax or os.environ.get(NO_OPTAX_ENV) == "1":
    sys.modules["optax"] = None  # type: ignore[assignment]  # `import optax` now raises ImportError

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import gradxform  # noqa: E402
from benchmarks import _cases  # noqa: E402
from benchmarks._hlo import hlo_stats  # noqa: E402

try:
    import optax  # noqa: E402
except ImportError:
    optax = None

# ------------------------------------------------------------------ process memory


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _release_free_memory() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# ------------------------------------------------------------------------- arrays


def _build(spec: Any, fill) -> Any:
    if isinstance(spec, dict):
        return {k: _build(v, fill) for k, v in spec.items()}
    shape, dtype = spec
    return fill(shape, jnp.dtype(dtype))


def _params(spec):
    k = [0]

    def fill(shape, dtype):
        k[0] += 1
        return jnp.full(shape, 0.5 + 0.01 * (k[0] % 7), dtype)
    return _build(spec, fill)


def _grads(spec):
    k = [0]

    def fill(shape, dtype):
        k[0] += 1
        return jnp.full(shape, 1e-3 * (1 + (k[0] % 5)), dtype)
    return _build(spec, fill)


def _nbytes(tree) -> int:
    return sum(int(x.size) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(tree))


def _state_array_bytes(state) -> int:
    """Bytes of the parameter-shaped state leaves (moments, traces), not of scalar counters."""
    return sum(int(x.size) * x.dtype.itemsize for x in jax.tree_util.tree_leaves(state) if x.ndim > 0)


# --------------------------------------------------------------------------- steps


def _make_step(lib, tx):
    def step(params, state, grads):
        updates, state = tx.update(grads, state, params)
        return lib.apply_updates(params, updates), state
    return jax.jit(step, donate_argnums=(0, 1))


def _first_call(lib, tx, params, grads) -> Dict[str, Any]:
    """Init, then trace + lower + compile + first execution of the step, with the peak RSS around it."""
    state = tx.init(params)
    jax.block_until_ready(state)
    layout = state_layout(state)
    step = _make_step(lib, tx)
    _release_free_memory()
    rss0 = _status_mb("VmRSS")
    hwm_ok = _reset_peak_rss()
    t0 = time.perf_counter()
    traced = step.trace(params, state, grads)
    t1 = time.perf_counter()
    lowered = traced.lower()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    params, state = step(params, state, grads)  # served from the caches filled above
    jax.block_until_ready((params, state))
    t4 = time.perf_counter()
    peak = _status_mb("VmHWM") if hwm_ok else float("nan")
    mem = compiled.memory_analysis()
    out: Dict[str, Any] = {
        "trace_s": t1 - t0, "lower_s": t2 - t1, "compile_s": t3 - t2, "first_exec_s": t4 - t3,
        "first_call_s": t4 - t0,
        "rss_before_mb": rss0, "compile_peak_mb": peak - rss0, "peak_rss_mb": peak,
        "state_layout": layout,
    }
    if mem is not None:
        arg, outb = mem.argument_size_in_bytes, mem.output_size_in_bytes
        alias, temp = mem.alias_size_in_bytes, mem.temp_size_in_bytes
        out.update(argument_bytes=arg, output_bytes=outb, alias_bytes=alias, temp_bytes=temp,
                   step_bytes=arg + outb - alias + temp)
    try:
        out["hlo"] = hlo_stats(compiled.as_text())
    except (ValueError, AttributeError):
        out["hlo"] = None
    del traced, lowered, compiled
    return {"result": out, "step": step, "params": params, "state": state}


def state_layout(state) -> str:
    """The state's leaves in brief: count, then each distinct (dtype, shape) with its multiplicity.

    ``3 leaves: 2x f32[8192000], 1x s32[]`` is a state packed into one vector
    (``flatten``); ``4001 leaves: 4000x f32[4096], 1x s32[]`` the per-leaf layout.
    """
    leaves = jax.tree_util.tree_leaves(state)
    kinds: Dict[str, int] = {}
    for x in leaves:
        key = f"{jnp.dtype(x.dtype).name}[{','.join(str(d) for d in x.shape)}]"
        kinds[key] = kinds.get(key, 0) + 1
    parts = ", ".join(f"{n}x {k}" for k, n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])))
    return f"{len(leaves)} leaves: {parts}" if leaves else "0 leaves"


def _quantiles(xs: List[float]) -> Dict[str, float]:
    a = np.asarray(xs, dtype=float)
    return {"median": float(np.median(a)), "p25": float(np.percentile(a, 25)), "p75": float(np.percentile(a, 75))}


def main() -> None:
    t_start = time.perf_counter()
    load0 = os.getloadavg()
    tree_name, opt = args.case.split("/")
    spec = _cases.TREES[tree_name](args.quick)
    summary = _cases.tree_summary(spec)
    libs = {"gx": gradxform}
    if optax is not None:
        libs["optax"] = optax
    order = list(libs)
    if args.optax_first:
        order.reverse()

    # 1. warm-up on a two-leaf tree (one float32, one of the case's dtype)
    small = {"a": ((8,), "float32"), "b": ((4, 4), summary["dtypes"][0])}
    for lib in libs.values():
        tx = _cases.make_optimizer(lib, opt)
        p = _params(small)
        st = tx.init(p)
        jax.block_until_ready(_make_step(lib, tx)(p, st, _grads(small)))
    n = 1 << 18 if args.quick else args.triad_floats
    triad = jax.jit(lambda b, c: b + jnp.float32(3.0) * c, donate_argnums=0)
    tb, tc = jnp.ones((n,), jnp.float32), jnp.full((n,), 0.5, jnp.float32)
    tb = triad(tb, tc).block_until_ready()
    triad_bytes = 3 * 4 * n

    # 2-3. first call, library by library
    grads = _grads(spec)
    jax.block_until_ready(grads)
    live: Dict[str, Dict[str, Any]] = {}
    for name in order:
        tx = _cases.make_optimizer(libs[name], opt)
        live[name] = _first_call(libs[name], tx, _params(spec), grads)
    state = live["gx"]["state"]
    ideal = _cases.ideal_bytes(opt, summary["params_bytes"], _state_array_bytes(state), _nbytes(state))

    # 4. steady state
    def run_lib(name):
        d = live[name]
        d["params"], d["state"] = d["step"](d["params"], d["state"], grads)
        jax.block_until_ready((d["params"], d["state"]))

    def run_triad():
        nonlocal tb
        tb = triad(tb, tc)
        tb.block_until_ready()

    def replace_buffers(block):
        # Fresh buffers for every array the rounds touch, in an order that alternates.
        # Where an array lands matters: the first set allocated in a process runs ~5%
        # slower than an identical set allocated later, whichever library owns it.
        nonlocal grads, tb, tc
        names = list(libs) if block % 2 == 0 else list(libs)[::-1]
        for name in names:
            d = live[name]
            d["params"], d["state"] = jax.tree_util.tree_map(lambda x: x.copy(), (d["params"], d["state"]))
            jax.block_until_ready((d["params"], d["state"]))
        grads = jax.tree_util.tree_map(lambda x: x.copy(), grads)
        tb, tc = tb.copy(), tc.copy()
        jax.block_until_ready((grads, tb, tc))

    runners = {"triad": run_triad, **{name: (lambda name=name: run_lib(name)) for name in libs}}
    replace_buffers(0)
    for _ in range(2):
        for r in runners.values():
            r()
    perms = list(itertools.permutations(runners))
    times: Dict[str, List[float]] = {k: [] for k in runners}
    t_steady = time.perf_counter()
    rounds = 0
    min_rounds, max_rounds = (2, 3) if args.quick else (args.min_rounds, args.max_rounds)
    budget = 0.0 if args.quick else args.budget_s
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() - t_steady < budget):
        if rounds and rounds % len(perms) == 0:
            replace_buffers(rounds // len(perms))
        for k in perms[rounds % len(perms)]:
            t0 = time.perf_counter()
            runners[k]()
            times[k].append(time.perf_counter() - t0)
        rounds += 1

    tt = np.asarray(times["triad"])
    per_lib: Dict[str, Any] = {}
    for name in libs:
        ts = np.asarray(times[name])
        roof = (ideal["traffic"] / ts) / (triad_bytes / tt)
        res = live[name]["result"]
        res.update(step_ms=_quantiles(list(ts * 1e3)), roofline=_quantiles(list(roof)))
        if "step_bytes" in res:
            res["mem_ratio"] = res["step_bytes"] / ideal["footprint"]
        res["compile_peak_ratio_to_ideal"] = res["compile_peak_mb"] * 2**20 / ideal["footprint"]
        per_lib[name] = res

    gx = per_lib["gx"]
    result: Dict[str, Any] = {
        "case": args.case, "tree": tree_name, "opt": opt, "quick": args.quick, **summary,
        "ideal_footprint_bytes": ideal["footprint"], "ideal_traffic_bytes": ideal["traffic"],
        "ideal_footprint_per_param": ideal["footprint"] / summary["n_params"],
        "ideal_traffic_per_param": ideal["traffic"] / summary["n_params"],
        "compile_order": order, "rounds": rounds,
        "triad_floats": n, "triad_gbps": _quantiles(list(triad_bytes / tt / 1e9)),
        "optax_available": optax is not None,
        "libs": per_lib,
        "step_ms_gx": gx["step_ms"]["median"],
        "roofline_gx": gx["roofline"]["median"],
        "mem_ratio_gx": gx.get("mem_ratio"),
        "first_call_s_gx": gx["first_call_s"],
        "compile_peak_mb_gx": gx["compile_peak_mb"],
        "step_ratio": None, "step_ratio_p25": None, "step_ratio_p75": None,
        "first_call_ratio": None, "compile_peak_ratio": None,
        "roofline_optax": None, "mem_ratio_optax": None, "step_ms_optax": None,
    }
    if "optax" in per_lib:
        ox = per_lib["optax"]
        paired = np.asarray(times["gx"]) / np.asarray(times["optax"])
        q = _quantiles(list(paired))
        result.update(
            step_ratio=q["median"], step_ratio_p25=q["p25"], step_ratio_p75=q["p75"],
            first_call_ratio=gx["first_call_s"] / ox["first_call_s"],
            compile_peak_ratio=(gx["compile_peak_mb"] / ox["compile_peak_mb"]
                                if min(gx["compile_peak_mb"], ox["compile_peak_mb"]) >= 0.5 else None),
            roofline_optax=ox["roofline"]["median"], mem_ratio_optax=ox.get("mem_ratio"),
            step_ms_optax=ox["step_ms"]["median"],
        )
    result["load_avg"] = [load0[0], os.getloadavg()[0]]
    result["wall_s"] = time.perf_counter() - t_start
    result["versions"] = {"jax": jax.__version__, "gradxform": gradxform.__version__,
                          "optax": getattr(optax, "__version__", None), "numpy": np.__version__}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
