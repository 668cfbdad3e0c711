"""Adam's variants (Adamax, AMSGrad, NAdam, RAdam, Yogi, Adan): what the registry cannot say.

The registry-driven tests check every configuration against its NumPy reference and
optax. Here: each rule's subtle point, broken on purpose in a hand-written copy (a
mutant), must be caught by `check_against_reference`, while the same copy without
the bug passes; optax's signatures and state layouts; and the two places where
gradxform departs from optax 0.2.8 (Adan's gradient-difference coefficient, RAdam's
float32 rho_t).

=========================  ==========================================================
mutant                     what is wrong
=========================  ==========================================================
adamax no_bias_correction  Adamax divides m_t, not m_t / (1 - b1^t), by the max norm
amsgrad no_max             AMSGrad without the running max: Adam
amsgrad raw_max            the max over the raw nu_t, corrected afterwards (PyTorch's;
                           matches reference.scale_by_amsgrad(max_of="raw"))
nadam momentum_bc          NAdam's momentum term divided by 1 - b1^t, not 1 - b1^(t+1)
radam no_threshold         RAdam rectifies every step, also while rho_t < threshold
radam no_factor            RAdam switches to Adam's step without the factor r_t
yogi adam_nu               Yogi with Adam's multiplicative second-moment update
adan optax_coefficient     Adan with optax 0.2.8's (1 - b2) where the paper has b2
adan no_first_guard        Adan's first difference g_1 - 0 instead of 0
=========================  ==========================================================
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from _mutants import bias_correction as _bc
from _mutants import caught as _caught
from _mutants import elementwise as _elementwise

import gradxform as gx
from gradxform.testing import check_against_reference, reference

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion


# --------------------------------------------------------------------------- a mutant's frame


# --------------------------------------------------------------------------- the mutants


def _adamax(mutation=None, b1=0.9, b2=0.999, eps=1e-8):
    def step(g, t, m, u):
        m = b1 * m + (1 - b1) * g
        u = jnp.maximum(b2 * u, jnp.abs(g) + eps)
        m_hat = m if mutation == "no_bias_correction" else m / _bc(b1, t)
        return m_hat / u, m, u

    return _elementwise(step, 2)


def _amsgrad(mutation=None, b1=0.9, b2=0.999, eps=1e-8):
    def step(g, t, m, v, v_max):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        if mutation == "raw_max":
            v_max = jnp.maximum(v_max, v)
            denom = jnp.sqrt(v_max / _bc(b2, t)) + eps
        else:
            v_hat = v / _bc(b2, t)
            v_max = v_hat if mutation == "no_max" else jnp.maximum(v_max, v_hat)
            denom = jnp.sqrt(v_max) + eps
        return m / _bc(b1, t) / denom, m, v, v_max

    return _elementwise(step, 3)


def _nadam(mutation=None, b1=0.9, b2=0.999, eps=1e-8):
    def step(g, t, m, v):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        momentum_bc = _bc(b1, t) if mutation == "momentum_bc" else _bc(b1, t + 1)
        m_bar = b1 * m / momentum_bc + (1 - b1) * g / _bc(b1, t)
        return m_bar / (jnp.sqrt(v / _bc(b2, t)) + eps), m, v

    return _elementwise(step, 2)


def _radam(mutation=None, b1=0.9, b2=0.9, eps=1e-8, threshold=5.0):
    rho_inf = 2 / (1 - b2) - 1  # b2 = 0.9: rho_t has no cancellation worth the name in float32

    def step(g, t, m, v):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat, v_hat = m / _bc(b1, t), v / _bc(b2, t)
        rho = rho_inf - 2 * t * (1 - _bc(b2, t)) / _bc(b2, t)
        r2 = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
        r = 1.0 if mutation == "no_factor" else jnp.sqrt(jnp.abs(r2))
        adaptive = r * m_hat / (jnp.sqrt(v_hat) + eps)
        u = adaptive if mutation == "no_threshold" else jnp.where(rho >= threshold, adaptive, m_hat)
        return u, m, v

    return _elementwise(step, 2)


def _yogi(mutation=None, b1=0.9, b2=0.999, eps=1e-3, init=1e-6):
    def step(g, t, m, v):
        m = b1 * m + (1 - b1) * g
        if mutation == "adam_nu":
            v = b2 * v + (1 - b2) * g * g
        else:
            v = v - (1 - b2) * jnp.sign(v - g * g) * g * g
        return m / _bc(b1, t) / (jnp.sqrt(v / _bc(b2, t)) + eps), m, v

    return _elementwise(step, 2, init_value=init)


def _adan(mutation=None, b1=0.98, b2=0.92, b3=0.99, eps=1e-8):
    coefficient = 1 - b2 if mutation == "optax_coefficient" else b2

    def step(g, t, m, v, n, prev):
        diff = g - prev if mutation == "no_first_guard" else jnp.where(t == 1, 0.0, g - prev)
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * diff
        n = b3 * n + (1 - b3) * (g + coefficient * diff) ** 2
        direction = m / _bc(b1, t) + coefficient * v / _bc(b2, t)
        return direction / (jnp.sqrt(n / _bc(b3, t)) + eps), m, v, n, g

    return _elementwise(step, 4)


MUTANTS = [
    ("adamax", _adamax, "no_bias_correction", lambda: reference.scale_by_adamax()),
    ("amsgrad", _amsgrad, "no_max", lambda: reference.scale_by_amsgrad()),
    ("amsgrad", _amsgrad, "raw_max", lambda: reference.scale_by_amsgrad()),
    ("nadam", _nadam, "momentum_bc", lambda: reference.nadam(-1.0)),
    ("radam", _radam, "no_threshold", lambda: reference.scale_by_radam(b2=0.9)),
    ("radam", _radam, "no_factor", lambda: reference.scale_by_radam(b2=0.9)),
    ("yogi", _yogi, "adam_nu", lambda: reference.scale_by_yogi()),
    ("adan", _adan, "optax_coefficient", lambda: reference.scale_by_adan()),
    ("adan", _adan, "no_first_guard", lambda: reference.scale_by_adan()),
]


@pytest.mark.parametrize("family,make,mutation,ref", MUTANTS, ids=[f"{m[0]}-{m[2]}" for m in MUTANTS])
def test_reference_check_catches_the_mutant(family, make, mutation, ref):
    _caught(make(mutation), ref())


CLEAN = list({family: (family, make, ref) for family, make, _, ref in MUTANTS}.values())


@pytest.mark.parametrize("family,make,ref", CLEAN, ids=[c[0] for c in CLEAN])
def test_the_same_copy_without_the_bug_passes(family, make, ref):
    check_against_reference(make(None), ref(), steps=8)


def test_amsgrad_raw_max_is_the_reference_pytorch_variant():
    check_against_reference(_amsgrad("raw_max"), reference.scale_by_amsgrad(max_of="raw"), steps=8)


def test_library_rules_pass_where_the_mutants_fail():
    """The library's own rules against the same references (the registry runs 6 steps; here 10)."""
    for tx, ref in [
        (gx.scale_by_adamax(), reference.scale_by_adamax()),
        (gx.scale_by_amsgrad(), reference.scale_by_amsgrad()),
        (gx.nadam(1.0), reference.nadam(1.0)),
        (gx.scale_by_radam(), reference.scale_by_radam()),
        (gx.scale_by_yogi(), reference.scale_by_yogi()),
        (gx.scale_by_adan(), reference.scale_by_adan()),
    ]:
        check_against_reference(tx, ref, steps=10)


# --------------------------------------------------------------------------- optax's surface

NAMES = [
    "scale_by_adamax", "adamax", "adamaxw", "scale_by_amsgrad", "amsgrad", "nadam", "nadamw",
    "scale_by_radam", "radam", "scale_by_yogi", "yogi", "scale_by_adan", "adan",
]


@pytest.mark.parametrize("name", NAMES)
def test_signature_is_optax_s(name):
    ours = list(inspect.signature(getattr(gx, name)).parameters.values())
    theirs = list(inspect.signature(getattr(optax, name)).parameters.values())
    assert [(p.name, p.kind, p.default) for p in ours[: len(theirs)]] == [
        (p.name, p.kind, p.default) for p in theirs
    ]
    # the only addition: Adam's keyword-only nu_dtype on the NAdam aliases
    assert [p.name for p in ours[len(theirs):]] == (["nu_dtype"] if name in ("nadam", "nadamw") else [])


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda: gx.scale_by_adamax(), lambda: optax.scale_by_adamax()),
        (lambda: gx.scale_by_amsgrad(), lambda: optax.scale_by_amsgrad()),
        (lambda: gx.scale_by_radam(), lambda: optax.scale_by_radam()),
        (lambda: gx.scale_by_yogi(), lambda: optax.scale_by_yogi()),
        (lambda: gx.scale_by_adan(), lambda: optax.scale_by_adan()),
    ],
    ids=["adamax", "amsgrad", "radam", "yogi", "adan"],
)
def test_state_layout_is_optax_s(ours, theirs):
    """Same field names and order, and the leaves flatten in the same order, shapes and dtypes."""
    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    s_ours, s_theirs = ours().init(params), theirs().init(params)
    assert type(s_ours).__name__ == type(s_theirs).__name__
    assert type(s_ours)._fields == type(s_theirs)._fields
    describe = lambda s: [(np.shape(x), jnp.asarray(x).dtype) for x in jax.tree_util.tree_leaves(s)]
    assert describe(s_ours) == describe(s_theirs)
    grads = {"w": jnp.full((2, 3), 0.5), "b": jnp.full(3, -1.0)}
    _, s_ours = ours().update(grads, s_ours)
    with loose:
        _, s_theirs = theirs().update(grads, s_theirs)
    for a, b in zip(jax.tree_util.tree_leaves(s_ours), jax.tree_util.tree_leaves(s_theirs)):
        # 5e-5: optax's float32 1 - b2 is 1.3e-5 off at b2 = 0.999 (AMSGrad's nu_max holds nu / (1 - b2))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=5e-5)


def test_adan_state_holds_the_previous_gradient_and_counts_last():
    g = jnp.array([2.0, -1.0])
    tx = gx.scale_by_adan()
    _, state = tx.update(g, tx.init(jnp.zeros(2)))
    assert isinstance(state, gx.ScaleByAdanState)
    np.testing.assert_array_equal(state.g, g)
    assert state.t.dtype == jnp.int32 and int(state.t) == 1
    assert jax.tree_util.tree_leaves(state)[-1] is state.t  # the counter is the last leaf, as in optax


def test_nadam_is_adam_with_nesterov():
    params = {"w": jnp.linspace(-1.0, 1.0, 4)}
    for ours, same in [
        (gx.nadam(0.1), gx.adam(0.1, nesterov=True)),
        (gx.nadamw(0.1, weight_decay=0.3), gx.adamw(0.1, weight_decay=0.3, nesterov=True)),
    ]:
        s1, s2 = ours.init(params), same.init(params)
        for k in range(3):
            g = {"w": jnp.cos(jnp.arange(4.0) + k)}
            u1, s1 = ours.update(g, s1, params)
            u2, s2 = same.update(g, s2, params)
            np.testing.assert_array_equal(u1["w"], u2["w"])


# --------------------------------------------------------------------------- departures from optax 0.2.8


def test_adan_scales_the_gradient_difference_by_b2_not_optax_s_one_minus_b2():
    """optax 0.2.8's scale_by_adan uses (1 - b2) where the paper's (1 - beta_2) is b2 here."""
    g1, g2 = jnp.array([2.0]), jnp.array([1.0])
    ours, theirs = gx.scale_by_adan(), optax.scale_by_adan()
    _, s = ours.update(g1, ours.init(g1))
    u_ours, _ = ours.update(g2, s)
    with loose:
        _, s = theirs.update(g1, theirs.init(g1))
        u_theirs, _ = theirs.update(g2, s)
    # by hand: m = 0.0592, v = -0.08, n = 0.99 * 0.04 + 0.01 * (1 - 0.92) ** 2
    b1, b2, b3 = 0.98, 0.92, 0.99
    m, v, n = 0.98 * 0.04 + 0.02, -0.08, 0.99 * 0.04 + 0.01 * (1 + b2 * -1.0) ** 2
    expected = (m / (1 - b1**2) + b2 * v / (1 - b2**2)) / math.sqrt(n / (1 - b3**2))
    np.testing.assert_allclose(float(u_ours[0]), expected, rtol=1e-5)
    assert abs(float(u_theirs[0]) - expected) > 0.1  # optax 0.2.8: 0.9351


def test_radam_rho_is_accurate_in_float32_where_optax_s_is_not():
    """Constant gradients make every step's update r_t (rectified) or 1: compare r_t in float64."""
    b2 = 0.999
    rho_inf = 2 / (1 - b2) - 1
    ours, theirs = gx.scale_by_radam(), optax.scale_by_radam()
    g = jnp.ones(1)
    s_ours, s_theirs = ours.init(g), theirs.init(g)
    worst_ours = worst_theirs = 0.0
    for t in range(1, 13):
        u_ours, s_ours = ours.update(g, s_ours)
        with loose:
            u_theirs, s_theirs = theirs.update(g, s_theirs)
        rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
        r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)) if rho >= 5 else 1.0
        worst_ours = max(worst_ours, abs(float(u_ours[0]) / r - 1))
        worst_theirs = max(worst_theirs, abs(float(u_theirs[0]) / r - 1))
    assert worst_ours < 2e-6, worst_ours
    assert worst_theirs > 1e-3, worst_theirs  # optax 0.2.8: about 1% at t = 6


def test_radam_threshold_below_four_is_rejected():
    with pytest.raises(ValueError, match="`threshold`"):
        gx.scale_by_radam(threshold=3.0)
    gx.radam(1e-3, threshold=4.0)


@pytest.mark.parametrize("b2", [0.9, 0.999])
def test_radam_with_injected_b2_matches_the_python_number(b2):
    """An array b2 takes the series path of rho_t's constant: as accurate as the double-precision one."""
    params = {"w": jnp.linspace(-1.0, 1.0, 5)}
    injected, plain = gx.inject_hyperparams(gx.radam)(learning_rate=0.1, b2=b2), gx.radam(0.1, b2=b2)
    s1, s2 = injected.init(params), plain.init(params)
    for k in range(12):
        g = {"w": jnp.sin(jnp.arange(5.0) * (k + 1))}
        u1, s1 = jax.jit(injected.update)(g, s1, params)
        u2, s2 = plain.update(g, s2, params)
        # b2 as a float32 array is rounded (0.999 -> 0.99900001): rho_t moves by ~1e-5 relatively
        np.testing.assert_allclose(u1["w"], u2["w"], rtol=1e-5, atol=1e-7, err_msg=f"step {k + 1}")
