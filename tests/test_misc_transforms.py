"""Sign, optimistic, Polyak, DoG, centralization, normalization, noisy SGD and scale_gradient.

The registry (gradxform/testing/registry/_misc.py) checks most of these against their NumPy
references, optax and the laws. Here: what the registry cannot express (DoG, whose init keeps
the params; the Polyak step's ``value=`` against optax; noisy SGD's distribution;
``scale_gradient``, a function on values), the differences from optax, and mutants: broken
copies of each rule's subtle point that the reference check must catch.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing import reference as ref

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion


def _params(dtype=jnp.float32, seed=0):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(3, 4)), dtype), "b": jnp.asarray(rng.normal(size=(4,)), dtype)}


def _grads(params, seed):
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)


def _value(step, params, grads):
    del step, grads
    return {"value": 0.1 + 0.5 * sum(jnp.sum(jnp.square(p.astype(jnp.float32))) for p in jax.tree_util.tree_leaves(params))}


def _run_pair(ours, theirs, steps=25, extra=None, params=None):
    """Runs both for `steps` steps (each on its own params); yields (step, our updates, optax's)."""
    p_ours = p_theirs = _params() if params is None else params
    s_ours, s_theirs = ours.init(p_ours), theirs.init(p_theirs)
    for step in range(steps):
        g = _grads(p_ours, seed=step + 1)
        kw = {} if extra is None else extra(step, p_ours, g)
        u_ours, s_ours = jax.jit(ours.update)(g, s_ours, p_ours, **kw)
        with loose:
            u_theirs, s_theirs = theirs.update(g, s_theirs, p_theirs, **kw)
        yield step, u_ours, u_theirs
        p_ours, p_theirs = gx.apply_updates(p_ours, u_ours), optax.apply_updates(p_theirs, u_theirs)


def _assert_parity(ours, theirs, steps=25, extra=None, rtol=1e-5, atol=1e-7):
    for step, a, b in _run_pair(ours, theirs, steps, extra):
        for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(a)[0], jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(
                np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=f"step {step + 1} {jax.tree_util.keystr(path)}"
            )


def _catches(mutant, reference, **kwargs):
    with pytest.raises(AssertionError):
        gx.testing.check_against_reference(mutant, reference, steps=4, **kwargs)


# --------------------------------------------------------------------------- optax, 25 steps


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("scale_by_sign", {}),
        ("sign_sgd", {"learning_rate": 0.1}),
        ("signum", {"learning_rate": 0.1, "beta": 0.8}),
        ("centralize", {}),
        ("normalize_by_update_norm", {"scale_factor": -0.3}),
        ("scale_by_optimistic_gradient", {"alpha": 0.5, "beta": 2.0}),
        ("optimistic_adam", {"learning_rate": 0.01}),
        ("optimistic_adam_v2", {"learning_rate": 0.01, "alpha": 0.5, "beta": 0.3}),
    ],
)
def test_matches_optax_over_25_steps(name, kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        _assert_parity(getattr(gx, name)(**kwargs), getattr(optax, name)(**kwargs))


# --------------------------------------------------------------------------- DoG


def test_dog_matches_its_reference_float32_and_bfloat16():
    for kwargs in ({}, {"reps_rel": 1e-2, "eps": 1e-6, "global_scale": -1.0}):
        for dtype, steps in ((np.float32, 6), (jnp.bfloat16, 4)):
            gx.testing.check_against_reference(
                gx.scale_by_distance_over_gradients(**kwargs),
                ref.scale_by_distance_over_gradients(**kwargs),
                steps=steps,
                dtype=dtype,
            )


def test_dog_matches_optax_over_25_steps():
    kwargs = {"reps_rel": 1e-2, "global_scale": -1.0}
    _assert_parity(gx.scale_by_distance_over_gradients(**kwargs), optax.scale_by_distance_over_gradients(**kwargs))


def test_dog_state_flattens_like_optax():
    params = _params()
    ours = gx.scale_by_distance_over_gradients().init(params)
    with loose:
        theirs = optax.scale_by_distance_over_gradients().init(params)
    assert type(ours).__name__ == type(theirs).__name__ == "ScaleByDistanceOverGradientsState"
    assert ours._fields == theirs._fields
    shapes = lambda s: [(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(s)]
    assert shapes(ours) == shapes(theirs)


def test_dog_laws_hold_with_init_reading_params():
    """init keeps theta_0 by design (API.md waives init_value_independent for DoG). With the
    default float32 copy of theta_0, bfloat16 params get float32 updates (the dtype policy: the
    wider of the gradients' and the state's dtype, as optax); with param_dtype=None all laws hold."""
    gx.testing.check_transformation(gx.scale_by_distance_over_gradients(param_dtype=None), init_reads_params=True)
    gx.testing.check_transformation(gx.scale_by_distance_over_gradients(), init_reads_params=True,
                                    skip=["updates_dtype"])
    with pytest.raises(gx.testing.LawViolation, match="init_value_independent"):
        gx.testing.check_transformation(gx.scale_by_distance_over_gradients(), laws=["init_value_independent"])


def test_dog_keeps_a_scalar_leafs_shape():
    # optax 0.2.8 returns shape (1,) for a scalar leaf (its sum of squares has shape (1,)).
    tx = gx.scale_by_distance_over_gradients()
    params = {"s": jnp.array(2.0)}
    u, _ = tx.update({"s": jnp.array(1.0)}, tx.init(params), params)
    assert u["s"].shape == ()


def test_dog_runs_as_scan_body_with_bf16_params_and_needs_params():
    tx = gx.scale_by_distance_over_gradients(global_scale=-1.0)
    params = _params(jnp.bfloat16)
    grads = [_grads(_params(jnp.float32), seed=i) for i in range(3)]
    stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *grads)

    def body(carry, g):
        p, s = carry
        u, s = tx.update(g, s, p)
        return (gx.apply_updates(p, u), s), None

    state = tx.init(params)
    (_, out), _ = jax.lax.scan(body, (params, state), stacked)
    sig = lambda s: [(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(s)]
    assert sig(out) == sig(state)
    with pytest.raises(ValueError, match="params"):
        tx.update(grads[0], state)
    with pytest.raises(ValueError, match="reps_rel"):
        gx.scale_by_distance_over_gradients(reps_rel=0.0)
    with pytest.raises(ValueError, match="eps"):
        gx.scale_by_distance_over_gradients(eps=-1.0)


def _dog_mutant(*, from_previous=False, no_max=False):
    """DoG with the distance measured from the previous params, or without the running max."""

    def init(params):
        r0 = jax.tree_util.tree_map(lambda p: 1e-6 * (1 + jnp.linalg.norm(p)), params)
        return (r0, jax.tree_util.tree_map(lambda p: jnp.zeros(()), params), params)

    def update(g, state, params=None):
        r, gsq, anchor = state
        dist = jax.tree_util.tree_map(lambda p, q: jnp.linalg.norm(p - q), params, anchor)
        r = dist if no_max else jax.tree_util.tree_map(jnp.maximum, r, dist)
        gsq = jax.tree_util.tree_map(lambda a, x: a + jnp.sum(x * x), gsq, g)
        u = jax.tree_util.tree_map(lambda x, d, a: d / jnp.sqrt(a + 1e-8) * x, g, r, gsq)
        return u, (r, gsq, params if from_previous else anchor)

    return gx.GradientTransformation(init, update)


def test_dog_reference_catches_distance_from_previous_params_and_missing_max():
    gx.testing.check_against_reference(_dog_mutant(), ref.scale_by_distance_over_gradients(), steps=4)  # sanity
    _catches(_dog_mutant(from_previous=True), ref.scale_by_distance_over_gradients())
    # Without the max the step size shrinks when the iterate comes back towards theta_0.
    back = lambda step, p: jax.tree_util.tree_map(lambda x: (1.0 if step < 3 else -30.0) * np.ones_like(x), p)
    _catches(_dog_mutant(no_max=True), ref.scale_by_distance_over_gradients(), grads=back)


# --------------------------------------------------------------------------- Polyak


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("scale_by_polyak", {}),
        ("scale_by_polyak", {"f_min": 3.0, "max_learning_rate": 0.5, "eps": 1e-3, "variant": "sps+"}),
        ("scale_by_polyak", {"f_min": 3.0, "variant": "sps"}),  # value < f*: SPS ascends, as the formula says
        ("polyak_sgd", {"max_learning_rate": 0.5, "scaling": 2.0}),
        ("polyak_sgd", {"scaling": 0.3, "eps": 1e-2}),
    ],
)
def test_polyak_matches_optax_with_value(name, kwargs):
    _assert_parity(getattr(gx, name)(**kwargs), getattr(optax, name)(**kwargs), extra=_value)


def test_polyak_zero_gradient_gives_zero_step_and_value_is_required():
    tx = gx.scale_by_polyak()
    g = jax.tree_util.tree_map(jnp.zeros_like, _params())
    u, _ = tx.update(g, tx.init(g), value=jnp.float32(3.0))
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(u))
    with pytest.raises(TypeError, match="value"):
        tx.update(g, tx.init(g))


def _polyak_mutant(*, per_leaf=False, cap=True):
    """The Polyak step with per-leaf norms, or without the cap gamma_b."""

    def update(g, state, params=None, *, value, **extra):
        del params, extra
        if per_leaf:
            step = lambda x: jnp.minimum(value / jnp.sum(x * x), 1.0) * x
            return jax.tree_util.tree_map(step, g), state
        sq = sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(g))
        gamma = value / sq if not cap else jnp.minimum(value / sq, 1.0)
        return jax.tree_util.tree_map(lambda x: gamma * x, g), state

    return gx.GradientTransformation(lambda p: gx.EmptyState(), update)


def test_polyak_reference_catches_per_leaf_norms_and_missing_cap():
    big = lambda step, params, grads: {"value": jnp.float32(100.0)}
    small = lambda step, params, grads: {"value": jnp.float32(0.05)}
    gx.testing.check_against_reference(_polyak_mutant(), ref.scale_by_polyak(), steps=4, extra_args_fn=big)
    _catches(_polyak_mutant(cap=False), ref.scale_by_polyak(), extra_args_fn=big)
    _catches(_polyak_mutant(per_leaf=True), ref.scale_by_polyak(), extra_args_fn=small)


# --------------------------------------------------------------------------- optimistic


def test_optimistic_state_flattens_like_optax():
    params = _params()
    ours = gx.scale_by_optimistic_gradient().init(params)
    theirs = optax.scale_by_optimistic_gradient().init(params)
    assert type(ours).__name__ == type(theirs).__name__ and ours._fields == theirs._fields
    assert [(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(ours)] == [
        (x.shape, x.dtype) for x in jax.tree_util.tree_leaves(theirs)
    ]


def test_optimistic_matches_optax_over_25_steps():
    _assert_parity(gx.optimistic_gradient_descent(0.1, alpha=0.7, beta=0.4), optax.optimistic_gradient_descent(0.1, alpha=0.7, beta=0.4))
    _assert_parity(gx.optimistic_adam_v2(0.01), optax.optimistic_adam_v2(0.01))


def test_optimistic_rejects_schedules_and_optimistic_adam_warns():
    # optax 0.2.8 annotates alpha / beta as schedules but fails on one (TypeError in update).
    with pytest.raises(TypeError, match="alpha"):
        gx.optimistic_gradient_descent(0.1, alpha=lambda count: 1.0)
    with pytest.warns(DeprecationWarning, match="optimistic_adam_v2"):
        gx.optimistic_adam(0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="learning_rate"):
            gx.optimistic_adam(lambda count: 0.1)
    with pytest.raises(ValueError, match="alpha"):
        gx.scale_by_optimistic_gradient(alpha=float("nan"))


def _optimistic_mutant(*, zero_first=False, store_update=False):
    """u = 2 g_t - g_{t-1} with g_0 = 0 (not g_1), or remembering u_t instead of g_t."""

    def init(params):
        return (jnp.array(True), jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(g, state, params=None):
        first, prev = state
        if not zero_first:
            prev = jax.tree_util.tree_map(lambda x, p: jnp.where(first, x, p), g, prev)
        u = jax.tree_util.tree_map(lambda x, p: 2 * x - p, g, prev)
        return u, (jnp.array(False), u if store_update else g)

    return gx.GradientTransformation(init, update)


def test_optimistic_reference_catches_first_step_and_stored_update():
    gx.testing.check_against_reference(_optimistic_mutant(), ref.scale_by_optimistic_gradient(), steps=4)
    _catches(_optimistic_mutant(zero_first=True), ref.scale_by_optimistic_gradient())
    _catches(_optimistic_mutant(store_update=True), ref.scale_by_optimistic_gradient())


# --------------------------------------------------------------------------- sign


def test_signum_reference_catches_the_momentum_of_signs():
    # Signum takes the sign of the momentum, not the momentum of the signs.
    gx.testing.check_against_reference(gx.signum(0.1, beta=0.5), ref.signum(0.1, beta=0.5), steps=6)
    mutant = gx.chain(gx.scale_by_sign(), gx.ema(0.5, debias=False), gx.scale_by_learning_rate(0.1))
    _catches(mutant, ref.signum(0.1, beta=0.5))


# --------------------------------------------------------------------------- centralize, normalize


def test_centralize_reference_catches_the_mean_over_every_axis():
    mutant = gx.stateless(lambda g, p: jax.tree_util.tree_map(lambda x: x - jnp.mean(x) if x.ndim > 1 else x, g))
    _catches(mutant, ref.centralize())
    mutant_vec = gx.stateless(lambda g, p: jax.tree_util.tree_map(lambda x: x - jnp.mean(x, axis=-1, keepdims=True), g))
    _catches(mutant_vec, ref.centralize())


def test_normalize_reference_catches_per_leaf_norms_and_zero_stays_zero():
    mutant = gx.stateless(lambda g, p: jax.tree_util.tree_map(lambda x: x / (jnp.linalg.norm(x) + 1e-6), g))
    _catches(mutant, ref.normalize_by_update_norm())
    # optax 0.2.8 gives NaN here (0 / 0).
    tx = gx.normalize_by_update_norm(eps=0.0)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, _params())
    u, _ = tx.update(zeros, tx.init(zeros))
    assert all(np.all(np.asarray(x) == 0) for x in jax.tree_util.tree_leaves(u))


# --------------------------------------------------------------------------- noisy SGD


def test_noisy_sgd_matches_optax_for_the_same_key():
    for step, a, b in _run_pair(gx.noisy_sgd(0.1, eta=0.3, key=7), optax.noisy_sgd(0.1, eta=0.3, key=7), steps=5):
        for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-7, err_msg=f"step {step + 1}")


def test_noisy_sgd_noise_has_the_annealed_variance():
    eta, gamma, lr = 0.5, 0.55, 2.0
    tx = gx.noisy_sgd(lr, eta=eta, gamma=gamma, key=jax.random.PRNGKey(0))
    zeros = jnp.zeros((20000,))
    state = tx.init(zeros)
    for t in range(3):  # t = 0, 1, 2: variance eta / (1 + t)^gamma
        u, state = tx.update(zeros, state)
        noise = np.asarray(u) / -lr
        var = eta / (1 + t) ** gamma
        assert abs(noise.mean()) < 4 * np.sqrt(var / noise.size)
        assert abs(noise.var() / var - 1) < 0.05


def test_noisy_sgd_key_and_seed():
    with pytest.raises(TypeError, match="key"):
        gx.noisy_sgd(0.1)
    with pytest.warns(DeprecationWarning, match="seed"):
        a = gx.noisy_sgd(0.1, seed=3)
    b = gx.noisy_sgd(0.1, key=3)
    g = jnp.ones(4)
    np.testing.assert_array_equal(np.asarray(a.update(g, a.init(g))[0]), np.asarray(b.update(g, b.init(g))[0]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="seed"):
            gx.noisy_sgd(0.1, key=1, seed=3)


# --------------------------------------------------------------------------- scale_gradient


def test_scale_gradient_scales_only_the_backward_pass():
    x = {"a": jnp.array([1.0, -2.0]), "b": jnp.array(3.0)}
    f = lambda s: lambda t: sum(jnp.sum(v**2) for v in jax.tree_util.tree_leaves(gx.scale_gradient(t, s)))
    for s in (0.5, -2.0, 0.0, 1.0):
        assert gx.scale_gradient(x, s) is x or jax.tree_util.tree_all(
            jax.tree_util.tree_map(lambda a, b: bool(jnp.all(a == b)), gx.scale_gradient(x, s), x)
        )
        ours = jax.grad(f(s))(x)
        with loose:
            theirs = jax.grad(lambda t, s=s: sum(jnp.sum(v**2) for v in jax.tree_util.tree_leaves(optax.scale_gradient(t, s))))(x)
        for a, b in zip(jax.tree_util.tree_leaves(ours), jax.tree_util.tree_leaves(theirs)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b))
    # A traced scale (optax 0.2.8 raises TracerBoolConversionError).
    g = jax.jit(lambda s: jax.grad(f(s))(x))(jnp.float32(0.25))
    np.testing.assert_allclose(np.asarray(g["a"]), 0.25 * 2 * np.asarray(x["a"]))
    # The cotangent keeps its dtype.
    y = jnp.ones(3, jnp.bfloat16)
    assert jax.grad(lambda t: jnp.sum(gx.scale_gradient(t, 0.5)).astype(jnp.float32))(y).dtype == jnp.bfloat16


# --------------------------------------------------------------------------- signatures

NAMES = [
    "scale_by_sign", "sign_sgd", "signum", "scale_by_optimistic_gradient", "optimistic_gradient_descent",
    "optimistic_adam", "optimistic_adam_v2", "scale_by_polyak", "polyak_sgd", "noisy_sgd",
    "scale_by_distance_over_gradients", "centralize", "normalize_by_update_norm", "scale_gradient",
]


@pytest.mark.parametrize("name", NAMES)
def test_signature_matches_optax(name):
    import inspect

    ours = inspect.signature(getattr(gx, name)).parameters
    theirs = inspect.signature(getattr(optax, name)).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [
        (p.name, p.kind, p.default) for p in theirs.values()
    ]
