"""Clipping and constraints beyond `clip` / `clip_by_global_norm`: per-example clipping, AGC, block RMS,
`zero_nans`, `keep_params_nonnegative`, overflow robustness, and mutants the reference checks catch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing import reference as ref

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion


def _batch(seed=0, batch=7, dtype=np.float32, scale=1.0):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(scale * rng.normal(size=(batch, 3, 4)), dtype),
        "b": jnp.asarray(scale * rng.normal(size=(batch, 4)), dtype),
        "s": [jnp.asarray(scale * rng.normal(size=(batch,)), dtype)],
    }


def _close(got, expected, rtol=2e-6, atol=1e-6):
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- per-example clipping


@pytest.mark.parametrize("clip_norm", [0.0, 0.5, 2.0, 4.0, np.inf])
def test_per_example_global_norm_clip_matches_numpy(clip_norm):
    grads = _batch()
    summed, clipped = gx.per_example_global_norm_clip(grads, clip_norm)
    expected, expected_clipped = ref.per_example_global_norm_clip(grads, clip_norm)
    _close(summed, expected)
    assert int(clipped) == expected_clipped and clipped.dtype == jnp.int32
    assert jax.tree_util.tree_structure(summed) == jax.tree_util.tree_structure(grads)


@pytest.mark.parametrize("uniform", [True, False])
@pytest.mark.parametrize("clip_norm", [0.0, 1.0, 3.0, np.inf])
def test_per_example_layer_norm_clip_matches_numpy(clip_norm, uniform):
    grads = _batch(1)
    summed, clipped = gx.per_example_layer_norm_clip(grads, clip_norm, uniform)
    expected, expected_clipped = ref.per_example_layer_norm_clip(grads, clip_norm, uniform)
    _close(summed, expected)
    assert [int(c) for c in jax.tree_util.tree_leaves(clipped)] == jax.tree_util.tree_leaves(expected_clipped)


def test_per_example_clips_match_optax():
    grads = [_batch(2)["w"], _batch(2)["b"]]
    for ours, theirs in [
        (gx.per_example_global_norm_clip(grads, 1.5), optax.per_example_global_norm_clip(grads, 1.5)),
        (gx.per_example_layer_norm_clip(grads, 1.5), optax.per_example_layer_norm_clip(grads, 1.5)),
        (gx.per_example_layer_norm_clip(grads, 1.5, False), optax.per_example_layer_norm_clip(grads, 1.5, False)),
    ]:
        _close(ours, theirs, rtol=1e-5)


def test_per_example_clip_keeps_dtype_and_sums_bf16_in_f32():
    grads = _batch(3, dtype=jnp.bfloat16)
    summed, _ = gx.per_example_global_norm_clip(grads, 1.0)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(summed))
    expected, _ = ref.per_example_global_norm_clip(grads, 1.0)
    _close(summed, expected, rtol=2e-2, atol=2e-2)
    ints, _ = gx.per_example_global_norm_clip([jnp.array([[0, 3, 4], [1, 0, 0]])], 1.0)
    assert ints[0].dtype == jnp.float32
    np.testing.assert_allclose(ints[0], [1.0, 0.6, 0.8], rtol=1e-6)


def test_per_example_clip_runs_under_jit_with_a_traced_bound():
    grads = _batch(4)
    got = jax.jit(gx.per_example_global_norm_clip)(grads, jnp.float32(1.0))
    _close(got[0], ref.per_example_global_norm_clip(grads, 1.0)[0])


def test_per_example_clip_rejects_bad_input():
    with pytest.raises(ValueError, match="l2_norm_clip"):
        gx.per_example_global_norm_clip(_batch(), -1.0)
    with pytest.raises(ValueError, match="global_l2_norm_clip"):
        gx.per_example_layer_norm_clip(_batch(), -1.0)
    with pytest.raises(ValueError, match="batch size"):
        gx.per_example_global_norm_clip([jnp.ones((3, 2)), jnp.ones((2, 2))], 1.0)
    with pytest.raises(ValueError, match="no leaves"):
        gx.per_example_layer_norm_clip([], 1.0)


def _clip_the_sum_mutant(grads, l2_norm_clip):
    """Broken: clips the summed gradient instead of each example (DP-SGD's whole point)."""
    summed = jax.tree_util.tree_map(lambda x: jnp.sum(x, axis=0), grads)
    norm = gx.global_norm(summed)
    return jax.tree_util.tree_map(lambda x: x * jnp.minimum(1.0, l2_norm_clip / norm), summed)


def test_reference_catches_clipping_the_sum_instead_of_each_example():
    grads = _batch(5)
    expected, _ = ref.per_example_global_norm_clip(grads, 1.0)
    with pytest.raises(AssertionError):
        _close(_clip_the_sum_mutant(grads, 1.0), expected)


# --------------------------------------------------------------------------- overflow robustness


def test_clips_of_huge_float32_gradients_are_not_zeros():
    g = [jnp.full((2,), 3e38, jnp.float32)]  # sum of squares overflows float32; entries do not
    params = [jnp.ones(2)]
    s = 1 / np.sqrt(2)
    np.testing.assert_allclose(gx.clip_by_global_norm(1.0).update(g, gx.EmptyState())[0][0], [s, s], rtol=1e-6)
    np.testing.assert_allclose(gx.clip_by_block_rms(1.0).update(g, gx.EmptyState())[0][0], [1, 1], rtol=1e-6)
    agc = gx.adaptive_grad_clip(0.1).update(g, gx.EmptyState(), params)[0][0]
    np.testing.assert_allclose(agc, [0.1, 0.1], rtol=1e-6)
    agc_huge_params = gx.adaptive_grad_clip(0.1).update(g, gx.EmptyState(), g)[0][0]
    np.testing.assert_allclose(agc_huge_params, [3e37, 3e37], rtol=1e-6)
    summed, clipped = gx.per_example_global_norm_clip([jnp.stack([g[0], jnp.ones(2)])], 1.0)
    np.testing.assert_allclose(summed[0], [2 * s, 2 * s], rtol=1e-6)
    assert int(clipped) == 2
    layer, _ = gx.per_example_layer_norm_clip([jnp.stack([g[0], jnp.zeros(2)]).astype(jnp.bfloat16)], 1.0)
    np.testing.assert_allclose(np.asarray(layer[0], np.float32), [s, s], rtol=1e-2)
    assert np.all(np.isinf(gx.transforms.unitwise_norm(g[0])))  # 4.2e38: beyond float32, inf is right


def test_huge_gradients_under_jit_and_finite_path_unchanged():
    tx = gx.clip_by_global_norm(1.0)
    step = jax.jit(lambda u: tx.update(u, gx.EmptyState())[0])
    np.testing.assert_allclose(step({"a": jnp.array([3e38, 0.0])})["a"], [1.0, 0.0], rtol=1e-6)
    small = {"a": jnp.array([3.0, 4.0])}
    np.testing.assert_allclose(step(small)["a"], [0.6, 0.8], rtol=1e-7)


# --------------------------------------------------------------------------- unit-wise norms and AGC


@pytest.mark.parametrize("shape", [(), (5,), (1, 5), (3, 4), (2, 3, 4), (2, 3, 4, 5), (2, 2, 2, 3, 2), (1, 1, 2, 2)])
def test_unitwise_norm_matches_numpy_and_optax(shape):
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), jnp.float32)
    got = gx.transforms.unitwise_norm(x)
    np.testing.assert_allclose(got, ref.unitwise_norm(x), rtol=1e-6)
    np.testing.assert_allclose(got, optax.transforms.unitwise_norm(x), rtol=1e-6)


def test_unitwise_norm_axis_override_and_rank_error():
    x = jnp.ones((2, 3, 4))
    np.testing.assert_allclose(gx.transforms.unitwise_norm(x, axis=2), np.full((2, 3, 4), 2.0))
    with pytest.raises(ValueError, match="axis"):
        gx.transforms.unitwise_norm(jnp.ones((2,) * 6))
    with pytest.raises(ValueError, match="axis"):
        gx.adaptive_grad_clip(0.1).update([jnp.ones((2,) * 6)], gx.EmptyState(), [jnp.ones((2,) * 6)])


def test_unitwise_clip_matches_optax():
    rng = np.random.default_rng(1)
    g = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    g_norm = gx.transforms.unitwise_norm(g)
    max_norm = jnp.broadcast_to(jnp.asarray(rng.uniform(0.1, 2.0, size=(1, 4)), jnp.float32), (3, 4))
    with loose:
        expected = optax.transforms.unitwise_clip(g_norm, max_norm, g)
    np.testing.assert_allclose(gx.transforms.unitwise_clip(g_norm, max_norm, g), expected, rtol=1e-6)


@pytest.mark.parametrize("axis", [None, 1, (0, 1)])
def test_adaptive_grad_clip_axis_matches_numpy(axis):
    rng = np.random.default_rng(2)
    params = {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)}
    grads = {"w": jnp.asarray(5 * rng.normal(size=(3, 4)), jnp.float32)}
    tx = gx.adaptive_grad_clip(0.2, axis=axis)
    got = tx.update(grads, tx.init(params), params)[0]
    expected, _ = ref.adaptive_grad_clip(0.2, axis=axis).update(grads, {}, params)
    _close(got, expected)


def test_adaptive_grad_clip_needs_params():
    tx = gx.adaptive_grad_clip(0.1)
    with pytest.raises(ValueError, match="params"):
        tx.update({"w": jnp.ones(2)}, tx.init(None))


def _agc_mutant(clipping, eps=1e-3):
    """Broken: ||W|| + eps instead of max(||W||, eps) (a plausible misreading of eq. 3)."""

    def update(updates, state, params=None, **extra):
        def one(g, p):
            w = gx.transforms.unitwise_norm(p) + eps
            n = gx.transforms.unitwise_norm(g)
            return jnp.where(n / w > clipping, g * clipping * w / n, g)

        return jax.tree_util.tree_map(one, updates, params), state

    return gx.GradientTransformation(lambda p: gx.EmptyState(), update)


def _block_norm_mutant(threshold):
    """Broken: clips each block's norm instead of its RMS."""

    def update(updates, state, params=None, **extra):
        def one(g):
            n = jnp.sqrt(jnp.sum(g * g))
            return g * threshold / jnp.maximum(n, threshold)

        return jax.tree_util.tree_map(one, updates), state

    return gx.GradientTransformation(lambda p: gx.EmptyState(), update)


def test_reference_checks_catch_the_agc_and_block_rms_mutants():
    # Params of norm ~0.05 < eps + ||W|| matter; eps=0.05 makes the difference visible.
    small = {"w": 0.02 * np.ones((3, 4), np.float32), "b": np.zeros(4, np.float32)}
    gx.testing.check_against_reference(gx.adaptive_grad_clip(0.1, eps=0.05), ref.adaptive_grad_clip(0.1, eps=0.05),
                                       steps=3, params=small)
    with pytest.raises(AssertionError):
        gx.testing.check_against_reference(_agc_mutant(0.1, eps=0.05), ref.adaptive_grad_clip(0.1, eps=0.05),
                                           steps=3, params=small)
    gx.testing.check_against_reference(gx.clip_by_block_rms(0.5), ref.clip_by_block_rms(0.5), steps=3)
    with pytest.raises(AssertionError):
        gx.testing.check_against_reference(_block_norm_mutant(0.5), ref.clip_by_block_rms(0.5), steps=3)


def test_clip_state_names_are_empty_state_as_in_optax():
    for name in ["ClipState", "ClipByGlobalNormState", "AdaptiveGradClipState", "NonNegativeParamsState"]:
        assert getattr(gx, name) is gx.EmptyState
        assert getattr(optax, name) is optax.EmptyState
    assert gx.ZeroNansState._fields == optax.ZeroNansState._fields == ("found_nan",)


# --------------------------------------------------------------------------- constraints


def test_zero_nans_zeroes_nans_keeps_infs_and_flags_leaves():
    tx = gx.zero_nans()
    params = {"a": jnp.zeros(2), "b": jnp.zeros(2, jnp.bfloat16)}
    state = tx.init(params)
    grads = {"a": jnp.array([jnp.nan, jnp.inf]), "b": jnp.array([1.0, 2.0], jnp.bfloat16)}
    updates, state = jax.jit(tx.update)(grads, state)
    np.testing.assert_array_equal(updates["a"], [0.0, np.inf])
    assert updates["b"].dtype == jnp.bfloat16
    assert bool(state.found_nan["a"]) and not bool(state.found_nan["b"])
    assert state.found_nan["a"].dtype == jnp.bool_ and state.found_nan["a"].shape == ()
    updates, state = tx.update({"a": jnp.ones(2), "b": jnp.ones(2, jnp.bfloat16)}, state)
    assert not bool(state.found_nan["a"])  # the flag is the last update's


def test_zero_nans_matches_optax_state_and_rejects_other_trees():
    tx, theirs = gx.zero_nans(), optax.zero_nans()
    params = {"a": jnp.zeros(3), "b": [jnp.zeros(())]}
    grads = {"a": jnp.array([1.0, jnp.nan, 3.0]), "b": [jnp.array(jnp.nan)]}
    ours = tx.update(grads, tx.init(params))
    with loose:
        expected = theirs.update(grads, theirs.init(params))
    _close(ours, expected)
    with pytest.raises(gx.TreeMismatchError, match=r"\['b'\]"):
        tx.update({"a": jnp.zeros(3)}, tx.init(params))


def test_keep_params_nonnegative_projects_and_needs_params():
    tx = gx.keep_params_nonnegative()
    params = jnp.array([1.0, 1.0, 0.0, 2.0])
    updates, _ = tx.update(jnp.array([-2.0, 0.5, -1.0, -2.0]), tx.init(params), params)
    np.testing.assert_array_equal(updates, [-1.0, 0.5, 0.0, -2.0])
    assert np.all(np.asarray(gx.apply_updates(params, updates)) >= 0)
    with pytest.raises(ValueError, match="params"):
        tx.update(jnp.ones(4), tx.init(params))


def _nonnegative_mutant():
    """Broken: clips the update at 0 instead of the new params (never lets a param decrease)."""

    def update(updates, state, params=None, **extra):
        return jax.tree_util.tree_map(lambda u: jnp.maximum(u, 0), updates), state

    return gx.GradientTransformation(lambda p: gx.EmptyState(), update)


def test_reference_check_catches_the_nonnegative_mutant():
    params = {"w": np.abs(np.random.default_rng(0).normal(size=(3, 4))).astype(np.float32)}
    gx.testing.check_against_reference(gx.keep_params_nonnegative(), ref.keep_params_nonnegative(),
                                       steps=3, params=params)
    with pytest.raises(AssertionError):
        gx.testing.check_against_reference(_nonnegative_mutant(), ref.keep_params_nonnegative(),
                                           steps=3, params=params)
