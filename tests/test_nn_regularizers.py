"""Dropout, label smoothing, L1/L2 penalties, FGSM, weight noise and image augmentation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import gradxform as gx
import gradxform.nn  # noqa: F401

KEY = jax.random.key(7)


# ----------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_preserves_mean_and_drops_at_rate(rate):
    x = jnp.full((500, 400), 3.0, jnp.float32)
    y = np.asarray(gx.nn.dropout(KEY, x, rate), np.float64)
    n = y.size
    kept = y != 0
    # Kept entries are scaled by 1 / (1 - rate); dropped ones are 0.
    np.testing.assert_allclose(y[kept], 3.0 / (1 - rate), rtol=1e-6)
    # Fraction dropped ~ rate and mean ~ x (5 standard errors of a Binomial(n, 1 - rate)).
    se = math.sqrt(rate * (1 - rate) / n)
    assert abs((1 - kept.mean()) - rate) < 5 * se
    assert abs(y.mean() / 3.0 - 1) < 5 * se / (1 - rate)


def test_dropout_identity_when_deterministic_or_rate_zero():
    x = jax.random.normal(KEY, (8, 5))
    np.testing.assert_array_equal(gx.nn.dropout(KEY, x, 0.5, deterministic=True), x)
    np.testing.assert_array_equal(gx.nn.dropout(KEY, x, 0.0), x)
    # Traced rate 0 (no shortcut): still the identity.
    np.testing.assert_array_equal(jax.jit(lambda r: gx.nn.dropout(KEY, x, r))(0.0), x)


def test_dropout_expectation_over_keys():
    # E[dropout(x)] = x entrywise: average 4000 independent masks of a fixed vector.
    x = jnp.linspace(-2.0, 2.0, 16)
    keys = jax.random.split(KEY, 4000)
    ys = jax.vmap(lambda k: gx.nn.dropout(k, x, 0.3))(keys)
    se = np.abs(np.asarray(x)) * math.sqrt(0.3 / 0.7 / 4000)
    assert np.all(np.abs(np.asarray(ys.mean(0)) - np.asarray(x)) <= 5 * se + 1e-6)


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_dropout_dtype_jit_and_traced_rate(dtype):
    x = jnp.ones((64, 32), dtype)
    y = gx.nn.dropout(KEY, x, 0.5)
    assert y.dtype == dtype and y.shape == x.shape
    y_jit = jax.jit(lambda k, x, r: gx.nn.dropout(k, x, r))(KEY, x, 0.5)
    assert y_jit.dtype == dtype
    np.testing.assert_array_equal(np.asarray(y_jit, np.float32), np.asarray(y, np.float32))
    assert set(np.unique(np.asarray(y, np.float32)).tolist()) <= {0.0, 2.0}


def test_dropout_broadcast_dims_share_the_mask():
    x = jnp.ones((4, 6, 6, 8))
    y = np.asarray(gx.nn.dropout(KEY, x, 0.5, broadcast_dims=(1, 2)))
    # Per (image, channel) the whole spatial map is kept or dropped.
    assert np.all(y == y[:, :1, :1, :])
    assert 0 < (y[:, 0, 0, :] == 0).mean() < 1


def test_dropout_invalid_rate():
    for rate in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=f"rate={rate}"):
            gx.nn.dropout(KEY, jnp.ones(3), rate)


# ----------------------------------------------------------------------------- label smoothing


def test_smooth_labels_textbook_formula():
    """1 - eps for the true class, eps / (k - 1) elsewhere (Goodfellow et al., 2016, Section 7.5.1)."""
    k, eps = 5, 0.1
    one_hot = jax.nn.one_hot(jnp.array([0, 3, 4]), k)
    out = np.asarray(gx.nn.smooth_labels(one_hot, eps), np.float64)
    expected = np.full((3, k), eps / (k - 1))
    expected[[0, 1, 2], [0, 3, 4]] = 1 - eps
    np.testing.assert_allclose(out, expected, rtol=1e-6)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-6)


@given(
    k=st.integers(2, 12),
    eps=st.floats(0.0, 1.0, width=32),
    labels=st.lists(st.integers(0, 100), min_size=1, max_size=6),
)
def test_smooth_labels_rows_sum_to_one(k, eps, labels):
    one_hot = np.eye(k, dtype=np.float32)[[lab % k for lab in labels]]
    out = np.asarray(gx.nn.smooth_labels(one_hot, eps), np.float64)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)
    assert np.all(out >= 0)


def test_smooth_labels_soft_labels_dtype_and_zero_eps():
    soft = jnp.array([[0.2, 0.3, 0.5]], jnp.bfloat16)
    out = gx.nn.smooth_labels(soft, 0.2)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(float(out.astype(jnp.float32).sum()), 1.0, rtol=1e-2)
    one_hot = jax.nn.one_hot(jnp.array([1, 2]), 4)
    np.testing.assert_array_equal(gx.nn.smooth_labels(one_hot, 0.0), one_hot)
    ints = jnp.array([[0, 1, 0]], jnp.int32)
    assert gx.nn.smooth_labels(ints, 0.3).dtype == jnp.float32
    # jit with a traced epsilon
    np.testing.assert_allclose(jax.jit(gx.nn.smooth_labels)(one_hot, 0.3), gx.nn.smooth_labels(one_hot, 0.3))


def test_smooth_labels_errors():
    with pytest.raises(ValueError, match="epsilon=1.5"):
        gx.nn.smooth_labels(jnp.eye(3), 1.5)
    with pytest.raises(ValueError, match="epsilon=-0.1"):
        gx.nn.smooth_labels(jnp.eye(3), -0.1)
    with pytest.raises(ValueError, match=r"\(4, 1\)"):
        gx.nn.smooth_labels(jnp.ones((4, 1)), 0.1)


# ----------------------------------------------------------------------------- penalties


def _tree():
    rng = np.random.default_rng(0)
    return {
        "dense": {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.asarray(rng.normal(size=3), jnp.float32)},
        "emb": [jnp.asarray(rng.normal(size=(2, 2)), jnp.bfloat16)],
        "scalar": jnp.asarray(-1.5, jnp.float32),
        "none": None,
    }


def _leaves64(tree):
    return [np.asarray(x, np.float64) for x in jax.tree_util.tree_leaves(tree)]


def test_l1_and_l2_penalties_against_numpy():
    tree = _tree()
    l1 = sum(np.abs(x).sum() for x in _leaves64(tree))
    l2 = 0.5 * sum((x**2).sum() for x in _leaves64(tree))
    out1, out2 = gx.nn.l1_penalty(tree), gx.nn.l2_penalty(tree)
    assert out1.dtype == jnp.float32 and out2.dtype == jnp.float32 and out1.shape == ()
    np.testing.assert_allclose(float(out1), l1, rtol=1e-6)
    np.testing.assert_allclose(float(out2), l2, rtol=1e-6)
    assert float(gx.nn.l2_penalty({})) == 0.0


def test_penalty_gradients_are_sign_and_weight():
    params = {"w": jnp.array([1.5, -2.0, 0.25]), "b": jnp.array([-0.5])}
    g1 = jax.grad(gx.nn.l1_penalty)(params)
    g2 = jax.grad(gx.nn.l2_penalty)(params)
    for k in params:
        np.testing.assert_array_equal(g1[k], np.sign(np.asarray(params[k])))
        np.testing.assert_allclose(g2[k], params[k], rtol=1e-6)
    # Under jit
    np.testing.assert_allclose(jax.jit(gx.nn.l2_penalty)(params), gx.nn.l2_penalty(params), rtol=1e-6)


# ----------------------------------------------------------------------------- FGSM


def test_fgsm_equals_x_plus_eps_sign_grad_linear():
    w = jnp.array([2.0, -3.0, 0.5, -0.1])
    x = jnp.array([0.3, 0.1, -0.2, 1.0])
    adv = gx.nn.fgsm(lambda x, y: jnp.dot(w, x) * y, x, 2.0, 0.05)
    np.testing.assert_allclose(adv, np.asarray(x) + 0.05 * np.sign(np.asarray(w)), rtol=1e-6)


def test_fgsm_logistic_regression_hand_gradient():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(6,)).astype(np.float32)
    x = rng.normal(size=(5, 6)).astype(np.float32)
    y = np.array([1, 0, 1, 1, 0], np.float32)

    def loss(x, y):
        logits = x @ jnp.asarray(w)
        return jnp.sum(jnp.logaddexp(0.0, logits) - y * logits)  # binary cross-entropy

    # d/dx of the cross-entropy: (sigmoid(x . w) - y) w, per example.
    p = 1 / (1 + np.exp(-(x @ w)))
    grad = (p - y)[:, None] * w[None, :]
    expected = x + 0.1 * np.sign(grad)
    np.testing.assert_allclose(gx.nn.fgsm(loss, jnp.asarray(x), jnp.asarray(y), 0.1), expected, rtol=1e-6)
    out = jax.jit(gx.nn.fgsm, static_argnums=0)(loss, jnp.asarray(x), jnp.asarray(y), 0.1)
    np.testing.assert_allclose(out, expected, rtol=1e-6)


def test_fgsm_dtype_and_errors():
    x = jnp.ones(3, jnp.bfloat16)
    out = gx.nn.fgsm(lambda x, y: jnp.sum(x.astype(jnp.float32) * y), x, jnp.array([1.0, -1.0, 1.0]), 0.5)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), [1.5, 0.5, 1.5])
    with pytest.raises(ValueError, match="epsilon=-0.1"):
        gx.nn.fgsm(lambda x, y: jnp.sum(x), x, None, -0.1)


# ----------------------------------------------------------------------------- weight noise


def test_weight_noise():
    params = {"w": jnp.zeros((400, 300)), "b": jnp.zeros(300, jnp.bfloat16), "none": None}
    noisy = gx.nn.weight_noise(KEY, params, 0.2)
    assert jax.tree_util.tree_structure(noisy) == jax.tree_util.tree_structure(params)
    assert noisy["w"].dtype == jnp.float32 and noisy["b"].dtype == jnp.bfloat16
    std = float(np.asarray(noisy["w"], np.float64).std())
    assert abs(std / 0.2 - 1) < 0.02
    assert not np.allclose(np.asarray(noisy["w"][0]), np.asarray(noisy["b"], np.float32))  # independent leaves
    same = gx.nn.weight_noise(KEY, params, 0.0)
    np.testing.assert_array_equal(same["w"], params["w"])
    with pytest.raises(ValueError, match="stddev=-1"):
        gx.nn.weight_noise(KEY, params, -1.0)
    # Gradient flows through the perturbation: d/dw of sum(noisy(w)) = 1.
    g = jax.grad(lambda p: jnp.sum(gx.nn.weight_noise(KEY, p, 0.1)["w"]))({"w": jnp.ones(3)})
    np.testing.assert_allclose(g["w"], 1.0)


# ----------------------------------------------------------------------------- augmentation


def _images(n=64, h=5, w=6, c=2):
    return jnp.arange(n * h * w * c, dtype=jnp.float32).reshape(n, h, w, c)


def test_random_flip():
    x = _images()
    np.testing.assert_array_equal(gx.nn.random_flip(KEY, x, prob=0.0), x)
    np.testing.assert_array_equal(gx.nn.random_flip(KEY, x, prob=1.0), x[:, :, ::-1, :])
    np.testing.assert_array_equal(
        gx.nn.random_flip(KEY, x, horizontal=False, vertical=True, prob=1.0), x[:, ::-1, :, :]
    )
    y = np.asarray(gx.nn.random_flip(KEY, x))
    xn = np.asarray(x)
    flipped = np.array([np.array_equal(y[i], xn[i, :, ::-1]) for i in range(len(xn))])
    same = np.array([np.array_equal(y[i], xn[i]) for i in range(len(xn))])
    assert np.all(flipped ^ same)  # each image is either untouched or flipped
    assert 0.2 < flipped.mean() < 0.8  # 64 fair coins
    with pytest.raises(ValueError, match="prob=1.5"):
        gx.nn.random_flip(KEY, x, prob=1.5)
    with pytest.raises(ValueError, match=r"\(5, 6\)"):
        gx.nn.random_flip(KEY, jnp.ones((5, 6)))


def test_random_crop_is_a_window_of_the_padded_image():
    x = _images(n=16)
    np.testing.assert_array_equal(gx.nn.random_crop(KEY, x), x)  # no padding, full size: identity
    pad = 2
    y = np.asarray(gx.nn.random_crop(KEY, x, padding=pad))
    assert y.shape == x.shape
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = []
    for i in range(len(y)):
        hits = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                if np.array_equal(y[i], padded[i, dy:dy + 5, dx:dx + 6])]
        assert hits, i
        offsets.append(hits[0])
    assert len(set(offsets)) > 1  # the offsets are random per image
    z = gx.nn.random_crop(KEY, x, (3, 4), pad_mode="edge", padding=1)
    assert z.shape == (16, 3, 4, 2)
    out = jax.jit(lambda k, x: gx.nn.random_crop(k, x, padding=pad))(KEY, x)
    np.testing.assert_array_equal(out, y)
    with pytest.raises(ValueError, match="crop size"):
        gx.nn.random_crop(KEY, x, (10, 10))
    with pytest.raises(ValueError, match="padding=-1"):
        gx.nn.random_crop(KEY, x, padding=-1)


def test_gaussian_noise():
    x = jnp.zeros((100, 8, 8, 3), jnp.bfloat16)
    y = gx.nn.gaussian_noise(KEY, x, 0.5)
    assert y.dtype == jnp.bfloat16 and y.shape == x.shape
    assert abs(float(np.asarray(y, np.float64).std()) / 0.5 - 1) < 0.02
    np.testing.assert_array_equal(gx.nn.gaussian_noise(KEY, x, 0.0), x)
    with pytest.raises(ValueError, match="stddev=-0.5"):
        gx.nn.gaussian_noise(KEY, x, -0.5)
    with pytest.raises(ValueError, match="uint8"):
        gx.nn.gaussian_noise(KEY, jnp.zeros(3, jnp.uint8), 0.1)
