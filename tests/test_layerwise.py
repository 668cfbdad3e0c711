"""Layer-wise and factored rules beyond the registry: optax's SM3 scalar bug, state layouts,
and broken copies of the rules (mutants) that the NumPy references must catch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx

ref = gx.testing.reference
loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion


def _tree(seed=0, scalar=False, square=False):
    rng = np.random.default_rng(seed)
    tree = {
        "w": jnp.asarray(rng.normal(size=(3, 3) if square else (3, 4)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
        "t": jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float32),
    }
    if scalar:
        tree["s"] = jnp.asarray(rng.normal(), jnp.float32)
    return tree


def _run_both(ours, theirs, params, steps=6):
    """Both transformations on the same gradients; each applies its own updates."""
    p_ours = p_theirs = params
    s_ours, s_theirs = ours.init(params), theirs.init(params)
    for step in range(steps):
        rng = np.random.default_rng(step)
        grads = jax.tree_util.tree_map(lambda x, rng=rng: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
        u_ours, s_ours = jax.jit(ours.update)(grads, s_ours, p_ours)
        with loose:
            u_theirs, s_theirs = theirs.update(grads, s_theirs, p_theirs)
        for a, b in zip(jax.tree_util.tree_leaves(u_ours), jax.tree_util.tree_leaves(u_theirs)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=5e-5, atol=1e-7, err_msg=f"step {step + 1}")
        p_ours, p_theirs = gx.apply_updates(p_ours, u_ours), optax.apply_updates(p_theirs, u_theirs)


# ----------------------------------------------------------------------------- optax's SM3 bug


def test_sm3_works_on_a_scalar_param_where_optax_0_2_8_fails():
    params = {"s": jnp.asarray(1.5), "v": jnp.ones(3)}
    grads = {"s": jnp.asarray(2.0), "v": jnp.array([1.0, -2.0, 0.0])}
    theirs = optax.sm3(0.1)
    with pytest.raises(IndexError), loose:  # optax keeps no accumulator for a rank-0 leaf
        theirs.update(grads, theirs.init(params), params)
    ours = gx.sm3(0.1)
    updates, state = ours.update(grads, ours.init(params), params)
    # the first step: -0.1 * (1 - 0.9) * g / sqrt(g^2 + eps) = -0.01 sign(g)
    np.testing.assert_allclose(float(updates["s"]), -0.01, rtol=1e-6)
    assert [m.shape for m in state[0].mu["s"]] == [()]  # one accumulator for the scalar
    gx.testing.check_against_reference(ours, ref.sm3(0.1), steps=5, params={"s": np.asarray(1.5), "v": np.ones(3)})


@pytest.mark.parametrize(
    "name,kwargs",
    [("scale_by_sm3", {}), ("scale_by_sm3", {"b1": 0.5, "b2": 0.9, "eps": 1e-6}), ("sm3", {"learning_rate": 0.1})],
)
def test_sm3_matches_optax_on_trees_without_scalars(name, kwargs):
    _run_both(getattr(gx, name)(**kwargs), getattr(optax, name)(**kwargs), _tree())


def test_param_block_norm_matches_optax():
    _run_both(gx.scale_by_param_block_norm(), optax.scale_by_param_block_norm(), _tree(), steps=3)


# ----------------------------------------------------------------------------- state layouts


def _layout(state):
    leaves, treedef = jax.tree_util.tree_flatten(state)
    names = [type(s).__name__ for s in (state if isinstance(state, tuple) and not hasattr(state, "_fields") else [state])]
    return names, treedef.num_leaves, [(np.shape(x), jnp.asarray(x).dtype) for x in leaves]


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("adafactor", {}),
        ("adafactor", {"learning_rate": 0.1, "min_dim_size_to_factor": 3, "momentum": 0.9, "weight_decay_rate": 0.1}),
        ("adafactor", {"learning_rate": lambda c: 0.1, "clipping_threshold": None, "factored": False}),
        ("scale_by_factored_rms", {"min_dim_size_to_factor": 2}),
        ("lamb", {"learning_rate": 0.1}),
        ("lars", {"learning_rate": 0.1}),
        ("fromage", {"learning_rate": 0.1}),
        ("novograd", {"learning_rate": 0.1}),
        ("sm3", {"learning_rate": 0.1}),
        ("scale_by_trust_ratio", {}),
    ],
)
def test_state_flattens_like_optax(name, kwargs):
    params = _tree(scalar=name != "sm3")
    ours, theirs = getattr(gx, name)(**kwargs).init(params), getattr(optax, name)(**kwargs).init(params)
    assert _layout(ours) == _layout(theirs)


def test_factored_state_shapes_follow_optax_rule():
    state = gx.scale_by_factored_rms(min_dim_size_to_factor=3).init(
        {"m": jnp.zeros((3, 4)), "small": jnp.zeros((2, 8)), "t": jnp.zeros((5, 2, 3))}
    )
    assert state.v_row["m"].shape == (3,) and state.v_col["m"].shape == (4,) and state.v["m"].shape == (1,)
    assert state.v["small"].shape == (2, 8) and state.v_row["small"].shape == (1,)  # 2 < 3: not factored
    # (5, 2, 3): rows are axis 2 (3 entries), columns axis 0 (5); axis 1 is a batch axis
    assert state.v_row["t"].shape == (2, 3) and state.v_col["t"].shape == (5, 2)


def test_factored_mis_shaped_gradient_is_caught_against_the_params():
    tx = gx.scale_by_factored_rms(min_dim_size_to_factor=2)
    params = {"w": jnp.zeros((3, 4))}
    with pytest.raises(gx.TreeMismatchError, match=r"\['w'\].*\(4, 3\).*\(3, 4\)"):
        tx.update({"w": jnp.ones((4, 3))}, tx.init(params), params)
    with pytest.raises(gx.TreeMismatchError, match=r"\['w'\]"):
        tx.update({"w": jnp.ones((3, 5))}, tx.init(params))  # no params: the state's shapes


def test_fromage_rejects_a_schedule():
    with pytest.raises(TypeError, match="learning_rate"):
        gx.fromage(lambda count: 0.1)


def test_novograd_without_weight_decay_needs_no_params():
    tx = gx.novograd(0.1)
    updates, _ = tx.update({"w": jnp.array([3.0, 4.0])}, tx.init({"w": jnp.zeros(2)}))
    np.testing.assert_allclose(updates["w"], [-0.06, -0.08], rtol=1e-5)
    with pytest.raises(ValueError, match="params"):
        gx.scale_by_novograd(weight_decay=0.1).update(jnp.ones(2), gx.scale_by_novograd(weight_decay=0.1).init(jnp.ones(2)))


def test_sm3_rejects_complex_params():
    with pytest.raises(ValueError, match="complex"):
        gx.scale_by_sm3().init({"z": jnp.ones(2, jnp.complex64)})


# ----------------------------------------------------------------------------- mutants


def _leafwise(fn, init=None):
    """A transformation from ``fn(g, p, state_leaf, count) -> (u, state_leaf)`` (a mutant)."""

    def init_fn(params):
        return (jnp.zeros([], jnp.int32), jax.tree_util.tree_map(init or jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        count, leaves = state
        out = jax.tree_util.tree_map(lambda g, p, s: fn(g, p, s, count), updates, params, leaves)
        u = jax.tree_util.tree_map(lambda g, o: o[0], updates, out)
        new = jax.tree_util.tree_map(lambda g, o: o[1], updates, out)
        return u, (count + 1, new)

    return gx.GradientTransformation(init_fn, update_fn)


def _factored_mutant(swap: bool):
    """Adafactor's factored rule on square leaves; `swap` applies R along columns and C along rows."""

    def fn(g, p, s, count):
        r_old, c_old = s
        beta = 1 - (count.astype(jnp.float32) + 1.0) ** -0.8
        g2 = g * g + 1e-30
        r = beta * r_old + (1 - beta) * g2.mean(axis=1)
        c = beta * c_old + (1 - beta) * g2.mean(axis=0)
        if swap:
            v_hat = r[None, :] * c[:, None] / r.mean()
        else:
            v_hat = r[:, None] * c[None, :] / r.mean()
        return g / jnp.sqrt(v_hat), (r, c)

    return _leafwise(fn, init=lambda p: (jnp.zeros(p.shape[0]), jnp.zeros(p.shape[1])))


def _square_params():
    return {"w": np.random.default_rng(0).normal(size=(3, 3))}


def test_factored_reference_accepts_the_rule_and_catches_swapped_row_and_column_factors():
    reference = ref.scale_by_factored_rms(min_dim_size_to_factor=2)
    gx.testing.check_against_reference(_factored_mutant(swap=False), reference, params=_square_params())
    gx.testing.check_against_reference(gx.scale_by_factored_rms(min_dim_size_to_factor=2), reference,
                                       params=_square_params())
    with pytest.raises(AssertionError, match="differ"):
        gx.testing.check_against_reference(_factored_mutant(swap=True), reference, params=_square_params())


def test_factored_reference_catches_a_constant_decay_rate():
    broken = gx.scale_by_factored_rms(min_dim_size_to_factor=2, decay_rate_fn=lambda step, rate: 0.8)
    with pytest.raises(AssertionError, match="differ"):
        gx.testing.check_against_reference(broken, ref.scale_by_factored_rms(min_dim_size_to_factor=2))


def test_adafactor_reference_catches_clipping_by_the_global_rms():
    """Adafactor clips each block by its own RMS; clipping by the whole tree's is another rule."""

    def clip_globally(updates, params):
        leaves = jax.tree_util.tree_leaves(updates)
        rms = jnp.sqrt(sum(jnp.sum(x * x) for x in leaves) / sum(x.size for x in leaves))
        return jax.tree_util.tree_map(lambda x: x / jnp.maximum(1.0, rms), updates)

    broken = gx.chain(
        gx.scale_by_factored_rms(), gx.stateless(clip_globally), gx.scale_by_param_block_rms(), gx.scale(-1.0)
    )
    reference = ref.adafactor()
    gx.testing.check_against_reference(gx.adafactor(), reference)
    with pytest.raises(AssertionError, match="differ"):
        gx.testing.check_against_reference(broken, reference)


def _trust_ratio_mutant():
    """The trust ratio without the zero-norm guard: a zero layer gets ratio 0 and never moves."""

    def fn(g, p, s, count):
        return g * jnp.linalg.norm(p) / jnp.linalg.norm(g), s

    return _leafwise(fn)


def test_trust_ratio_reference_catches_the_missing_zero_norm_guard():
    params = {"w": np.random.default_rng(0).normal(size=(3, 4)), "b": np.zeros(4)}  # a zero-initialized bias
    reference = ref.scale_by_trust_ratio()
    gx.testing.check_against_reference(gx.scale_by_trust_ratio(), reference, params=params)
    with pytest.raises(AssertionError, match=r"\['b'\]"):
        gx.testing.check_against_reference(_trust_ratio_mutant(), reference, params=params)


def _novograd_mutant(first_step_init: bool, scaled: bool):
    """NovoGrad as written, or with v_1 = (1 - b2)|g_1|^2 / with Adam's (1 - b1) on the step."""
    b1, b2, eps = 0.9, 0.25, 1e-8

    def fn(g, p, s, count):
        v_old, m_old = s
        n2 = jnp.sum(g * g)
        first = (count == 0) & first_step_init
        v = jnp.where(first, n2, b2 * v_old + (1 - b2) * n2)
        step = g / (jnp.sqrt(v) + eps)
        m = jnp.where(first, step, b1 * m_old + ((1 - b1) if scaled else 1.0) * step)
        return m, (v, m)

    return _leafwise(fn, init=lambda p: (jnp.zeros(()), jnp.zeros_like(p)))


def test_novograd_reference_catches_an_ema_start_and_adams_one_minus_b1():
    reference = ref.scale_by_novograd()
    gx.testing.check_against_reference(_novograd_mutant(True, False), reference)
    with pytest.raises(AssertionError, match="differ"):
        gx.testing.check_against_reference(_novograd_mutant(False, False), reference)
    with pytest.raises(AssertionError, match="differ"):
        gx.testing.check_against_reference(_novograd_mutant(True, True), reference)


def _sm3_mutant(combine):
    """SM3-II on matrices, combining the row and column accumulators with `combine` (min is right)."""
    b1, eps = 0.9, 1e-8

    def fn(g, p, s, count):
        row, col, m_old = s
        acc = g * g + combine(row[:, None], col[None, :])
        g_hat = jnp.where(acc > 0, g / jnp.sqrt(acc + eps), 0.0)
        m = b1 * m_old + (1 - b1) * g_hat
        return m, (acc.max(axis=1), acc.max(axis=0), m)

    return _leafwise(fn, init=lambda p: (jnp.zeros(p.shape[0]), jnp.zeros(p.shape[1]), jnp.zeros_like(p)))


def test_sm3_reference_catches_the_max_of_the_cover_in_place_of_the_min():
    params = {"w": np.random.default_rng(0).normal(size=(3, 4))}
    reference = ref.scale_by_sm3()
    gx.testing.check_against_reference(_sm3_mutant(jnp.minimum), reference, params=params)
    with pytest.raises(AssertionError, match="differ"):
        gx.testing.check_against_reference(_sm3_mutant(jnp.maximum), reference, params=params)


def test_fromage_reference_catches_a_missing_shrink():
    """Without the 1 / sqrt(1 + lr^2) shrinking, Fromage is a plain trust-ratio step."""
    broken = gx.chain(gx.scale_by_trust_ratio(1e-6), gx.scale_by_learning_rate(0.1))
    reference = ref.fromage(0.1)
    gx.testing.check_against_reference(gx.fromage(0.1), reference)
    with pytest.raises(AssertionError, match="differ"):
        gx.testing.check_against_reference(broken, reference)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("scale_by_factored_rms", {"min_dim_size_to_factor": 3}),
        ("adafactor", {"learning_rate": 0.1, "min_dim_size_to_factor": 2}),
        ("scale_by_sm3", {}),
    ],
)
def test_rank_3_leaves_match_the_reference_and_optax(name, kwargs):
    """A batch axis between the factored ones ((5, 2, 3): rows axis 2, columns axis 0)."""
    rng = np.random.default_rng(1)
    params = {"t": rng.normal(size=(5, 2, 3)), "u": rng.normal(size=(2, 4, 3))}
    gx.testing.check_against_reference(getattr(gx, name)(**kwargs), getattr(ref, name)(**kwargs), params=params)
    _run_both(getattr(gx, name)(**kwargs), getattr(optax, name)(**kwargs),
              jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), params), steps=4)
