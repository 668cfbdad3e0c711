"""Non-float data over the whole registry (BUILD.md, "Dtype policy"): integer and boolean
params are refused with a TypeError naming the leaf, integer gradients for float params are
cast, Python float params are float32 scalars, complex params in Rprop are refused.

Cheap by construction (one tiny tree, one update per entry): CI runs the sweeps on
`_entries.CI_SAMPLE`, one entry per update path; --runslow on every factory.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform import _checks, _tree
from gradxform.testing.registry import REGISTRY

from _entries import CI_SAMPLE, sampled as _sampled

DETERMINISTIC = [e for e in REGISTRY if not e.random]


def _extra(entry, params, grads):
    return entry.extra_args_fn(0, params, grads) if entry.extra_args_fn else {}


def _step(entry, params, grads):
    """init, one update, apply_updates: what a training loop does."""
    tx = entry.build()
    updates, _ = tx.update(grads, tx.init(params), params, **_extra(entry, params, grads))
    return updates, gx.apply_updates(params, updates)


# Entries whose TypeError names another path than the params' (must stay exact).
PATH_NOT_NAMED = {"flatten_adam": "wrappers/_flatten.py: its inner init sees one vector per dtype, params['int32']"}

@pytest.mark.parametrize("entry", _sampled(REGISTRY))
def test_integer_params_raise_type_error_naming_the_leaf(entry, dtype=jnp.int32):
    params = {"f": jnp.ones(2, jnp.float32), "layer": {"n": jnp.ones(2, dtype)}}
    grads = {"f": jnp.ones(2, jnp.float32), "layer": {"n": jnp.ones(2, jnp.float32)}}
    path = r"params\[.*\]" if entry.name in PATH_NOT_NAMED else r"params\['layer'\]\['n'\]"
    with pytest.raises(TypeError, match=path + " has dtype " + np.dtype(dtype).name):
        _step(entry, params, grads)


@pytest.mark.parametrize("entry", _sampled(REGISTRY))
def test_bool_params_raise_type_error_naming_the_leaf(entry):
    test_integer_params_raise_type_error_naming_the_leaf(entry, jnp.bool_)


# Entries where the sweep's check does not apply, by design (every other entry casts):
INT_GRADS_BY_DESIGN = {
    # A wrapper that returns the updates it was given (exact integers; apply_updates casts them
    # to the params' dtype, which the sweep still checks).
    "snapshot": "pass-through",
    "monitor": "pass-through",
    # A frozen leaf has no state: its zero update keeps the gradient's dtype (int zeros).
    "selective_transform_mask_fn": "pass-through",
    # The registry feeds these a per-example batch (g, g / 8, -2 g) formed in g's own dtype, which
    # truncates integers: the fixture, not the rule (tested directly below).
    "differentially_private_aggregate": "fixture",
    "differentially_private_aggregate_no_noise": "fixture",
    "dpsgd": "fixture",
}


@pytest.mark.parametrize("entry", _sampled(DETERMINISTIC))
def test_integer_gradients_for_float_params_are_cast(entry):
    """int32 gradients give the updates of the same gradients in float32 (optax casts them;
    gradxform returned int32 updates truncated to 0)."""
    if INT_GRADS_BY_DESIGN.get(entry.name) == "fixture":
        pytest.skip("per-example fixture truncates integers; see test_private_aggregate_casts_integer_examples")
    _check_integer_gradients(entry, pass_through=entry.name in INT_GRADS_BY_DESIGN)


def test_private_aggregate_casts_integer_examples():
    tx = gx.contrib.differentially_private_aggregate(1.0, 0.5, seed=1)
    params = {"w": jnp.zeros(2)}
    ints = {"w": jnp.asarray([[1, -2], [3, 0], [0, 1]], jnp.int32)}  # three examples
    got, _ = tx.update(ints, tx.init(params), params)
    want, _ = tx.update(jax.tree_util.tree_map(lambda x: x.astype(jnp.float32), ints), tx.init(params), params)
    assert got["w"].dtype == jnp.float32
    np.testing.assert_array_equal(got["w"], want["w"])


def _check_integer_gradients(entry, pass_through=False):
    params = {"w": jnp.asarray([0.5, -1.5, 2.0], jnp.float32)}
    ints = {"w": jnp.asarray([1, -2, 3], jnp.int32)}
    floats = {"w": jnp.asarray([1.0, -2.0, 3.0], jnp.float32)}
    got_updates, got = _step(entry, params, ints)
    _, want = _step(entry, params, floats)
    assert got["w"].dtype == jnp.float32
    if pass_through:
        assert got_updates["w"].dtype == jnp.int32
    elif jax.tree_util.tree_leaves(entry.build().init(params)):  # stateful: float updates
        assert got_updates["w"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got["w"]), np.asarray(want["w"]), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("entry", _sampled(DETERMINISTIC))
def test_python_float_params_are_float32_scalars(entry):
    """``tx.update({'w': 0.5}, tx.init({'w': 1.0}), {'w': 1.0})`` works, as in optax, and gives
    the updates of float32 scalar params."""
    _check_python_floats(entry)


def _check_python_floats(entry):
    got, new_params = _step(entry, {"w": 1.0}, {"w": 0.5})
    want, _ = _step(entry, {"w": jnp.asarray(1.0, jnp.float32)}, {"w": jnp.asarray(0.5, jnp.float32)})
    assert jnp.asarray(got["w"]).dtype == jnp.float32 and new_params["w"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got["w"]), np.asarray(want["w"]), rtol=1e-6)


def test_python_float_params_state_is_strongly_typed_and_does_not_retrace():
    tx = gx.adam(0.1)
    state = tx.init({"w": 1.0})
    assert all(not x.weak_type for x in jax.tree_util.tree_leaves(state))
    traces = []

    @jax.jit
    def step(p, s):
        traces.append(1)
        u, s = tx.update({"w": 0.5}, s, p)
        return gx.apply_updates(p, u), s

    _, new_state = step({"w": 1.0}, state)
    _, new_state = step({"w": 1.0}, new_state)
    assert len(traces) == 1  # the state's types did not change
    assert jax.tree_util.tree_map(lambda x: (x.dtype, x.weak_type), new_state) == jax.tree_util.tree_map(
        lambda x: (x.dtype, x.weak_type), state
    )


def test_integer_updates_on_float_params_are_added_in_the_params_dtype():
    out = gx.apply_updates({"w": jnp.asarray([0.5, 1.5], jnp.bfloat16)}, {"w": jnp.asarray([1, -1], jnp.int32)})
    assert out["w"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out["w"], np.float32), [1.5, 0.5])


def test_apply_updates_refuses_integer_params_instead_of_truncating():
    # jnp would add 0.4 to 1 and truncate back to 1: the step silently does nothing.
    with pytest.raises(TypeError, match=r"apply_updates: params\['w'\] has dtype int32"):
        gx.apply_updates({"w": jnp.ones(2, jnp.int32)}, {"w": jnp.full(2, 0.4, jnp.float32)})
    with pytest.raises(TypeError, match=r"apply_updates: params\['m'\]\[0\] has dtype bool"):
        gx.apply_updates({"m": [jnp.zeros(2, jnp.bool_)]}, {"m": [jnp.ones(2, jnp.float32)]})


def test_python_int_params_are_integers():
    with pytest.raises(TypeError, match=r"params\['n'\] has dtype int32"):
        gx.adam(0.1).init({"n": 3})


@pytest.mark.parametrize("where", ["init", "update"])
def test_rprop_refuses_complex_params_naming_the_leaf(where):
    tx = gx.rprop(0.1)
    z = {"a": jnp.ones(2, jnp.float32), "z": jnp.asarray([1 + 1j, 2 - 1j], jnp.complex64)}
    if where == "init":
        with pytest.raises(TypeError, match=r"scale_by_rprop.init: params\['z'\] has dtype complex64"):
            tx.init(z)
    else:
        state = tx.init({"a": jnp.ones(2, jnp.float32), "z": jnp.ones(2, jnp.float32)})
        with pytest.raises(TypeError, match=r"scale_by_rprop.update: updates\['z'\] has dtype complex64"):
            tx.update(z, state)


# ---- deliberately broken versions: the checks above must catch them


def test_truncating_integer_gradients_are_caught(monkeypatch):
    """The old behaviour (integer gradients kept, the update truncated) fails the cast check."""
    entry = next(e for e in REGISTRY if e.name == "scale_by_adam")
    monkeypatch.setattr(_tree, "as_update", lambda g, olds=(), squared=None: jnp.asarray(g))
    with pytest.raises(AssertionError):
        _check_integer_gradients(entry)


def test_missing_integer_params_check_is_caught(monkeypatch):
    """Without the check (init and apply_updates), int32 params train silently: the test fails."""
    entry = next(e for e in REGISTRY if e.name == "sgd_momentum")
    monkeypatch.setattr(_checks, "check_float_leaves", lambda *a, **k: None)
    with pytest.raises(pytest.fail.Exception):
        test_integer_params_raise_type_error_naming_the_leaf(entry, jnp.int32)


def test_not_yet_lists_are_exact():
    """Every listed entry exists (each listed one is checked to still fail, above)."""
    names = {e.name for e in REGISTRY}
    assert set(INT_GRADS_BY_DESIGN) | set(PATH_NOT_NAMED) | CI_SAMPLE <= names
