"""L-BFGS and its line searches: convergence against scipy, Wolfe/Armijo conditions, optax parity."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

import gradxform as gx
from gradxform.second_order import (
    lbfgs,
    scale_by_backtracking_linesearch,
    scale_by_lbfgs,
    scale_by_zoom_linesearch,
    value_and_grad_from_state,
)


def rosenbrock(w):
    return (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2


def beale(w):
    x, y = w[0], w[1]
    return (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2


PROBLEMS = {
    "rosenbrock": (rosenbrock, np.array([-1.2, 1.0]), np.array([1.0, 1.0])),
    "beale": (beale, np.array([1.0, 1.0]), np.array([3.0, 0.5])),
}


def _ours_iterations(f, x0, x_star, opt, max_iter=200, tol=1e-6):
    """Iterations of `opt` (float64) until max |w - w*| < tol, reusing the search's value and gradient."""
    with jax.enable_x64(True):
        w = jnp.asarray(x0, jnp.float64)
        state = opt.init(w)
        value_and_grad = value_and_grad_from_state(f)

        @jax.jit
        def step(w, state):
            v, g = value_and_grad(w, state=state)
            u, state = opt.update(g, state, w, value=v, grad=g, value_fn=f)
            return gx.apply_updates(w, u), state

        for it in range(1, max_iter + 1):
            w, state = step(w, state)
            if np.max(np.abs(np.asarray(w) - x_star)) < tol:
                return it, np.asarray(w)
        return None, np.asarray(w)


def _scipy_iterations(f, x0, x_star, tol=1e-6):
    """Iterations of scipy's L-BFGS-B (float64, gradients by jax in float64) until max |w - w*| < tol."""
    with jax.enable_x64(True):
        fg = jax.jit(jax.value_and_grad(f))
        iterates = []
        res = scipy.optimize.minimize(
            lambda x: tuple(np.asarray(v, np.float64) for v in fg(jnp.asarray(x, jnp.float64))),
            x0, jac=True, method="L-BFGS-B", callback=lambda x: iterates.append(np.array(x)),
            options={"gtol": 1e-12, "ftol": 1e-16, "maxiter": 500},
        )
    for it, x in enumerate(iterates, start=1):
        if np.max(np.abs(x - x_star)) < tol:
            return it
    raise AssertionError(f"scipy did not reach the minimum: {res}")


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_lbfgs_reaches_the_minimum_like_scipy(name):
    f, x0, x_star = PROBLEMS[name]
    scipy_its = _scipy_iterations(f, x0, x_star)
    zoom_its, w = _ours_iterations(f, x0, x_star, lbfgs())
    print(f"{name}: iterations to 1e-6: gradxform lbfgs (zoom) {zoom_its}, scipy L-BFGS-B {scipy_its}")
    assert zoom_its is not None, w
    np.testing.assert_allclose(w, x_star, atol=1e-6)
    assert zoom_its <= 1.25 * scipy_its + 3


def test_lbfgs_in_float32_under_scan():
    opt = lbfgs()
    value_and_grad = value_and_grad_from_state(rosenbrock)

    def body(carry, _):
        w, state = carry
        v, g = value_and_grad(w, state=state)
        u, state = opt.update(g, state, w, value=v, grad=g, value_fn=rosenbrock)
        return (gx.apply_updates(w, u), state), None

    w0 = jnp.array([-1.2, 1.0])
    (w, state), _ = jax.jit(lambda: jax.lax.scan(body, (w0, opt.init(w0)), None, length=60))()
    assert w.dtype == jnp.float32
    np.testing.assert_allclose(w, [1.0, 1.0], atol=1e-3)


# ----------------------------------------------------------------------------- the line searches


def _phi(f, w, u):
    return lambda a: f(w + a * u), lambda a: jnp.dot(jax.grad(f)(w + a * u), u)


@pytest.mark.parametrize("start", [(-1.2, 1.0), (0.0, 0.0), (2.0, 2.5), (-0.5, 3.0)])
@pytest.mark.parametrize("guess", ["one", "keep"])
def test_zoom_step_satisfies_the_strong_wolfe_conditions(start, guess):
    w = jnp.asarray(start, jnp.float32)
    v, g = jax.value_and_grad(rosenbrock)(w)
    u = -g / jnp.linalg.norm(g) * 3.0  # a descent direction whose unit step is far too long
    c1, c2 = 1e-4, 0.9
    tx = scale_by_zoom_linesearch(30, slope_rtol=c1, curv_rtol=c2, initial_guess_strategy=guess,
                                  approx_dec_rtol=None)
    out, state = jax.jit(lambda u, s: tx.update(u, s, w, value=v, grad=g, value_fn=rosenbrock))(u, tx.init(w))
    a = float(state.learning_rate)
    phi, dphi = _phi(rosenbrock, w, u)
    assert a > 0
    assert float(phi(a)) <= float(v) + c1 * a * float(jnp.dot(g, u)) + 1e-6
    assert abs(float(dphi(a))) <= c2 * abs(float(jnp.dot(g, u))) + 1e-5
    np.testing.assert_allclose(out, a * u, rtol=1e-6)
    # The stored value and gradient are those at the new point.
    np.testing.assert_allclose(state.value, phi(a), rtol=1e-5)
    np.testing.assert_allclose(state.grad, jax.grad(rosenbrock)(w + a * u), rtol=1e-4, atol=1e-4)
    assert int(state.info.num_linesearch_steps) >= 1
    assert float(state.info.decrease_error) == 0 and float(state.info.curvature_error) == 0


def test_zoom_returns_a_zero_step_for_an_ascent_direction():
    w = jnp.array([0.5, 0.5])
    v, g = jax.value_and_grad(rosenbrock)(w)
    tx = scale_by_zoom_linesearch(10)
    out, state = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=rosenbrock)
    np.testing.assert_allclose(out, 0.0)
    assert float(state.value) == pytest.approx(float(v))


def test_backtracking_satisfies_armijo_and_matches_optax():
    f = lambda p: jnp.sum(p["a"] ** 4) + jnp.sum(jnp.cos(3 * p["b"]))  # noqa: E731
    params = {"a": jnp.array([1.5, -2.0]), "b": jnp.array([0.3, 1.0, -0.7])}
    ours = gx.chain(gx.sgd(1.0), scale_by_backtracking_linesearch(20, store_grad=True))
    theirs = optax.chain(optax.sgd(1.0), optax.scale_by_backtracking_linesearch(20, store_grad=True))
    so, st = ours.init(params), theirs.init(params)
    p_o = p_t = params
    step_o = jax.jit(lambda g, s, p, v: ours.update(g, s, p, value=v, grad=g, value_fn=f))
    for _ in range(6):
        v, g = jax.value_and_grad(f)(p_o)
        u_o, so = step_o(g, so, p_o, v)
        lr = float(so[1].learning_rate)
        slope = -sum(float(jnp.sum(x * x)) for x in jax.tree_util.tree_leaves(g))
        new = gx.apply_updates(p_o, u_o)
        assert float(f(new)) <= float(v) + 1e-4 * lr * slope + 1e-6  # Armijo
        np.testing.assert_allclose(so[1].value, f(new), rtol=1e-6)
        v_t, g_t = jax.value_and_grad(f)(p_t)
        u_t, st = theirs.update(g_t, st, p_t, value=v_t, grad=g_t, value_fn=f)
        assert lr == pytest.approx(float(st[1].learning_rate), rel=1e-6)
        for x, y in zip(jax.tree_util.tree_leaves(u_o), jax.tree_util.tree_leaves(u_t)):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
        p_o, p_t = new, optax.apply_updates(p_t, u_t)


def _convex_pytree_problem():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(10, 10))
    a = jnp.asarray(m @ m.T / 10 + 0.2 * np.eye(10), jnp.float32)
    params = {"x": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "y": jnp.asarray(rng.normal(size=4), jnp.float32)}

    def f(p):
        w = jnp.concatenate([p["x"].ravel(), p["y"]])
        return 0.5 * w @ a @ w + jnp.sum(jnp.cosh(0.3 * w))

    return params, f


def test_lbfgs_direction_and_fixed_step_match_optax_on_a_convex_problem():
    """Where every pair has positive curvature the numbers are optax's."""
    params, f = _convex_pytree_problem()
    for ours, theirs, step_size in [
        (scale_by_lbfgs(3), optax.scale_by_lbfgs(3), -0.1),  # the direction has the gradient's sign
        (lbfgs(0.05, 4, scale_init_precond=False, linesearch=None),
         optax.lbfgs(0.05, 4, scale_init_precond=False, linesearch=None), 1.0),
    ]:
        so, st, p = ours.init(params), theirs.init(params), params
        step_o, step_t = jax.jit(ours.update), jax.jit(theirs.update)
        for _ in range(6):
            g = jax.grad(f)(p)
            u_o, so = step_o(g, so, p)
            u_t, st = step_t(g, st, p)
            for x, y in zip(jax.tree_util.tree_leaves(u_o), jax.tree_util.tree_leaves(u_t)):
                np.testing.assert_allclose(x, y, rtol=2e-4, atol=1e-5)
            p = gx.apply_updates(p, jax.tree_util.tree_map(lambda u, c=step_size: c * u, u_o))


def test_optax_lbfgs_with_backtracking_stalls_on_rosenbrock_and_ours_does_not():
    """Regression: optax keeps negative-curvature pairs; with Armijo backtracking its direction
    turns uphill, the search returns step 0, and nothing changes again."""
    def run(opt, apply, value_and_grad_from_state_fn):
        with jax.enable_x64(True):
            w, s = jnp.array([-1.2, 1.0], jnp.float64), opt.init(jnp.array([-1.2, 1.0], jnp.float64))
            vg = value_and_grad_from_state_fn(rosenbrock)

            @jax.jit
            def step(w, s):
                v, g = vg(w, state=s)
                u, s = opt.update(g, s, w, value=v, grad=g, value_fn=rosenbrock)
                return apply(w, u), s

            for it in range(1, 81):
                w, s = step(w, s)
                if np.max(np.abs(np.asarray(w) - 1.0)) < 1e-6:
                    break
            return np.asarray(w), it

    with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 and int64 under x64
        theirs, _ = run(optax.lbfgs(linesearch=optax.scale_by_backtracking_linesearch(30, store_grad=True)),
                     optax.apply_updates, optax.value_and_grad_from_state)
    ours, its = run(lbfgs(linesearch=scale_by_backtracking_linesearch(30, store_grad=True)),
                    gx.apply_updates, value_and_grad_from_state)
    print(f"rosenbrock: gradxform lbfgs (backtracking) reaches 1e-6 in {its} iterations; optax stops at {theirs}")
    assert np.max(np.abs(theirs - 1.0)) > 0.5  # optax 0.2.8: stuck near (-0.888, 0.831)
    np.testing.assert_allclose(ours, [1.0, 1.0], atol=1e-6)
    assert its <= 60


# ----------------------------------------------------------------------------- extra arguments


def test_value_fn_receives_the_extra_arguments_it_names():
    x = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]])
    y = jnp.array([1.0, 0.0, 2.0])

    def loss(w, x, y):
        return jnp.mean((x @ w - y) ** 2)

    opt = lbfgs()

    @jax.jit
    def step(w, s, x, y):
        v, g = jax.value_and_grad(loss)(w, x, y)
        # `hessian_diag` is meant for another transformation: the line search ignores it.
        u, s = opt.update(g, s, w, value=v, grad=g, value_fn=loss, x=x, y=y, hessian_diag=None)
        return gx.apply_updates(w, u), s

    w, s = jnp.zeros(2), opt.init(jnp.zeros(2))
    for _ in range(10):
        w, s = step(w, s, x, y)
    np.testing.assert_allclose(w, np.linalg.lstsq(np.asarray(x), np.asarray(y), rcond=None)[0], atol=1e-4)


def test_value_and_grad_from_state_reuses_the_search_and_starts_fresh():
    f = lambda w: jnp.sum((w - 2.0) ** 2) + jnp.sum(w**4)  # noqa: E731
    opt = lbfgs()
    w = jnp.array([1.0, -1.0, 0.5])
    state = opt.init(w)
    vg = value_and_grad_from_state(f)
    v0, g0 = vg(w, state=state)  # nothing stored yet: computed afresh
    np.testing.assert_allclose(v0, f(w))
    np.testing.assert_allclose(g0, jax.grad(f)(w))
    u, state = jax.jit(lambda g, s, w, v: opt.update(g, s, w, value=v, grad=g, value_fn=f))(g0, state, w, v0)
    w = gx.apply_updates(w, u)
    v1, g1 = vg(w, state=state)
    np.testing.assert_allclose(v1, f(w), rtol=1e-6)
    np.testing.assert_allclose(g1, jax.grad(f)(w), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="exactly one"):
        vg(w, state=gx.adam(0.1).init(w))
    bt = gx.chain(gx.sgd(1.0), scale_by_backtracking_linesearch(5))
    with pytest.raises(ValueError, match="store_grad"):
        vg(w, state=bt.init(w))


def test_line_search_needs_value_grad_and_value_fn():
    opt = lbfgs()
    w = jnp.ones(2)
    with pytest.raises(ValueError, match="value_fn"):
        opt.update(w, opt.init(w), w, value=1.0, grad=w)


@pytest.mark.parametrize(
    "build,arg",
    [
        (lambda: lbfgs(memory_size=0), "memory_size"),
        (lambda: lbfgs(learning_rate=-1.0), "learning_rate"),
        (lambda: scale_by_zoom_linesearch(0), "max_linesearch_steps"),
        (lambda: scale_by_zoom_linesearch(10, slope_rtol=1.0), "slope_rtol"),
        (lambda: scale_by_zoom_linesearch(10, increase_factor=1.0), "increase_factor"),
        (lambda: scale_by_zoom_linesearch(10, initial_guess_strategy="max"), "initial_guess_strategy"),
        (lambda: scale_by_backtracking_linesearch(10, decrease_factor=1.0), "decrease_factor"),
        (lambda: scale_by_backtracking_linesearch(-1), "max_backtracking_steps"),
        (lambda: scale_by_backtracking_linesearch(10, max_learning_rate=0.0), "max_learning_rate"),
    ],
)
def test_invalid_arguments_raise(build, arg):
    with pytest.raises(ValueError, match=arg):
        build()


def test_lbfgs_keeps_bf16_params_and_dtypes():
    f = lambda p: jnp.sum((p["w"].astype(jnp.float32) - 1.0) ** 2)  # noqa: E731
    params = {"w": jnp.zeros(4, jnp.bfloat16)}
    opt = lbfgs()
    state = opt.init(params)
    dtypes = [x.dtype for x in jax.tree_util.tree_leaves(state)]
    step = jax.jit(lambda p, s: opt.update(jax.grad(f)(p), s, p, value=f(p), grad=jax.grad(f)(p), value_fn=f))
    for _ in range(3):
        u, state = step(params, state)
        assert u["w"].dtype == jnp.bfloat16
        assert [x.dtype for x in jax.tree_util.tree_leaves(state)] == dtypes
        params = gx.apply_updates(params, u)
    np.testing.assert_allclose(np.asarray(params["w"], np.float32), 1.0, atol=1e-2)
