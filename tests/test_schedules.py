"""Tests of `gradxform.schedules`: parity with optax, the textbook formulas, dtypes, jit, validation.

Every expected value comes from optax 0.2.8 (evaluated eagerly with Python ints,
under standard dtype promotion since optax does not cast its step) or from a
closed-form formula evaluated in float64 NumPy; none is copied from our output.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax import lax

from gradxform import schedules as gxs

INT32_MAX = 2**31 - 1


def f32s(low, high):
    """float32 values in [low, high] (bounds rounded to float32), no subnormals."""
    return st.floats(float(np.float32(low)), float(np.float32(high)), width=32, allow_subnormal=False)


# Steps every parity case is evaluated at: the start, small steps, the boundaries
# used by the cases below (5, 10, 100, 105, 110, 200, 300) and either side of
# them, far past the end, past float32's exact integers (2**24: 10**9 + 5 is not a
# float32, so a schedule that rounds the step to float32 first fails there), and
# int32's max.
STEPS = sorted(
    {0, 1, 2, 3}
    | {b + d for b in (5, 10, 20, 50, 100, 105, 110, 200, 300) for d in (-1, 0, 1)}
    | {1_000, 10**6, 2**24 + 1, 10**9, 10**9 + 5, 10**9 + 10, INT32_MAX}
)


def _optax(schedule, step):
    """optax's value at a Python-int step, as float64 (optax mixes int32 and floats)."""
    with jax.numpy_dtype_promotion("standard"):
        return float(np.asarray(schedule(step), dtype=np.float64))


def _optax_values(schedule, steps):
    return np.array([_optax(schedule, k) for k in steps], dtype=np.float64)


# Each case builds the same schedule from a module with optax's API: `gxs` or `optax`.
PARITY_CASES = {
    "constant": lambda m: m.constant_schedule(0.3),
    "constant_negative": lambda m: m.constant_schedule(-2.5),
    "linear": lambda m: m.linear_schedule(1.0, 0.01, 100),
    "linear_begin": lambda m: m.linear_schedule(0.1, 2.0, transition_steps=100, transition_begin=5),
    "linear_cross_zero": lambda m: m.linear_schedule(1.0, -1.0, transition_steps=10),
    "linear_no_transition": lambda m: m.linear_schedule(1.0, 0.5, transition_steps=0),
    "linear_late_begin": lambda m: m.linear_schedule(1.0, 0.0, 10, transition_begin=10**9),
    "polynomial": lambda m: m.polynomial_schedule(1.0, 0.01, power=2, transition_steps=100),
    "polynomial_sqrt_begin": lambda m: m.polynomial_schedule(
        0.5, 3.0, power=0.5, transition_steps=100, transition_begin=5
    ),
    "polynomial_cubic": lambda m: m.polynomial_schedule(-1.0, 1.0, power=3, transition_steps=20),
    "polynomial_no_transition": lambda m: m.polynomial_schedule(2.0, 1.0, 2, transition_steps=0),
    "exponential": lambda m: m.exponential_decay(1.0, transition_steps=10, decay_rate=0.5),
    "exponential_staircase": lambda m: m.exponential_decay(
        0.1, transition_steps=100, decay_rate=0.9, transition_begin=5, staircase=True
    ),
    "exponential_floor": lambda m: m.exponential_decay(
        1.0, transition_steps=5, decay_rate=0.1, end_value=1e-3
    ),
    "exponential_growth_ceiling": lambda m: m.exponential_decay(
        0.01, transition_steps=10, decay_rate=2.0, transition_begin=10, end_value=1.0
    ),
    "exponential_no_transition": lambda m: m.exponential_decay(3.0, 0, 0.5),
    "cosine": lambda m: m.cosine_decay_schedule(1.0, decay_steps=100),
    "cosine_alpha": lambda m: m.cosine_decay_schedule(2.0, decay_steps=300, alpha=0.1),
    "cosine_exponent": lambda m: m.cosine_decay_schedule(1.0, 50, alpha=0.2, exponent=2.0),
    "cosine_alpha_one": lambda m: m.cosine_decay_schedule(0.7, 10, alpha=1.0),
    "cosine_one_step": lambda m: m.cosine_decay_schedule(1.0, decay_steps=1),
    "warmup_cosine": lambda m: m.warmup_cosine_decay_schedule(0.0, 1.0, 10, 110, end_value=1e-3),
    "warmup_cosine_no_warmup": lambda m: m.warmup_cosine_decay_schedule(0.5, 1.0, 0, 100),
    "warmup_cosine_rising_end": lambda m: m.warmup_cosine_decay_schedule(
        0.1, 1.0, 5, 105, end_value=2.0, exponent=0.5
    ),
    "warmup_cosine_zero_peak": lambda m: m.warmup_cosine_decay_schedule(1.0, 0.0, 10, 20, 0.5),
    "piecewise_none": lambda m: m.piecewise_constant_schedule(0.5),
    "piecewise_empty": lambda m: m.piecewise_constant_schedule(0.5, {}),
    "piecewise": lambda m: m.piecewise_constant_schedule(1.0, {100: 0.1, 200: 0.01}),
    "piecewise_unsorted_zero": lambda m: m.piecewise_constant_schedule(
        2.0, {300: 0.0, 10: 0.5, 0: 3.0}
    ),
    "join": lambda m: m.join_schedules(
        [m.linear_schedule(0.0, 1.0, 10), m.exponential_decay(1.0, 10, 0.5)], [10]
    ),
    "join_three_equal_boundaries": lambda m: m.join_schedules(
        [m.constant_schedule(1.0), m.constant_schedule(2.0), m.cosine_decay_schedule(3.0, 100)],
        [5, 5],
    ),
    "join_single": lambda m: m.join_schedules([m.linear_schedule(1.0, 0.0, 50)], []),
    "warmup_exponential": lambda m: m.warmup_exponential_decay_schedule(
        0.0, 1.0, warmup_steps=10, transition_steps=20, decay_rate=0.5, end_value=0.01
    ),
    "warmup_exponential_staircase": lambda m: m.warmup_exponential_decay_schedule(
        0.1, 1.0, 5, 10, 0.9, transition_begin=5, staircase=True
    ),
    "sgdr": lambda m: m.sgdr_schedule(
        [
            dict(init_value=0.0, peak_value=1.0, warmup_steps=5, decay_steps=100),
            dict(init_value=0.5, peak_value=0.5, warmup_steps=0, decay_steps=200, end_value=0.1),
        ]
    ),
}
CASE_IDS = sorted(PARITY_CASES)


def _assert_close(actual, expected, what):
    expected = np.asarray(expected, dtype=np.float64)
    scale = max(1.0, float(np.max(np.abs(expected[np.isfinite(expected)]), initial=0.0)))
    np.testing.assert_allclose(
        np.asarray(actual, dtype=np.float64), expected, rtol=2e-6, atol=2e-7 * scale, err_msg=what
    )


COUNTER_START = 95  # a counter scanned over len(STEPS) steps crosses the boundaries 100 to 110
# Eager calls cost about a millisecond each: they get the steps either side of every
# boundary; jit and scan get all of STEPS.
EAGER_STEPS = [0, 1, 4, 5, 9, 10, 11, 20, 99, 100, 104, 105, 110, 199, 200, 300, 301]
EAGER_STEPS += [10**6, 2**24 + 1, 10**9 + 5, INT32_MAX]


@pytest.fixture(scope="module", params=CASE_IDS)
def case(request):
    """(name, our schedule, optax's values at STEPS, optax's values along the counter)."""
    name = request.param
    ours, theirs = PARITY_CASES[name](gxs), PARITY_CASES[name](optax.schedules)
    counter_steps = range(COUNTER_START, COUNTER_START + len(STEPS))
    return name, ours, _optax_values(theirs, STEPS), _optax_values(theirs, counter_steps)


def _at(expected, steps):
    return expected[[STEPS.index(k) for k in steps]]


# --------------------------------------------------------------------------- parity


def test_parity_with_optax_eager_python_and_numpy_ints(case):
    """Eager calls; more step kinds in test_output_is_strong_float32_scalar_for_every_step_kind."""
    name, sched, expected, _ = case
    _assert_close([sched(k) for k in EAGER_STEPS], _at(expected, EAGER_STEPS), f"{name}, Python ints")
    few = [0, 10, 105, 2**24 + 1, INT32_MAX]
    _assert_close([sched(np.int64(k)) for k in few], _at(expected, few), f"{name}, np.int64")


def test_parity_with_optax_under_jit_int32_tracing_once(case):
    """jit with an int32 step: optax's values, float32 out, one trace for every step."""
    name, sched, expected, _ = case
    traces = []

    def fn(step):
        traces.append(step)
        return sched(step)

    jitted = jax.jit(fn)
    outs = [jitted(jnp.int32(k)) for k in STEPS]
    _assert_close(outs, expected, f"{name}, jit int32")
    assert all(o.dtype == jnp.float32 and o.shape == () and not o.weak_type for o in outs), name
    assert len(traces) == 1, f"{name}: traced {len(traces)} times for int32 steps"


def test_parity_with_optax_inside_scan(case):
    """lax.scan over int32 steps, with an int32 counter carried alongside (the training loop)."""
    name, sched, expected, along_counter = case

    def body(count, k):
        return count + jnp.int32(1), (sched(k), sched(count))

    @jax.jit
    def run(steps):
        return lax.scan(body, jnp.int32(COUNTER_START), steps)[1]

    scanned, counted = run(jnp.asarray(STEPS, dtype=jnp.int32))
    _assert_close(scanned, expected, f"{name}, lax.scan over int32 steps")
    _assert_close(counted, along_counter, f"{name}, int32 counter carried through lax.scan")
    assert scanned.dtype == counted.dtype == jnp.float32


def test_steps_beyond_int32_hold_the_final_value(case):
    """Python ints beyond int32 (which optax cannot take) give the value at int32's max."""
    name, sched, expected, _ = case
    at_max = expected[STEPS.index(INT32_MAX)]
    for k in (2**31, 2**40, np.int64(2**40)):
        _assert_close([sched(k)], [at_max], f"{name}, step {k}")


# ------------------------------------------------------------------ dtypes and tracing

STEP_KINDS = {
    "python_int": lambda k: k,
    "np_int32": np.int32,
    "np_int64": np.int64,
    "np_uint8": np.uint8,
    "jnp_int32": lambda k: jnp.asarray(k, jnp.int32),
    "jnp_uint32": lambda k: jnp.asarray(k, jnp.uint32),
    "python_float": float,
    "np_float64": np.float64,
    "jnp_float32": lambda k: jnp.asarray(k, jnp.float32),
}


def test_output_is_strong_float32_scalar_for_every_step_kind(case):
    name, sched, expected, _ = case
    for i, (kind, make) in enumerate(STEP_KINDS.items()):
        k = (0, 9, 105)[i % 3]
        out = sched(make(k))
        assert isinstance(out, jax.Array), (name, kind, type(out))
        assert out.dtype == jnp.float32 and out.shape == (), (name, kind, out.dtype, out.shape)
        assert not out.weak_type, (name, kind)
        _assert_close([out], _at(expected, [k]), f"{name}, {kind} step {k}")


def test_hyperparameters_may_be_traced_or_numpy_values():
    """Values (not step counts) may be traced or NumPy scalars, under strict promotion."""

    def build(m, init, end, rate):
        return [
            m.linear_schedule(init, end, 10),
            m.polynomial_schedule(init, end, rate, 10),
            m.exponential_decay(init, 10, rate, end_value=end),
            m.cosine_decay_schedule(init, 10, alpha=rate / 4),
            m.warmup_cosine_decay_schedule(end, init, 5, 20, end_value=end),
            m.piecewise_constant_schedule(init, {5: rate}),
        ]

    def ours(init, end, rate):
        return build(gxs, init, end, rate) + [gxs.inverse_time_decay(init, rate, rate)]

    init, end, rate = 1.5, 0.25, 0.75  # exact in float16 too
    reference = build(optax.schedules, init, end, rate)
    from_numpy = ours(np.float64(init), np.float16(end), np.float32(rate))
    traced = jax.jit(lambda i, e, r, k: [s(k) for s in ours(i, e, r)])
    for k in (0, 3, 5, 12, 30):
        want = [_optax(s, k) for s in reference] + [init / (1 + rate * k) ** rate]
        _assert_close([s(k) for s in from_numpy], want, f"NumPy values, step {k}")
        got = traced(jnp.float32(init), jnp.float32(end), jnp.float32(rate), jnp.int32(k))
        _assert_close(got, want, f"traced values, step {k}")
        assert all(g.dtype == jnp.float32 for g in got)


# --------------------------------------------------------------------- textbook formulas


@given(
    e0=f32s(-10, 10),
    e_tau=f32s(-10, 10),
    tau=st.integers(1, 10_000),
    begin=st.integers(0, 1_000),
    k=st.integers(0, 20_000),
)
def test_linear_schedule_is_the_book_formula(e0, e_tau, tau, begin, k):
    """eps_k = (1 - a) eps_0 + a eps_tau, a = min(1, k / tau), counted from `begin` (Goodfellow et al. 8.3.1)."""
    sched = gxs.linear_schedule(e0, e_tau, tau, transition_begin=begin)
    a = min(1.0, max(k - begin, 0) / tau)
    want = (1 - a) * np.float64(np.float32(e0)) + a * np.float64(np.float32(e_tau))
    scale = max(abs(e0), abs(e_tau), 1e-30)
    assert abs(float(sched(k)) - want) <= 4e-7 * scale
    # Both ends are exact, to the bit.
    assert sched(begin) == np.float32(e0) and sched(0) == np.float32(e0)
    assert sched(begin + tau) == np.float32(e_tau) and sched(begin + tau + k) == np.float32(e_tau)


@pytest.mark.parametrize("power", [1, 2])
@given(e0=f32s(1e-3, 10), k=st.integers(0, 10**6))
def test_inverse_time_decay_power_1_and_2_are_the_linear_and_quadratic_inverse_decays(e0, k, power):
    """eta_0 / (k + 1) (power 1) and eta_0 / (k + 1)^2 (power 2)."""
    sched = gxs.inverse_time_decay(e0, decay_rate=1.0, power=power)
    want = np.float64(np.float32(e0)) / (k + 1) ** power
    np.testing.assert_allclose(float(sched(k)), want, rtol=1e-6)
    jitted = _JITTED_INVERSE_TIME[power](jnp.float32(e0), jnp.int32(k))
    np.testing.assert_allclose(float(jitted), want, rtol=1e-6)


_JITTED_INVERSE_TIME = {
    p: jax.jit(lambda e0, k, p=p: gxs.inverse_time_decay(e0, decay_rate=1.0, power=p)(k))
    for p in (1, 2)
}


@given(
    e0=f32s(1e-3, 10),
    rate=f32s(0, 5),
    power=f32s(0, 4),
    k=st.integers(0, 10**5),
)
def test_inverse_time_decay_general_formula(e0, rate, power, k):
    sched = gxs.inverse_time_decay(e0, decay_rate=rate, power=power)
    want = float(np.float32(e0)) / (1 + float(np.float32(rate)) * k) ** float(np.float32(power))
    np.testing.assert_allclose(float(sched(k)), want, rtol=5e-6, atol=1e-37)


@given(e0=f32s(1e-3, 10), rate=f32s(0.05, 0.999), k=st.integers(0, 100))
def test_exponential_decay_is_the_continuous_formula(e0, rate, k):
    """eta_k = eta_0 exp(-beta k) is exponential_decay with decay_rate = exp(-beta), T = 1."""
    beta = -math.log(rate)  # `rate` is exactly a float32, so exp(-beta) is exactly it
    sched = gxs.exponential_decay(e0, transition_steps=1, decay_rate=math.exp(-beta))
    want = float(np.float32(e0)) * math.exp(-beta * k)
    np.testing.assert_allclose(float(sched(k)), want, rtol=1e-5, atol=1e-37)


def test_inverse_linear_decay_is_not_linear_schedule():
    """The Note in linear_schedule: the decay sometimes called "linear decay" is eta0/(k+1)."""
    inverse = gxs.inverse_time_decay(1.0)
    linear = gxs.linear_schedule(1.0, 0.0, transition_steps=4)
    assert float(inverse(2)) == pytest.approx(1 / 3)
    assert float(linear(2)) == pytest.approx(0.5)


# -------------------------------------------------- hypothesis parity over parameters

_values = f32s(-5, 5)
_counts = st.integers(0, 300)
_steps = st.integers(0, 2_000)


@given(init=_values, end=_values, power=f32s(0.1, 4), t=_counts, b=_counts, k=_steps)
def test_polynomial_and_linear_match_formula_and_optax_for_random_parameters(init, end, power, t, b, k):
    """Tight against the float64 formula; against optax within optax's own rounding.

    optax computes ``1 - t / T``, whose absolute rounding error (1 ulp of 1) becomes a
    relative error of up to ``p * T * 6e-8`` in ``frac ** p`` near the end.
    """
    scale = max(1.0, abs(init), abs(end))
    frac = 1.0 if t == 0 else 1 - min(max(k - b, 0), t) / t
    for name, args, p in [
        ("polynomial_schedule", (init, end, power, t, b), float(np.float32(power))),
        ("linear_schedule", (init, end, t, b), 1.0),
    ]:
        ours = float(getattr(gxs, name)(*args)(k))
        formula = init if t == 0 else (init - end) * frac**p + end
        assert abs(ours - formula) <= 1e-6 * scale, (name, args, k, ours, formula)
        theirs = _optax(getattr(optax.schedules, name)(*args), k)
        assert abs(ours - theirs) <= 2e-5 * scale, (name, args, k, ours, theirs)


@given(
    init=_values,
    t=_counts,
    rate=f32s(0.01, 3),
    b=_counts,
    staircase=st.booleans(),
    end=st.none() | f32s(0.001, 2),
    k=_steps,
)
def test_exponential_decay_matches_optax_for_random_parameters(init, t, rate, b, staircase, end, k):
    args = (init, t, rate, b, staircase, end)
    ours, theirs = gxs.exponential_decay(*args), optax.schedules.exponential_decay(*args)
    _assert_close([ours(k)], [_optax(theirs, k)], f"exponential_decay{args} at {k}")


@given(
    init=_values,
    # |end / peak| stays moderate: optax's P((1 - E/P) c + E/P) is ill conditioned otherwise.
    peak=st.just(0.0) | f32s(0.1, 5) | f32s(-5, -0.1),
    end=_values,
    warmup=st.integers(0, 100),
    extra=st.integers(1, 300),
    exponent=f32s(0.25, 4),
    k=_steps,
)
def test_warmup_cosine_matches_optax_for_random_parameters(init, peak, end, warmup, extra, exponent, k):
    args = (init, peak, warmup, warmup + extra, end, exponent)
    ours = gxs.warmup_cosine_decay_schedule(*args)
    theirs = optax.schedules.warmup_cosine_decay_schedule(*args)
    want = _optax(theirs, k)
    # optax divides end by peak and multiplies back: allow for that rounding.
    scale = max(1.0, abs(init), abs(peak), abs(end)) * max(1.0, abs(end / peak) if peak else 1.0)
    assert abs(float(ours(k)) - want) <= 2e-6 * scale, (args, k, float(ours(k)), want)


# ------------------------------------------------------------------ a law that fails


def test_parity_check_catches_an_off_by_one_schedule():
    """The comparison used above is strict enough to see a schedule one step late."""
    good = gxs.linear_schedule(1.0, 0.01, 100)
    late = lambda k: good(jnp.maximum(jnp.asarray(k, jnp.int32) - 1, 0))  # noqa: E731
    expected = _optax_values(optax.linear_schedule(1.0, 0.01, 100), STEPS)
    with pytest.raises(AssertionError):
        _assert_close([late(k) for k in STEPS], expected, "late")


# ------------------------------------------------------------------------ validation


def _const(v):
    return gxs.constant_schedule(v)


INVALID = [
    # (builder, argument named in the message, offending value shown in the message)
    (lambda: gxs.polynomial_schedule(1.0, 0.0, 1, transition_steps=-1), "transition_steps", "-1"),
    (lambda: gxs.polynomial_schedule(1.0, 0.0, 1, 10, transition_begin=-3), "transition_begin", "-3"),
    (lambda: gxs.polynomial_schedule(1.0, 0.0, power=0, transition_steps=10), "power", "0"),
    (lambda: gxs.polynomial_schedule(1.0, 0.0, power=-2.0, transition_steps=10), "power", "-2.0"),
    (lambda: gxs.linear_schedule(1.0, 0.0, transition_steps=-5), "transition_steps", "-5"),
    (lambda: gxs.linear_schedule(1.0, 0.0, 10, transition_begin=-1), "transition_begin", "-1"),
    (lambda: gxs.linear_schedule(1.0, 0.0, float("nan")), "transition_steps", "nan"),
    (lambda: gxs.exponential_decay(1.0, 10, decay_rate=0.0), "decay_rate", "0.0"),
    (lambda: gxs.exponential_decay(1.0, 10, decay_rate=-0.5), "decay_rate", "-0.5"),
    (lambda: gxs.exponential_decay(1.0, 10, decay_rate=float("nan")), "decay_rate", "nan"),
    (lambda: gxs.exponential_decay(1.0, -10, 0.5), "transition_steps", "-10"),
    (lambda: gxs.exponential_decay(1.0, 10, 0.5, transition_begin=-2), "transition_begin", "-2"),
    (lambda: gxs.inverse_time_decay(1.0, decay_rate=-1.0), "decay_rate", "-1.0"),
    (lambda: gxs.inverse_time_decay(1.0, power=-1.0), "power", "-1.0"),
    (lambda: gxs.cosine_decay_schedule(1.0, decay_steps=0), "decay_steps", "0"),
    (lambda: gxs.cosine_decay_schedule(1.0, decay_steps=-3), "decay_steps", "-3"),
    (lambda: gxs.cosine_decay_schedule(1.0, 10, alpha=-0.1), "alpha", "-0.1"),
    (lambda: gxs.cosine_decay_schedule(1.0, 10, alpha=1.5), "alpha", "1.5"),
    (lambda: gxs.cosine_decay_schedule(1.0, 10, exponent=0.0), "exponent", "0.0"),
    (lambda: gxs.warmup_cosine_decay_schedule(0.0, 1.0, -1, 10), "warmup_steps", "-1"),
    (lambda: gxs.warmup_cosine_decay_schedule(0.0, 1.0, 10, 10), "decay_steps", "10"),
    (lambda: gxs.warmup_cosine_decay_schedule(0.0, 1.0, 20, 10), "warmup_steps", "20"),
    (lambda: gxs.warmup_cosine_decay_schedule(0.0, 1.0, 0, 0), "decay_steps", "0"),
    (lambda: gxs.warmup_cosine_decay_schedule(0.0, 1.0, 5, 10, exponent=-1.0), "exponent", "-1.0"),
    (lambda: gxs.warmup_exponential_decay_schedule(0.0, 1.0, -1, 10, 0.5), "warmup_steps", "-1"),
    (lambda: gxs.warmup_exponential_decay_schedule(0.0, 1.0, 5, 10, 0.0), "decay_rate", "0.0"),
    (lambda: gxs.piecewise_constant_schedule(1.0, {10: -0.1}), "boundaries_and_scales", "-0.1"),
    (lambda: gxs.piecewise_constant_schedule(1.0, {-5: 0.5}), "boundaries_and_scales", "-5"),
    (lambda: gxs.join_schedules([], []), "schedules", "[]"),
    (lambda: gxs.join_schedules([_const(1), _const(2)], []), "boundaries", "len(boundaries)=0"),
    (lambda: gxs.join_schedules([_const(1), _const(2)], [1, 2, 3]), "boundaries", "len(boundaries)=3"),
    (lambda: gxs.join_schedules([_const(1)] * 3, [20, 10]), "boundaries", "boundaries[1]=10"),
    (lambda: gxs.join_schedules([_const(1)] * 2, [-1]), "boundaries[0]", "-1"),
    (lambda: gxs.sgdr_schedule([]), "cosine_kwargs", "[]"),
    (lambda: gxs.sgdr_schedule([dict(init_value=0.0, peak_value=1.0, warmup_steps=0)]), "cosine_kwargs", "decay_steps"),
]


@pytest.mark.parametrize("build, name, value", INVALID, ids=[f"{n}={v}" for _, n, v in INVALID])
def test_invalid_arguments_raise_value_error_naming_them(build, name, value):
    with pytest.raises(ValueError) as info:
        build()
    message = str(info.value)
    assert f"`{name}" in message or f"{name}" in message, message
    assert value in message, message


NOT_CONCRETE = [
    (lambda: gxs.join_schedules([_const(1), 0.5], [3]), TypeError, "schedules[1]"),
    (lambda: gxs.linear_schedule(1.0, 0.0, "10"), TypeError, "transition_steps"),
    (lambda: gxs.cosine_decay_schedule(1.0, np.array([10, 20])), TypeError, "decay_steps"),
    (lambda: gxs.piecewise_constant_schedule(1.0, {"a": 0.5}), TypeError, "boundaries_and_scales"),
]


@pytest.mark.parametrize("build, error, name", NOT_CONCRETE, ids=[n for _, _, n in NOT_CONCRETE])
def test_non_numeric_counts_and_non_callables_raise_type_error(build, error, name):
    with pytest.raises(error, match=name.replace("[", r"\[").replace("]", r"\]")):
        build()


def test_traced_step_counts_raise_type_error_naming_them():
    with pytest.raises(TypeError, match="transition_steps"):
        jax.jit(lambda t: gxs.linear_schedule(1.0, 0.0, t)(3))(jnp.int32(10))


def test_boolean_steps_are_rejected():
    sched = gxs.linear_schedule(1.0, 0.0, 10)
    with pytest.raises(TypeError, match="step"):
        sched(True)
    with pytest.raises(TypeError, match="step"):
        sched(jnp.asarray(True))


ACCEPTED = {
    # Degenerate but meaningful values optax accepts; they must keep working.
    "zero transition_steps": lambda: gxs.linear_schedule(1.0, 0.0, 0),
    "zero warmup": lambda: gxs.warmup_cosine_decay_schedule(0.0, 1.0, 0, 1),
    "growth rate": lambda: gxs.exponential_decay(1.0, 10, 1.5),
    "rate one": lambda: gxs.exponential_decay(1.0, 10, 1.0, end_value=0.5),
    "alpha bounds": lambda: gxs.cosine_decay_schedule(1.0, 1, alpha=1.0),
    "zero decay rate": lambda: gxs.inverse_time_decay(1.0, decay_rate=0.0, power=0.0),
    "zero scale": lambda: gxs.piecewise_constant_schedule(1.0, {0: 0.0}),
    "equal boundaries": lambda: gxs.join_schedules([_const(1)] * 3, [0, 0]),
    "float counts": lambda: gxs.linear_schedule(1.0, 0.0, 10.0, transition_begin=np.int64(2)),
    "fractional counts": lambda: gxs.polynomial_schedule(1.0, 0.0, 1, 2.5),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_degenerate_but_meaningful_arguments_are_accepted(name):
    sched = ACCEPTED[name]()
    jitted = jax.jit(sched)
    for k in (0, 1, 5, 100):
        assert np.isfinite(float(sched(k)))
        assert np.isfinite(float(jitted(jnp.int32(k))))


def test_fractional_counts_match_optax():
    for args in [(1.0, 0.0, 1, 2.5), (1.0, 0.0, 2, 10.0, 2.5)]:
        ours, theirs = gxs.polynomial_schedule(*args), optax.polynomial_schedule(*args)
        for k in (0, 1, 2, 3, 5, 20):
            _assert_close([ours(k), jax.jit(ours)(jnp.int32(k))], [_optax(theirs, k)] * 2, f"{args} {k}")


def test_public_names():
    # The schedules of this file; tests/test_schedules_more.py checks the rest of optax.schedules.
    assert set(gxs.__all__) >= {
        "constant_schedule",
        "cosine_decay_schedule",
        "exponential_decay",
        "inverse_time_decay",
        "join_schedules",
        "linear_schedule",
        "piecewise_constant_schedule",
        "polynomial_schedule",
        "sgdr_schedule",
        "warmup_cosine_decay_schedule",
        "warmup_exponential_decay_schedule",
    }
    for name in gxs.__all__:
        if __import__("inspect").isfunction(getattr(optax.schedules, name, None)):
            ours = list(__import__("inspect").signature(getattr(gxs, name)).parameters.values())
            theirs = list(__import__("inspect").signature(getattr(optax.schedules, name)).parameters.values())
            assert [(p.name, p.default, p.kind) for p in ours] == [
                (p.name, p.default, p.kind) for p in theirs
            ], name
