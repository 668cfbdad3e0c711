"""Hessian-vector products, Hutchinson's estimator and AdaHessian."""

import math

import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform.second_order import (
    adahessian,
    dense_hessian,
    grad_and_hutchinson_diagonal,
    hutchinson_diagonal,
    hvp,
    scale_by_adahessian,
)

# A small non-quadratic objective over a nested pytree with a scalar and a matrix leaf.
PARAMS = {"w": jnp.array([[0.3, -0.2], [0.1, 0.4]]), "b": (jnp.array(0.5), jnp.array([1.0, -1.0, 0.2]))}


def objective(p):
    w, (s, v) = p["w"], p["b"]
    return jnp.sum(jnp.sin(w) * w[::-1]) + s**2 * jnp.sum(v**3) + jnp.sum(jnp.outer(v, w[0])) ** 2


def _flat(tree):
    return jax.flatten_util.ravel_pytree(tree)[0]


def _true_hessian(fn, params):
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    return jax.hessian(lambda x: fn(unravel(x)))(flat)


# ----------------------------------------------------------------------------- hvp / dense Hessian


def test_hvp_matches_dense_hessian_product_on_a_pytree():
    h = jax.jit(_true_hessian, static_argnums=0)(objective, PARAMS)
    v = jax.tree_util.tree_map(lambda x: jnp.cos(jnp.arange(x.size, dtype=jnp.float32)).reshape(x.shape), PARAMS)
    got = jax.jit(hvp, static_argnums=0)(objective, PARAMS, v)
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(PARAMS)
    np.testing.assert_allclose(_flat(got), h @ _flat(v), rtol=1e-5, atol=1e-5)


def test_dense_hessian_matches_ravel_pytree_order():
    got = jax.jit(dense_hessian, static_argnums=0)(objective, PARAMS)
    np.testing.assert_allclose(got, jax.jit(_true_hessian, static_argnums=0)(objective, PARAMS), rtol=1e-6, atol=1e-6)


def test_hvp_keeps_params_dtype_and_rejects_mismatched_v():
    p = {"a": jnp.ones(3, jnp.bfloat16)}
    out = hvp(lambda q: jnp.sum(q["a"].astype(jnp.float32) ** 2), p, {"a": jnp.ones(3, jnp.float32)})
    assert out["a"].dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out["a"], np.float32), 2.0)
    with pytest.raises(ValueError, match=r"\['a'\]"):
        hvp(lambda q: jnp.sum(q["a"] ** 2), {"a": jnp.ones(3)}, {"a": jnp.ones(4)})


# ----------------------------------------------------------------------------- Hutchinson


def test_hutchinson_is_exact_for_a_diagonal_hessian():
    a = jnp.array([1.0, 4.0, 0.25, 9.0])
    d = hutchinson_diagonal(lambda w: 0.5 * jnp.sum(a * w**2) + jnp.sum(w), jnp.zeros(4), jax.random.PRNGKey(3))
    np.testing.assert_allclose(d, a)


def test_hutchinson_error_shrinks_like_one_over_sqrt_n():
    """On a known dense Hessian, the RMS error over seeds follows sigma / sqrt(n).

    One Rademacher probe gives coordinate j the variance sum_{k != j} A_jk^2 (exactly),
    so the expected squared error of the n-sample mean is that sum over j, divided by n.
    """
    rng = np.random.default_rng(0)
    m = rng.normal(size=(6, 6))
    a = jnp.asarray(m @ m.T / 6 + np.eye(6), jnp.float32)
    f = lambda w: 0.5 * w @ a @ w  # noqa: E731
    var_one = float(np.sum(np.asarray(a) ** 2) - np.sum(np.diag(np.asarray(a)) ** 2))
    # 200 independent runs of 64 single-probe estimates, in one compiled call; the n-sample
    # estimate of a run is the mean of its first n probes.
    keys = jax.random.split(jax.random.PRNGKey(1), 200 * 64)
    probes = jax.jit(jax.vmap(lambda k: hutchinson_diagonal(f, jnp.zeros(6), k, 1)))(keys).reshape(200, 64, 6)
    errors = {}
    for n in (1, 4, 16, 64):
        est = probes[:, :n].mean(axis=1)
        mse = float(jnp.mean(jnp.sum((est - jnp.diag(a)) ** 2, axis=1)))
        errors[n] = math.sqrt(mse)
        # The empirical MSE over 200 runs is within 25% of the exact var_one / n.
        assert mse == pytest.approx(var_one / n, rel=0.25), (n, mse, var_one / n)
    rms = {n: round(e, 4) for n, e in errors.items()}
    print("Hutchinson RMS error by samples:", rms, "sigma_1 =", math.sqrt(var_one))
    # Error ratio between n and 16 n is about 4 (1 / sqrt(n)).
    assert errors[1] / errors[16] == pytest.approx(4.0, rel=0.25)
    assert errors[4] / errors[64] == pytest.approx(4.0, rel=0.25)


def test_hutchinson_mean_is_the_true_diagonal_on_a_pytree():
    est = jax.jit(jax.vmap(lambda k: _flat(hutchinson_diagonal(objective, PARAMS, k, 4))))(
        jax.random.split(jax.random.PRNGKey(0), 256)
    )
    true = jnp.diag(jax.jit(_true_hessian, static_argnums=0)(objective, PARAMS))
    sem = jnp.std(est, axis=0) / math.sqrt(est.shape[0])
    assert bool(jnp.all(jnp.abs(est.mean(0) - true) <= 5 * sem + 1e-5))


def test_grad_and_hutchinson_share_the_pass():
    both = jax.jit(lambda k: (grad_and_hutchinson_diagonal(objective, PARAMS, k, 3),
                              hutchinson_diagonal(objective, PARAMS, k, 3), jax.grad(objective)(PARAMS)))
    (g, d), d_alone, g_true = both(jax.random.PRNGKey(5))
    np.testing.assert_allclose(_flat(g), _flat(g_true), rtol=1e-6)
    np.testing.assert_allclose(_flat(d), _flat(d_alone), rtol=1e-6)


def test_hutchinson_rejects_zero_samples():
    with pytest.raises(ValueError, match="num_samples"):
        hutchinson_diagonal(objective, PARAMS, jax.random.PRNGKey(0), 0)


# ----------------------------------------------------------------------------- AdaHessian


def test_adahessian_first_steps_match_the_papers_formula():
    b1, b2, eps, k = 0.8, 0.9, 1e-3, 0.5
    tx = scale_by_adahessian(b1, b2, eps, k)
    gs = [np.array([1.0, -2.0, 0.5]), np.array([0.5, 1.0, -1.0])]
    ds = [np.array([4.0, -1.0, 0.25]), np.array([2.0, 3.0, 1.0])]
    state = tx.init(jnp.zeros(3))
    m = v = np.zeros(3)
    for t, (g, d) in enumerate(zip(gs, ds), start=1):
        u, state = tx.update(jnp.asarray(g, jnp.float32), state, hessian_diag=jnp.asarray(d, jnp.float32))
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * d * d
        want = (m / (1 - b1**t)) / ((np.sqrt(v) / np.sqrt(1 - b2**t)) ** k + eps)
        np.testing.assert_allclose(u, want, rtol=1e-6)


def test_adahessian_spatial_average_over_kernel_axes():
    g = jnp.ones((3, 3, 2, 4))
    d = jax.random.normal(jax.random.PRNGKey(0), g.shape)
    tx = scale_by_adahessian(b1=0.0, b2=0.0, eps=0.0, spatial_average=True)
    params = {"k": g, "b": jnp.ones(4)}
    u, _ = jax.jit(tx.update)(params, tx.init(params), hessian_diag={"k": d, "b": jnp.full(4, -2.0)})
    block = jnp.mean(jnp.abs(d), axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(u["k"], jnp.broadcast_to(1.0 / block, g.shape), rtol=1e-6)
    np.testing.assert_allclose(u["b"], 0.5)  # 1-D leaves are not averaged; |D| = 2


def test_adahessian_with_exact_diagonal_is_newton_on_a_separable_quadratic():
    """b1 = b2 = 0, k = 1, eps = 0, lr = 1: u = g / |diag H|, the per-coordinate optimal rate 1/a_ii (LeCun et al., 1998)."""
    a, b = jnp.array([1.0, 10.0, 100.0]), jnp.array([1.0, -2.0, 3.0])
    f = lambda w: 0.5 * jnp.sum(a * w**2) + jnp.sum(b * w)  # noqa: E731
    opt = adahessian(1.0, b1=0.0, b2=0.0, eps=0.0)
    w = jnp.zeros(3)
    g, d = grad_and_hutchinson_diagonal(f, w, jax.random.PRNGKey(0))
    u, _ = opt.update(g, opt.init(w), w, hessian_diag=d)
    np.testing.assert_allclose(gx.apply_updates(w, u), -b / a, rtol=1e-6)


def test_adahessian_needs_hessian_diag_and_matching_trees():
    tx = scale_by_adahessian()
    state = tx.init({"a": jnp.zeros(2)})
    with pytest.raises(ValueError, match="hessian_diag"):
        tx.update({"a": jnp.ones(2)}, state)
    with pytest.raises(ValueError, match=r"\['a'\]"):
        tx.update({"a": jnp.ones(2)}, state, hessian_diag={"a": jnp.ones(3)})
    with pytest.raises(TypeError, match="ScaleByAdaHessianState"):
        tx.update({"a": jnp.ones(2)}, gx.scale_by_adam().init({"a": jnp.zeros(2)}), hessian_diag={"a": jnp.ones(2)})


def _mlp_problem():
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    scales = jnp.array([1.0, 1.0, 1.0, 1.0, 5.0, 5.0, 0.2, 0.2])  # badly scaled inputs
    x = jax.random.normal(k1, (256, 8)) * scales
    labels = jnp.argmax(jnp.tanh(x / scales) @ jax.random.normal(k4, (8, 3)), axis=1)
    a, b = jax.random.split(k2)
    params = {"w1": jax.random.normal(a, (8, 16)) / jnp.sqrt(8.0), "b1": jnp.zeros(16),
              "w2": jax.random.normal(b, (16, 3)) / 4.0, "b2": jnp.zeros(3)}

    def loss(p):
        logits = jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        return jnp.mean(jax.nn.logsumexp(logits, axis=1) - jnp.take_along_axis(logits, labels[:, None], 1)[:, 0])

    return params, loss, k3


@pytest.mark.slow
def test_adahessian_trains_a_small_mlp_compared_with_adam():
    """200 full-batch steps on a 3-class tanh MLP (8-16-3, badly scaled inputs), each optimizer
    at the best learning rate of a grid measured once (Adam: 1e-3 .. 0.5, best 0.3; AdaHessian:
    1e-2 .. 3, best 1.0). Measured: Adam reaches about 8.7e-4, AdaHessian (one Rademacher probe
    per step) about 1.5e-3, so AdaHessian does NOT beat tuned Adam on this problem (it does
    at each optimizer's customary default, 0.15 vs 1e-3: 3.0e-2 vs 0.61). Asserted: both train
    (the loss falls below 1/100 of its start) and AdaHessian stays within a factor 4 of Adam.
    Marked slow (about 15 s on a loaded 2-core machine): run with --runslow."""
    params, loss, key = _mlp_problem()
    steps = 200

    def train(opt, with_hessian):
        def step(c, k):
            p, s = c
            if with_hessian:
                g, d = grad_and_hutchinson_diagonal(loss, p, k)
                u, s = opt.update(g, s, p, hessian_diag=d)
            else:
                u, s = opt.update(jax.grad(loss)(p), s, p)
            return (gx.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
        return loss(p)

    start = float(loss(params))
    l_adam = float(jax.jit(lambda: train(gx.adam(0.3), False))())
    l_ada = float(jax.jit(lambda: train(adahessian(1.0), True))())
    print(f"MLP loss after {steps} steps: start {start:.4f}, adam {l_adam:.3e}, adahessian {l_ada:.3e}")
    assert l_adam < start / 100 and l_ada < start / 100
    assert l_ada < 4 * l_adam
