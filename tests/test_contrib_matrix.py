"""gx.contrib's matrix optimizers: Muon (Jordan et al., 2024) and GaLore (Zhao et al., 2024).

optax parity over 25 steps in float32, the paper reference (float64 NumPy), mutants the
reference check must catch, edge cases and validation. The registry-driven tests cover
`muon`'s laws and dtype policy; `scale_by_muon` (matrices only) is checked here.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing import check_against_reference, reference

loose = jax.numpy_dtype_promotion("standard")  # optax relies on implicit promotion


def _matrices(seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return {"wide": jnp.asarray(rng.normal(size=(3, 5)), dtype), "tall": jnp.asarray(rng.normal(size=(6, 4)), dtype)}


def _mixed(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "w": jnp.asarray(rng.normal(size=(3, 5)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
        "conv": jnp.asarray(rng.normal(size=(2, 2, 3, 4)), jnp.float32),
        "s": jnp.asarray(rng.normal(), jnp.float32),
    }


def _grads(params, steps, seed=1):
    rng = np.random.default_rng(seed)
    return [jax.tree_util.tree_map(lambda p: jnp.asarray(rng.normal(size=p.shape), p.dtype), params)
            for _ in range(steps)]


def _run(tx, params, grads):
    state = tx.init(params)
    step = jax.jit(tx.update)
    out = []
    for g in grads:
        u, state = step(g, state, params)
        out.append(u)
    return out, state


def _assert_parity(ours, theirs, params, steps=25):
    """Elementwise rtol 1e-5 (atol 1e-5 of the leaf's largest entry: Newton-Schulz mixes every entry)."""
    grads = _grads(params, steps)
    a, sa = _run(ours, params, grads)
    with loose:
        b, sb = _run(theirs, params, grads)
    for step, (ua, ub) in enumerate(zip(a, b)):
        for (path, x), y in zip(jax.tree_util.tree_flatten_with_path(ua)[0], jax.tree_util.tree_leaves(ub)):
            y = np.asarray(y)
            np.testing.assert_allclose(np.asarray(x), y, rtol=1e-5, atol=1e-5 * np.abs(y).max(),
                                       err_msg=f"step {step + 1} {jax.tree_util.keystr(path)}")
    la, lb = jax.tree_util.tree_leaves(sa), jax.tree_util.tree_leaves(sb)  # the same checkpoint layout
    assert [(x.shape, x.dtype) for x in la] == [(y.shape, y.dtype) for y in lb]


DN, ODN = gx.contrib.MuonDimensionNumbers, optax.contrib.MuonDimensionNumbers
CONV = dict(reduction_axis=(0, 1, 2), output_axis=3)


_SLOW = pytest.mark.slow  # each compiles both libraries' step (several seconds on a shared CPU)


@pytest.mark.parametrize("kwargs", [
    {},
    pytest.param({"nesterov": False, "beta": 0.9}, marks=_SLOW),
    pytest.param({"adaptive": True}, marks=_SLOW),
    pytest.param({"preconditioning": "spectral"}, marks=_SLOW),
    pytest.param({"preconditioning": "aol", "ns_steps": 4}, marks=_SLOW),
    pytest.param({"preconditioning": "schatten"}, marks=_SLOW),
    pytest.param({"ns_coeffs": ((4.0848, -6.8946, 2.927), (3.9505, -6.3029, 2.6377), (3.7418, -5.5913, 2.3037))},
                 marks=_SLOW),
], ids=str)
def test_scale_by_muon_matches_optax_over_25_steps(kwargs):
    params = _matrices()
    ours = gx.contrib.scale_by_muon(**kwargs, weight_dimension_numbers={"wide": DN(), "tall": DN()})
    theirs = optax.contrib.scale_by_muon(**kwargs, weight_dimension_numbers={"wide": ODN(), "tall": ODN()})
    _assert_parity(ours, theirs, params)


@_SLOW
@pytest.mark.parametrize("kwargs", [
    {},
    {"ns_coeffs": "dion", "consistent_rms": 0.2, "weight_decay": 0.1, "adam_weight_decay": 0.01,
     "adam_learning_rate": 0.01, "weight_decay_mask": {"w": True, "b": False, "conv": False, "s": False}},
], ids=["default", "dion_rms_decay"])
def test_muon_matches_optax_over_25_steps_with_dimension_numbers(kwargs):
    params = _mixed()

    def spec(dn):
        return lambda p: jax.tree_util.tree_map(lambda x: dn(**CONV) if x.ndim == 4 else (dn() if x.ndim == 2 else None), p)

    _assert_parity(gx.contrib.muon(0.1, **kwargs, muon_weight_dimension_numbers=spec(DN)),
                   optax.contrib.muon(0.1, **kwargs, muon_weight_dimension_numbers=spec(ODN)), params)
    _assert_parity(gx.contrib.muon(0.1, **kwargs), optax.contrib.muon(0.1, **kwargs), params, steps=5)


def test_muon_matches_optax_over_25_steps():
    params = {k: v for k, v in _mixed().items() if k != "conv"}
    _assert_parity(gx.contrib.muon(0.1), optax.contrib.muon(0.1), params)


@pytest.mark.parametrize("kwargs", [
    {}, {"nesterov": False}, {"adaptive": True},
    pytest.param({"preconditioning": "spectral"}, marks=_SLOW), pytest.param({"preconditioning": "aol"}, marks=_SLOW),
    pytest.param({"preconditioning": "schatten"}, marks=_SLOW),
    pytest.param({"ns_coeffs": (2.0, -1.5, 0.5), "ns_steps": 8}, marks=_SLOW),
], ids=str)
def test_scale_by_muon_matches_the_paper_reference(kwargs):
    check_against_reference(gx.contrib.scale_by_muon(**kwargs), reference.scale_by_muon(**kwargs), steps=6,
                            params=_matrices(), rtol=1e-4, atol=2e-5)


def test_muon_matches_the_paper_reference_with_conv_kernels():
    spec = {"w": DN(), "b": None, "conv": DN(**CONV), "s": None}
    check_against_reference(gx.contrib.muon(0.1, muon_weight_dimension_numbers=spec, consistent_rms=0.2),
                            reference.muon(0.1, muon_weight_dimension_numbers=spec, consistent_rms=0.2),
                            steps=6, params=_mixed(), rtol=1e-4, atol=2e-5)


# --------------------------------------------------------------------------- mutants


def _caught(tx, ref, params):
    with pytest.raises(AssertionError, match="differ from the reference"):
        check_against_reference(tx, ref, steps=6, params=params, rtol=1e-4, atol=2e-5)


def test_reference_catches_a_momentum_without_nesterov_look_ahead():
    _caught(gx.contrib.scale_by_muon(nesterov=False), reference.scale_by_muon(), _matrices())


def test_reference_catches_swapped_newton_schulz_coefficients():
    _caught(gx.contrib.scale_by_muon(ns_coeffs=(3.4445, 2.0315, -4.775)), reference.scale_by_muon(), _matrices())


def test_reference_catches_one_iteration_too_few():
    _caught(gx.contrib.scale_by_muon(ns_steps=4), reference.scale_by_muon(), _matrices())


def test_reference_catches_the_adaptive_scale_forgotten():
    _caught(gx.contrib.scale_by_muon(), reference.scale_by_muon(adaptive=True), _matrices())


def test_reference_catches_fan_in_and_fan_out_swapped():
    # Orthogonalizing W or W^T gives the same matrix; only the width scale sqrt(fan_out / fan_in) differs.
    params = {"w": _matrices()["wide"]}
    _caught(gx.contrib.muon(0.1, muon_weight_dimension_numbers={"w": DN(1, 0)}), reference.muon(0.1), params)


def test_reference_catches_the_decay_applied_to_a_masked_leaf():
    params = {"w": _matrices()["wide"]}
    _caught(gx.contrib.muon(0.1, weight_decay=0.5),
            reference.muon(0.1, weight_decay=0.5, weight_decay_mask={"w": False}), params)


# --------------------------------------------------------------------------- edge cases


@pytest.mark.parametrize("kind", ["frobenius", pytest.param("spectral", marks=_SLOW),
                                  pytest.param("aol", marks=_SLOW), pytest.param("schatten", marks=_SLOW)])
def test_all_zero_gradients_give_zero_updates_for_every_preconditioning(kind):
    params = _matrices()
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    tx = gx.contrib.scale_by_muon(preconditioning=kind, adaptive=True)
    u, _ = jax.jit(tx.update)(zeros, tx.init(params))
    for x in jax.tree_util.tree_leaves(u):
        assert np.all(np.asarray(x) == 0), kind


def test_bf16_params_keep_their_dtype_and_the_momentum_its_own():
    params = _mixed()
    params = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), params)
    tx = gx.contrib.muon(0.1, mu_dtype=jnp.float32)
    state = tx.init(params)
    u, state2 = jax.jit(tx.update)(_grads(params, 1)[0], state, params)
    # updates: the wider of the gradients' dtype (bf16) and the state's (mu_dtype=float32), BUILD.md dtype policy 5
    assert all(x.dtype in (jnp.bfloat16, jnp.float32) for x in jax.tree_util.tree_leaves(u))
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree_util.tree_leaves(u))
    assert [x.dtype for x in jax.tree_util.tree_leaves(state)] == [x.dtype for x in jax.tree_util.tree_leaves(state2)]


def test_scale_by_muon_without_dimension_numbers_takes_a_tree_of_matrices():
    # optax 0.2.8's scale_by_muon(weight_dimension_numbers=None) maps None as a tree prefix and
    # raises on any params tree that is not a single array; here None means "every leaf a matrix".
    params = _matrices()
    tx = gx.contrib.scale_by_muon()
    u, _ = tx.update(params, tx.init(params))
    with loose, pytest.raises(ValueError):
        otx = optax.contrib.scale_by_muon()
        otx.update(params, otx.init(params))
    ref = gx.contrib.scale_by_muon(weight_dimension_numbers={"wide": DN(), "tall": DN()})
    u2, _ = ref.update(params, ref.init(params))
    for x, y in zip(jax.tree_util.tree_leaves(u), jax.tree_util.tree_leaves(u2)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_the_iteration_drives_singular_values_towards_one():
    g = _matrices()["tall"]
    tx = gx.contrib.scale_by_muon(beta=0.0, nesterov=False)
    u, _ = tx.update(g, tx.init(g))
    s = np.linalg.svd(np.asarray(u), compute_uv=False)
    assert np.all((s > 0.6) & (s < 1.25)), s


def test_dion_preset_runs_its_five_iterations():
    state = gx.contrib.muon(0.1, ns_coeffs="dion", ns_steps=2).init({"w": jnp.zeros((2, 3))})
    inner = state.inner_states["muon"].inner_state[0]
    assert isinstance(inner, gx.contrib.MuonState) and inner.ns_coeffs.shape == (5, 3)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("build,arg", [
    (lambda: gx.contrib.scale_by_muon(beta=1.0), "beta"),
    (lambda: gx.contrib.scale_by_muon(eps=-1.0), "eps"),
    (lambda: gx.contrib.scale_by_muon(ns_steps=-1), "ns_steps"),
    (lambda: gx.contrib.scale_by_muon(preconditioning="polar"), "preconditioning"),
    (lambda: gx.contrib.scale_by_muon(ns_coeffs=(1.0, 2.0)), "ns_coeffs"),
    (lambda: gx.contrib.scale_by_muon(ns_coeffs="dion"), "ns_coeffs"),
    (lambda: gx.contrib.muon(0.1, ns_coeffs="polar"), "ns_coeffs"),
    (lambda: gx.contrib.muon(0.1, consistent_rms=-0.2), "consistent_rms"),
    (lambda: gx.contrib.muon(0.1, adam_b2=1.0), "adam_b2"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_impossible_values_raise_naming_the_argument(build, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        build()


def test_a_vector_without_dimension_numbers_is_refused_with_its_path():
    tx = gx.contrib.scale_by_muon()
    with pytest.raises(ValueError, match=r"\['b'\]"):
        tx.init({"w": jnp.zeros((2, 3)), "b": jnp.zeros(3)})


# =========================================================================== GaLore

GDN, OGDN = gx.contrib.GaLoreDimensionNumbers, optax.contrib.GaLoreDimensionNumbers


def _galore_params(seed=0):
    rng = np.random.default_rng(seed)
    return {
        "tall": jnp.asarray(rng.normal(size=(6, 4)), jnp.float32),
        "wide": jnp.asarray(rng.normal(size=(3, 7)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(4,)), jnp.float32),
        "heads": jnp.asarray(rng.normal(size=(4, 2, 3)), jnp.float32),
    }


def test_galore_matches_optax_over_25_steps_across_projection_windows():
    # Both libraries take the projector from jnp.linalg.svd, so the signs agree and the Adam
    # state carried across windows sees the same basis.
    _assert_parity(gx.contrib.galore(0.1, rank=2, update_proj_gap=4, weight_decay=0.1),
                   optax.contrib.galore(0.1, rank=2, update_proj_gap=4, weight_decay=0.1), _galore_params())


@_SLOW
def test_scale_by_galore_matches_optax_with_dimension_numbers():
    def spec(dn):
        return {"tall": None, "wide": dn(), "b": None, "heads": dn(0, (1, 2))}

    _assert_parity(gx.contrib.scale_by_galore(rank=2, update_proj_gap=5, scale=0.5, weight_dimension_numbers=spec(GDN)),
                   optax.contrib.scale_by_galore(rank=2, update_proj_gap=5, scale=0.5,
                                                 weight_dimension_numbers=spec(OGDN)), _galore_params())


def test_galore_matches_the_paper_reference_with_adam_in_one_window():
    check_against_reference(gx.contrib.galore(0.1, rank=2, scale=0.5, weight_decay=0.1),
                            reference.galore(0.1, rank=2, scale=0.5, weight_decay=0.1),
                            steps=6, params=_galore_params())


def test_scale_by_galore_matches_the_paper_reference_across_windows():
    # A stateless base rule: P P^T G does not depend on the singular vectors' signs.
    spec = {"tall": GDN(), "wide": GDN(), "b": None, "heads": GDN(0, (1, 2))}
    check_against_reference(
        gx.contrib.scale_by_galore(rank=2, update_proj_gap=2, base_optimizer=gx.identity(),
                                   weight_dimension_numbers=spec),
        reference.scale_by_galore(rank=2, update_proj_gap=2, base_optimizer=reference.identity(),
                                  weight_dimension_numbers=spec),
        steps=6, params=_galore_params())


def _galore_caught(tx, ref):
    with pytest.raises(AssertionError, match="differ from the reference"):
        check_against_reference(tx, ref, steps=6, params=_galore_params())


def test_reference_catches_a_projector_never_refreshed():
    _galore_caught(gx.contrib.scale_by_galore(rank=1, update_proj_gap=100, base_optimizer=gx.identity()),
                   reference.scale_by_galore(rank=1, update_proj_gap=2, base_optimizer=reference.identity()))


def test_reference_catches_the_scale_applied_to_unprojected_leaves():
    _galore_caught(gx.chain(gx.contrib.scale_by_galore(rank=2), gx.scale(0.5)), reference.scale_by_galore(rank=2, scale=0.5))


def test_reference_catches_a_rank_too_high():
    _galore_caught(gx.contrib.scale_by_galore(rank=2), reference.scale_by_galore(rank=1))


def test_galore_all_zero_gradients_give_zero_updates():
    params = _galore_params()
    tx = gx.contrib.galore(0.1, rank=2)
    u, _ = jax.jit(tx.update)(jax.tree_util.tree_map(jnp.zeros_like, params), tx.init(params), params)
    for x in jax.tree_util.tree_leaves(u):
        assert np.all(np.asarray(x) == 0)


def test_galore_bf16_params_keep_their_dtype():
    params = jax.tree_util.tree_map(lambda x: x.astype(jnp.bfloat16), _galore_params())
    tx = gx.contrib.galore(0.1, rank=2)
    state = tx.init(params)
    u, state2 = jax.jit(tx.update)(_grads(params, 1)[0], state, params)
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree_util.tree_leaves(u))
    assert [(x.shape, x.dtype) for x in jax.tree_util.tree_leaves(state)] == [
        (x.shape, x.dtype) for x in jax.tree_util.tree_leaves(state2)]


def test_galore_rank_is_capped_by_the_matrix():
    state = gx.contrib.scale_by_galore(rank=5).init({"w": jnp.zeros((6, 4)), "v": jnp.zeros((3, 8))})
    assert state.projector["w"].shape == (6, 4) and state.projector["v"].shape == (8, 3)


@pytest.mark.parametrize("build,arg", [
    (lambda: gx.contrib.scale_by_galore(rank=0), "rank"),
    (lambda: gx.contrib.scale_by_galore(update_proj_gap=0), "update_proj_gap"),
    (lambda: gx.contrib.galore(0.1, weight_decay=-1.0), "weight_decay"),
], ids=lambda x: x if isinstance(x, str) else None)
def test_galore_impossible_values_raise_naming_the_argument(build, arg):
    with pytest.raises(ValueError, match=f"`{arg}`"):
        build()


def test_galore_dimension_numbers_must_name_every_axis():
    tx = gx.contrib.scale_by_galore(weight_dimension_numbers=GDN(0, 1))
    with pytest.raises(ValueError, match=r"\['h'\]"):
        tx.init({"h": jnp.zeros((2, 3, 4))})
