"""Early stopping against Algorithm 7.1 run step by step by hand, eagerly, jitted,
in lax.scan and in lax.while_loop."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradxform as gx
import gradxform.training  # noqa: F401


def algorithm_7_1(curve, patience, min_delta=0.0, n=1):
    """Algorithm 7.1 as printed in Goodfellow et al. (2016), one record per pass of the while loop.

    theta is represented by its index: 0 is theta_o, t is the params after the t-th
    round of n training steps. The improvement test is `v' < v - min_delta`
    (`v' < v` with the default, as printed). Runs until `j >= p` or the curve ends.
    """
    theta = 0
    i, j, v = 0, 0, math.inf
    theta_star, i_star = theta, i
    trace = []
    while j < patience and theta < len(curve):
        theta += 1  # "Update theta by running the training algorithm for n steps."
        i += n
        v_prime = curve[theta - 1]  # ValidationSetError(theta)
        if v_prime < v - min_delta:
            j = 0
            theta_star = theta
            i_star = i
            v = v_prime
        else:
            j += 1
        trace.append({"i": i, "i_star": i_star, "v": v, "j": j, "theta_star": theta_star})
    return trace


def _params(t):
    """The params after t rounds of training (t = 0: theta_o): a float and an int leaf."""
    return {"w": jnp.full((2,), float(t), jnp.float32), "n": [jnp.asarray(3 * t, jnp.int32)]}


def _assert_state_matches(state, rec, *, mode="min", n=1):
    sign = 1.0 if mode == "min" else -1.0
    assert int(state.best_step) * n == rec["i_star"]
    assert int(state.count) * n == rec["i"]
    assert int(state.patience_count) == rec["j"]
    v = rec["v"]
    if math.isinf(v):
        assert float(state.best_metric) == sign * v
    else:
        assert float(state.best_metric) == np.float32(sign * v)
    expected = _params(rec["theta_star"])
    np.testing.assert_array_equal(state.best_params["w"], expected["w"])
    np.testing.assert_array_equal(state.best_params["n"][0], expected["n"][0])


def _run_and_compare(curve, patience, min_delta=0.0, mode="min", jit=False):
    es = gx.training.early_stopping(patience, min_delta, mode=mode)
    update = jax.jit(es.update) if jit else es.update
    # mode="max" is Algorithm 7.1 on the negated metric.
    trace = algorithm_7_1([-c for c in curve] if mode == "max" else curve, patience, min_delta)
    state = es.init(_params(0))
    for t, rec in enumerate(trace, start=1):
        assert not bool(state.should_stop)
        state = update(state, curve[t - 1], _params(t))
        _assert_state_matches(state, rec, mode=mode)
        assert bool(state.should_stop) == (rec["j"] >= patience)
    # Beyond the algorithm's exit: further evaluations change nothing.
    if bool(state.should_stop):
        for t in range(len(trace) + 1, len(curve) + 1):
            new = update(state, curve[t - 1], _params(t))
            _assert_state_matches(new, trace[-1], mode=mode)
            assert bool(new.should_stop)
            state = new
    return trace, state


CURVES = {
    "u_shape": ([5.0, 4.0, 3.0, 2.5, 2.625, 2.75, 2.375, 2.875, 3.0, 3.125, 3.25, 3.5], 3),
    "ties_do_not_improve": ([1.0, 1.0, 1.0, 1.0, 1.0], 2),
    "negative_values": ([-1.0, -2.0, -2.5, -2.375, -3.0, -2.875, -2.9375, -2.96875, -4.0], 2),
    "patience_one": ([3.0, 2.0, 2.5, 1.0, 0.5], 1),
    "never_stops": ([9.0, 8.0, 7.0, 6.0, 5.0], 2),
    "nan_and_inf": ([math.inf, 2.0, math.nan, 1.5, math.nan, math.nan, 1.0], 2),
    "late_improvement": ([2.0, 2.5, 3.0, 1.0, 1.5, 1.75, 2.0, 0.5], 3),
}


@pytest.mark.parametrize("name", sorted(CURVES))
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_equals_algorithm_7_1_step_by_step(name, jit):
    curve, patience = CURVES[name]
    trace, state = _run_and_compare(curve, patience, jit=jit)
    if name == "ties_do_not_improve":
        assert trace[-1]["i_star"] == 1 and len(trace) == 3
    if name == "never_stops":
        assert not bool(state.should_stop) and int(state.best_step) == 5


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_mode_max_with_negative_metrics(jit):
    # An accuracy-like metric (bigger is better), shifted negative.
    curve = [-0.75, -0.5, -0.25, -0.375, -0.25, -0.3125, -0.125, -0.5, -0.5, -0.5]
    trace, state = _run_and_compare(curve, 3, mode="max", jit=jit)
    # -0.25 at evaluation 3; then worse, a tie, worse: stopped at evaluation 6, before the -0.125.
    assert float(state.best_metric) == -0.25 and int(state.best_step) == 3
    assert bool(state.should_stop) and int(state.count) == 6


@pytest.mark.parametrize("mode", ["min", "max"])
def test_min_delta(mode):
    # Dyadic values, so float32 and the float64 hand run agree exactly on every comparison.
    curve = [4.0, 3.875, 3.5, 3.25, 3.25, 3.0, 2.5, 2.375, 2.25, 2.25]
    if mode == "max":
        curve = [-c for c in curve]
    trace, state = _run_and_compare(curve, 2, min_delta=0.25, mode=mode)
    # 3.875 is within 0.25 of 4.0 (no improvement), 3.5 improves by 0.5; 3.25 is exactly 0.25 better (a tie).
    assert [r["i_star"] for r in trace[:4]] == [1, 1, 3, 3]


def test_initial_state_and_dtypes():
    for mode, start in [("min", math.inf), ("max", -math.inf)]:
        es = gx.training.early_stopping(3, mode=mode)
        state = es.init(_params(0))
        assert isinstance(state, gx.training.EarlyStoppingState)
        assert float(state.best_metric) == start and state.best_metric.dtype == jnp.float32
        assert state.best_step.dtype == jnp.int32 and int(state.best_step) == 0
        assert state.patience_count.dtype == jnp.int32 and int(state.patience_count) == 0
        assert state.count.dtype == jnp.int32 and int(state.count) == 0
        assert state.should_stop.dtype == jnp.bool_ and not bool(state.should_stop)
        np.testing.assert_array_equal(state.best_params["w"], _params(0)["w"])
        new = es.update(state, jnp.asarray(0.5, jnp.bfloat16), _params(1))  # any float dtype metric
        assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)
        for a, b in zip(jax.tree_util.tree_leaves(new), jax.tree_util.tree_leaves(state)):
            assert a.dtype == b.dtype and a.shape == b.shape


def _scan_final(es, curve):
    params_seq = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[_params(t) for t in range(1, len(curve) + 1)])

    def body(state, inputs):
        metric, params = inputs
        state = es.update(state, metric, params)
        return state, state.should_stop

    return jax.jit(lambda s, m, p: jax.lax.scan(body, s, (m, p)))(
        es.init(_params(0)), jnp.asarray(curve, jnp.float32), params_seq
    )


@pytest.mark.parametrize("name", ["u_shape", "negative_values", "late_improvement", "never_stops"])
def test_lax_scan_ends_in_algorithm_7_1_result(name):
    curve, patience = CURVES[name]
    es = gx.training.early_stopping(patience)
    final, stops = _scan_final(es, curve)
    trace = algorithm_7_1(curve, patience)
    _assert_state_matches(final, trace[-1])
    stops = np.asarray(stops)
    assert stops.tolist() == [r["j"] >= patience for r in trace] + [True] * (len(curve) - len(trace))


@pytest.mark.parametrize("name", ["u_shape", "nan_and_inf", "never_stops"])
def test_lax_while_loop_runs_until_should_stop(name):
    curve, patience = CURVES[name]
    es = gx.training.early_stopping(patience)
    metrics = jnp.asarray(curve, jnp.float32)

    def cond(carry):
        t, state = carry
        return jnp.logical_and(jnp.logical_not(state.should_stop), t < len(curve))

    def body(carry):
        t, state = carry
        params = {"w": jnp.full((2,), (t + 1).astype(jnp.float32)), "n": [3 * (t + 1)]}
        return t + 1, es.update(state, metrics[t], params)

    t, final = jax.jit(lambda s: jax.lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), s)))(
        es.init(_params(0))
    )
    trace = algorithm_7_1(curve, patience)
    assert int(t) == len(trace)  # the loop ran exactly as many evaluations as Algorithm 7.1
    _assert_state_matches(final, trace[-1])


@given(
    values=st.lists(st.integers(-40, 40), min_size=1, max_size=14),
    patience=st.integers(1, 4),
    min_delta=st.sampled_from([0.0, 0.25, 1.0]),
    mode=st.sampled_from(["min", "max"]),
)
def test_random_curves_equal_algorithm_7_1(values, patience, min_delta, mode):
    curve = [v / 4 for v in values]  # dyadic: exact in float32
    es = gx.training.early_stopping(patience, min_delta, mode=mode)
    final, _ = _scan_final(es, curve)
    trace = algorithm_7_1([-c for c in curve] if mode == "max" else curve, patience, min_delta)
    _assert_state_matches(final, trace[-1], mode=mode)
    assert bool(final.should_stop) == (trace[-1]["j"] >= patience)


def test_errors():
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match=f"patience={bad}"):
            gx.training.early_stopping(bad)
    with pytest.raises(ValueError, match="min_delta=-0.1"):
        gx.training.early_stopping(2, -0.1)
    with pytest.raises(ValueError, match="mode='avg'"):
        gx.training.early_stopping(2, mode="avg")
    es = gx.training.early_stopping(2)
    state = es.init(_params(0))
    with pytest.raises(ValueError, match=r"scalar.*\(3,\)"):
        es.update(state, jnp.ones(3), _params(1))
    with pytest.raises(TypeError, match="EarlyStoppingState"):
        es.update({"best_metric": 1.0}, 1.0, _params(1))
    with pytest.raises(ValueError, match=r"\['w'\]"):
        es.update(state, 1.0, {"w": jnp.zeros(3), "n": [jnp.asarray(0, jnp.int32)]})
