"""Wrappers: parity with optax, optax's failures as regression tests, and each wrapper's contract."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from optax import contrib as optax_contrib

import gradxform as gx
from gradxform.second_order import adahessian
from gradxform.wrappers import (
    ApplyIfFiniteState,
    LookaheadParams,
    MultiSteps,
    apply_if_finite,
    inject_hyperparams,
    lookahead,
    polyak_averaging,
    polyak_params,
    reduce_on_plateau,
    set_hyperparams,
    skip_not_finite,
)

PARAMS = {"w": jnp.array([[0.5, -1.0], [2.0, 0.1]]), "b": jnp.array([0.3, -0.2, 0.9])}


def _grads(seed, like=PARAMS, scale=1.0):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(scale * rng.normal(size=x.shape), x.dtype), like)


def _nan_like(like=PARAMS):
    return jax.tree_util.tree_map(lambda x: jnp.full(x.shape, jnp.nan, x.dtype), like)


def _assert_trees_equal(a, b, **tol):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        if tol:
            np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), **tol)
        else:
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _all_finite(tree):
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)


# ----------------------------------------------------------------------------- apply_if_finite


def test_apply_if_finite_matches_optax_below_the_limit():
    """Same inner (gx.adam), isolated non-finite steps: optax's wrapper and ours agree exactly."""
    inner = gx.adam(0.1)
    ours, theirs = apply_if_finite(inner, 2), optax.apply_if_finite(inner, 2)
    so, st = ours.init(PARAMS), theirs.init(PARAMS)
    step_o, step_t = jax.jit(ours.update), jax.jit(theirs.update)
    for step, g in enumerate([_grads(0), _nan_like(), _grads(1), _grads(2), _nan_like(), _grads(3)]):
        u_o, so = step_o(g, so, PARAMS)
        u_t, st = step_t(g, st, PARAMS)
        _assert_trees_equal(u_o, u_t)
        _assert_trees_equal(so.inner_state, st.inner_state)
        assert int(so.notfinite_count) == int(st.notfinite_count)
        assert int(so.total_notfinite) == int(st.total_notfinite)
        assert bool(so.last_finite) == bool(st.last_finite)


def test_apply_if_finite_never_lets_nan_into_the_inner_state():
    """Regression: optax's apply_if_finite gives up after max_consecutive_errors and feeds the
    NaN gradient to the inner optimizer, whose moments stay NaN for good."""
    inner = gx.adam(0.1)
    ours, theirs = apply_if_finite(inner, max_consecutive_errors=2), optax.apply_if_finite(inner, 2)
    so, st = ours.init(PARAMS), theirs.init(PARAMS)
    step_o, step_t = jax.jit(ours.update), jax.jit(theirs.update)
    _, so = step_o(_grads(0), so, PARAMS)
    _, st = step_t(_grads(0), st, PARAMS)
    before = so.inner_state
    one_inf = jax.tree_util.tree_map(lambda x: x.at[0].set(jnp.inf), _grads(5))
    bad = [_nan_like(), one_inf, _nan_like(), _nan_like(), _nan_like()]
    for i, g in enumerate(bad, start=1):
        u_o, so = step_o(g, so, PARAMS)
        _, st = step_t(g, st, PARAMS)
        _assert_trees_equal(u_o, jax.tree_util.tree_map(jnp.zeros_like, g))
        _assert_trees_equal(so.inner_state, before)  # untouched, however many in a row
        assert int(so.notfinite_count) == i and int(so.total_notfinite) == i and not bool(so.last_finite)
    assert int(so.notfinite_count) > 2  # past the limit: the loop can stop on this
    assert not _all_finite(st.inner_state), "optax's apply_if_finite no longer lets NaN in?"
    assert _all_finite(so.inner_state)
    # A finite step resets the consecutive count and continues from the pre-NaN state.
    u_o, so = step_o(_grads(9), so, PARAMS)
    want, _ = inner.update(_grads(9), before, PARAMS)
    _assert_trees_equal(u_o, want, rtol=1e-6)
    assert int(so.notfinite_count) == 0 and int(so.total_notfinite) == len(bad) and bool(so.last_finite)


def test_apply_if_finite_validation_and_state_type():
    with pytest.raises(ValueError, match="max_consecutive_errors"):
        apply_if_finite(gx.sgd(0.1), -1)
    with pytest.raises(TypeError, match="ApplyIfFiniteState"):
        apply_if_finite(gx.sgd(0.1), 1).update(PARAMS, gx.sgd(0.1).init(PARAMS))
    assert isinstance(apply_if_finite(gx.sgd(0.1), 0).init(PARAMS), ApplyIfFiniteState)


# ----------------------------------------------------------------------------- MultiSteps


@pytest.mark.parametrize(
    "every_k,use_mean", [(3, True), (lambda step: jnp.where(step < 1, 2, 3), True), (2, False)],
    ids=["k3-mean", "schedule", "k2-sum"],
)
def test_multi_steps_matches_optax(every_k, use_mean):
    inner = gx.adam(0.1)
    ours = MultiSteps(inner, every_k, use_grad_mean=use_mean)
    theirs = optax.MultiSteps(inner, every_k, use_grad_mean=use_mean)
    so, st = ours.init(PARAMS), theirs.init(PARAMS)
    step_o, step_t = jax.jit(ours.update), jax.jit(theirs.update)
    for step in range(8):
        g = _grads(step)
        u_o, so = step_o(g, so, PARAMS)
        with jax.numpy_dtype_promotion("standard"):  # optax promotes int32 with float32
            u_t, st = step_t(g, st, PARAMS)
        _assert_trees_equal(u_o, u_t, rtol=1e-6, atol=1e-8)
        _assert_trees_equal(so.inner_opt_state, st.inner_opt_state, rtol=1e-6, atol=1e-8)
        assert int(so.mini_step) == int(st.mini_step) and int(so.gradient_step) == int(st.gradient_step)
        assert bool(ours.has_updated(so)) == bool(theirs.has_updated(st))


def test_multi_steps_emits_the_mean_to_a_plain_step():
    ms = MultiSteps(gx.sgd(1.0), every_k_schedule=3)
    state = ms.init(PARAMS)
    gs = [_grads(i) for i in range(3)]
    for g in gs[:2]:
        u, state = ms.update(g, state)
        _assert_trees_equal(u, jax.tree_util.tree_map(jnp.zeros_like, g))
    u, state = ms.update(gs[2], state)
    mean = jax.tree_util.tree_map(lambda *x: -(x[0] + x[1] + x[2]) / 3, *gs)
    _assert_trees_equal(u, mean, rtol=1e-6)
    assert bool(ms.has_updated(state))


def test_multi_steps_runs_the_inner_update_only_when_it_emits():
    calls = []

    def counting_update(updates, state, params=None):
        jax.debug.callback(lambda: calls.append(1))
        return updates, state

    inner = gx.GradientTransformation(lambda p: gx.EmptyState(), counting_update)
    ms = MultiSteps(inner, every_k_schedule=4)
    step = jax.jit(ms.update)
    state = ms.init(PARAMS)
    for i in range(8):
        _, state = step(_grads(i), state)
    jax.effects_barrier()
    assert len(calls) == 2  # optax's MultiSteps runs it at every mini-step and discards it


def test_multi_steps_accumulator_dtype_and_no_extra_buffers():
    params = {"w": jnp.ones((3, 2), jnp.bfloat16)}
    inner = gx.sgd(0.1)  # stateless: any param-shaped state leaf is the accumulator
    for acc_dtype, want in [(jnp.float32, jnp.float32), (jnp.bfloat16, jnp.bfloat16), (None, jnp.bfloat16)]:
        ms = MultiSteps(inner, 2, accumulator_dtype=acc_dtype)
        state = ms.init(params)
        shaped = [x for x in jax.tree_util.tree_leaves(state) if x.shape == (3, 2)]
        assert len(shaped) == 1 and shaped[0].dtype == want
        u, state2 = jax.jit(ms.update)(_grads(0, params), state)
        assert u["w"].dtype == jnp.bfloat16 and state2.acc_grads["w"].dtype == want


def test_multi_steps_emits_the_unrounded_mean_and_stores_the_rounded_one():
    """A narrow accumulator rounds what it stores, not the mean the inner step receives (in
    the wider of the gradients' and the accumulator's dtype), as optax: with a bfloat16
    accumulator and float32 gradients the emitted mean is float32's. A mutant that feeds
    the stored (rounded) accumulator to the inner step is caught."""
    g1 = jnp.array([1.0 + 2.0**-12, 3.0], jnp.float32)  # not representable in bfloat16
    g2 = jnp.array([0.5, 1.0 + 2.0**-10], jnp.float32)
    want = -(np.asarray(g1.astype(jnp.bfloat16), np.float32) + np.asarray(g2)) / 2  # step 1 stores bf16(g1)
    # The mutant: the inner step sees the mean rounded to the accumulator's dtype (the old code).
    rounded = gx.stateless(lambda u, p: u.astype(jnp.bfloat16).astype(u.dtype))
    for inner, exact in [(gx.sgd(1.0), True), (gx.chain(rounded, gx.sgd(1.0)), False)]:
        ms = MultiSteps(inner, 2, accumulator_dtype=jnp.bfloat16)
        state = ms.init(jnp.zeros(2))
        _, state = ms.update(g1, state)
        u, _ = ms.update(g2, state)
        assert u.dtype == jnp.float32 and (np.asarray(u).tolist() == want.tolist()) == exact
    theirs = optax.MultiSteps(optax.sgd(1.0), 2, accumulator_dtype=jnp.bfloat16)
    with jax.numpy_dtype_promotion("standard"):
        s = theirs.init(jnp.zeros(2))
        _, s = theirs.update(g1, s)
        u, _ = theirs.update(g2, s)
    np.testing.assert_array_equal(u, want)


def test_multi_steps_skips_non_finite_mini_steps():
    ms = MultiSteps(gx.sgd(1.0), 2, should_skip_update_fn=skip_not_finite)
    state = ms.init(PARAMS)
    g0, g1 = _grads(0), _grads(1)
    _, state = ms.update(g0, state)
    u, state = ms.update(_nan_like(), state)  # ignored: still waiting for the second mini-step
    _assert_trees_equal(u, jax.tree_util.tree_map(jnp.zeros_like, g0))
    assert int(state.mini_step) == 1 and int(state.skip_state["num_not_finite"]) == 7
    u, state = ms.update(g1, state)
    _assert_trees_equal(u, jax.tree_util.tree_map(lambda a, b: -(a + b) / 2, g0, g1), rtol=1e-6)


def test_multi_steps_validation():
    with pytest.raises(ValueError, match="every_k_schedule"):
        MultiSteps(gx.sgd(0.1), 0)
    with pytest.raises(ValueError, match="every_k_schedule"):
        MultiSteps(gx.sgd(0.1), lambda step: 0)
    with pytest.raises(TypeError, match="MultiStepsState"):
        MultiSteps(gx.sgd(0.1), 2).update(PARAMS, gx.sgd(0.1).init(PARAMS))


# ----------------------------------------------------------------------------- inject_hyperparams


def _schedule(count):
    return 0.1 / (1.0 + jnp.asarray(count).astype(jnp.float32))


MIXED = {
    "a": jnp.asarray(np.linspace(-1, 1, 6).reshape(2, 3), jnp.float32),
    "b": jnp.asarray([0.5, -2.0, 1.0], jnp.bfloat16),
}


def _assert_close_to_rounding(a, b):
    """Equal up to the rounding of a rate: float32 leaves to 1e-4 relative, bfloat16 to one ulp."""
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        x64, y64 = np.asarray(x, np.float64), np.asarray(y, np.float64)
        rtol = 1e-4 if np.asarray(x).dtype == np.float32 else 2 ** -7
        np.testing.assert_allclose(x64, y64, rtol=rtol, atol=rtol * (np.max(np.abs(y64), initial=0) + 1e-30))


# A decay rate given as a Python number has its complement 1 - b formed in double precision
# (`_tree.decay`); an injected rate is a float32 array, so 1 - b comes from the rounded rate
# (as in optax). Rules without such a complement stay bit-identical.
@pytest.mark.parametrize(
    "factory,kwargs,hessian,exact",
    [
        (gx.adam, {"learning_rate": 0.01, "b2": 0.99}, False, False),
        (gx.adam, {"learning_rate": _schedule}, False, False),
        (gx.sgd, {"learning_rate": 0.1, "momentum": 0.9}, False, True),
        (gx.rmsprop, {"learning_rate": 0.01, "centered": True}, False, False),
        (adahessian, {"learning_rate": 0.1, "weight_decay": 0.01}, True, False),
    ],
    ids=["adam", "adam-schedule", "sgd-momentum", "rmsprop-centered", "adahessian"],
)
def test_inject_hyperparams_equals_the_plain_transformation(factory, kwargs, hessian, exact):
    plain, injected = factory(**kwargs), inject_hyperparams(factory)(**kwargs)
    same = _assert_trees_equal if exact else _assert_close_to_rounding
    sp, si = plain.init(MIXED), injected.init(MIXED)
    step_p, step_i = jax.jit(plain.update), jax.jit(injected.update)
    for step in range(4):
        g = _grads(step, MIXED)
        extra = {"hessian_diag": jax.tree_util.tree_map(lambda x: x * x + 1, g)} if hessian else {}
        u_p, sp = step_p(g, sp, MIXED, **extra)
        u_i, si = step_i(g, si, MIXED, **extra)
        same(u_p, u_i)
        if jax.tree_util.tree_structure(sp) == jax.tree_util.tree_structure(si.inner_state):
            same(sp, si.inner_state)
        else:  # a schedule adds a step counter to the plain chain; the moments must still agree
            same(sp[0], si.inner_state[0])
    assert all(v.dtype == jnp.float32 for k, v in si.hyperparams.items())


def test_injected_rates_round_like_array_rates():
    """Injected and array-valued rates give bit-identical results: the same rounded rate."""
    rates = {"learning_rate": 0.01, "b1": 0.9, "b2": 0.99}
    plain = gx.adam(**{k: jnp.float32(v) for k, v in rates.items()})
    injected = inject_hyperparams(gx.adam)(**rates)
    sp, si = plain.init(MIXED), injected.init(MIXED)
    for step in range(3):
        g = _grads(step, MIXED)
        u_p, sp = plain.update(g, sp, MIXED)
        u_i, si = injected.update(g, si, MIXED)
        _assert_trees_equal(u_p, u_i)


def test_inject_hyperparams_matches_optax_in_float32():
    ours = inject_hyperparams(gx.adam)(learning_rate=_schedule, b1=0.8)
    theirs = optax.inject_hyperparams(optax.adam)(learning_rate=_schedule, b1=0.8)
    so, st = ours.init(PARAMS), theirs.init(PARAMS)
    step_o, step_t = jax.jit(ours.update), jax.jit(theirs.update)
    for step in range(4):
        g = _grads(step)
        u_o, so = step_o(g, so, PARAMS)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes dtypes implicitly
            u_t, st = step_t(g, st, PARAMS)
        _assert_trees_equal(u_o, u_t, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(so.hyperparams["learning_rate"], st.hyperparams["learning_rate"])


def test_inject_hyperparams_bf16_params_keep_b2_below_one():
    """Regression: optax stores hyperparameters in the params' dtype; with bfloat16 params
    b2 = 0.999 rounds to 1.0 and Adam divides by 1 - 1**t = 0."""
    params = {"w": jnp.ones(4, jnp.bfloat16)}
    g = {"w": jnp.asarray([0.5, -1.0, 2.0, 0.1], jnp.bfloat16)}
    theirs = optax.inject_hyperparams(optax.adam)(learning_rate=0.1)
    with jax.numpy_dtype_promotion("standard"):  # optax mixes dtypes implicitly
        st = theirs.init(params)
        u_t, _ = theirs.update(g, st, params)
    assert float(st.hyperparams["b2"]) == 1.0
    assert not _all_finite(u_t), "optax's inject_hyperparams no longer rounds b2 to bfloat16?"
    ours = inject_hyperparams(gx.adam)(learning_rate=0.1)
    so = ours.init(params)
    assert so.hyperparams["b2"].dtype == jnp.float32 and float(so.hyperparams["b2"]) == pytest.approx(0.999)
    u_o, _ = ours.update(g, so, params)
    assert _all_finite(u_o) and u_o["w"].dtype == jnp.bfloat16
    _assert_trees_equal(u_o, gx.adam(0.1).update(g, gx.adam(0.1).init(params), params)[0])


def test_changing_an_injected_hyperparameter_compiles_nothing():
    traces = []
    opt = inject_hyperparams(gx.adam)(learning_rate=0.1)

    @jax.jit
    def step(params, state, g):
        traces.append(1)  # runs once per trace (compilation), not per call
        u, state = opt.update(g, state, params)
        return gx.apply_updates(params, u), state, u

    params, state = PARAMS, opt.init(PARAMS)
    params, state, u1 = step(params, state, _grads(0))
    state = set_hyperparams(state, learning_rate=0.01, b1=0.5)
    params, state, u2 = step(params, state, _grads(0))
    state.hyperparams["learning_rate"] = jnp.float32(0.001)  # direct assignment, as in optax
    params, state, u3 = step(params, state, _grads(0))
    assert len(traces) == 1
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.001)
    # The new values are used: the first Adam step is -lr * sign(g) (up to eps).
    g0 = _grads(0)["b"]
    np.testing.assert_allclose(u1["b"], -0.1 * jnp.sign(g0), rtol=1e-5)
    assert float(jnp.max(jnp.abs(u3["b"]))) < 0.002


def test_injected_schedules_are_evaluated_each_step():
    opt = inject_hyperparams(gx.sgd)(learning_rate=_schedule)
    state = opt.init(PARAMS)
    step = jax.jit(opt.update)
    for t in range(4):
        g = _grads(t)
        u, state = step(g, state, PARAMS)
        _assert_trees_equal(u, jax.tree_util.tree_map(lambda x: -_schedule(t) * x, g), rtol=1e-6)
        np.testing.assert_allclose(state.hyperparams["learning_rate"], _schedule(t))


def test_inject_hyperparams_validation():
    with pytest.raises(ValueError, match="learning_rate"):
        inject_hyperparams(gx.adam)(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="b2"):
        inject_hyperparams(gx.adam)(learning_rate=0.1, b2=1.0)
    with pytest.raises(ValueError, match="static_args"):
        inject_hyperparams(gx.adam, static_args="nope")
    with pytest.raises(KeyError, match="nope"):
        set_hyperparams(inject_hyperparams(gx.adam)(0.1).init(PARAMS), nope=1.0)


# ----------------------------------------------------------------------------- lookahead


@pytest.mark.parametrize("reset_state", [False, True])
def test_lookahead_matches_optax(reset_state):
    fast = gx.adam(0.05)
    ours = lookahead(fast, sync_period=3, slow_step_size=0.5, reset_state=reset_state)
    theirs = optax.lookahead(fast, sync_period=3, slow_step_size=0.5, reset_state=reset_state)
    p_o = p_t = LookaheadParams.init_synced(PARAMS)
    p_t = optax.LookaheadParams.init_synced(PARAMS)
    so, st = ours.init(p_o), theirs.init(p_t)
    step_o, step_t = jax.jit(ours.update), jax.jit(theirs.update)
    for step in range(7):
        g = _grads(step)
        u_o, so = step_o(g, so, p_o)
        with jax.numpy_dtype_promotion("standard"):
            u_t, st = step_t(g, st, p_t)
        p_o, p_t = gx.apply_updates(p_o, u_o), optax.apply_updates(p_t, u_t)
        _assert_trees_equal(p_o.fast, p_t.fast, rtol=1e-6, atol=1e-7)
        _assert_trees_equal(p_o.slow, p_t.slow, rtol=1e-6, atol=1e-7)
        _assert_trees_equal(so.fast_state, st.fast_state, rtol=1e-6, atol=1e-7)


def test_lookahead_follows_the_papers_two_loops():
    """Algorithm 1 of Zhang et al. run by hand with SGD: k fast steps from phi, then phi += alpha (theta - phi)."""
    f = lambda w: 0.5 * jnp.sum(jnp.array([1.0, 10.0]) * w**2)  # noqa: E731
    lr, k, alpha = 0.15, 4, 0.6
    opt = lookahead(gx.sgd(lr), sync_period=k, slow_step_size=alpha)
    params = LookaheadParams.init_synced(jnp.array([1.0, 1.0]))
    state = opt.init(params)
    phi = np.array([1.0, 1.0])
    for outer in range(3):
        theta = phi.copy()
        for _ in range(k):
            theta = theta - lr * np.array([1.0, 10.0]) * theta
            u, state = opt.update(jax.grad(f)(params.fast), state, params)
            params = gx.apply_updates(params, u)
        phi = phi + alpha * (theta - phi)
        np.testing.assert_allclose(params.slow, phi, rtol=1e-5)
        np.testing.assert_allclose(params.fast, phi, rtol=1e-5)


def test_lookahead_validation():
    with pytest.raises(ValueError, match="sync_period"):
        lookahead(gx.sgd(0.1), 0, 0.5)
    with pytest.raises(ValueError, match="slow_step_size"):
        lookahead(gx.sgd(0.1), 2, 1.5)
    opt = lookahead(gx.sgd(0.1), 2, 0.5)
    with pytest.raises(ValueError, match="LookaheadParams"):
        opt.update(PARAMS, opt.init(PARAMS), PARAMS)


# ----------------------------------------------------------------------------- reduce_on_plateau


def _run_plateau(tx, values):
    state = tx.init(PARAMS)
    step = jax.jit(lambda g, s, v: tx.update(g, s, value=v))
    scales = []
    for v in values:
        _, state = step(PARAMS, state, jnp.float32(v))
        scales.append(float(state.scale))
    return scales, state


POSITIVE_METRIC = [5.0, 4.0, 4.0, 3.9999, 4.1, 4.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.0, 2.5, 2.5, 2.5, 2.5, 2.5, 2.5]


@pytest.mark.parametrize(
    "kwargs",
    [{"factor": 0.5, "patience": 2}, {"factor": 0.5, "patience": 2, "cooldown": 2, "min_scale": 0.2},
     {"factor": 0.3, "patience": 1, "accumulation_size": 2, "rtol": 0.0, "atol": 0.01}],
    ids=["basic", "cooldown-min_scale", "accumulation-atol"],
)
def test_reduce_on_plateau_matches_optax_on_a_positive_metric(kwargs):
    ours, theirs = _run_plateau(reduce_on_plateau(**kwargs), POSITIVE_METRIC)[0], []
    tx = optax_contrib.reduce_on_plateau(**kwargs)
    state = tx.init(PARAMS)
    step = jax.jit(lambda s, v: tx.update(PARAMS, s, value=v))
    for v in POSITIVE_METRIC:
        with jax.numpy_dtype_promotion("standard"):
            _, state = step(state, jnp.float32(v))
        theirs.append(float(state.scale))
    assert ours == pytest.approx(theirs)
    assert ours[-1] < 1.0


def test_reduce_on_plateau_reduces_on_a_negative_metric():
    """Regression: optax.contrib's test value < (1 - rtol) * best - atol accepts a constant
    negative metric as an improvement forever, so it never reduces."""
    values = [-1.0] * 8
    tx = optax_contrib.reduce_on_plateau(factor=0.5, patience=2)
    state = tx.init(PARAMS)
    step = jax.jit(lambda s, v: tx.update(PARAMS, s, value=v))
    for v in values:
        with jax.numpy_dtype_promotion("standard"):
            _, state = step(state, jnp.float32(v))
    assert float(state.scale) == 1.0, "optax's reduce_on_plateau now reduces on negative metrics?"
    scales, ours = _run_plateau(reduce_on_plateau(factor=0.5, patience=2), values)
    # best = -1 after the first value; then 2 evaluations without improvement per halving.
    assert scales == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.125, 0.125]
    u, _ = reduce_on_plateau(factor=0.5, patience=2).update(PARAMS, ours, value=-1.0)
    _assert_trees_equal(u, jax.tree_util.tree_map(lambda x: x * 0.0625, PARAMS), rtol=1e-7)


def test_reduce_on_plateau_improvement_rule_by_hand():
    # best = -10, rtol = 0.1, atol = 0.5: improvement needs v < -10 - 1 - 0.5 = -11.5.
    tx = reduce_on_plateau(factor=0.5, patience=1, rtol=0.1, atol=0.5)
    scales, state = _run_plateau(tx, [-10.0, -11.4, -11.6])
    assert scales == [1.0, 0.5, 0.5] and float(state.best_value) == pytest.approx(-11.6)


def test_reduce_on_plateau_mode_max_is_mode_min_on_the_negated_metric():
    rng = np.random.default_rng(0)
    values = list(np.cumsum(rng.normal(size=30)) * 0.1 - 1.0)
    kwargs = {"factor": 0.7, "patience": 2, "cooldown": 1, "rtol": 0.01, "atol": 0.001}
    s_max, st_max = _run_plateau(reduce_on_plateau(**kwargs, mode="max"), values)
    s_min, st_min = _run_plateau(reduce_on_plateau(**kwargs, mode="min"), [-v for v in values])
    assert s_max == s_min and s_max[-1] < 1.0
    assert float(st_max.best_value) == pytest.approx(-float(st_min.best_value))


def test_reduce_on_plateau_validation():
    for kwargs, arg in [({"factor": 0.0}, "factor"), ({"factor": 1.5}, "factor"), ({"patience": 0}, "patience"),
                        ({"rtol": -1.0}, "rtol"), ({"cooldown": -1}, "cooldown"), ({"mode": "avg"}, "mode"),
                        ({"accumulation_size": 0}, "accumulation_size")]:
        with pytest.raises(ValueError, match=arg):
            reduce_on_plateau(**kwargs)
    with pytest.raises(ValueError, match="value"):
        tx = reduce_on_plateau()
        tx.update(PARAMS, tx.init(PARAMS))
    reduce_on_plateau(factor=1.0)  # allowed: never reduces


# ----------------------------------------------------------------------------- Polyak averaging


def test_polyak_uniform_average_is_the_mean_of_the_iterates():
    opt = polyak_averaging(gx.adam(0.1), decay=None)
    params, state = PARAMS, opt.init(PARAMS)
    iterates = []
    step = jax.jit(opt.update)
    for t in range(5):
        u, state = step(_grads(t), state, params)
        params = gx.apply_updates(params, u)
        iterates.append(params)
    mean = jax.tree_util.tree_map(lambda *x: sum(x) / len(x), *iterates)
    _assert_trees_equal(polyak_params(state, like=PARAMS), mean, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("debias", [True, False])
def test_polyak_ema_by_hand(debias):
    decay = 0.8
    opt = polyak_averaging(gx.sgd(0.5), decay=decay, debias=debias)
    params, state = PARAMS, opt.init(PARAMS)
    m = jax.tree_util.tree_map(lambda x: np.zeros(x.shape), PARAMS)
    for t in range(1, 5):
        g = _grads(t)
        u, state = opt.update(g, state, params)
        _assert_trees_equal(u, jax.tree_util.tree_map(lambda x: -0.5 * x, g), rtol=1e-6)  # unchanged
        params = gx.apply_updates(params, u)
        m = jax.tree_util.tree_map(lambda a, p: decay * a + (1 - decay) * np.asarray(p, np.float64), m, params)
        want = jax.tree_util.tree_map(lambda a: a / (1 - decay**t), m) if debias else m
        _assert_trees_equal(polyak_params(state), want, rtol=1e-5, atol=1e-7)


def test_polyak_keeps_a_float32_average_of_bf16_params():
    params = {"w": jnp.ones(3, jnp.bfloat16)}
    opt = polyak_averaging(gx.sgd(0.1), decay=0.999)
    state = opt.init(params)
    assert state.ema["w"].dtype == jnp.float32
    u, state = opt.update({"w": jnp.ones(3, jnp.bfloat16)}, state, params)
    assert u["w"].dtype == jnp.bfloat16
    avg = polyak_params(state, like=params)
    assert avg["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(avg["w"], np.float32), 0.898, rtol=1e-2)  # bf16(0.9)


def test_polyak_validation():
    with pytest.raises(ValueError, match="decay"):
        polyak_averaging(gx.sgd(0.1), decay=1.0)
    opt = polyak_averaging(gx.sgd(0.1))
    with pytest.raises(ValueError, match="params"):
        opt.update(PARAMS, opt.init(PARAMS))
