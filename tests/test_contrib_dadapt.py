"""gx.contrib's learning-rate-free rules: D-Adaptation AdamW, Prodigy, Mechanic (issue 17)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

C = gx.contrib
R = gx.testing.reference
loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion
ATOL = 1e-12  # the reference check's default atol (1e-6) would pass any update of size d_0 = 1e-6


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32)}


def _grads(rng, like):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(rng.normal(size=x.shape), jnp.float32), like)


def _trajectories(ours, theirs, steps=25, seed=0):
    """Both run from the same params on the same gradients, each on its own params; yields both updates."""
    rng = np.random.default_rng(seed + 100)
    p_ours = p_theirs = _params(seed)
    s_ours, s_theirs = ours.init(p_ours), theirs.init(p_theirs)
    f = jax.jit(ours.update)
    for _ in range(steps):
        g = _grads(rng, p_ours)
        u_ours, s_ours = f(g, s_ours, p_ours)
        with loose:
            u_theirs, s_theirs = theirs.update(g, s_theirs, p_theirs)
        yield u_ours, u_theirs, p_ours, p_theirs
        p_ours, p_theirs = gx.apply_updates(p_ours, u_ours), optax.apply_updates(p_theirs, u_theirs)


# betas=(0.9, 0.75): optax forms 1 - b2^t in float32, 1.3e-5 relatively off at b2 = 0.999, t = 1
# (gradxform forms it to a few ulps); with b2 = 0.75 both are exact to float32 and agree to 1e-5.
@pytest.mark.parametrize(
    "ours,theirs",
    [
        (lambda: C.dadapt_adamw(betas=(0.9, 0.75)), lambda: optax.contrib.dadapt_adamw(betas=(0.9, 0.75))),
        (lambda: C.dadapt_adamw(0.5, betas=(0.9, 0.75), weight_decay=0.1),
         lambda: optax.contrib.dadapt_adamw(0.5, betas=(0.9, 0.75), weight_decay=0.1)),
        (lambda: C.prodigy(betas=(0.9, 0.75)), lambda: optax.contrib.prodigy(betas=(0.9, 0.75))),
        (lambda: C.prodigy(0.5, betas=(0.9, 0.75), beta3=0.9, weight_decay=0.1, safeguard_warmup=True),
         lambda: optax.contrib.prodigy(0.5, betas=(0.9, 0.75), beta3=0.9, weight_decay=0.1, safeguard_warmup=True)),
    ],
    ids=["dadapt", "dadapt_decay", "prodigy", "prodigy_safeguard"],
)
def test_parity_with_optax_over_25_steps(ours, theirs):
    for step, (a, b, _, _) in enumerate(_trajectories(ours(), theirs())):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-5 * np.max(np.abs(y)),
                                       err_msg=f"step {step + 1}")


@pytest.mark.parametrize("name", ["dadapt_adamw", "prodigy"])
def test_reference_parity_25_steps(name):
    tx, ref = getattr(C, name)(), getattr(R, name)()
    gx.testing.check_against_reference(tx, ref, steps=25, dtype=np.float32, atol=ATOL)


@pytest.mark.slow
def test_mechanize_reference_parity_25_steps():
    gx.testing.check_against_reference(C.mechanize(gx.adam(0.1)), R.mechanize(R.adam(0.1)), steps=25, dtype=np.float32,
                                       atol=ATOL)


def test_jit_and_eager_agree_to_an_ulp():
    """optax's `(1 - b2 ** (count + 1)) ** 0.5` cancels: XLA's pow of a constant (jit) and of an argument
    (eager) differ by an ulp of b2^t, ~1e-5 relatively after 1 - b2^t; -expm1(t log b2) does not cancel."""
    rng = np.random.default_rng(3)
    for tx in (C.dadapt_adamw(), C.prodigy()):
        p = _params()
        s = tx.init(p)
        f = jax.jit(tx.update)
        for _ in range(8):
            g = _grads(rng, p)
            (u1, s1), (u2, _) = tx.update(g, s, p), f(g, s, p)
            for x, y in zip(jax.tree_util.tree_leaves(u1), jax.tree_util.tree_leaves(u2)):
                np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=2e-7 * np.max(np.abs(x)))
            s, p = s1, gx.apply_updates(p, u1)


def test_optax_step_size_differs_between_jit_and_eager():
    """The cause, in optax's own expression: 1 ulp of 0.999**3 apart under jit."""
    f = lambda c: 0.999 ** (c + 1)
    c = jnp.asarray(2, jnp.int32)
    with loose:
        assert f(c) != jax.jit(f)(c) or f(jnp.asarray(5, jnp.int32)) != jax.jit(f)(jnp.asarray(5, jnp.int32))


@pytest.mark.parametrize("name", ["dadapt_adamw", "prodigy"])
def test_all_zero_gradients_give_zero_updates_and_keep_d(name):
    tx = getattr(C, name)()
    p = _params()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, p)
    u, s = tx.update(zeros, tx.init(p), p)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(u))
    assert float(s.estim_lr) == pytest.approx(1e-6)
    u, s = jax.jit(tx.update)(zeros, s, p)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves((u, s)))
    bare = getattr(C, name)(eps=0.0)  # m / (sqrt(v) + 0) = 0 / 0 is taken as 0
    u, _ = bare.update(zeros, bare.init(p), p)
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(u))


def test_optax_prodigy_gives_nan_on_all_zero_gradients():
    """Regression (Differences from optax): optax's d_hat = r / ||s||_1 = 0/0 is NaN and reaches the update."""
    p = _params()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, p)
    theirs = optax.contrib.prodigy()
    with loose:
        u, _ = theirs.update(zeros, theirs.init(p), p)
    assert np.isnan(np.asarray(u["w"])).all()
    ours = C.prodigy()
    u, _ = ours.update(zeros, ours.init(p), p)
    assert np.all(np.asarray(u["w"]) == 0)


def test_scalar_and_bfloat16_leaves():
    p = {"s": jnp.asarray(1.5, jnp.float32), "h": jnp.ones((3,), jnp.bfloat16)}
    g = {"s": jnp.asarray(0.5, jnp.float32), "h": jnp.full((3,), 0.25, jnp.bfloat16)}
    for tx in (C.dadapt_adamw(), C.prodigy(), C.mechanize(gx.sgd(0.1))):
        s0 = tx.init(p)
        u, s1 = jax.jit(tx.update)(g, s0, p)
        assert u["s"].dtype == jnp.float32 and u["h"].dtype == jnp.bfloat16
        assert jax.tree_util.tree_map(lambda x: (x.shape, x.dtype), s0) == jax.tree_util.tree_map(
            lambda x: (x.shape, x.dtype), s1)
        assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree_util.tree_leaves(u))


# ----------------------------------------------------------------------------- mutants


def _quadratic(step, params):
    """The gradient of 1/2 |x|^2 plus a fixed tilt: d_k grows, so every part of the estimate is exercised."""
    del step
    return jax.tree_util.tree_map(lambda x: x + 0.5, params)


def _catches(tx, broken_reference, steps=8):
    with pytest.raises(AssertionError):
        gx.testing.check_against_reference(tx, broken_reference, steps=steps, dtype=np.float32, atol=ATOL,
                                           grads=_quadratic)


def _no_bias_correction(k):
    """A rate that undoes Adam's bias correction in gamma_k (a reference without it)."""
    return (1 - 0.9 ** (k + 1)) / np.sqrt(1 - 0.999 ** (k + 1))


@pytest.mark.slow
def test_mutants_are_caught():
    d0 = {"estim_lr0": 1e-2}  # d_k grows from the first steps on the quadratic
    # D-Adaptation: the bias correction in gamma_k; the sqrt(beta2) decay of s and r; d_0.
    _catches(C.dadapt_adamw(**d0), R.dadapt_adamw(learning_rate=_no_bias_correction, **d0))
    _catches(C.dadapt_adamw(**d0), R.dadapt_adamw(betas=(0.9, 0.99), **d0))
    _catches(C.dadapt_adamw(estim_lr0=1e-2), R.dadapt_adamw(estim_lr0=1e-3))
    # Prodigy: the bias correction; beta3's default sqrt(beta2); the coefficient; gamma_k left out of s.
    _catches(C.prodigy(**d0), R.prodigy(learning_rate=_no_bias_correction, **d0))
    _catches(C.prodigy(**d0), R.prodigy(beta3=0.99, **d0))
    _catches(C.prodigy(estim_lr_coef=2.0, **d0), R.prodigy(estim_lr_coef=1.0, **d0))
    warmup = lambda k: jnp.minimum((jnp.asarray(k, jnp.float32) + 1) / 8, 1.0)
    _catches(C.prodigy(warmup, safeguard_warmup=True, **d0), R.prodigy(warmup, safeguard_warmup=False, **d0), 12)
    # Mechanic: the betas 1 - 10^-i (n of them), s_init.
    _catches(C.mechanize(gx.sgd(0.1)), R.mechanize(R.sgd(0.1), num_betas=5))
    _catches(C.mechanize(gx.sgd(0.1)), R.mechanize(R.sgd(0.1), s_init=2e-6))


def _unclipped_mechanic(lr=0.1, weight_decay=1e-2, eps=1e-8, s_init=1e-6, n=6, clip=False):
    """A broken copy of Mechanic over SGD: r_t = beta r_{t-1} - s_t h_t, without the clip of h_t by m_{t-1}."""
    beta = np.array([1.0 - 0.1**i for i in range(1, n + 1)])
    leaves = lambda t: [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(t)]

    def init(params):
        z = np.zeros(n)
        return {"r": z, "m": z, "v": z, "s": np.full(n, s_init), "x0": leaves(params)}

    def update(grads, state, params=None, **extra):
        g, x, x0 = leaves(grads), leaves(params), state["x0"]
        total = state["s"].sum()
        gn, xn = np.sqrt(sum((a * a).sum() for a in g)), np.sqrt(sum((a * a).sum() for a in x))
        delta = [(a - b) / total for a, b in zip(x, x0)]
        h = sum((dl * (gi + weight_decay * total * gn / (xn + eps) * xi)).sum() for dl, gi, xi in zip(delta, g, x))
        m = np.maximum(beta * state["m"], abs(h) + eps)
        v = beta**2 * state["v"] + h * h
        r = beta * state["r"] - state["s"] * (np.clip(h, -state["m"], state["m"]) if clip else h)  # mutation
        s = (s_init / n * m + np.maximum(r, 0)) / (np.sqrt(v) + eps)
        out = [b + s.sum() * (dl - lr * gi) - xi for b, dl, gi, xi in zip(x0, delta, g, x)]
        treedef = jax.tree_util.tree_structure(grads)
        u = treedef.unflatten([o.astype(np.asarray(gi).dtype) for o, gi in zip(out, jax.tree_util.tree_leaves(grads))])
        return u, {"r": r, "m": m, "v": v, "s": s, "x0": x0}

    return R.Reference(init, update)


def test_mechanic_clip_of_h_is_checked():
    """The clip of h_t by m_{t-1} (the authors' addition): without it the reference check fails."""
    # the broken copy is itself right apart from the clip: with the clip it matches
    gx.testing.check_against_reference(C.mechanize(gx.sgd(0.1)), _unclipped_mechanic(clip=True), steps=12,
                                       dtype=np.float32, atol=ATOL, grads=_quadratic)
    _catches(C.mechanize(gx.sgd(0.1)), _unclipped_mechanic(), steps=12)


# ----------------------------------------------------------------------------- Mechanic vs optax


@pytest.mark.slow
def test_mechanic_params_track_optax_where_eps_is_negligible():
    """With s_init = 1e-3 optax's eps in (sum(s) + eps) is 1e-5 relative: the params trajectories agree."""
    ours = C.mechanize(gx.adam(0.1), s_init=1e-3)
    theirs = optax.contrib.mechanize(optax.adam(0.1), s_init=1e-3)
    for _, _, p_ours, p_theirs in _trajectories(ours, theirs, steps=10):
        for x, y in zip(jax.tree_util.tree_leaves(p_ours), jax.tree_util.tree_leaves(p_theirs)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=1e-6)


def test_mechanic_departs_from_optax_by_its_eps_in_delta():
    """Regression (Differences from optax): optax recovers Delta_t = (x_t - x_1) / (sum(s_t) + eps); at the
    default s_init = 1e-6 that is 1% short of the paper's x_t = x_1 + sum(s_t) Delta_t, and h_2 with it."""
    p = {"w": jnp.asarray([1.0, -2.0, 0.5], jnp.float32)}
    ours, theirs = C.mechanize(gx.sgd(1.0), weight_decay=0.0), optax.contrib.mechanize(optax.sgd(1.0), weight_decay=0.0)
    s_ours, s_theirs = ours.init(p), theirs.init(p)
    g = {"w": jnp.asarray([3.0, -1.0, 2.0], jnp.float32)}
    u, s_ours = ours.update(g, s_ours, p)
    p2 = gx.apply_updates(p, u)
    _, s_ours = ours.update(g, s_ours, p2)
    with loose:
        _, s_theirs = theirs.update(g, s_theirs, p)
        _, s_theirs = theirs.update(g, s_theirs, p2)
    ratio = float(s_theirs.m[0] / s_ours.m[0])  # |h_2| + eps
    assert ratio == pytest.approx(1e-6 / (1e-6 + 1e-8), rel=2e-2)


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "make,arg",
    [
        (lambda: C.dadapt_adamw(betas=(1.0, 0.999)), "betas"),
        (lambda: C.dadapt_adamw(betas=(0.9, -0.1)), "betas"),
        (lambda: C.dadapt_adamw(betas=0.9), "betas"),
        (lambda: C.prodigy(betas=(0.9, 1.5)), "betas"),
        (lambda: C.prodigy(beta3=1.0), "beta3"),
        (lambda: C.prodigy(estim_lr0=0.0), "estim_lr0"),
        (lambda: C.mechanize(gx.sgd(0.1), eps=0.0), "eps"),
        (lambda: C.mechanize(gx.sgd(0.1), num_betas=0), "num_betas"),
    ],
)
def test_invalid_arguments_raise_naming_them(make, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        make()


@pytest.mark.parametrize("name", ["dadapt_adamw", "prodigy"])
def test_update_needs_params(name):
    tx = getattr(C, name)()
    p = _params()
    with pytest.raises(ValueError, match="needs the params"):
        tx.update(p, tx.init(p))


@pytest.mark.parametrize("name", ["dadapt_adamw", "prodigy"])
def test_reference_parity_while_d_grows(name):
    """On a quadratic d_k grows (the max takes the estimate): the check the mutants above rely on."""
    tx, ref = getattr(C, name)(), getattr(R, name)()
    gx.testing.check_against_reference(tx, ref, steps=12, dtype=np.float32, atol=ATOL, grads=_quadratic)
    p = {"w": jnp.ones(3)}
    state = tx.init(p)
    for _ in range(12):
        u, state = tx.update(_quadratic(0, p), state, p)
        p = gx.apply_updates(p, u)
    assert float(state.estim_lr) > 1e-5
