"""gx.tree / gx.tree_utils / the top-level moment helpers: optax's names, signatures and results.

Every function is compared with optax 0.2.8 on random trees (values and result
dtypes) and, where it computes something, with a float64 NumPy reference.
optax runs under standard dtype promotion (the suite is strict), since optax
itself promotes implicitly.
"""

from __future__ import annotations

import inspect
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
import gradxform.tree  # until gradxform/__init__ imports it
import gradxform.tree_utils

TREE = gx.tree
UTILS = gx.tree_utils
MOMENTS = ("bias_correction", "update_infinity_moment", "update_moment", "update_moment_per_elem_norm")


def _public(module) -> set:
    return {n for n in dir(module) if not n.startswith("_") and not inspect.ismodule(getattr(module, n))}


def _optax(fn, *args, **kwargs):
    with jax.numpy_dtype_promotion("standard"):
        return fn(*args, **kwargs)


class Pair(NamedTuple):
    first: object
    second: object


def random_tree(seed: int, dtype=jnp.float32, scale: float = 1.0, small: bool = False):
    """A nested tree (dict, list, tuple, NamedTuple, scalar leaf) of random arrays of `dtype`."""
    rng = np.random.default_rng(seed)

    def arr(*shape):
        if np.issubdtype(np.dtype(dtype), np.integer):
            return jnp.asarray(rng.integers(-5, 6, size=shape)).astype(dtype)
        x = rng.normal(size=shape) * scale
        if np.issubdtype(np.dtype(dtype), np.complexfloating):
            x = x + 1j * rng.normal(size=shape) * scale
        return jnp.asarray(x).astype(dtype)

    if small:
        return {"a": arr(6), "c": [Pair(arr(), arr(6))]}
    return {"a": arr(2, 3), "b": [arr(6), arr()], "c": (Pair(arr(6), arr(6)),)}


def f64(tree):
    return [np.asarray(x).astype(np.complex128 if np.iscomplexobj(x) else np.float64).ravel()
            for x in jax.tree_util.tree_leaves(tree)]


def assert_same_leaves(got, want, rtol=1e-6, atol=1e-6, check_dtype=True):
    assert jax.tree_util.tree_structure(got) == jax.tree_util.tree_structure(want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        if check_dtype:
            assert jnp.asarray(g).dtype == jnp.asarray(w).dtype, (g, w)
        np.testing.assert_allclose(
            np.asarray(g, np.complex128 if np.iscomplexobj(g) else np.float64),
            np.asarray(w, np.complex128 if np.iscomplexobj(w) else np.float64),
            rtol=rtol,
            atol=atol,
        )


# --------------------------------------------------------------------------- names and signatures


def test_names_match_optax_tree():
    assert set(TREE.__all__) == _public(optax.tree)
    assert TREE.__all__ == sorted(TREE.__all__)


def test_names_match_optax_tree_utils():
    assert set(UTILS.__all__) == _public(optax.tree_utils)
    assert UTILS.__all__ == sorted(UTILS.__all__)


def _shape_of_signature(fn):
    return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.parametrize("name", sorted(_public(optax.tree)))
def test_signature_matches_optax(name):
    assert _shape_of_signature(getattr(TREE, name)) == _shape_of_signature(getattr(optax.tree, name))


@pytest.mark.parametrize("name", sorted(_public(optax.tree_utils) - {"NamedTupleKey"}))
def test_tree_utils_are_the_tree_functions(name):
    # Same objects where optax's are the same objects.
    short = name[len("tree_"):]
    assert (getattr(UTILS, name) is getattr(TREE, short)) == (
        getattr(optax.tree_utils, name) is getattr(optax.tree, short)
    )
    assert _shape_of_signature(getattr(UTILS, name)) == _shape_of_signature(getattr(optax.tree_utils, name))


def test_named_tuple_key_fields_and_str():
    key = UTILS.NamedTupleKey("ScaleByAdamState", "mu")
    ref = optax.tree_utils.NamedTupleKey("ScaleByAdamState", "mu")
    assert (key.tuple_name, key.name) == (ref.tuple_name, ref.name)
    assert str(key) == str(ref) and key == UTILS.NamedTupleKey("ScaleByAdamState", "mu")
    assert hash(key) == hash(UTILS.NamedTupleKey("ScaleByAdamState", "mu"))


@pytest.mark.parametrize("name", MOMENTS)
def test_top_level_moment_helpers_are_the_tree_ones(name):
    if not hasattr(gx, name):
        pytest.skip("top-level export pending the merge of gradxform/_moments.py")
    assert getattr(gx, name) is getattr(TREE, name)
    assert _shape_of_signature(getattr(gx, name)) == _shape_of_signature(getattr(optax, name))


def test_map_params_is_tree_map_params():
    assert TREE.map_params is gx.tree_map_params


# --------------------------------------------------------------------------- element-wise ops: parity


BINARY = ["add", "sub", "mul", "div"]
DTYPES = [jnp.float32, jnp.bfloat16, jnp.float16, jnp.int32, jnp.complex64]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.int32, jnp.complex64], ids=lambda d: np.dtype(d).name)
def test_elementwise_ops_match_optax(dtype):
    x, y = random_tree(0, dtype, small=True), random_tree(1, dtype, small=True)
    if np.issubdtype(np.dtype(dtype), np.integer):
        y = jax.tree_util.tree_map(lambda v: jnp.where(v == 0, 1, v).astype(dtype), y)
    tol = {"bfloat16": 1e-2, "float16": 2e-3}.get(np.dtype(dtype).name, 1e-6)
    for name in BINARY:
        assert_same_leaves(getattr(TREE, name)(x, y), _optax(getattr(optax.tree, name), x, y), tol, tol)
    assert_same_leaves(TREE.add(x, y, x), _optax(optax.tree.add, x, y, x), tol, tol)
    for name in ["real", "conj"]:
        assert_same_leaves(getattr(TREE, name)(x), _optax(getattr(optax.tree, name), x))
    for s in (0.5, -3):
        assert_same_leaves(TREE.scale(s, x), _optax(optax.tree.scale, s, x), tol, tol)
        assert_same_leaves(TREE.add_scale(x, s, y), _optax(optax.tree.add_scale, x, s, y), tol, tol)
    if not np.issubdtype(np.dtype(dtype), np.complexfloating):
        assert_same_leaves(TREE.clip(x, -1, 1), _optax(optax.tree.clip, x, -1, 1))
        assert_same_leaves(TREE.clip(x, None, 0), _optax(optax.tree.clip, x, None, 0))
    for cond in (True, jnp.array(False)):
        assert_same_leaves(TREE.where(cond, x, y), _optax(optax.tree.where, cond, x, y))


def test_scale_and_add_scale_round_once_in_low_precision():
    # 0.1 is not a bfloat16 number: optax rounds it to bfloat16 first, gradxform multiplies
    # in float32 and rounds the product once.
    x = {"w": jnp.arange(1, 200, dtype=jnp.float32).astype(jnp.bfloat16)}
    exact = np.arange(1, 200) * 0.1
    ours = np.asarray(TREE.scale(0.1, x)["w"], np.float64)
    theirs = np.asarray(_optax(optax.tree.scale, 0.1, x)["w"], np.float64)
    assert np.max(np.abs(ours - exact) / exact) <= np.max(np.abs(theirs - exact) / exact)
    assert TREE.scale(0.1, x)["w"].dtype == jnp.bfloat16
    np.testing.assert_allclose(ours, exact, rtol=2**-8)


def test_none_leaves_pass_through():
    x = {"a": jnp.ones(2), "b": None}
    assert TREE.add(x, x)["b"] is None
    assert TREE.scale(2.0, x)["b"] is None
    assert TREE.update_moment(x, x, 0.9, 2)["b"] is None
    assert TREE.bias_correction(x, 0.9, 1)["b"] is None
    assert TREE.norm(x) == pytest.approx(math.sqrt(2))
    assert TREE.size(x) == 2


# --------------------------------------------------------------------------- reductions


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_reductions_match_optax_and_float64(dtype):
    x, y = random_tree(2, dtype), random_tree(3, dtype)
    xs, ys = f64(x), f64(y)
    tol = {"bfloat16": 1e-2, "float16": 1e-3, "int32": 0}.get(np.dtype(dtype).name, 1e-5)
    want_sum = sum(v.sum() for v in xs)
    want_vdot = sum(np.vdot(a, b) for a, b in zip(xs, ys))
    for got, ref, want in [
        (TREE.sum(x), _optax(optax.tree.sum, x), want_sum),
        (TREE.vdot(x, y), _optax(optax.tree.vdot, x, y), want_vdot),
    ]:
        assert got.dtype == ref.dtype
        np.testing.assert_allclose(complex(got), complex(want), rtol=tol, atol=tol)
    if not np.issubdtype(np.dtype(dtype), np.complexfloating):
        real = np.concatenate(xs).real
        for name, want in [("max", real.max()), ("min", real.min())]:
            got = getattr(TREE, name)(x)
            assert got.dtype == dtype and float(got) == float(want)
    assert TREE.size(x) == optax.tree.size(x) == 6 + 6 + 1 + 6 + 6


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_norm_matches_optax_and_float64(dtype):
    x = random_tree(4, dtype)
    flat = np.abs(np.concatenate(f64(x)))
    integer = np.issubdtype(np.dtype(dtype), np.integer)
    tol = {"bfloat16": 8e-3, "float16": 1e-3}.get(np.dtype(dtype).name, 1e-6)
    for ord in (None, 1, 2, jnp.inf, "inf"):
        for squared in (False, True):
            want = {None: np.sqrt((flat**2).sum()), 2: np.sqrt((flat**2).sum()), 1: flat.sum()}.get(ord, flat.max())
            want = want**2 if squared else want
            got = TREE.norm(x, ord=ord, squared=squared)
            ref = _optax(optax.tree.norm, x, ord=ord, squared=squared)
            if not (integer and ord in (jnp.inf, "inf")):  # optax: a weakly typed float32 there
                assert got.dtype == ref.dtype, (ord, squared)
            np.testing.assert_allclose(float(got), want, rtol=tol, err_msg=f"ord={ord}, squared={squared}")


def test_norm_rejects_other_orders_and_handles_empty_trees():
    for bad in (0, 3, -1, "fro", -jnp.inf):
        with pytest.raises(ValueError, match="Unsupported ord"):
            TREE.norm({"a": jnp.ones(2)}, ord=bad)
    for ord in (None, 1, jnp.inf):
        assert float(TREE.norm({}, ord=ord)) == 0.0  # optax: -inf for ord=inf


def test_norm_does_not_overflow_float16():
    x = {"w": jnp.full((3,), 300.0, jnp.float16)}  # squares overflow float16 (65504)
    got = TREE.norm(x)
    assert got.dtype == jnp.float16
    np.testing.assert_allclose(float(got), 300 * math.sqrt(3), rtol=1e-3)
    assert not np.isfinite(float(optax.tree.norm(x)))  # optax accumulates the squares in float16
    big = {"w": jnp.full((4,), 1e20, jnp.float32)}  # float32 squares overflow
    np.testing.assert_allclose(float(TREE.norm(big)), 2e20, rtol=1e-6)


def test_reductions_accept_mixed_dtypes_under_strict_promotion():
    x = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    assert TREE.sum(x).dtype == jnp.float32 and float(TREE.sum(x)) == 5.0
    assert float(TREE.vdot(x, x)) == 5.0
    assert TREE.norm(x).dtype == jnp.float32
    assert float(TREE.max(x)) == 1.0
    with pytest.raises(jax.dtypes.TypePromotionError):  # optax needs standard promotion
        optax.tree.sum(x)


def test_empty_tree_reductions_match_optax():
    assert TREE.sum({}) == optax.tree.sum({}) == 0
    assert TREE.vdot({}, {}) == optax.tree.vdot({}, {}) == 0
    assert TREE.max({}) == optax.tree.max({}) == -math.inf
    assert TREE.min({}) == optax.tree.min({}) == math.inf
    assert TREE.size({}) == 0
    assert bool(TREE.allclose({}, {}))


def test_allclose_matches_optax():
    x = random_tree(5)
    close = jax.tree_util.tree_map(lambda v: v + 1e-7, x)
    far = jax.tree_util.tree_map(lambda v: v + 1e-2, x)
    for other in (close, far):
        assert bool(TREE.allclose(x, other)) == bool(optax.tree.allclose(x, other))
    nan = {"a": jnp.array([jnp.nan])}
    assert not bool(TREE.allclose(nan, nan)) and bool(TREE.allclose(nan, nan, equal_nan=True))
    assert bool(TREE.allclose(x, far, atol=0.1))
    with pytest.raises(ValueError):
        TREE.allclose({"a": jnp.ones(2)}, {"b": jnp.ones(2)})


# --------------------------------------------------------------------------- construction and dtypes


def test_constructors_and_casts_match_optax():
    x = {"a": jnp.ones(3, jnp.float32), "b": [jnp.zeros((2,), jnp.bfloat16)], "c": None}
    for fn, args in [
        ("zeros_like", ()),
        ("ones_like", ()),
        ("zeros_like", (jnp.int32,)),
        ("full_like", (3,)),
        ("full_like", (2.5, jnp.float16)),
        ("cast", (jnp.bfloat16,)),
        ("cast", (None,)),
        ("batch_shape", ((4, 2),)),
    ]:
        assert_same_leaves(getattr(TREE, fn)(x, *args), getattr(optax.tree, fn)(x, *args))
    other = {"a": jnp.zeros(3, jnp.int32), "b": [jnp.zeros((2,), jnp.float32)], "c": None}
    assert_same_leaves(TREE.cast_like(x, other), optax.tree.cast_like(x, other))


def test_dtype_matches_optax():
    f16, f32, bf16 = jnp.ones(2, jnp.float16), jnp.ones(2, jnp.float32), jnp.ones(2, jnp.bfloat16)
    i32, u32 = jnp.ones(2, jnp.int32), jnp.ones(2, jnp.uint32)
    cases = [({"a": f32, "b": f32}, None), ({}, None), ([1.0, 2.0], None), ([1, 2.0], "promote")]
    for tree in ({"a": f16, "b": f32}, {"a": i32, "b": u32}, {"a": f32, "b": i32}):
        cases += [(tree, h) for h in ("promote", "highest", "lowest")]
    for tree, handler in cases:
        try:
            want = _optax(optax.tree.dtype, tree, handler)
        except ValueError:
            with pytest.raises(ValueError):
                TREE.dtype(tree, handler)
        else:
            assert TREE.dtype(tree, handler) == want, (tree, handler)
    with pytest.raises(ValueError, match=r"\['b'\]"):
        TREE.dtype({"a": f32, "b": bf16})
    with pytest.raises(ValueError, match="cannot be promoted"):
        TREE.dtype({"a": f16, "b": bf16}, "highest")
    with pytest.raises(ValueError, match="mixed_dtype_handler"):
        TREE.dtype({"a": f32}, "largest")


# --------------------------------------------------------------------------- random


def test_random_helpers_match_optax():
    target = {"a": jnp.zeros((2, 3)), "b": [jnp.zeros(4, jnp.bfloat16), None]}
    for key in (jax.random.key(3), jax.random.PRNGKey(3)):
        ours, theirs = TREE.split_key_like(key, target), optax.tree.split_key_like(key, target)
        assert_same_leaves(TREE.unwrap_random_key_data(ours), optax.tree.unwrap_random_key_data(theirs), 0, 0)
        for args in [(), (jax.random.uniform,), (jax.random.normal, jnp.float16)]:
            assert_same_leaves(TREE.random_like(key, target, *args), optax.tree.random_like(key, target, *args), 0, 0)
    state = {"key": jax.random.key(1), "raw": jax.random.PRNGKey(1), "x": jnp.ones(2)}
    unwrapped = TREE.unwrap_random_key_data(state)
    assert unwrapped["key"].dtype == jnp.uint32 and unwrapped["raw"] is state["raw"]


# --------------------------------------------------------------------------- moments


def test_moments_match_optax_and_float64():
    g, m = random_tree(6), jax.tree_util.tree_map(jnp.abs, random_tree(7))
    gs, ms = f64(g), f64(m)
    for order in (1, 2, 3):
        got = TREE.update_moment(g, m, 0.9, order)
        assert_same_leaves(got, _optax(optax.tree.update_moment, g, m, 0.9, order), 1e-5, 1e-6)
        for a, gi, mi in zip(f64(got), gs, ms):
            np.testing.assert_allclose(a, 0.1 * gi**order + 0.9 * mi, rtol=1e-6, atol=1e-7)
        got = TREE.update_moment_per_elem_norm(g, m, 0.99, order)
        if order == 2:  # optax 0.2.8 uses g**order, not |g|**order, for real g (differs for odd orders)
            assert_same_leaves(got, _optax(optax.tree.update_moment_per_elem_norm, g, m, 0.99, order), 1e-5, 1e-6)
        for a, gi, mi in zip(f64(got), gs, ms):
            np.testing.assert_allclose(a, 0.01 * np.abs(gi) ** order + 0.99 * mi, rtol=1e-6, atol=1e-7)
    got = TREE.update_infinity_moment(g, m, 0.9, 1e-3)
    assert_same_leaves(got, _optax(optax.tree.update_infinity_moment, g, m, 0.9, 1e-3))
    for a, gi, mi in zip(f64(got), gs, ms):
        np.testing.assert_allclose(a, np.maximum(np.abs(gi) + 1e-3, 0.9 * mi), rtol=1e-6)
    for count in (1, 2, 10, jnp.int32(1000)):
        got = TREE.bias_correction(m, 0.999, count)
        assert_same_leaves(got, _optax(optax.tree.bias_correction, m, 0.999, count), 1e-4, 0)
        for a, mi in zip(f64(got), ms):
            np.testing.assert_allclose(a, mi / (1 - 0.999 ** int(count)), rtol=4e-7)


def test_moments_on_complex_and_low_precision_leaves():
    g = {"z": jnp.array([3 + 4j, 1j], jnp.complex64)}
    m = {"z": jnp.array([1.0, 2.0], jnp.float32)}
    got = TREE.update_moment_per_elem_norm(g, m, 0.5, 2)
    assert got["z"].dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got["z"]), [13.0, 1.5])
    assert_same_leaves(got, _optax(optax.tree.update_moment_per_elem_norm, g, m, 0.5, 2))
    bf = {"w": jnp.array([0.1, -0.3], jnp.bfloat16)}
    assert TREE.update_moment(bf, bf, 0.999, 2)["w"].dtype == jnp.bfloat16
    assert TREE.bias_correction(bf, 0.999, jnp.int32(3))["w"].dtype == jnp.bfloat16
    # decay as an array (inject_hyperparams) and under strict promotion (optax needs standard).
    got = TREE.bias_correction(m, jnp.float32(0.9), jnp.int32(2))
    np.testing.assert_allclose(np.asarray(got["z"]), np.array([1.0, 2.0]) / 0.19, rtol=1e-6)


def _broken_update_moment(updates, moments, decay, order):
    """A deliberately broken rule: the decay weights swapped."""
    return jax.tree_util.tree_map(lambda g, m: decay * g**order + (1 - decay) * m, updates, moments)


def _broken_bias_correction(moment, decay, count):
    """A deliberately broken rule: corrected by 1 - decay**(count - 1)."""
    return jax.tree_util.tree_map(lambda m: m / (1 - decay ** (count + 1)), moment)


@pytest.mark.parametrize(
    "name, broken", [("update_moment", _broken_update_moment), ("bias_correction", _broken_bias_correction)]
)
def test_reference_check_catches_broken_moment_rules(name, broken):
    g, m = random_tree(8), random_tree(9)
    args = (g, m, 0.9, 2) if name == "update_moment" else (m, 0.9, 3)

    def reference(*a):
        if name == "update_moment":
            return [0.1 * gi**2 + 0.9 * mi for gi, mi in zip(f64(g), f64(m))]
        return [mi / (1 - 0.9**3) for mi in f64(m)]

    def check(fn):
        for a, want in zip(f64(fn(*args)), reference()):
            np.testing.assert_allclose(a, want, rtol=1e-5, atol=1e-6)

    check(getattr(TREE, name))
    with pytest.raises(AssertionError):
        check(broken)


# --------------------------------------------------------------------------- get / set / get_all_with_path


class Inner(NamedTuple):
    count: object
    mu: object


class Outer(NamedTuple):
    count: object
    inner: object
    extra: object


def _plain_tree():
    inner = Inner(jnp.int32(1), {"w": jnp.ones(2), "count": jnp.zeros(1)})
    return Outer(jnp.int32(0), [inner, {"mu": jnp.full(3, 2.0)}], {"a": {"a": 1.0, "b": None}, "Inner": 3})


def _readable(found):
    return [(jax.tree_util.keystr(p), v) for p, v in found]


@pytest.mark.parametrize("key", ["count", "mu", "a", "b", "w", "Inner", "Outer", "extra", "zzz"])
def test_get_all_with_path_matches_optax(key):
    tree = _plain_tree()
    ours = _readable(TREE.get_all_with_path(tree, key))
    theirs = _readable(optax.tree.get_all_with_path(tree, key))
    assert [p for p, _ in ours] == [p for p, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        assert a is b
    is_array = lambda path, value: isinstance(value, jax.Array)
    assert _readable(TREE.get_all_with_path(tree, key, is_array)) == _readable(
        optax.tree.get_all_with_path(tree, key, is_array)
    )


def test_filtering_sees_named_tuple_keys():
    tree = _plain_tree()
    in_inner = lambda path, value: any(
        isinstance(k, UTILS.NamedTupleKey) and k.tuple_name == "Inner" for k in path
    )
    assert TREE.get(tree, "count", filtering=lambda p, v: p[-1] == UTILS.NamedTupleKey("Inner", "count")) is tree.inner[0].count
    assert [jax.tree_util.keystr(p) for p, _ in TREE.get_all_with_path(tree, "count", in_inner)] == [
        "Outer.inner[0]Inner.count",
        "Outer.inner[0]Inner.mu['count']",
    ]


def test_get_matches_optax_and_names_ambiguous_keys():
    tree = _plain_tree()
    for key in ["w", "extra", "Outer", "zzz"]:
        assert TREE.get(tree, key) is optax.tree.get(tree, key)
    assert TREE.get(tree, "zzz", default=7) == 7
    with pytest.raises(KeyError, match=r"'count'.*Outer\.count.*Inner\.count"):
        TREE.get(tree, "count")
    with pytest.raises(KeyError):
        optax.tree.get(tree, "count")


def test_set_matches_optax_and_keeps_node_types():
    tree = _plain_tree()
    for kwargs in [{"w": 5.0}, {"mu": None}, {"Inner": 0}, {"extra": {"x": 1}}, {"w": 1, "b": 2}, {"a": 9}]:
        ours, theirs = TREE.set(tree, **kwargs), optax.tree.set(tree, **kwargs)
        assert jax.tree_util.tree_structure(ours) == jax.tree_util.tree_structure(theirs)
        assert_same_leaves(ours, theirs, 0, 0)
    new = TREE.set(tree, w=jnp.zeros(2))
    assert type(new) is Outer and type(new.inner[0]) is Inner and isinstance(new.inner, list)
    assert list(new.extra) == ["a", "Inner"]  # dict order kept
    only_outer = TREE.set(tree, lambda p, v: len(p) == 1, count=jnp.int32(5))
    assert int(only_outer.count) == 5 and only_outer.inner[0].count is tree.inner[0].count


def test_set_replaces_every_match_including_inside_lists():
    # optax 0.2.8 leaves z[0]['a'] unchanged here; every match is replaced.
    tree = {"z": [{"a": 1}], "a": {"a": 3}}
    assert TREE.set(tree, a=9) == {"z": [{"a": 9}], "a": 9}
    assert optax.tree.set(tree, a=9) == {"z": [{"a": 1}], "a": 9}


def test_set_raises_naming_the_missing_key():
    tree = _plain_tree()
    with pytest.raises(KeyError, match=r"'learning_rate'.*'count'"):
        TREE.set(tree, learning_rate=0.1)
    with pytest.raises(KeyError, match="filtering"):
        TREE.set(tree, lambda p, v: False, count=1)


def test_get_and_set_on_inject_hyperparams_and_chain_states():
    params = {"w": jnp.ones(3), "b": jnp.zeros(())}
    tx = gx.inject_hyperparams(gx.adam)(learning_rate=0.1)
    state = tx.init(params)
    lr = TREE.get(state, "learning_rate")
    assert lr.dtype == jnp.float32 and float(lr) == pytest.approx(0.1)
    new = TREE.set(state, learning_rate=jnp.float32(0.01))
    assert jax.tree_util.tree_structure(new) == jax.tree_util.tree_structure(state)
    assert float(TREE.get(new, "learning_rate")) == pytest.approx(0.01)
    # The changed rate is used by the next update.
    grads = {"w": jnp.ones(3), "b": jnp.ones(())}
    u_new, _ = tx.update(grads, new, params)
    u_old, _ = tx.update(grads, state, params)
    np.testing.assert_allclose(np.asarray(u_new["w"]), np.asarray(u_old["w"]) / 10, rtol=1e-5)
    mu = TREE.get(state, "mu")
    assert jax.tree_util.tree_structure(mu) == jax.tree_util.tree_structure(params)
    ones = TREE.set(state, mu=TREE.ones_like(mu))
    assert float(TREE.sum(TREE.get(ones, "mu"))) == 4.0
    chained = gx.chain(gx.trace(0.9), gx.scale_by_adam()).init(params)
    assert len(TREE.get_all_with_path(chained, "count")) == 1  # trace has no count
    assert len(TREE.get_all_with_path(chained, "ScaleByAdamState")) == 1
    adam_count = TREE.get(chained, "count", filtering=lambda p, v: p[-1].tuple_name == "ScaleByAdamState")
    assert int(adam_count) == 0


def _names(tree):
    """Every dict key and NamedTuple field / class name in `tree`."""
    names = set()

    def visit(node):
        if isinstance(node, tuple) and hasattr(type(node), "_fields"):
            names.add(type(node).__name__)
            names.update(node._fields)
            for child in node:
                visit(child)
        elif isinstance(node, dict):
            names.update(k for k in node if isinstance(k, str))
            for child in node.values():
                visit(child)
        elif isinstance(node, (list, tuple)):
            for child in node:
                visit(child)

    visit(tree)
    return names


def test_get_and_set_work_on_every_registered_state():
    from gradxform.testing.registry import REGISTRY

    params = {"w": jnp.ones((2, 3)), "b": jnp.zeros(3)}
    checked = 0
    for entry in REGISTRY:
        try:
            state = entry.build().init(params)
        except Exception:
            continue
        structure = jax.tree_util.tree_structure(state)
        for name in _names(state):
            found = TREE.get_all_with_path(state, name)
            assert found, (entry.name, name)
            if len(found) > 1:
                with pytest.raises(KeyError, match=repr(name)):
                    TREE.get(state, name)
                continue
            _path, value = found[0]
            assert TREE.get(state, name) is value
            # Replace it with a copy of the same structure: the state's structure is unchanged.
            copy = jax.tree_util.tree_map(lambda x: x, value)
            new = TREE.set(state, **{name: copy})
            assert jax.tree_util.tree_structure(new) == structure, (entry.name, name)
            assert TREE.get(new, name) is copy
            checked += 1
    assert checked > 100
