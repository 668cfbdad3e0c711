"""gx.contrib's parameter-free rules: COCOB-Backprop, DoG, DoWG.

Parity with optax 0.2.8 over 25 float32 steps, parity with the papers' NumPy
references, broken copies of each rule's subtle points that the reference check must
catch, edge cases (all-zero gradients, scalar leaves, bfloat16 params) and validation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

ref = gx.testing.reference
loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion
F32_EPS = float(np.finfo(np.float32).eps)


def _params(dtype=jnp.float32):
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(), dtype)}


def _grads(like, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), like)


def _decaying(count):
    return 1.0 / (1.0 + 0.5 * jnp.asarray(count).astype(jnp.float32))


# name, kwargs (the same for gx.contrib and optax.contrib)
CONFIGS = [
    ("cocob", {}),
    ("cocob", {"learning_rate": _decaying, "alpha": 10.0, "weight_decay": 1e-2}),
    ("scale_by_cocob", {"alpha": 50.0}),
    ("dog", {}),
    ("dog", {"learning_rate": 0.5, "init_step": ("learning_rate", 0.1), "weight_decay": 1e-2}),
    ("dog", {"init_step": ("distance", 0.1), "eps": 0.0}),
    ("dowg", {}),
    ("dowg", {"learning_rate": 0.5, "init_estim_sq_dist": 1e-2, "weight_decay": 1e-2}),
]


@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CONFIGS)])
def test_parity_with_optax_over_25_float32_steps(name, kwargs):
    ours = getattr(gx.contrib, name)(**kwargs)
    theirs = getattr(optax.contrib, name)(**kwargs)
    p_ours = p_theirs = _params()
    s_ours, s_theirs = ours.init(p_ours), theirs.init(p_theirs)
    step = jax.jit(ours.update)
    for t in range(25):
        grads = _grads(p_ours, seed=t + 1)
        u_ours, s_ours = step(grads, s_ours, p_ours)
        with loose:
            u_theirs, s_theirs = theirs.update(grads, s_theirs, p_theirs)
        for (path, a), b, w in zip(
            jax.tree_util.tree_flatten_with_path(u_ours)[0],
            jax.tree_util.tree_leaves(u_theirs),
            jax.tree_util.tree_leaves(p_ours),
        ):
            a, b, w = (np.asarray(x, np.float64) for x in (a, b, w))
            # COCOB's update is w_{t+1} - w_t: it is known to a rounding of the params w, not
            # of itself (optax's and ours alike); 4 ulps of |w| covers an FMA-fused rounding of
            # the state under jit. DoG and DoWG scale the gradient: rtol 1e-5 alone.
            atol = 4 * F32_EPS * np.abs(w) if "cocob" in name else 0.0
            np.testing.assert_array_less(np.abs(a - b), 1e-5 * np.abs(b) + atol + 1e-30,
                                         err_msg=f"{name}: step {t + 1}, leaf {jax.tree_util.keystr(path)}")
        p_ours, p_theirs = gx.apply_updates(p_ours, u_ours), optax.apply_updates(p_theirs, u_theirs)
    # the state continues as optax's: same leaves, same values to float32 rounding
    for a, b in zip(jax.tree_util.tree_leaves(s_ours), jax.tree_util.tree_leaves(s_theirs)):
        assert np.shape(a) == np.shape(b) and np.asarray(a).dtype == np.asarray(b).dtype
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-4, atol=1e-6)


# Reference parity of the same configurations runs in tests/test_registry.py (the registry's
# entries in gradxform/testing/registry/_contrib_free.py); here only the mutants.


# ----------------------------------------------------------------------------- mutants
#
# Each rule written again in plain jnp with a switch per subtle point. The correct copy
# passes the reference check (so the harness is sound); each broken one must fail it.


def _cocob_like(alpha=100.0, eps=1e-8, *, no_reward_floor=False, no_alpha_max=False,
                from_current=False, scale_is_last=False, ascend=False):
    def init(params):
        z = jax.tree_util.tree_map(jnp.zeros_like, params)
        return {"w1": params, "theta": z, "L": jax.tree_util.tree_map(lambda p: jnp.full_like(p, eps), params),
                "G": z, "R": z}

    def update(grads, state, params):
        def leaf(g, w, w1, theta, L, G, R):
            x = g if ascend else -g
            L = jnp.abs(x) if scale_is_last else jnp.maximum(L, jnp.abs(x))
            G = G + jnp.abs(x)
            R = R + (w - w1) * x if no_reward_floor else jnp.maximum(R + (w - w1) * x, 0)
            theta = theta + x
            den = L * ((G + L) if no_alpha_max else jnp.maximum(G + L, alpha * L))
            beta = theta / den
            w_next = (w if from_current else w1) + beta * (L + R)
            return w_next - w, theta, L, G, R

        treedef = jax.tree_util.tree_structure(grads)
        flat = [jax.tree_util.tree_leaves(t) for t in
                (grads, params, state["w1"], state["theta"], state["L"], state["G"], state["R"])]
        outs = [leaf(*args) for args in zip(*flat)]
        u, theta, L, G, R = (treedef.unflatten([o[k] for o in outs]) for k in range(5))
        return u, {"w1": state["w1"], "theta": theta, "L": L, "G": G, "R": R}

    return gx.GradientTransformation(init, update)


def _sq(tree):
    return sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(tree))


def _dog_like(r0=0.1, eps=0.5, *, no_max=False, stale_r=False, last_g_only=False, eps_outside=False):
    def init(params):
        return {"x0": params, "r": jnp.float32(r0), "G": jnp.float32(0)}

    def update(grads, state, params):
        dist = jnp.sqrt(_sq(jax.tree_util.tree_map(jnp.subtract, params, state["x0"])))
        r = dist if no_max else jnp.maximum(state["r"], dist)
        G = _sq(grads) if last_g_only else state["G"] + _sq(grads)
        r_used = state["r"] if stale_r else r
        eta = r_used / (jnp.sqrt(G) + eps) if eps_outside else r_used / jnp.sqrt(G + eps)
        return jax.tree_util.tree_map(lambda g: -eta * g, grads), {"x0": state["x0"], "r": r, "G": G}

    return gx.GradientTransformation(init, update)


def _dowg_like(r0_sq=0.01, eps=0.01, *, unweighted=False, not_squared=False, stale_r=False, eps_inside=False):
    def init(params):
        return {"x0": params, "v": jnp.float32(0), "r_sq": jnp.float32(r0_sq)}

    def update(grads, state, params):
        r_sq = jnp.maximum(state["r_sq"], _sq(jax.tree_util.tree_map(jnp.subtract, params, state["x0"])))
        r_used = state["r_sq"] if stale_r else r_sq
        v = state["v"] + (1.0 if unweighted else r_used) * _sq(grads)
        num = jnp.sqrt(r_used) if not_squared else r_used
        eta = num / jnp.sqrt(v + eps) if eps_inside else num / (jnp.sqrt(v) + eps)
        return jax.tree_util.tree_map(lambda g: -eta * g, grads), {"x0": state["x0"], "v": v, "r_sq": r_sq}

    return gx.GradientTransformation(init, update)


def _back_and_forth(params, steps=8):
    """Gradients that push the params away from x_0 and then back (so the max distance matters)."""
    rng = np.random.default_rng(7)
    d = jax.tree_util.tree_map(lambda p: rng.normal(size=np.shape(p)).astype(np.float32), params)
    return [jax.tree_util.tree_map(lambda x, c=(1.0 if t < 3 else -0.5): c * x, d) for t in range(steps)]


PARAMS = {"w": np.random.default_rng(3).normal(size=(4,)).astype(np.float32), "b": np.float32(0.5)}

MUTANTS = [
    # (name, correct copy kwargs, broken switch, reference)
    ("cocob", {}, "no_reward_floor", lambda: ref.scale_by_cocob()),
    ("cocob", {}, "no_alpha_max", lambda: ref.scale_by_cocob()),
    ("cocob", {}, "from_current", lambda: ref.scale_by_cocob()),
    ("cocob", {}, "scale_is_last", lambda: ref.scale_by_cocob()),
    ("cocob", {}, "ascend", lambda: ref.scale_by_cocob()),
    ("dog", {}, "no_max", lambda: ref.dog(init_step=("distance", 0.1), eps=0.5)),
    ("dog", {}, "stale_r", lambda: ref.dog(init_step=("distance", 0.1), eps=0.5)),
    ("dog", {}, "last_g_only", lambda: ref.dog(init_step=("distance", 0.1), eps=0.5)),
    ("dog", {}, "eps_outside", lambda: ref.dog(init_step=("distance", 0.1), eps=0.5)),
    ("dowg", {}, "unweighted", lambda: ref.dowg(init_estim_sq_dist=0.01, eps=0.01)),
    ("dowg", {}, "not_squared", lambda: ref.dowg(init_estim_sq_dist=0.01, eps=0.01)),
    ("dowg", {}, "stale_r", lambda: ref.dowg(init_estim_sq_dist=0.01, eps=0.01)),
    ("dowg", {}, "eps_inside", lambda: ref.dowg(init_estim_sq_dist=0.01, eps=0.01)),
]
_LIKE = {"cocob": _cocob_like, "dog": _dog_like, "dowg": _dowg_like}


def _check(tx, reference):
    return gx.testing.check_against_reference(
        tx, reference, steps=8, params=PARAMS, grads=_back_and_forth(PARAMS), jit=False
    )


@pytest.mark.parametrize("name", ["cocob", "dog", "dowg"])
def test_the_correct_jnp_copy_passes_the_reference_check(name):
    reference = {"cocob": ref.scale_by_cocob(), "dog": ref.dog(init_step=("distance", 0.1), eps=0.5),
                 "dowg": ref.dowg(init_estim_sq_dist=0.01, eps=0.01)}[name]
    _check(_LIKE[name](), reference)


@pytest.mark.parametrize("name", ["scale_by_cocob", "dog", "dowg"])
def test_library_passes_the_reference_check_where_the_distance_shrinks(name):
    kwargs = {"scale_by_cocob": {}, "dog": {"init_step": ("distance", 0.1), "eps": 0.5},
              "dowg": {"init_estim_sq_dist": 0.01, "eps": 0.01}}[name]
    _check(getattr(gx.contrib, name)(**kwargs), getattr(ref, name)(**kwargs))


@pytest.mark.parametrize("name,kwargs,switch,reference", MUTANTS, ids=[f"{m[0]}-{m[2]}" for m in MUTANTS])
def test_reference_check_catches_a_broken_rule(name, kwargs, switch, reference):
    with pytest.raises(AssertionError):
        _check(_LIKE[name](**kwargs, **{switch: True}), reference())


# ----------------------------------------------------------------------------- edge cases

ZERO_EPS = [
    ("cocob", {"eps": 0.0}),
    ("dog", {"init_step": ("distance", 0.1), "eps": 0.0}),
    ("dog", {"init_step": ("learning_rate", 0.1), "eps": 0.0}),
    ("dowg", {"init_estim_sq_dist": 0.1, "eps": 0.0}),
]


@pytest.mark.parametrize("name,kwargs", ZERO_EPS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(ZERO_EPS)])
def test_all_zero_gradients_with_eps_zero_give_zero_updates_where_optax_gives_nan(name, kwargs):
    params = {"s": jnp.array(2.0), "v": jnp.ones(3)}
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    for lib in (gx.contrib, optax.contrib):
        tx = getattr(lib, name)(**kwargs)
        state = tx.init(params)
        with loose:
            for _ in range(2):
                u, state = tx.update(zeros, state, params)
        if lib is gx.contrib:
            for leaf in jax.tree_util.tree_leaves(u):
                np.testing.assert_array_equal(np.asarray(leaf), 0.0)
        else:  # optax 0.2.8 divides 0 by 0 (a regression test: README's "Differences from optax")
            assert np.isnan(np.asarray(u["v"])).all()


@pytest.mark.parametrize("name", ["cocob", "dog", "dowg"])
def test_default_all_zero_gradients_finite_scalar_leaves_bf16_params(name):
    params = {"s": jnp.array(1.5, jnp.bfloat16), "m": jnp.ones((2, 2), jnp.bfloat16)}
    tx = getattr(gx.contrib, name)()
    state = tx.init(params)
    step = jax.jit(tx.update)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    u, state1 = step(zeros, state, params)
    for leaf in jax.tree_util.tree_leaves(u):
        assert leaf.dtype == jnp.bfloat16 and np.all(np.asarray(leaf, np.float32) == 0)
    grads = jax.tree_util.tree_map(lambda p: jnp.full(p.shape, 0.3, jnp.float32), params)  # f32 grads
    u, state2 = step(grads, state1, params)
    assert [x.dtype for x in jax.tree_util.tree_leaves(u)] == [jnp.float32, jnp.float32]
    assert jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), state2) == jax.tree_util.tree_map(
        lambda x: (x.shape, x.dtype), state)
    assert u["s"].shape == () and all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(u))
    assert all(np.asarray(x, np.float32).ravel()[0] < 0 for x in jax.tree_util.tree_leaves(u))  # descends


def test_cocob_constant_learning_rate_changes_nothing_as_in_optax_negative_ascends():
    params, grads = _params(), _grads(_params(), 1)
    base, _ = gx.contrib.cocob().update(grads, gx.contrib.cocob().init(params), params)
    for lr in (0.1, 3.0):
        tx = gx.contrib.cocob(lr)
        u, _ = tx.update(grads, tx.init(params), params)
        np.testing.assert_allclose(u["w"], base["w"], rtol=1e-6)
    tx = gx.contrib.cocob(-1.0)
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["w"], -base["w"], rtol=1e-6)


def test_dog_is_one_global_step_size():
    # Two leaves, one step: both are the gradient times the same eta = r_0 / ||g|| (eps=0).
    params = {"a": jnp.array([3.0, 4.0]), "b": jnp.array([0.0])}
    grads = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([2.0])}
    tx = gx.contrib.dog(init_step=("distance", 0.5), eps=0.0)
    u, _ = tx.update(grads, tx.init(params), params)
    eta = 0.5 / np.sqrt(5.0)
    np.testing.assert_allclose(u["a"], [-eta, 0.0], rtol=1e-6)
    np.testing.assert_allclose(u["b"], [-2 * eta], rtol=1e-6)


def test_heuristic_init_step_scales_with_the_initial_params():
    params = {"a": jnp.array([3.0, 4.0])}  # ||x_0|| = 5: r_0 = 0.1 * 6
    state = gx.contrib.dog(init_step=("heuristic", 0.1)).init(params)[1]
    assert isinstance(state, gx.contrib.DoGState)
    np.testing.assert_allclose(state.max_dist, 0.6, rtol=1e-6)
    assert state.max_dist.dtype == jnp.float32 and state.is_init_step.dtype == jnp.bool_


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("init_step", [("radius", 0.1), ("distance", 0.0), ("learning_rate", -1.0),
                                       ("heuristic", float("nan")), 0.1, ("distance",)])
def test_dog_rejects_an_impossible_init_step(init_step):
    with pytest.raises(ValueError, match="`init_step`"):
        gx.contrib.dog(init_step=init_step)


@pytest.mark.parametrize("factory,kwargs,arg", [
    (gx.contrib.cocob, {"alpha": 0.0}, "alpha"),
    (gx.contrib.scale_by_cocob, {"eps": -1.0}, "eps"),
    (gx.contrib.dog, {"eps": -1e-8}, "eps"),
    (gx.contrib.dog, {"weight_decay": -0.1}, "weight_decay"),
    (gx.contrib.dowg, {"init_estim_sq_dist": 0.0}, "init_estim_sq_dist"),
    (gx.contrib.dowg, {"eps": 0.0}, "eps"),  # eps is then the initial squared distance
    (gx.contrib.dowg, {"learning_rate": float("inf")}, "learning_rate"),
])
def test_impossible_hyperparameters_raise_naming_them(factory, kwargs, arg):
    with pytest.raises(ValueError, match=arg):
        factory(**kwargs)


def test_valid_edges_are_accepted():
    gx.contrib.dowg(init_estim_sq_dist=1e-4, eps=0.0)
    gx.contrib.dog(learning_rate=-1.0, weight_decay=0.0)
    gx.contrib.cocob(eps=0.0, weight_decay=0.0)


@pytest.mark.parametrize("name", ["scale_by_cocob", "dog", "dowg"])
def test_update_without_params_raises(name):
    tx = getattr(gx.contrib, name)()
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(params, tx.init(params))


def test_state_layouts_match_optax_with_and_without_weight_decay_and_mask():
    params = _params()
    mask = {"w": True, "b": False}
    for name, kwargs in [("dog", {}), ("dog", {"weight_decay": 0.1, "mask": mask}),
                         ("dowg", {"weight_decay": 0.1}), ("cocob", {"weight_decay": 0.1, "mask": mask})]:
        ours = getattr(gx.contrib, name)(**kwargs).init(params)
        with loose:
            theirs = getattr(optax.contrib, name)(**kwargs).init(params)

        def layout(s):
            return [(np.shape(x), np.asarray(x).dtype) for x in jax.tree_util.tree_leaves(s)]

        assert layout(ours) == layout(theirs), name
        assert [type(s).__name__ for s in ours] == [type(s).__name__ for s in theirs], name
