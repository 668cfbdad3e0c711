"""The dtype policy (BUILD.md, "Dtype policy"), point by point, over the whole registry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform.testing.registry import REGISTRY

from _entries import heavy

DETERMINISTIC = [e for e in REGISTRY if not e.random]


def _params(dtype):
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.normal(size=(4, 3)), dtype), "b": jnp.asarray(rng.normal(size=(3,)), dtype)}


def _like(params, dtype, seed=1, scale=1.0):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda p: jnp.asarray(scale * rng.normal(size=p.shape), dtype), params)


def _extra(entry, step, params, grads):
    return entry.extra_args_fn(step, params, grads) if entry.extra_args_fn else {}


def _signature(tree):
    return jax.tree_util.tree_structure(tree), [
        (np.shape(x), jnp.asarray(x).dtype, getattr(x, "weak_type", False)) for x in jax.tree_util.tree_leaves(tree)
    ]


@pytest.mark.parametrize("entry", heavy(REGISTRY))
def test_update_runs_as_scan_body_with_bf16_params_and_f32_grads(entry):
    """State dtypes are fixed at init: lax.scan rejects a carry whose dtype drifts."""
    tx = entry.build()
    params = _params(jnp.bfloat16)
    grads = jnp.stack([jnp.asarray(np.random.default_rng(i).normal(size=(4, 3)), jnp.float32) for i in range(3)])
    bias = jnp.zeros((3, 3), jnp.float32)

    def body(carry, g):
        p, s = carry
        gtree = {"w": g[0], "b": g[1]}
        u, s = tx.update(gtree, s, p, **_extra(entry, 0, p, gtree))
        assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(u))  # grads' dtype
        return (gx.apply_updates(p, u), s), None

    (p_out, s_out), _ = jax.lax.scan(body, (params, tx.init(params)), (grads, bias))
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree_util.tree_leaves(p_out))
    assert _signature(s_out) == _signature(tx.init(params))


@pytest.mark.parametrize("entry", REGISTRY, ids=str)
def test_updates_keep_incoming_dtype_and_state_keeps_init_dtype(entry, dtype=jnp.bfloat16):
    # float16 is covered by test_fp16_zero_gradients_never_give_nan and by the laws.
    tx = entry.build()
    params = _params(dtype)
    state = tx.init(params)
    before = _signature(state)
    grads = _like(params, dtype)
    for step in range(2):
        updates, state = jax.jit(tx.update)(grads, state, params, **_extra(entry, step, params, grads))
        for u, g in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(grads)):
            assert u.dtype == g.dtype
        assert _signature(state) == before


@pytest.mark.parametrize("entry", heavy(REGISTRY))
def test_state_dtype_stable_through_lax_cond(entry):
    tx = entry.build()
    params = _params(jnp.bfloat16)
    state = tx.init(params)
    grads = _like(params, jnp.float32)

    @jax.jit
    def maybe_step(pred, s):
        return jax.lax.cond(pred, lambda s: tx.update(grads, s, params, **_extra(entry, 0, params, grads))[1], lambda s: s, s)

    out = maybe_step(True, state)
    assert _signature(out) == _signature(state)


@pytest.mark.parametrize("entry", heavy(DETERMINISTIC))
def test_fp16_zero_gradients_never_give_nan(entry):
    tx = entry.build()
    params = _params(jnp.float16)
    state = tx.init(params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    for step in range(3):
        updates, state = tx.update(zeros, state, params, **_extra(entry, step, params, zeros))
        for leaf in jax.tree_util.tree_leaves(updates):
            assert np.all(np.isfinite(np.asarray(leaf, np.float32))), entry.name


def test_clip_by_global_norm_all_zero_gradients_give_zeros():
    tx = gx.clip_by_global_norm(1.0)
    zeros = {"a": jnp.zeros(5, jnp.float16), "b": jnp.zeros((), jnp.float32)}
    updates, _ = tx.update(zeros, tx.init(zeros))
    for leaf in jax.tree_util.tree_leaves(updates):
        assert not np.any(np.asarray(leaf, np.float32))
        assert np.all(np.isfinite(np.asarray(leaf, np.float32)))


def test_clip_by_global_norm_fp16_norm_is_accumulated_in_f32():
    # 300^2 * 4 overflows float16 (max 65504): a float16 norm would be inf and clip to zeros.
    big = {"g": jnp.full((4,), 300.0, jnp.float16)}
    updates, _ = gx.clip_by_global_norm(1.0).update(big, gx.EmptyState())
    np.testing.assert_allclose(np.asarray(updates["g"], np.float32), 0.5, rtol=1e-3)
    # 1e-4^2 underflows float16: a float16 norm would be 0 (then 0/0).
    tiny = {"g": jnp.full((4,), 1e-4, jnp.float16)}
    updates, _ = gx.clip_by_global_norm(1.0).update(tiny, gx.EmptyState())
    np.testing.assert_allclose(np.asarray(updates["g"], np.float32), 1e-4, rtol=1e-3)


def test_hyperparameters_are_float32_whatever_the_params_dtype():
    """b2 = 0.999 rounds to 1.0 in bfloat16; held in bfloat16 it would divide by 1 - 1 = 0."""
    assert float(jnp.asarray(0.999, jnp.bfloat16)) == 1.0
    params = _params(jnp.bfloat16)
    tx = gx.adam(1e-3, b2=0.999)
    state = tx.init(params)
    grads = _like(params, jnp.bfloat16)
    for _ in range(3):
        updates, state = tx.update(grads, state, params)
    for leaf in jax.tree_util.tree_leaves(updates):
        values = np.asarray(leaf, np.float32)
        assert np.all(np.isfinite(values))
        # constant gradients: every Adam step is lr * sign(g) up to bf16 rounding
        assert np.allclose(np.abs(values), 1e-3, rtol=2e-2)


def test_mu_dtype_and_nu_dtype_set_the_moments_and_not_the_updates():
    params = _params(jnp.bfloat16)
    tx = gx.adam(1e-3, mu_dtype=jnp.float32, nu_dtype=jnp.float32)
    state = tx.init(params)
    adam_state = state[0]
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(adam_state.mu))
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(adam_state.nu))
    grads = _like(params, jnp.bfloat16)
    updates, new_state = jax.jit(tx.update)(grads, state, params)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(updates))
    assert _signature(new_state) == _signature(state)


@pytest.mark.parametrize("entry", DETERMINISTIC, ids=str)
def test_no_retrace_on_the_second_step(entry):
    tx = entry.build()
    traces = []

    def update(g, s, p):
        traces.append(1)
        return tx.update(g, s, p, **_extra(entry, 0, p, g))

    step = jax.jit(update)
    params = _params(jnp.bfloat16)
    state = tx.init(params)
    for seed in range(3):
        grads = _like(params, jnp.float32, seed)
        _, state = step(grads, state, params)
    assert len(traces) == 1, f"{entry.name} retraced: its state's types changed after the first step"


def test_apply_updates_keeps_every_params_dtype():
    params = {"a": jnp.ones(2, jnp.bfloat16), "b": jnp.ones(2, jnp.float16), "c": jnp.ones(2, jnp.float32)}
    updates = {"a": jnp.ones(2, jnp.float32), "b": jnp.ones(2, jnp.float32), "c": jnp.ones(2, jnp.bfloat16)}
    out = gx.apply_updates(params, updates)
    assert {k: v.dtype for k, v in out.items()} == {k: v.dtype for k, v in params.items()}


# ---- deliberately broken rules: the checks above must catch them


def _promoting_scale():
    """Broken on purpose: returns float32 updates for bfloat16 gradients."""
    return gx.stateless_with_tree_map(lambda g, p: g.astype(jnp.float32) * 0.1)


def _drifting_trace():
    """Broken on purpose: stores the trace in the gradients' dtype, not the one init chose."""

    def init(params):
        return gx.TraceState(trace=jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None, **extra):
        new = jax.tree_util.tree_map(lambda g, t: g + 0.9 * t.astype(g.dtype), updates, state.trace)
        return new, gx.TraceState(trace=new)

    return gx.GradientTransformation(init, update)


def test_broken_promoting_rule_is_caught():
    tx = _promoting_scale()
    grads = _like(_params(jnp.bfloat16), jnp.bfloat16)
    updates, _ = tx.update(grads, tx.init(grads))
    with pytest.raises(AssertionError):
        for u, g in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(grads)):
            assert u.dtype == g.dtype


def test_broken_state_dtype_drift_is_caught_by_scan():
    tx = _drifting_trace()
    params = _params(jnp.bfloat16)
    grads = jnp.zeros((2, 4, 3), jnp.float32)

    def body(carry, g):
        p, s = carry
        u, s = tx.update({"w": g, "b": jnp.zeros(3, jnp.float32)}, s, p)
        return (p, s), None

    with pytest.raises(TypeError):
        jax.lax.scan(body, (params, tx.init(params)), grads)
