"""Functional batch norm against flax.linen.BatchNorm (a test-only oracle), hand-computed
NumPy statistics, gradients, transformations, and sync batch norm over 8 host devices."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import flax.linen as flax_nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import gradxform as gx
import gradxform.nn  # noqa: F401

REPO = pathlib.Path(__file__).resolve().parents[1]

# (input shape, feature axis)
CASES = [
    ((16, 5), -1),  # dense activations
    ((4, 6, 6, 3), -1),  # NHWC
    ((4, 3, 6, 6), 1),  # NCHW
    ((3, 4, 2, 5), (1, 3)),  # two feature axes
]


def _random_setup(shape, axis, seed=0):
    axes = (axis,) if isinstance(axis, int) else axis
    feat = tuple(shape[a] for a in axes)
    rng = np.random.default_rng(seed)
    params = {
        "scale": jnp.asarray(rng.uniform(0.5, 2.0, feat), jnp.float32),
        "bias": jnp.asarray(rng.normal(size=feat), jnp.float32),
    }
    state = {
        "mean": jnp.asarray(rng.normal(size=feat), jnp.float32),
        "var": jnp.asarray(rng.uniform(0.5, 2.0, feat), jnp.float32),
    }
    xs = [jnp.asarray(rng.normal(3.0, 2.0, shape), jnp.float32) for _ in range(4)]
    return params, state, xs


def _flax(params, state, x, *, training, axis, fast, momentum=0.99, eps=1e-5):
    bn = flax_nn.BatchNorm(
        use_running_average=not training, axis=axis, momentum=momentum, epsilon=eps,
        use_fast_variance=fast,
    )
    variables = {"params": params, "batch_stats": state}
    if training:
        y, upd = bn.apply(variables, x, mutable=["batch_stats"])
        return y, upd["batch_stats"]
    return bn.apply(variables, x), state


def _close(a, b, rtol=2e-5, atol=2e-5):
    np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


@pytest.mark.parametrize("shape,axis", CASES)
@pytest.mark.parametrize("fast", [False, True], ids=["two_pass", "fast_variance"])
def test_matches_flax_training_then_eval(shape, axis, fast):
    params, state, xs = _random_setup(shape, axis)
    ours, theirs = state, state
    for x in xs[:3]:  # three training steps: the running statistics accumulate
        y, ours = gx.nn.batch_norm(params, ours, x, training=True, axis=axis, fast_variance=fast)
        y_ref, theirs = _flax(params, theirs, x, training=True, axis=axis, fast=fast)
        _close(y, y_ref)
        _close(ours["mean"], theirs["mean"])
        _close(ours["var"], theirs["var"])
    y, after = gx.nn.batch_norm(params, ours, xs[3], training=False, axis=axis)
    y_ref, _ = _flax(params, theirs, xs[3], training=False, axis=axis, fast=fast)
    _close(y, y_ref)
    assert after is ours  # eval mode returns the state unchanged


def test_matches_flax_with_other_momentum_and_eps():
    params, state, xs = _random_setup((16, 5), -1, seed=1)
    y, new = gx.nn.batch_norm(params, state, xs[0], training=True, momentum=0.9, eps=1e-3)
    y_ref, ref = _flax(params, state, xs[0], training=True, axis=-1, fast=False, momentum=0.9, eps=1e-3)
    _close(y, y_ref)
    _close(new["mean"], ref["mean"])
    _close(new["var"], ref["var"])


def test_training_formula_by_hand():
    params, state, xs = _random_setup((4, 6, 6, 3), -1, seed=2)
    x = np.asarray(xs[0], np.float64)
    mu = x.mean(axis=(0, 1, 2))
    var = x.var(axis=(0, 1, 2))  # biased
    expected = (x - mu) / np.sqrt(var + 1e-5) * np.asarray(params["scale"]) + np.asarray(params["bias"])
    y, new = gx.nn.batch_norm(params, state, xs[0], training=True)
    _close(y, expected)
    _close(new["mean"], 0.99 * np.asarray(state["mean"]) + 0.01 * mu)
    _close(new["var"], 0.99 * np.asarray(state["var"]) + 0.01 * var)


def test_unbiased_running_var_is_pytorch_convention():
    params, state, xs = _random_setup((4, 3, 6, 6), 1, seed=3)
    x = np.asarray(xs[0], np.float64)
    red = (0, 2, 3)
    y_b, biased = gx.nn.batch_norm(params, state, xs[0], training=True, axis=1)
    y_u, unbiased = gx.nn.batch_norm(params, state, xs[0], training=True, axis=1, unbiased_running_var=True)
    # PyTorch: running_var = (1 - 0.1) * running_var + 0.1 * var(x, unbiased=True), i.e. momentum 0.9 here.
    _, torch_like = gx.nn.batch_norm(params, state, xs[0], training=True, axis=1, momentum=0.9,
                                     unbiased_running_var=True)
    _close(unbiased["var"], 0.99 * np.asarray(state["var"]) + 0.01 * x.var(axis=red, ddof=1))
    _close(torch_like["var"], 0.9 * np.asarray(state["var"]) + 0.1 * x.var(axis=red, ddof=1))
    _close(biased["var"], 0.99 * np.asarray(state["var"]) + 0.01 * x.var(axis=red, ddof=0))
    # The batch itself is normalized with the biased variance in both conventions.
    np.testing.assert_array_equal(np.asarray(y_b), np.asarray(y_u))
    np.testing.assert_array_equal(np.asarray(unbiased["mean"]), np.asarray(biased["mean"]))


def test_eval_uses_running_statistics():
    params, state, xs = _random_setup((16, 5), -1, seed=4)
    x = np.asarray(xs[0], np.float64)
    y, new = gx.nn.batch_norm(params, state, xs[0], training=False)
    m, v = np.asarray(state["mean"]), np.asarray(state["var"])
    _close(y, (x - m) / np.sqrt(v + 1e-5) * np.asarray(params["scale"]) + np.asarray(params["bias"]))
    assert new is state


def test_no_affine_params():
    _, state, xs = _random_setup((16, 5), -1, seed=5)
    y, _ = gx.nn.batch_norm(None, state, xs[0], training=True)
    x = np.asarray(xs[0], np.float64)
    _close(y, (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_low_precision_input_keeps_dtype_and_float32_statistics(dtype):
    params, state, xs = _random_setup((4, 6, 6, 3), -1, seed=6)
    x = xs[0].astype(dtype)
    y, new = gx.nn.batch_norm(params, state, x, training=True)
    assert y.dtype == dtype
    assert new["mean"].dtype == jnp.float32 and new["var"].dtype == jnp.float32
    # Statistics are those of the (exactly representable) low-precision values, taken in float32.
    y32, new32 = gx.nn.batch_norm(params, state, x.astype(jnp.float32), training=True)
    _close(new["mean"], new32["mean"], rtol=1e-6, atol=1e-6)
    _close(new["var"], new32["var"], rtol=1e-6, atol=1e-6)
    _close(y, y32.astype(dtype), rtol=1e-2, atol=1e-2)
    y_eval, _ = gx.nn.batch_norm(params, new, x, training=False)
    assert y_eval.dtype == dtype
    # Low-precision params too.
    p16 = {k: v.astype(dtype) for k, v in params.items()}
    y16, _ = gx.nn.batch_norm(p16, state, x, training=True)
    assert y16.dtype == dtype


def test_batch_norm_init():
    params, state = gx.nn.batch_norm_init(7)
    np.testing.assert_array_equal(params["scale"], np.ones(7))
    np.testing.assert_array_equal(params["bias"], np.zeros(7))
    np.testing.assert_array_equal(state["mean"], np.zeros(7))
    np.testing.assert_array_equal(state["var"], np.ones(7))
    assert params["scale"].dtype == jnp.float32
    p16, s16 = gx.nn.batch_norm_init(7, jnp.bfloat16)
    assert p16["scale"].dtype == jnp.bfloat16 and s16["var"].dtype == jnp.float32
    p2, s2 = gx.nn.batch_norm_init((3, 5))
    assert p2["bias"].shape == (3, 5) and s2["mean"].shape == (3, 5)


def test_fast_variance_clamped_at_zero():
    # Constant features: E[x^2] - E[x]^2 rounds below zero in float32 for some of these values
    # (found with the same jnp reductions); the clamp keeps the batch variance at exactly 0.
    x = jnp.broadcast_to(jnp.asarray([1234.567, 1000.1, 77.7, 0.1, 3.3], jnp.float32), (10, 5))
    naive = jnp.mean(jnp.square(x), axis=0) - jnp.square(jnp.mean(x, axis=0))
    assert bool(jnp.any(naive < 0)), naive  # the case the clamp exists for is exercised
    params, state = gx.nn.batch_norm_init(5)
    y, new = gx.nn.batch_norm(params, state, x, training=True, momentum=0.0, fast_variance=True)
    assert bool(jnp.all(new["var"] >= 0.0)), new["var"]
    assert bool(jnp.all(jnp.isfinite(y)))
    y2, new2 = gx.nn.batch_norm(params, state, x, training=True, momentum=0.0)
    c2 = np.square(np.asarray(x[0], np.float64))
    assert np.all((np.asarray(new2["var"]) >= 0) & (np.asarray(new2["var"]) < 1e-12 * c2))  # two-pass: ~0


def test_check_grads_training_and_eval():
    with jax.enable_x64(True):
        rng = np.random.default_rng(7)
        x = jnp.asarray(rng.normal(1.0, 2.0, (6, 4)), jnp.float64)
        scale = jnp.asarray(rng.uniform(0.5, 2.0, 4), jnp.float64)
        bias = jnp.asarray(rng.normal(size=4), jnp.float64)
        _, state = gx.nn.batch_norm_init(4, jnp.float64)
        state = {"mean": jnp.asarray(rng.normal(size=4)), "var": jnp.asarray(rng.uniform(0.5, 2, 4))}

        @jax.jit
        def train(x, scale, bias):
            y, new = gx.nn.batch_norm({"scale": scale, "bias": bias}, state, x, training=True)
            return y, new["mean"], new["var"]

        @jax.jit
        def evaluate(x, scale, bias):
            return gx.nn.batch_norm({"scale": scale, "bias": bias}, state, x, training=False)[0]

        check_grads(train, (x, scale, bias), order=2, modes=["rev"], atol=1e-5, rtol=1e-5)
        check_grads(train, (x, scale, bias), order=1, modes=["fwd"], atol=1e-5, rtol=1e-5)
        check_grads(evaluate, (x, scale, bias), order=1, modes=["fwd", "rev"], atol=1e-5, rtol=1e-5)
        # The batch's own normalization: d/dx sum(y) = 0 (mean and scale are taken out).
        g = jax.grad(lambda x: jnp.sum(train(x, scale, bias)[0]))(x)
        np.testing.assert_allclose(np.asarray(g), 0.0, atol=1e-10)


def test_jit_vmap_scan():
    params, state, xs = _random_setup((8, 3), -1, seed=8)
    step = jax.jit(lambda p, s, x: gx.nn.batch_norm(p, s, x, training=True))
    y_jit, s_jit = step(params, state, xs[0])
    y, s = gx.nn.batch_norm(params, state, xs[0], training=True)
    _close(y_jit, y, rtol=1e-6, atol=1e-6)
    _close(s_jit["var"], s["var"], rtol=1e-6, atol=1e-6)

    # vmap over an ensemble of 4 independent models.
    stacked = jnp.stack(xs)
    ys, ss = jax.vmap(lambda x: gx.nn.batch_norm(params, state, x, training=True))(stacked)
    for i in range(4):
        yi, si = gx.nn.batch_norm(params, state, xs[i], training=True)
        _close(ys[i], yi, rtol=1e-6, atol=1e-6)
        _close(ss["mean"][i], si["mean"], rtol=1e-6, atol=1e-6)

    # lax.scan over training steps: the state is a valid carry (same structure and dtypes).
    def body(s, x):
        y, s = gx.nn.batch_norm(params, s, x, training=True)
        return s, y

    final, _ = jax.lax.scan(body, state, stacked)
    loop = state
    for x in xs:
        _, loop = gx.nn.batch_norm(params, loop, x, training=True)
    _close(final["mean"], loop["mean"], rtol=1e-6, atol=1e-6)
    _close(final["var"], loop["var"], rtol=1e-6, atol=1e-6)


def test_errors():
    params, state = gx.nn.batch_norm_init(5)
    x = jnp.ones((4, 5))
    with pytest.raises(ValueError, match=r"momentum=1.5"):
        gx.nn.batch_norm(params, state, x, training=True, momentum=1.5)
    with pytest.raises(ValueError, match=r"eps=-1"):
        gx.nn.batch_norm(params, state, x, training=True, eps=-1.0)
    with pytest.raises(ValueError, match=r"state\['mean'\] has shape \(5,\).*\(4,\)"):
        gx.nn.batch_norm(params, state, x, training=True, axis=0)
    with pytest.raises(ValueError, match=r"axis=2"):
        gx.nn.batch_norm(params, state, x, training=True, axis=2)
    with pytest.raises(TypeError, match="training"):
        gx.nn.batch_norm(params, state, x, training="yes")
    with pytest.raises(ValueError, match="num_features"):
        gx.nn.batch_norm_init(0)


_SYNC_SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import jax, jax.numpy as jnp
    from jax.sharding import Mesh, PartitionSpec as P
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    import gradxform.nn as gnn

    assert jax.device_count() == 8, jax.devices()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rng = np.random.default_rng(0)
    results = {}
    for name, shape, axis, kw in [
        ("dense", (32, 5), -1, {}),
        ("nchw_unbiased", (16, 3, 4, 4), 1, {"unbiased_running_var": True}),
        ("dense_fast", (32, 5), -1, {"fast_variance": True}),
    ]:
        feat = shape[axis]
        params = {"scale": jnp.asarray(rng.uniform(0.5, 2, feat), jnp.float32),
                  "bias": jnp.asarray(rng.normal(size=feat), jnp.float32)}
        state = {"mean": jnp.asarray(rng.normal(size=feat), jnp.float32),
                 "var": jnp.asarray(rng.uniform(0.5, 2, feat), jnp.float32)}
        x = jnp.asarray(rng.normal(2.0, 3.0, shape), jnp.float32)

        def local(x):
            return gnn.batch_norm(params, state, x, training=True, axis=axis, axis_name="data", **kw)

        sharded = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P("data"), out_specs=(P("data"), P())))
        y_s, s_s = sharded(x)
        y_g, s_g = gnn.batch_norm(params, state, x, training=True, axis=axis, **kw)
        results[name] = {
            "y": float(jnp.max(jnp.abs(y_s - y_g))),
            "mean": float(jnp.max(jnp.abs(s_s["mean"] - s_g["mean"]))),
            "var": float(jnp.max(jnp.abs(s_s["var"] - s_g["var"]))),
        }
        if name == "dense":
            # Without axis_name each device normalizes with its own 1/8 of the batch.
            y_l, _ = jax.jit(jax.shard_map(
                lambda x: gnn.batch_norm(params, state, x, training=True, axis=axis, **kw),
                mesh=mesh, in_specs=P("data"), out_specs=(P("data"), P()), check_vma=False))(x)
            results[name]["local_y"] = float(jnp.max(jnp.abs(y_l - y_g)))
    print(json.dumps(results))
    """
)


def test_sync_batch_norm_shard_map_8_devices_equals_global_batch():
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
    env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-c", _SYNC_SCRIPT], env=env, cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(results) == {"dense", "nchw_unbiased", "dense_fast"}
    for name, r in results.items():
        assert r["y"] < 1e-4, (name, r)
        assert r["mean"] < 1e-5, (name, r)
        assert r["var"] < 1e-5, (name, r)
    assert results["dense"]["local_y"] > 1e-2  # the check can fail: per-device statistics differ
