"""A gallery of deliberately broken transformations, each caught by a law or by reference parity.

Every mutant below is a small, plausible-looking transformation with one bug. The
tests prove that the bug is caught: by a law of `check_transformation` (the
report names the law, which is the first one the mutant breaks), or by
`check_against_reference` against the NumPy textbook rule. Each mutant has an
un-mutated counterpart (the same code with the bug switched off) that passes the
same check, so no law here fails trivially.

=======================  ================================================  ==========================
mutation                 what is wrong                                     caught by
=======================  ================================================  ==========================
eps_inside_sqrt          Adam divides by sqrt(v_hat + eps), not by          check_against_reference
                         sqrt(v_hat) + eps                                 (reference.adam)
no_bias_correction       Adam uses m and v, not m_hat and v_hat            check_against_reference
                                                                           (reference.adam)
wrong_momentum_sign      momentum trace g - b * trace, not g + b * trace   check_against_reference
                                                                           (reference.sgd)
dtype_promotion          float32 updates for bfloat16 gradients            law 'updates_dtype'
renamed_leaf             the update of 'b' comes back under another key    law 'updates_structure'
nan_on_zero_grad         Adam without eps: m_hat / sqrt(v_hat) is 0 / 0     law 'finite'
                         where the gradient has always been 0
growing_state            appends to a tuple in the state every step        law 'state_structure'
state_dtype_drift        stores the float32 moments of bf16 params          law 'state_dtype'
                         without casting them back
numpy_random_init        init draws the momentum from NumPy's generator    law 'init_pure'
init_reads_params        init starts the momentum at the params' values    law 'init_value_independent'
global_counter           Adam's step count is a Python global              law 'deterministic' (and
                                                                           'jit_consistent')
weak_type_count          init's count is jnp.asarray(0) (weak typed),      law 'no_retrace'
                         update's is a strong int32: jit traces again
python_branch_on_values  a Python `if` on float(a gradient value): fine    law 'no_retrace' (and
                         eagerly, an error under jit                       'jit_consistent',
                                                                           'lax_cond', 'lax_scan')
shared_zeros             Adam's init puts one zeros tree in both mu and    law 'donation'
                         nu: a donating jitted step gives it twice
float32_scalars          Adam forms 1 - b2 and 1 - b**t in float32 from     check_accuracy (the
                         the rounded b2 (the code before issue 11)         float32 error budget)
=======================  ================================================  ==========================

The parity-caught mutants pass every law (`test_laws_are_blind_to_numerics`): the
laws check the contract, not the formula, which is why both checks exist.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gradxform as gx
from gradxform.testing import LawViolation, check_against_reference, check_transformation, reference

F32 = jnp.float32

# One small example with both dtypes (a bf16 leaf for the dtype mutants) and a key 'b'.
PARAMS = {"b": jnp.linspace(-1.0, 1.0, 3, dtype=F32), "w": jnp.ones((2, 3), jnp.bfloat16)}

LR, B1, B2, EPS = 1e-2, 0.9, 0.999, 1e-8
MOMENTUM = 0.9


# --------------------------------------------------------------------------- mutants: Adam


class AdamState(NamedTuple):
    count: jax.Array  # int32 scalar
    mu: Any
    nu: Any


_CALLS = 0  # the step count of the 'global_counter' mutant


def adam(mutation=None) -> gx.GradientTransformation:
    """Adam written by hand; `mutation` switches one bug on."""

    def init(params):
        count = jnp.asarray(0) if mutation == "weak_type_count" else jnp.zeros([], jnp.int32)
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        nu = zeros if mutation == "shared_zeros" else jax.tree_util.tree_map(jnp.zeros_like, params)
        return AdamState(count, zeros, nu)

    def update(updates, state, params=None, **extra_args):
        global _CALLS
        count = state.count + jnp.ones([], jnp.int32)  # strong int32
        if mutation == "global_counter":
            _CALLS += 1
            t = float(_CALLS)
        else:
            t = count.astype(F32)

        def leaf(g, m, v):
            g32 = g.astype(F32)
            m32 = B1 * m.astype(F32) + (1 - B1) * g32
            v32 = B2 * v.astype(F32) + (1 - B2) * g32 * g32
            if mutation == "python_branch_on_values" and float(jnp.max(jnp.abs(g32), initial=0.0)) > 1e6:
                g32 = g32 / 1e6
            if mutation == "no_bias_correction":
                m_hat, v_hat = m32, v32
            else:
                m_hat, v_hat = m32 / (1 - B1**t), v32 / (1 - B2**t)
            if mutation == "eps_inside_sqrt":
                u = m_hat / jnp.sqrt(v_hat + EPS)
            elif mutation == "nan_on_zero_grad":
                u = m_hat / jnp.sqrt(v_hat)
            else:
                u = m_hat / (jnp.sqrt(v_hat) + EPS)
            u = -LR * u
            out = u if mutation == "dtype_promotion" else u.astype(g.dtype)
            if mutation == "state_dtype_drift":
                return out, m32, v32
            return out, m32.astype(m.dtype), v32.astype(v.dtype)

        triples = jax.tree_util.tree_map(leaf, updates, state.mu, state.nu)
        treedef = jax.tree_util.tree_structure(updates)
        u, m, v = jax.tree_util.tree_transpose(treedef, jax.tree_util.tree_structure((0, 0, 0)), triples)
        return u, AdamState(count, m, v)

    return gx.GradientTransformation(init, update)


# --------------------------------------------------------------------------- mutants: momentum SGD


class TraceState(NamedTuple):
    trace: Any
    history: tuple = ()


def momentum_sgd(mutation=None) -> gx.GradientTransformation:
    """SGD with heavy-ball momentum (optax's form); `mutation` switches one bug on."""

    def init(params):
        if mutation == "init_reads_params":
            trace = jax.tree_util.tree_map(jnp.array, params)
        elif mutation == "numpy_random_init":
            trace = jax.tree_util.tree_map(
                lambda p: jnp.asarray(1e-3 * np.random.standard_normal(p.shape), p.dtype), params
            )
        else:
            trace = jax.tree_util.tree_map(jnp.zeros_like, params)
        return TraceState(trace)

    def update(updates, state, params=None, **extra_args):
        sign = -1.0 if mutation == "wrong_momentum_sign" else 1.0
        def step(g, t):
            return (g.astype(F32) + sign * MOMENTUM * t.astype(F32)).astype(t.dtype)

        trace = jax.tree_util.tree_map(step, updates, state.trace)
        new = jax.tree_util.tree_map(lambda t, g: (-LR * t.astype(F32)).astype(g.dtype), trace, updates)
        if mutation == "renamed_leaf":
            new = dict(new)
            new["bias"] = new.pop("b")
        history = state.history + (jnp.zeros([], jnp.int32),) if mutation == "growing_state" else ()
        return new, TraceState(trace, history)

    return gx.GradientTransformation(init, update)


# --------------------------------------------------------------------------- the gallery

# mutation -> (factory, the law that catches it)
CAUGHT_BY_LAWS = {
    "dtype_promotion": (adam, "updates_dtype"),
    "renamed_leaf": (momentum_sgd, "updates_structure"),
    "nan_on_zero_grad": (adam, "finite"),
    "growing_state": (momentum_sgd, "state_structure"),
    "state_dtype_drift": (adam, "state_dtype"),
    "numpy_random_init": (momentum_sgd, "init_pure"),
    "init_reads_params": (momentum_sgd, "init_value_independent"),
    "global_counter": (adam, "deterministic"),
    "weak_type_count": (adam, "no_retrace"),
    "python_branch_on_values": (adam, "no_retrace"),
    "shared_zeros": (adam, "donation"),
}


def small_grads(step, params):
    """Gradients of a late stage of training (1e-5), where eps is not negligible next to sqrt(v)."""
    rng = np.random.default_rng(step)
    return jax.tree_util.tree_map(lambda p: 1e-5 * rng.standard_normal(np.shape(p)), params)


# mutation -> (factory, the NumPy reference, check_against_reference keyword arguments)
CAUGHT_BY_PARITY = {
    "eps_inside_sqrt": (adam, lambda: reference.adam(LR, B1, B2, EPS), {"grads": small_grads}),
    "no_bias_correction": (adam, lambda: reference.adam(LR, B1, B2, EPS), {}),
    "wrong_momentum_sign": (momentum_sgd, lambda: reference.sgd(LR, momentum=MOMENTUM), {}),
}


@pytest.mark.parametrize("mutation", sorted(CAUGHT_BY_LAWS))
def test_mutation_is_caught_by_a_law(mutation):
    factory, law = CAUGHT_BY_LAWS[mutation]
    with pytest.raises(AssertionError, match=f"law '{law}'") as info:
        check_transformation(factory(mutation), PARAMS, fail_fast=True)
    assert isinstance(info.value, LawViolation)
    assert info.value.laws[0] == law, f"{mutation} was first caught by {info.value.laws[0]}, not {law}"


def test_python_branch_is_also_caught_by_the_jit_laws():
    with pytest.raises(AssertionError, match="law 'jit_consistent'") as info:
        check_transformation(adam("python_branch_on_values"), PARAMS)
    assert {"no_retrace", "jit_consistent", "lax_cond", "lax_scan"} <= set(info.value.laws)
    assert "ConcretizationTypeError" in str(info.value)


def test_global_counter_is_also_caught_by_jit_consistent():
    with pytest.raises(AssertionError, match="law 'jit_consistent'"):
        check_transformation(adam("global_counter"), PARAMS, laws=["jit_consistent"])


@pytest.mark.parametrize("factory", [adam, momentum_sgd], ids=["adam", "momentum_sgd"])
def test_unmutated_counterpart_passes_every_law(factory):
    check_transformation(factory(None), PARAMS, include=["ignores_extra_args"])


@pytest.mark.parametrize("mutation", sorted(CAUGHT_BY_PARITY))
def test_mutation_is_caught_by_reference_parity(mutation):
    factory, ref, kwargs = CAUGHT_BY_PARITY[mutation]
    with pytest.raises(AssertionError, match="check_against_reference: step"):
        check_against_reference(factory(mutation), ref(), steps=3, **kwargs)


@pytest.mark.parametrize("mutation", sorted(CAUGHT_BY_PARITY))
def test_unmutated_counterpart_matches_the_reference(mutation):
    factory, ref, kwargs = CAUGHT_BY_PARITY[mutation]
    check_against_reference(factory(None), ref(), steps=3, **kwargs)


@pytest.mark.parametrize("mutation", sorted(CAUGHT_BY_PARITY))
def test_laws_are_blind_to_numerics(mutation):
    factory, _, _ = CAUGHT_BY_PARITY[mutation]
    check_transformation(factory(mutation), PARAMS)


def test_gallery_is_complete():
    assert len(CAUGHT_BY_LAWS) + len(CAUGHT_BY_PARITY) >= 9
    for mutation in list(CAUGHT_BY_LAWS) + list(CAUGHT_BY_PARITY):
        assert mutation in __doc__


# --------------------------------------------------------------------------- accuracy


def test_float32_scalars_of_adam_are_caught_by_check_accuracy(monkeypatch):
    """Adam with ``1 - b2`` formed in float32 from the rounded ``b2`` and ``1 - f32(b)**t``.

    The code before the accurate-scalars change: in float32, ``1 - f32(0.999)`` is 1.3e-5
    relatively off and ``f32(b)**t`` carries the power's rounding into ``1 - b**t``. Caught by
    tests/test_accuracy.py's law with the budget Adam gets there; the real Adam passes it.
    """
    from test_accuracy import DEFAULT_BUDGET, PARAMS, STEPS  # noqa: PLC0415 - the law's one setting

    from gradxform import _tree  # noqa: PLC0415
    from gradxform.testing import check_accuracy  # noqa: PLC0415
    from gradxform.testing.registry import ENTRIES_BY_NAME  # noqa: PLC0415

    entry = ENTRIES_BY_NAME["adam"]
    budget = entry.accuracy_budget or DEFAULT_BUDGET
    check_accuracy(entry.build(b2=0.999), PARAMS, steps=STEPS, seeds=(0,), budget=budget)

    def float32_decay(beta, dtype):
        rate = _tree.hp(beta, dtype)
        return _tree.Decay(rate, 1 - rate)

    def float32_bias_correction(beta, count, dtype=np.float32):
        return 1 - _tree.hp(beta, dtype) ** count.astype(dtype)

    monkeypatch.setattr(_tree, "decay", float32_decay)
    monkeypatch.setattr(_tree, "bias_correction", float32_bias_correction)
    with pytest.raises(AssertionError, match="exceeds the budget") as info:
        check_accuracy(entry.build(b2=0.999), PARAMS, steps=STEPS, seeds=(0,), budget=budget)
    assert "step" in str(info.value) and "['w']" in str(info.value)
