"""Initializers: variances against their formulas, fans, truncation, dtypes, errors,
and the 100-layer signal experiment (a signal through 100 layers of 512 x 512 weights,
the analysis of Glorot & Bengio 2010 and He et al. 2015)."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
import gradxform.nn  # noqa: F401  (gx.nn until the top-level package re-exports it)

KEY = jax.random.key(20240607)

# Shapes with a few hundred thousand entries each, so that a 2% band on the sample
# variance is many standard errors wide (the relative s.e. is sqrt(2/N) ~ 0.25%).
# (shape, kwargs, fan_in, fan_out)
SHAPES = [
    ((640, 480), {}, 640, 480),  # dense (in, out)
    ((3, 3, 96, 384), {}, 3 * 3 * 96, 3 * 3 * 384),  # conv HWIO
    # The same array read in other layouts (one shape keeps the number of compilations down):
    ((3, 3, 96, 384), {"in_axis": -1, "out_axis": -2}, 3 * 3 * 384, 3 * 3 * 96),  # "HWOI"
    ((3, 3, 96, 384), {"in_axis": 2, "out_axis": 3, "batch_axis": 0}, 3 * 96, 3 * 384),  # 3 stacked kernels
]


def _n(mode, fan_in, fan_out):
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]


def _stats(w):
    w = np.asarray(w, np.float64).ravel()
    return w.mean(), w.var(), w.size


@pytest.mark.parametrize("shape,kwargs,fan_in,fan_out", SHAPES, ids=["dense", "hwio", "hwoi", "batched"])
@pytest.mark.parametrize("mode", ["fan_in", "fan_out", "fan_avg"])
@pytest.mark.parametrize("distribution", ["normal", "truncated_normal", "uniform"])
def test_variance_scaling_variance_within_2_percent(shape, kwargs, fan_in, fan_out, mode, distribution):
    scale = 1.7
    w = gx.nn.variance_scaling(scale, mode, distribution, **kwargs)(KEY, shape)
    assert w.shape == shape and w.dtype == jnp.float32
    mean, var, size = _stats(w)
    expected = scale / _n(mode, fan_in, fan_out)
    assert abs(var / expected - 1) < 0.02, (var, expected)
    assert abs(mean) < 5 * math.sqrt(expected / size)
    limit = {
        "uniform": math.sqrt(3 * expected),
        "truncated_normal": 2 * math.sqrt(expected) / 0.8796256610342398,
        "normal": math.inf,
    }[distribution]
    assert float(jnp.max(jnp.abs(w))) <= limit * (1 + 1e-6)


def test_compute_fans_dense_and_conv():
    assert gx.nn.compute_fans((3, 3, 16, 32)) == (144, 288)
    assert gx.nn.compute_fans((512, 256)) == (512, 256)
    assert gx.nn.compute_fans((32, 16, 3, 3), in_axis=1, out_axis=0) == (144, 288)  # PyTorch OIHW
    assert gx.nn.compute_fans((5, 7, 3, 3), in_axis=(0, 1), out_axis=-1) == (105, 9)
    assert gx.nn.compute_fans((5, 3, 3, 16, 32), batch_axis=0) == (144, 288)


# (factory, expected variance from (m, n) = (fan_in, fan_out), uniform half-width or None)
NAMED = {
    "xavier_uniform": (gx.nn.xavier_uniform, lambda m, n: 2 / (m + n), lambda m, n: math.sqrt(6 / (m + n))),
    "glorot_uniform": (gx.nn.glorot_uniform, lambda m, n: 2 / (m + n), lambda m, n: math.sqrt(6 / (m + n))),
    "xavier_normal": (gx.nn.xavier_normal, lambda m, n: 2 / (m + n), None),
    "glorot_normal": (gx.nn.glorot_normal, lambda m, n: 2 / (m + n), None),
    "kaiming_uniform": (gx.nn.kaiming_uniform, lambda m, n: 2 / m, lambda m, n: math.sqrt(6 / m)),
    "he_uniform": (gx.nn.he_uniform, lambda m, n: 2 / m, lambda m, n: math.sqrt(6 / m)),
    "kaiming_normal": (gx.nn.kaiming_normal, lambda m, n: 2 / m, None),
    "he_normal": (gx.nn.he_normal, lambda m, n: 2 / m, None),
    "lecun_uniform": (gx.nn.lecun_uniform, lambda m, n: 1 / m, lambda m, n: math.sqrt(3 / m)),
    "lecun_normal": (gx.nn.lecun_normal, lambda m, n: 1 / m, None),
}


@pytest.mark.parametrize("name", sorted(NAMED))
@pytest.mark.parametrize("shape,kwargs,fan_in,fan_out", [SHAPES[0], SHAPES[2]], ids=["dense", "hwoi"])
def test_named_initializer_matches_paper_formula(name, shape, kwargs, fan_in, fan_out):
    factory, var_fn, limit_fn = NAMED[name]
    w = factory(**kwargs)(KEY, shape)
    _, var, _ = _stats(w)
    assert abs(var / var_fn(fan_in, fan_out) - 1) < 0.02
    wmax = float(jnp.max(jnp.abs(w)))
    if limit_fn is not None:
        limit = limit_fn(fan_in, fan_out)
        assert 0.99 * limit < wmax <= limit * (1 + 1e-6)
    else:
        # The papers' plain normal: 300k draws reach beyond 4 sigma (a 2-sigma truncation never does),
        # and the kurtosis is a normal's 3.
        std = math.sqrt(var_fn(fan_in, fan_out))
        assert wmax > 4 * std
        z = np.asarray(w, np.float64).ravel() / std
        assert abs(np.mean(z**4) - 3.0) < 0.1


@pytest.mark.parametrize("factory", [gx.nn.xavier_normal, gx.nn.kaiming_normal, gx.nn.lecun_normal])
def test_truncated_option_bounds_samples_and_keeps_variance(factory):
    plain = factory()(KEY, (640, 480))
    trunc = factory(truncated=True)(KEY, (640, 480))
    _, var_plain, _ = _stats(plain)
    _, var_trunc, _ = _stats(trunc)
    assert abs(var_trunc / var_plain - 1) < 0.02
    # Truncated at 2 standard deviations of the underlying (rescaled) normal.
    bound = 2 * math.sqrt(var_plain) / 0.8796256610342398
    assert float(jnp.max(jnp.abs(trunc))) <= bound * 1.01
    assert float(jnp.max(jnp.abs(plain))) > bound * 1.5


def test_normal_and_uniform_variances():
    w = gx.nn.normal()(KEY, (640, 480))
    assert abs(_stats(w)[1] - 1.0) < 0.02
    w = gx.nn.normal(0.01)(KEY, (640, 480))
    assert abs(_stats(w)[1] / 1e-4 - 1) < 0.02
    w = gx.nn.uniform(0.5)(KEY, (640, 480))
    assert abs(_stats(w)[1] / (0.25 / 3) - 1) < 0.02
    assert float(jnp.min(w)) < -0.49 and float(jnp.max(w)) > 0.49  # symmetric U(-0.5, 0.5)
    assert float(jnp.max(jnp.abs(w))) <= 0.5
    # normal/uniform need no fan: 1-D and scalar shapes are fine.
    assert gx.nn.normal()(KEY, (5,)).shape == (5,)
    assert gx.nn.uniform()(KEY, ()).shape == ()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize(
    "factory",
    [gx.nn.xavier_uniform, gx.nn.xavier_normal, gx.nn.kaiming_normal, gx.nn.kaiming_uniform,
     lambda: gx.nn.variance_scaling(1.0, "fan_avg", "truncated_normal")],
    ids=["xavier_uniform", "xavier_normal", "kaiming_normal", "kaiming_uniform", "vs_truncated"],
)
def test_low_precision_dtypes(factory, dtype):
    w = factory()(KEY, (3, 3, 96, 384), dtype)
    assert w.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(w)))
    # Same draw as float32, rounded.
    w32 = factory()(KEY, (3, 3, 96, 384), jnp.float32)
    np.testing.assert_array_equal(np.asarray(w.astype(jnp.float32)), np.asarray(w32.astype(dtype).astype(jnp.float32)))


def test_factory_dtype_is_default():
    assert gx.nn.xavier_uniform(dtype=jnp.bfloat16)(KEY, (16, 8)).dtype == jnp.bfloat16
    assert gx.nn.orthogonal(dtype=jnp.float16)(KEY, (64, 32)).dtype == jnp.float16
    assert gx.nn.constant(3, dtype=jnp.int32)(KEY, (2,)).dtype == jnp.int32
    assert gx.nn.zeros(KEY, (2, 3), jnp.bfloat16).dtype == jnp.bfloat16


def test_zeros_ones_constant():
    np.testing.assert_array_equal(gx.nn.zeros(KEY, (2, 3)), np.zeros((2, 3), np.float32))
    np.testing.assert_array_equal(gx.nn.ones(KEY, (4,)), np.ones(4, np.float32))
    np.testing.assert_array_equal(gx.nn.constant(-0.25)(KEY, (2, 2)), np.full((2, 2), -0.25, np.float32))


def test_aliases_are_identical_draws():
    for a, b in [(gx.nn.xavier_uniform, gx.nn.glorot_uniform), (gx.nn.xavier_normal, gx.nn.glorot_normal),
                 (gx.nn.kaiming_uniform, gx.nn.he_uniform), (gx.nn.kaiming_normal, gx.nn.he_normal)]:
        np.testing.assert_array_equal(a()(KEY, (16, 8)), b()(KEY, (16, 8)))


@pytest.mark.parametrize(
    "shape,column_axis",
    [((64, 32), -1), ((32, 64), -1), ((3, 3, 16, 32), -1), ((32, 3, 3, 16), 0)],
)
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_orthogonal(shape, column_axis, scale):
    w = gx.nn.orthogonal(scale, column_axis=column_axis)(KEY, shape)
    assert w.shape == shape
    mat = np.moveaxis(np.asarray(w, np.float64), column_axis, -1).reshape(-1, shape[column_axis])
    rows, cols = mat.shape
    gram = mat.T @ mat if rows >= cols else mat @ mat.T
    np.testing.assert_allclose(gram, scale**2 * np.eye(min(rows, cols)), atol=1e-5)


def test_deterministic_jit_and_vmap():
    init = gx.nn.kaiming_normal()
    a = init(KEY, (16, 8))
    np.testing.assert_array_equal(a, init(KEY, (16, 8)))
    np.testing.assert_allclose(a, jax.jit(init, static_argnums=(1, 2))(KEY, (16, 8), jnp.float32), rtol=1e-6)
    keys = jax.random.split(KEY, 3)
    batch = jax.vmap(lambda k: init(k, (16, 8)))(keys)
    assert batch.shape == (3, 16, 8)
    np.testing.assert_allclose(batch[1], init(keys[1], (16, 8)), rtol=1e-6)
    assert not np.array_equal(batch[0], batch[1])


@pytest.mark.parametrize(
    "factory",
    [gx.nn.xavier_uniform, gx.nn.xavier_normal, gx.nn.kaiming_uniform, gx.nn.kaiming_normal,
     gx.nn.lecun_uniform, gx.nn.lecun_normal, gx.nn.orthogonal,
     lambda: gx.nn.variance_scaling(1.0, "fan_in", "normal")],
)
@pytest.mark.parametrize("shape", [(5,), ()])
def test_shape_without_fan_raises_naming_shape(factory, shape):
    with pytest.raises(ValueError, match=r"shape " + re.escape(str(shape))):
        factory()(KEY, shape)


def test_invalid_hyperparameters_raise():
    with pytest.raises(ValueError, match="mode='fan_sum'"):
        gx.nn.variance_scaling(1.0, "fan_sum", "normal")
    with pytest.raises(ValueError, match="distribution='cauchy'"):
        gx.nn.variance_scaling(1.0, "fan_in", "cauchy")
    with pytest.raises(ValueError, match="scale=0.0"):
        gx.nn.variance_scaling(0.0, "fan_in", "normal")
    with pytest.raises(ValueError, match="stddev=-1"):
        gx.nn.normal(-1.0)
    with pytest.raises(ValueError, match="scale=-2"):
        gx.nn.uniform(-2.0)
    with pytest.raises(ValueError, match="scale=0"):
        gx.nn.orthogonal(0.0)
    with pytest.raises(ValueError, match="in_axis"):
        gx.nn.xavier_uniform(in_axis=5)(KEY, (3, 4))
    with pytest.raises(ValueError, match="different axes"):
        gx.nn.xavier_uniform(in_axis=0, out_axis=0)(KEY, (3, 4))
    with pytest.raises(ValueError, match="int32"):
        gx.nn.xavier_uniform()(KEY, (3, 4), jnp.int32)


# ---------------------------------------------------------------------------
# The 100-layer signal experiment (the variance analysis of Glorot & Bengio 2010 and
# He et al. 2015; Goodfellow et al. 2016, Section 8.4): a = randn(512); 100 times
# a = act(a @ W) with a fresh 512 x 512 W; print a.mean(), a.std().
# ---------------------------------------------------------------------------

LAYERS, WIDTH = 100, 512


@functools.lru_cache(maxsize=None)
def _experiment(name):
    """(mean, std) of the activations after each of the 100 layers, as float64 NumPy arrays.

    Run eagerly, as a plain Python loop: every setup shares the compiled 512 x 512 draws.
    The statistics are taken in float64 of the float32 activations, so the standard
    deviation is finite as long as the activations are (float32 squares would overflow
    at std ~ 1e19, long before the activations themselves do).
    """
    init, relu = SETUPS[name]
    keys = jax.random.split(jax.random.key(0), LAYERS + 1)
    a = jax.random.normal(keys[0], (WIDTH,), jnp.float32)
    means, stds = [], []
    for k in keys[1:]:
        a = a @ init(k, (WIDTH, WIDTH))
        if relu:
            a = jax.nn.relu(a)
        an = np.asarray(a, np.float64)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf once float32 overflowed
            means.append(an.mean())
            stds.append(an.std(ddof=1))  # torch's std is the unbiased one
    return np.array(means), np.array(stds)


SETUPS = {
    "normal": (gx.nn.normal(1.0), False),
    "normal_0.01": (gx.nn.normal(0.01), False),
    "uniform": (gx.nn.uniform(1.0), False),
    "xavier_normal": (gx.nn.xavier_normal(), False),
    "xavier_uniform": (gx.nn.xavier_uniform(), False),
    "xavier_normal_relu": (gx.nn.xavier_normal(), True),
    "kaiming_normal_relu": (gx.nn.kaiming_normal(), True),
    "kaiming_uniform_relu": (gx.nn.kaiming_uniform(), True),
}


def _rate(stds, first, last):
    """Geometric mean factor per layer between layers `first` and `last` (1-based)."""
    return (stds[last - 1] / stds[first - 1]) ** (1.0 / (last - first))


# Bands: a reference PyTorch run of the same experiment (float32, one seed), and the theory behind them. Per layer, ||a W|| / ||a|| is a
# random factor, so log std is a random walk: for Xavier (linear) each layer adds variance
# ~1/(2 * 512) to log std, for Kaiming + ReLU ~1.25/512. After 100 layers that is a spread of
# ~0.3 and ~0.5 in log std; the 100-layer bands below are about 4 of those wide, the
# per-layer rates (100-layer geometric means) likewise.


def test_experiment_standard_normal_explodes():
    # Reference run: std 22.65, 513, 11657, 2.6e5, ... (x sqrt(512) = 22.6 per layer); nan at layer 28.
    _, stds = _experiment("normal")
    assert 15 < stds[0] < 30
    assert 1.25 < math.log10(stds[9]) / 10 < 1.45  # log10 sqrt(512) = 1.355; reference 3.6e13 at layer 10
    first_bad = int(np.argmax(~np.isfinite(stds))) + 1
    assert not np.isfinite(stds[-1])
    assert 24 <= first_bad <= 33, first_bad  # float32 overflows at 22.6^k ~ 3.4e38, k ~ 28


def test_experiment_scaled_normal_vanishes():
    # Reference run: std 0.2265, 0.0513, 0.0115, 0.0026, 0.00059, ..., 0.000000 from layer 10 on.
    _, stds = _experiment("normal_0.01")
    assert 0.18 < stds[0] < 0.28  # 0.01 * sqrt(512) = 0.226
    assert 3e-4 < stds[4] < 1.2e-3
    assert stds[9] < 1e-5
    assert np.isfinite(stds[-1]) and stds[-1] < 1e-30  # 0.226^100 ~ 1e-65: float32 underflows to 0


def test_experiment_uniform_explodes():
    # Reference run: std 11.69, 147.6, 1967, 25307, ... (x sqrt(512 / 3) = 13.1 per layer).
    _, stds = _experiment("uniform")
    assert 8 < stds[0] < 18
    assert 11 < _rate(stds, 1, 19) < 15.5
    assert not np.isfinite(stds[-1])


@pytest.mark.parametrize("name", ["xavier_normal", "xavier_uniform"])
def test_experiment_xavier_linear_keeps_std_near_one(name):
    # Reference runs (first 19 layers): std 0.83-0.95 (normal) and 0.91-1.03 (uniform), |mean| <= 0.12.
    means, stds = _experiment(name)
    assert np.all((stds[:19] > 0.6) & (stds[:19] < 1.6)), stds[:19]
    assert np.all((stds > 0.25) & (stds < 4.0)), stds
    assert 0.97 < _rate(stds, 1, LAYERS) < 1.03
    assert np.all(np.abs(means) < 0.25 * stds)


def test_experiment_xavier_relu_decays():
    # Reference run: std 0.603, 0.445, 0.297, 0.204, ... 0.000838 at layer 20, 0.000000 by layer ~44:
    # ReLU halves the second moment per layer, so std shrinks by ~1/sqrt(2) per layer.
    _, stds = _experiment("xavier_normal_relu")
    assert 0.45 < stds[0] < 0.75  # ReLU of N(0, 1): std sqrt(1/2 - 1/(2 pi)) = 0.584
    assert 1e-4 < stds[19] < 1e-2
    assert 0.62 < _rate(stds, 1, LAYERS) < 0.78
    assert 0 <= stds[-1] < 1e-10


@pytest.mark.parametrize("name", ["kaiming_normal_relu", "kaiming_uniform_relu"])
def test_experiment_kaiming_relu_steady(name):
    # Reference runs: std 0.77-1.06, mean 0.50-0.72 (theory: a ReLU of N(0, 2) has std 0.826, mean 0.564).
    means, stds = _experiment(name)
    assert np.all((stds[:20] > 0.38) & (stds[:20] < 1.8)), stds[:20]
    assert np.all((stds > 0.1) & (stds < 6.0)), stds
    assert 0.97 < _rate(stds, 1, LAYERS) < 1.03  # Xavier + ReLU: 0.707
    assert np.all((means / stds > 0.5) & (means / stds < 0.9))  # 0.564 / 0.826 = 0.683 for ReLU(normal)
