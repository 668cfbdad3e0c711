"""2 processes x 4 host devices (``jax.distributed``, gloo) train like 1 process x 8 devices.

Runs ``examples/multi_host.py`` both ways (a small MLP, Adam with its state
sharded over all 8 devices by `gx.sharding.shard_state`) and compares the final
params. The two runs reduce the gradients over the same 8 devices, but with
different collectives (in-process vs gloo), so they may differ by float32
rounding: the tolerance is 1e-5 relative to each leaf's largest entry (Adam
rescales every coordinate, so an entry near zero carries the same absolute
error as the large ones).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "multi_host.py"


def _run(tmp_path: Path, out: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    result = subprocess.run([sys.executable, str(SCRIPT), "--steps", "5", "--out", str(tmp_path / out), *args],
                            check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_two_processes_match_one(tmp_path):
    one = _run(tmp_path, "one.npz")
    two = _run(tmp_path, "two.npz", "--launch", "2")
    assert "1 process(es) x 8 devices" in one, one
    assert "2 process(es) x 4 devices" in two, two
    # the state really is split across the processes: each holds half of Adam's mu['w1'] (1/8 per device)
    assert "holds 256 bytes per device, 1024 in this process" in two, two
    a, b = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    assert sorted(a.files) == sorted(b.files) == ["b1", "b2", "w1", "w2"]
    for k in a.files:
        scale = np.max(np.abs(a[k]))
        np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5 * scale, err_msg=k)
    # and training moved the params (a run that did nothing would also "match")
    first = np.load(tmp_path / "one.npz")["w1"]
    rng = np.random.default_rng(0)
    w1_init = rng.normal(size=(16, 32)).astype(np.float32) / np.sqrt(16)
    assert np.max(np.abs(first - w1_init)) > 1e-3
