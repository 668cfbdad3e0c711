"""The benchmark harness runs and reports what benchmarks/README.md promises.

Smallest mode only (``--quick``: tiny trees, 2-3 rounds), one case per run, with
and without optax. Checks fields, never timings: the figures of a quick run mean
nothing.
"""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PER_LIB = ("trace_s", "lower_s", "compile_s", "first_exec_s", "first_call_s", "compile_peak_mb",
           "argument_bytes", "output_bytes", "alias_bytes", "temp_bytes", "step_bytes", "mem_ratio",
           "step_ms", "roofline", "hlo")
RATIOS = ("step_ratio", "step_ratio_p25", "step_ratio_p75", "first_call_ratio", "compile_peak_ratio",
          "roofline_optax", "mem_ratio_optax", "step_ms_optax")
COLUMNS = ("case", "×optax step", "gx first call s", "mem/ideal gx·optax", "compile peak MB gx",
           "roofline gx [IQR]·optax", "kernels gx·optax", "B/param mem·traffic")


def _run(tmp_path, case, *extra, env_extra=None):
    out = tmp_path / "bench.json"
    env = dict(os.environ, **(env_extra or {}))
    env.pop("JAX_NUMPY_DTYPE_PROMOTION", None)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--cases", case, "--json", str(out), *extra],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as f:
        return json.load(f), proc.stdout


def _check_common(doc, stdout, case):
    assert set(doc) == {"meta", "cases", "targets", "many_leaves"}
    assert doc["meta"]["quick"] is True and doc["meta"]["wall_s"] > 0
    (res,) = doc["cases"]
    assert res["case"] == case and "error" not in res
    for key in ("n_leaves", "n_params", "params_bytes", "ideal_footprint_bytes", "ideal_traffic_bytes",
                "ideal_footprint_per_param", "ideal_traffic_per_param", "rounds", "triad_gbps",
                "step_ms_gx", "roofline_gx", "mem_ratio_gx", "first_call_s_gx", "compile_peak_mb_gx",
                "load_avg", "compile_order"):
        assert key in res, key
    assert res["rounds"] >= 2
    gx = res["libs"]["gx"]
    for key in PER_LIB:
        assert key in gx, key
    assert gx["roofline"]["median"] > 0 and gx["step_ms"]["median"] > 0
    assert gx["first_call_s"] >= gx["compile_s"] > 0
    assert gx["hlo"]["kernels"] >= 1
    # donation works: every state and param buffer is aliased, so the step holds about the ideal
    assert gx["alias_bytes"] > 0 and 0.9 < gx["mem_ratio"] < 2.0
    header = stdout.splitlines()[0]
    for col in COLUMNS:
        assert col in header, col
    assert f"| {case} |" in stdout
    assert "Performance targets" in stdout
    return res


def test_quick_run_against_optax_reports_ratios(tmp_path):
    pytest.importorskip("optax")
    case = "leaf32m/clip_chain"
    doc, stdout = _run(tmp_path, case)
    res = _check_common(doc, stdout, case)
    assert doc["meta"]["optax"] is True and res["optax_available"] is True
    for key in RATIOS:
        assert isinstance(res[key], float), key
    for key in PER_LIB:
        assert key in res["libs"]["optax"], key
    assert sorted(res["compile_order"]) == ["gx", "optax"]
    # the targets that apply are listed, and not judged in a quick run
    targets = {t["metric"] for t in doc["targets"]}
    assert targets == {"step_ratio", "mem_ratio_gx"}
    assert all(t["met"] is None and t["value"] is not None for t in doc["targets"])
    assert all({"bound", "cmp", "iqr", "within_iqr", "target"} <= set(t) for t in doc["targets"])


def test_quick_run_without_optax_reports_roofline_only(tmp_path):
    case = "leaf32m/adam"
    doc, stdout = _run(tmp_path, case, env_extra={"GRADXFORM_BENCH_NO_OPTAX": "1"})
    res = _check_common(doc, stdout, case)
    assert doc["meta"]["optax"] is False and res["optax_available"] is False
    assert res["versions"]["optax"] is None  # the worker really ran without optax
    assert list(res["libs"]) == ["gx"]
    for key in RATIOS:
        assert res[key] is None, key
    assert all(t["met"] is None for t in doc["targets"])
    assert "| – |" in stdout  # the optax columns are blank


def test_quick_many_leaves_run_reports_the_flat_ratio_and_state_layouts(tmp_path):
    """The 2,000-leaf summary (issue 16): the flat step ratio against optax.flatten, and each
    variant's state layout, which for gx.flatten is optax.flatten's (same leaves)."""
    pytest.importorskip("optax")
    case = "small2000/flat_adam_both"
    doc, stdout = _run(tmp_path, case)
    _check_common(doc, stdout, case)
    summary = doc["many_leaves"]
    (ratio,) = summary["ratios"]
    assert ratio["label"] == "flat step" and isinstance(ratio["value"], float) and len(ratio["iqr"]) == 2
    layouts = summary["state_layouts"]
    assert set(layouts) == {f"{case} gx", f"{case} optax"}
    # quick tree: 16 leaves of 256 floats, packed into one vector of 4,096 (adam: count, mu, nu)
    assert layouts[f"{case} gx"] == layouts[f"{case} optax"] == "3 leaves: 2x float32[4096], 1x int32[]"
    assert "2,000 leaves (ratios from this run" in stdout and "flat step" in stdout


def test_flatten_profile_reports_the_three_steps():
    """`python -m benchmarks.flatten_profile` (issue 16's profile), on 4 leaves and 3 rounds."""
    env = dict(os.environ)
    env.pop("JAX_NUMPY_DTYPE_PROMOTION", None)
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.flatten_profile", "--rounds", "3", "--leaves", "4"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for name in ("gx.flatten ", "gx.flatten, constant offsets", "optax.flatten "):
        assert any(line.startswith(name) and "trace + compile" in line for line in lines), proc.stdout
        assert any(line.startswith(name) and "x optax.flatten per round" in line for line in lines), proc.stdout
    # with constant offsets the step compiles to optax.flatten's kernels
    compiled = {line.split("  ")[0].strip(): line.split("{")[1] for line in lines if "trace + compile" in line}
    assert compiled["gx.flatten, constant offsets"] == compiled["optax.flatten"]
