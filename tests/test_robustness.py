"""Robustness sweep: fuzzed hyperparameters and extreme gradients; state round trips.

- Every built-in optimizer, over hyperparameters drawn from its valid ranges
  (gradxform.testing.strategies.HYPERPARAMETERS) and gradient sequences with exact
  zeros, huge (1e4) and tiny (1e-4) entries, in float32 and bfloat16: finite inputs
  give finite updates and a finite state. (The drawn ranges keep eps > 0, where the
  textbook rules are finite. float16 is not swept: a textbook update can exceed
  its range, 65504, e.g. Adam with b2=0 after a 1e4 gradient then a 1e-4 one; its
  accumulators are checked separately below.)
- Optimizer state survives pickle, jax.tree_util flatten/unflatten and
  flax.serialization, and training continues bit-identically after the round trip.
"""

import pickle

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gradxform as gx
from gradxform.testing import strategies as gst
from gradxform.testing.registry import REGISTRY
from _entries import sampled

def _first_per_factory(entries):
    seen, out = set(), []
    for e in entries:
        if id(e.factory) not in seen:
            seen.add(id(e.factory))
            out.append(e)
    return out


# Every optimizer (a factory that declares a learning rate), in its registry configuration.
OPTIMIZERS = [
    e for e in _first_per_factory(REGISTRY)
    if "learning_rate" in getattr(e.factory, "hyperparameters", {}) and not (e.random or e.slow)
]


def _params(dtype):
    return {"w": jnp.ones((3, 2), dtype), "b": jnp.full((2,), -0.5, dtype), "s": jnp.asarray(0.25, dtype)}


def _finite(tree):
    return all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree_util.tree_leaves(tree))


def _drawn_hyperparameters(entry):
    """Valid hyperparameters from the factory's declaration; its other registry arguments kept."""
    return gst.hyperparameters(entry.factory.__name__)


def _extra(entry, step, params, grads):
    return entry.extra_args_fn(step, params, grads) if entry.extra_args_fn else {}


# bf16 in the thorough run (--runslow): the float16 test below covers low precision in CI.
@pytest.mark.parametrize(
    "dtype", [jnp.float32, pytest.param(jnp.bfloat16, marks=pytest.mark.slow)], ids=["f32", "bf16"]
)
@pytest.mark.parametrize("entry", OPTIMIZERS, ids=str)
def test_finite_inputs_give_finite_outputs(entry, dtype):
    params = _params(dtype)
    @settings(max_examples=6)
    @given(_drawn_hyperparameters(entry), gst.gradient_sequences(params, 4))
    def run(kwargs, grads_seq):
        tx = entry.build(**kwargs)
        state = tx.init(params)
        p = params
        for step, grads in enumerate(grads_seq):
            updates, state = tx.update(grads, state, p, **_extra(entry, step, p, grads))
            assert _finite(updates), (entry.name, kwargs, grads)
            assert _finite(state), (entry.name, kwargs, grads)

    run()


@pytest.mark.parametrize("entry", OPTIMIZERS, ids=str)
def test_float16_squared_gradient_accumulators_do_not_overflow(entry):
    """A 1e4 gradient squares to 1e8, past float16's 65504: accumulators of squares are float32."""
    params = _params(jnp.float16)
    tx = entry.build()
    state = tx.init(params)
    big = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 1e4), params)
    for step, grads in enumerate((big, big, jax.tree_util.tree_map(jnp.zeros_like, params))):
        updates, state = tx.update(grads, state, params, **_extra(entry, step, params, grads))
        assert _finite(updates) and _finite(state), entry.name
        assert all(u.dtype == jnp.float16 for u in jax.tree_util.tree_leaves(updates))


DETERMINISTIC = [e for e in REGISTRY if not e.random]


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def _run(entry, tx, state, params, seeds):
    for seed in seeds:
        grads = _grads(params, seed)
        extra = entry.extra_args_fn(seed, params, grads) if entry.extra_args_fn else {}
        updates, state = tx.update(grads, state, params, **extra)
        params = gx.apply_updates(params, updates)
    return params, state


def _identical(a, b):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert jnp.asarray(x).dtype == jnp.asarray(y).dtype


@pytest.mark.parametrize("entry", sampled([e for e in DETERMINISTIC if not e.slow]))
def test_state_round_trips_and_training_continues_bit_identically(entry):
    tx = entry.build()
    params = {"w": jnp.ones((3, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}
    params, state = _run(entry, tx, tx.init(params), params, [1, 2])
    expected = _run(entry, tx, state, params, [3, 4])

    restored = {
        "pickle": pickle.loads(pickle.dumps(state)),
        "tree_util": jax.tree_util.tree_unflatten(*reversed(jax.tree_util.tree_flatten(state))),
        "flax": flax.serialization.from_bytes(tx.init(params), flax.serialization.to_bytes(state)),
    }
    for how, copy in restored.items():
        _identical(copy, state)
        got = _run(entry, tx, copy, params, [3, 4])
        _identical(got, expected)


def test_centered_rmsprop_rounding_never_takes_the_root_of_a_negative_variance():
    """decay=0: nu = g^2 and mu^2 = g^2 are rounded apart, and nu - mu^2 could be -1 ulp (NaN)."""
    tx = gx.scale_by_stddev(decay=0.0, eps=6e-8, eps_in_sqrt=False, initial_scale=0.3)
    state = tx.init(jnp.zeros(2))
    for g in ([-4.537045, -2.027031], [9.0, 0.0], [0.0, 0.0]):
        updates, state = tx.update(jnp.array(g, jnp.float32), state)
        assert _finite(updates), (g, updates)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.complex64])
@pytest.mark.parametrize("factory", [gx.clip_by_global_norm, gx.clip])
def test_a_traced_zero_bound_clips_to_zeros_never_nan(factory, dtype):
    """A bound of 0 is rejected when concrete; traced (inside jit) it must give zeros, not 0/0."""
    grads = {"zero": jnp.zeros((3,), dtype), "one": jnp.ones((2,), dtype)}

    @jax.jit
    def clipped(bound, g):
        tx = factory(bound)
        return tx.update(g, tx.init(g))[0]

    for g in (jax.tree_util.tree_map(jnp.zeros_like, grads), grads):
        out = clipped(jnp.float32(0.0), g)
        for leaf in jax.tree_util.tree_leaves(out):
            assert leaf.dtype == dtype
            np.testing.assert_array_equal(np.asarray(leaf.astype(jnp.complex64)), 0)
