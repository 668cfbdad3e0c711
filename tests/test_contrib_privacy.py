"""gx.contrib's DP-SGD (`differentially_private_aggregate`, `dpsgd`) and `split_real_and_imaginary`.

Parity with optax 0.2.8 over 25 steps, with the paper's NumPy references, mutants the
references must catch, edge cases and validation. The registry entries
(gradxform/testing/registry/_contrib_privacy.py) add the laws and the dtype policy.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

ref = gx.testing.reference
loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion
B = 5  # examples per batch


def _params(dtype=jnp.float32):
    return {"w": jnp.zeros((3, 2), dtype), "b": jnp.zeros((2,), dtype), "s": [jnp.zeros((), dtype)]}


def _per_example(step, dtype=jnp.float32, scale=2.0):
    """Per-example gradients of `_params`: norms spread around 1, so some are clipped and some not."""
    rng = np.random.default_rng(step)
    sizes = rng.uniform(0.2, scale, size=(B,))

    def leaf(shape):
        return jnp.asarray(rng.normal(size=(B, *shape)) * sizes.reshape((B,) + (1,) * len(shape)) / 2, dtype)

    return {"w": leaf((3, 2)), "b": leaf((2,)), "s": [leaf(())]}


def _assert_close(ours, theirs, rtol=1e-5, atol=1e-7, msg=""):
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(ours)[0], jax.tree_util.tree_leaves(theirs)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=rtol, atol=atol,
                                   err_msg=f"{msg} {jax.tree_util.keystr(path)}")


def _run_pair(ours, theirs, steps=25, params=None, grads_fn=_per_example):
    params = _params() if params is None else params
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    update = jax.jit(ours.update)
    with loose:
        their_update = jax.jit(theirs.update)
    for step in range(steps):
        g = grads_fn(step)
        u_ours, s_ours = update(g, s_ours, params)
        with loose:
            u_theirs, s_theirs = their_update(g, s_theirs, params)
        _assert_close(u_ours, u_theirs, msg=f"step {step + 1}")
    return s_ours, s_theirs


# --------------------------------------------------------------------------- optax parity


@pytest.mark.parametrize("noise_multiplier", [pytest.param(0.0, marks=pytest.mark.slow), 0.7])
def test_aggregate_matches_optax_for_25_steps_with_the_same_key(noise_multiplier):
    ours = gx.contrib.differentially_private_aggregate(1.0, noise_multiplier, key=3)
    theirs = optax.contrib.differentially_private_aggregate(1.0, noise_multiplier, key=3)
    s_ours, s_theirs = _run_pair(ours, theirs)
    # the same key sequence: raw key data here, a typed key in optax
    np.testing.assert_array_equal(np.asarray(s_ours.rng_key), np.asarray(jax.random.key_data(s_theirs.rng_key)))


@pytest.mark.parametrize("momentum,nesterov", [pytest.param(None, False, marks=pytest.mark.slow), (0.9, True)])
def test_dpsgd_matches_optax_for_25_steps(momentum, nesterov):
    kwargs = {"learning_rate": 0.1, "l2_norm_clip": 0.8, "noise_multiplier": 0.5, "seed": 7, "momentum": momentum,
                  "nesterov": nesterov}
    _run_pair(gx.contrib.dpsgd(**kwargs), optax.contrib.dpsgd(**kwargs))


def test_dpsgd_state_has_optax_layout():
    kwargs = {"learning_rate": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 0.5, "seed": 0, "momentum": 0.9}
    ours, theirs = gx.contrib.dpsgd(**kwargs).init(_params()), optax.contrib.dpsgd(**kwargs).init(_params())
    assert [type(s).__name__ for s in ours] == [type(s).__name__ for s in theirs]
    assert ours[0]._fields == theirs[0]._fields == ("rng_key",)
    assert len(jax.tree_util.tree_leaves(ours)) == len(jax.tree_util.tree_leaves(theirs))


@pytest.mark.slow
def test_deterministic_part_agrees_with_optax_to_an_ulp_without_noise():
    ours = gx.contrib.differentially_private_aggregate(1.0, 0.0, key=0)
    theirs = optax.contrib.differentially_private_aggregate(1.0, 0.0, key=0)
    g = _per_example(0)
    u_ours, _ = ours.update(g, ours.init(_params()))
    with loose:
        u_theirs, _ = theirs.update(g, theirs.init(_params()))
    _assert_close(u_ours, u_theirs, rtol=2.5e-7, atol=0)  # 2 ulps: the clipped sum's rounding order


# --------------------------------------------------------------------------- the paper's reference


def _check(tx, reference, steps=6, dtype=np.float32, grads_fn=_per_example, **kw):
    params = jax.tree_util.tree_map(np.asarray, _params(dtype))
    grads = [jax.tree_util.tree_map(np.asarray, grads_fn(s, dtype)) for s in range(steps)]
    return gx.testing.check_against_reference(tx, reference, steps=steps, params=params, grads=grads, dtype=dtype,
                                              **kw)


@pytest.mark.parametrize("kwargs", [pytest.param({"l2_norm_clip": 1.0, "noise_multiplier": 0.0, "key": 0},
                                                 marks=pytest.mark.slow),
                                    {"l2_norm_clip": 0.5, "noise_multiplier": 1.1, "key": 5}])
def test_aggregate_matches_the_papers_algorithm(kwargs):
    _check(gx.contrib.differentially_private_aggregate(**kwargs), ref.differentially_private_aggregate(**kwargs))


def test_dpsgd_matches_the_papers_algorithm_with_momentum():
    kwargs = {"learning_rate": 0.05, "l2_norm_clip": 1.0, "noise_multiplier": 0.3, "seed": 2, "momentum": 0.5}
    _check(gx.contrib.dpsgd(**kwargs), ref.dpsgd(**kwargs))


def _mutant(l2_norm_clip, noise_multiplier, key, *, per_leaf=False, std_without_clip=False,
            noise_not_averaged=False, no_min=False, reuse_key=False):
    """A deliberately broken aggregate (each flag breaks one point of Algorithm 1)."""

    def init(params):
        del params
        return jax.random.key(key)

    def update(updates, state, params=None):
        del params
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        keys = jax.random.split(state, len(leaves) + 1)
        batch = leaves[0].shape[0]
        sq = [jnp.sum(x.reshape(batch, -1) ** 2, axis=1) for x in leaves]
        total = jnp.sqrt(sum(sq))
        out = []
        for j, x in enumerate(leaves):
            norm = jnp.sqrt(sq[j]) if per_leaf else total
            factor = l2_norm_clip / norm if no_min else jnp.minimum(1.0, l2_norm_clip / norm)
            summed = jnp.sum(x * factor.reshape((batch,) + (1,) * (x.ndim - 1)), axis=0)
            std = noise_multiplier * (1.0 if std_without_clip else l2_norm_clip)
            noise = std * jax.random.normal(keys[0 if reuse_key else j + 1], x.shape[1:], jnp.float32)
            out.append(summed / batch + noise if noise_not_averaged else (summed + noise) / batch)
        return treedef.unflatten(out), keys[0]

    return gx.GradientTransformation(init, update)


def _small_grads(step, dtype=np.float32):
    g = _per_example(step, dtype)
    return {"w": g["w"], "b": g["b"]}


_MUTANT = {"l2_norm_clip": 0.5, "noise_multiplier": 1.1, "key": 5}


def _check_mutant(**flags):
    params = {"w": np.zeros((3, 2), np.float32), "b": np.zeros((2,), np.float32)}
    grads = [jax.tree_util.tree_map(np.asarray, _small_grads(s)) for s in range(2)]
    gx.testing.check_against_reference(_mutant(**_MUTANT, **flags), ref.differentially_private_aggregate(**_MUTANT),
                                       steps=2, params=params, grads=grads, jit=False)


def test_unbroken_mutant_frame_matches_the_reference():
    _check_mutant()  # so that each mutant below fails for its flag only


@pytest.mark.parametrize("flag", ["per_leaf", "std_without_clip", "noise_not_averaged", "no_min", "reuse_key"])
def test_reference_catches_broken_aggregates(flag):
    with pytest.raises(AssertionError, match="differ from the reference"):
        _check_mutant(**{flag: True})


# --------------------------------------------------------------------------- noise statistics, edge cases


def test_noise_has_the_papers_distribution():
    sigma, clip = 1.5, 0.4
    tx = gx.contrib.differentially_private_aggregate(clip, sigma, key=11)
    zeros = {"x": jnp.zeros((4, 40000))}
    u, state = tx.update(zeros, tx.init({"x": jnp.zeros(40000)}))
    u2, _ = tx.update(zeros, state)
    z = np.asarray(u["x"]) * 4 / (sigma * clip)  # (sum + N(0, sigma^2 C^2)) / B with a zero sum
    assert abs(z.mean()) < 0.02 and abs(z.std() - 1) < 0.02
    assert abs(np.mean(z ** 4) - 3) < 0.1  # Gaussian kurtosis
    assert abs(np.corrcoef(z, np.asarray(u2["x"]))[0, 1]) < 0.02  # fresh noise each step


def test_all_zero_gradients_give_zero_updates_without_noise():
    # with noise: finite (the registry's fp16 zero-gradient test runs the noisy aggregate)
    params = {"w": jnp.zeros((3, 2), jnp.float16)}
    g = {"w": jnp.zeros((B, 3, 2), jnp.float16)}
    tx = gx.contrib.dpsgd(0.1, 1.0, 0.0, seed=0, momentum=0.9)
    u, _ = tx.update(g, tx.init(params), params)
    for leaf in jax.tree_util.tree_leaves(u):
        assert leaf.dtype == jnp.float16 and not np.any(np.asarray(leaf, np.float32))


def test_zero_clip_gives_zero_updates():
    tx = gx.contrib.differentially_private_aggregate(0.0, 1.0, key=0)
    u, _ = tx.update(_per_example(1), tx.init(_params()))
    assert all(not np.any(np.asarray(x)) for x in jax.tree_util.tree_leaves(u))


def test_bf16_gradients_give_bf16_updates_of_the_params_shapes():
    # (bf16 parity with the reference: the registry's bf16 test)
    tx = gx.contrib.differentially_private_aggregate(1.0, 0.5, key=0)
    params = {"w": jnp.zeros((3, 2), jnp.bfloat16), "s": jnp.zeros((), jnp.bfloat16)}
    state = tx.init(params)
    g = {"w": jnp.ones((B, 3, 2), jnp.bfloat16), "s": jnp.ones((B,), jnp.bfloat16)}
    u, new_state = tx.update(g, state)
    assert jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), u) == jax.tree_util.tree_map(
        lambda x: (x.shape, x.dtype), params)
    assert new_state.rng_key.dtype == state.rng_key.dtype and new_state.rng_key.shape == state.rng_key.shape


def test_every_key_spelling_gives_the_same_noise():
    g = _per_example(3)
    outs = []
    for key in (4, jax.random.key(4), jax.random.PRNGKey(4)):
        tx = gx.contrib.differentially_private_aggregate(1.0, 1.0, key=key)
        outs.append(tx.update(g, tx.init(_params()))[0])
    tx = gx.contrib.differentially_private_aggregate(1.0, 1.0, seed=4)
    outs.append(tx.update(g, tx.init(_params()))[0])
    for other in outs[1:]:
        _assert_close(other, outs[0], rtol=0, atol=0)


def test_missing_key_warns_and_uses_seed_0_as_optax():
    with pytest.warns(DeprecationWarning, match="key"):
        tx = gx.contrib.differentially_private_aggregate(1.0, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = optax.contrib.differentially_private_aggregate(1.0, 1.0)
    np.testing.assert_array_equal(np.asarray(tx.init(_params()).rng_key),
                                  np.asarray(jax.random.key_data(theirs.init(_params()).rng_key)))


def test_scalar_leaf_and_ragged_batch_raise_naming_the_leaf():
    tx = gx.contrib.differentially_private_aggregate(1.0, 1.0, key=0)
    state = tx.init(_params())
    with pytest.raises(ValueError, match=r"\['s'\]\[0\].*scalar"):
        tx.update({"w": jnp.ones((B, 3, 2)), "b": jnp.ones((B, 2)), "s": [jnp.ones(())]}, state)
    with pytest.raises(ValueError, match=r"\['b'\] has 4 examples.*\['w'\] has shape \(5, 3, 2\)"):
        tx.update({"b": jnp.ones((4, 2)), "w": jnp.ones((B, 3, 2))}, state)
    with pytest.raises(TypeError, match="key"):
        gx.contrib.differentially_private_aggregate(1.0, 1.0, key="seven")


@pytest.mark.parametrize("factory,kwargs,arg", [
    (gx.contrib.differentially_private_aggregate, {"l2_norm_clip": -1.0, "noise_multiplier": 1.0, "key": 0},
     "l2_norm_clip"),
    (gx.contrib.differentially_private_aggregate, {"l2_norm_clip": 1.0, "noise_multiplier": float("nan"), "key": 0},
     "noise_multiplier"),
    (gx.contrib.dpsgd, {"learning_rate": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "seed": 0, "momentum": 1.0},
     "momentum"),
    (gx.contrib.dpsgd, {"learning_rate": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 1.0, "seed": 0, "nesterov": True},
     "nesterov"),
])
def test_impossible_values_raise_naming_the_argument(factory, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        factory(**kwargs)


# --------------------------------------------------------------------------- split_real_and_imaginary


def _complex_params():
    rng = np.random.default_rng(0)
    return {"z": jnp.asarray(rng.normal(size=(3, 2)) + 1j * rng.normal(size=(3, 2)), jnp.complex64),
            "r": jnp.asarray(rng.normal(size=(2,)), jnp.float32),
            "s": jnp.asarray(1.0 - 2.0j, jnp.complex64)}


def _complex_grads(step, dtype=None):
    del dtype
    rng = np.random.default_rng(100 + step)
    return jax.tree_util.tree_map(
        lambda p: jnp.asarray(rng.normal(size=p.shape) + (1j * rng.normal(size=p.shape) if jnp.iscomplexobj(p) else 0),
                              p.dtype), _complex_params())


def test_split_matches_optax_for_25_steps_on_complex_params():
    ours = gx.contrib.split_real_and_imaginary(gx.adam(0.1))
    theirs = optax.contrib.split_real_and_imaginary(optax.adam(0.1))
    s_ours, s_theirs = _run_pair(ours, theirs, params=_complex_params(), grads_fn=_complex_grads)
    # optax's checkpoint layout: each complex leaf's moments as a (real, imaginary) pair of real leaves
    assert [(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(s_ours)] == [
        (x.shape, x.dtype) for x in jax.tree_util.tree_leaves(s_theirs)]
    assert str(jax.tree_util.tree_structure(s_ours)) == str(jax.tree_util.tree_structure(s_theirs))


def test_split_adam_equals_adam_on_stacked_real_and_imaginary_parts():
    split = gx.contrib.split_real_and_imaginary(gx.adam(0.1))
    plain = gx.adam(0.1)
    params = _complex_params()["z"]
    stacked = jnp.stack([params.real, params.imag])
    s_split, s_plain = split.init(params), plain.init(stacked)
    for step in range(5):
        g = _complex_grads(step)["z"]
        u_split, s_split = split.update(g, s_split, params)
        u_plain, s_plain = plain.update(jnp.stack([g.real, g.imag]), s_plain, stacked)
        assert u_split.dtype == jnp.complex64
        np.testing.assert_array_equal(np.asarray(u_split.real), np.asarray(u_plain[0]))
        np.testing.assert_array_equal(np.asarray(u_split.imag), np.asarray(u_plain[1]))


def test_split_passes_real_leaves_through_unchanged():
    tx = gx.contrib.split_real_and_imaginary(gx.sgd(0.5))
    params = {"r": jnp.ones(3), "z": jnp.ones(2, jnp.complex64)}
    u, _ = tx.update({"r": jnp.arange(3.0), "z": jnp.array([1 + 1j, -2j], jnp.complex64)}, tx.init(params), params)
    assert u["r"].dtype == jnp.float32 and u["r"].tolist() == [0.0, -0.5, -1.0]
    assert u["z"].tolist() == [(-0.5 - 0.5j), 1j]


def test_split_matches_its_reference_on_complex_params():
    _check_complex(gx.contrib.split_real_and_imaginary(gx.adam(0.1)))


def _check_complex(tx, steps=5):
    """check_against_reference's loop for complex leaves (its comparison reads real values only)."""
    reference = ref.split_real_and_imaginary(ref.adam(0.1))
    params = _complex_params()
    ref_params = jax.tree_util.tree_map(np.asarray, params)
    state, ref_state = tx.init(params), reference.init(ref_params)
    for step in range(steps):
        g = _complex_grads(step)
        u, state = tx.update(g, state, params)
        expected, ref_state = reference.update(jax.tree_util.tree_map(np.asarray, g), ref_state, ref_params)
        for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(u)[0], jax.tree_util.tree_leaves(expected)):
            assert np.asarray(a).dtype == np.asarray(b).dtype
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=2e-5, atol=1e-6,
                                       err_msg=f"step {step + 1} {jax.tree_util.keystr(path)}")
        params = gx.apply_updates(params, u)
        ref_params = jax.tree_util.tree_map(lambda p, x: (p + x).astype(p.dtype), ref_params, expected)


def test_reference_catches_a_conjugated_merge_and_a_complex_inner_adam():
    inner = gx.contrib.split_real_and_imaginary(gx.adam(0.1))

    def conjugated_update(updates, state, params=None):
        updates, state = inner.update(updates, state, params)
        return jax.tree_util.tree_map(jnp.conj, updates), state

    conjugated = gx.GradientTransformation(inner.init, conjugated_update)
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        _check_complex(conjugated, steps=1)
    with pytest.raises(AssertionError, match="Not equal to tolerance"), loose:  # gx.adam on complex: strict fails
        _check_complex(gx.adam(0.1), steps=2)  # one second moment of |g|^2, not one per part


def test_split_passes_extra_args_and_checks_its_state():
    tx = gx.contrib.split_real_and_imaginary(gx.chain(gx.scale_by_adam(), gx.scale(-1.0)))
    params = _complex_params()
    u, _ = tx.update(_complex_grads(0), tx.init(params), params, value=jnp.ones(()))  # ignored by adam
    assert u["z"].dtype == jnp.complex64
    with pytest.raises(TypeError, match="SplitRealAndImaginaryState"):
        tx.update(_complex_grads(0), gx.adam(0.1).init(params), params)
    with pytest.raises(TypeError, match="inner"):
        gx.contrib.split_real_and_imaginary(None)
