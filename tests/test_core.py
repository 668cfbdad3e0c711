"""Core: combinators, apply_updates, stateless helpers, extra args, optax interop.

Tolerance against optax: 5e-5 relative. optax computes Adam's ``1 - b2`` in double
precision but ``1 - b2**t`` in float32, so its first step is off by about 1.3e-5
relative (``b2 = 0.999`` is not exact in float32); gradxform holds every
hyperparameter in float32 and matches the float64 NumPy reference more closely
(see test_registry.py for the tight reference parity).
"""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx


def _tree(seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return {
        "layer1": {"w": jnp.asarray(rng.normal(size=(3, 2)), dtype), "b": jnp.asarray(rng.normal(size=(2,)), dtype)},
        "out": [jnp.asarray(rng.normal(size=()), dtype)],
    }


# optax itself relies on implicit promotion: run the oracle under the standard rules.
loose = jax.numpy_dtype_promotion("standard")


def _close(a, b, **kw):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y, np.float64), **kw)


def test_identity_and_set_to_zero_keep_structure_and_dtype():
    params = _tree(dtype=jnp.bfloat16)
    grads = _tree(1, dtype=jnp.bfloat16)
    u, _ = gx.identity().update(grads, gx.identity().init(params))
    assert u is grads
    z, _ = gx.set_to_zero().update(grads, gx.set_to_zero().init(params))
    for leaf in jax.tree_util.tree_leaves(z):
        assert leaf.dtype == jnp.bfloat16 and not np.any(np.asarray(leaf, np.float32))


def test_stateless_helpers_apply_the_function():
    params, grads = _tree(), _tree(1)
    tx = gx.stateless(lambda u, p: jax.tree_util.tree_map(lambda g, q: g + 2 * q, u, p))
    u, _ = tx.update(grads, tx.init(params), params)
    _close(u, jax.tree_util.tree_map(lambda g, q: g + 2 * q, grads, params), rtol=0)
    tx = gx.stateless_with_tree_map(lambda g, p: g * 3)
    u, _ = tx.update(grads, tx.init(params))
    _close(u, jax.tree_util.tree_map(lambda g: 3 * g, grads), rtol=0)


def test_chain_applies_in_order():
    grads = {"w": jnp.array([3.0, -0.2])}
    tx = gx.chain(gx.clip(1.0), gx.scale(-0.5))
    u, state = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(u["w"], [-0.5, 0.1], rtol=1e-6)
    tx2 = gx.chain(gx.scale(-0.5), gx.clip(1.0))
    u2, _ = tx2.update(grads, tx2.init(grads))
    np.testing.assert_allclose(u2["w"], [-1.0, 0.1], rtol=1e-6)
    assert isinstance(state, tuple) and len(state) == 2


def test_named_chain_equals_chain_and_names_states():
    params, grads = _tree(), _tree(1)
    a = gx.chain(gx.scale_by_adam(), gx.scale(-0.1))
    b = gx.named_chain(("adam", gx.scale_by_adam()), ("lr", gx.scale(-0.1)))
    sa, sb = a.init(params), b.init(params)
    assert set(sb) == {"adam", "lr"}
    for _ in range(3):
        ua, sa = a.update(grads, sa)
        ub, sb = b.update(grads, sb)
        _close(ua, ub, rtol=0)
    with pytest.raises(ValueError, match="unique"):
        gx.named_chain(("x", gx.identity()), ("x", gx.identity()))


def test_chain_rejects_non_transformations_and_foreign_states():
    with pytest.raises(TypeError, match="argument 1"):
        gx.chain(gx.identity(), 3.0)
    tx = gx.chain(gx.scale_by_adam(), gx.scale(-1.0))
    params = _tree()
    with pytest.raises(TypeError, match="tuple of 2 states"):
        tx.update(params, gx.scale_by_adam().init(params))


class _Recorder:
    """A transformation that records the extra arguments it saw."""

    def __init__(self):
        self.seen = []

    def init(self, params):
        return gx.EmptyState()

    def update(self, updates, state, params=None, **extra_args):
        self.seen.append(dict(extra_args))
        return updates, state


def test_extra_args_flow_through_chain_to_every_transformation_that_takes_them():
    r1, r2 = _Recorder(), _Recorder()

    class NoExtras:  # like a plain optax transformation: no **extra_args
        def init(self, params):
            return ()

        def update(self, updates, state, params=None):
            return updates, state

    tx = gx.chain(r1, gx.scale_by_adam(), NoExtras(), gx.masked(r2, {"w": True}))
    params = {"w": jnp.ones(2)}
    tx.update(params, tx.init(params), params, value=1.5, hessian_diag=params)
    assert r1.seen[-1] == {"value": 1.5, "hessian_diag": params}
    assert r2.seen[-1]["value"] == 1.5


def test_apply_updates_keeps_param_dtype_and_handles_none():
    params = {"a": jnp.ones(3, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    updates = {"a": jnp.full(3, 0.001, jnp.float32), "b": None}
    new = gx.apply_updates(params, updates)
    assert new["a"].dtype == jnp.bfloat16 and new["b"].dtype == jnp.float32
    np.testing.assert_array_equal(new["b"], params["b"])
    # The sum is done in float32 then rounded once: 1 + 0.001 rounds to 1 in bf16.
    np.testing.assert_array_equal(np.asarray(new["a"], np.float32), np.ones(3))


def test_apply_updates_names_the_key_path_and_both_shapes():
    params = _tree()
    bad = jax.tree_util.tree_map(lambda x: x, params)
    bad["layer1"]["w"] = jnp.ones((2, 3))
    with pytest.raises(gx.TreeMismatchError, match=r"\['layer1'\]\['w'\].*\(2, 3\).*\(3, 2\)"):
        gx.apply_updates(params, bad)
    missing = {"layer1": params["layer1"]}
    with pytest.raises(gx.TreeMismatchError, match=r"\['out'\]"):
        gx.apply_updates(params, missing)


def test_masked_applies_inner_only_where_mask_is_true():
    params, grads = _tree(), _tree(1)
    mask = {"layer1": {"w": True, "b": False}, "out": [True]}
    tx = gx.masked(gx.scale(-2.0), mask)
    u, state = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["layer1"]["w"], -2 * grads["layer1"]["w"], rtol=1e-6)
    np.testing.assert_array_equal(u["layer1"]["b"], grads["layer1"]["b"])
    np.testing.assert_allclose(u["out"][0], -2 * grads["out"][0], rtol=1e-6)
    # The inner state covers only the selected leaves.
    adam = gx.masked(gx.scale_by_adam(), mask)
    inner = adam.init(params).inner_state
    assert len(jax.tree_util.tree_leaves(inner.mu)) == 2


def test_masked_with_callable_mask_and_prefix_mask():
    params, grads = _tree(), _tree(1)
    tx = gx.masked(gx.set_to_zero(), lambda p: jax.tree_util.tree_map(lambda x: x.ndim == 2, p))
    u, _ = tx.update(grads, tx.init(params), params)
    assert not np.any(np.asarray(u["layer1"]["w"]))
    np.testing.assert_array_equal(u["layer1"]["b"], grads["layer1"]["b"])
    prefix = {"layer1": True, "out": False}
    u, _ = gx.masked(gx.set_to_zero(), prefix).update(grads, gx.masked(gx.set_to_zero(), prefix).init(params), params)
    assert not np.any(np.asarray(u["layer1"]["b"]))
    np.testing.assert_array_equal(u["out"][0], grads["out"][0])


def test_masked_equals_optax_masked():
    params, grads = _tree(), _tree(1)
    mask = {"layer1": {"w": True, "b": False}, "out": [True]}
    a, b = gx.masked(gx.scale_by_adam(), mask), optax.masked(optax.scale_by_adam(), mask)
    sa, sb = a.init(params), b.init(params)
    for _ in range(3):
        ua, sa = a.update(grads, sa, params)
        with loose:
            ub, sb = b.update(grads, sb, params)
        _close(ua, ub, rtol=5e-5, atol=1e-7)


def test_multi_transform_equals_masked_chain():
    params, grads = _tree(), _tree(1)
    labels = {"layer1": {"w": "adam", "b": "sgd"}, "out": ["sgd"]}
    tx = gx.multi_transform({"adam": gx.adam(0.1), "sgd": gx.sgd(0.01)}, labels)
    mask_adam = jax.tree_util.tree_map(lambda label: label == "adam", labels)
    mask_sgd = jax.tree_util.tree_map(lambda label: label == "sgd", labels)
    ref = gx.chain(gx.masked(gx.adam(0.1), mask_adam), gx.masked(gx.sgd(0.01), mask_sgd))
    s, r = tx.init(params), ref.init(params)
    for _ in range(3):
        u, s = tx.update(grads, s, params)
        v, r = ref.update(grads, r, params)
        _close(u, v, rtol=0)
    # and against optax's multi_transform
    o = optax.multi_transform({"adam": optax.adam(0.1), "sgd": optax.sgd(0.01)}, labels)
    with loose:
        uo, _ = o.update(grads, o.init(params), params)
    u1, _ = tx.update(grads, tx.init(params), params)
    _close(u1, uo, rtol=5e-5, atol=1e-8)


def test_multi_transform_unknown_label_names_key_path_and_label():
    params = _tree()
    labels = {"layer1": {"w": "adam", "b": "sgd"}, "out": ["frozen"]}
    tx = gx.multi_transform({"adam": gx.adam(0.1), "sgd": gx.sgd(0.01)}, labels)
    with pytest.raises(ValueError, match=r"\['out'\]\[0\].*'frozen'"):
        tx.init(params)


def test_optax_transformations_work_inside_gx_chain():
    params, grads = _tree(), _tree(1)
    mixed = gx.chain(optax.clip_by_global_norm(1.0), gx.scale_by_adam(), optax.scale(-0.1))
    pure = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.scale(-0.1))
    sm, sp = mixed.init(params), pure.init(params)
    for _ in range(3):
        with loose:
            um, sm = mixed.update(grads, sm, params, value=1.0)
            up, sp = pure.update(grads, sp, params)
        _close(um, up, rtol=5e-5, atol=1e-7)


def test_gx_transformations_work_inside_optax_chain():
    params, grads = _tree(), _tree(1)
    mixed = optax.chain(gx.clip_by_global_norm(1.0), optax.scale_by_adam(), gx.add_decayed_weights(0.1), gx.scale(-0.1))
    pure = optax.chain(optax.clip_by_global_norm(1.0), optax.scale_by_adam(), optax.add_decayed_weights(0.1), optax.scale(-0.1))
    sm, sp = mixed.init(params), pure.init(params)
    for _ in range(3):
        with loose:
            um, sm = jax.jit(mixed.update)(grads, sm, params)
            up, sp = pure.update(grads, sp, params)
        _close(um, up, rtol=5e-5, atol=1e-7)
    # and the whole gx optimizer as one optax link
    opt = optax.chain(gx.adam(0.01))
    with loose:
        u, _ = opt.update(grads, opt.init(params), params)
        expected = optax.adam(0.01).update(grads, optax.adam(0.01).init(params), params)[0]
    _close(u, expected, rtol=5e-5, atol=1e-8)


def test_readme_chain_trains_under_jit():
    schedule = gx.warmup_cosine_decay_schedule(0.0, 0.1, 10, 100)
    tx = gx.chain(
        gx.clip_by_global_norm(1.0),
        gx.scale_by_adam(),
        gx.add_decayed_weights(1e-4),
        gx.scale_by_schedule(lambda step: -schedule(step)),
    )
    target = jnp.array([1.0, -2.0, 3.0])
    params = {"w": jnp.zeros(3)}

    def loss(p):
        return jnp.sum((p["w"] - target) ** 2)

    @jax.jit
    def step(p, s):
        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return gx.apply_updates(p, u), s

    state = tx.init(params)
    first = float(loss(params))
    for _ in range(100):
        params, state = step(params, state)
    assert float(loss(params)) < 0.5 * first


_PACKAGES = ["gradxform", "gradxform.transforms", "gradxform.schedules", "gradxform.wrappers",
             "gradxform.second_order", "gradxform.nn", "gradxform.training", "gradxform.testing",
             "gradxform.testing.reference", "gradxform.testing.strategies"]


@pytest.mark.parametrize("package", _PACKAGES)
def test_public_names_are_listed_sorted_and_resolve(package):
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert names == sorted(names), f"{package}.__all__ is not sorted"
    assert len(set(names)) == len(names), f"{package}.__all__ lists a name twice"
    for name in names:
        assert getattr(module, name, None) is not None, f"{package}.{name} does not resolve"


@pytest.mark.parametrize("package", ["gradxform.transforms", "gradxform.schedules", "gradxform.wrappers"])
def test_top_level_re_exports_every_transform_schedule_and_wrapper(package):
    """API.md: these names are importable from `gradxform` itself, as the same objects."""
    module = importlib.import_module(package)
    missing = [n for n in module.__all__ if getattr(gx, n, None) is not getattr(module, n)]
    assert not missing, f"add to gradxform/__init__.py: {missing}"
    assert not [n for n in module.__all__ if n not in gx.__all__]


def test_the_library_never_imports_optax_flax_or_chex():
    """optax and flax are oracles for the tests only: importing every gradxform module,
    the registry and the references included, must not load them."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import pkgutil, importlib, sys, gradxform\n"
        "for m in pkgutil.walk_packages(gradxform.__path__, 'gradxform.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('optax', 'flax', 'chex'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
