"""Shared test configuration: strict dtype promotion and hypothesis profiles.

Profiles (select with HYPOTHESIS_PROFILE=...):
  ci   (default) few small examples, so the whole suite stays within minutes on 2 cores;
  dev  many examples, for a thorough local run.
"""

import os
import shutil
import subprocess
import sys
import tempfile

# XLA's CPU backend compiles every test program with LLVM at -O1 rather than its default
# (set before jax creates its backend): the suite compiles thousands of small programs and
# runs each a few times, so compile time dominates (measured: the registry laws, 300 s ->
# 165 s of CPU; the whole run 17 -> 8 to 10 minutes on 2 cores). Results may differ from the
# default build in the last bits (floating-point contraction differs by level); the tests'
# tolerances hold at both (at -O0 two 1e-5 comparisons moved, so not -O0). The examples
# and benchmarks keep XLA's default in their own processes unless started from a test.
# GX_TEST_XLA_OPT=default keeps the default here too.
# Likewise XLA's older LLVM emitters for the CPU fusions (`--xla_cpu_use_fusion_emitters=false`):
# its MLIR fusion emitters take about twice as long to compile a small program (measured, an
# Adam update of 4 leaves: 407 -> 222 ms; the registry laws of the Adam and SGD families: 86 ->
# 60 s of CPU), and the tests compile small programs by the thousand.
_FAST_COMPILE = {"xla_backend_optimization_level": "1", "xla_cpu_use_fusion_emitters": "false"}


def _xla_accepts(flags: str) -> bool:
    """Whether this jaxlib's XLA knows `flags` (it aborts the process on an unknown flag)."""
    probe = "import jax.numpy as jnp; jnp.zeros(1).block_until_ready()"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True).returncode == 0


# Checked once per run: the xdist workers inherit the flags and GX_TEST_XLA_FLAGS.
if os.environ.get("GX_TEST_XLA_OPT", "1") != "default" and "GX_TEST_XLA_FLAGS" not in os.environ:
    _flags = os.environ.get("XLA_FLAGS", "")
    _added = [f"--{k}={v}" for k, v in _FAST_COMPILE.items() if k not in _flags]
    if _added and not _xla_accepts(" ".join([_flags, *_added])):  # an older or newer XLA: the ones it knows
        _added = [f for f in _added if _xla_accepts(f"{_flags} {f}")]
    os.environ["XLA_FLAGS"] = os.environ["GX_TEST_XLA_FLAGS"] = " ".join([_flags, *_added]).strip()

import jax  # noqa: E402
import pytest
from hypothesis import HealthCheck, settings

# Any implicit promotion between array dtypes (bf16 + f32, f32 + int) is an error in tests:
# the library must cast explicitly. Python scalars stay weakly typed.
jax.config.update("jax_numpy_dtype_promotion", "strict")

# One compilation cache for the run, shared by the xdist workers (they inherit the
# environment of the process that starts them): the registry's tests compile the same
# programs many times over (measured: 12% less CPU on the registry files). A fresh
# directory per run; GX_TEST_CACHE=off turns it off.
# The process that makes the directory removes it at the end (`pytest_unconfigure`).
_OWN_CACHE = None
if "GX_TEST_CACHE" not in os.environ:
    os.environ["GX_TEST_CACHE"] = _OWN_CACHE = tempfile.mkdtemp(prefix="gradxform-jax-cache-")
if os.environ["GX_TEST_CACHE"] != "off":
    jax.config.update("jax_compilation_cache_dir", os.environ["GX_TEST_CACHE"])
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

settings.register_profile(
    "ci",
    max_examples=8,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.register_profile(
    "dev",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_unconfigure(config):
    if _OWN_CACHE is not None:
        shutil.rmtree(_OWN_CACHE, ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow") or os.environ.get("GX_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or GX_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
collect_ignore = ["dropin"]  # the drop-in programs run through tests/test_dropin.py
