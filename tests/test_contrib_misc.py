"""gx.contrib's MoMo, MoMo-Adam, Sophia (+ Hutchinson's estimator), SAM and normalize.

The registry (gradxform/testing/registry/_contrib_misc.py) runs the laws, the dtype policy
and reference parity for momo, momo_adam, sophia and normalize. Here: optax parity over 25
steps of a real loss, the differences from optax pinned down (each optax behaviour is
reproduced by a NumPy "mutant" of the paper's rule, which `check_against_reference`
catches), SAM and the Hessian estimator (a wrapper needing a gradient function, and a
random rule) step by step against optax, edge cases and validation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing import check_against_reference
from gradxform.testing import reference as R

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion
STEPS = 25
P0 = {"a": jnp.array([1.5, -2.0, 3.0]), "b": jnp.array([[0.5, -0.25]]), "c": jnp.array(0.7)}


def _loss(p):
    """A non-quadratic loss > 0 with a non-diagonal Hessian."""
    a, b, c = p["a"], p["b"], p["c"]
    return (0.5 * jnp.sum((a - 1.0) ** 2 * jnp.arange(1.0, 4.0)) + a[0] * b[0, 1] + jnp.sum(jnp.cos(b))
            + c**2 + 2.5)


def _close(a, b, rtol=1e-5, what=""):
    """rtol, with an absolute tolerance of rtol times the leaf's largest entry (MoMo's step size
    tau_k comes from a difference of nearly equal terms, in optax's float32 as in ours)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=max(rtol * float(np.max(np.abs(b), initial=0)), 1e-9),
                               err_msg=what)


def _jit_optax(update, **static):
    """optax's update, jitted once, traced with the standard dtype promotion it relies on."""

    def run(*args, **kwargs):
        with loose:
            return update(*args, **kwargs, **static)

    return jax.jit(run)


# --------------------------------------------------------------------------- NumPy mutants
#
# The paper's rules written again with one switch per subtle point; each mutation is a
# plausible bug (or optax's variant) that reference parity must catch.


def _dot(a, b):
    return float(sum(np.sum(np.asarray(x, np.float64) * np.asarray(y, np.float64))
                     for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b))))


def _tmap(fn, *trees):
    return jax.tree_util.tree_map(fn, *trees)


class _MomoMutant:
    """MoMo / MoMo-Adam in NumPy with `mutation` switched on."""

    def __init__(self, mutation, adam=False, lr=1.0, beta=0.9, b2=0.999, eps=1e-8, lb=0.0, wd=0.0, adapt=False):
        self.m, self.adam, self.lr, self.b1, self.b2, self.eps = mutation, adam, lr, beta, b2, eps
        self.lb0, self.wd, self.adapt = lb, wd, adapt

    def init(self, params):
        z = _tmap(lambda p: np.zeros(np.shape(p)), params)
        return {"k": 0, "d": z, "v": z, "f": 0.0, "g": 0.0, "lb": self.lb0}

    def update(self, grads, s, params, *, value, **_):
        g = _tmap(lambda x: np.asarray(x, np.float64), grads)
        x = _tmap(lambda x: np.asarray(x, np.float64), params)
        k, b1 = s["k"], self.b1
        beta = 0.0 if (k == 0 and not self.adam and self.m != "zero_init") else b1
        d = _tmap(lambda m, gi: beta * m + (1 - beta) * gi, s["d"], g)
        f = beta * s["f"] + (1 - beta) * float(value)
        gam = beta * s["g"] + (1 - beta) * _dot(g, x)
        v = _tmap(lambda a, gi: self.b2 * a + (1 - self.b2) * gi * gi, s["v"], g)
        rho = 1.0
        direction = d
        if self.adam:
            rho = 1.0 if self.m == "no_rho" else 1 - b1 ** (k + 1)
            bc2 = 1 - self.b2 ** (k + 1)
            if self.m == "eps_inside":
                D = _tmap(lambda a: np.sqrt(a / bc2 + self.eps), v)
            else:
                D = _tmap(lambda a: np.sqrt(a / bc2) + self.eps, v)
            direction = _tmap(lambda m, dd: m / dd, d, D)
        wd = 1 + self.lr * self.wd
        dot, norm, lb = _dot(d, x), _dot(d, direction), s["lb"]
        if self.adapt and self.m != "no_reset":
            cap = wd * f + dot - wd * gam
            if cap < wd * rho * lb:
                lb = max(cap / (2 * wd * rho), self.lb0)
        nom = wd * (f - rho * lb - gam) + dot
        if self.m != "no_truncation":
            nom = max(nom, 0.0)
        t1 = nom / norm if norm > 0 else 0.0
        tau = t1 if self.m == "uncapped" else min(self.lr / rho, t1)
        if self.adapt:
            lb = max((f + dot - gam - 0.5 * tau * norm) / rho, self.lb0)
        if self.m == "optax_weight_decay":
            u = _tmap(lambda xi, di: -tau * di - (wd - 1) / wd * xi, x, direction)
        else:
            u = _tmap(lambda xi, di: (xi - tau * di) / wd - xi, x, direction)
        u = _tmap(lambda a, gi: np.asarray(a).astype(np.asarray(gi).dtype), u, grads)
        return u, {"k": k + 1, "d": d, "v": v, "f": f, "g": gam, "lb": lb}


class _SophiaMutant:
    """Sophia in NumPy (given ``hessian_diag=``) with `mutation` switched on; "optax" is optax 0.2.8's step."""

    def __init__(self, mutation, lr=0.1, b1=0.965, b2=0.99, eps=1e-8, wd=1e-4, gamma=0.01, clip=1.0, k=10):
        self.m, self.lr, self.b1, self.b2, self.eps, self.wd = mutation, lr, b1, b2, eps, wd
        self.gamma, self.clip, self.k = gamma, clip, k

    def init(self, params):
        z = _tmap(lambda p: np.zeros(np.shape(p)), params)
        return {"t": 0, "m": z, "h": z}

    def update(self, grads, s, params, *, hessian_diag, **_):
        t = s["t"]
        m = _tmap(lambda a, gi: self.b1 * a + (1 - self.b1) * np.asarray(gi, np.float64), s["m"], grads)
        h = s["h"]
        if t % self.k == 0:
            h = _tmap(lambda a, e: self.b2 * a + (1 - self.b2) * np.asarray(e, np.float64), h, hessian_diag)
        used_m, used_h = m, h
        if self.m in ("optax", "bias_corrected"):
            used_m = _tmap(lambda a: a / (1 - self.b1 ** (t + 1)), m)
        if self.m in ("optax", "stale_h"):
            used_h = s["h"]

        def step(mi, hi, xi):
            r = mi / (self.gamma * hi + self.eps) if self.m == "eps_added" else mi / np.maximum(self.gamma * hi, self.eps)
            if self.clip is not None and self.m != "no_clip":
                r = np.clip(r, -self.clip, self.clip)
            return -self.lr * (r + self.wd * np.asarray(xi, np.float64))

        u = _tmap(step, used_m, used_h, params)
        u = _tmap(lambda a, gi: np.asarray(a).astype(np.asarray(gi).dtype), u, grads)
        return u, {"t": t + 1, "m": m, "h": h}


def _value(step, params, grads):
    del step, grads
    return {"value": 0.1 + 0.5 * sum(float(np.sum(np.asarray(p, np.float64) ** 2)) for p in jax.tree_util.tree_leaves(params))}


def _hessian_diag(step, params, grads):
    del step, grads
    return {"hessian_diag": _tmap(lambda p: 4.0 * np.asarray(p) + 1.0, params)}


_MOMO_REFS = {
    "momo": lambda **kw: R.momo(**kw),
    "momo_adam": lambda **kw: R.momo_adam(**kw),
}

MOMO_MUTANTS = [
    # (mutation, mutant kwargs, reference)
    ("zero_init", {}, lambda: R.momo()),  # d_0 = (1 - beta) g_0 instead of g_0
    ("no_truncation", {"lb": 50.0}, lambda: R.momo(lower_bound=50.0)),  # the model's (.)_+ dropped
    ("uncapped", {"lr": 0.05}, lambda: R.momo(0.05)),  # tau_k not capped by alpha_k
    ("optax_weight_decay", {"lr": 0.5, "wd": 0.1}, lambda: R.momo(0.5, weight_decay=0.1)),
    ("no_reset", {"adapt": True, "lb": -1.0}, lambda: R.momo(lower_bound=-1.0, adapt_lower_bound=True)),
    ("no_rho", {"adam": True, "lr": 0.1}, lambda: R.momo_adam(0.1)),  # MoMo-Adam without 1 - b1^k
    ("eps_inside", {"adam": True, "lr": 0.1, "eps": 1e-2}, lambda: R.momo_adam(0.1, eps=1e-2)),
]


@pytest.mark.parametrize("mutation,kwargs,ref", MOMO_MUTANTS, ids=[m[0] for m in MOMO_MUTANTS])
def test_momo_reference_catches_mutant(mutation, kwargs, ref):
    check_against_reference(_MomoMutant(None, **kwargs), ref(), steps=6, extra_args_fn=_value, jit=False)
    with pytest.raises(AssertionError):
        check_against_reference(_MomoMutant(mutation, **kwargs), ref(), steps=6, extra_args_fn=_value, jit=False)


SOPHIA_MUTANTS = ["optax", "bias_corrected", "stale_h", "eps_added", "no_clip"]
_SOPHIA_KW = {"lr": 0.1, "b1": 0.5, "gamma": 0.5, "b2": 0.5, "k": 2, "eps": 0.05}


@pytest.mark.parametrize("mutation", SOPHIA_MUTANTS)
def test_sophia_reference_catches_mutant(mutation):
    ref = R.sophia(0.1, b1=0.5, gamma=0.5, b2=0.5, update_interval=2, eps=0.05)
    check_against_reference(_SophiaMutant(None, **_SOPHIA_KW), ref, steps=6, extra_args_fn=_hessian_diag, jit=False)
    with pytest.raises(AssertionError):
        check_against_reference(_SophiaMutant(mutation, **_SOPHIA_KW), ref, steps=6, extra_args_fn=_hessian_diag,
                                jit=False)


def test_normalize_reference_catches_zero_division():
    class Unguarded:
        init = staticmethod(lambda params: ())

        @staticmethod
        def update(grads, state, params=None, **_):
            n = np.sqrt(_dot(grads, grads))
            with np.errstate(invalid="ignore"):
                return _tmap(lambda g: (np.asarray(g) / np.float32(n)).astype(np.asarray(g).dtype), grads), state

    zero = {"w": np.zeros((3, 4)), "b": np.zeros(4)}
    check_against_reference(gx.contrib.normalize(), R.normalize(), steps=2, params=zero, grads=[zero, zero])
    with pytest.raises(AssertionError):
        check_against_reference(Unguarded(), R.normalize(), steps=2, params=zero, grads=[zero, zero], jit=False)


# --------------------------------------------------------------------------- MoMo against optax


_slow = pytest.mark.slow
MOMO_CONFIGS = [
    ("momo", {}),
    pytest.param("momo", {"learning_rate": 0.5, "beta": 0.5, "lower_bound": 1.0, "adapt_lower_bound": True},
                 marks=_slow),
    pytest.param("momo", {"learning_rate": optax.linear_schedule(1.0, 0.1, STEPS)}, marks=_slow),
    ("momo_adam", {}),
    pytest.param("momo_adam", {"learning_rate": 0.5, "lower_bound": 1.0, "adapt_lower_bound": True}, marks=_slow),
]


def _run_momo(tx, steps=STEPS, jit=True):
    p, s, out = P0, tx.init(P0), []
    update = jax.jit(tx.update) if jit else _jit_optax(tx.update)
    for _ in range(steps):
        value, g = jax.value_and_grad(_loss)(p)
        u, s = update(g, s, p, value=value)
        out.append(u)
        p = optax.apply_updates(p, u)
    return out, s


@pytest.mark.parametrize("name,kwargs", MOMO_CONFIGS, ids=lambda x: x if isinstance(x, str) else None)
def test_momo_matches_optax_over_25_steps(name, kwargs):
    ours, s_ours = _run_momo(getattr(gx.contrib, name)(**kwargs))
    theirs, s_theirs = _run_momo(getattr(optax.contrib, name)(**kwargs), jit=False)
    # optax's momo_adam is less accurate in float32 (check_accuracy: 1.0e-5 of the leaf's scale
    # against its float64 run; ours 6e-7), so its coordinates with small gradients differ by that
    rtol = 3e-5 if name == "momo_adam" else 1e-5
    if kwargs.get("adapt_lower_bound"):
        # The estimated lower bound sits at the model's value, so tau_k's numerator is a difference of
        # nearly equal terms: check_accuracy measures 7.0e-5 against float64 for optax as for ours, on
        # updates that shrink to 1e-4. The params (the sums of the updates) agree to 1e-5.
        p_ours = p_theirs = P0
        for t, (a, b) in enumerate(zip(ours, theirs)):
            p_ours, p_theirs = optax.apply_updates(p_ours, a), optax.apply_updates(p_theirs, b)
            for x, y in zip(jax.tree_util.tree_leaves(p_ours), jax.tree_util.tree_leaves(p_theirs)):
                _close(x, y, what=f"{name} params after step {t + 1}")
        return
    for t, (a, b) in enumerate(zip(ours, theirs)):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            _close(x, y, rtol=rtol, what=f"{name} step {t + 1}")
    # the same checkpoint: leaves in optax's order, dtypes and values
    for x, y in zip(jax.tree_util.tree_leaves(s_ours), jax.tree_util.tree_leaves(s_theirs)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        _close(x, y, rtol=1e-4)
    assert type(s_ours).__name__ == type(s_theirs).__name__
    assert s_ours._fields == s_theirs._fields


@pytest.mark.parametrize("name", ["momo", pytest.param("momo_adam", marks=_slow)])
def test_momo_weight_decay_is_the_papers_proximal_step_not_optax(name):
    """optax 0.2.8: x - tau d - (a l / (1 + a l)) x; the paper: (x - tau d) / (1 + a l)."""
    kw = {"learning_rate": 0.5, "weight_decay": 0.1}
    ours, _ = _run_momo(getattr(gx.contrib, name)(**kw), steps=8)
    theirs, _ = _run_momo(getattr(optax.contrib, name)(**kw), steps=8, jit=False)
    mutant = _MomoMutant("optax_weight_decay", adam=name == "momo_adam", lr=0.5, wd=0.1,
                         **({} if name == "momo" else {"beta": 0.9}))
    # optax is the mutant, step for step (its own trajectory)
    p, s = P0, mutant.init(P0)
    for t in range(8):
        value, g = jax.value_and_grad(_loss)(p)
        u, s = mutant.update(g, s, p, value=value)
        for x, y in zip(jax.tree_util.tree_leaves(theirs[t]), jax.tree_util.tree_leaves(u)):
            _close(x, y, what=f"optax vs its weight-decay form, step {t + 1}")
        p = optax.apply_updates(p, theirs[t])
    # and ours is not
    assert not np.allclose(np.asarray(ours[0]["a"]), np.asarray(theirs[0]["a"]), rtol=1e-3)
    check_against_reference(getattr(gx.contrib, name)(**kw), getattr(R, name)(**kw), steps=8, extra_args_fn=_value)


def test_momo_first_step_by_hand():
    # f = |x|^2 at [1, 2, 3]: tau = min(1, (14 + 28 - 28) / 56) = 0.25
    x = jnp.array([1.0, 2.0, 3.0])
    tx = gx.contrib.momo()
    u, s = tx.update(2 * x, tx.init(x), x, value=jnp.float32(14.0))
    np.testing.assert_allclose(u, -0.5 * x)
    assert (float(s.barf), float(s.gamma), int(s.count)) == (14.0, 28.0, 1)


# --------------------------------------------------------------------------- Sophia


def _obj(p):
    return _loss(p)


@pytest.mark.slow
def test_sophia_with_hutchinson_follows_the_paper_and_optax_is_its_optax_mutant():
    key = jax.random.PRNGKey(7)
    kw = {"learning_rate": 0.05, "b1": 0.5, "b2": 0.5, "gamma": 0.5, "update_interval": 3, "eps": 0.05}
    ours = gx.contrib.sophia(**kw, hessian_diagonal_fn=gx.contrib.hutchinson_estimator_diag_hessian(key))
    theirs = optax.contrib.sophia(**kw, hessian_diagonal_fn=optax.contrib.hutchinson_estimator_diag_hessian(key))
    est = gx.contrib.hutchinson_estimator_diag_hessian(key)
    mk = {"lr": 0.05, "b1": 0.5, "b2": 0.5, "gamma": 0.5, "k": 3, "eps": 0.05}
    paper, optax_form = _SophiaMutant(None, **mk), _SophiaMutant("optax", **mk)
    step = jax.jit(lambda g, s, p: ours.update(g, s, p, obj_fn=_obj))
    estimate = jax.jit(lambda s, p: est.update(None, s, p, obj_fn=_obj))
    p_ours = p_theirs = P0
    s_ours, s_theirs, s_est = ours.init(P0), theirs.init(P0), est.init(P0)
    s_paper, s_optax = paper.init(P0), optax_form.init(P0)
    for t in range(STEPS):
        g_ours, g_theirs = jax.grad(_obj)(p_ours), jax.grad(_obj)(p_theirs)
        # the estimates of our trajectory and of optax's (the same probes: the same key sequence)
        h_ours = h_theirs = None
        if t % 3 == 0:
            h_ours, s_next = estimate(s_est, p_ours)
            h_theirs, _ = estimate(s_est, p_theirs)
            s_est = s_next
        u, s_ours = step(g_ours, s_ours, p_ours)
        v, s_paper = paper.update(g_ours, s_paper, p_ours, hessian_diag=h_ours)
        with loose:
            w, s_theirs = theirs.update(g_theirs, s_theirs, p_theirs, obj_fn=_obj)
        x, s_optax = optax_form.update(g_theirs, s_optax, p_theirs, hessian_diag=h_theirs)
        for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(v)):
            _close(a, b, what=f"ours vs the paper, step {t + 1}")
        for a, b in zip(jax.tree_util.tree_leaves(w), jax.tree_util.tree_leaves(x)):
            _close(a, b, what=f"optax vs its mutant, step {t + 1}")
        p_ours, p_theirs = gx.apply_updates(p_ours, u), optax.apply_updates(p_theirs, w)
    # the checkpoint layout is optax's
    assert [np.shape(x) for x in jax.tree_util.tree_leaves(s_ours)] == [
        np.shape(x) for x in jax.tree_util.tree_leaves(s_theirs)]
    assert s_ours[0]._fields == s_theirs[0]._fields


def test_sophia_first_step_is_not_a_sign_step():
    # h = 0 before the first refresh: optax's first step is -lr * sign(m); the paper's uses h_0.
    f = lambda w: 0.5 * jnp.sum(jnp.array([2.0, 50.0]) * w**2)
    kw = {"b1": 0.0, "b2": 0.0, "gamma": 1.0, "weight_decay": 0.0}
    ours, theirs = gx.contrib.sophia(0.1, **kw), optax.contrib.sophia(0.1, **kw)
    x2 = jnp.array([0.01, 0.01])
    u, _ = ours.update(jax.grad(f)(x2), ours.init(x2), x2, obj_fn=f)
    np.testing.assert_allclose(u, [-0.001, -0.001], rtol=1e-5)  # g / h = x: a Newton step, unclipped
    with loose:
        w, _ = theirs.update(jax.grad(f)(x2), theirs.init(x2), x2, obj_fn=f)
    np.testing.assert_allclose(w, [-0.1, -0.1])  # optax: lr * sign


def test_hutchinson_matches_optax_probe_for_probe():
    key = jax.random.PRNGKey(3)
    ours, theirs = gx.contrib.hutchinson_estimator_diag_hessian(key), optax.contrib.hutchinson_estimator_diag_hessian(key)
    s_ours, s_theirs = ours.init(P0), theirs.init(P0)
    assert gx.contrib.HutchinsonState._fields == optax.contrib.HutchinsonState._fields
    update = jax.jit(lambda s, p: ours.update(None, s, p, obj_fn=_loss))
    their_update = _jit_optax(lambda s, p: theirs.update(None, s, p, obj_fn=_loss))
    for _ in range(4):
        h_ours, s_ours = update(s_ours, P0)
        h_theirs, s_theirs = their_update(s_theirs, P0)
        for a, b in zip(jax.tree_util.tree_leaves(h_ours), jax.tree_util.tree_leaves(h_theirs)):
            _close(a, b)
        np.testing.assert_array_equal(s_ours.key, s_theirs.key)
    # the default seed is optax's
    np.testing.assert_array_equal(gx.contrib.hutchinson_estimator_diag_hessian().init(P0).key,
                                  optax.contrib.hutchinson_estimator_diag_hessian().init(P0).key)


def test_hutchinson_is_unbiased():
    # the exact diagonal of _loss's Hessian: a: [1, 2, 3], b: -cos(b), c: 2 (and H[a0, b01] = 1 off it)
    exact = np.concatenate([[1.0, 2.0, 3.0], -np.cos(np.asarray(P0["b"]).ravel()), [2.0]])
    est = gx.contrib.hutchinson_estimator_diag_hessian()

    def one(key):
        h, _ = est.update(None, gx.contrib.HutchinsonState(key), P0, obj_fn=_loss)
        return jnp.concatenate([h["a"], h["b"].ravel(), h["c"][None]])

    samples = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), 2000)))
    # exact where the Hessian's row has no off-diagonal entry; a0 and b01 are off by z_a0 z_b01 = +-1
    np.testing.assert_allclose(samples[:, [1, 2, 3, 5]], np.broadcast_to(exact[[1, 2, 3, 5]], (2000, 4)), rtol=1e-6)
    np.testing.assert_allclose(np.abs(samples[:, [0, 4]] - exact[[0, 4]]), 1.0, rtol=1e-5)
    np.testing.assert_allclose(samples.mean(axis=0), exact, atol=0.1)  # 4.5 standard errors


# --------------------------------------------------------------------------- normalize


def test_normalize_matches_optax_and_zero_gradients_give_zeros():
    ours, theirs = gx.contrib.normalize(), optax.contrib.normalize()
    rng = np.random.default_rng(0)
    for _ in range(3):
        g = _tmap(lambda p: jnp.asarray(rng.normal(size=np.shape(p)), jnp.float32), P0)
        a, _ = ours.update(g, ours.init(P0))
        b, _ = theirs.update(g, theirs.init(P0))
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            _close(x, y)
    zero = _tmap(jnp.zeros_like, P0)
    u, _ = jax.jit(ours.update)(zero, ours.init(P0))
    assert all(np.array_equal(np.asarray(x), np.zeros(np.shape(x))) for x in jax.tree_util.tree_leaves(u))
    # regression: optax 0.2.8 divides 0 by 0
    w, _ = theirs.update(zero, theirs.init(P0))
    assert np.isnan(np.asarray(w["a"])).all()
    # float16 gradients: the norm is taken in float32 (300^2 * 6 overflows float16)
    big = _tmap(lambda p: jnp.full(np.shape(p), 300.0, jnp.float16), P0)
    u, _ = ours.update(big, ours.init(P0))
    assert u["a"].dtype == jnp.float16
    np.testing.assert_allclose(np.asarray(u["a"], np.float32), 1 / np.sqrt(6), rtol=1e-3)
    assert gx.contrib.NormalizeState._fields == optax.contrib.NormalizeState._fields == ()


# --------------------------------------------------------------------------- SAM


def _sam_configs(o, c):
    return [
        c.sam(o.sgd(0.1), o.chain(c.normalize(), o.sgd(0.05)), sync_period=2),
        c.sam(o.adam(0.05), o.chain(c.normalize(), o.sgd(0.05, momentum=0.5)), sync_period=3, reset_state=False),
        c.sam(o.sgd(0.1, momentum=0.9), o.chain(c.normalize(), o.sgd(0.05, momentum=0.5)), sync_period=3),
    ]


@pytest.mark.parametrize("i", [0, pytest.param(1, marks=_slow), pytest.param(2, marks=_slow)])
def test_sam_matches_optax_over_25_steps(i):
    ours, theirs = _sam_configs(gx, gx.contrib)[i], _sam_configs(optax, optax.contrib)[i]
    s_ours, s_theirs = ours.init(P0), theirs.init(P0)
    step, their_step = jax.jit(ours.update), _jit_optax(theirs.update)
    p_ours = p_theirs = P0
    for t in range(STEPS):
        u, s_ours = step(jax.grad(_loss)(p_ours), s_ours, p_ours)
        w, s_theirs = their_step(jax.grad(_loss)(p_theirs), s_theirs, p_theirs)
        for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(w)):
            _close(a, b, what=f"step {t + 1}")
        p_ours, p_theirs = gx.apply_updates(p_ours, u), optax.apply_updates(p_theirs, w)
    leaves_ours, leaves_theirs = jax.tree_util.tree_leaves(s_ours), jax.tree_util.tree_leaves(s_theirs)
    assert len(leaves_ours) == len(leaves_theirs)
    for a, b in zip(leaves_ours, leaves_theirs):
        assert np.asarray(a).dtype == np.asarray(b).dtype
        _close(a, b, rtol=1e-4)
    assert gx.contrib.SAMState._fields == optax.contrib.SAMState._fields


@pytest.mark.parametrize("reset_state", [True, False])
def test_sam_opaque_matches_optax(reset_state):
    def build(o, c):
        return c.sam(o.sgd(0.1, momentum=0.9), o.chain(c.normalize(), o.sgd(0.05, momentum=0.5)), sync_period=3,
                     opaque_mode=True, reset_state=reset_state)

    ours, theirs = build(gx, gx.contrib), build(optax, optax.contrib)
    grad_fn = lambda p, i: jax.grad(_loss)(p)
    s_ours, s_theirs = ours.init(P0), theirs.init(P0)
    step = jax.jit(lambda g, s, p: ours.update(g, s, p, grad_fn=grad_fn))
    their_step = _jit_optax(theirs.update, grad_fn=grad_fn)
    p_ours = p_theirs = P0
    for t in range(10):
        u, s_ours = step(jax.grad(_loss)(p_ours), s_ours, p_ours)
        w, s_theirs = their_step(jax.grad(_loss)(p_theirs), s_theirs, p_theirs)
        for a, b in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(w)):
            _close(a, b, what=f"step {t + 1}")
        p_ours, p_theirs = gx.apply_updates(p_ours, u), optax.apply_updates(p_theirs, w)
    assert s_ours.cache is None and s_theirs.cache is None


def test_sam_is_the_papers_two_step_update():
    # Algorithm 1: eps = rho g / |g|; w <- w - lr grad L(w + eps)
    rho, lr = 0.05, 0.1
    tx = gx.contrib.sam(gx.sgd(lr), gx.chain(gx.contrib.normalize(), gx.sgd(rho)))
    w, s = P0, tx.init(P0)
    g = jax.grad(_loss)(w)
    norm = np.sqrt(_dot(g, g))
    u, s = tx.update(g, s, w)
    w_adv = gx.apply_updates(w, u)
    for a, b, x in zip(jax.tree_util.tree_leaves(w_adv), jax.tree_util.tree_leaves(w), jax.tree_util.tree_leaves(g)):
        np.testing.assert_allclose(a, np.asarray(b) + rho * np.asarray(x) / norm, rtol=1e-6, atol=1e-7)
    g_adv = jax.grad(_loss)(w_adv)
    u, s = tx.update(g_adv, s, w_adv)
    w_new = gx.apply_updates(w_adv, u)
    for a, b, x in zip(jax.tree_util.tree_leaves(w_new), jax.tree_util.tree_leaves(w), jax.tree_util.tree_leaves(g_adv)):
        np.testing.assert_allclose(a, np.asarray(b) - lr * np.asarray(x), rtol=1e-6, atol=1e-6)


def test_sam_sync_period_one_is_the_outer_optimizer():
    """Regression: optax 0.2.8 returns to the initial params at every step (its cache never refreshes)."""
    tx = gx.contrib.sam(gx.sgd(0.1), gx.chain(gx.contrib.normalize(), gx.sgd(0.05)), sync_period=1)
    sgd = gx.sgd(0.1)
    p, q, s, r = P0, P0, tx.init(P0), sgd.init(P0)
    for _ in range(3):
        u, s = tx.update(jax.grad(_loss)(p), s, p)
        v, r = sgd.update(jax.grad(_loss)(q), r, q)
        p, q = gx.apply_updates(p, u), gx.apply_updates(q, v)
    for a, b in zip(jax.tree_util.tree_leaves(p), jax.tree_util.tree_leaves(q)):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    theirs = optax.contrib.sam(optax.sgd(0.1), optax.chain(optax.contrib.normalize(), optax.sgd(0.05)), sync_period=1)
    p, s = P0, theirs.init(P0)
    for _ in range(3):
        with loose:
            u, s = theirs.update(jax.grad(_loss)(p), s, p)
        p = optax.apply_updates(p, u)
    # optax steps from the params of the step before: p_(k+1) = p_(k-1) - lr g(p_k)
    assert not np.allclose(np.asarray(p["a"]), np.asarray(q["a"]), rtol=1e-3)
    assert np.asarray(s.cache["c"]) == np.asarray(p["c"] - u["c"])  # the cache lags one step


# --------------------------------------------------------------------------- edge cases, validation


@pytest.mark.parametrize("make,extra", [
    (lambda: gx.contrib.momo(), {"value": jnp.float32(0.0)}),
    (lambda: gx.contrib.momo_adam(), {"value": jnp.float32(1.0)}),
    (lambda: gx.contrib.sophia(0.1, weight_decay=0.0), {"obj_fn": lambda p: jnp.float32(0.0) * _loss(p)}),
    (lambda: gx.contrib.normalize(), {}),
])
def test_zero_gradients_give_zero_updates(make, extra):
    tx = make()
    zero = _tmap(jnp.zeros_like, P0)
    s = tx.init(P0)
    for _ in range(2):
        u, s = tx.update(zero, s, P0, **extra)
        for x in jax.tree_util.tree_leaves(u):
            assert np.array_equal(np.asarray(x), np.zeros(np.shape(x))), u


def test_bfloat16_params_keep_their_dtypes():
    p = _tmap(lambda x: x.astype(jnp.bfloat16), P0)
    g = _tmap(lambda x: (0.1 * x + 0.05).astype(jnp.bfloat16), P0)
    for tx, extra in [(gx.contrib.momo(), {"value": jnp.float32(2.0)}), (gx.contrib.momo_adam(), {"value": jnp.float32(2.0)}),
                      (gx.contrib.sophia(0.1), {"obj_fn": lambda q: _loss(_tmap(lambda leaf: leaf.astype(jnp.float32), q))}),
                      (gx.contrib.sam(gx.sgd(0.1), gx.chain(gx.contrib.normalize(), gx.sgd(0.05))), {})]:
        s0 = tx.init(p)
        u, s = tx.update(g, s0, p, **extra)
        u, s = tx.update(g, s, p, **extra)
        assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(u))
        assert [x.dtype for x in jax.tree_util.tree_leaves(s)] == [x.dtype for x in jax.tree_util.tree_leaves(s0)]
        assert all(np.isfinite(np.asarray(x, np.float32)).all() for x in jax.tree_util.tree_leaves(u))


@pytest.mark.parametrize("call,arg", [
    (lambda: gx.contrib.momo(learning_rate=-1.0), "learning_rate"),
    (lambda: gx.contrib.momo(beta=1.0), "beta"),
    (lambda: gx.contrib.momo_adam(b2=-0.1), "b2"),
    (lambda: gx.contrib.momo_adam(weight_decay=-1.0), "weight_decay"),
    (lambda: gx.contrib.sophia(0.1, gamma=0.0), "gamma"),
    (lambda: gx.contrib.sophia(0.1, clip_threshold=0.0), "clip_threshold"),
    (lambda: gx.contrib.sophia(0.1, update_interval=0), "update_interval"),
    (lambda: gx.contrib.sam(gx.sgd(0.1), gx.sgd(0.1), sync_period=0), "sync_period"),
])
def test_impossible_values_raise_naming_the_argument(call, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        call()


def test_missing_extra_arguments_raise():
    x = jnp.ones(2)
    tx = gx.contrib.momo()
    with pytest.raises(ValueError, match="value="):
        tx.update(x, tx.init(x), x)
    with pytest.raises(ValueError, match="params"):
        tx.update(x, tx.init(x), value=1.0)
    tx = gx.contrib.sophia(0.1)
    with pytest.raises(ValueError, match="obj_fn"):
        tx.update(x, tx.init(x), x)
    tx = gx.contrib.sam(gx.sgd(0.1), gx.sgd(0.1), opaque_mode=True)
    with pytest.raises(ValueError, match="grad_fn"):
        tx.update(x, tx.init(x), x)
    with pytest.raises(TypeError, match="adv_optimizer"):
        gx.contrib.sam(gx.sgd(0.1), "sgd")
    assert gx.contrib.sophia(0.1, clip_threshold=None) is not None  # None: no clipping
