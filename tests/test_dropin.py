"""The drop-in corpus: realistic optax programs run with optax and with only the import changed.

Each program in ``tests/dropin/`` is written the way optax users write it (``import
optax``, ``import optax.tree_utils as otu``) and defines ``main()`` returning a dict of
arrays. The test runs it as written, then with every optax import rewritten to gradxform
(``import optax`` -> ``import gradxform as optax``, ``import optax.x as y`` -> ``import
gradxform.x as y``, ``from optax... import`` -> ``from gradxform... import``) and nothing
else changed, and compares the results. Programs run under JAX's standard dtype promotion,
as users' programs do.
"""

from __future__ import annotations

import pathlib
import re
import sys
import types

import jax
import numpy as np
import pytest

DROPIN = pathlib.Path(__file__).parent / "dropin"
PROGRAMS = sorted(p.stem for p in DROPIN.glob("*.py") if not p.stem.startswith("_"))

# Tolerance on the compared results (float32 runs of 10-40 steps): relative to each
# element and to the leaf's largest magnitude (Adam-like rules turn a one-ulp difference in
# a near-zero gradient into a visible difference of a near-zero parameter).
RTOL = {
    # bfloat16 first moments: optax forms b1 * mu in bfloat16 (one more rounding per step),
    # gradxform in float32; test_bf16_moments_are_closer_to_the_float32_run_than_optax shows
    # which is closer to the run with float32 moments.
    "mixed_precision": 3e-2,
}
DEFAULT_RTOL = 2e-5
# L-BFGS's line search accepts or rejects a step by comparing two float32 values; after
# step 12 a one-ulp difference flips a decision and the runs take different paths to the
# minimum. Compared: the first 12 values and the count; both must reach the minimum.
PREFIX = {"lbfgs": {"values": 12}}
CONVERGED = {"lbfgs": ("values", 0.2)}


def to_gradxform(source: str) -> str:
    """Rewrite only the import lines of an optax program."""
    source = re.sub(r"^import optax$", "import gradxform as optax", source, flags=re.M)
    source = re.sub(r"^import optax\.(\w+) as (\w+)$", r"import gradxform.\1 as \2", source, flags=re.M)
    return re.sub(r"^from optax((?:\.\w+)*) import", r"from gradxform\1 import", source, flags=re.M)


def run(name: str, rewrite: bool) -> dict:
    path = DROPIN / f"{name}.py"
    source = path.read_text()
    if rewrite:
        source = to_gradxform(source)
        assert "import optax" not in source.replace("import gradxform as optax", "")
    module = types.ModuleType(f"dropin_{name}_{'gx' if rewrite else 'optax'}")
    module.__file__ = str(path)
    sys.path.insert(0, str(DROPIN))
    try:
        with jax.numpy_dtype_promotion("standard"):
            exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - our own test programs
            return jax.device_get(module.main())
    finally:
        sys.path.remove(str(DROPIN))


def test_the_rewrite_touches_only_imports():
    source = "import optax\nimport optax.tree_utils as otu\nfrom optax import contrib\nx = optax.adam(1e-3)\n"
    assert to_gradxform(source) == (
        "import gradxform as optax\nimport gradxform.tree_utils as otu\nfrom gradxform import contrib\n"
        "x = optax.adam(1e-3)\n")


def test_the_corpus_has_at_least_ten_programs():
    assert len(PROGRAMS) >= 10, PROGRAMS


@pytest.mark.parametrize("name", PROGRAMS)
def test_program_runs_the_same_with_gradxform(name):
    expected = run(name, rewrite=False)
    got = run(name, rewrite=True)
    if name in CONVERGED:
        key, bound = CONVERGED[name]
        assert expected[key][-1] < bound and got[key][-1] < bound, (expected[key][-1], got[key][-1])
    for key, n in PREFIX.get(name, {}).items():
        expected = {**expected, key: expected[key][:n]}
        got = {**got, key: got[key][:n]}
    if name in PREFIX:
        expected = {k: v for k, v in expected.items() if k in PREFIX[name] or k == "count"}
        got = {k: v for k, v in got.items() if k in expected}
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(expected)
    rtol = RTOL.get(name, DEFAULT_RTOL)
    for (path, e), g in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree_util.tree_leaves(got)):
        e, g = np.asarray(e), np.asarray(g)
        assert e.dtype == g.dtype, f"{name}{jax.tree_util.keystr(path)}: dtype {g.dtype} != optax's {e.dtype}"
        assert np.all(np.isfinite(g.astype(np.float64))) if g.dtype.kind == "f" else True
        scale = float(np.max(np.abs(e.astype(np.float64)), initial=0.0))
        np.testing.assert_allclose(g.astype(np.float64), e.astype(np.float64), rtol=rtol, atol=rtol * scale,
                                   err_msg=f"{name}{jax.tree_util.keystr(path)}")


def test_bf16_moments_are_closer_to_the_float32_run_than_optax():
    import gradxform as gx  # noqa: PLC0415
    import optax  # noqa: PLC0415

    rng = np.random.default_rng(0)
    params = {"w": rng.normal(size=(8, 16)).astype(np.float32), "b": 0.01 * rng.normal(size=16).astype(np.float32)}
    grads = [jax.tree_util.tree_map(lambda x: (0.1 * rng.normal(size=x.shape) + 0.02).astype(np.float32), params)
             for _ in range(30)]

    def run(tx):
        state, out = tx.init(params), []
        for g in grads:
            with jax.numpy_dtype_promotion("standard"):
                u, state = tx.update(g, state, params)
            out.append(np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(u)]))
        return np.stack(out)

    exact = run(optax.scale_by_adam(b2=0.95))
    scale = np.max(np.abs(exact), axis=1, keepdims=True)
    err_optax = np.mean(np.abs(run(optax.scale_by_adam(b2=0.95, mu_dtype=jax.numpy.bfloat16)) - exact) / scale)
    err_ours = np.mean(np.abs(run(gx.scale_by_adam(b2=0.95, mu_dtype=jax.numpy.bfloat16)) - exact) / scale)
    assert err_ours < 0.5 * err_optax, (err_ours, err_optax)
