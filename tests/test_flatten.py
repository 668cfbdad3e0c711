"""`flatten`: the same updates as the unflattened transformation, offsets that stay runtime values, clear errors."""

import pickle
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform import _checks

# Two dtypes, nested containers, a scalar, a matrix and a zero-size leaf.
PARAMS = {
    "dense": {"kernel": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "bias": jnp.array([0.1, -0.2, 0.3, 0.0])},
    "emb": jnp.linspace(0.5, -0.5, 10, dtype=jnp.bfloat16).reshape(5, 2),
    "scale": jnp.float32(1.5),
    "empty": jnp.zeros((0, 3)),
    "ln": [jnp.ones(3, jnp.bfloat16), jnp.zeros(3, jnp.bfloat16)],
}


def _grads(seed, like=PARAMS):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), like)


def _run(tx, steps=4, params=PARAMS, jit=False):
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    out = []
    for i in range(steps):
        u, state = update(_grads(i, params), state, params)
        params = gx.apply_updates(params, u)
        out.append(u)
    return out, params


def _close(x, y):
    """Equal to float rounding: XLA's CPU code may round an element one ulp apart
    depending on its position in the array (vector body or remainder)."""
    assert x.dtype == y.dtype and x.shape == y.shape
    rtol = 8e-3 if x.dtype == jnp.bfloat16 else 3e-7
    np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=rtol, atol=0)


def _chain():
    sched = gx.warmup_cosine_decay_schedule(0.0, 1e-2, 2, 10)
    return gx.chain(gx.clip_by_global_norm(1.0), gx.scale_by_adam(), gx.add_decayed_weights(1e-2),
                    gx.scale_by_learning_rate(sched))


@pytest.mark.parametrize("make", [lambda: gx.adam(1e-2), lambda: gx.sgd(1e-2, momentum=0.9, nesterov=True),
                                  lambda: gx.adamw(1e-2, weight_decay=0.1), lambda: gx.rmsprop(1e-2)],
                         ids=["adam", "sgd_nesterov", "adamw", "rmsprop"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_elementwise_transformations_give_the_same_updates(make, jit):
    plain, p_plain = _run(make(), jit=jit)
    flat, p_flat = _run(gx.flatten(make()), jit=jit)
    for a, b in zip(plain, flat):
        assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            _close(x, y)
    jax.tree_util.tree_map(_close, p_plain, p_flat)


def test_global_norm_chain_agrees_within_rounding():
    # The global norm sums the squares in another order: float rounding, no more.
    # The gradients are large enough that clipping is active at every step.
    plain, _ = _run(_chain(), steps=5)
    flat, _ = _run(gx.flatten(_chain()), steps=5)
    for a, b in zip(plain, flat):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            tol = 1e-2 if x.dtype == jnp.bfloat16 else 2e-6
            np.testing.assert_allclose(np.asarray(x, np.float32), np.asarray(y, np.float32), rtol=tol, atol=1e-9)


def test_state_is_inner_state_over_one_vector_per_dtype():
    state = gx.flatten(gx.adam(1e-2)).init(PARAMS)
    mu = state[0].mu
    assert sorted(mu) == ["bfloat16", "float32"]
    assert mu["float32"].shape == (12 + 4 + 1 + 0,) and mu["bfloat16"].shape == (10 + 3 + 3,)
    assert mu["bfloat16"].dtype == jnp.bfloat16  # not promoted, unlike optax.flatten's
    # The state is the inner state and nothing else: no offsets, no wrapper.
    plain = gx.adam(1e-2).init(mu)
    assert jax.tree_util.tree_structure(state) == jax.tree_util.tree_structure(plain)


SINGLE = {"w": jnp.linspace(-1.0, 1.0, 12).reshape(3, 4), "b": jnp.array([0.1, -0.2, 0.3]), "s": jnp.float32(2.0)}


def test_one_dtype_state_is_optax_flattens_and_continues_from_its_checkpoint():
    """For params of one dtype the state is optax.flatten's: same tree, same leaves; and
    optax's state after two steps, loaded into our tree, continues as optax continues."""
    ours, theirs = gx.flatten(gx.adam(1e-2)), optax.flatten(optax.adam(1e-2))
    with jax.numpy_dtype_promotion("standard"):
        their_state = theirs.init(SINGLE)
        for i in range(2):
            _, their_state = theirs.update(_grads(i, SINGLE), their_state, SINGLE)
    our_state = ours.init(SINGLE)
    # The same tree: NamedTuples of the same names and fields (gradxform's own classes).
    assert str(jax.tree_util.tree_structure(our_state)) == str(jax.tree_util.tree_structure(their_state))
    for a, b in zip(jax.tree_util.tree_leaves(our_state), jax.tree_util.tree_leaves(their_state)):
        assert a.shape == b.shape and a.dtype == b.dtype
    # The checkpoint: optax's leaves in our tree (as tests/test_checkpoint_layout.py restores one).
    our_def = jax.tree_util.tree_structure(our_state)
    state = jax.tree_util.tree_unflatten(our_def, jax.tree_util.tree_leaves(their_state))
    for i in range(2, 5):
        g = _grads(i, SINGLE)
        u, state = jax.jit(ours.update)(g, state, SINGLE)
        with jax.numpy_dtype_promotion("standard"):
            v, their_state = theirs.update(g, their_state, SINGLE)
        for x, y in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(v)):
            np.testing.assert_allclose(x, y, rtol=5e-5)  # bias correction: see BUILD.md, numerics


def _readback_fusions(tx, params):
    """The bodies (names stripped) of the compiled step's read-back fusions, and the ENTRY text."""
    state = tx.init(params)

    def step(p, s, g):
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s

    hlo = jax.jit(step).lower(params, state, params).compile().as_text()
    bodies = []
    for block in hlo.split("\n\n"):  # the fusions that write a leaf (f32[64]) from the packed vector
        if ("dynamic-slice(" in block or " slice(" in block) and block.split("{")[0].endswith("-> f32[64] "):
            body = [line.split("=", 1)[1].split(", metadata")[0] for line in block.splitlines()[1:] if "=" in line]
            bodies.append(re.sub(r"%[\w.\-]+", "%", "\n".join(body)))
    return bodies, hlo[hlo.index("\nENTRY"):]


def _constant_offsets(offsets, probe):
    """Mutant of `_flatten._opaque_offsets`: offsets XLA can see (optax.flatten's constant slices)."""
    return [jnp.int32(o) for o in offsets]


def _barrier_offsets(offsets, probe):
    """Mutant: the offsets through an optimization barrier (XLA's CPU pipeline folds them anyway)."""
    return jax.lax.optimization_barrier([jnp.int32(o) for o in offsets])


@pytest.mark.parametrize("mutant", [None, _constant_offsets, _barrier_offsets], ids=["ours", "constant", "barrier"])
def test_identical_kernels_for_leaves_of_one_shape(mutant, monkeypatch):
    # Constant offsets would give every leaf its own compiled kernel (optax.flatten's
    # 2,000-distinct-kernel compile): the read-back of leaves of one shape must be one
    # computation, taking its offset as an operand.
    from gradxform.wrappers import _flatten

    if mutant is not None:
        monkeypatch.setattr(_flatten, "_opaque_offsets", mutant)
    params = {f"p{i}": jnp.ones(64) for i in range(6)}
    bodies, entry = _readback_fusions(gx.flatten(gx.adam(1e-2)), params)
    ok = len(bodies) == 6 and len(set(bodies)) == 1 and all("dynamic-slice(" in b for b in bodies)
    assert ok == (mutant is None), (len(bodies), len(set(bodies)))
    # The state holds no offsets: the step's parameters are params, grads and adam's state.
    assert entry.count("parameter(") == 6 + 6 + 3


def _rotating_loop(offsets, probe):
    """Mutant of `_flatten._opaque_offsets` whose loop body is not the identity (it rotates)."""
    trips = (probe != probe).astype(jnp.int32)
    consts = [jnp.int32(o) for o in offsets]
    _, out = jax.lax.while_loop(lambda c: c[0] < trips, lambda c: (c[0] + 1, c[1][1:] + c[1][:1]),
                                (jnp.int32(0), consts))
    return out


@pytest.mark.parametrize("mutant", [None, _rotating_loop], ids=["ours", "rotating"])
def test_nan_gradients_read_back_the_right_leaves(mutant, monkeypatch):
    # A NaN in the probe (the first leaf's first gradient) runs the offsets' loop once:
    # every other leaf must still get its own update.
    from gradxform.wrappers import _flatten

    if mutant is not None:
        monkeypatch.setattr(_flatten, "_opaque_offsets", mutant)
    params = {f"p{i}": jnp.full(4, float(i + 1)) for i in range(5)}
    grads = {k: v * 0.5 for k, v in params.items()}
    grads["p0"] = grads["p0"].at[0].set(jnp.nan)
    tx = gx.flatten(gx.sgd(1.0))
    u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    right = all(np.array_equal(u[k], -grads[k]) for k in params if k != "p0")
    right = right and np.isnan(u["p0"][0]) and np.array_equal(u["p0"][1:], -grads["p0"][1:])
    assert right == (mutant is None)


def test_single_leaf_per_dtype_needs_no_slicing():
    tx = gx.flatten(gx.adam(1e-2))
    p = {"w": jnp.ones((3, 2))}
    jaxpr = jax.make_jaxpr(tx.update)(p, tx.init(p), p).jaxpr
    assert not [e for e in jaxpr.eqns if e.primitive.name in ("dynamic_slice", "slice", "concatenate")]


def test_state_keeps_dtypes_and_survives_pickle_and_jit_donation():
    tx = gx.flatten(gx.adam(1e-2))
    state = tx.init(PARAMS)
    restored = pickle.loads(pickle.dumps(state))
    step = jax.jit(lambda g, s, p: tx.update(g, s, p), donate_argnums=1)
    u1, s1 = step(_grads(0), restored, PARAMS)
    u2, s2 = step(_grads(0), state, PARAMS)
    for a, b in zip(jax.tree_util.tree_leaves((u1, s1)), jax.tree_util.tree_leaves((u2, s2))):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))


def test_no_retrace_on_the_second_step():
    traces = []
    tx = gx.flatten(gx.adam(1e-2))

    @jax.jit
    def step(g, s, p):
        traces.append(1)
        return tx.update(g, s, p)

    s = tx.init(PARAMS)
    for i in range(3):
        _, s = step(_grads(i), s, PARAMS)
    assert len(traces) == 1


def test_inside_a_chain_and_with_optax():
    tx = gx.chain(gx.flatten(gx.scale_by_adam()), gx.scale(-1e-2))
    ours, _ = _run(tx)
    plain, _ = _run(gx.adam(1e-2))
    for a, b in zip(ours, plain):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            _close(x, y)
    # optax's transformations run inside gx.flatten.
    p = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
    with jax.numpy_dtype_promotion("standard"):
        ox, _ = _run(gx.flatten(optax.adam(1e-2)), params=p)
        ref, _ = _run(optax.adam(1e-2), params=p)
    for a, b in zip(ox, ref):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            _close(x, y)


def test_errors_name_the_key_path_and_shapes():
    tx = gx.flatten(gx.adam(1e-2))
    state = tx.init(PARAMS)
    bad = _grads(0)
    bad["dense"]["kernel"] = jnp.ones((4, 3))
    with pytest.raises(_checks.TreeMismatchError, match=r"\['dense'\]\['kernel'\].*\(4, 3\).*\(3, 4\)"):
        tx.update(bad, state, PARAMS)
    missing = _grads(0)
    del missing["scale"]
    with pytest.raises(_checks.TreeMismatchError, match=r"\['scale'\]"):
        tx.update(missing, state, PARAMS)
    mixed = _grads(0)
    mixed["ln"][0] = mixed["ln"][0].astype(jnp.float32)
    with pytest.raises(TypeError, match=r"bfloat16.*\['ln'\]\[0\]: float32"):
        tx.update(mixed, state, PARAMS)
    with pytest.raises(TypeError, match="flatten"):
        tx.update(_grads(0), gx.adam(1e-2).init(PARAMS), PARAMS)
    # Without the params, a missing leaf shows as a packed size that the state does not fit.
    with pytest.raises(_checks.TreeMismatchError, match=r"flatten: the updates pack into .*float32.*16"):
        tx.update(missing, state)
    with pytest.raises(TypeError, match="inner"):
        gx.flatten(42)


def test_updates_in_another_dtype_than_the_params():
    # float32 gradients for bfloat16 params: packed in float32, read back in float32.
    p = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones((2, 2), jnp.bfloat16)}
    g = jax.tree_util.tree_map(lambda x: jnp.full(x.shape, 0.5, jnp.float32), p)
    tx = gx.flatten(gx.sgd(0.1))
    u, _ = tx.update(g, tx.init(p), p)
    plain, _ = gx.sgd(0.1).update(g, gx.sgd(0.1).init(p), p)
    for x, y in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(plain)):
        assert x.dtype == y.dtype == jnp.float32
        np.testing.assert_array_equal(x, y)


def test_two_level_packing_in_init_equals_one_concatenation():
    from gradxform.wrappers import _flatten

    rng = np.random.default_rng(0)
    leaves = [jnp.asarray(rng.normal(size=(int(rng.integers(0, 5)), 3)), jnp.float32) for _ in range(150)]
    layout = _flatten._layout(["float32"] * 150, [x.shape for x in leaves])
    two = _flatten._pack(leaves, layout, two_level=True)
    np.testing.assert_array_equal(two, jnp.concatenate([x.reshape(-1) for x in leaves]))
    # init packs the params in two levels: an inner state that copies them sees them in order.
    params = {f"p{i:03d}": x for i, x in enumerate(leaves)}
    keep_params = gx.GradientTransformation(lambda p: p, lambda u, s, p=None: (u, s))
    state = gx.flatten(keep_params).init(params)
    np.testing.assert_array_equal(state, two)
