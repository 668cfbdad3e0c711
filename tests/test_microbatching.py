"""gx.microbatching: micro_vmap, micro_grad, reshape_batch_axis against optax.microbatching and NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx

optax = pytest.importorskip("optax")
om = optax.microbatching
gm = gx.microbatching
A, OA = gm.AccumulationType, om.AccumulationType

X = np.arange(8.0, dtype=np.float32).reshape(8, 1) * 1.5


def _close(a, b, rtol=1e-6):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        assert np.shape(x) == np.shape(y)
        np.testing.assert_allclose(
            np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=0
        )


def _fun(a, b):
    return {"p": a * b, "q": jnp.sum(a) + b}


@pytest.mark.parametrize("acc", ["CONCAT", "SUM", "MEAN", "RUNNING_MEAN"])
@pytest.mark.parametrize(
    "mb, n_real",
    [
        pytest.param(None, None, marks=pytest.mark.slow),
        pytest.param(2, None, marks=pytest.mark.slow),
        (2, 3),
    ],
)
def test_micro_vmap_matches_optax(acc, mb, n_real):
    kw = {"in_axes": (0, None), "microbatch_size": mb, "num_real_microbatches": n_real}
    ours = gm.micro_vmap(_fun, accumulator=getattr(A, acc), **kw)(X, 2.0)
    theirs = om.micro_vmap(_fun, accumulator=getattr(OA, acc), **kw)(X, 2.0)
    _close(ours, theirs)


def test_micro_vmap_kwargs_axes_and_accumulator_trees_match_optax():
    x = X[:, 0]
    _close(
        gm.micro_vmap(lambda a, b=1.0: a * b, microbatch_size=2)(x, b=x),
        om.micro_vmap(lambda a, b=1.0: a * b, microbatch_size=2)(x, b=x),
    )
    _close(
        gm.micro_vmap(jnp.sum, in_axes=1, microbatch_size=2)(x.reshape(2, 4)),
        om.micro_vmap(jnp.sum, in_axes=1, microbatch_size=2)(x.reshape(2, 4)),
    )
    f = lambda a: (a, (a, 2 * a))
    _close(
        gm.micro_vmap(f, accumulator=(A.CONCAT, A.MEAN), microbatch_size=4)(x),
        om.micro_vmap(f, accumulator=(OA.CONCAT, OA.MEAN), microbatch_size=4)(x),
    )


def test_micro_vmap_traced_num_real_microbatches_compiles_once():
    traces = []

    def run(x, n):
        traces.append(1)
        return gm.micro_vmap(
            lambda a: a, accumulator=A.SUM, microbatch_size=2, num_real_microbatches=n
        )(x)

    f = jax.jit(run)
    x = X[:, 0]
    assert float(f(x, 2)) == float(
        x[[0, 4, 1, 5]].sum()
    )  # microbatch j holds rows j, j + 4
    assert float(f(x, 4)) == float(x.sum())
    assert len(traces) == 1


def _loss(p, x, y, scale=1.0):
    pred = x @ p["w"] + p["b"]
    return jnp.sum(scale) * 0.5 * jnp.mean((pred - y) ** 2), {"s": jnp.sum(x)}


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    p = {"w": rng.normal(size=3).astype(np.float32), "b": np.float32(0.5)}
    return (
        p,
        rng.normal(size=(n, 3)).astype(np.float32),
        rng.normal(size=n).astype(np.float32),
    )


def _clip(g):
    return jax.tree_util.tree_map(lambda v: v / (1 + jnp.abs(v)), g)


@pytest.mark.parametrize("acc", ["SUM", "MEAN", "CONCAT"])
@pytest.mark.parametrize(
    "mb, n_real, keep", [(None, None, True), (2, None, False), (2, 3, True)]
)
def test_micro_grad_matches_optax(acc, mb, n_real, keep):
    p, x, y = _data()
    kw = {
        "has_aux": True,
        "batch_argnums": (1, 2),
        "keep_batch_dim": keep,
        "microbatch_size": mb,
        "num_real_microbatches": n_real,
        "transform_fn": _clip,
        "metrics_fn": lambda g: jnp.sqrt(g["w"] @ g["w"]),
    }
    ours = gm.micro_grad(_loss, accumulator=getattr(A, acc), **kw)(
        p, x, y, scale=np.ones(8, np.float32)
    )
    theirs = om.micro_grad(_loss, accumulator=getattr(OA, acc), **kw)(
        p, x, y, scale=np.ones(8, np.float32)
    )
    _close(ours, theirs)
    assert type(ours[1]).__name__ == "Aux" and ours[1]._fields == theirs[1]._fields


def test_micro_grad_matches_per_example_gradients_in_numpy():
    # Least squares: the gradient of 0.5 (x_i . w + b - y_i)^2 is r_i (x_i, 1); SUM of the clipped ones.
    p, x, y = _data(seed=1)
    f = lambda p, x, y: 0.5 * jnp.sum((x @ p["w"] + p["b"] - y) ** 2)
    grads, aux = jax.jit(
        gm.micro_grad(f, batch_argnums=(1, 2), microbatch_size=4, transform_fn=_clip)
    )(p, x, y)
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    r = x64 @ p["w"].astype(np.float64) + float(p["b"]) - y64
    gw, gb = r[:, None] * x64, r
    clip = lambda v: v / (1 + np.abs(v))
    np.testing.assert_allclose(grads["w"], clip(gw).sum(0), rtol=1e-5)
    np.testing.assert_allclose(grads["b"], clip(gb).sum(0), rtol=1e-5)
    np.testing.assert_allclose(aux.values, 0.5 * r**2, rtol=1e-5)


def test_reshape_batch_axis_matches_optax_column_major():
    tree = {"a": np.arange(24).reshape(2, 12), "b": np.arange(12).reshape(1, 12)}
    _close(gm.reshape_batch_axis(tree, 3, 1), om.reshape_batch_axis(tree, 3, 1))
    assert gm.reshape_batch_axis(np.arange(6), 2).tolist() == [[0, 3], [1, 4], [2, 5]]


def test_a_row_major_split_is_caught():
    # The subtle point of the layout: microbatch j is rows j, j + n, ... (column-major).
    x = np.arange(8.0, dtype=np.float32)
    row_major = x.reshape(4, 2)  # microbatch j: rows 2j, 2j + 1
    with pytest.raises(AssertionError):
        _close(row_major, om.reshape_batch_axis(x, 2))
    _close(gm.reshape_batch_axis(x, 2), om.reshape_batch_axis(x, 2))


def test_indivisible_batch_is_a_value_error_naming_both_sizes():
    p, x, y = _data()
    with pytest.raises(ValueError, match=r"8.*microbatch_size=3"):
        gm.micro_vmap(lambda a: a, microbatch_size=3)(x)
    with pytest.raises(ValueError, match=r"8.*microbatch_size=3"):
        gm.micro_grad(
            lambda p, x, y: _loss(p, x, y)[0], batch_argnums=(1, 2), microbatch_size=3
        )(p, x, y)
    with pytest.raises(ValueError, match=r"12.*microbatch_size=5"):
        gm.reshape_batch_axis({"a": np.zeros((2, 12))}, 5, 1)


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_bad_microbatch_size_is_a_value_error(bad):
    for make in (
        lambda: gm.micro_vmap(jnp.sin, microbatch_size=bad),
        lambda: gm.micro_grad(jnp.sum, microbatch_size=bad),
        lambda: gm.reshape_batch_axis(np.zeros(4), bad),
    ):
        with pytest.raises(ValueError, match="microbatch_size"):
            make()


def test_out_axes_other_than_zero_is_not_implemented():
    with pytest.raises(NotImplementedError, match="out_axes"):
        gm.micro_vmap(jnp.sin, out_axes=1)


def test_in_axes_of_the_wrong_length_is_a_value_error():
    with pytest.raises(ValueError, match="in_axes"):
        gm.micro_vmap(lambda a, b: a * b, in_axes=(0,), microbatch_size=2)(X, X)


def test_edge_cases_scalar_outputs_and_bf16_sums_accumulate_in_float32():
    # 512 microbatches of one bf16 value 1.0078125: the sum is 516 in float32; optax's bf16 carry says 512.
    x = jnp.full(512, 1.0078125, jnp.bfloat16)
    ours = gm.micro_vmap(lambda a: a, accumulator=A.SUM, microbatch_size=1)(x)
    assert ours.dtype == jnp.bfloat16 and float(ours) == 516.0
    assert (
        float(om.micro_vmap(lambda a: a, accumulator=OA.SUM, microbatch_size=1)(x))
        == 512.0
    )
    g, aux = gm.micro_grad(
        lambda w, x: jnp.sum(w * x), batch_argnums=1, microbatch_size=2
    )(np.float32(2.0), np.zeros(4, np.float32))
    assert (
        float(g) == 0.0 and aux.values.tolist() == [0.0] * 4
    )  # all-zero data: zero, finite


# ------------------------------------------------------- differences from optax (regressions)


def test_difference_int_in_axes_maps_every_positional_argument_like_jax_vmap():
    x = X[:, 0]
    ours = gm.micro_vmap(lambda a, b: a * b, microbatch_size=2)(x, x)
    np.testing.assert_array_equal(ours, jax.vmap(lambda a, b: a * b)(x, x))
    with pytest.raises(
        ValueError
    ):  # optax 0.2.8 turns in_axes=0 into (0,): one argument only
        om.micro_vmap(lambda a, b: a * b, microbatch_size=2)(x, x)


def test_difference_micro_grad_takes_unbatched_arguments_after_the_batch():
    p, x, _ = _data()
    f = lambda p, x, scale: jnp.sum(x @ p["w"]) * scale
    g, _ = gm.micro_grad(f, batch_argnums=1)(p, x, np.float32(2.0))
    np.testing.assert_allclose(g["w"], 2.0 * x.sum(0), rtol=1e-6)
    with pytest.raises(
        ValueError
    ):  # optax 0.2.8 builds in_axes only up to the last batch argument
        om.micro_grad(f, batch_argnums=1)(p, x, np.float32(2.0))


def test_difference_reshape_batch_axis_negative_axis_and_value_error():
    x = jnp.arange(24).reshape(2, 12)
    np.testing.assert_array_equal(
        gm.reshape_batch_axis(x, 3, -1), gm.reshape_batch_axis(x, 3, 1)
    )
    with pytest.raises(TypeError):  # optax 0.2.8: a reshape error for axis=-1
        om.reshape_batch_axis(x, 3, -1)
    with pytest.raises(
        TypeError
    ):  # optax 0.2.8: TypeError, not ValueError, for an indivisible batch
        om.reshape_batch_axis(x, 5, 1)


def test_namespace_has_every_optax_name():
    names = {n for n in dir(om) if not n.startswith("_")}
    assert names <= set(dir(gm))
    assert gm.microbatch is gx.microbatch
