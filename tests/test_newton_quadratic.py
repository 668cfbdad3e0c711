"""The quadratic E = 1/2 w^T A w + w^T b: Newton, per-coordinate rates, the 2/max a_ii threshold.

The claims of LeCun, Bottou, Orr & Müller, "Efficient BackProp" (1998), Section 5.1,
and Goodfellow et al. (2016), Section 8.6.1, checked as stated: for a diagonal positive A the minimum is
w* = -A^{-1} b; Newton's step reaches it at once; gradient descent with the
per-coordinate optimal rates eta_i = 1/a_ii does too; a single rate converges
iff eta < 2 min_i eta_i,opt = 2 / max_i a_ii.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform.second_order import dense_hessian, scale_by_newton
from gradxform.second_order._newton import damped_cholesky

A_DIAG = jnp.array([0.5, 2.0, 8.0, 20.0])
B = jnp.array([1.0, -3.0, 2.0, 0.5])
W_STAR = -B / A_DIAG


def energy(w):
    return 0.5 * jnp.sum(A_DIAG * w**2) + jnp.sum(B * w)


def _newton():
    return gx.chain(scale_by_newton(), gx.scale_by_learning_rate(1.0))


def test_newton_reaches_the_minimum_in_one_step():
    w = jnp.array([3.0, -1.0, 0.7, 2.0])
    tx = _newton()
    u, _ = tx.update(jax.grad(energy)(w), tx.init(w), w, hessian=dense_hessian(energy, w))
    np.testing.assert_allclose(gx.apply_updates(w, u), W_STAR, rtol=1e-6, atol=1e-6)  # f32 cancellation


def test_per_coordinate_rates_one_over_a_ii_reach_the_minimum_in_one_step():
    w = jnp.array([3.0, -1.0, 0.7, 2.0])
    tx = gx.chain(gx.scale(1.0 / A_DIAG), gx.scale_by_learning_rate(1.0))  # eta_i = 1 / a_ii
    u, _ = tx.update(jax.grad(energy)(w), tx.init(w), w)
    np.testing.assert_allclose(gx.apply_updates(w, u), W_STAR, rtol=1e-6, atol=1e-6)


def _run_sgd(eta, steps):
    opt = gx.sgd(eta)

    def body(carry, _):
        w, s = carry
        u, s = opt.update(jax.grad(energy)(w), s, w)
        return (gx.apply_updates(w, u), s), None

    w0 = jnp.zeros(4)
    (w, _), _ = jax.lax.scan(body, (w0, opt.init(w0)), None, length=steps)
    return w0, w


@pytest.mark.parametrize("ratio", [0.99, 0.9, 0.5])
def test_single_rate_below_two_over_max_a_ii_converges(ratio):
    eta = ratio * 2.0 / float(jnp.max(A_DIAG))
    _, w = _run_sgd(eta, steps=2000)
    np.testing.assert_allclose(w, W_STAR, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("ratio", [1.01, 1.1])
def test_single_rate_above_two_over_max_a_ii_diverges(ratio):
    eta = ratio * 2.0 / float(jnp.max(A_DIAG))
    steps = 300  # 1.2 ** 300 * 0.025 stays below float32's maximum
    w0, w = _run_sgd(eta, steps)
    err0, err = np.abs(np.asarray(w0 - W_STAR)), np.abs(np.asarray(w - W_STAR))
    # Each coordinate's error is multiplied by |1 - eta a_ii| per step: the stiffest one by
    # 2 ratio - 1 > 1 (it diverges), the others by less than 1 (they converge).
    factors = np.abs(1 - eta * np.asarray(A_DIAG, np.float64))
    assert factors[-1] == pytest.approx(2 * ratio - 1)
    np.testing.assert_allclose(err[-1], err0[-1] * factors[-1] ** steps, rtol=1e-3)
    assert err[-1] > 100 * err0[-1]
    assert np.all(err[:-1] < 1e-4)


def test_newton_on_a_dense_quadratic_pytree_matches_a_linear_solve():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(5, 5))
    a = m @ m.T + 0.5 * np.eye(5)
    b = rng.normal(size=5)

    def f(p):
        w = jnp.concatenate([p["x"].ravel(), p["y"][None]])
        return 0.5 * w @ jnp.asarray(a, jnp.float32) @ w + jnp.asarray(b, jnp.float32) @ w

    params = {"x": jnp.ones((2, 2)), "y": jnp.array(-1.0)}
    tx = _newton()
    u, _ = jax.jit(tx.update)(jax.grad(f)(params), tx.init(params), params, hessian=dense_hessian(f, params))
    new = gx.apply_updates(params, u)
    got = np.concatenate([np.asarray(new["x"]).ravel(), [float(new["y"])]])
    np.testing.assert_allclose(got, np.linalg.solve(a, -b), rtol=1e-4, atol=1e-5)


def test_indefinite_hessian_is_damped_into_a_descent_direction():
    """Nocedal & Wright Algorithm 3.3 by hand: beta = 1e-3 max(max|H|, 1), tau0 = beta - min H_ii,
    then doubling until H + tau I has a Cholesky factor."""
    h = np.array([[2.0, 0.0], [0.0, -1.0]])
    beta = 1e-3 * 2.0
    tau = beta - (-1.0)  # 1.002: H + tau I = diag(3.002, 0.002) is positive definite at once
    _, got_tau = damped_cholesky(jnp.asarray(h, jnp.float32), 0.0)
    assert float(got_tau) == pytest.approx(tau, rel=1e-6)
    g = jnp.array([1.0, 1.0])
    tx = scale_by_newton()
    u, state = tx.update(g, tx.init(g), hessian=jnp.asarray(h, jnp.float32))
    np.testing.assert_allclose(u, np.linalg.solve(h + tau * np.eye(2), np.asarray(g)), rtol=1e-4)
    assert float(state.damping) == pytest.approx(tau, rel=1e-6)
    assert float(jnp.dot(u, g)) > 0  # u has the gradient's sign: -u is a descent direction


def test_damping_doubles_until_positive_definite():
    # diag(1, -1) with a given damping of 0.5: 0.5 fails (-0.5), max(1.0, beta) fails (0), 2.0 works.
    _, tau = damped_cholesky(jnp.diag(jnp.array([1.0, -1.0])), 0.5)
    assert float(tau) == pytest.approx(2.0)


def test_positive_definite_hessian_with_damping_is_levenberg():
    h = jnp.diag(A_DIAG)
    g = jax.grad(energy)(jnp.zeros(4))
    tx = scale_by_newton(damping=0.3)
    u, state = tx.update(g, tx.init(g), hessian=h)
    np.testing.assert_allclose(u, g / (A_DIAG + 0.3), rtol=1e-6)
    assert float(state.damping) == pytest.approx(0.3)


def test_newton_solves_rather_than_inverts():
    jaxpr = str(jax.make_jaxpr(lambda g, h: scale_by_newton().update(g, scale_by_newton().init(g), hessian=h))(
        jnp.ones(3), jnp.eye(3)))
    assert "cholesky" in jaxpr and "triangular_solve" in jaxpr
    assert " lu" not in jaxpr and "inv" not in jaxpr.replace("invalid", "")


def test_newton_validation_and_errors():
    with pytest.raises(ValueError, match="damping"):
        scale_by_newton(damping=-1.0)
    tx = scale_by_newton()
    params = {"a": jnp.ones(2), "b": jnp.ones(3)}
    with pytest.raises(ValueError, match="hessian"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match=r"\(5, 5\)"):
        tx.update(params, tx.init(params), hessian=jnp.eye(4))
    with pytest.raises(TypeError, match="ScaleByNewtonState"):
        tx.update(params, gx.EmptyState(), hessian=jnp.eye(5))


def test_newton_keeps_bf16_updates_and_float32_state():
    p = jnp.ones(3, jnp.bfloat16)
    tx = scale_by_newton()
    u, s = tx.update(p, tx.init(p), hessian=2 * jnp.eye(3))
    assert u.dtype == jnp.bfloat16 and s.damping.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(u, np.float32), 0.5)
