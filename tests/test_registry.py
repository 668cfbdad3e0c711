"""Every registered transformation: reference parity, optax parity, validation, errors.

The registry (gradxform/testing/registry/) lists each transformation once;
these tests iterate over it with no per-name special cases.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing.registry import INVALID_CASES, REGISTRY

from _entries import sampled

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion

WITH_REFERENCE = [e for e in REGISTRY if e.reference is not None]
WITH_OPTAX = [e for e in REGISTRY if e.optax_name is not None and not e.random]
WITH_INVALID = INVALID_CASES  # derived from each factory's hyperparameter declaration


def _params(dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "layer1": {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=(4,)), dtype)},
        "head": [jnp.asarray(rng.normal(size=(2,)), dtype), jnp.asarray(rng.normal(), dtype)],
    }


def _grads(params, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda p: jnp.asarray(scale * rng.normal(size=p.shape), p.dtype), params
    )


def _extra(entry, step, params, grads):
    return entry.extra_args_fn(step, params, grads) if entry.extra_args_fn else {}


@pytest.mark.parametrize("entry", WITH_REFERENCE, ids=str)
def test_reference_parity_float32(entry):
    gx.testing.check_against_reference(
        entry.build(), entry.reference(), steps=6, dtype=np.float32, extra_args_fn=entry.extra_args_fn
    )


@pytest.mark.parametrize("entry", sampled(WITH_REFERENCE))
def test_reference_parity_bfloat16(entry):
    gx.testing.check_against_reference(
        entry.build(), entry.reference(), steps=4, dtype=jnp.bfloat16, extra_args_fn=entry.extra_args_fn
    )


@pytest.mark.parametrize("entry", WITH_OPTAX, ids=str)
def test_parity_with_optax(entry):
    ours = entry.build()
    theirs = entry.build_optax(optax)
    p_ours = p_theirs = _params()
    s_ours, s_theirs = ours.init(p_ours), theirs.init(p_theirs)
    for step in range(6):
        grads = _grads(p_ours, seed=step + 1)
        if step == 2:  # exact zeros in one step
            grads["layer1"]["w"] = grads["layer1"]["w"].at[0].set(0.0)
        extra = _extra(entry, step, p_ours, grads)
        u_ours, s_ours = jax.jit(ours.update)(grads, s_ours, p_ours, **extra)
        with loose:
            theirs_extra = _extra(entry, step, p_theirs, grads) if entry.optax_extra_args else {}
            u_theirs, s_theirs = theirs.update(grads, s_theirs, p_theirs, **theirs_extra)
        p_ours, p_theirs = gx.apply_updates(p_ours, u_ours), optax.apply_updates(p_theirs, u_theirs)
        for (path, a), b in zip(
            jax.tree_util.tree_flatten_with_path(u_ours)[0], jax.tree_util.tree_leaves(u_theirs)
        ):
            np.testing.assert_allclose(
                np.asarray(a), np.asarray(b), rtol=5e-5, atol=1e-7,
                err_msg=f"{entry.name}: step {step + 1}, leaf {jax.tree_util.keystr(path)}",
            )


@pytest.mark.parametrize("entry,bad,arg", WITH_INVALID, ids=lambda x: x if isinstance(x, str) else None)
def test_impossible_hyperparameters_raise_value_error_naming_them(entry, bad, arg):
    with pytest.raises(ValueError) as info:
        entry.build(**bad)
    message = str(info.value)
    assert f"`{arg}`" in message, message
    value = next(iter(bad.values()))
    assert repr(value) in message or str(value) in message, message


def test_valid_edge_values_are_accepted():
    gx.adam(0.0)  # zero learning rate (warm-up) is allowed
    gx.adam(1e-3, b1=0.0, b2=0.0, eps=0.0)
    gx.sgd(0.1, momentum=0.0)
    gx.add_decayed_weights(0.0)


def test_traced_hyperparameters_skip_validation():
    params = {"w": jnp.ones(3)}

    @jax.jit
    def run(lr, b1):
        tx = gx.adam(lr, b1=b1)
        return tx.update(params, tx.init(params), params)[0]

    # b1=1.5 would be rejected eagerly; traced values are only known at run time.
    out = run(jnp.float32(-1.0), jnp.float32(1.5))
    assert np.all(np.isfinite(np.asarray(out["w"])))
    with pytest.raises(ValueError, match="learning_rate"):
        gx.adam(jnp.float32(jnp.nan))  # a concrete array is still checked


def test_adam_accepts_nothing_optax_accepts_silently():
    # A negative learning rate is accepted (ascent, optax's idiom); 1e39 overflows float32.
    with pytest.raises(ValueError, match=r"`learning_rate`.*1e\+39"):
        gx.adam(1e39, b1=0.9)
    with pytest.raises(ValueError, match=r"`b1`.*1\.5"):
        gx.adam(1e-3, b1=1.5)


def _has_param_state(entry):
    params = _params()
    leaves = jax.tree_util.tree_leaves(entry.build().init(params))
    return any(np.shape(x) == (3, 4) for x in leaves) or entry.needs_params  # a param-shaped leaf


@pytest.mark.parametrize("entry", [e for e in REGISTRY if _has_param_state(e)], ids=str)
def test_mis_shaped_gradient_names_key_path_and_both_shapes(entry):
    tx = entry.build()
    params = _params()
    state = tx.init(params)
    grads = _grads(params, 1)
    grads["layer1"]["w"] = jnp.ones((4, 3))
    with pytest.raises(gx.TreeMismatchError, match=r"\['layer1'\]\['w'\].*\(4, 3\).*\(3, 4\)"):
        tx.update(grads, state, params, **_extra(entry, 0, params, grads))


@pytest.mark.parametrize("entry", [e for e in REGISTRY if _has_param_state(e)], ids=str)
def test_gradient_tree_of_another_structure_names_the_missing_leaf(entry):
    tx = entry.build()
    params = _params()
    state = tx.init(params)
    grads = _grads(params, 1)
    del grads["head"]
    with pytest.raises(gx.TreeMismatchError, match=r"\['head'\]"):
        tx.update(grads, state, params, **_extra(entry, 0, params, grads))


@pytest.mark.parametrize("entry", REGISTRY, ids=str)
def test_state_of_another_transformation_raises_type_error(entry):
    params = _params()
    tx = entry.build()
    own = tx.init(params)
    other = gx.scale_by_adadelta().init(params)
    if isinstance(own, type(other)):
        other = gx.scale_by_adam().init(params)
    with pytest.raises(TypeError, match="expected"):
        tx.update(_grads(params, 1), other, params, **_extra(entry, 0, params, params))


def test_type_error_names_expected_and_found_state():
    params = _params()
    with pytest.raises(TypeError, match=r"scale_by_adam.*ScaleByAdamState.*got ScaleByRssState"):
        gx.scale_by_adam().update(params, gx.scale_by_rss().init(params))


def test_add_noise_variance_follows_the_annealing_schedule():
    eta, gamma = 0.5, 0.55
    tx = gx.add_noise(eta, gamma, key=3)
    zeros = {"w": jnp.zeros((200_000,))}
    state = tx.init(zeros)
    for t in range(3):
        noisy, state = tx.update(zeros, state)
        var = float(jnp.var(noisy["w"]))
        expected = eta / (1 + t) ** gamma
        assert math.isclose(var, expected, rel_tol=0.02), (t, var, expected)
    # int seed and key give the same stream; different keys differ
    a = gx.add_noise(eta, gamma, key=jax.random.PRNGKey(3))
    same, _ = a.update(zeros, a.init(zeros))
    first, _ = gx.add_noise(eta, gamma, key=3).update(zeros, gx.add_noise(eta, gamma, key=3).init(zeros))
    np.testing.assert_array_equal(same["w"], first["w"])


def test_rprop_differs_from_optax_0_2_8_by_returning_the_current_step():
    """optax 0.2.8's scale_by_rprop returns the previous step's update (a known bug)."""
    g = jnp.array([1.0, -2.0])
    ours, theirs = gx.scale_by_rprop(0.1), optax.scale_by_rprop(0.1)
    u_ours, _ = ours.update(g, ours.init(g))
    with loose:
        u_theirs, _ = theirs.update(g, theirs.init(g))
    np.testing.assert_allclose(u_ours, [0.1, -0.1], rtol=1e-6)  # lr * sign(g), as in PyTorch
    np.testing.assert_array_equal(u_theirs, [0.0, 0.0])  # optax: the (zero) previous update
