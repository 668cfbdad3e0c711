"""Legal input never gives a silent NaN (or a silent zero).

* ``eps = 0`` (and ``eps_root = 0``) is allowed by every declaration that lists
  it; all-zero gradients then give 0/0 in a rule that divides by a root of its
  second moment. 0/0 is defined as 0 (with ``eps = eps_root = 0``, :math:`v = 0`
  forces :math:`m = 0` in Adam-like rules, so 0 is the limit), and a nonzero
  numerator over a zero denominator stays inf.
* ``clip_by_global_norm`` of float32 gradients whose norm overflows float32.
* ``apply_if_finite`` rejects a finite step that makes the inner state non-finite.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
import gradxform.testing.reference  # noqa: F401 (gx.testing.reference)
from gradxform import _hyper, _tree
from gradxform.testing.registry import REGISTRY
from gradxform.transforms import _adam, _rmsprop

# ---------------------------------------------------------------- eps = 0, all-zero gradients


def _admits_zero(h) -> bool:
    if h.kind != "float" or not h.valid:
        return False
    low, _, low_inclusive, _ = h.valid
    return low < 0 or (low == 0 and low_inclusive)


def _zero_eps(entry) -> dict:
    """``eps``-like arguments (eps, eps_root, epsilon, adam_eps_root...) set to 0 where the declaration allows it."""
    declared = getattr(entry.factory, "hyperparameters", {})
    return {name: 0.0 for name, h in declared.items() if "eps" in name and _admits_zero(h)}


ZERO_EPS = [e for e in REGISTRY if not e.random and _zero_eps(e)]

# The rules of issue 13 (and AdaGrad, which was right already): each is a scaling
# of g (no weight decay, no initial accumulator in the numerator), so all-zero
# gradients must give exactly zero updates. They run in CI; the rest of the
# registry, where only finiteness is required, with --runslow.
SCALINGS = {
    "scale_by_adam", "adam_nesterov", "scale_by_rms", "scale_by_rms_pytorch", "scale_by_stddev",
    "rmsprop_centered_momentum", "scale_by_belief", "scale_by_adadelta", "adagrad", "scale_by_novograd",
    "scale_by_adamax", "scale_by_amsgrad", "scale_by_ademamix",
}


def _params():
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.normal(size=(4, 3)), jnp.float32), "b": jnp.asarray(rng.normal(size=(3,)), jnp.float32)}


def _zero_gradient_step(tx, extra_args_fn=None):
    params = _params()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    extra = extra_args_fn(0, params, zeros) if extra_args_fn else {}
    return jax.jit(tx.update)(zeros, tx.init(params), params, **extra)


def _assert_finite(tree, what):
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.inexact):
            assert np.all(np.isfinite(np.asarray(leaf))), f"{what}{jax.tree_util.keystr(path)} is not finite: {leaf}"


def check_zero_gradients(tx, extra_args_fn=None, *, scaling: bool, reference=None) -> None:
    """One jitted step on all-zero gradients: finite updates and state; zero updates for a scaling of g;
    the NumPy `reference` (float64, built with the same arguments) gives the same updates."""
    updates, state = _zero_gradient_step(tx, extra_args_fn)
    if reference is not None:
        to64 = lambda t: jax.tree_util.tree_map(lambda x: np.asarray(x, np.float64), t)  # noqa: E731
        params, zeros = to64(_params()), to64(jax.tree_util.tree_map(jnp.zeros_like, _params()))
        extra = to64(extra_args_fn(0, _params(), jax.tree_util.tree_map(jnp.zeros_like, _params()))) if extra_args_fn else {}
        with np.errstate(all="ignore"):
            expected, _ = reference.update(zeros, reference.init(params), params, **extra)
        for got, want in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(expected)):
            np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-5, atol=1e-7)
    _assert_finite(updates, "updates")
    _assert_finite(state, "state")
    if scaling:
        for leaf in jax.tree_util.tree_leaves(updates):
            assert not np.any(np.asarray(leaf)), f"all-zero gradients gave a nonzero update: {leaf}"


@pytest.mark.parametrize(
    "entry",
    [pytest.param(e, id=e.name, marks=[] if e.name in SCALINGS else [pytest.mark.slow]) for e in ZERO_EPS],
)
def test_zero_gradients_at_eps_zero_give_finite_updates(entry):
    overrides = _zero_eps(entry)
    try:
        tx = entry.build(**overrides)
    except ValueError as err:  # a loud refusal naming the argument is fine (DoWG: eps is its initial distance)
        assert any(f"`{name}`" in str(err) for name in overrides), str(err)
        return
    reference = None
    if entry.reference is not None and hasattr(gx.testing.reference, entry.factory.__name__):
        reference = getattr(gx.testing.reference, entry.factory.__name__)(**{**entry.kwargs, **overrides})
    check_zero_gradients(tx, entry.extra_args_fn, scaling=entry.name in SCALINGS, reference=reference)


def test_scalings_are_in_the_registry():
    """SCALINGS names registry entries that accept eps = 0 (a renamed entry must not silently drop out of CI)."""
    assert SCALINGS <= {e.name for e in ZERO_EPS}


@_tree.leaf_rule(static=("nesterov",))
def _unguarded_adam_rule(g, mu, nu, s, *, nesterov):
    """scale_by_adam's rule before issue 13: the bare division (0/0 = NaN at eps = eps_root = 0)."""
    x = g.astype(s.eps.dtype)
    m = _tree.update_moment(x, mu, s.b1)
    v = _tree.update_moment(_tree.abs_sq(x), nu, s.b2)
    m_hat = _tree.debiased_first_moment(m, x, s, nesterov)
    u = m_hat / (jnp.sqrt(v / s.bc2 + s.eps_root) + s.eps)
    return u.astype(g.dtype), m.astype(mu.dtype), v.astype(nu.dtype)


@pytest.mark.parametrize("nesterov", [False, True])
def test_mutant_adam_without_zero_guard_is_caught(monkeypatch, nesterov):
    tx = gx.scale_by_adam(eps=0.0, eps_root=0.0, nesterov=nesterov)
    check_zero_gradients(tx, scaling=True)  # the library's rule passes
    monkeypatch.setattr(_adam, "_adam_rule", _unguarded_adam_rule)
    with pytest.raises(AssertionError, match="not finite"):
        check_zero_gradients(gx.scale_by_adam(eps=0.0, eps_root=0.0, nesterov=nesterov), scaling=True)


def test_rmsprop_without_the_helpers_zero_guard_is_caught(monkeypatch):
    """`_tree.inverse_root` is where RMSProp's guard lives: a version without it gives NaN."""

    def unguarded(r, eps, eps_in_sqrt, x=None):
        inv = jax.lax.rsqrt(r + eps) if eps_in_sqrt else 1 / (jnp.sqrt(r) + eps)
        return inv if x is None else x * inv

    check_zero_gradients(gx.rmsprop(0.1, eps=0.0, centered=True), scaling=True)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(_tree, "inverse_root", unguarded)
            _rmsprop._stddev_rule.clear_cache()  # the rule's trace read the helper: trace it again
            with pytest.raises(AssertionError, match="not finite"):
                check_zero_gradients(gx.rmsprop(0.1, eps=0.0, centered=True), scaling=True)
    finally:
        _rmsprop._stddev_rule.clear_cache()  # and drop the mutant's trace


def test_zero_over_zero_only_is_defined_nonzero_over_zero_stays_inf():
    """Adam at eps = eps_root = 0: a gradient whose square underflows gives m != 0 over v = 0: inf, never a silent 0.

    And a zero coordinate next to a nonzero one gives 0 and sign(g) (the first step is g / |g|).
    """
    tx = gx.scale_by_adam(eps=0.0, eps_root=0.0)
    g = jnp.array([1e-30, 0.0, -2.0], jnp.float32)  # (1e-30)^2 underflows float32
    u, _ = tx.update(g, tx.init(g))
    assert np.isinf(float(u[0])) and float(u[1]) == 0.0 and np.isclose(float(u[2]), -1.0, rtol=1e-6)


def test_adabelief_zero_surprise_with_eps_zero_stays_inf():
    """AdaBelief's s = EMA((g - m)^2) is 0 for a constant gradient at b1 = 0 although m != 0 (unlike Adam's v):
    the formula's m / 0 is inf, and only the 0/0 of zero gradients is defined as 0."""
    tx = gx.scale_by_belief(b1=0.0, eps=0.0, eps_root=0.0)
    g = jnp.array([1.0, 0.0], jnp.float32)
    u, _ = tx.update(g, tx.init(g))
    assert np.isinf(float(u[0])) and float(u[1]) == 0.0


def test_centered_rmsprop_zero_variance_with_eps_zero():
    """decay = 0: the variance nu - mu^2 is 0 for any g; g / 0 is inf where g != 0, 0 where g = 0."""
    tx = gx.scale_by_stddev(decay=0.0, eps=0.0)
    g = jnp.array([3.0, 0.0], jnp.float32)
    u, _ = tx.update(g, tx.init(g))
    assert np.isinf(float(u[0])) and float(u[1]) == 0.0


# ---------------------------------------------------------------- norms that overflow float32


def _plain_clip_by_global_norm(max_norm):
    """A mutant: the textbook clip, with the norm summed in float32 and no scaled fallback."""

    def update(updates, state, params=None):
        norm = jnp.sqrt(sum(jnp.sum(x * x) for x in jax.tree_util.tree_leaves(updates)))
        factor = max_norm / jnp.maximum(norm, max_norm)
        return jax.tree_util.tree_map(lambda x: x * factor, updates), state

    return gx.GradientTransformation(lambda p: gx.EmptyState(), update)


BIG = [
    {"w": jnp.full(3, 3e38, jnp.float32)},  # the norm itself (5.2e38) is above float32's max
    {"w": jnp.array([3e38], jnp.float32), "b": jnp.array([-1e38], jnp.float32)},  # only the sum of squares overflows
]


def check_clip_of_huge_gradients(tx, grads):
    """The clipped update is g / ||g|| * 1, the norm taken in float64."""
    updates, _ = jax.jit(tx.update)(grads, tx.init(grads))
    norm = math.sqrt(sum(float(np.sum(np.asarray(x, np.float64) ** 2)) for x in jax.tree_util.tree_leaves(grads)))
    for u, g in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(grads)):
        np.testing.assert_allclose(np.asarray(u, np.float64), np.asarray(g, np.float64) / norm, rtol=1e-6)


@pytest.mark.parametrize("grads", BIG, ids=["norm_overflows", "sum_overflows"])
def test_clip_by_global_norm_of_overflowing_gradients(grads):
    check_clip_of_huge_gradients(gx.clip_by_global_norm(1.0), grads)
    with pytest.raises(AssertionError):  # the mutant without the scaled fallback gives zeros
        check_clip_of_huge_gradients(_plain_clip_by_global_norm(1.0), grads)
    with jax.numpy_dtype_promotion("standard"):  # optax's norm overflows too
        out, _ = optax.clip_by_global_norm(1.0).update(grads, optax.EmptyState())
    assert not np.allclose(np.asarray(out["w"]), np.asarray(grads["w"], np.float64) / 5.2e38, rtol=0.1)


@pytest.mark.parametrize("grads", BIG, ids=["norm_overflows", "sum_overflows"])
def test_normalize_by_update_norm_of_overflowing_gradients(grads):
    """g / (||g|| + eps) with the norm above float32's max: the same unit vector (was zeros)."""
    check_clip_of_huge_gradients(gx.normalize_by_update_norm(1.0), grads)
    check_clip_of_huge_gradients(gx.normalize_by_update_norm(1.0, eps=0.0), grads)


def test_trust_ratio_of_overflowing_gradients():
    """||p|| g / ||g|| per leaf with ||g|| above float32's max: the rescaled update (was zeros)."""
    tx = gx.scale_by_trust_ratio()
    params = {"w": jnp.full(3, 1 / math.sqrt(3), jnp.float32)}  # norm 1
    check_clip_of_huge_gradients(gx.GradientTransformation(tx.init, lambda g, s, p=None: tx.update(g, s, params)),
                                 BIG[0])
    params = {"w": jnp.array([2.0]), "b": jnp.array([0.5])}
    u, _ = jax.jit(tx.update)(BIG[1], tx.init(params), params)
    np.testing.assert_allclose(np.asarray(u["w"]), [2.0], rtol=1e-6)  # only the sum of squares overflows
    np.testing.assert_allclose(np.asarray(u["b"]), [-0.5], rtol=1e-6)


def test_global_norm_finite_when_only_the_sum_of_squares_overflows():
    grads = BIG[1]
    np.testing.assert_allclose(float(gx.global_norm(grads)), math.sqrt(10) * 1e38, rtol=1e-6)
    assert np.isinf(float(gx.global_norm(BIG[0])))  # 5.2e38 is not a float32


def test_traced_zero_bounds_on_zero_gradients_never_divide_zero_by_zero():
    """Every division by a norm or a bound in the clipping family, with a traced bound of 0 on zeros."""
    zeros = {"w": jnp.zeros((3, 2)), "e": jnp.zeros((0,))}

    def block_rms(c, g):
        return gx.clip_by_block_rms(c).update(g, gx.EmptyState())[0]

    def global_norm_clip(c, g):
        return gx.clip_by_global_norm(c).update(g, gx.EmptyState())[0]

    def agc(c, g):  # zero params and eps = 0: a bound of 0
        return gx.adaptive_grad_clip(c, eps=0.0).update(g, gx.EmptyState(), g)[0]

    def per_example(c, g):
        return gx.per_example_global_norm_clip([g["w"]], c)[0]

    def per_layer(c, g):
        return gx.per_example_layer_norm_clip([g["w"]], c)[0]

    def complex_clip(c, g):
        return gx.clip(c).update(jnp.zeros(2, jnp.complex64), gx.EmptyState())[0]

    fns = (block_rms, global_norm_clip, agc, per_example, per_layer, complex_clip)
    outs = jax.jit(lambda c, g: [fn(c, g) for fn in fns])(0.0, zeros)  # one compilation
    for fn, out in zip(fns, outs):
        for leaf in jax.tree_util.tree_leaves(out):
            assert not np.any(np.asarray(leaf)) and np.all(np.isfinite(np.asarray(leaf))), fn.__name__


# ---------------------------------------------------------------- apply_if_finite and the inner state

OVERFLOW = {"w": jnp.array([2e19, 1.0], jnp.float32)}  # finite, but 2e19^2 = 4e38 overflows Adam's nu
ORDINARY = {"w": jnp.array([1.0, 1.0], jnp.float32)}


def test_apply_if_finite_rejects_a_step_that_overflows_the_inner_state():
    tx = gx.apply_if_finite(gx.adam(1e-3), 3)
    params = {"w": jnp.ones(2)}
    step = jax.jit(tx.update)
    u, state = step(OVERFLOW, tx.init(params), params)
    assert not np.any(np.asarray(u["w"]))
    assert not bool(state.last_finite) and int(state.notfinite_count) == 1 and int(state.total_notfinite) == 1
    assert int(state.inner_state[0].count) == 0  # the inner state is the one before the step
    _assert_finite(state.inner_state, "inner_state")
    u, state = step(ORDINARY, state, params)  # training goes on: Adam's first step is -lr * sign(g)
    np.testing.assert_allclose(np.asarray(u["w"]), [-1e-3, -1e-3], rtol=1e-5)
    assert bool(state.last_finite) and int(state.notfinite_count) == 0


def test_optax_apply_if_finite_accepts_it_and_adam_freezes():
    """The difference: optax checks only the gradients, stores nu = inf and then never moves that coordinate."""
    tx = optax.apply_if_finite(optax.adam(1e-3), 3)
    params = {"w": jnp.ones(2)}
    with jax.numpy_dtype_promotion("standard"):
        _, state = tx.update(OVERFLOW, tx.init(params), params)
        assert bool(state.last_finite) and np.isinf(float(state.inner_state[0].nu["w"][0]))
        u, _ = tx.update(ORDINARY, state, params)
    assert float(u["w"][0]) == 0.0


def test_apply_if_finite_rejects_non_finite_inner_updates_from_finite_gradients():
    """Adam at eps = eps_root = 0 on a gradient whose square underflows: m / 0 = inf from a finite gradient."""
    tx = gx.apply_if_finite(gx.scale_by_adam(eps=0.0, eps_root=0.0), 3)
    g = jnp.array([1e-30, 1.0], jnp.float32)
    u, state = tx.update(g, tx.init(g))
    assert not np.any(np.asarray(u)) and not bool(state.last_finite)


def test_apply_if_finite_keeps_an_inner_state_that_was_already_infinite():
    """Only a step that *makes* an element non-finite is rejected: a state starting at inf (a best loss) is fine."""

    def update(updates, state, params=None):
        return updates, jnp.minimum(state, jnp.sum(updates))

    inner = gx.GradientTransformation(lambda p: jnp.asarray(jnp.inf, jnp.float32), update)
    tx = gx.apply_if_finite(inner, 3)
    g = jnp.array([1.0, 2.0], jnp.float32)
    state = tx.init(g)
    inner_only = gx.GradientTransformation(lambda p: jnp.asarray(jnp.inf, jnp.float32), lambda u, s, p=None: (u, s))
    u, state = tx.update(g, state)
    assert bool(state.last_finite) and float(state.inner_state) == 3.0
    u, state = gx.apply_if_finite(inner_only, 3).update(g, gx.apply_if_finite(inner_only, 3).init(g))
    assert bool(state.last_finite) and np.isinf(float(state.inner_state)) and np.asarray(u).tolist() == [1.0, 2.0]
