"""One-cycle, piecewise-interpolated and warm-up-constant schedules; join_schedules' optax idiom;
inject_stateful_hyperparams and the stateful-schedule interface."""

from __future__ import annotations

import inspect
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform import schedules as gxs
from gradxform.testing import reference as R

# Each case builds the same schedule from a module with optax's API (`gxs`, `optax.schedules`
# or the NumPy reference `R`).
CASES = {
    "cosine_onecycle": lambda m: m.cosine_onecycle_schedule(100, 1.0),
    "cosine_onecycle_args": lambda m: m.cosine_onecycle_schedule(
        37, 3e-3, pct_start=0.25, div_factor=10.0, final_div_factor=100.0
    ),
    "cosine_onecycle_turn_at_0": lambda m: m.cosine_onecycle_schedule(7, 2.0, pct_start=0.1),
    "linear_onecycle": lambda m: m.linear_onecycle_schedule(100, 1.0),
    "linear_onecycle_args": lambda m: m.linear_onecycle_schedule(
        53, 0.5, pct_start=0.2, pct_final=0.7, div_factor=5.0, final_div_factor=50.0
    ),
    "linear_onecycle_short": lambda m: m.linear_onecycle_schedule(7, 1.0, pct_start=0.1, pct_final=0.2),
    "interp_linear": lambda m: m.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1, 8: 0.01}),
    "interp_cosine": lambda m: m.piecewise_interpolate_schedule("cosine", 1.0, {4: 0.1, 8: 0.01}),
    "interp_unsorted_zero": lambda m: m.piecewise_interpolate_schedule(
        "cosine", 2.0, {30: 0.5, 0: 3.0, 10: 0.0, 20: 4.0}
    ),
    "interp_growing": lambda m: m.piecewise_interpolate_schedule("linear", -0.5, {10: 4.0, 100: 2.0}),
    "interp_none": lambda m: m.piecewise_interpolate_schedule("linear", 0.3),
    "interp_empty": lambda m: m.piecewise_interpolate_schedule("cosine", 0.3, {}),
    "warmup_constant": lambda m: m.warmup_constant_schedule(0.1, 1.0, 10),
    "warmup_constant_down": lambda m: m.warmup_constant_schedule(2.0, -1.0, 33),
}
STEPS = list(range(0, 120)) + [150, 1000, 10**6, 2**31 - 1]


def _optax(schedule, step):
    with jax.numpy_dtype_promotion("standard"):
        return float(np.asarray(schedule(step), dtype=np.float64))


def _assert_close(actual, expected, what, rtol=2e-6):
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    scale = float(np.max(np.abs(expected)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=2e-7 * scale, err_msg=what)


@pytest.mark.parametrize("name", sorted(CASES))
def test_matches_the_numpy_reference(name):
    ours, ref = CASES[name](gxs), CASES[name](R)
    values = jax.jit(jax.vmap(ours))(jnp.asarray(STEPS, jnp.int32))
    _assert_close(values, [ref(k) for k in STEPS], name)


@pytest.mark.parametrize("name", sorted(CASES))
def test_parity_with_optax_python_numpy_and_traced_int32(name):
    ours, theirs = CASES[name](gxs), CASES[name](optax.schedules)
    expected = [_optax(theirs, k) for k in STEPS]
    eager_steps = STEPS[::7] + [np.int64(9), np.int32(30)]
    _assert_close([ours(k) for k in eager_steps], [_optax(theirs, int(k)) for k in eager_steps], name, 1e-5)
    traces = []

    @jax.jit
    def at(k):
        traces.append(k)
        return ours(k)

    got = [at(jnp.int32(k)) for k in STEPS]
    assert len(traces) == 1
    _assert_close(got, expected, name, 1e-5)
    assert all(g.dtype == jnp.float32 and g.shape == () for g in got)


def test_values_at_the_formulas_turning_points():
    s = gxs.cosine_onecycle_schedule(100, 1.0)  # up for 30 steps, down for 70
    assert float(s(0)) == pytest.approx(1 / 25) and float(s(30)) == 1.0
    assert float(s(15)) == pytest.approx((1 / 25 + 1) / 2, rel=1e-6)  # half way up a half cosine
    assert float(s(100)) == pytest.approx(1 / 25 / 1e4, rel=1e-6)
    s = gxs.linear_onecycle_schedule(100, 1.0)
    assert [round(float(s(k)), 7) for k in (0, 30, 85, 100)] == [0.04, 1.0, 0.04, 4e-6]
    s = gxs.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1, 8: 0.01})
    assert float(s(6)) == pytest.approx((0.1 + 0.001) / 2, rel=1e-6)  # between the running products


def test_the_cosine_tail_keeps_its_relative_accuracy():
    """Near the end of a 1 -> 4e-6 phase the value is tiny; it stays accurate relative to itself."""
    ours, ref = gxs.cosine_onecycle_schedule(1000, 1.0), R.cosine_onecycle_schedule(1000, 1.0)
    for k in (990, 995, 999):
        assert float(ours(k)) == pytest.approx(ref(k), rel=1e-4)


# --------------------------------------------------------------------------- mutants


def _reference_check(ours, ref):
    values = np.asarray(jax.vmap(ours)(jnp.arange(0, 120, dtype=jnp.int32)), np.float64)
    want = np.array([ref(k) for k in range(120)])
    return np.allclose(values, want, rtol=2e-6, atol=2e-7 * np.max(np.abs(want)))


def test_reference_check_catches_interpolating_the_raw_scales():
    """The subtle point: values are the running products of the scales, not the scales."""
    broken = gxs.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1, 8: 0.1})  # 0.1, then 0.1 * 0.1
    as_raw = gxs.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1, 8: 1.0})  # 0.1, then 0.1 (raw)
    ref = R.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1, 8: 0.1})
    assert _reference_check(broken, ref)
    assert not _reference_check(as_raw, ref)


def test_reference_check_catches_a_linear_cycle_sold_as_cosine():
    ref = R.cosine_onecycle_schedule(100, 1.0)
    assert _reference_check(gxs.cosine_onecycle_schedule(100, 1.0), ref)
    mutant = gxs.piecewise_interpolate_schedule("linear", 1 / 25, {30: 25.0, 100: 1 / 25 / 1e4})
    assert not _reference_check(mutant, ref)


def test_reference_check_catches_a_final_value_of_peak_over_final_div():
    """optax's docstring says the linear cycle ends at peak / final_div_factor; it ends at peak / (d f)."""
    ref = R.linear_onecycle_schedule(100, 1.0)
    mutant = gxs.piecewise_interpolate_schedule("linear", 0.04, {30: 25.0, 85: 0.04, 100: 1e-4 / 0.04})
    assert not _reference_check(mutant, ref)


def test_reference_check_catches_an_unfloored_turning_step():
    ref = R.cosine_onecycle_schedule(37, 1.0, pct_start=0.27)  # turn at floor(9.99) = 9
    assert _reference_check(gxs.cosine_onecycle_schedule(37, 1.0, pct_start=0.27), ref)
    rounded = gxs.cosine_onecycle_schedule(37, 1.0, pct_start=0.28)  # turn at 10, as round(9.99) would
    assert not _reference_check(rounded, ref)


# --------------------------------------------------------------------------- differences, validation


def test_warmup_constant_without_warmup_is_the_peak():
    """optax 0.2.8 holds init_value for ever when warmup_steps=0 (a difference, documented)."""
    ours = gxs.warmup_constant_schedule(0.1, 1.0, 0)
    assert [float(ours(k)) for k in (0, 1, 100)] == [1.0, 1.0, 1.0]
    assert _optax(optax.schedules.warmup_constant_schedule(0.1, 1.0, 0), 5) == pytest.approx(0.1)


def test_negative_steps_hold_the_initial_value():
    """optax's piecewise_interpolate_schedule gives 0 before step 0; here the initial value."""
    s = gxs.piecewise_interpolate_schedule("linear", 1.0, {4: 0.1})
    assert float(s(-3)) == 1.0 and float(jax.jit(s)(jnp.int32(-3))) == 1.0


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: gxs.piecewise_interpolate_schedule("quadratic", 1.0, {4: 0.1}), "interpolate_type"),
        (lambda: gxs.piecewise_interpolate_schedule("linear", 1.0, {4: -0.1}), "boundaries_and_scales"),
        (lambda: gxs.piecewise_interpolate_schedule("linear", 1.0, {-4: 0.1}), "boundaries_and_scales"),
        (lambda: gxs.cosine_onecycle_schedule(0, 1.0), "transition_steps"),
        (lambda: gxs.cosine_onecycle_schedule(-5, 1.0), "transition_steps"),
        (lambda: gxs.cosine_onecycle_schedule(10, 1.0, pct_start=1.5), "pct_start"),
        (lambda: gxs.cosine_onecycle_schedule(10, 1.0, pct_start=-0.1), "pct_start"),
        (lambda: gxs.cosine_onecycle_schedule(10, 1.0, div_factor=0.0), "div_factor"),
        (lambda: gxs.cosine_onecycle_schedule(10, 1.0, final_div_factor=-1.0), "final_div_factor"),
        (lambda: gxs.linear_onecycle_schedule(0, 1.0), "transition_steps"),
        (lambda: gxs.linear_onecycle_schedule(10, 1.0, pct_start=0.5, pct_final=0.4), "pct_final"),
        (lambda: gxs.linear_onecycle_schedule(10, 1.0, pct_final=1.2), "pct_final"),
        (lambda: gxs.linear_onecycle_schedule(10, 1.0, div_factor=float("nan")), "div_factor"),
        (lambda: gxs.warmup_constant_schedule(0.0, 1.0, -1), "warmup_steps"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(build, name):
    with pytest.raises(ValueError, match=name):
        build()


def test_traced_step_counts_raise_type_error():
    with pytest.raises(TypeError, match="transition_steps"):
        jax.jit(lambda t: gxs.cosine_onecycle_schedule(t, 1.0)(0))(10)
    with pytest.raises(TypeError, match="warmup_steps"):
        jax.jit(lambda t: gxs.warmup_constant_schedule(0.0, 1.0, t)(0))(10)


def test_equal_turning_steps_give_a_phase_of_length_zero():
    s = gxs.linear_onecycle_schedule(10, 1.0, pct_start=0.5, pct_final=0.5)  # up to 1.0 at 5, then jump
    assert float(s(4)) == pytest.approx(0.04 + 0.96 * 0.8)
    assert float(s(5)) == pytest.approx(0.04) and float(s(10)) == pytest.approx(4e-6)


def test_array_peak_value():
    s = gxs.cosine_onecycle_schedule(100, jnp.float32(2.0))
    assert float(s(30)) == 2.0 and float(s(0)) == pytest.approx(0.08)


# --------------------------------------------------------------------------- join_schedules


def test_join_schedules_with_one_boundary_per_schedule_warns_and_ignores_the_last():
    def build(m):
        return m.join_schedules(
            [m.linear_schedule(0.0, 1.0, 10), m.constant_schedule(1.0), m.exponential_decay(1.0, 10, 0.5)],
            [10, 20, 30],
        )

    with pytest.warns(UserWarning, match=r"boundaries\[-1\]=30"):
        ours = build(gxs)
    theirs = build(optax.schedules)
    steps = [0, 5, 10, 15, 20, 25, 30, 35, 100]
    _assert_close([ours(k) for k in steps], [_optax(theirs, k) for k in steps], "join")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gxs.join_schedules([gxs.constant_schedule(1.0)] * 2, [5])  # the usual form: no warning


def test_join_schedules_other_lengths_still_raise():
    with pytest.raises(ValueError, match="boundaries"):
        gxs.join_schedules([gxs.constant_schedule(1.0)] * 2, [1, 2, 3])
    with pytest.raises(ValueError, match="boundaries"):
        gxs.join_schedules([gxs.constant_schedule(1.0)] * 3, [])


# --------------------------------------------------------------------------- namespace


def test_schedules_namespace_holds_everything_in_optax_schedules():
    public = {n for n in dir(optax.schedules) if not n.startswith("_")}
    assert public <= set(gxs.__all__), sorted(public - set(gxs.__all__))
    assert gxs.__all__ == sorted(gxs.__all__)
    for name in public:
        theirs = getattr(optax.schedules, name)
        if inspect.isfunction(theirs):
            ours = getattr(gxs, name)
            assert [(p.name, p.default, p.kind) for p in inspect.signature(ours).parameters.values()] == [
                (p.name, p.default, p.kind) for p in inspect.signature(theirs).parameters.values()
            ], name
    assert gxs.inject_hyperparams is gx.inject_hyperparams
    assert gxs.InjectStatefulHyperparamsState._fields == optax.schedules.InjectStatefulHyperparamsState._fields


# --------------------------------------------------------------------------- stateful injection

PARAMS = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([0.5])}


def _grads(t):
    return {"w": jnp.array([0.3, -1.0, 2.0]) * (t + 1), "b": jnp.array([0.1 * t - 0.25])}


def _sched(count):
    return 0.1 / (1.0 + jnp.asarray(count).astype(jnp.float32))


class _LossScaled:
    """A stateful schedule: 0.1 / (1 + the sum of the losses so far); counts its updates."""

    def init(self):
        return {"n": jnp.zeros([], jnp.int32), "total": jnp.zeros([], jnp.float32)}

    def update(self, state, loss=0.0, **extra_args):
        return {"n": state["n"] + 1, "total": state["total"] + loss}

    def __call__(self, state, **extra_args):
        return 0.1 / (1.0 + state["total"])


def _run(opt, steps=6, jit=True):
    state = opt.init(PARAMS)
    update = jax.jit(opt.update) if jit else opt.update
    out = []
    for t in range(steps):
        u, state = update(_grads(t), state, PARAMS, loss=jnp.float32(0.5 * t))
        out.append(u)
    return out, state


def _assert_trees_close(a, b, rtol=1e-5):
    ta, tb = jax.tree_util.tree_structure(a), jax.tree_util.tree_structure(b)
    assert len(jax.tree_util.tree_leaves(a)) == len(jax.tree_util.tree_leaves(b)), (ta, tb)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=1e-7)


@pytest.mark.parametrize(
    "kwargs",
    [
        lambda m: dict(learning_rate=0.01),
        lambda m: dict(learning_rate=_sched, b1=0.8),
        lambda m: dict(learning_rate=m.WrappedSchedule(_sched)),
        lambda m: dict(learning_rate=_LossScaled(), b2=0.99),
    ],
    ids=["constant", "schedule", "wrapped", "stateful"],
)
def test_inject_stateful_hyperparams_matches_optax(kwargs):
    ours, their_state_u = _run(gxs.inject_stateful_hyperparams(gx.adam)(**kwargs(gxs)))
    with jax.numpy_dtype_promotion("standard"), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs, their_state = _run(optax.schedules.inject_stateful_hyperparams(optax.adam)(**kwargs(optax.schedules)))
    state = their_state_u
    for u, v in zip(ours, theirs):
        _assert_trees_close(u, v)
    # optax's layout: the same leaves, in the same order, with the same shapes and dtypes.
    ours_leaves, their_leaves = jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(their_state)
    assert [(np.shape(x), np.asarray(x).dtype) for x in ours_leaves] == [
        (np.shape(x), np.asarray(x).dtype) for x in their_leaves
    ]
    _assert_trees_close(state, their_state)
    assert type(state).__name__ == "InjectStatefulHyperparamsState"
    assert state._fields == ("count", "hyperparams", "hyperparams_states", "inner_state")


def test_stateful_schedule_sees_the_state_before_the_update_and_the_extra_args():
    opt = gxs.inject_stateful_hyperparams(gx.sgd)(learning_rate=_LossScaled())
    state = opt.init(PARAMS)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.1)
    u, state = opt.update(_grads(0), state, PARAMS, loss=jnp.float32(1.0))
    np.testing.assert_allclose(u["w"], -0.1 * _grads(0)["w"], rtol=1e-6)  # value before the update
    assert int(state.hyperparams_states["learning_rate"]["n"]) == 1
    u, state = opt.update(_grads(0), state, PARAMS, loss=jnp.float32(1.0))
    np.testing.assert_allclose(u["w"], -0.05 * _grads(0)["w"], rtol=1e-6)  # 0.1 / (1 + 1)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(0.05)
    assert int(state.count) == 2


def test_plain_schedules_are_wrapped_with_their_step_as_state():
    opt = gxs.inject_stateful_hyperparams(gx.sgd)(learning_rate=_sched, momentum=0.9)
    _, state = _run(opt, steps=3)
    wrapped = state.hyperparams_states["learning_rate"]
    assert type(wrapped).__name__ == "WrappedScheduleState" and int(wrapped.count) == 3
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(float(_sched(2)))
    assert set(state.hyperparams_states) == {"learning_rate"}


def test_wrapped_schedule():
    s = gxs.WrappedSchedule(lambda c: 2.0 * c.astype(jnp.float32))
    state = s.init()
    assert int(state.count) == 0 and state.count.dtype == jnp.int32
    state = s.update(s.update(state, loss=1.0))
    assert float(s(state, loss=1.0)) == 4.0
    assert isinstance(s, gxs.StatefulSchedule) and isinstance(_LossScaled(), gxs.StatefulSchedule)
    with pytest.raises(TypeError, match="schedule_fn"):
        gxs.WrappedSchedule(0.1)


def test_stored_hyperparameters_can_be_changed_without_recompiling():
    opt = gxs.inject_stateful_hyperparams(gx.adam)(learning_rate=0.1, b1=_sched)
    traces = []

    def update(g, s):
        traces.append(1)
        return opt.update(g, s, PARAMS)

    step = jax.jit(update)
    state = opt.init(PARAMS)
    u1, _ = step(_grads(0), state)
    state = gx.set_hyperparams(state, learning_rate=0.2)
    assert state.hyperparams["learning_rate"].dtype == jnp.float32
    u2, _ = step(_grads(0), state)
    assert len(traces) == 1
    np.testing.assert_allclose(u2["w"], 2 * u1["w"], rtol=1e-6)


def test_hyperparameters_are_float32_whatever_the_params():
    opt = gxs.inject_stateful_hyperparams(gx.adam)(learning_rate=0.1)
    state = opt.init({"w": jnp.ones(2, jnp.bfloat16)})
    assert all(v.dtype == jnp.float32 for v in state.hyperparams.values())
    assert state.hyperparams["b2"] < 1  # optax: bfloat16(0.999) == 1


def test_inject_stateful_validation():
    with pytest.raises(ValueError, match="b2"):
        gxs.inject_stateful_hyperparams(gx.adam)(learning_rate=0.1, b2=1.0)
    with pytest.raises(ValueError, match="learning_rate"):
        gxs.inject_stateful_hyperparams(gx.adam)(learning_rate=float("nan"))
    with pytest.raises(ValueError, match="static_args"):
        gxs.inject_stateful_hyperparams(gx.adam, static_args="nope")
    opt = gxs.inject_stateful_hyperparams(gx.adam)(learning_rate=0.1)
    with pytest.raises(TypeError, match="InjectStatefulHyperparamsState"):
        opt.update(_grads(0), gx.adam(0.1).init(PARAMS), PARAMS)
