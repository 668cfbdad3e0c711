"""The laws of `check_transformation`: they hold for real transformations and each can fail.

For every law there is a minimal broken transformation here; checking it with
that law alone must raise an ``AssertionError`` whose report names the law and
the key path of the leaf where it broke.
"""

import ast
import pathlib
import re
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import strategies as st

import gradxform as gx
from gradxform.testing import check_transformation
from gradxform.testing import laws as L

F32, BF16, F16 = jnp.float32, jnp.bfloat16, jnp.float16

# One small example with two dtypes; 'b' comes first in flattening order.
PARAMS = {"b": jnp.linspace(-1.0, 1.0, 3, dtype=F32), "w": jnp.ones((2, 3), BF16)}


def tmap(f, *trees):
    return jax.tree_util.tree_map(f, *trees)


def stateless(fn, *, init_state=None):
    """A transformation with an (optional) constant state, updating by `fn(updates)`."""

    def init(params):
        return gx.EmptyState() if init_state is None else init_state(params)

    def update(updates, state, params=None, **extra_args):
        return fn(updates), state

    return gx.GradientTransformation(init, update)


class Acc(NamedTuple):
    acc: Any


def accumulate(cast_back=True):
    """Sums the gradients in the state; `cast_back=False` lets a bf16 state drift to f32."""

    def init(params):
        return Acc(tmap(jnp.zeros_like, params))

    def update(updates, state, params=None, **extra_args):
        new = tmap(lambda a, g: a.astype(F32) + g.astype(F32), state.acc, updates)
        if cast_back:
            new = tmap(lambda n, a: n.astype(a.dtype), new, state.acc)
        return updates, Acc(new)

    return gx.GradientTransformation(init, update)


class Count(NamedTuple):
    count: Any


def counting(weak_init=False):
    def init(params):
        return Count(jnp.asarray(0) if weak_init else jnp.zeros([], jnp.int32))

    def update(updates, state, params=None, **extra_args):
        return updates, Count(state.count + jnp.ones([], jnp.int32))

    return gx.GradientTransformation(init, update)


class History(NamedTuple):
    history: tuple


def growing_history():
    def init(params):
        return History(())

    def update(updates, state, params=None, **extra_args):
        return updates, History(state.history + (jnp.zeros([], F32),))

    return gx.GradientTransformation(init, update)


_calls = [0]


def impure_scale():
    """Scales by a Python-side call counter: differs call to call, and is frozen under jit."""

    def fn(updates):
        _calls[0] += 1
        return tmap(lambda g: (g.astype(F32) * (1.0 + _calls[0])).astype(g.dtype), updates)

    return stateless(fn)


def random_init():
    def noise(x):
        return jnp.asarray(np.random.rand(*x.shape), x.dtype)

    return stateless(lambda u: u, init_state=lambda p: Acc(tmap(noise, p)))


def copying_init():
    return stateless(lambda u: u, init_state=lambda p: Acc(tmap(jnp.array, p)))


def aliasing_init():
    """init keeps the params' own arrays as its state: a donating jitted step gives them twice."""
    return stateless(lambda u: u, init_state=lambda p: Acc(p))


def named_keyword_extra_arg():
    """Takes its extra argument as a named keyword instead of through ``**extra_args``."""

    def init(params):
        return gx.EmptyState()

    def update(updates, state, params=None, scale_by=1.0):
        return tmap(lambda g: (g.astype(F32) * scale_by).astype(g.dtype), updates), state

    return gx.GradientTransformation(init, update)


def fills_none_leaves():
    """Turns a None (frozen) update into zeros instead of keeping it None."""

    def fn(updates):
        return jax.tree_util.tree_map(
            lambda g: jnp.zeros((3,), F32) if g is None else g, updates, is_leaf=lambda x: x is None
        )

    return stateless(fn)


def dict_comprehension():
    """Rebuilds the updates with a dict comprehension, so a masked-out (empty) node breaks it."""
    return stateless(lambda u: {k: v * 2.0 for k, v in u.items()})


def no_extra_args():
    def init(params):
        return gx.EmptyState()

    def update(updates, state, params=None):
        return updates, state

    return gx.GradientTransformation(init, update)


def failing_init():
    def init(params):
        raise RuntimeError("init is not implemented")

    return gx.GradientTransformation(init, lambda u, s, p=None, **kw: (u, s))


SCALE_BY_2 = {"extra_args_fn": lambda step, params, grads: {"scale_by": 2.0}}

# law -> (broken transformation, the key path its report must name, check_transformation kwargs)
BROKEN = {
    "runs": (failing_init, "init raised RuntimeError", {}),
    "updates_structure": (lambda: stateless(lambda u: {"b": u["b"]}), "updates['w']", {}),
    "updates_shape": (lambda: stateless(lambda u: tmap(lambda g: g.reshape(-1), u)), "updates['w']", {}),
    "updates_dtype": (lambda: stateless(lambda u: tmap(lambda g: g.astype(F32), u)), "updates['w']", {}),
    "finite": (lambda: stateless(lambda u: tmap(lambda g: g / jnp.abs(g), u)), "updates['b']", {}),
    "state_structure": (growing_history, "state.history[0]", {}),
    "state_dtype": (lambda: accumulate(cast_back=False), "state.acc['w']", {}),
    "init_pure": (random_init, "state.acc['b']", {}),
    "init_value_independent": (copying_init, "state.acc['b']", {}),
    "deterministic": (impure_scale, "updates['b']", {}),
    "no_retrace": (lambda: counting(weak_init=True), "state.count", {}),
    "jit_consistent": (impure_scale, "updates['b']", {}),
    "donation": (aliasing_init, "state.acc['b']", {}),
    "lax_cond": (lambda: stateless(lambda u: tmap(lambda g: g.astype(F32), u)), "updates['w']", {}),
    "lax_scan": (lambda: accumulate(cast_back=False), "state.acc['w']", {}),
    "chain_identity_left": (named_keyword_extra_arg, "updates['b']", SCALE_BY_2),
    "chain_identity_right": (named_keyword_extra_arg, "updates['b']", SCALE_BY_2),
    "none_leaves": (fills_none_leaves, "updates['b']", {}),
    "masked": (dict_comprehension, "raised TypeError", {}),
    "ignores_extra_args": (no_extra_args, "raised TypeError", {}),
}


def test_every_law_has_a_broken_example():
    assert set(BROKEN) == set(L.LAWS)


def test_each_law_is_one_record_and_the_tables_derive_from_it():
    for name, law in L.LAWS.items():
        assert isinstance(law, L.Law) and law.name == name and law.statement
        assert (law.check is None) == (name == "runs")
        assert (law.hint is None) == (name == "runs")
    assert L.OPTIONAL_LAWS == ("none_leaves", "masked", "ignores_extra_args")
    assert L.DEFAULT_LAWS == tuple(n for n in L.LAWS if n != "runs" and n not in L.OPTIONAL_LAWS)
    compiled = {n: law.compiles for n, law in L.LAWS.items() if law.compiles is not None}
    assert compiled == {"no_retrace": 2, "jit_consistent": 2, "donation": 2, "lax_cond": 1, "lax_scan": 1}
    limited = {n: law.examples for n, law in L.LAWS.items() if law.examples is not None}
    assert limited == {"deterministic": 2, "chain_identity_left": 2, "chain_identity_right": 2}
    assert not set(limited) & set(compiled)


def test_trajectory_laws_run_on_the_first_two_examples_unless_thorough():
    """``deterministic`` runs on the float32 and bfloat16 trees by default, on all with thorough."""

    def impure_on_lists():  # nondeterministic only for a list tree (the fourth default example)
        def fn(updates):
            if isinstance(updates, list):
                _calls[0] += 1
                return tmap(lambda g: (g.astype(F32) * (1.0 + _calls[0])).astype(g.dtype), updates)
            return updates

        return stateless(fn)

    check_transformation(impure_on_lists(), laws=["deterministic"])
    with pytest.raises(AssertionError, match="law 'deterministic'"):
        check_transformation(impure_on_lists(), laws=["deterministic"], thorough=True)
    with pytest.raises(AssertionError, match="law 'deterministic'"):
        check_transformation(impure_scale(), laws=["deterministic"])  # the first example catches it


def _imports(path: pathlib.Path, package: str) -> set:
    """The gradxform.testing modules that the module at `path` imports (at any depth)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found |= {n for n in names if n.startswith(package)}
    return found


def test_testing_modules_import_without_cycles():
    """strategies imports neither the laws nor the runner; only the hypothesis driver imports strategies."""
    root = pathlib.Path(gx.testing.__file__).parent
    package = "gradxform.testing"
    modules = {}
    for path in root.rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        modules[".".join([package] + parts)] = path
    graph = {m: {i for i in _imports(p, package) if i in modules and i != m} for m, p in modules.items()}
    # The package __init__ only loads sub-modules lazily (by name, with importlib).
    assert graph[package] == set()
    importers_of_strategies = {m for m, deps in graph.items() if f"{package}.strategies" in deps}
    assert importers_of_strategies <= {f"{package}._property"}
    reach = {}

    def reachable(m, seen=()):
        if m in seen:
            raise AssertionError(f"import cycle: {' -> '.join(seen + (m,))}")
        if m not in reach:
            reach[m] = set(graph[m]).union(*[reachable(d, seen + (m,)) for d in graph[m]])
        return reach[m]

    for m in graph:
        reachable(m)
    assert not reach[f"{package}.strategies"] & {f"{package}.laws", f"{package}._runner", f"{package}._property"}


@pytest.mark.parametrize("law", list(L.LAWS))
def test_law_fails_on_a_broken_transformation(law):
    make, where, kwargs = BROKEN[law]
    laws = [] if law == "runs" else [law]
    with pytest.raises(AssertionError, match=f"law '{law}'") as info:
        check_transformation(make(), PARAMS, laws=laws, **kwargs)
    report = str(info.value)
    assert where in report
    assert "params {'b': f32[3], 'w': bf16[2,3]}" in report  # the example is shown
    assert info.value.laws == [law]


@pytest.mark.parametrize(
    "law", ["updates_dtype", "state_dtype", "no_retrace", "init_value_independent", "chain_identity_left", "donation"]
)
def test_fixed_counterpart_passes(law):
    """The broken transformations above, with the bug fixed, pass the same law."""
    fixed = {
        "updates_dtype": lambda: stateless(lambda u: u),
        "state_dtype": lambda: accumulate(cast_back=True),
        "no_retrace": lambda: counting(weak_init=False),
        "init_value_independent": lambda: stateless(
            lambda u: u, init_state=lambda p: Acc(tmap(jnp.zeros_like, p))
        ),
        "chain_identity_left": lambda: stateless(lambda u: u),
        "donation": copying_init,  # jnp.array copies
    }[law]
    check_transformation(fixed(), PARAMS, laws=[law], **SCALE_BY_2)


def test_report_names_step_example_and_hint():
    with pytest.raises(AssertionError) as info:
        check_transformation(accumulate(cast_back=False), PARAMS, laws=["state_dtype"])
    report = str(info.value)
    assert report.startswith("check_transformation: 1 of 1 laws broken: state_dtype")
    assert "where:    state.acc['w'] at step 0" in report
    assert "expected: bf16[2,3] (as init gave it)" in report
    assert "got:      f32[2,3]" in report
    assert "'given params', 3 steps" in report
    assert "hint:" in report


def test_all_broken_laws_are_reported():
    bad = stateless(lambda u: tmap(lambda g: g.astype(F32) / jnp.abs(g.astype(F32)), u))
    with pytest.raises(gx.testing.LawViolation) as info:
        check_transformation(bad, PARAMS, laws=["updates_dtype", "finite"])
    assert info.value.laws == ["updates_dtype", "finite"]


# --------------------------------------------------------------------------- real transformations

GRADXFORM = {
    "sgd_nesterov": lambda: gx.sgd(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: gx.adam(1e-3),
    "clip_then_adamw": lambda: gx.chain(gx.clip_by_global_norm(1.0), gx.adamw(1e-3, weight_decay=1e-2)),
}


@pytest.mark.parametrize("name", sorted(GRADXFORM))
def test_laws_hold_for_gradxform_builtins(name):
    check_transformation(GRADXFORM[name]())


OPTAX = {
    "adam": lambda: optax.adam(1e-3),
    "sgd_momentum": lambda: optax.sgd(0.1, momentum=0.9),
}


@pytest.mark.parametrize("name", sorted(OPTAX))
def test_laws_hold_for_optax_builtins(name):
    # optax mixes int32 counts with Python floats, which strict promotion (conftest) rejects.
    with jax.numpy_dtype_promotion("standard"):
        check_transformation(OPTAX[name]())


@pytest.mark.parametrize("name", ["adam", "sgd_nesterov"])
def test_optional_laws_hold_for_gradxform_builtins(name):
    check_transformation(GRADXFORM[name](), laws=list(L.OPTIONAL_LAWS))


def test_init_reads_params_turns_off_its_law():
    laws = ["init_value_independent", "init_pure"]
    check_transformation(copying_init(), PARAMS, laws=laws, init_reads_params=True)


def test_extra_args_reach_update():
    def init(params):
        return gx.EmptyState()

    def update(updates, state, params=None, **extra_args):
        value = extra_args["value"]  # raises without it
        return tmap(lambda g: (g.astype(F32) * value).astype(g.dtype), updates), state

    tx = gx.GradientTransformation(init, update)
    check_transformation(
        tx, PARAMS, extra_args_fn=lambda step, params, grads: {"value": jnp.float32(step + 1)}
    )
    with pytest.raises(AssertionError, match="law 'runs'"):
        check_transformation(tx, PARAMS, laws=["updates_dtype"])


def test_extra_args_that_are_not_arrays_are_static_under_jit():
    def init(params):
        return gx.EmptyState()

    def update(updates, state, params=None, *, value_fn=None, **extra_args):
        return tmap(lambda g: value_fn(g).astype(g.dtype), updates), state

    def halve(g):
        return g.astype(F32) * 0.5

    tx = gx.GradientTransformation(init, update)
    check_transformation(tx, PARAMS, extra_args_fn=lambda step, params, grads: {"value_fn": halve})


def test_unknown_law_is_an_error():
    with pytest.raises(ValueError, match="no_such_law"):
        check_transformation(gx.identity(), laws=["no_such_law"])


def test_grads_need_their_params():
    with pytest.raises(ValueError, match="params="):
        check_transformation(gx.identity(), grads=gx.testing.make_grads(PARAMS, 2))


# --------------------------------------------------------------------------- examples and gradients


def test_default_examples_cover_dtypes_scalars_empty_axes_and_node_types():
    examples = gx.testing.default_examples()
    leaves = [x for e in examples for x in jax.tree_util.tree_leaves(e.params)]
    assert {np.dtype(x.dtype) for x in leaves} == {np.dtype(F32), np.dtype(BF16)}
    assert any(x.ndim == 0 for x in leaves) and any(x.size == 0 for x in leaves)
    nested = examples[-1].params
    assert isinstance(nested, list) and isinstance(nested[0], tuple) and isinstance(nested[1], gx.testing.Layer)
    thorough = gx.testing.default_examples(thorough=True)
    def first_dtype(tree):
        return np.dtype(jax.tree_util.tree_leaves(tree)[0].dtype)

    dtypes = {(first_dtype(e.params), first_dtype(e.grads[0])) for e in thorough}
    assert (np.dtype(F16), np.dtype(F16)) in dtypes and (np.dtype(BF16), np.dtype(F32)) in dtypes


def flat(tree):
    return jax.tree_util.tree_leaves(tree)


def test_default_gradients_have_zero_steps_and_zero_coordinates():
    grads = gx.testing.make_grads(PARAMS, 5, thorough=True)
    assert all(not np.any(np.asarray(x, np.float32)) for x in jax.tree_util.tree_leaves(grads[1]))
    for g in grads:
        assert all(float(x.reshape(-1)[0]) == 0 for x in jax.tree_util.tree_leaves(g) if x.size > 1)
    scalar = gx.testing.make_grads({"s": jnp.ones((), F32)}, 3)
    assert float(scalar[0]["s"]) != 0  # a scalar leaf does receive gradient
    magnitude = [max(np.abs(np.asarray(x, np.float32)).max() for x in flat(g)) for g in grads]
    assert magnitude[3] > 100 and magnitude[4] < 0.1  # huge and tiny steps


@pytest.mark.slow
def test_thorough_check_holds_for_gradxform_adam():
    check_transformation(gx.adam(1e-3), thorough=True, include=list(L.OPTIONAL_LAWS))


# --------------------------------------------------------------------------- hypothesis variant


def test_property_variant_passes_on_a_correct_transformation():
    gx.testing.check_transformation_property(
        lambda decay, nesterov: gx.trace(decay, nesterov),
        hyperparameters="trace",
        max_examples=3,
        laws=["updates_dtype", "state_dtype", "finite", "deterministic"],
    )


def test_property_variant_shrinks_and_reports_the_example():
    def promotes_float16(scale):
        # Correct for float32 and bfloat16; float16 updates come back as float32.
        def leaf(g):
            return (g.astype(F32) * scale).astype(F32 if g.dtype == F16 else g.dtype)

        return stateless(lambda u: tmap(leaf, u))

    with pytest.raises(AssertionError, match="law 'updates_dtype'") as info:
        gx.testing.check_transformation_property(
            promotes_float16,
            hyperparameters={"scale": st.floats(0.5, 2.0)},
            max_examples=30,
            laws=["updates_dtype"],
        )
    report = str(info.value)
    head = report.splitlines()[0]
    assert head.startswith("check_transformation_property: law(s) updates_dtype broken with hyperparameters")
    assert "scale=" in head
    assert "'drawn by hypothesis'" in report
    # Shrunk to a minimal float16 tree: one bare array with no elements or a scalar.
    assert re.search(r"params f16\[0?\]\n", report), report
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Draw 2 (params)" in notes
