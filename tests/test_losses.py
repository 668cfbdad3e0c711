"""Tests for `gradxform.losses`: float64 NumPy references, optax 0.2.8 parity (values and
gradients), large logits, bfloat16, the integer-label check, optax's bugs and mutants."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any

import _loss_reference as ref  # tests/ is on sys.path (rootdir conftest)
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp

import gradxform as gx

RTOL, ATOL = 1e-5, 1e-6

pytestmark = pytest.mark.filterwarnings(
    "ignore:The function convex_kl_divergence is deprecated:DeprecationWarning"
)


def _np_lse(v):
    m = np.max(v)
    return m + np.log(np.sum(np.exp(v - m)))


@dataclasses.dataclass(frozen=True)
class Case:
    name: str  # the loss's name in gx.losses / optax.losses / the reference module
    make: Callable[[np.random.RandomState], tuple]  # rng -> (args, kwargs)
    argnums: tuple = (0,)  # differentiated arguments
    optax: bool = True  # compare with optax (False where optax is buggy)
    large: bool = False  # first argument is a logit/residual: try 1e4
    call: Callable[..., Any] | None = (
        None  # call(module, *args, **kwargs) when not module.name
    )
    optax_jit: bool = True  # False where optax's loss cannot be traced

    @property
    def id(self):
        return self.name

    def run(self, module, *args, **kwargs):
        if self.call is not None:
            return self.call(module, *args, **kwargs)
        return getattr(module, self.name)(*args, **kwargs)


def f32(rng, *shape, scale=1.0):
    return (rng.randn(*shape) * scale).astype(np.float32)


def softmax_np(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return (e / e.sum(axis=axis, keepdims=True)).astype(np.float32)


def one_hot(rng, shape, k):
    return np.eye(k, dtype=np.float32)[rng.randint(0, k, shape)]


def mask(rng, shape):
    m = rng.rand(*shape) > 0.3
    m[..., 0] = True  # at least one valid entry per row
    return m


def _fy_call(module, *args, **kwargs):
    lse = _np_lse if module is ref else logsumexp
    return module.make_fenchel_young_loss(lse)(*args, **kwargs)


def _ctc_inputs(rng):
    logits = f32(rng, 2, 4, 3, scale=2.0)
    logit_pad = np.array([[0, 0, 0, 0], [0, 0, 0, 1]], np.float32)
    labels = np.array([[1, 1], [2, 0]], np.int32)  # a repeat, and a padded label
    label_pad = np.array([[0, 0], [0, 1]], np.float32)
    return (logits, logit_pad, labels, label_pad), {}


CASES = [
    Case(
        "softmax_cross_entropy",
        lambda r: ((f32(r, 4, 5, scale=2), softmax_np(f32(r, 4, 5))), {}),
        (0, 1),
        large=True,
    ),
    # (optax's gradient in the labels is NaN at masked entries; gradxform's is 0.)
    Case(
        "softmax_cross_entropy",
        lambda r: (
            (f32(r, 4, 5), softmax_np(f32(r, 4, 5))),
            {"where": mask(r, (4, 5))},
        ),
    ),
    Case(
        "softmax_cross_entropy",
        lambda r: (
            (f32(r, 4, 5), softmax_np(f32(r, 4, 5))),
            {"where": np.array([True, False, True, True])},
        ),
    ),
    Case(
        "softmax_cross_entropy",
        lambda r: ((f32(r, 4, 5), softmax_np(f32(r, 4, 5), 0)), {"axis": 0}),
    ),
    Case(
        "safe_softmax_cross_entropy",
        lambda r: ((f32(r, 4, 5, scale=2), softmax_np(f32(r, 4, 5))), {}),
        large=True,
    ),
    Case(
        "softmax_cross_entropy_with_integer_labels",
        lambda r: ((f32(r, 4, 5, scale=2), r.randint(0, 5, 4)), {}),
        large=True,
    ),
    Case(
        "softmax_cross_entropy_with_integer_labels",
        lambda r: ((f32(r, 4, 5), r.randint(0, 5, 4)), {"where": mask(r, (4, 5))}),
    ),
    Case(
        "softmax_cross_entropy_with_integer_labels",
        lambda r: (
            (f32(r, 4, 5), r.randint(0, 5, 4)),
            {"where": np.array([True, True, False, True])},
        ),
    ),
    Case(
        "softmax_cross_entropy_with_integer_labels",
        lambda r: ((f32(r, 2, 3, 4), r.randint(0, 12, 2)), {"axis": (1, 2)}),
    ),
    Case(
        "sigmoid_binary_cross_entropy",
        lambda r: ((f32(r, 4, 5, scale=3), r.rand(4, 5).astype(np.float32)), {}),
        (0, 1),
        large=True,
    ),
    Case(
        "sigmoid_focal_loss",
        lambda r: (
            (f32(r, 4, 5, scale=3), (r.rand(4, 5) > 0.5).astype(np.float32)),
            {"alpha": 0.25},
        ),
        large=True,
    ),
    Case(
        "sigmoid_focal_loss",
        lambda r: (
            (f32(r, 4, 5, scale=3), r.rand(4, 5).astype(np.float32)),
            {"gamma": 1.5},
        ),
        large=True,
    ),
    Case(
        "sigmoid_focal_loss",
        lambda r: (
            (f32(r, 4, 5, scale=3), (r.rand(4, 5) > 0.5).astype(np.float32)),
            {"gamma": 0.5},
        ),
        large=True,
    ),
    Case(
        "poly_loss_cross_entropy",
        lambda r: ((f32(r, 4, 5, scale=2), softmax_np(f32(r, 4, 5))), {}),
        (0, 1),
        large=True,
    ),
    Case(
        "poly_loss_cross_entropy",
        lambda r: (
            (f32(r, 4, 5), one_hot(r, 4, 5)),
            {"epsilon": -1.0, "where": mask(r, (4, 5))},
        ),
    ),
    Case(
        "hinge_loss",
        lambda r: ((f32(r, 8), np.sign(r.randn(8)).astype(np.float32)), {}),
    ),
    Case(
        "perceptron_loss",
        lambda r: ((f32(r, 8), np.sign(r.randn(8)).astype(np.float32)), {}),
    ),
    Case(
        "multiclass_hinge_loss",
        lambda r: ((f32(r, 4, 5), r.randint(0, 5, 4)), {}),
        large=True,
    ),
    Case(
        "multiclass_perceptron_loss",
        lambda r: ((f32(r, 4, 5), r.randint(0, 5, 4)), {}),
        large=True,
    ),
    Case(
        "multiclass_sparsemax_loss",
        lambda r: ((f32(r, 4, 5), r.randint(0, 5, 4)), {}),
        large=True,
    ),
    Case(
        "sparsemax_loss",
        lambda r: ((f32(r, 8, scale=1.5), r.randint(0, 2, 8)), {}),
        large=True,
    ),
    Case("smooth_labels", lambda r: ((one_hot(r, 4, 5), 0.1), {})),
    Case(
        "smooth_labels", lambda r: ((one_hot(r, 4, 5), 0.2), {"where": mask(r, (4, 5))})
    ),
    Case(
        "kl_divergence",
        lambda r: ((np.log(softmax_np(f32(r, 4, 5))), softmax_np(f32(r, 4, 5))), {}),
        (0, 1),
    ),
    Case(
        "kl_divergence",
        lambda r: (
            (np.log(softmax_np(f32(r, 4, 5))), one_hot(r, 4, 5)),
            {"where": mask(r, (4, 5))},
        ),
    ),
    Case(
        "kl_divergence_with_log_targets",
        lambda r: (
            (np.log(softmax_np(f32(r, 4, 5))), np.log(softmax_np(f32(r, 4, 5)))),
            {},
        ),
        (0, 1),
    ),
    Case(
        "generalized_kl_divergence",
        lambda r: ((f32(r, 4, 5), np.exp(f32(r, 4, 5))), {}),
        (0, 1),
    ),
    Case(
        "convex_kl_divergence",
        lambda r: ((f32(r, 4, 5), np.exp(f32(r, 4, 5))), {"where": mask(r, (4, 5))}),
        (0, 1),
    ),
    Case("squared_error", lambda r: ((f32(r, 4, 5), f32(r, 4, 5)), {}), (0, 1)),
    Case("squared_error", lambda r: ((f32(r, 4, 5),), {})),
    Case("l2_loss", lambda r: ((f32(r, 4, 5), f32(r, 4, 5)), {}), (0, 1)),
    Case(
        "huber_loss",
        lambda r: ((f32(r, 4, 5, scale=2), f32(r, 4, 5)), {"delta": 0.7}),
        (0, 1),
        large=True,
    ),
    Case(
        "log_cosh",
        lambda r: ((f32(r, 4, 5, scale=2), f32(r, 4, 5)), {}),
        (0, 1),
        large=True,
    ),
    Case("log_cosh", lambda r: ((f32(r, 4, 5, scale=2),), {}), large=True),
    Case("cosine_similarity", lambda r: ((f32(r, 4, 5), f32(r, 4, 5)), {}), (0, 1)),
    Case(
        "cosine_similarity",
        lambda r: (
            (f32(r, 4, 5), f32(r, 4, 5, scale=0.1)),
            {"epsilon": 0.5, "where": mask(r, (4, 5))},
        ),
        (0, 1),
    ),
    Case(
        "cosine_distance", lambda r: ((f32(r, 4, 5), f32(r, 4, 5)), {"axis": 0}), (0, 1)
    ),
    Case(
        "ranking_softmax_loss",
        lambda r: (
            (f32(r, 3, 5, scale=2), r.randint(0, 3, (3, 5)).astype(np.float32)),
            {},
        ),
        large=True,
    ),
    Case(
        "ranking_softmax_loss",
        lambda r: (
            (f32(r, 3, 5), r.randint(0, 3, (3, 5)).astype(np.float32)),
            {
                "where": mask(r, (3, 5)),
                "weights": r.rand(3, 5).astype(np.float32),
                "reduce_fn": jnp.sum,
            },
        ),
    ),
    Case(
        "ranking_softmax_loss",
        lambda r: (
            (f32(r, 3, 5), r.randint(0, 3, (3, 5)).astype(np.float32)),
            {"reduce_fn": None},
        ),
    ),
    Case("ntxent", lambda r: ((f32(r, 6, 3), np.array([0, 0, 1, 1, 2, 2])), {})),
    Case(
        "ntxent",
        lambda r: ((f32(r, 6, 3), np.array([0, 1, 0, 0, 1, 2])), {"temperature": 0.5}),
    ),
    Case(
        "triplet_margin_loss",
        lambda r: ((f32(r, 4, 3), f32(r, 4, 3), f32(r, 4, 3)), {}),
        (0, 1, 2),
    ),
    Case(
        "triplet_margin_loss",
        lambda r: (
            (f32(r, 4, 3), f32(r, 4, 3), f32(r, 4, 3)),
            {"norm_degree": 4, "margin": 3.0},
        ),
        (0, 1, 2),
    ),
    Case(
        "triplet_margin_loss",
        lambda r: (
            (f32(r, 4, 3), f32(r, 4, 3), f32(r, 4, 3)),
            {"norm_degree": 1, "margin": 3.0},
        ),
        optax=False,
    ),
    Case(
        "make_fenchel_young_loss",
        lambda r: ((f32(r, 4, 5, scale=2), softmax_np(f32(r, 4, 5))), {}),
        (0, 1),
        large=True,
        call=_fy_call,
    ),
    Case(
        "dice_loss",
        lambda r: ((f32(r, 2, 3, 4, 3), one_hot(r, (2, 3, 4), 3)), {}),
        large=True,
    ),
    Case(
        "dice_loss",
        lambda r: (
            (f32(r, 2, 3, 4, 3), one_hot(r, (2, 3, 4), 3)),
            {
                "class_weights": np.array([1.0, 2.0, 0.5], np.float32),
                "reduction": "sum",
                "ignore_background": True,
            },
        ),
    ),
    Case(
        "dice_loss",
        lambda r: (
            (f32(r, 2, 6, 3), one_hot(r, (2, 6), 3)),
            {"alpha": 0.3, "beta": 0.7, "smooth": 0.1, "reduction": "none"},
        ),
    ),
    Case(
        "dice_loss",
        lambda r: ((f32(r, 2, 6, 1), (r.rand(2, 6, 1) > 0.5).astype(np.float32)), {}),
    ),
    # optax's check that probabilities sum to one fails under jit (TracerBoolConversionError).
    Case(
        "dice_loss",
        lambda r: (
            (softmax_np(f32(r, 2, 6, 3)), one_hot(r, (2, 6), 3)),
            {"apply_softmax": False, "axis": (1,)},
        ),
        optax_jit=False,
    ),
    Case(
        "multiclass_generalized_dice_loss",
        lambda r: ((f32(r, 2, 3, 4, 3), one_hot(r, (2, 3, 4), 3)), {}),
    ),
    Case(
        "multiclass_generalized_dice_loss",
        lambda r: (
            (f32(r, 2, 3, 4, 3), one_hot(r, (2, 3, 4), 3)),
            {"smooth": 0.01, "ignore_background": True},
        ),
    ),
    Case(
        "binary_dice_loss",
        lambda r: ((f32(r, 2, 6), (r.rand(2, 6) > 0.5).astype(np.float32)), {}),
        large=True,
    ),
    Case("ctc_loss", _ctc_inputs, large=True),
    Case(
        "ctc_loss",
        optax=False,
        make=lambda r: (
            (
                _ctc_inputs(r)[0][:2]
                + (np.array([[1, 1], [0, 1]], np.int32), np.zeros((2, 2), np.float32))
            ),
            {"blank_id": 2},
        ),
    ),
]


def _case(name, i=0):
    return [c for c in CASES if c.name == name][i]


def _case_id(case):
    return case.name


def _inputs(case, seed=0):
    args, kwargs = case.make(np.random.RandomState(seed))
    return args, kwargs


def _ref_kwargs(kwargs):
    swap = {id(jnp.mean): np.mean, id(jnp.sum): np.sum}
    return {k: swap.get(id(v), v) for k, v in kwargs.items()}


def _to_jax(args):
    return tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)


def _close(actual, expected, rtol=RTOL, atol=ATOL):
    return np.allclose(
        np.asarray(actual, np.float64),
        np.asarray(expected, np.float64),
        rtol=rtol,
        atol=atol,
    )


def _split(kwargs):
    """Array-valued keyword arguments (traced) and the rest (static, closed over)."""
    arrays = {k: v for k, v in kwargs.items() if isinstance(v, (np.ndarray, jax.Array))}
    return arrays, {k: v for k, v in kwargs.items() if k not in arrays}


_COMPILED: dict = {}


def _value_and_grads(case, module, args, kwargs, jit=True, grads=True):
    """The loss and its gradients in `case.argnums`, jitted once per (case, module): the
    reference, optax, large-logit and bfloat16 tests reuse the compilation where shapes match."""
    arrays, static = _split(kwargs)

    def fn(a, arr):
        def total(*x):
            return jnp.sum(
                jnp.asarray(case.run(module, *x, **arr, **static), jnp.float32)
            )

        value = case.run(module, *a, **arr, **static)
        return value, (jax.grad(total, argnums=case.argnums)(*a) if grads else None)

    if not jit:
        return fn(args, arrays)
    key = (id(case), module.__name__, grads)
    if key not in _COMPILED:
        _COMPILED[key] = jax.jit(fn)
    return _COMPILED[key](args, arrays)


def _run(case, module, args, kwargs, grads=True):
    return _value_and_grads(case, module, args, kwargs, grads=grads)[0]


# --------------------------------------------------------------------------- surface


def test_surface_matches_optax_losses():
    expected = sorted(n for n in dir(optax.losses) if not n.startswith("_"))
    assert gx.losses.__all__ == expected
    for name in expected:
        ours, theirs = (
            inspect.signature(getattr(gx.losses, name)),
            inspect.signature(getattr(optax.losses, name)),
        )
        describe = lambda s: [
            (p.name, p.kind, p.default) for p in s.parameters.values()
        ]
        assert describe(ours) == describe(theirs), name
        if hasattr(optax, name):  # re-exported at the top level where optax does
            assert getattr(gx, name) is getattr(gx.losses, name), name
        else:
            assert not hasattr(gx, name), name


def test_every_loss_has_a_reference_and_a_case():
    covered = {c.name for c in CASES} | {"ctc_loss_with_forward_probs"}
    assert covered == set(gx.losses.__all__)
    for name in gx.losses.__all__:
        assert hasattr(ref, name) or name == "ctc_loss_with_forward_probs", name


# --------------------------------------------------------------------------- parity


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_reference_parity(case):
    args, kwargs = _inputs(case)
    actual = _run(
        case, gx.losses, _to_jax(args), kwargs, grads=case.optax or case.large
    )
    expected = case.run(ref, *args, **_ref_kwargs(kwargs))
    assert actual.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=RTOL, atol=1e-5)


@pytest.mark.parametrize("case", [c for c in CASES if c.optax], ids=_case_id)
def test_optax_parity_values_and_grads(case):
    args, kwargs = _inputs(case, seed=1)
    jargs = _to_jax(args)
    ours, ours_grad = _value_and_grads(case, gx.losses, jargs, kwargs)
    with jax.numpy_dtype_promotion("standard"):
        theirs, theirs_grad = _value_and_grads(
            case, optax.losses, jargs, kwargs, case.optax_jit
        )
    np.testing.assert_allclose(
        np.asarray(ours), np.asarray(theirs), rtol=RTOL, atol=ATOL
    )
    for g_ours, g_theirs in zip(ours_grad, theirs_grad):
        np.testing.assert_allclose(
            np.asarray(g_ours), np.asarray(g_theirs), rtol=RTOL, atol=1e-6
        )


@pytest.mark.parametrize("case", [c for c in CASES if c.large], ids=_case_id)
def test_large_logits_finite_and_exact(case):
    args, kwargs = _inputs(case, seed=2)
    big = (args[0] * np.float32(1e4)).astype(np.float32)
    args = (big,) + tuple(args[1:])
    jargs = _to_jax(args)
    value, grads = _value_and_grads(case, gx.losses, jargs, kwargs)
    assert np.all(np.isfinite(np.asarray(value))), value
    assert all(np.all(np.isfinite(np.asarray(g))) for g in grads)
    expected = case.run(ref, *args, **_ref_kwargs(kwargs))
    np.testing.assert_allclose(np.asarray(value), expected, rtol=RTOL, atol=1e-4)


def _is_float(a):
    return isinstance(a, np.ndarray) and a.dtype == np.float32


def _first_per_name(cases):
    seen, out = set(), []
    for c in cases:
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    return out


@pytest.mark.parametrize("case", _first_per_name(CASES), ids=_case_id)
def test_bfloat16_inputs_computed_in_float32(case):
    args, kwargs = _inputs(case, seed=3)
    if not _is_float(args[0]):
        pytest.skip("no float input")
    bf = tuple(jnp.asarray(a, jnp.bfloat16) if _is_float(a) else a for a in args)
    bf_kwargs = {
        k: (jnp.asarray(v, jnp.bfloat16) if _is_float(v) else v)
        for k, v in kwargs.items()
    }
    out = _run(case, gx.losses, bf, bf_kwargs, grads=False)
    assert out.dtype == jnp.bfloat16
    # The same bf16-rounded inputs, computed in float64 and rounded once, agree to bf16 precision.
    up = tuple(
        np.asarray(a, np.float64)
        if isinstance(a, jax.Array) and a.dtype == jnp.bfloat16
        else a
        for a in bf
    )
    up_kwargs = {
        k: (np.asarray(v, np.float64) if isinstance(v, jax.Array) else v)
        for k, v in _ref_kwargs(kwargs).items()
    }
    expected = np.asarray(
        jnp.asarray(case.run(ref, *up, **up_kwargs), jnp.bfloat16), np.float64
    )
    np.testing.assert_allclose(
        np.asarray(out, np.float64), expected, rtol=1e-2, atol=1e-2
    )


@pytest.mark.parametrize(
    "case",
    [CASES[0], _case("softmax_cross_entropy_with_integer_labels", 2)],
    ids=_case_id,
)
def test_jit_matches_eager(case):
    args, kwargs = _inputs(case, seed=4)
    jargs = _to_jax(args)
    eager = case.run(gx.losses, *jargs, **kwargs)
    jitted = jax.jit(lambda *a: case.run(gx.losses, *a, **kwargs))(*jargs)
    np.testing.assert_allclose(
        np.asarray(jitted), np.asarray(eager), rtol=1e-6, atol=1e-6
    )


def test_ctc_forward_probs_match_optax_on_reachable_states():
    rng = np.random.RandomState(5)
    logits = jnp.asarray(f32(rng, 3, 7, 5, scale=2))
    labels = jnp.array([[1, 2, 2, 3], [4, 1, 0, 0], [3, 3, 3, 0]])
    label_pad = jnp.array([[0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 1]], jnp.float32)
    logit_pad = jnp.array([[0] * 7, [0] * 5 + [1] * 2, [0] * 7], jnp.float32)
    ours = jax.jit(gx.losses.ctc_loss_with_forward_probs)(
        logits, logit_pad, labels, label_pad
    )
    with jax.numpy_dtype_promotion("standard"):
        theirs = jax.jit(optax.losses.ctc_loss_with_forward_probs)(
            logits, logit_pad, labels, label_pad
        )
    np.testing.assert_allclose(ours[0], theirs[0], rtol=RTOL)
    for a, b in zip(ours[1:], theirs[1:]):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape
        reachable = b > -1e4
        np.testing.assert_array_equal(a > -1e4, reachable)
        np.testing.assert_allclose(a[reachable], b[reachable], rtol=RTOL, atol=1e-5)
    # The last frame's blank row holds the total: loss = -alpha_blank[-1, b, N_b].
    lengths = np.array([4, 2, 3])
    np.testing.assert_allclose(
        -np.asarray(ours[1])[-1, np.arange(3), lengths], ours[0], rtol=1e-6
    )


# --------------------------------------------------------------------------- integer labels


def test_integer_labels_out_of_range_raise_with_value_and_position():
    logits = jnp.zeros((2, 3, 4))
    labels = jnp.array([[0, 1, 2], [3, 4, 0]])
    with pytest.raises(ValueError, match=r"label 4 at position \(1, 1\).*4 classes"):
        gx.losses.softmax_cross_entropy_with_integer_labels(logits, labels)
    with pytest.raises(ValueError, match=r"label -1 at position \(0,\)"):
        gx.losses.softmax_cross_entropy_with_integer_labels(
            jnp.zeros((2, 4)), np.array([-1, 0])
        )


def test_integer_labels_masked_rows_are_not_checked():
    loss = gx.losses.softmax_cross_entropy_with_integer_labels(
        jnp.zeros((2, 4)), jnp.array([1, -100]), where=jnp.array([True, False])
    )
    np.testing.assert_allclose(loss, [np.log(4.0), 0.0], rtol=1e-6)


def test_integer_labels_under_jit_are_not_checked_and_give_nan():
    f = jax.jit(gx.losses.softmax_cross_entropy_with_integer_labels)
    loss = f(jnp.zeros((3, 4)), jnp.array([1, 7, -1]))
    assert np.isfinite(loss[0]) and np.isnan(loss[1]) and np.isnan(loss[2])


def test_integer_labels_reject_float_labels():
    with pytest.raises(TypeError, match="integers"):
        gx.losses.softmax_cross_entropy_with_integer_labels(
            jnp.zeros((2, 4)), jnp.array([1.0, 2.0])
        )


# --------------------------------------------------------------------------- behaviour


def test_where_per_row_equals_where_broadcast_over_classes():
    rng = np.random.RandomState(6)
    x, y = jnp.asarray(f32(rng, 4, 5)), jnp.asarray(softmax_np(f32(rng, 4, 5)))
    rows = jnp.array([True, False, True, False])
    a = gx.losses.softmax_cross_entropy(x, y, where=rows)
    b = gx.losses.softmax_cross_entropy(
        x, y, where=jnp.broadcast_to(rows[:, None], (4, 5))
    )
    np.testing.assert_allclose(a, b)
    assert a[1] == 0 and a[3] == 0


def test_masked_rows_have_zero_finite_gradients():
    x = jnp.asarray(f32(np.random.RandomState(7), 2, 3))
    where = jnp.array([[True, True, True], [False, False, False]])
    for fn in (gx.losses.softmax_cross_entropy, gx.losses.poly_loss_cross_entropy):
        g = jax.jit(
            jax.grad(
                lambda v, fn=fn: jnp.sum(fn(v, jnp.full((2, 3), 1 / 3), where=where))
            )
        )(x)
        assert np.all(np.isfinite(g)) and np.all(np.asarray(g)[1] == 0)


def test_smooth_labels_two_forms_documented_and_related():
    y = jnp.array([0.0, 1.0, 0.0, 0.0, 0.0])
    k, eps = 5, 0.2
    nn_form = gx.nn.smooth_labels(y, eps)  # true class gets exactly 1 - eps
    optax_form = gx.losses.smooth_labels(
        y, eps * k / (k - 1)
    )  # alpha = eps k / (k - 1)
    np.testing.assert_allclose(nn_form, optax_form, rtol=1e-6)
    assert float(gx.losses.smooth_labels(y, eps)[1]) == pytest.approx(1 - eps + eps / k)
    assert "gradxform.nn.smooth_labels" in gx.losses.smooth_labels.__doc__
    assert "gradxform.losses.smooth_labels" in gx.nn.smooth_labels.__doc__


def test_safe_softmax_cross_entropy_treats_0_log_0_as_0():
    x, y = jnp.array([0.0, -jnp.inf]), jnp.array([1.0, 0.0])
    assert float(gx.losses.safe_softmax_cross_entropy(x, y)) == 0.0
    assert np.isnan(float(gx.losses.softmax_cross_entropy(x, y)))  # as optax


def test_losses_accept_integer_targets_under_strict_promotion():
    x = jnp.array([0.5, -1.0])
    assert (
        gx.losses.sigmoid_binary_cross_entropy(x, jnp.array([1, 0])).dtype
        == jnp.float32
    )
    assert gx.losses.sparsemax_loss(x, jnp.array([1, 0])).dtype == jnp.float32
    assert gx.losses.squared_error(jnp.array([1, 2])).dtype == jnp.float32


def test_fenchel_young_of_logsumexp_is_softmax_cross_entropy():
    rng = np.random.RandomState(8)
    x, y = jnp.asarray(f32(rng, 3, 4)), jnp.asarray(softmax_np(f32(rng, 3, 4)))
    fy = gx.losses.make_fenchel_young_loss(logsumexp)
    both = jax.jit(lambda a, b: (fy(a, b), gx.losses.softmax_cross_entropy(a, b)))(x, y)
    np.testing.assert_allclose(both[0], both[1], rtol=1e-6)
    g = jax.jit(jax.grad(lambda v: jnp.sum(fy(v, y))))(x)
    np.testing.assert_allclose(g, jax.nn.softmax(x) - y, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- optax bugs (gradxform differs)


def test_triplet_odd_norm_degree_uses_absolute_differences():
    a, p, n = jnp.array([[0.0, 0.0]]), jnp.array([[0.1, 0.1]]), jnp.array([[1.0, 0.0]])
    ours = gx.losses.triplet_margin_loss(a, p, n, norm_degree=1)
    np.testing.assert_allclose(
        ours, ref.triplet_margin_loss(a, p, n, norm_degree=1), rtol=1e-5
    )  # 0.2
    theirs = optax.losses.triplet_margin_loss(a, p, n, norm_degree=1)
    assert not np.allclose(ours, theirs)  # optax: 1.8 (signed differences)
    assert np.isfinite(gx.losses.triplet_margin_loss(a, p, n, norm_degree=3)).all()


def test_binary_dice_loss_accepts_probabilities_without_sigmoid():
    rng = np.random.RandomState(9)
    probs = jnp.asarray(rng.rand(2, 6).astype(np.float32))
    targets = jnp.asarray((rng.rand(2, 6) > 0.5).astype(np.float32))
    ours = gx.losses.binary_dice_loss(probs, targets, apply_sigmoid=False)
    np.testing.assert_allclose(
        ours, ref.binary_dice_loss(probs, targets, apply_sigmoid=False), rtol=1e-5
    )
    with pytest.raises(ValueError):  # optax checks that one class "sums to one"
        optax.losses.binary_dice_loss(probs, targets, apply_sigmoid=False)


def test_dice_loss_rejects_non_distributions_with_several_classes():
    with pytest.raises(ValueError, match="sum"):
        gx.losses.dice_loss(
            jnp.full((2, 4, 3), 0.5), jnp.zeros((2, 4, 3)), apply_softmax=False
        )


def test_fenchel_young_passes_keyword_arguments_to_max_fun():
    def scaled_lse(s, temperature=1.0):
        return temperature * logsumexp(s / temperature)

    fy = gx.losses.make_fenchel_young_loss(scaled_lse)
    s, y = jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 1.0, 0.0])
    expected = 2.0 * _np_lse(np.array([1.0, 2.0, 3.0]) / 2.0) - 2.0
    out = jax.jit(lambda a, b: (fy(a, b, temperature=2.0), fy(a, b, 2.0)))(s, y)
    np.testing.assert_allclose(out[0], expected, rtol=1e-6)
    np.testing.assert_allclose(out[1], expected, rtol=1e-6)


def test_ranking_softmax_loss_ignores_absent_items_with_minus_inf_scores():
    loss = gx.losses.ranking_softmax_loss(
        jnp.array([[1.0, -jnp.inf, 3.0]]), jnp.array([[1.0, 0.0, 0.0]]), reduce_fn=None
    )
    np.testing.assert_allclose(
        loss,
        ref.ranking_softmax_loss(
            np.array([[1.0, 3.0]]), np.array([[1.0, 0.0]]), reduce_fn=None
        ),
        rtol=1e-6,
    )
    with jax.numpy_dtype_promotion("standard"):
        assert np.isnan(
            optax.losses.ranking_softmax_loss(
                jnp.array([[1.0, -jnp.inf, 3.0]]),
                jnp.array([[1.0, 0.0, 0.0]]),
                reduce_fn=None,
            )
        ).all()


# --------------------------------------------------------------------------- mutants


def _reference_check_passes(fn, case):
    args, kwargs = _inputs(case)
    arrays, static = _split(kwargs)
    try:
        out = jax.jit(lambda a, arr: fn(*a, **arr, **static))(_to_jax(args), arrays)
    except (ValueError, TypeError):
        return False
    return _close(out, case.run(ref, *args, **_ref_kwargs(kwargs)), atol=1e-5)


def _mutant_focal_hard_pt(logits, labels, *, alpha=None, gamma=2.0):
    # Broken: p_t from the rounded label (right for hard labels, wrong for soft ones).
    hard = jnp.round(labels)
    p = jax.nn.sigmoid(logits)
    p_t = hard * p + (1 - hard) * (1 - p)
    return gx.losses.sigmoid_binary_cross_entropy(logits, labels) * (1 - p_t) ** gamma


def _mutant_dice_swapped(predictions, targets, **kw):
    kw = dict(kw)
    kw["alpha"], kw["beta"] = kw.get("beta", 0.5), kw.get("alpha", 0.5)
    return gx.losses.dice_loss(predictions, targets, **kw)


def _mutant_ctc_ignores_frame_padding(
    logits, logit_paddings, labels, label_paddings, **kw
):
    # Broken: padded frames treated as real frames.
    return gx.losses.ctc_loss(
        logits, jnp.zeros_like(logit_paddings), labels, label_paddings, **kw
    )


def _mutant_poly_eps_on_ce(logits, labels, *, epsilon=2.0, axis=-1, where=None):
    return (1 + epsilon) * gx.losses.softmax_cross_entropy(
        logits, labels, axis=axis, where=where
    )


@pytest.mark.parametrize(
    "mutant, case",
    [
        (_mutant_focal_hard_pt, _case("sigmoid_focal_loss", 1)),
        (_mutant_dice_swapped, _case("dice_loss", 2)),
        (_mutant_ctc_ignores_frame_padding, _case("ctc_loss")),
        (_mutant_poly_eps_on_ce, _case("poly_loss_cross_entropy")),
    ],
    ids=["focal_soft_pt", "dice_alpha_beta", "ctc_padding", "poly_epsilon"],
)
def test_reference_check_catches_mutant(mutant, case):
    assert _reference_check_passes(lambda *a, **k: case.run(gx.losses, *a, **k), case)
    assert not _reference_check_passes(mutant, case)
