"""The strategies of `gradxform.testing.strategies` generate what they promise."""

import importlib
import inspect
import math

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from hypothesis import Phase, find, given, settings

import gradxform as gx
from gradxform.testing import strategies as gst

# `find` looks for an example with a property; no shrinking (the examples need not be minimal).
FIND = settings(max_examples=300, database=None, phases=[Phase.generate], deadline=None)

F32, BF16, F16 = np.dtype(jnp.float32), np.dtype(jnp.bfloat16), np.dtype(jnp.float16)


def leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def nodes(tree):
    """Every container node of the tree (dicts, lists, tuples, NamedTuples)."""
    found = []

    def walk(x):
        if isinstance(x, (dict, list, tuple)):
            found.append(x)
            for child in x.values() if isinstance(x, dict) else x:
                walk(child)

    walk(tree)
    return found


# --------------------------------------------------------------------------- pytrees


@pytest.mark.parametrize("dtype", [F32, BF16, F16], ids=["f32", "bf16", "f16"])
def test_pytrees_dtype_occurs(dtype):
    tree = find(gst.pytrees(), lambda t: any(x.dtype == dtype for x in leaves(t)), settings=FIND)
    assert any(x.dtype == dtype for x in leaves(tree))


def test_pytrees_scalar_leaves_occur():
    def has_scalar(tree):
        return any(x.shape == () for x in leaves(tree))

    tree = find(gst.pytrees(allow_bare_leaf=False), has_scalar, settings=FIND)
    assert any(x.ndim == 0 for x in leaves(tree))


def test_pytrees_empty_axes_occur():
    tree = find(gst.pytrees(), lambda t: any(0 in x.shape for x in leaves(t)), settings=FIND)
    assert any(x.size == 0 and x.ndim >= 1 for x in leaves(tree))


@pytest.mark.parametrize(
    "node_type",
    [dict, list, tuple, gx.testing.Layer],
    ids=["dict", "list", "tuple", "namedtuple"],
)
def test_pytrees_node_type_occurs(node_type):
    def has(tree):
        return any(type(n) is node_type for n in nodes(tree))

    tree = find(gst.pytrees(), has, settings=FIND)
    assert has(tree)


def test_pytrees_nesting_occurs():
    tree = find(gst.pytrees(), lambda t: any(nodes(n)[1:] for n in nodes(t)), settings=FIND)
    assert len(nodes(tree)) >= 2


@given(gst.pytrees(max_side=3, max_dims=2))
def test_pytrees_respect_bounds(tree):
    assert leaves(tree), "a pytree has at least one leaf"
    for x in leaves(tree):
        assert isinstance(x, jax.Array)
        assert x.dtype in (F32, BF16, F16)
        assert x.ndim <= 2 and all(d <= 3 for d in x.shape)
        v = np.asarray(x, np.float32)
        assert np.all(np.isfinite(v)) and np.all(np.abs(v) <= gst.DEFAULT_MAX_VALUE)
        # No subnormals: every nonzero entry is a normal number of its dtype.
        tiny = float(ml_dtypes.finfo(x.dtype).tiny)
        assert np.all((v == 0) | (np.abs(v) >= tiny))


@given(gst.pytrees(dtypes=(jnp.bfloat16,), max_leaves=3))
def test_pytrees_dtypes_argument_is_respected(tree):
    assert {x.dtype for x in leaves(tree)} == {BF16}


def test_pytrees_nonfinite_only_when_asked():
    def has_nonfinite(tree):
        return any(not np.all(np.isfinite(np.asarray(x, np.float32))) for x in leaves(tree))

    assert has_nonfinite(find(gst.pytrees(allow_nonfinite=True), has_nonfinite, settings=FIND))


def test_pytrees_containers_argument_is_respected():
    tree = find(gst.pytrees(containers=("list",), allow_bare_leaf=False), lambda t: True, settings=FIND)
    assert all(type(n) is list for n in nodes(tree))


# --------------------------------------------------------------------------- params_and_grads


@given(gst.params_and_grads())
def test_params_and_grads_match(pair):
    params, grads = pair
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(grads)
    for p, g in zip(leaves(params), leaves(grads)):
        assert p.shape == g.shape and p.dtype == g.dtype


@given(gst.params_and_grads(dtypes=(jnp.bfloat16,), grad_dtypes=(jnp.float32,)))
def test_params_and_grads_in_different_dtypes(pair):
    params, grads = pair
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(grads)
    assert {x.dtype for x in leaves(params)} == {BF16}
    assert {x.dtype for x in leaves(grads)} == {F32}
    assert [x.shape for x in leaves(params)] == [x.shape for x in leaves(grads)]


# --------------------------------------------------------------------------- gradient_sequences

PARAMS = {"w": jnp.ones((3, 4), F32), "b": jnp.ones((4,), BF16), "s": jnp.ones((), F16)}


def entries(seq):
    return np.concatenate([np.asarray(x, np.float32).ravel() for g in seq for x in leaves(g)])


@given(gst.gradient_sequences(PARAMS, 3))
def test_gradient_sequences_match_params(seq):
    assert len(seq) == 3
    for g in seq:
        assert jax.tree_util.tree_structure(g) == jax.tree_util.tree_structure(PARAMS)
        for x, p in zip(leaves(g), leaves(PARAMS)):
            assert x.shape == p.shape and x.dtype == p.dtype
    v = entries(seq)
    assert np.all(np.isfinite(v)) and np.all(np.abs(v) <= np.finfo(np.float16).max)


@given(gst.gradient_sequences(PARAMS, 2, dtype=jnp.float32))
def test_gradient_sequences_dtype_override(seq):
    assert {x.dtype for g in seq for x in leaves(g)} == {F32}


def test_gradient_sequences_contain_all_zero_steps():
    seq = find(
        gst.gradient_sequences({"w": jnp.ones(3)}, 3, zeros=True),
        lambda s: any(not np.any(entries([g])) for g in s),
        settings=FIND,
    )
    assert any(all(not np.any(np.asarray(x, np.float32)) for x in leaves(g)) for g in seq)


def test_gradient_sequences_mix_zero_huge_and_tiny_entries():
    def mixed(seq):
        v = np.abs(entries(seq))
        huge = np.any(v >= gst.DEFAULT_HUGE / 8)
        tiny = np.any((v > 0) & (v <= 8 * gst.DEFAULT_TINY))
        return bool(np.any(v == 0) and huge and tiny)

    seq = find(gst.gradient_sequences({"w": jnp.ones(8)}, 2), mixed, settings=FIND)
    assert mixed(seq)


def test_gradient_sequences_magnitudes_can_be_turned_off():
    @given(gst.gradient_sequences({"w": jnp.ones(8)}, 2, huge=None, tiny=None, max_value=1.0))
    def check(seq):
        assert np.all(np.abs(entries(seq)) <= 1.0)

    check()


def test_gradient_sequences_accept_a_strategy_of_params():
    seq = find(gst.gradient_sequences(gst.pytrees(max_leaves=2), 2), lambda s: True, settings=FIND)
    assert len(seq) == 2


# --------------------------------------------------------------------------- hyperparameters


def _in_valid_range(h: gst.Hyper, value) -> bool:
    if value is None:
        return h.optional
    if h.kind == "bool":
        return isinstance(value, bool)
    if h.kind == "choice":
        return value in h.draw
    lo, hi, lo_in, hi_in = h.valid
    return (value >= lo if lo_in else value > lo) and (value <= hi if hi_in else value < hi)


@pytest.mark.parametrize("edge_cases", [False, True], ids=["typical", "edge_cases"])
@pytest.mark.parametrize("name", sorted(gst.HYPERPARAMETERS))
def test_hyperparameters_lie_in_the_documented_ranges(name, edge_cases):
    row = gst.HYPERPARAMETERS[name]

    @settings(max_examples=5)
    @given(gst.hyperparameters(name, edge_cases=edge_cases))
    def check(kwargs):
        assert set(kwargs) == set(row)
        for arg, value in kwargs.items():
            assert _in_valid_range(row[arg], value), (arg, value)
            if row[arg].kind == "float" and value is not None:
                assert float(np.float32(value)) == value or not math.isfinite(row[arg].valid[1])

    check()


def test_decay_rates_stay_below_one_in_float32():
    @given(gst.hyperparameters("adam", edge_cases=True))
    def check(kwargs):
        assert np.float32(kwargs["b2"]) < 1 and np.float32(kwargs["b1"]) < 1

    check()


def test_edge_cases_reach_the_boundaries():
    kw = find(
        gst.hyperparameters("adam", edge_cases=True),
        lambda k: k["learning_rate"] == 0 and k["b1"] == 0 and k["eps"] == 0,
        settings=FIND,
    )
    assert kw["learning_rate"] == 0 and kw["b1"] == 0 and kw["eps"] == 0


def test_fixed_hyperparameters_are_kept():
    @given(gst.hyperparameters("sgd", fixed={"momentum": 0.5}))
    def check(kwargs):
        assert kwargs["momentum"] == 0.5

    check()


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="adam"):
        gst.hyperparameters("no_such_optimizer")


# Positional arguments some factories need besides their hyperparameters.
_REQUIRED = {
    "lookahead": lambda: {"fast_optimizer": gx.sgd(0.1)},
    "apply_if_finite": lambda: {"inner": gx.sgd(0.1)},
    "MultiSteps": lambda: {"opt": gx.sgd(0.1)},
    "polyak_averaging": lambda: {"inner": gx.sgd(0.1)},
    "measure_with_ema": lambda: {"measure": gx.tree.norm},
}


def _factory(name):
    """The built-in `name`: from gradxform, or from a sub-package not re-exported yet."""
    for module in ("gradxform", "gradxform.wrappers", "gradxform.second_order", "gradxform.training"):
        try:
            found = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if callable(found):
            return found
    return None


def _builtins():
    return [name for name in sorted(gst.HYPERPARAMETERS) if _factory(name) is not None]


@pytest.mark.parametrize("name", _builtins())
def test_drawn_hyperparameters_are_accepted_by_the_builtins(name):
    factory = _factory(name)
    accepted = set(inspect.signature(factory).parameters)
    assert set(gst.HYPERPARAMETERS[name]) <= accepted, "the table names an argument the factory lacks"

    @settings(max_examples=5)
    @given(gst.hyperparameters(name, edge_cases=True))
    def check(kwargs):
        tx = factory(**_REQUIRED.get(name, dict)(), **kwargs)
        assert callable(tx.init) and callable(tx.update)

    check()


def _breakable(name):
    return any(
        h.kind in ("float", "int")
        and "not validated" not in h.source
        and (math.isfinite(h.valid[0]) or math.isfinite(h.valid[1]))
        for h in gst.HYPERPARAMETERS[name].values()
    )


@pytest.mark.parametrize("name", [n for n in _builtins() if _breakable(n)])
def test_invalid_hyperparameters_are_rejected_naming_the_argument(name):
    factory = _factory(name)
    # sgd / rmsprop: `momentum` is covered by the explicit test below.
    breakable = [a for a in gst.HYPERPARAMETERS[name] if a != "momentum"]

    @settings(max_examples=5)
    @given(gst.invalid_hyperparameters(name, only=breakable))
    def check(arg_and_kwargs):
        arg, kwargs = arg_and_kwargs
        with pytest.raises(ValueError, match=arg):
            factory(**_REQUIRED.get(name, dict)(), **kwargs)

    check()


# API.md: an impossible hyperparameter raises ValueError "naming the argument". These
# optimizers validate `momentum` inside `trace`, whose error names `decay` instead.
@pytest.mark.parametrize("name", ["sgd", "rmsprop"])
def test_invalid_momentum_is_rejected_naming_momentum(name):
    with pytest.raises(ValueError, match="momentum"):
        getattr(gx, name)(0.1, momentum=1.5)
