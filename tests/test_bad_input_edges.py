"""Edge inputs that used to give NaN, inf, a wrong shape or an unhelpful error.

L-BFGS on an objective that is NaN everywhere keeps the params; `dense_hessian`
of a non-scalar function, an empty or integer batch for `batch_norm`, a float
`num_features` and float dimensions for the initializers are rejected (or, for
integers, normalized in float32) with errors naming the value; batch norm with
``eps=0`` on a feature of zero variance gives ``beta``, not 0/0.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
import gradxform.nn._initializers as inits

# --------------------------------------------------------------------------- L-BFGS


def _nan_everywhere(w):
    return jnp.sum(w) * jnp.nan


@pytest.mark.parametrize("search", ["zoom", "backtracking"])
def test_lbfgs_keeps_params_when_the_objective_is_nan_everywhere(search):
    linesearch = (
        gx.scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one")
        if search == "zoom"
        else gx.scale_by_backtracking_linesearch(max_backtracking_steps=5, store_grad=True)
    )
    opt = gx.lbfgs(linesearch=linesearch)
    w = jnp.array([1.0, -2.0])
    state = opt.init(w)
    for _ in range(2):
        v, g = jax.value_and_grad(_nan_everywhere)(w)
        u, state = opt.update(g, state, w, value=v, grad=g, value_fn=_nan_everywhere)
        assert np.array_equal(np.asarray(u), np.zeros(2)), u  # exactly no step (0 * nan would be nan)
        w = gx.apply_updates(w, u)
    np.testing.assert_array_equal(np.asarray(w), [1.0, -2.0])
    lbfgs_state, search_state = state[0], state[-1]
    assert float(search_state.learning_rate) == 0
    assert float(search_state.info.decrease_error) == np.inf  # the failure is reported (optax: inf too)
    if search == "zoom":
        assert float(search_state.info.curvature_error) == np.inf
    # The NaN curvature pairs were not stored: the memory stays finite (zeros).
    for mem in (lbfgs_state.diff_params_memory, lbfgs_state.diff_updates_memory):
        assert np.all(np.asarray(mem) == 0)


def test_zoom_reports_success_on_a_good_step():
    # The other side of the failure report: a quadratic's exact step has both errors 0.
    f = lambda w: jnp.sum((w - 3.0) ** 2)  # noqa: E731
    tx = gx.chain(gx.scale(-1.0), gx.scale_by_zoom_linesearch(10))
    w = jnp.zeros(2)
    v, g = jax.value_and_grad(f)(w)
    _, state = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f)
    assert float(state[1].info.decrease_error) == 0 and float(state[1].info.curvature_error) == 0


def test_zoom_reports_an_uphill_direction_as_failed():
    # The direction +g increases f at every step size: no step, and the report says failed
    # (before: decrease_error 0 at step 0, as if the search had succeeded).
    f = lambda w: jnp.sum((w - 3.0) ** 2)  # noqa: E731
    tx = gx.chain(gx.scale(1.0), gx.scale_by_zoom_linesearch(10))
    w = jnp.zeros(2)
    v, g = jax.value_and_grad(f)(w)
    u, state = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f)
    np.testing.assert_array_equal(np.asarray(u), [0.0, 0.0])
    assert float(state[1].learning_rate) == 0
    assert float(state[1].info.decrease_error) == np.inf and float(state[1].info.curvature_error) == np.inf


def test_scale_by_lbfgs_skips_a_nan_pair_for_good():
    # Step 1 finite, step 2 a NaN gradient, step 3 finite again (params fixed). Both pairs
    # touching the NaN gradient are skipped, so step 3 is the memoryless first step
    # g / max(1, |g|) (Nocedal & Wright's gamma fallback) and not NaN.
    tx = gx.scale_by_lbfgs(memory_size=3)
    w = jnp.array([0.5, 1.0, -1.0])
    state = tx.init(w)
    g1, g3 = jnp.array([1.0, 2.0, 2.0]), jnp.array([0.3, -0.4, 1.2])
    _, state = tx.update(g1, state, w)
    _, state = tx.update(jnp.full(3, jnp.nan), state, w + 0.1)
    u, state = tx.update(g3, state, w + 0.2)
    g = np.asarray(g3, np.float64)
    np.testing.assert_allclose(np.asarray(u), g / max(1.0, np.linalg.norm(g)), rtol=1e-6)
    assert np.all(np.isfinite(np.asarray(state.diff_params_memory)))
    assert np.all(np.isfinite(np.asarray(state.diff_updates_memory)))


# --------------------------------------------------------------------------- dense_hessian


def test_dense_hessian_rejects_a_non_scalar_function():
    with pytest.raises(ValueError, match=r"dense_hessian: `fn` must return a scalar.*shape \(2,\)"):
        gx.second_order.dense_hessian(lambda w: w**2, jnp.ones(2))
    with pytest.raises(ValueError, match=r"shape \(1,\)"):
        gx.second_order.dense_hessian(lambda w: jnp.sum(w**2, keepdims=True), jnp.ones(2))
    np.testing.assert_allclose(gx.second_order.dense_hessian(lambda w: jnp.sum(w**3), jnp.ones(2)), 6 * np.eye(2))


# --------------------------------------------------------------------------- batch norm


def test_batch_norm_eps0_constant_feature_gives_beta():
    # Feature 0 is constant (0.1 three times: its float32 mean by summation is not 0.1),
    # feature 1 varies. With eps=0, x_hat = (x - mu) / sigma is 0/0 on feature 0; its limit
    # as eps -> 0 is 0 (x - mu = 0 exactly), so y = beta there.
    params, state = gx.nn.batch_norm_init(2)
    params = {"scale": jnp.array([2.0, 2.0]), "bias": jnp.array([0.5, -1.0])}
    x = jnp.array([[0.1, 1.0], [0.1, 2.0], [0.1, 3.0]])
    for fast in (False, True):
        y, _ = gx.nn.batch_norm(params, state, x, training=True, eps=0.0, fast_variance=fast)
        x1 = np.array([1.0, 2.0, 3.0])
        expected1 = 2 * (x1 - x1.mean()) / x1.std() - 1.0
        np.testing.assert_array_equal(np.asarray(y[:, 0]), [0.5, 0.5, 0.5])
        np.testing.assert_allclose(np.asarray(y[:, 1]), expected1, rtol=1e-6)
    # Also exact constants (ones), and the gradient stays finite.
    loss = lambda x: jnp.sum(gx.nn.batch_norm(None, state, x, training=True, eps=0.0)[0] ** 2)  # noqa: E731
    assert np.all(np.isfinite(np.asarray(jax.grad(loss)(jnp.ones((4, 2))))))
    assert float(loss(jnp.ones((4, 2)))) == 0


def test_batch_norm_eps0_zero_running_var_in_eval_gives_beta():
    params = {"scale": jnp.array([3.0, 3.0]), "bias": jnp.array([0.25, 0.25])}
    state = {"mean": jnp.array([1.0, 0.0]), "var": jnp.array([0.0, 4.0])}
    x = jnp.array([[5.0, 2.0], [1.0, -2.0]])
    y, new_state = gx.nn.batch_norm(params, state, x, training=False, eps=0.0)
    assert new_state is state
    # Feature 0 never varied in training (var 0), where it was mapped to beta: so here too.
    np.testing.assert_array_equal(np.asarray(y[:, 0]), [0.25, 0.25])
    np.testing.assert_allclose(np.asarray(y[:, 1]), [3 * 2 / 2 + 0.25, -3 * 2 / 2 + 0.25], rtol=1e-6)
    # With eps > 0 the formula is unchanged: (x - mean) / sqrt(eps) on feature 0.
    y, _ = gx.nn.batch_norm(params, state, x, training=False, eps=0.01)
    np.testing.assert_allclose(np.asarray(y[:, 0]), [3 * 4 / 0.1 + 0.25, 0.25], rtol=1e-6)


def test_batch_norm_rejects_an_empty_training_batch():
    params, state = gx.nn.batch_norm_init(3)
    with pytest.raises(ValueError, match=r"batch_norm: an input of shape \(0, 3\)"):
        gx.nn.batch_norm(params, state, jnp.ones((0, 3)), training=True)
    with pytest.raises(ValueError, match=r"shape \(2, 0, 3\)"):
        gx.nn.batch_norm(params, state, jnp.ones((2, 0, 3)), training=True)
    y, _ = gx.nn.batch_norm(params, state, jnp.ones((0, 3)), training=False)  # nothing to average: fine
    assert y.shape == (0, 3)


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_])
def test_batch_norm_normalizes_integer_input_in_float32(dtype):
    params, state = gx.nn.batch_norm_init(2)
    x = (jnp.arange(8).reshape(4, 2) % 3).astype(dtype)
    y, new = gx.nn.batch_norm(params, state, x, training=True)
    y_f, new_f = gx.nn.batch_norm(params, state, x.astype(jnp.float32), training=True)
    assert y.dtype == jnp.float32  # as flax.linen.BatchNorm and jax.nn.standardize, not truncated ints
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_f))
    xf = np.asarray(x, np.float64)
    np.testing.assert_allclose(np.asarray(y), (xf - xf.mean(0)) / np.sqrt(xf.var(0) + 1e-5), rtol=1e-5, atol=1e-6)
    for key in ("mean", "var"):
        np.testing.assert_array_equal(np.asarray(new[key]), np.asarray(new_f[key]))


@pytest.mark.parametrize("bad", [2.5, 3.0, True, (2, 2.5), "3"])
def test_batch_norm_init_rejects_non_integer_num_features(bad):
    with pytest.raises(ValueError, match=r"batch_norm_init: `num_features` must be a positive int.*num_features="):
        gx.nn.batch_norm_init(bad)


# --------------------------------------------------------------------------- initializers

# Every initializer of the module, called the way users call it (a factory or the initializer).
_INITIALIZERS = {
    "zeros": lambda: inits.zeros,
    "ones": lambda: inits.ones,
    "constant": lambda: inits.constant(0.5),
    "normal": inits.normal,
    "uniform": inits.uniform,
    "variance_scaling": lambda: inits.variance_scaling(1.0, "fan_in", "normal"),
    "xavier_uniform": inits.xavier_uniform,
    "xavier_normal": inits.xavier_normal,
    "kaiming_uniform": inits.kaiming_uniform,
    "kaiming_normal": inits.kaiming_normal,
    "lecun_uniform": inits.lecun_uniform,
    "lecun_normal": inits.lecun_normal,
    "glorot_uniform": inits.glorot_uniform,
    "glorot_normal": inits.glorot_normal,
    "he_uniform": inits.he_uniform,
    "he_normal": inits.he_normal,
    "orthogonal": inits.orthogonal,
}


def test_initializer_list_is_complete():
    public = {
        name for name, obj in vars(inits).items()
        if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == inits.__name__
    }
    assert public - {"compute_fans"} == set(_INITIALIZERS)


@pytest.mark.parametrize("name", sorted(_INITIALIZERS))
def test_initializers_reject_float_dimensions(name):
    init = _INITIALIZERS[name]()
    with pytest.raises(ValueError, match=r"`shape` must hold integer dimensions; got shape=\(3\.5, 4\)"):
        init(jax.random.key(0), (3.5, 4))
    with pytest.raises(ValueError, match=r"got shape=\(4, 2\.0\)"):
        init(jax.random.key(0), (4, 2.0))
    assert init(jax.random.key(0), (np.int64(3), 4)).shape == (3, 4)


def test_compute_fans_rejects_float_dimensions():
    with pytest.raises(ValueError, match=r"compute_fans: .*shape=\(3\.5, 4\)"):
        gx.nn.compute_fans((3.5, 4))
