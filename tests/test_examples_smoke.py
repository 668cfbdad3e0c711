"""Every example runs, in its fast mode (``--smoke``), so that none can rot.

Each script runs in a fresh interpreter (as a user runs it) with the Agg
backend and strict dtype promotion, from a temporary directory, writing its
PNGs there; the test checks the exit status, the PNGs and the lines a user reads.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TIMEOUT_S = 300


def run_example(script: str, *args: str, cwd: Path, env: dict | None = None, expect_rc: int = 0) -> str:
    # strict dtype promotion, as in the library's own tests: the examples stay dtype-clean too
    full_env = dict(os.environ, MPLBACKEND="Agg", JAX_NUMPY_DTYPE_PROMOTION="strict")
    full_env.update(env or {})
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=cwd, env=full_env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert proc.returncode == expect_rc, (
        f"{script} {' '.join(args)} exited with {proc.returncode} (expected {expect_rc})\n"
        f"--- stdout ---\n{proc.stdout[-3000:]}\n--- stderr ---\n{proc.stderr[-3000:]}"
    )
    return proc.stdout + proc.stderr


def assert_pngs(out: Path, *names: str) -> None:
    for name in names:
        path = out / name
        assert path.is_file(), f"{path} was not written; {out} holds {sorted(p.name for p in out.glob('*'))}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"


def test_quickstart_runs_as_is(tmp_path):
    out = run_example("quickstart.py", cwd=tmp_path)
    assert "step  999" in out, out


def test_train_digits_smoke(tmp_path):
    out = run_example("train_digits.py", "--smoke", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert "test accuracy" in out, out
    assert_pngs(tmp_path / "out", "train_digits_chain.png")


def test_train_digits_bad_optimizer_lists_the_choices(tmp_path):
    out = run_example("train_digits.py", "--optimizer", "foo", cwd=tmp_path, expect_rc=2)
    assert "invalid choice: 'foo'" in out, out
    for name in ("sgd", "nesterov", "adam", "rprop", "adahessian"):
        assert name in out, (name, out)


def test_optimizer_paths_smoke(tmp_path):
    out = run_example("optimizer_paths.py", "--smoke", "--out", str(tmp_path / "out"), cwd=tmp_path)
    for label in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSProp", "Adam", "AdaDelta", "Rprop", "Newton"):
        assert f"| {label}" in out, (label, out)
    assert_pngs(tmp_path / "out", "optimizer_paths.png", "optimizer_paths_beale.png",
                "optimizer_paths_saddle.png", "optimizer_paths_valley.png")


def test_init_signal_smoke(tmp_path):
    out = run_example("init_signal.py", "--smoke", "--out", str(tmp_path / "out"), cwd=tmp_path)
    for label in ("N(0,1)", "0.01 * N(0,1)", "U(-1,1)", "Xavier normal", "Xavier normal + ReLU",
                  "Kaiming normal + ReLU"):
        assert f"| {label} |" in out, (label, out)
    assert_pngs(tmp_path / "out", "init_signal.png")


def test_data_parallel_smoke(tmp_path):
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8", "JAX_PLATFORMS": "cpu"}
    out = run_example("data_parallel.py", "--smoke", "--out", str(tmp_path / "out"), cwd=tmp_path, env=env)
    assert "optimizer state sharded like the params: yes" in out, out
    assert "loss curve matches the single-device run" in out, out
    assert_pngs(tmp_path / "out", "data_parallel.png")


def test_property_test_your_optimizer_smoke(tmp_path):
    if not (EXAMPLES / "property_test_your_optimizer.py").exists():
        pytest.skip("examples/property_test_your_optimizer.py is not there yet")
    run_example("property_test_your_optimizer.py", "--smoke", cwd=tmp_path)
