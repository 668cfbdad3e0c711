"""Conditional, accumulating, partitioning and monitoring wrappers; the typing names; checkpoints shared with optax."""

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing import check_against_reference, reference

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion

PARAMS = {
    "layer1": {"w": jnp.arange(12.0).reshape(3, 4) / 10, "b": jnp.ones(4)},
    "head": [jnp.ones(2), jnp.asarray(0.5)],
}


def _grads(seed, scale=1.0, like=PARAMS):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda p: jnp.asarray(scale * rng.normal(size=np.shape(p)), jnp.float32), like)


def _labels(params):
    return jax.tree_util.tree_map(lambda p: "m" if p.ndim >= 2 else "v", params)


def _close(a, b, rtol=1e-5, atol=1e-7):
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), rtol=rtol, atol=atol)


def _leaf_signature(tree):
    return [(np.shape(x), jnp.asarray(x).dtype) for x in jax.tree_util.tree_leaves(tree)]


def _namedtuple_fields(tree):
    """The (class name, fields) of every NamedTuple node, in flattening order."""
    out = []

    def visit(node):
        if isinstance(node, tuple) and hasattr(node, "_fields"):
            out.append(node._fields)
        if isinstance(node, dict):
            for k in sorted(node):
                visit(node[k])
        elif isinstance(node, (list, tuple)):
            for x in node:
                visit(x)

    visit(tree)
    return out


# ------------------------------------------------------------------------- checkpoints


def _checkpoint_roundtrip(ours, theirs, steps_before=3, steps_after=3, grads=None):
    """optax's state after some steps, loaded into gradxform's treedef, continues like optax (and back)."""
    grads = grads or [_grads(i) for i in range(steps_before + steps_after)]
    s_ours, s_theirs = ours.init(PARAMS), theirs.init(PARAMS)
    with loose:
        theirs_update = jax.jit(theirs.update)
    ours_update = jax.jit(ours.update)
    for g in grads[:steps_before]:
        _, s_ours = ours_update(g, s_ours, PARAMS)
        with loose:
            _, s_theirs = theirs_update(g, s_theirs, PARAMS)
    # Same leaves: count, shapes, dtypes, values; same NamedTuple field names.
    assert _leaf_signature(s_ours) == _leaf_signature(s_theirs)
    assert _namedtuple_fields(s_ours) == _namedtuple_fields(s_theirs)
    _close(s_ours, s_theirs)
    # optax -> gradxform: optax's leaves in our treedef.
    loaded = jax.tree_util.tree_structure(s_ours).unflatten(jax.tree_util.tree_leaves(s_theirs))
    # gradxform -> optax: our leaves in optax's treedef.
    back = jax.tree_util.tree_structure(s_theirs).unflatten(jax.tree_util.tree_leaves(s_ours))
    for g in grads[steps_before:]:
        u_ours, loaded = ours_update(g, loaded, PARAMS)
        with loose:
            u_theirs, s_theirs = theirs_update(g, s_theirs, PARAMS)
            u_back, back = theirs_update(g, back, PARAMS)
        _close(u_ours, u_theirs)
        _close(u_back, u_theirs)
    _close(loaded, s_theirs)


def test_partition_state_flattens_like_optax_and_restores_both_ways():
    ours = gx.partition({"m": gx.adam(0.1), "v": gx.sgd(0.1, momentum=0.9)}, _labels)
    theirs = optax.partition({"m": optax.adam(0.1), "v": optax.sgd(0.1, momentum=0.9)}, _labels)
    assert gx.PartitionState._fields == optax.PartitionState._fields == ("inner_states",)
    assert gx.MaskedState._fields == optax.MaskedState._fields == ("inner_state",)
    _checkpoint_roundtrip(ours, theirs)


def test_multi_transform_is_partition_and_its_state_restores_from_optax():
    assert gx.multi_transform is gx.partition and gx.MultiTransformState is gx.PartitionState
    labels = {"layer1": {"w": "adam", "b": "sgd"}, "head": "sgd"}  # a prefix of the params
    ours = gx.multi_transform({"adam": gx.adam(0.1), "sgd": gx.sgd(0.01)}, labels)
    theirs = optax.multi_transform({"adam": optax.adam(0.1), "sgd": optax.sgd(0.01)}, labels)
    _checkpoint_roundtrip(ours, theirs)


def test_apply_if_finite_state_flattens_like_optax_and_restores_both_ways():
    assert gx.ApplyIfFiniteState._fields == optax.ApplyIfFiniteState._fields
    grads = [_grads(i) for i in range(6)]
    grads[1] = jax.tree_util.tree_map(lambda g: g.at[...].set(jnp.nan) if g.ndim == 2 else g, grads[1])
    grads[4] = jax.tree_util.tree_map(lambda g: jnp.full_like(g, jnp.inf), grads[4])
    ours = gx.apply_if_finite(gx.adam(0.1), max_consecutive_errors=3)
    theirs = optax.apply_if_finite(optax.adam(0.1), max_consecutive_errors=3)
    _checkpoint_roundtrip(ours, theirs, grads=grads)


@pytest.mark.parametrize(
    "name,ours,theirs",
    [
        ("conditionally_mask", gx.conditionally_mask(gx.adam(0.1), lambda s: s % 2 == 0),
         optax.conditionally_mask(optax.adam(0.1), lambda s: s % 2 == 0)),
        ("conditionally_transform", gx.conditionally_transform(gx.adam(0.1), lambda s: s % 3 == 1),
         optax.conditionally_transform(optax.adam(0.1), lambda s: s % 3 == 1)),
        ("apply_every", gx.apply_every(3), optax.apply_every(3)),
        ("freeze", gx.freeze({"layer1": True, "head": [False, True]}), optax.freeze({"layer1": True, "head": [False, True]})),
        ("selective_transform", gx.selective_transform(gx.adam(0.1), freeze_mask={"layer1": False, "head": True}),
         optax.selective_transform(optax.adam(0.1), freeze_mask={"layer1": False, "head": True})),
        ("snapshot", gx.chain(gx.snapshot("n", optax.tree.norm), gx.sgd(0.1)),
         optax.chain(optax.snapshot("n", optax.tree.norm), optax.sgd(0.1))),
        ("monitor", gx.chain(gx.sgd(0.1, 0.9), gx.monitor({"n": optax.tree.norm, "e": gx.measure_with_ema(optax.tree.norm, 0.9)})),
         optax.chain(optax.sgd(0.1, 0.9), optax.monitor({"n": optax.tree.norm, "e": optax.measure_with_ema(optax.tree.norm, 0.9)}))),
        ("multi_steps_skip_large", gx.MultiSteps(gx.adam(0.1), 2, should_skip_update_fn=functools.partial(
            gx.skip_large_updates, max_squared_norm=30.0)),
         optax.MultiSteps(optax.adam(0.1), 2, should_skip_update_fn=functools.partial(
             optax.skip_large_updates, max_squared_norm=30.0))),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_state_after_steps_flattens_like_optax_and_restores(name, ours, theirs):
    _checkpoint_roundtrip(ours, theirs)


# ---------------------------------------------------------------------- typing names


def test_gradient_transformation_extra_args_is_a_gradient_transformation():
    assert issubclass(gx.GradientTransformationExtraArgs, gx.GradientTransformation)
    tx = gx.conditionally_mask(gx.sgd(0.1), lambda s: True)
    assert isinstance(tx, gx.GradientTransformationExtraArgs) and isinstance(tx, gx.GradientTransformation)
    assert isinstance(tx, tuple) and tx._fields == ("init", "update")
    for wrapped in (gx.masked(gx.sgd(0.1), {"w": True}), gx.partition({"a": gx.sgd(0.1)}, "a"), gx.chain(),
                    gx.apply_if_finite(gx.sgd(0.1), 1), gx.identity()):
        assert isinstance(wrapped, gx.GradientTransformationExtraArgs)


def test_with_extra_args_support_drops_keywords_only_for_updates_that_take_none():
    class Plain(NamedTuple):
        init: Any
        update: Any

    seen = []
    plain = Plain(lambda p: (), lambda u, s, params=None: (u, s))
    tx = gx.with_extra_args_support(plain)
    assert isinstance(tx, gx.GradientTransformationExtraArgs)
    np.testing.assert_array_equal(tx.update(jnp.ones(1), (), None, value=1.0)[0], jnp.ones(1))
    takes = gx.GradientTransformation(lambda p: (), lambda u, s, params=None, **kw: (seen.append(kw), (u, s))[1])
    gx.with_extra_args_support(takes).update(jnp.ones(1), (), None, value=2.0)
    assert seen == [{"value": 2.0}]
    already = gx.with_extra_args_support(gx.sgd(0.1))
    assert gx.with_extra_args_support(already) is already
    # optax's plain transformations work the same way
    otx = gx.with_extra_args_support(optax.scale(2.0))
    np.testing.assert_allclose(otx.update(jnp.ones(1), otx.init(jnp.ones(1)), value=3.0)[0], [2.0])


def test_typing_names_exist_and_init_empty_state():
    for name in ("TransformInitFn", "TransformUpdateFn", "TransformUpdateExtraArgsFn", "ScalarOrSchedule",
                 "MaskOrFn", "ConditionFn", "ShouldSkipUpdateFunction"):
        assert hasattr(gx, name), name
    assert gx.init_empty_state({"w": jnp.ones(2)}) == gx.EmptyState()


# ----------------------------------------------------------------------------- masked


class _Recorder:
    def __init__(self):
        self.seen = []

    def init(self, params):
        return ()

    def update(self, updates, state, params=None, **extra_args):
        self.seen.append(extra_args)
        return updates, state


def test_masked_mask_compatible_extra_args_masks_params_shaped_extras_like_optax():
    mask = {"layer1": {"w": True, "b": False}, "head": [True, False]}
    diag = _grads(7)
    for flag in (False, True):
        ours, theirs = _Recorder(), _Recorder()
        gx.masked(ours, mask, mask_compatible_extra_args=flag).update(
            PARAMS, gx.MaskedState(()), PARAMS, hessian_diag=diag, value=1.0
        )
        # optax drops the extra arguments of an inner that is not GradientTransformationExtraArgs
        inner = optax.GradientTransformationExtraArgs(theirs.init, theirs.update)
        optax.masked(inner, mask, mask_compatible_extra_args=flag).update(
            PARAMS, optax.MaskedState(()), PARAMS, hessian_diag=diag, value=1.0
        )
        a, b = ours.seen[-1], theirs.seen[-1]
        assert a["value"] == b["value"] == 1.0
        assert len(jax.tree_util.tree_leaves(a["hessian_diag"])) == len(jax.tree_util.tree_leaves(b["hessian_diag"]))
        assert len(jax.tree_util.tree_leaves(a["hessian_diag"])) == (2 if flag else 4)


def test_partition_mask_compatible_extra_args_splits_extras_by_label():
    rec_m, rec_v = _Recorder(), _Recorder()
    tx = gx.partition({"m": rec_m, "v": rec_v}, _labels, mask_compatible_extra_args=True)
    tx.update(PARAMS, tx.init(PARAMS), PARAMS, hessian_diag=_grads(3))
    assert len(jax.tree_util.tree_leaves(rec_m.seen[-1]["hessian_diag"])) == 1
    assert len(jax.tree_util.tree_leaves(rec_v.seen[-1]["hessian_diag"])) == 3


def test_partition_unknown_label_names_key_path_and_label():
    tx = gx.partition({"m": gx.sgd(0.1)}, _labels)
    with pytest.raises(ValueError, match=r"\['head'\]\[0\].*'v'"):
        tx.init(PARAMS)


def test_selective_transform_keeps_state_only_for_trained_leaves():
    tx = gx.selective_transform(gx.adam(0.1), freeze_mask={"layer1": True, "head": False})
    state = tx.init(PARAMS)
    adam_state = state.inner_states["train"].inner_state[0]
    assert len(jax.tree_util.tree_leaves(adam_state.mu)) == 2
    u, _ = tx.update(_grads(1), state, PARAMS)
    assert not np.any(np.asarray(u["layer1"]["w"])) and np.all(np.asarray(u["head"][0]) != 0)


# --------------------------------------------------------------------- tree_map_params


@pytest.mark.parametrize(
    "ours,theirs",
    [
        (gx.adam(0.1), optax.adam(0.1)),
        (gx.chain(gx.clip_by_global_norm(1.0), gx.sgd(0.1, 0.9)), optax.chain(optax.clip_by_global_norm(1.0), optax.sgd(0.1, 0.9))),
        (gx.partition({"m": gx.adam(0.1), "v": gx.sgd(0.1, 0.9)}, _labels),
         optax.partition({"m": optax.adam(0.1), "v": optax.sgd(0.1, 0.9)}, _labels)),
        (gx.masked(gx.adam(0.1), lambda p: jax.tree_util.tree_map(lambda x: x.ndim == 2, p)),
         optax.masked(optax.adam(0.1), lambda p: jax.tree_util.tree_map(lambda x: x.ndim == 2, p))),
    ],
)
def test_tree_map_params_marks_the_same_leaves_as_optax(ours, theirs):
    def mark(tx, masked_node):
        return tx, {"transform_non_params": lambda _: "other", "is_leaf": lambda v: isinstance(v, masked_node)}

    tx, kw = mark(ours, gx.MaskedNode)
    f = lambda p: ("param", getattr(p, "shape", "masked"))
    got = gx.tree_map_params(tx, f, tx.init(PARAMS), **kw)
    tx, kw = mark(theirs, optax.MaskedNode)
    want = optax.tree_map_params(tx, f, tx.init(PARAMS), **kw)
    is_leaf = lambda x: isinstance(x, tuple) and len(x) == 2 and x[0] == "param"
    assert jax.tree_util.tree_leaves(got, is_leaf=is_leaf) == jax.tree_util.tree_leaves(want, is_leaf=is_leaf)


def test_tree_map_params_passes_rest_trees_and_accepts_an_init_function():
    tx = gx.adam(0.1)
    specs = jax.tree_util.tree_map(lambda p: p.ndim, PARAMS)
    out = gx.tree_map_params(tx.init, lambda p, spec: spec, tx.init(PARAMS), specs, transform_non_params=lambda _: None)
    assert out[0].mu == specs and out[0].nu == specs and out[0].count is None


# ------------------------------------------------------------------ conditional wrappers


def test_conditionally_wrappers_forward_extra_args_to_the_condition():
    def cond(step, *, value=0.0):
        return value > 1.0

    for factory, skipped in ((gx.conditionally_mask, 0.0), (gx.conditionally_transform, 1.0)):
        tx = factory(gx.scale(5.0), cond, forward_extra_args=True)
        state = tx.init(jnp.ones(1))
        u, state = tx.update(jnp.ones(1), state, value=2.0)
        assert u.tolist() == [5.0]
        u, state = tx.update(jnp.ones(1), state, value=0.5)
        assert u.tolist() == [skipped]
        assert int(state.step) == 2
        plain = factory(gx.scale(5.0), cond)  # without forwarding, the condition sees no keywords
        u, _ = plain.update(jnp.ones(1), plain.init(jnp.ones(1)), value=2.0)
        assert u.tolist() == [skipped]


def test_conditionally_mask_keeps_inner_state_on_masked_steps():
    tx = gx.conditionally_mask(gx.adam(0.1), lambda s: s >= 2)
    state = tx.init(PARAMS)
    for i in range(2):
        u, state = tx.update(_grads(i), state, PARAMS)
        assert all(not np.any(np.asarray(x)) for x in jax.tree_util.tree_leaves(u))
    assert int(state.inner_state[0].count) == 0 and int(state.step) == 2


def test_conditional_wrappers_reject_a_non_callable_condition():
    with pytest.raises(TypeError, match="should_transform_fn"):
        gx.conditionally_mask(gx.sgd(0.1), True)


# ------------------------------------------------------------------------ apply_every


def test_apply_every_rejects_k_below_one():
    with pytest.raises(ValueError, match="`k`"):
        gx.apply_every(0)


def test_apply_every_accumulates_bf16_params_in_float32_and_keeps_state_dtype():
    params = {"w": jnp.zeros(3, jnp.bfloat16)}
    tx = gx.apply_every(2)
    state = tx.init(params)
    g = {"w": jnp.full(3, 1.0 + 2**-10, jnp.float32)}  # not representable in bf16
    u1, state = tx.update(g, state)
    u2, state = tx.update(g, state)
    assert state.grad_acc["w"].dtype == jnp.bfloat16 and u2["w"].dtype == jnp.float32
    assert not np.any(np.asarray(u1["w"]))
    np.testing.assert_allclose(np.asarray(u2["w"]), 2.0, rtol=1e-2)


# ------------------------------------------------------------------ skip_large_updates


def test_skip_large_updates_matches_optax_and_skips_nan():
    for g in (jnp.array([3.0, 4.0]), jnp.array([1.0, 1.0]), jnp.array([jnp.nan, 0.0])):
        ours = gx.skip_large_updates({"g": g}, 0, None, max_squared_norm=20.0)
        theirs = optax.skip_large_updates({"g": g}, 0, None, max_squared_norm=20.0)
        assert bool(ours[0]) == bool(theirs[0])
        assert set(ours[1]) == set(theirs[1]) == {"should_skip", "norm_squared"}
        np.testing.assert_allclose(ours[1]["norm_squared"], theirs[1]["norm_squared"])
    # float16 gradients: the squared norm is accumulated in float32, never inf
    skip, info = gx.skip_large_updates({"g": jnp.full((4,), 300.0, jnp.float16)}, 0, None, max_squared_norm=1e6)
    assert bool(skip) is False and info["norm_squared"].dtype == jnp.float32


# ---------------------------------------------------------------------------- microbatch


AT, OT = gx.AccumulationType, optax.microbatching.AccumulationType


@pytest.mark.parametrize("kinds", [("CONCAT", "SUM", "MEAN"), ("CONCAT", "SUM", "RUNNING_MEAN")])
@pytest.mark.parametrize("num_real", [None, 3])
def test_microbatch_matches_optax(kinds, num_real):
    def fun(x, scale, *, y):
        return (x * scale + y, jnp.sum(3.0 * x * y), jnp.mean(x**2))

    x = jnp.arange(8.0)
    y = jnp.linspace(-1.0, 1.0, 8)
    ours = gx.microbatch(fun, 0, 2, tuple(getattr(AT, k) for k in kinds), argnames="y", num_real_microbatches=num_real)
    theirs = optax.microbatch(fun, 0, 2, tuple(getattr(OT, k) for k in kinds), argnames="y",
                              num_real_microbatches=num_real)
    _close(ours(x, 2.0, y=y), theirs(x, 2.0, y=y), rtol=2e-6)
    _close(jax.jit(ours)(x, 2.0, y=y), theirs(x, 2.0, y=y), rtol=2e-6)


def test_microbatch_of_a_gradient_equals_the_full_batch_gradient():
    def loss(w, xs, ys):
        return jnp.sum((xs @ w - ys) ** 2)

    rng = np.random.default_rng(0)
    xs, ys, w = (jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((12, 3), (12,), (3,)))
    g = gx.microbatch(jax.grad(loss), argnums=(1, 2), microbatch_size=4)(w, xs, ys)
    np.testing.assert_allclose(g, jax.grad(loss)(w, xs, ys), rtol=1e-5)
    # a batch axis other than 0
    g1 = gx.microbatch(lambda w, xs: jax.grad(loss)(w, xs.T, ys[:12]), argnums=1, microbatch_size=12, in_axes=1)(w, xs.T)
    np.testing.assert_allclose(g1, jax.grad(loss)(w, xs, ys), rtol=1e-5)


def test_microbatch_sums_bfloat16_in_float32():
    x = jnp.full((256,), 1.0 + 2**-7, jnp.bfloat16)  # bf16 partial sums would lose the small part
    total = gx.microbatch(lambda v: jnp.sum(v.astype(jnp.float32)).astype(jnp.bfloat16), 0, 1)(x)
    assert total.dtype == jnp.bfloat16
    np.testing.assert_allclose(float(total), 256 * (1 + 2**-7), rtol=4e-3)


def test_microbatch_errors_and_none():
    f = lambda x: x
    assert gx.microbatch(f, 0, None) is f
    with pytest.raises(ValueError, match="divisible"):
        gx.microbatch(f, 0, 3, AT.CONCAT)(jnp.arange(8.0))
    with pytest.raises(ValueError, match="floating"):
        gx.microbatch(lambda x: jnp.sum(x), 0, 2, AT.MEAN)(jnp.arange(8))
    with pytest.raises(ValueError, match="differ"):
        gx.microbatch(lambda a, b: a + b[:4], (0, 1), 2)(jnp.ones(4), jnp.ones(6))


# ---------------------------------------------------------------- monitor / snapshot


def test_monitor_state_keeps_its_structure_so_it_scans():
    """optax 0.2.8's monitor starts with an empty measurements dict: its state cannot be a scan carry."""
    tx = gx.chain(gx.sgd(0.1), gx.monitor({"n": optax.tree.norm,
                                           "clipped": gx.measure_with_ema(lambda u: optax.tree.norm(u) > 1.0, 0.9)}))
    params = {"w": jnp.zeros(3, jnp.bfloat16)}
    state = tx.init(params)
    gs = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)

    def body(s, g):
        _, s = tx.update({"w": g}, s)
        return s, None

    out, _ = jax.lax.scan(body, state, gs)
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(state)
    assert _leaf_signature(out) == _leaf_signature(state)
    otx = optax.monitor({"n": optax.tree.norm})
    o0 = otx.init(params)
    with loose:
        _, o1 = otx.update({"w": gs[0]}, o0)
    assert jax.tree_util.tree_structure(o0) != jax.tree_util.tree_structure(o1)  # the optax bug


def test_measure_with_ema_matches_optax_and_averages_a_bool_measure_in_float32():
    measure = lambda u: optax.tree.norm(u) > 1.0
    ours, theirs = gx.measure_with_ema(measure, 0.8), optax.measure_with_ema(measure, 0.8)
    so, st = ours.init(PARAMS), theirs.init(PARAMS)
    assert so[1].ema.dtype == jnp.float32  # optax: bool at init, float32 after a step
    for i in range(4):
        g = _grads(i, scale=0.2 * i)
        mo, so = ours.update(g, so)
        with loose:
            mt, st = theirs.update(g, st)
        np.testing.assert_allclose(mo, mt, rtol=1e-6)
    with pytest.raises(ValueError, match="`decay`"):
        gx.measure_with_ema(measure, 1.5)


def test_snapshot_records_the_updates_at_its_place_in_the_chain():
    tx = gx.chain(gx.sgd(1.0), gx.snapshot("before", lambda u: u), gx.clip(0.1))
    u, state = tx.update(jnp.array([2.0, -0.05]), tx.init(jnp.zeros(2)))
    np.testing.assert_allclose(state[1].measurement["before"], [-2.0, 0.05])
    np.testing.assert_allclose(u, [-0.1, 0.05])


# ------------------------------------------------------------ incremental / periodic


def test_incremental_and_periodic_update_match_optax_under_jit():
    new, old = _grads(1), _grads(2)
    _close(jax.jit(gx.incremental_update)(new, old, 0.3), optax.incremental_update(new, old, 0.3), rtol=1e-6)
    bf = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), old)
    assert _leaf_signature(gx.incremental_update(new, bf, 0.3)) == _leaf_signature(bf)
    for step in range(4):
        _close(jax.jit(gx.periodic_update)(new, old, step, 2), optax.periodic_update(new, old, step, 2))


# -------------------------------------------------------------------------- mutants


class _ApplyEveryNoReset(NamedTuple):
    """A broken apply_every: the accumulator is never reset after an emission."""

    init: Any
    update: Any


def _apply_every_no_reset(k):
    def init(params):
        return gx.ApplyEvery(jnp.zeros([], jnp.int32), jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        c = state.count % k
        acc = jax.tree_util.tree_map(lambda g, a: a + g, updates, state.grad_acc)  # bug: no reset when c == 0
        out = jax.tree_util.tree_map(lambda a: jnp.where(c == k - 1, a, jnp.zeros_like(a)), acc)
        return out, gx.ApplyEvery((state.count + 1) % k, acc)

    return _ApplyEveryNoReset(init, update)


def test_reference_parity_catches_an_apply_every_that_never_resets():
    check_against_reference(gx.apply_every(2), reference.apply_every(2), steps=6)
    with pytest.raises(AssertionError):
        check_against_reference(_apply_every_no_reset(2), reference.apply_every(2), steps=6)


def test_reference_parity_catches_a_condition_read_one_step_late():
    even = lambda s: s % 2 == 0
    check_against_reference(gx.conditionally_mask(gx.adam(0.1), even), reference.conditionally_mask(reference.adam(0.1), even))
    late = gx.conditionally_mask(gx.adam(0.1), lambda s: even(s + 1))  # counts from 1, not 0
    with pytest.raises(AssertionError):
        check_against_reference(late, reference.conditionally_mask(reference.adam(0.1), even))


def test_reference_parity_catches_a_partition_that_swaps_the_groups():
    labels = lambda p: jax.tree_util.tree_map(lambda x: "m" if x.ndim >= 2 else "v", p)
    swapped = lambda p: jax.tree_util.tree_map(lambda x: "v" if x.ndim >= 2 else "m", p)
    ref = reference.partition({"m": reference.adam(0.1), "v": reference.sgd(0.1, momentum=0.9)}, labels)
    check_against_reference(gx.partition({"m": gx.adam(0.1), "v": gx.sgd(0.1, momentum=0.9)}, labels), ref)
    with pytest.raises(AssertionError):
        check_against_reference(gx.partition({"m": gx.adam(0.1), "v": gx.sgd(0.1, momentum=0.9)}, swapped), ref)
