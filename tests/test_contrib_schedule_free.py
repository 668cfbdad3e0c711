"""gx.contrib's Schedule-Free (Defazio et al., 2024) and MADGRAD (Defazio & Jelassi, 2021).

The registry (gradxform/testing/registry/_contrib_schedule_free.py) runs the laws, the dtype
policy and 6-step parity. Here: 25-step parity with optax and with the paper's NumPy
algorithms, the differences from optax 0.2.8 (with their evidence), mutants (broken copies of
each rule's subtle point that the reference check must catch), edge cases and validation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing import reference as ref

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion
STEPS = 25


def _params(dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=(4,)), dtype),
            "s": jnp.asarray(rng.normal(), dtype)}


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def _run(tx, steps=STEPS, jit=True, params=None, optax_side=False):
    """`steps` updates of `tx` on its own params; returns the list of updates, the final state and params."""
    p = _params() if params is None else params
    state, out = tx.init(p), []
    update = jax.jit(tx.update) if jit else tx.update
    for step in range(steps):
        g = _grads(p, seed=step + 1)
        if step == 2:  # exact zeros in one step
            g["w"] = g["w"].at[0].set(0.0)
        if optax_side:
            with loose:
                u, state = update(g, state, p)
        else:
            u, state = update(g, state, p)
        out.append(u)
        p = jax.tree_util.tree_map(lambda a, b: (a + b).astype(a.dtype), p, u)
    return out, state, p


def _assert_close(ours, theirs, rtol, atol=0.0):
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol,
                                       err_msg=f"step {step + 1} {jax.tree_util.keystr(path)}")


# ----------------------------------------------------------------------------- optax parity


def _decaying(k):
    return 0.1 / (1.0 + jnp.asarray(k, jnp.float32))


def _slowly_decaying(t):
    return 0.2 / (1.0 + 0.1 * jnp.asarray(t, jnp.float32))


# optax forms both updates as a difference of params (x_{k+1} - x_k, y_{t+1} - y_t), which loses
# up to ulp(params) per step and per difference; ours forms them from differences
# (c (z - x), (1 - b) dz + c b (z - x)), 4-10x closer to the float64 algorithm (tested below).
# The atol is three ulps of the largest param (2.3 here: ulp 2.4e-7): optax's two differences
# and our own rounding. rtol 1e-5 alone would test optax's rounding, not the rule (an XLA build
# that contracts differently moved one element by 2.25 ulps).
OPTAX_ATOL = 3 * float(np.spacing(np.float32(max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(_params())))))

PAIRS = {
    "madgrad": (lambda m: m.contrib.madgrad(0.05)),
    "madgrad_decay": (lambda m: m.contrib.madgrad(0.1, momentum=0.5, weight_decay=0.1, eps=1e-8)),
    "madgrad_schedule": (lambda m: m.contrib.madgrad(_decaying, momentum=0.0)),
    "scale_by_madgrad": (lambda m: m.contrib.scale_by_madgrad(0.1, momentum=0.8)),
    "schedule_free_sgd": (lambda m: m.contrib.schedule_free_sgd(0.1, b1=0.8, weight_decay=0.01)),
    "schedule_free_adamw": (lambda m: m.contrib.schedule_free_adamw(0.05, b1=0.9, weight_decay=0.1)),
    "schedule_free_adam_base": (
        lambda m: m.contrib.schedule_free(m.adam(0.05, b1=0.0), 0.05, b1=0.9, weight_lr_power=3.0)),
    "schedule_free_schedule": (
        lambda m: m.contrib.schedule_free(m.sgd(0.2), _slowly_decaying, b1=0.7)),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_parity_with_optax_over_25_steps(name):
    make = PAIRS[name]
    ours, _, _ = _run(make(gx))
    with loose:
        theirs_tx = make(optax)
    theirs, _, _ = _run(theirs_tx, optax_side=True)
    _assert_close(ours, theirs, rtol=1e-5, atol=OPTAX_ATOL)


def test_state_layout_matches_optax_for_float32_params():
    params = _params()
    for name in ("madgrad", "schedule_free_adamw", "schedule_free_sgd"):
        with loose:
            theirs = jax.tree_util.tree_leaves(PAIRS[name](optax).init(params))
        ours = jax.tree_util.tree_leaves(PAIRS[name](gx).init(params))
        assert [(np.shape(x), jnp.asarray(x).dtype) for x in ours] == [
            (np.shape(x), jnp.asarray(x).dtype) for x in theirs], name
    assert gx.contrib.ScheduleFreeState._fields == optax.contrib.ScheduleFreeState._fields
    assert gx.contrib.MadgradState._fields == optax.contrib.MadgradState._fields


# ----------------------------------------------------------------------------- the papers' algorithms

REFERENCE_CASES = {
    "madgrad": (gx.contrib.madgrad, dict(learning_rate=0.05, momentum=0.9, weight_decay=0.0, eps=1e-6)),
    "madgrad_decay_no_eps": (gx.contrib.madgrad, dict(learning_rate=0.1, momentum=0.0, weight_decay=0.1, eps=0.0)),
    "scale_by_madgrad_schedule": (gx.contrib.scale_by_madgrad,
                                  dict(learning_rate=_decaying, momentum=0.5, eps=1e-3)),
    "schedule_free_sgd": (gx.contrib.schedule_free_sgd, dict(learning_rate=0.1, b1=0.8)),
    "schedule_free_sgd_warmup": (gx.contrib.schedule_free_sgd,
                                 dict(learning_rate=0.5, warmup_steps=5, b1=0.9, weight_decay=0.05,
                                      weight_lr_power=1.0)),
    "schedule_free_adamw_warmup": (gx.contrib.schedule_free_adamw,
                                   dict(learning_rate=0.05, warmup_steps=7, b1=0.95, b2=0.99, eps=1e-6,
                                        weight_decay=0.1)),
    "schedule_free_adamw_b1_one": (gx.contrib.schedule_free_adamw, dict(learning_rate=0.05, b1=1.0)),
}


@pytest.mark.parametrize("name", sorted(REFERENCE_CASES))
def test_matches_the_papers_algorithm_over_25_steps(name):
    factory, kwargs = REFERENCE_CASES[name]
    reference = getattr(ref, factory.__name__)(**kwargs)
    report = gx.testing.check_against_reference(factory(**kwargs), reference, steps=STEPS, rtol=1e-5, atol=1e-7)
    assert report["max_abs_error"] < 5e-7


def test_schedule_free_wraps_any_base_optimizer_like_the_paper():
    tx = gx.contrib.schedule_free(gx.sgd(0.2), _slowly_decaying, b1=0.7)
    reference = ref.schedule_free(ref.sgd(0.2), _slowly_decaying, b1=0.7)
    gx.testing.check_against_reference(tx, reference, steps=STEPS, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_closer_to_the_paper_than_optax():
    """The updates formed from differences (see OPTAX_ATOL) are measurably more accurate."""
    for make, reference in (
        (PAIRS["madgrad"], ref.madgrad(0.05)),
        (PAIRS["schedule_free_adamw"], ref.schedule_free_adamw(0.05, b1=0.9, weight_decay=0.1)),
    ):
        ours = gx.testing.check_against_reference(make(gx), reference, steps=STEPS)["max_abs_error"]
        with loose:
            theirs = gx.testing.check_against_reference(make(optax), reference, steps=STEPS)["max_abs_error"]
        assert ours * 2 < theirs, (ours, theirs)


# ----------------------------------------------------------------------------- differences from optax


def test_warmup_steps_with_the_same_learning_rate_that_weights_the_average():
    """optax 0.2.8's schedule_free_sgd/adamw step z with the warmup's previous value gamma_{t-1}
    (its sgd's schedule count starts at 0, the weights' at 1): the first step does not move.
    The paper (Algorithm 1) and the authors' code use gamma_t for both."""
    y = {"w": jnp.array([1.0, -2.0])}
    g = {"w": jnp.array([0.5, 1.0])}
    ours = gx.contrib.schedule_free_sgd(1.0, warmup_steps=4, b1=0.9)
    u, _ = ours.update(g, ours.init(y), y)
    np.testing.assert_allclose(u["w"], [-0.125, -0.25], rtol=1e-6)  # gamma_1 = 1/4, c_2 = 1: y = z
    with loose:
        theirs = optax.contrib.schedule_free_sgd(1.0, warmup_steps=4, b1=0.9)
        u_theirs, _ = theirs.update(g, theirs.init(y), y)
    np.testing.assert_array_equal(u_theirs["w"], [0.0, 0.0])


def test_zero_warmup_steps_means_no_warmup():
    """optax 0.2.8's warmup_constant_schedule(0, peak, 0) is 0 forever: schedule_free_sgd(lr,
    warmup_steps=0) never moves there. Here 0 warmup steps is the constant peak."""
    y, g = jnp.array([1.0]), jnp.array([1.0])
    ours = gx.contrib.schedule_free_sgd(0.5, warmup_steps=0)
    np.testing.assert_allclose(ours.update(g, ours.init(y), y)[0], [-0.5])
    with loose:
        theirs = optax.contrib.schedule_free_sgd(0.5, warmup_steps=0)
        np.testing.assert_array_equal(theirs.update(g, theirs.init(y), y)[0], [0.0])


def test_madgrad_without_eps_gives_zero_not_nan_on_zero_gradients():
    """optax 0.2.8: eps=0 and a zero gradient so far give s / nu^(1/3) = 0/0 = NaN."""
    p = jnp.array([1.0, 2.0])
    g = jnp.array([0.0, 1.0])
    ours = gx.contrib.madgrad(0.1, eps=0.0)
    u, _ = ours.update(g, ours.init(p), p)
    assert u[0] == 0.0 and np.isfinite(u[1])
    with loose:
        theirs = optax.contrib.madgrad(0.1, eps=0.0)
        u_theirs, _ = theirs.update(g, theirs.init(p), p)
    assert np.isnan(u_theirs[0])


def test_schedule_free_scalars_stay_float32_for_bfloat16_params():
    """optax stores b1, weight_sum and max_lr in the params' dtype: b1=0.8 becomes bfloat16's 0.80078."""
    params = _params(jnp.bfloat16)
    tx = gx.contrib.schedule_free_sgd(0.1, b1=0.8, state_dtype=jnp.float32)
    state = tx.init(params)
    assert state.b1.dtype == state.weight_sum.dtype == state.max_lr.dtype == jnp.float32
    assert float(state.b1) == np.float32(0.8)
    assert all(z.dtype == jnp.float32 for z in jax.tree_util.tree_leaves(state.z))
    with loose:
        assert optax.contrib.schedule_free_sgd(0.1, b1=0.8).init(params).b1.dtype == jnp.bfloat16


# ----------------------------------------------------------------------------- jit and eager


def test_madgrad_jit_and_eager_agree_exactly():
    """One fused rule per leaf, the cube root by cbrt: no FMA or pow rewrite tells the two apart.
    (optax's madgrad differs between them by up to 3e-5 of the largest update in 25 steps: its update
    is x_{k+1} - x_k, one ulp(x) apart.)"""
    tx = gx.contrib.madgrad(0.05)
    jitted, _, _ = _run(tx, steps=6)
    eager, _, _ = _run(tx, steps=6, jit=False)
    _assert_close(jitted, eager, rtol=0.0)


def test_schedule_free_jit_and_eager_agree_to_one_rounding_of_z():
    """Under jit, XLA fuses the base optimizer's last product into z + delta (an FMA): z_{t+1}
    may round differently by ulp(z). The update, formed from z's differences, inherits that
    ulp(z) and no more (optax, forming y_{t+1} - y_t, differs by 10x as much)."""
    tx = gx.contrib.schedule_free_adamw(0.05)
    jitted, _, p = _run(tx, steps=6)
    eager, _, _ = _run(tx, steps=6, jit=False)
    ulp_z = 2 * np.finfo(np.float32).eps * max(float(jnp.max(jnp.abs(x))) for x in jax.tree_util.tree_leaves(p))
    _assert_close(jitted, eager, rtol=0.0, atol=ulp_z)


# ----------------------------------------------------------------------------- mutants


def _madgrad_copy(lr, momentum, eps, bug=None):
    """A plain-jnp MADGRAD; `bug` breaks one subtle point of Algorithm 1."""
    tm = jax.tree_util.tree_map

    def init(p):
        return {"k": jnp.zeros([], jnp.int32), "nu": tm(jnp.zeros_like, p), "s": tm(jnp.zeros_like, p), "x0": p}

    def update(g, st, p=None, **kw):
        k = st["k"].astype(jnp.float32)
        lam = (lr + (0.0 if bug == "lambda_without_eps" else eps)) * (1.0 if bug == "lambda_without_sqrt"
                                                                      else jnp.sqrt(k + 1))
        nu = tm(lambda n, x: n + lam * x * x, st["nu"], g)
        s = tm(lambda a, x: a + lam * x, st["s"], g)

        def z_of(x0, pi, a, n):
            if bug == "square_root":
                denom = jnp.sqrt(n) + eps
            elif bug == "eps_inside_root":
                denom = jnp.cbrt(n + eps)
            else:
                denom = jnp.cbrt(n) + eps
            return (pi if bug == "anchored_at_x_k" else x0) - a / denom

        z = tm(z_of, st["x0"], p, s, nu)
        c = momentum if bug == "momentum_for_c" else 1 - momentum
        u = tm(lambda zi, pi: c * (zi - pi), z, p)
        return u, {"k": st["k"] + 1, "nu": nu, "s": s, "x0": st["x0"]}

    return gx.GradientTransformation(init, update)


MADGRAD_BUGS = ["lambda_without_eps", "lambda_without_sqrt", "square_root", "eps_inside_root",
                "anchored_at_x_k", "momentum_for_c"]


@pytest.mark.parametrize("bug", [None, *MADGRAD_BUGS])
def test_reference_check_catches_madgrad_mutants(bug):
    kwargs = dict(lr=0.05, momentum=0.7, eps=1e-2)
    reference = ref.scale_by_madgrad(0.05, momentum=0.7, eps=1e-2)
    mutant = _madgrad_copy(**kwargs, bug=bug)
    if bug is None:  # the unbroken copy passes: the check fails for the bug alone
        gx.testing.check_against_reference(mutant, reference, steps=8)
        return
    with pytest.raises(AssertionError):
        gx.testing.check_against_reference(mutant, reference, steps=8)


def _schedule_free_copy(lr, warmup, b1, power, bug=None):
    """A plain-jnp Schedule-Free SGD with warmup, in optax's bookkeeping; `bug` breaks one point."""
    tm = jax.tree_util.tree_map

    def gamma(t):
        return lr * jnp.minimum(1.0, t / warmup)

    def init(p):
        return {"t": jnp.ones([], jnp.int32), "ws": jnp.zeros([]), "mx": jnp.zeros([]), "z": p}

    def update(g, st, y=None, **kw):
        t = st["t"].astype(jnp.float32)
        step_lr = gamma(t - 1) if bug == "previous_warmup_value" else gamma(t)  # optax 0.2.8's
        mx = jnp.maximum(st["mx"], gamma(t))
        w = mx if bug == "power_one" else mx**power
        ws = st["ws"] + w
        c = 1.0 / t if bug == "uniform_average" else w / ws
        x = tm(lambda yi, zi: (yi - (1 - b1) * zi) / b1, y, st["z"])
        z = tm(lambda zi, gi: zi - step_lr * gi, st["z"], g)
        x = tm(lambda xi, zi: (1 - c) * xi + c * zi, x, z)
        if bug == "interpolation_swapped":
            y_new = tm(lambda xi, zi: b1 * zi + (1 - b1) * xi, x, z)
        else:
            y_new = tm(lambda xi, zi: (1 - b1) * zi + b1 * xi, x, z)
        u = tm(lambda a, b: a - b, y_new, y)
        return u, {"t": st["t"] + 1, "ws": ws, "mx": mx, "z": z}

    return gx.GradientTransformation(init, update)


SCHEDULE_FREE_BUGS = ["previous_warmup_value", "power_one", "uniform_average", "interpolation_swapped"]


@pytest.mark.parametrize("bug", [None, *SCHEDULE_FREE_BUGS])
def test_reference_check_catches_schedule_free_mutants(bug):
    reference = ref.schedule_free_sgd(0.5, warmup_steps=4, b1=0.8, weight_lr_power=2.0)
    mutant = _schedule_free_copy(0.5, 4, 0.8, 2.0, bug=bug)
    if bug is None:
        gx.testing.check_against_reference(mutant, reference, steps=8)
        return
    with pytest.raises(AssertionError):
        gx.testing.check_against_reference(mutant, reference, steps=8)


# ----------------------------------------------------------------------------- edge cases

ALL = {
    "madgrad": lambda: gx.contrib.madgrad(0.1, eps=0.0),
    "scale_by_madgrad": lambda: gx.contrib.scale_by_madgrad(0.1),
    "schedule_free_sgd": lambda: gx.contrib.schedule_free_sgd(0.1, warmup_steps=2),
    "schedule_free_adamw": lambda: gx.contrib.schedule_free_adamw(0.1),  # eps=0: the base's 0/0, as in adam
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_all_zero_gradients_give_zero_updates(name):
    tx = ALL[name]()
    params = _params()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    state = tx.init(params)
    for _ in range(2):
        u, state = tx.update(zeros, state, params)
        for leaf in jax.tree_util.tree_leaves(u):
            np.testing.assert_array_equal(leaf, np.zeros_like(leaf))


@pytest.mark.parametrize("name", sorted(ALL))
def test_scalar_leaf_and_bfloat16_params(name):
    tx = ALL[name]()
    for params in ({"s": jnp.asarray(1.5)}, _params(jnp.bfloat16)):
        state = tx.init(params)
        g = _grads(params, 3)
        u, new_state = jax.jit(tx.update)(g, state, params)
        assert jax.tree_util.tree_map(lambda x: x.dtype, u) == jax.tree_util.tree_map(lambda x: x.dtype, g)
        assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree_util.tree_leaves(u))
        before = [(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(state)]
        assert [(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(new_state)] == before


def test_eval_params_is_x_and_starts_at_the_params():
    tx = gx.contrib.schedule_free_sgd(0.1, b1=0.8)
    params = _params()
    state = tx.init(params)
    x0 = gx.contrib.schedule_free_eval_params(state, params)
    _assert_close([x0], [params], rtol=0.0)
    # x, tracked by the paper's reference, after a few steps; also from a chain's state.
    reference = ref.schedule_free_sgd(0.1, b1=0.8)
    r_state, p = reference.init(params), params
    chained = gx.chain(gx.identity(), tx)
    c_state = chained.init(params)
    for step in range(5):
        g = _grads(p, step + 1)
        u, c_state = chained.update(g, c_state, p)
        _, r_state = reference.update(g, r_state, p)
        p = gx.apply_updates(p, u)
    x = gx.contrib.schedule_free_eval_params(c_state, p)
    _assert_close([x], [r_state["x"]], rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="ScheduleFreeState"):
        gx.contrib.schedule_free_eval_params(gx.sgd(0.1).init(params), params)


def test_extra_arguments_reach_the_base_optimizer():
    seen = {}

    def base_update(u, s, params=None, **extra):
        seen.update(extra)
        return u, s

    base = gx.GradientTransformationExtraArgs(lambda p: gx.EmptyState(), base_update)
    tx = gx.contrib.schedule_free(base, 0.1)
    p = jnp.ones(2)
    tx.update(p, tx.init(p), p, value=jnp.float32(3.0))
    assert float(seen["value"]) == 3.0


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "build,arg",
    [
        (lambda: gx.contrib.madgrad(-0.1), "learning_rate"),
        (lambda: gx.contrib.madgrad(0.1, momentum=1.0), "momentum"),
        (lambda: gx.contrib.madgrad(0.1, weight_decay=-1.0), "weight_decay"),
        (lambda: gx.contrib.scale_by_madgrad(0.1, eps=-1e-6), "eps"),
        (lambda: gx.contrib.schedule_free(gx.sgd(0.1), 0.1, b1=0.0), "b1"),
        (lambda: gx.contrib.schedule_free(gx.sgd(0.1), 0.1, b1=1.5), "b1"),
        (lambda: gx.contrib.schedule_free(gx.sgd(0.1), -0.1), "learning_rate"),
        (lambda: gx.contrib.schedule_free_sgd(0.1, weight_lr_power=-1.0), "weight_lr_power"),
        (lambda: gx.contrib.schedule_free_sgd(0.1, warmup_steps=-1), "warmup_steps"),
        (lambda: gx.contrib.schedule_free_adamw(0.1, b2=1.0), "b2"),
    ],
)
def test_impossible_values_raise_naming_the_argument(build, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        build()


def test_update_without_params_raises():
    p = jnp.ones(2)
    for tx in (gx.contrib.madgrad(0.1), gx.contrib.schedule_free_sgd(0.1)):
        with pytest.raises(ValueError, match="needs the params"):
            tx.update(p, tx.init(p))
