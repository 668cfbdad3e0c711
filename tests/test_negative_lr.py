"""A negative learning rate is gradient ascent (optax's idiom), accepted wherever it scales the update."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform import _hyper

PARAMS = {"w": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}


def _grads(t):
    return {"w": jnp.array([0.3, -1.0, 2.0]) * (t + 1) - 0.7, "b": jnp.array(0.1 * t - 0.2)}


def _run(tx, steps=6):
    state = tx.init(PARAMS)
    out = []
    for t in range(steps):
        u, state = tx.update(_grads(t), state, PARAMS)
        out.append(u)
    return out


@pytest.mark.parametrize(
    "factory",
    [gx.adam, gx.sgd, gx.rmsprop, gx.adagrad, gx.adamw, gx.lion, gx.adabelief,
     lambda lr: gx.sgd(lr, momentum=0.9, nesterov=True),
     lambda lr: gx.rmsprop(lr, momentum=0.9, centered=True)],
    ids=["adam", "sgd", "rmsprop", "adagrad", "adamw", "lion", "adabelief", "sgd_nesterov", "rmsprop_centered"],
)
def test_negative_rate_ascends_exactly_as_the_negated_descent(factory):
    ascent, descent = _run(factory(-0.1)), _run(factory(0.1))
    for a, d in zip(ascent, descent):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(d)):
            np.testing.assert_array_equal(np.asarray(x), -np.asarray(y))


def test_adam_negative_rate_matches_optax():
    ours = _run(gx.adam(-0.1))
    with jax.numpy_dtype_promotion("standard"):  # optax relies on implicit promotion
        theirs = _run(optax.adam(-0.1))
    for a, b in zip(ours, theirs):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)


def test_ascent_increases_the_objective():
    f = lambda w: -jnp.sum((w - 3.0) ** 2)  # noqa: E731 - maximum at 3
    opt, w = gx.adam(-0.1), jnp.zeros(2)
    state = opt.init(w)
    for _ in range(100):
        u, state = opt.update(jax.grad(f)(w), state)
        w = gx.apply_updates(w, u)
    assert float(f(w)) > -0.1


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e39, -1e39, np.float64(4e38)])
def test_non_finite_rates_are_rejected(bad):
    with pytest.raises(ValueError, match="learning_rate"):
        gx.adam(bad)
    with pytest.raises(ValueError, match="learning_rate"):
        gx.sgd(bad, momentum=0.9)


def test_float32_extremes_are_accepted():
    gx.adam(_hyper.F32_MAX)
    gx.adam(-_hyper.F32_MAX)
    gx.sgd(0.0)


@pytest.mark.parametrize("factory", [gx.rprop, gx.scale_by_rprop])
@pytest.mark.parametrize("bad", [-0.1, 0.0, 1e39, math.nan])
def test_rprop_step_size_must_be_positive(factory, bad):
    with pytest.raises(ValueError, match="learning_rate"):
        factory(bad)


def test_lbfgs_rate_behind_a_line_search_stays_non_negative():
    with pytest.raises(ValueError, match="learning_rate"):
        gx.lbfgs(learning_rate=-1.0)
    gx.lbfgs(learning_rate=0.5)


def test_invalid_cases_of_lr_overflow_float32():
    cases = dict()
    for override, arg in _hyper.invalid_cases(gx.adam):
        cases.setdefault(arg, []).append(override[arg])
    bad = [v for v in cases["learning_rate"] if type(v) is float]  # the range cases (not bool/str/list/None)
    assert any(math.isnan(v) for v in bad)
    assert all(math.isnan(v) or abs(v) > _hyper.F32_MAX for v in bad)
    assert not any(v < 0 and abs(v) <= _hyper.F32_MAX for v in bad)
    for v in bad:
        with pytest.raises(ValueError, match="learning_rate"):
            gx.adam(v)
