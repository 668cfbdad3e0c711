"""Top-level numerical helpers: norms, counters, power iteration, matrix inverse roots, the diagonal
normal and NNLS, against NumPy/SciPy definitions and optax 0.2.8."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize
import scipy.stats

import gradxform as gx

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion


def _spd(n, seed=0, dtype=np.float32):
    a = np.random.default_rng(seed).normal(size=(n, n))
    return (a @ a.T).astype(dtype)


# --------------------------------------------------------------------------- norms


def test_global_norm_matches_numpy_and_optax():
    rng = np.random.default_rng(0)
    tree = {"a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32), "b": [jnp.asarray(rng.normal(size=5), jnp.float32)],
            "none": None}
    expected = np.sqrt(sum(np.sum(np.asarray(x, np.float64) ** 2) for x in jax.tree_util.tree_leaves(tree)))
    np.testing.assert_allclose(gx.global_norm(tree), expected, rtol=1e-6)
    np.testing.assert_allclose(jax.jit(gx.global_norm)(tree), optax.global_norm(tree), rtol=1e-6)
    assert float(gx.global_norm([])) == 0.0
    assert gx.global_norm({"h": jnp.full(4, 300, jnp.float16)}).dtype == jnp.float32
    np.testing.assert_allclose(gx.global_norm({"h": jnp.full(4, 300, jnp.float16)}), 600.0)


def test_global_norm_does_not_overflow_where_the_norm_is_finite():
    np.testing.assert_allclose(gx.global_norm([jnp.array([3e38]), jnp.array([1.0])]), 3e38, rtol=1e-6)
    np.testing.assert_allclose(gx.global_norm([jnp.full((2,), 2e38, jnp.bfloat16)]), 2e38 * np.sqrt(2), rtol=1e-2)
    assert np.isinf(gx.global_norm([jnp.full((4,), 3e38)]))  # 6e38: beyond float32
    assert np.isnan(gx.global_norm([jnp.array([jnp.nan, 1.0])]))


@pytest.mark.parametrize("kwargs", [{}, {"ord": 1, "axis": 1, "keepdims": True}, {"axis": 0}, {"ord": "fro"},
                                    {"ord": 2}, {"ord": "nuc"}, {"ord": np.inf, "axis": 1}])
def test_safe_norm_value_and_gradient_match_optax(kwargs):
    x = jnp.asarray(np.random.default_rng(1).normal(size=(3, 4)), jnp.float32)
    for floor in [0.5, 2.2]:
        np.testing.assert_allclose(gx.safe_norm(x, floor, **kwargs), optax.safe_norm(x, floor, **kwargs), rtol=1e-6)
        g_ours = jax.grad(lambda y: gx.safe_norm(y, floor, **kwargs).sum())(x)
        g_theirs = jax.grad(lambda y: optax.safe_norm(y, floor, **kwargs).sum())(x)
        np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-5, atol=1e-7)


def test_safe_norm_and_rms_gradients_are_zero_at_zero_and_finite_at_huge_values():
    for fn in (gx.safe_norm, gx.safe_root_mean_squares):
        assert jax.grad(lambda y: fn(y, 1.0))(jnp.zeros(3)).tolist() == [0.0] * 3
    big = jnp.array([3e38, 3e38])
    np.testing.assert_allclose(gx.safe_root_mean_squares(big, 0.0), 3e38, rtol=1e-6)
    np.testing.assert_allclose(gx.safe_norm(jnp.array([3e38, 0.0]), 0.0), 3e38, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda y: gx.safe_norm(y, 0.0))(big), [2 ** -0.5] * 2, rtol=1e-6)


def test_safe_root_mean_squares_matches_optax():
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 3)), jnp.float32)
    for floor in [0.1, 5.0]:
        np.testing.assert_allclose(gx.safe_root_mean_squares(x, floor), optax.safe_root_mean_squares(x, floor),
                                   rtol=1e-6)
        np.testing.assert_allclose(jax.grad(lambda y: gx.safe_root_mean_squares(y, floor))(x),
                                   jax.grad(lambda y: optax.safe_root_mean_squares(y, floor))(x), rtol=1e-5)
    assert gx.safe_root_mean_squares(jnp.ones(2, jnp.bfloat16), 0.0).dtype == jnp.bfloat16


# --------------------------------------------------------------------------- counters


def test_safe_increment_saturates_in_every_dtype():
    assert int(gx.safe_increment(jnp.asarray(5, jnp.int32))) == 6
    assert int(gx.safe_increment(jnp.asarray(2**31 - 1, jnp.int32))) == 2**31 - 1
    assert int(gx.safe_increment(jnp.asarray(127, jnp.int8))) == 127
    assert int(gx.safe_increment(jnp.asarray(255, jnp.uint8))) == 255
    assert gx.safe_increment(jnp.asarray(1, jnp.int8)).dtype == jnp.int8
    assert float(gx.safe_increment(jnp.float16(65504))) == 65504.0
    assert int(gx.safe_increment(5)) == 6
    assert gx.safe_int32_increment is gx.safe_increment
    assert int(jax.jit(gx.safe_increment)(jnp.asarray(3, jnp.int32))) == 4


# --------------------------------------------------------------------------- power iteration


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_power_iteration_finds_the_dominant_eigenpair(seed):
    s = _spd(6, seed)
    w, u = np.linalg.eigh(s.astype(np.float64))
    value, vector = gx.power_iteration(jnp.asarray(s), num_iters=1000, error_tolerance=1e-7)
    np.testing.assert_allclose(value, w[-1], rtol=1e-5)
    assert abs(abs(float(np.dot(np.asarray(vector, np.float64), u[:, -1]))) - 1) < 1e-4
    ours = gx.power_iteration(jnp.asarray(s))
    theirs = optax.power_iteration(jnp.asarray(s))
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-4, atol=1e-5)


def test_power_iteration_steps_match_optax_one_by_one():
    s = jnp.asarray(_spd(5, 3))
    for n in [0, 1, 3, 10]:
        for tol in [0.0, 1e-2]:
            ours = gx.power_iteration(s, v0=jnp.ones(5), num_iters=n, error_tolerance=tol)
            theirs = optax.power_iteration(s, v0=jnp.ones(5), num_iters=n, error_tolerance=tol)
            np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5)
            np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)


def test_power_iteration_on_a_callable_tree_and_a_zero_matrix():
    value, vector = gx.power_iteration(lambda t: {"a": 2 * t["a"], "b": -3 * t["b"]},
                                       v0={"a": jnp.ones(2), "b": jnp.ones(1)})
    np.testing.assert_allclose(value, -3.0, rtol=1e-5)
    np.testing.assert_allclose(vector["b"], [1.0], rtol=1e-5)
    value, vector = gx.power_iteration(jnp.zeros((3, 3)), v0=jnp.ones(3))  # optax: NaN
    assert float(value) == 0.0 and np.all(np.isfinite(vector))
    with pytest.raises(ValueError, match="v0"):
        gx.power_iteration(lambda v: v)


# --------------------------------------------------------------------------- matrix inverse p-th root


def _inverse_root(a, p, ridge_epsilon):
    w, u = np.linalg.eigh(a.astype(np.float64))
    return u @ np.diag((w + ridge_epsilon * w.max()) ** (-1.0 / p)) @ u.T


@pytest.mark.parametrize("p", [1, 2, 3, 4, 6, 8])
@pytest.mark.parametrize("ridge_epsilon", [1e-6, 0.1])
def test_matrix_inverse_pth_root_matches_the_eigendecomposition(p, ridge_epsilon):
    a = _spd(6, p)
    root, error = gx.matrix_inverse_pth_root(jnp.asarray(a), p, ridge_epsilon=ridge_epsilon)
    expected = _inverse_root(a, p, ridge_epsilon)
    np.testing.assert_allclose(root, expected, atol=2e-4 * np.abs(expected).max())
    assert float(error) < 1e-3


@pytest.mark.parametrize("p", [1, 2, 4, 8])
def test_matrix_inverse_pth_root_matches_optax(p):
    a = jnp.asarray(_spd(5, 7))
    ours, theirs = gx.matrix_inverse_pth_root(a, p), optax.matrix_inverse_pth_root(a, p)
    np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-3, atol=1e-6)


def test_optax_matrix_inverse_pth_root_is_wrong_for_p_3():
    a = _spd(5, 3)
    expected = _inverse_root(a, 3, 1e-6)
    assert np.abs(np.asarray(optax.matrix_inverse_pth_root(jnp.asarray(a), 3)[0]) - expected).max() > 0.1
    assert np.abs(np.asarray(gx.matrix_inverse_pth_root(jnp.asarray(a), 3)[0]) - expected).max() < 1e-4


def test_matrix_inverse_pth_root_edge_cases():
    np.testing.assert_allclose(gx.matrix_inverse_pth_root(jnp.eye(1) * 4.0, 2)[0], [[0.5]], rtol=1e-5)
    root, _ = gx.matrix_inverse_pth_root(jnp.zeros((2, 2)), 2)  # the ridge alone: (1e-22)^(-1/2)
    assert np.all(np.isfinite(root))
    with pytest.raises(ValueError, match="p"):
        gx.matrix_inverse_pth_root(jnp.eye(2), 0)
    with pytest.raises(ValueError, match="p"):
        gx.matrix_inverse_pth_root(jnp.eye(2), 1.5)


def _root_mutant(a, p):
    """Broken: T = ((p - 1) I + M) / p, the plain Newton step's sign slip."""
    n = a.shape[0]
    z = (1 + p) / (2 * np.linalg.norm(a))
    m, h = a * z, np.eye(n) * z ** (1 / p)
    for _ in range(50):
        t = ((p - 1) * np.eye(n) + m) / p
        m, h = np.linalg.matrix_power(t, p) @ m, h @ t
    return h


def test_eigendecomposition_check_catches_the_root_mutant():
    a = _spd(4, 1).astype(np.float64)
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(_root_mutant(a, 2), _inverse_root(a, 2, 0.0), rtol=1e-3)


# --------------------------------------------------------------------------- diagonal normal


def test_multi_normal_matches_scipy_and_optax():
    loc, log_scale = jnp.array([1.0, -2.0, 0.5]), jnp.array([0.0, 1.0, -0.5])
    dist, theirs = gx.multi_normal(loc, log_scale), optax.multi_normal(loc, log_scale)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    expected = scipy.stats.norm(np.asarray(loc), np.exp(np.asarray(log_scale))).logpdf(np.asarray(x)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(x), expected, rtol=1e-5)
    key = jax.random.PRNGKey(3)
    np.testing.assert_allclose(dist.sample((5,), key), theirs.sample((5,), key), rtol=1e-6)
    samples = dist.sample((20000,), key)
    np.testing.assert_allclose(samples.mean(0), loc, atol=0.1)
    np.testing.assert_allclose(samples.std(0), np.exp(log_scale), rtol=0.05)
    assert [np.asarray(p).tolist() for p in dist.params] == [loc.tolist(), log_scale.tolist()]


# --------------------------------------------------------------------------- NNLS


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nnls_converges_to_scipy(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(8, 5)).astype(np.float32)
    b = rng.normal(size=8).astype(np.float32)
    expected, _ = scipy.optimize.nnls(a.astype(np.float64), b.astype(np.float64))
    got = gx.nnls(jnp.asarray(a), jnp.asarray(b), 3000)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    assert np.all(np.asarray(got) >= 0)


def test_nnls_with_several_right_hand_sides_and_an_explicit_bound():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=(6, 3)), rng.normal(size=(6, 2))
    got = gx.nnls(jnp.asarray(a, jnp.float32), jnp.asarray(b, jnp.float32), 3000, L=50.0)
    for k in range(2):
        np.testing.assert_allclose(got[:, k], scipy.optimize.nnls(a, b[:, k])[0], atol=1e-4)


@pytest.mark.parametrize("iters", [1, 2, 5, 30])
def test_nnls_equals_optax_with_one_more_iteration(iters):
    # optax 0.2.8 starts FISTA at t = 0, so its second iteration repeats its first.
    rng = np.random.default_rng(5)
    a, b = jnp.asarray(rng.normal(size=(7, 4)), jnp.float32), jnp.asarray(rng.normal(size=7), jnp.float32)
    np.testing.assert_allclose(gx.nnls(a, b, iters), optax.nnls(a, b, iters + 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(optax.nnls(a, b, 1), optax.nnls(a, b, 2))


def test_scipy_check_catches_an_unprojected_nnls():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(8, 5)), rng.normal(size=8)
    unprojected = np.linalg.lstsq(a, b, rcond=None)[0]  # the mutant: least squares without x >= 0
    with pytest.raises(AssertionError):
        np.testing.assert_allclose(unprojected, scipy.optimize.nnls(a, b)[0], atol=1e-4)
