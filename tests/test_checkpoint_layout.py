"""A checkpoint of optax's optimizer state loads into gradxform's (issue 19, item 4).

For every registry entry with an optax counterpart: the flattened state leaves of
optax's ``init`` and ours agree in number, order, shapes and dtypes; and optax's
leaves, taken after a few of optax's steps and unflattened into our tree
structure, continue the run exactly as optax continues it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing.registry import REGISTRY
from _entries import sampled

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion

# Entries whose state differs from optax's by design, with the reason. Each is still
# checked: the tests assert that it does differ, so a fix shows up as a failure here.
INIT_DIFFERS_BY_DESIGN: dict[str, str] = {
    "monitor": (
        "optax's monitor.init leaves `measurements` empty ({}) and fills it at the first update, "
        "so its state changes structure (it cannot be a lax.scan carry); here init holds zeros for "
        "each measure, fixing the structure as the dtype policy requires. From the first update "
        "on, the leaves agree (checked below)."
    ),
}
CHECKPOINT_DIFFERS_BY_DESIGN: dict[str, str] = {}

# Entries whose continued updates agree with optax's to a looser rtol than 1e-5, by
# design of the numerics (not of the state): (rtol, reason).
_OPTIMISTIC = (
    5e-5,
    "Adam's bias correction is computed as -expm1(t log b) here, more accurately than optax's "
    "1 - f32(b)**t (up to 1.3e-5 relatively, see _tree.bias_correction); the optimistic step "
    "2 u_t - u_(t-1) amplifies that difference to 4e-5 in some entries. Run from scratch, the "
    "two libraries differ by as much (tests/test_registry.py compares at rtol 5e-5).",
)
LOOSER_BY_DESIGN: dict[str, tuple[float, str]] = {
    "optimistic_adam": _OPTIMISTIC,
    "optimistic_adam_v2": _OPTIMISTIC,
}

WITH_OPTAX = [e for e in REGISTRY if e.optax_name is not None]
WARMUP, STEPS = 3, 5


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "layer1": {"w": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
                   "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32)},
        "head": [jnp.asarray(rng.normal(size=(2,)), jnp.float32), jnp.asarray(rng.normal(), jnp.float32)],
    }


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def _build(entry):
    ours = entry.build()
    with loose:
        theirs = entry.build_optax(optax)
    return ours, theirs


def _layout(state):
    """(shape, dtype) of each leaf, in flattening order."""
    return [(tuple(np.shape(x)), str(jnp.asarray(x).dtype)) for x in jax.tree_util.tree_leaves(state)]


def _layouts(entry):
    ours, theirs = _build(entry)
    params = _params()
    with loose:
        their_state = theirs.init(params)
    return _layout(ours.init(params)), _layout(their_state)


@pytest.mark.parametrize("entry", WITH_OPTAX, ids=str)
def test_state_leaves_match_optax(entry):
    ours, theirs = _layouts(entry)
    if entry.name in INIT_DIFFERS_BY_DESIGN:
        assert ours != theirs, f"{entry.name} now matches optax: remove it from INIT_DIFFERS_BY_DESIGN"
        return
    assert len(ours) == len(theirs), f"{len(ours)} leaves here, {len(theirs)} in optax:\n{ours}\n{theirs}"
    for i, (a, b) in enumerate(zip(ours, theirs)):
        assert a == b, f"leaf {i}: {a} here, {b} in optax"


def _extra(entry, step, params, grads):
    return entry.extra_args_fn(step, params, grads) if entry.extra_args_fn else {}


def _their_extra(entry, step, params, grads):
    """The same extra arguments for optax, where its update takes them (``value=`` for Momo)."""
    return _extra(entry, step, params, grads) if entry.optax_extra_args else {}


@pytest.mark.parametrize("entry", sampled([e for e in WITH_OPTAX if not e.random]))
def test_optax_checkpoint_continues_as_in_optax(entry):
    """optax's state after WARMUP steps (a checkpoint) has our leaves and continues as optax does.

    Updates are compared with rtol 1e-5 and an absolute tolerance of 1e-5 times the
    leaf's largest entry: rules that subtract nearly equal terms (optimistic
    gradients: 2 u_t - u_(t-1)) lose relative accuracy in their small entries in
    optax's float32 as in ours, while a misplaced leaf (mu for nu, a wrong count)
    is off by far more.
    """
    ours, theirs = _build(entry)
    params = _params()
    our_state = ours.init(params)
    with loose:
        their_state = theirs.init(params)
    for step in range(WARMUP):
        grads = _grads(params, seed=step + 1)
        _, our_state = jax.jit(ours.update)(grads, our_state, params, **_extra(entry, step, params, grads))
        with loose:
            u, their_state = theirs.update(grads, their_state, params, **_their_extra(entry, step, params, grads))
        # Keep the params' shapes (optax's DoG gives a scalar param a (1,)-shaped update).
        stepped = optax.apply_updates(params, u)
        params = jax.tree_util.tree_map(lambda p, q: jnp.reshape(p, jnp.shape(q)), stepped, params)
    if entry.name in CHECKPOINT_DIFFERS_BY_DESIGN:
        assert _layout(our_state) != _layout(their_state), (
            f"{entry.name} now matches optax: remove it from CHECKPOINT_DIFFERS_BY_DESIGN"
        )
        return
    assert _layout(our_state) == _layout(their_state), "the leaves after a few updates differ from optax's"
    # The checkpoint: optax's leaves, restored into our structure.
    our_treedef = jax.tree_util.tree_structure(our_state)
    state = jax.tree_util.tree_unflatten(our_treedef, jax.tree_util.tree_leaves(their_state))
    p_ours = p_theirs = params
    rtol = LOOSER_BY_DESIGN.get(entry.name, (1e-5, ""))[0]
    for step in range(WARMUP, WARMUP + STEPS):
        grads = _grads(p_ours, seed=step + 1)
        u_ours, state = jax.jit(ours.update)(grads, state, p_ours, **_extra(entry, step, p_ours, grads))
        with loose:
            u_theirs, their_state = theirs.update(grads, their_state, p_theirs, **_their_extra(entry, step, p_theirs, grads))
        p_ours, p_theirs = gx.apply_updates(p_ours, u_ours), optax.apply_updates(p_theirs, u_theirs)
        for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(u_ours)[0], jax.tree_util.tree_leaves(u_theirs)):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            scale = float(np.max(np.abs(b), initial=0.0))
            np.testing.assert_allclose(
                a, b, rtol=rtol, atol=max(1e-5 * scale, 1e-9),
                err_msg=f"{entry.name}: step {step + 1}, leaf {jax.tree_util.keystr(path)}",
            )


def test_sgd_and_rmsprop_trees_are_optax_trees():
    """The two differences issue 19 item 4 named: the exact tree structures, by configuration."""
    p = {"w": jnp.zeros(3)}
    configs = [
        ("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
        ("rmsprop", {}), ("rmsprop", {"bias_correction": True}), ("rmsprop", {"centered": True}),
        ("rmsprop", {"centered": True, "bias_correction": True}), ("rmsprop", {"momentum": 0.9}),
        ("scale_by_rms", {}), ("scale_by_rms", {"bias_correction": True}),
        ("scale_by_stddev", {}), ("scale_by_stddev", {"bias_correction": True}),
    ]
    for name, kw in configs:
        lr = () if name.startswith("scale_by") else (0.1,)
        ours = getattr(gx, name)(*lr, **kw).init(p)
        theirs = getattr(optax, name)(*lr, **kw).init(p)
        assert _layout(ours) == _layout(theirs), (name, kw)
        # The same nesting, NamedTuple names and fields (so the key paths agree too).
        assert _type_names(ours) == _type_names(theirs), (name, kw)
        assert [jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(ours)[0]] == [
            jax.tree_util.keystr(k) for k, _ in jax.tree_util.tree_flatten_with_path(theirs)[0]
        ], (name, kw)


def _type_names(state):
    """The state's NamedTuple type names and fields, depth first."""
    if isinstance(state, tuple) and hasattr(state, "_fields"):
        return [(type(state).__name__, state._fields)] + [n for x in state for n in _type_names(x)]
    if isinstance(state, (tuple, list)):
        return [("tuple", len(state))] + [n for x in state for n in _type_names(x)]
    return []
