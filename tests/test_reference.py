"""Self-tests of gradxform.testing.reference, the NumPy textbook update rules.

Expected numbers are worked out by hand in each test (the formula written out on scalars),
or come from closed forms and identities; optax 0.2.8 is used only as an outside oracle
for the default numerics.
"""

import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

from gradxform.testing import check_against_reference
from gradxform.testing import reference as R

EXACT = dict(rtol=1e-12, atol=1e-15)


@pytest.fixture
def optax_promotion():
    """optax 0.2.8 computes ``decay ** count`` (Python float, int32 count), which the suite's strict
    dtype promotion rejects; run the oracle under standard promotion."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def run(ref, grads, params=0.0):
    """Feeds the scalar gradients one per step (params held fixed); returns the float updates and final state."""
    p = {"x": np.asarray(params, np.float64)}
    state = ref.init(p)
    out = []
    for g in grads:
        u, state = ref.update({"x": np.asarray(g, np.float64)}, state, p)
        out.append(float(u["x"]))
    return out, state


def assert_updates(ref, grads, expected, params=0.0):
    got, _ = run(ref, grads, params)
    np.testing.assert_allclose(got, expected, **EXACT)


# ----------------------------------------------------------------------------- protocol


def test_updates_keep_grad_dtype_and_tree_structure():
    params = {"a": np.ones(2, np.float32), "b": [np.ones(3, ml_dtypes.bfloat16)], "c": np.float16(1.0)}
    ref = R.adam(0.1)
    state = ref.init(params)
    grads = {"a": np.full(2, 0.5, np.float32), "b": [np.full(3, -2.0, ml_dtypes.bfloat16)], "c": np.float16(3.0)}
    updates, state = ref.update(grads, state, params, unused_extra=1)
    assert jax.tree_util.tree_structure(updates) == jax.tree_util.tree_structure(grads)
    assert updates["a"].dtype == np.float32
    assert updates["b"][0].dtype == ml_dtypes.bfloat16
    assert np.asarray(updates["c"]).dtype == np.float16
    assert all(leaf.dtype == np.float64 for leaf in jax.tree_util.tree_leaves(state) if isinstance(leaf, np.ndarray))
    # first Adam step is -lr * g / (|g| + eps) = -lr * sign(g)
    np.testing.assert_allclose(updates["a"], [-0.1, -0.1], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(updates["b"][0], np.float64), [0.1] * 3, rtol=1e-2)


def test_accepts_jax_arrays():
    ref = R.sgd(0.5)
    params = {"x": jnp.ones(3)}
    updates, _ = ref.update({"x": jnp.full(3, 2.0)}, ref.init(params), params)
    assert isinstance(updates["x"], np.ndarray) and updates["x"].dtype == np.float32
    np.testing.assert_array_equal(updates["x"], [-1.0, -1.0, -1.0])


# ----------------------------------------------------------------------------- scaling and clipping


def test_scale_and_learning_rate_by_hand():
    assert_updates(R.scale(0.5), [2.0, -4.0], [1.0, -2.0])
    assert_updates(R.scale_by_learning_rate(0.1), [2.0, -1.0], [-0.2, 0.1])
    assert_updates(R.scale_by_learning_rate(0.1, flip_sign=False), [2.0], [0.2])
    # schedule evaluated at the 0-based count: lr(0) = 0.1, lr(1) = 0.2
    assert_updates(R.scale_by_learning_rate(lambda c: 0.1 * (c + 1)), [2.0, 2.0], [-0.2, -0.4])
    assert_updates(R.scale_by_learning_rate(None), [2.0], [2.0])


def test_clip_is_elementwise_formula_by_hand():
    # d * MAX / max(|d|, MAX), MAX = 1: 3 -> 3/3, -0.5 -> -0.5/1, -2 -> -2/2, 1 -> 1/1
    ref = R.clip(1.0)
    g = {"x": np.array([3.0, -0.5, -2.0, 1.0])}
    u, _ = ref.update(g, ref.init(g))
    np.testing.assert_array_equal(u["x"], [1.0, -0.5, -1.0, 1.0])


def test_clip_by_global_norm_by_hand():
    g = {"a": np.array([3.0]), "b": np.array([0.0, 4.0])}  # global norm 5
    for max_norm, factor in [(1.0, 1.0 / 5.0), (5.0, 1.0), (10.0, 1.0)]:
        ref = R.clip_by_global_norm(max_norm)
        u, _ = ref.update(g, ref.init(g))
        np.testing.assert_allclose(u["a"], [3.0 * factor], **EXACT)
        np.testing.assert_allclose(u["b"], [0.0, 4.0 * factor], **EXACT)
    zeros = {"a": np.zeros(2), "b": np.zeros(())}
    u, _ = R.clip_by_global_norm(1.0).update(zeros, {})
    assert all(np.array_equal(x, np.zeros_like(x)) for x in jax.tree_util.tree_leaves(u))


# ----------------------------------------------------------------------------- momentum


def test_trace_by_hand():
    # t1 = 2;  t2 = -1 + 0.9 * 2 = 0.8
    assert_updates(R.trace(0.9), [2.0, -1.0], [2.0, 0.8])
    # nesterov: u1 = 2 + 0.9 * 2 = 3.8;  u2 = -1 + 0.9 * 0.8 = -0.28
    assert_updates(R.trace(0.9, nesterov=True), [2.0, -1.0], [3.8, -0.28])


def test_ema_by_hand():
    # e1 = 0.1 * 2 = 0.2;  e2 = 0.9 * 0.2 + 0.1 * (-1) = 0.08
    assert_updates(R.ema(0.9, debias=False), [2.0, -1.0], [0.2, 0.08])
    # debiased: 0.2 / (1 - 0.9) = 2;  0.08 / (1 - 0.81) = 0.08 / 0.19
    assert_updates(R.ema(0.9), [2.0, -1.0], [2.0, 0.08 / 0.19])


def test_sgd_by_hand():
    assert_updates(R.sgd(0.1), [2.0, -1.0], [-0.2, 0.1])
    # trace 2, then 0.8 (see test_trace_by_hand), times -0.1
    assert_updates(R.sgd(0.1, momentum=0.9), [2.0, -1.0], [-0.2, -0.08])
    assert_updates(R.sgd(0.1, momentum=0.9, nesterov=True), [2.0, -1.0], [-0.38, 0.028])


def test_momentum_velocity_by_hand():
    # v1 = 0.9 * 0 - 0.1 * 2 = -0.2;  v2 = 0.9 * (-0.2) - 0.1 * (-1) = -0.08
    assert_updates(R.momentum_velocity(0.1, 0.9), [2.0, -1.0], [-0.2, -0.08])


def test_momentum_velocity_equals_sgd_momentum_for_constant_lr():
    rng = np.random.default_rng(1)
    velocity_form, optax_form = R.momentum_velocity(0.05, 0.8), R.sgd(0.05, momentum=0.8)
    params = {"w": np.zeros((2, 3))}
    s1, s2 = velocity_form.init(params), optax_form.init(params)
    for _ in range(10):
        g = {"w": rng.standard_normal((2, 3))}
        u1, s1 = velocity_form.update(g, s1, params)
        u2, s2 = optax_form.update(g, s2, params)
        np.testing.assert_allclose(u1["w"], u2["w"], **EXACT)
        # velocity = -lr * trace
        np.testing.assert_allclose(s1["velocity"]["w"], -0.05 * s2[0]["trace"]["w"], **EXACT)


def test_momentum_velocity_differs_from_sgd_under_schedule():
    lr = lambda count: [1.0, 0.5][count]  # noqa: E731
    # velocity form: v1 = -1 * 1 = -1;  v2 = 0.9 * (-1) - 0.5 * 1 = -1.4
    assert_updates(R.momentum_velocity(lr, 0.9), [1.0, 1.0], [-1.0, -1.4])
    # sgd: t1 = 1, u1 = -1;  t2 = 1 + 0.9 = 1.9, u2 = -0.5 * 1.9 = -0.95
    assert_updates(R.sgd(lr, momentum=0.9), [1.0, 1.0], [-1.0, -0.95])


def test_nesterov_lookahead_by_hand():
    grad_fn = lambda p: {"x": 2.0 * p["x"]}  # L = x^2  # noqa: E731
    thetas, vels = R.nesterov_lookahead_trajectory(grad_fn, {"x": 1.0}, 0.1, 0.9, steps=2)
    # k=0: look-ahead 1 + 0.9*0 = 1, g = 2, v1 = -0.2, theta1 = 0.8
    # k=1: look-ahead 0.8 + 0.9*(-0.2) = 0.62, g = 1.24, v2 = -0.18 - 0.124 = -0.304, theta2 = 0.496
    np.testing.assert_allclose([float(t["x"]) for t in thetas], [1.0, 0.8, 0.496], **EXACT)
    np.testing.assert_allclose([float(v["x"]) for v in vels], [0.0, -0.2, -0.304], **EXACT)


def _quadratic():
    a = np.array([[3.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.3]])
    b = np.array([1.0, -2.0, 0.5])
    return (lambda p: {"x": a @ p["x"] - b}), {"x": np.array([2.0, -1.0, 3.0])}


@pytest.mark.parametrize("learning_rate", [0.1, lambda k: 0.2 / (1 + k)], ids=["constant", "schedule"])
def test_nesterov_change_of_variables_on_quadratic(learning_rate):
    grad_fn, theta0 = _quadratic()
    alpha = 0.9
    thetas, v_look = R.nesterov_lookahead_trajectory(grad_fn, theta0, learning_rate, alpha, steps=25)
    phis, v_ref = R.nesterov_reformulated_trajectory(grad_fn, theta0, learning_rate, alpha, steps=25)
    for theta, phi, v1, v2 in zip(thetas, phis, v_look, v_ref):
        np.testing.assert_allclose(phi["x"], theta["x"] + alpha * v1["x"], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(v1["x"], v2["x"], rtol=1e-12, atol=1e-14)
    assert not np.allclose(phis[5]["x"], thetas[5]["x"])  # the two sequences are different points


def test_nesterov_reformulated_is_sgd_nesterov_and_optax(optax_promotion):
    grad_fn, theta0 = _quadratic()
    phis, _ = R.nesterov_reformulated_trajectory(grad_fn, theta0, 0.1, 0.9, steps=10)
    ref, tx = R.sgd(0.1, 0.9, nesterov=True), optax.sgd(0.1, 0.9, nesterov=True)
    phi, ref_state = theta0, ref.init(theta0)
    phi_jax = {"x": jnp.asarray(theta0["x"], jnp.float32)}
    tx_state = tx.init(phi_jax)
    for k in range(10):
        u, ref_state = ref.update(grad_fn(phi), ref_state, phi)
        phi = {"x": phi["x"] + u["x"]}
        np.testing.assert_allclose(phi["x"], phis[k + 1]["x"], rtol=1e-12, atol=1e-14)
        u_jax, tx_state = tx.update(grad_fn(phi_jax), tx_state)
        phi_jax = optax.apply_updates(phi_jax, u_jax)
        np.testing.assert_allclose(np.asarray(phi_jax["x"]), phis[k + 1]["x"], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- AdaGrad


def test_adagrad_by_hand_optax_form():
    # r1 = 0.1 + 2^2 = 4.1;  r2 = 4.1 + 1 = 5.1;  u = -lr * g / sqrt(r + eps)
    expected = [-0.1 * 2.0 / math.sqrt(4.1 + 1e-7), -0.1 * -1.0 / math.sqrt(5.1 + 1e-7)]
    assert_updates(R.adagrad(0.1), [2.0, -1.0], expected)
    _, state = run(R.scale_by_rss(), [2.0, -1.0])
    np.testing.assert_allclose(state["sum_of_squares"]["x"], 5.1, **EXACT)


def test_adagrad_by_hand_textbook_form():
    # Goodfellow et al. (2016), Algorithm 8.4: r0 = 0;  r1 = 4, r2 = 5;  u = -lr * g / (delta + sqrt(r))
    expected = [-0.1 * 2.0 / (1e-7 + 2.0), -0.1 * -1.0 / (1e-7 + math.sqrt(5.0))]
    assert_updates(R.adagrad(0.1, initial_accumulator_value=0.0, eps_in_sqrt=False), [2.0, -1.0], expected)


def test_adagrad_eps_placement_differs_as_expected():
    # eps = 1, r = 0 + 2^2 = 4: inside 2 / sqrt(4 + 1);  outside 2 / (1 + sqrt(4)) = 2 / 3
    assert_updates(R.scale_by_rss(0.0, 1.0, eps_in_sqrt=True), [2.0], [2.0 / math.sqrt(5.0)])
    assert_updates(R.scale_by_rss(0.0, 1.0, eps_in_sqrt=False), [2.0], [2.0 / 3.0])


def test_adagrad_zero_accumulator_gives_zero_not_nan():
    # optax form: g / sqrt(r + eps) is replaced by 0 where r == 0, even with eps = 0
    with np.errstate(all="raise"):
        assert_updates(R.scale_by_rss(0.0, 0.0), [0.0, 3.0], [0.0, 1.0])


# ----------------------------------------------------------------------------- RMSProp


def test_rmsprop_by_hand():
    # nu1 = 0.1 * 4 = 0.4;  nu2 = 0.9 * 0.4 + 0.1 * 1 = 0.46
    expected = [-0.1 * 2.0 / math.sqrt(0.4 + 1e-8), -0.1 * -1.0 / math.sqrt(0.46 + 1e-8)]
    assert_updates(R.rmsprop(0.1), [2.0, -1.0], expected)
    # eps outside the root (PyTorch's RMSprop), eps = 0.1 to make it visible
    expected = [-0.1 * 2.0 / (math.sqrt(0.4) + 0.1), -0.1 * -1.0 / (math.sqrt(0.46) + 0.1)]
    assert_updates(R.rmsprop(0.1, eps=0.1, eps_in_sqrt=False), [2.0, -1.0], expected)
    # inside the root with the same eps: 2 / sqrt(0.4 + 0.1)
    assert_updates(R.rmsprop(1.0, eps=0.1), [2.0], [-2.0 / math.sqrt(0.5)])
    # bias correction: nu_hat1 = 0.4 / (1 - 0.9) = 4;  nu_hat2 = 0.46 / (1 - 0.81)
    expected = [-0.1 * 2.0 / math.sqrt(4.0 + 1e-8), 0.1 / math.sqrt(0.46 / 0.19 + 1e-8)]
    assert_updates(R.rmsprop(0.1, bias_correction=True), [2.0, -1.0], expected)
    # initial_scale: nu1 = 0.9 * 1 + 0.1 * 4 = 1.3
    assert_updates(R.scale_by_rms(initial_scale=1.0, eps=0.0), [2.0], [2.0 / math.sqrt(1.3)])


def test_rmsprop_centered_by_hand():
    # mu1 = 0.2, nu1 = 0.4 -> var 0.4 - 0.04 = 0.36;  mu2 = 0.18 - 0.1 = 0.08, nu2 = 0.46 -> 0.46 - 0.0064
    expected = [-0.1 * 2.0 / math.sqrt(0.36 + 1e-8), 0.1 / math.sqrt(0.4536 + 1e-8)]
    assert_updates(R.rmsprop(0.1, centered=True), [2.0, -1.0], expected)
    assert_updates(R.scale_by_stddev(eps=0.0), [2.0], [2.0 / 0.6])


def test_rmsprop_momentum_comes_after_learning_rate():
    lr = lambda count: [0.1, 0.2][count]  # noqa: E731
    s1 = 2.0 / math.sqrt(0.4 + 1e-8)  # scaled gradients, as in test_rmsprop_by_hand
    s2 = -1.0 / math.sqrt(0.46 + 1e-8)
    # trace of the lr-scaled steps: u1 = -0.1 s1;  u2 = -0.2 s2 + 0.5 * u1
    expected = [-0.1 * s1, -0.2 * s2 + 0.5 * (-0.1 * s1)]
    assert_updates(R.rmsprop(lr, momentum=0.5), [2.0, -1.0], expected)
    # nesterov trace: u1 = a1 + 0.5 * a1 (a1 = -0.1 s1, trace t1 = a1)
    assert_updates(R.rmsprop(0.1, momentum=0.5, nesterov=True), [2.0], [1.5 * -0.1 * s1])


# ----------------------------------------------------------------------------- Adam family


def test_adam_by_hand():
    # step 1: mu = 0.2, nu = 0.004; hats 2 and 4 -> -0.1 * 2 / (2 + 1e-8)
    # step 2: mu = 0.9*0.2 + 0.1*(-1) = 0.08, nu = 0.999*0.004 + 0.001*1 = 0.004996
    mu_hat2, nu_hat2 = 0.08 / (1 - 0.9**2), 0.004996 / (1 - 0.999**2)
    expected = [-0.1 * 2.0 / (2.0 + 1e-8), -0.1 * mu_hat2 / (math.sqrt(nu_hat2) + 1e-8)]
    assert_updates(R.adam(0.1), [2.0, -1.0], expected)


def test_adam_eps_variants_by_hand():
    # eps_root inside the root: 2 / (sqrt(4 + 1) + 1e-8)
    assert_updates(R.adam(1.0, eps_root=1.0), [2.0], [-2.0 / (math.sqrt(5.0) + 1e-8)])
    # eps outside (default, Kingma & Ba): 2 / (sqrt(4) + 1) = 2/3;  eps inside the root: 2 / sqrt(4 + 1)
    assert_updates(R.adam(1.0, eps=1.0), [2.0], [-2.0 / 3.0])
    assert_updates(R.adam(1.0, eps=1.0, eps_in_sqrt=True), [2.0], [-2.0 / math.sqrt(5.0)])


def test_nadam_by_hand():
    # mu1 = 0.2; mu_hat = 0.9 * 0.2 / (1 - 0.9^2) + 0.1 * 2 / (1 - 0.9) = 0.18/0.19 + 2; nu_hat = 4
    mu_hat = 0.18 / 0.19 + 2.0
    assert_updates(R.adam(0.1, nesterov=True), [2.0], [-0.1 * mu_hat / (2.0 + 1e-8)])


def test_adam_mu_dtype_rounds_the_stored_first_moment():
    _, state = run(R.scale_by_adam(mu_dtype=ml_dtypes.bfloat16), [1.0 / 3.0])
    mu = state["mu"]["x"]
    assert mu != (1 - 0.9) / 3.0  # 0.0333... is not a bfloat16 value
    assert mu == float(np.float64((1 - 0.9) / 3.0).astype(ml_dtypes.bfloat16))


def test_adamw_variants_by_hand():
    # p = 3, g = 2, adam step = 2 / (2 + 1e-8)
    a = 2.0 / (2.0 + 1e-8)
    assert_updates(R.adamw(0.1, weight_decay=0.01), [2.0], [-0.1 * (a + 0.01 * 3.0)], params=3.0)
    assert_updates(R.adamw(0.1, weight_decay=0.01, variant="paper"), [2.0], [-0.1 * a - 0.01 * 3.0], params=3.0)
    with pytest.raises(ValueError, match="variant"):
        R.adamw(0.1, variant="pytorch")


def test_add_decayed_weights_mask_and_l1_by_hand():
    params = {"w": np.array([3.0, -2.0, 0.0]), "b": np.array([5.0])}
    grads = {"w": np.ones(3), "b": np.ones(1)}
    u, _ = R.add_decayed_weights(0.1).update(grads, {"count": 0}, params)
    np.testing.assert_allclose(u["w"], [1.3, 0.8, 1.0], **EXACT)
    u, _ = R.add_decayed_weights(0.1, mask={"w": True, "b": False}).update(grads, {"count": 0}, params)
    np.testing.assert_allclose(u["b"], [1.0], **EXACT)
    np.testing.assert_allclose(u["w"], [1.3, 0.8, 1.0], **EXACT)
    u, _ = R.add_l1_decay(0.1).update(grads, {}, params)  # g + 0.1 sign(p), sign(0) = 0
    np.testing.assert_allclose(u["w"], [1.1, 0.9, 1.0], **EXACT)
    with pytest.raises(ValueError, match="params"):
        R.add_decayed_weights(0.1).update(grads, {"count": 0})


def test_adabelief_by_hand():
    eps_root = 0.01
    # mu1 = 0.2; s1 = 0.001 * (2 - 0.2)^2 + eps_root = 0.00324 + 0.01; u1 = 2 / sqrt(s1 / 0.001)
    s1 = 0.001 * 1.8**2 + eps_root
    # mu2 = 0.08; s2 = 0.999 s1 + 0.001 * (-1 - 0.08)^2 + eps_root (eps_root is stored, so it accumulates)
    s2 = 0.999 * s1 + 0.001 * 1.08**2 + eps_root
    expected = [-2.0 / math.sqrt(s1 / 0.001), -(0.08 / 0.19) / math.sqrt(s2 / (1 - 0.999**2))]
    got, state = run(R.adabelief(1.0, eps=0.0, eps_root=eps_root), [2.0, -1.0])
    np.testing.assert_allclose(got, expected, **EXACT)
    np.testing.assert_allclose(state[0]["nu"]["x"], s2, **EXACT)
    # defaults: the 1e-16's are invisible here, u1 = -0.1 * 2 / 1.8
    assert_updates(R.adabelief(0.1), [2.0], [-0.1 * 2.0 / 1.8])


def test_adadelta_by_hand_and_sign_of_none_learning_rate():
    eps = 1e-6
    # E[g^2]1 = 0.1 * 4 = 0.4; u1 = sqrt(0 + eps) / sqrt(0.4 + eps) * 2; E[dx^2]1 = 0.1 u1^2
    u1 = math.sqrt(eps) / math.sqrt(0.4 + eps) * 2.0
    u2 = math.sqrt(0.1 * u1**2 + eps) / math.sqrt(0.46 + eps) * -1.0
    assert_updates(R.scale_by_adadelta(), [2.0, -1.0], [u1, u2])
    assert_updates(R.adadelta(), [2.0, -1.0], [u1, u2])  # optax: lr=None is no transform: +u, uphill
    assert_updates(R.adadelta(variant="paper"), [2.0, -1.0], [-u1, -u2])  # Zeiler: descent
    assert_updates(R.adadelta(0.5), [2.0, -1.0], [-0.5 * u1, -0.5 * u2])
    # weight decay first: g1 = 2 + 0.1 * 10 = 3
    u1_wd = math.sqrt(eps) / math.sqrt(0.1 * 9.0 + eps) * 3.0
    assert_updates(R.adadelta(1.0, weight_decay=0.1), [2.0], [-u1_wd], params=10.0)


# ----------------------------------------------------------------------------- Rprop


def test_rprop_sign_change_by_hand():
    # coordinate 0, grads 1, 1, -1, -1, 1 (lr 0.1, eta- 0.5, eta+ 1.2):
    #   1: prev 0 -> step 0.1, u = -0.1, prev = 1
    #   2: same sign -> step 0.12, u = -0.12
    #   3: sign change -> step 0.06, no step (u = 0), prev = 0
    #   4: prev 0 -> step stays 0.06, u = -0.06 * sign(-1) = +0.06, prev = -1
    #   5: sign change -> step 0.03, u = 0
    # coordinate 1, grads all 1: steps 0.1 * 1.2^k
    ref = R.rprop(0.1)
    params = {"x": np.zeros(2)}
    state = ref.init(params)
    got, steps = [], []
    for g0 in [1.0, 1.0, -1.0, -1.0, 1.0]:
        u, state = ref.update({"x": np.array([g0, 1.0])}, state, params)
        got.append(u["x"])
        steps.append(state[0]["step_sizes"]["x"].copy())
    np.testing.assert_allclose([u[0] for u in got], [-0.1, -0.12, 0.0, 0.06, 0.0], **EXACT)
    np.testing.assert_allclose([s[0] for s in steps], [0.1, 0.12, 0.06, 0.06, 0.03], **EXACT)
    np.testing.assert_allclose([-u[1] for u in got], [0.1, 0.12, 0.144, 0.1728, 0.20736], **EXACT)


def test_rprop_step_sizes_clamp_at_min_and_max():
    # max 0.13: 0.1, 0.12, min(0.144, 0.13), min(0.156, 0.13)
    ref = R.scale_by_rprop(0.1, max_step_size=0.13)
    got, state = run(ref, [1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(got, [0.1, 0.12, 0.13, 0.13], **EXACT)
    # min 0.04, alternating signs: 0.1 (u 0.1), 0.05 (u 0), 0.05 (u 0.05), max(0.025, 0.04) (u 0), 0.04 (u 0.04)
    got, state = run(R.scale_by_rprop(0.1, min_step_size=0.04), [1.0, -1.0, 1.0, -1.0, 1.0])
    np.testing.assert_allclose(got, [0.1, 0.0, 0.05, 0.0, 0.04], **EXACT)
    np.testing.assert_allclose(state["step_sizes"]["x"], 0.04, **EXACT)


def test_rprop_zero_gradient_keeps_step_and_takes_none():
    # 1: u 0.1;  2: g = 0 -> product 0, step stays 0.1, u = 0, prev = 0;  3: prev 0 -> step 0.1, u 0.1
    got, state = run(R.scale_by_rprop(0.1), [1.0, 0.0, 1.0])
    np.testing.assert_allclose(got, [0.1, 0.0, 0.1], **EXACT)


@pytest.mark.skipif(optax.__version__ != "0.2.8", reason="documents optax 0.2.8's rprop")
def test_optax_rprop_returns_previous_step_update(optax_promotion):
    grads = [[1.0, 1.0], [1.0, 1.0], [1.0, -1.0]]
    tx, ref = optax.rprop(0.1), R.rprop(0.1)
    params = {"x": jnp.zeros(2)}
    tx_state, ref_state = tx.init(params), ref.init({"x": np.zeros(2)})
    tx_out, ref_out = [], []
    for g in grads:
        u, tx_state = tx.update({"x": jnp.array(g)}, tx_state, params)
        tx_out.append(np.asarray(u["x"], np.float64))
        u, ref_state = ref.update({"x": np.array(g)}, ref_state)
        ref_out.append(u["x"])
    # hand-derived iRprop-: coordinate 0 steps 0.1, 0.12, 0.144; coordinate 1: 0.1, 0.12, then sign change -> 0
    np.testing.assert_allclose(ref_out, [[-0.1, -0.1], [-0.12, -0.12], [-0.144, 0.0]], **EXACT)
    # optax 0.2.8 lags one step: zeros first, then the previous step's update (0 on a sign change)
    np.testing.assert_allclose(tx_out, [[0.0, 0.0], [-0.1, -0.1], [-0.12, 0.0]], rtol=1e-6)


# ----------------------------------------------------------------------------- wrappers


def test_wrappers_take_the_one_adam():
    """apply_if_finite, MultiSteps and polyak_averaging wrap the same `adam` the optimizers are checked against."""
    rng = np.random.default_rng(4)
    params = {"a": np.zeros(3)}
    plain, wrapped = R.adam(0.1), R.apply_if_finite(R.adam(0.1), 2)
    s1, s2 = plain.init(params), wrapped.init(params)
    for _ in range(3):
        g = {"a": rng.standard_normal(3)}
        u1, s1 = plain.update(g, s1, params)
        u2, s2 = wrapped.update(g, s2, params)
        np.testing.assert_array_equal(u1["a"], u2["a"])
    # a non-finite step: zeros, the inner state kept, the counters counting
    u, s3 = wrapped.update({"a": np.array([1.0, np.nan, 0.0])}, s2, params)
    np.testing.assert_array_equal(u["a"], np.zeros(3))
    assert s3["inner"] is s2["inner"] and (s3["count"], s3["total"]) == (1, 1)
    # MultiSteps(adam, 2): zeros, then adam on the mean of the two gradients
    acc = R.MultiSteps(R.adam(0.1), 2)
    state = acc.init(params)
    u, state = acc.update({"a": np.array([1.0, 2.0, 3.0])}, state, params)
    np.testing.assert_array_equal(u["a"], np.zeros(3))
    u, state = acc.update({"a": np.array([3.0, -2.0, 1.0])}, state, params)
    expected, _ = R.adam(0.1).update({"a": np.array([2.0, 0.0, 2.0])}, R.adam(0.1).init(params), params)
    np.testing.assert_allclose(u["a"], expected["a"], **EXACT)
    # polyak_averaging passes the inner updates through unchanged
    avg = R.polyak_averaging(R.adam(0.1), 0.9)
    u, _ = avg.update({"a": np.array([2.0, 0.0, 2.0])}, avg.init(params), params)
    np.testing.assert_array_equal(u["a"], expected["a"])


def test_second_order_and_wrapper_references_are_references():
    hessian_diag_fn = lambda params, grads: jax.tree.map(lambda g: g * g + 1.0, grads)  # noqa: E731
    refs = [
        R.scale_by_adahessian(hessian_diag_fn=hessian_diag_fn),
        R.adahessian(0.1, hessian_diag_fn=hessian_diag_fn),
        R.scale_by_newton(hessian_fn=lambda params, grads: np.eye(3)),
        R.scale_by_lbfgs(),
        R.lbfgs(0.1),
        R.apply_if_finite(R.adam(0.1), 2),
        R.MultiSteps(R.adam(0.1), 1),
        R.reduce_on_plateau(value_fn=lambda params, grads: 1.0),
        R.polyak_averaging(R.adam(0.1)),
    ]
    params = {"a": np.ones(3, np.float32)}
    for ref in refs:
        assert isinstance(ref, R.Reference)
        u, _ = ref.update({"a": np.full(3, 0.5, np.float32)}, ref.init(params), params)
        assert u["a"].dtype == np.float32 and np.all(np.isfinite(u["a"]))


def test_newton_reference_solves_the_damped_system():
    # H = diag(2, 4), g = (2, 4): u = H^{-1} g = (1, 1); with damping 2: (2/4, 4/6)
    ref = R.scale_by_newton(hessian_fn=lambda params, grads: np.diag([2.0, 4.0]))
    u, _ = ref.update({"x": np.array([2.0, 4.0])}, {}, {"x": np.zeros(2)})
    np.testing.assert_allclose(u["x"], [1.0, 1.0], **EXACT)
    u, _ = R.scale_by_newton(2.0).update({"x": np.array([2.0, 4.0])}, {}, None, hessian=np.diag([2.0, 4.0]))
    np.testing.assert_allclose(u["x"], [0.5, 4.0 / 6.0], **EXACT)


# ----------------------------------------------------------------------------- optimizers vs their parts


@pytest.mark.parametrize(
    "optimizer, scaling",
    [
        (R.adam(0.3), R.scale_by_adam()),
        (R.adam(0.3, nesterov=True), R.scale_by_adam(nesterov=True)),
        (R.adabelief(0.3), R.scale_by_belief()),
        (R.adagrad(0.3), R.scale_by_rss()),
        (R.rmsprop(0.3, centered=True), R.scale_by_stddev()),
        (R.adadelta(0.3), R.scale_by_adadelta()),
    ],
    ids=["adam", "nadam", "adabelief", "adagrad", "rmsprop-centered", "adadelta"],
)
def test_optimizer_is_minus_lr_times_its_scaling(optimizer, scaling):
    lr = 0.3
    rng = np.random.default_rng(2)
    params = {"a": np.zeros(3)}
    s1, s2 = optimizer.init(params), scaling.init(params)
    for _ in range(4):
        g = {"a": rng.standard_normal(3)}
        u1, s1 = optimizer.update(g, s1, params)
        u2, s2 = scaling.update(g, s2, params)
        np.testing.assert_allclose(u1["a"], -lr * u2["a"], **EXACT)


# ----------------------------------------------------------------------------- parity with optax 0.2.8

PARITY = {
    "sgd": (lambda: optax.sgd(0.1), lambda: R.sgd(0.1)),
    "sgd-schedule": (lambda: optax.sgd(lambda c: 0.1 / (1 + c), 0.9), lambda: R.sgd(lambda c: 0.1 / (1 + c), 0.9)),
    "momentum": (lambda: optax.sgd(0.1, 0.9), lambda: R.sgd(0.1, 0.9)),
    "nesterov": (lambda: optax.sgd(0.1, 0.9, nesterov=True), lambda: R.sgd(0.1, 0.9, nesterov=True)),
    "adagrad": (lambda: optax.adagrad(0.1), lambda: R.adagrad(0.1)),
    "adagrad-zero-init": (lambda: optax.adagrad(0.1, 0.0), lambda: R.adagrad(0.1, 0.0)),
    "rmsprop": (lambda: optax.rmsprop(0.1), lambda: R.rmsprop(0.1)),
    "rmsprop-centered": (lambda: optax.rmsprop(0.1, centered=True), lambda: R.rmsprop(0.1, centered=True)),
    "rmsprop-momentum": (lambda: optax.rmsprop(0.1, momentum=0.9), lambda: R.rmsprop(0.1, momentum=0.9)),
    "rmsprop-nesterov": (
        lambda: optax.rmsprop(0.1, momentum=0.9, nesterov=True),
        lambda: R.rmsprop(0.1, momentum=0.9, nesterov=True),
    ),
    "rmsprop-eps-out-bias": (
        lambda: optax.rmsprop(0.1, eps=1e-3, eps_in_sqrt=False, bias_correction=True, initial_scale=0.5),
        lambda: R.rmsprop(0.1, eps=1e-3, eps_in_sqrt=False, bias_correction=True, initial_scale=0.5),
    ),
    "rmsprop-centered-eps-out": (
        lambda: optax.rmsprop(0.1, eps=1e-3, centered=True, eps_in_sqrt=False),
        lambda: R.rmsprop(0.1, eps=1e-3, centered=True, eps_in_sqrt=False),
    ),
    "adam": (lambda: optax.adam(0.1), lambda: R.adam(0.1)),
    "adam-eps-root": (lambda: optax.adam(0.1, eps_root=1e-2), lambda: R.adam(0.1, eps_root=1e-2)),
    "nadam": (lambda: optax.adam(0.1, nesterov=True), lambda: R.adam(0.1, nesterov=True)),
    "adamw": (lambda: optax.adamw(0.1, weight_decay=0.1), lambda: R.adamw(0.1, weight_decay=0.1)),
    "adamw-nesterov": (
        lambda: optax.adamw(0.1, nesterov=True, weight_decay=0.1),
        lambda: R.adamw(0.1, nesterov=True, weight_decay=0.1),
    ),
    "adabelief": (lambda: optax.adabelief(0.1), lambda: R.adabelief(0.1)),
    "adabelief-eps-root": (lambda: optax.adabelief(0.1, eps_root=1e-3), lambda: R.adabelief(0.1, eps_root=1e-3)),
    "adadelta": (lambda: optax.adadelta(), lambda: R.adadelta()),
    "adadelta-lr-wd": (lambda: optax.adadelta(0.5, weight_decay=0.1), lambda: R.adadelta(0.5, weight_decay=0.1)),
    "trace": (lambda: optax.trace(0.8), lambda: R.trace(0.8)),
    "ema": (lambda: optax.ema(0.8), lambda: R.ema(0.8)),
    "clip": (lambda: optax.clip(0.5), lambda: R.clip(0.5)),
    "clip-by-global-norm": (lambda: optax.clip_by_global_norm(1.0), lambda: R.clip_by_global_norm(1.0)),
    "add-decayed-weights": (lambda: optax.add_decayed_weights(0.1), lambda: R.add_decayed_weights(0.1)),
    "scale-by-rss": (lambda: optax.scale_by_rss(), lambda: R.scale_by_rss()),
    "scale-by-stddev": (lambda: optax.scale_by_stddev(), lambda: R.scale_by_stddev()),
    "scale-by-belief": (lambda: optax.scale_by_belief(), lambda: R.scale_by_belief()),
}


@pytest.mark.parametrize("name", list(PARITY))
def test_default_reference_matches_optax(name, optax_promotion):
    make_tx, make_ref = PARITY[name]
    tx, ref = make_tx(), make_ref()
    rng = np.random.default_rng(3)
    params = {"w": rng.standard_normal((2, 3)).astype(np.float32), "b": rng.standard_normal(3).astype(np.float32)}
    tx_state, ref_state = tx.init(jax.tree.map(jnp.asarray, params)), ref.init(params)
    for step in range(5):
        grads = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in params.items()}
        if step == 0:  # exact zeros on the first step: AdaGrad's r == 0 branch (zero init), g = 0 elsewhere
            grads["w"][0] = 0.0
        got, tx_state = tx.update(jax.tree.map(jnp.asarray, grads), tx_state, jax.tree.map(jnp.asarray, params))
        expected, ref_state = ref.update(grads, ref_state, params)
        for k in params:
            where = f"step {step + 1}, leaf {k}"
            np.testing.assert_allclose(np.asarray(got[k]), expected[k], rtol=2e-5, atol=1e-6, err_msg=where)
            assert expected[k].dtype == np.float32


# ----------------------------------------------------------------------------- check_against_reference


def adam_without_bias_correction(lr, b1=0.9, b2=0.999, eps=1e-8):
    """A deliberately broken Adam (no bias correction) that still descends."""

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return (zeros, zeros)

    def update(grads, state, params=None):
        mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, grads, state[0])
        nu = jax.tree.map(lambda g, n: b2 * n + (1 - b2) * g * g, grads, state[1])
        return jax.tree.map(lambda m, n: -lr * m / (jnp.sqrt(n) + eps), mu, nu), (mu, nu)

    return optax.GradientTransformation(init, update)


def test_check_passes_for_matching_pair(optax_promotion):
    report = check_against_reference(optax.adam(0.1), R.adam(0.1))
    assert report["steps"] == 5 and report["max_abs_error"] < 1e-5


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
def test_check_passes_in_low_precision(dtype, optax_promotion):
    check_against_reference(optax.adam(0.1), R.adam(0.1), steps=3, dtype=dtype)


def test_check_names_step_and_leaf_on_wrong_hyperparameter(optax_promotion):
    # b1 cancels in Adam's first bias-corrected step (mu_hat_1 = g), so step 2 is the first to differ;
    # ['b'] is the first leaf in flattening order (dict keys sorted: b, nested, w).
    with pytest.raises(AssertionError) as info:
        check_against_reference(optax.adam(0.1), R.adam(0.1, b1=0.8))
    message = str(info.value)
    assert "step 2 of 5" in message and "leaf ['b']" in message
    assert "max abs error" in message and "expected (reference) vs got" in message


def test_check_catches_adam_without_bias_correction(optax_promotion):
    # step 1: mu = 0.1 g, nu = 0.001 g^2 -> -lr * 0.1 / sqrt(0.001) sign(g) ~ 3.16x too large
    with pytest.raises(AssertionError, match=r"step 1 of 3, leaf \['b'\]"):
        check_against_reference(adam_without_bias_correction(0.1), R.adam(0.1), steps=3, jit=False)


def test_check_names_nested_key_path(optax_promotion):
    sgd = optax.sgd(0.1)

    def update(grads, state, params=None):
        updates, state = sgd.update(grads, state, params)
        double = lambda path, u: 2 * u if "nested" in jax.tree_util.keystr(path) else u  # noqa: E731
        return jax.tree_util.tree_map_with_path(double, updates), state

    with pytest.raises(AssertionError, match=r"step 1 of 5, leaf \['nested'\]\[0\]"):
        check_against_reference(optax.GradientTransformation(sgd.init, update), R.sgd(0.1), jit=False)


def test_check_rejects_a_finite_value_where_the_reference_is_infinite():
    """Non-finite values must match exactly (an infinite expected value is no infinite tolerance)."""
    def update(grads, state, params=None, **extra_args):
        return jax.tree.map(lambda x: np.full_like(x, np.inf), grads), state

    infinite = R.Reference(lambda p: (), update)
    with pytest.raises(AssertionError, match=r"step 1 of 5, leaf \['b'\]"):
        check_against_reference(optax.identity(), infinite, jit=False)


def test_check_reports_structure_mismatch():
    bad = optax.GradientTransformation(lambda p: (), lambda g, s, p=None: (jax.tree_util.tree_leaves(g), s))
    with pytest.raises(AssertionError, match="structure"):
        check_against_reference(bad, R.identity(), jit=False)


def test_check_feeds_cast_grads_with_zeros_and_extra_args():
    seen = []

    def extra_args_fn(step, params, grads):
        seen.append((step, grads))
        return {"factor": jnp.asarray(float(step), jnp.bfloat16)}

    # a transformation that needs an extra argument, and its reference
    def tx_update(grads, state, params=None, *, factor):
        return jax.tree.map(lambda x: factor * x, grads), state


    def ref_update(grads, state, params=None, *, factor):
        assert isinstance(factor, np.ndarray)
        return jax.tree.map(lambda x: (np.float64(factor) * x.astype(np.float64)).astype(x.dtype), grads), state

    tx, ref = optax.GradientTransformation(lambda p: (), tx_update), R.Reference(lambda p: (), ref_update)
    check_against_reference(tx, ref, steps=3, dtype=jnp.bfloat16, extra_args_fn=extra_args_fn)
    assert [step for step, _ in seen] == [1, 2, 3]
    assert all(leaf.dtype == jnp.bfloat16 for _, g in seen for leaf in jax.tree_util.tree_leaves(g))
    zeros_per_step = [sum(int(jnp.sum(leaf == 0)) for leaf in jax.tree_util.tree_leaves(g)) for _, g in seen]
    # step 2 zeroes every other entry: 2 of b's 4, 1 of nested[0]'s 2, 6 of w's 12
    assert zeros_per_step == [0, 2 + 1 + 6, 0]


def test_check_accepts_given_params_and_grads(optax_promotion):
    params = {"x": np.array([1.0, -1.0])}
    grads = [{"x": np.array([0.5, 0.0])}, {"x": np.array([-1.0, 2.0])}]
    check_against_reference(optax.adagrad(0.1), R.adagrad(0.1), steps=2, params=params, grads=grads)
    with pytest.raises(ValueError, match="2 gradient trees"):
        check_against_reference(optax.adagrad(0.1), R.adagrad(0.1), steps=3, params=params, grads=grads)
