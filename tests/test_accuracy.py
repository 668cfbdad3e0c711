"""Every registered transformation is accurate in float32: against its own float64 run, and
at least as accurate as optax's function of the same name.

`gradxform.testing.check_accuracy` runs the transformation in float32 and in float64 on
the same inputs and measures the worst ``max|u32 - u64| / max|u64|`` of one step's
updates. Each entry's budget is its `accuracy_budget` in the registry, or `DEFAULT_BUDGET`.
"""

import jax
import numpy as np
import optax
import pytest

import gradxform as gx
from gradxform.testing import check_accuracy
from gradxform.testing.registry import REGISTRY
from _entries import sampled

# Measured with this file's PARAMS and STEPS over seeds 0-2 (after the accurate-scalars change
# of _tree.decay / bias_correction): the worst registry entry that sets no budget is adamw,
# 7.3e-7 (Adam family 5.7e-7 to 7.3e-7; momentum, RMSProp, AdaDelta, Rprop, Newton,
# L-BFGS at most 5.7e-7; scale, clip, sgd about 1e-7); the default is twice the worst.
# Entries above it set `accuracy_budget` in the registry.
DEFAULT_BUDGET = 1.5e-6
MAX_RATIO_TO_OPTAX = 1.25
# Few steps, one seed and one leaf: the law must stay cheap on 2 cores (compiling the
# update, 4 times per entry with optax's, is most of its cost; a second and third leaf
# doubled it). check_accuracy's default tree (matrix, vector, scalar) is for the benchmark.
STEPS, SEEDS = 30, (0,)
PARAMS = {"w": np.random.default_rng(0).standard_normal((4, 5))}

ENTRIES = [e for e in REGISTRY if not e.random and not e.slow]


def _standard_promotion(tx, pass_extra_args=False):
    """optax relies on implicit dtype promotion; the tests run with strict promotion."""

    def init(params):
        with jax.numpy_dtype_promotion("standard"):
            return tx.init(params)

    def update(updates, state, params=None, **extra_args):
        if not pass_extra_args:  # optax's counterpart takes none
            extra_args = {}
        with jax.numpy_dtype_promotion("standard"):
            return tx.update(updates, state, params, **extra_args)

    return gx.GradientTransformation(init, update)


def _optax(entry):
    if entry.optax_name is None:
        return None
    return _standard_promotion(entry.build_optax(optax), entry.optax_extra_args)


@pytest.mark.parametrize("entry", sampled(ENTRIES))
def test_float32_error_within_budget_and_optax(entry):
    baseline = _optax(entry)
    budget = entry.accuracy_budget if entry.accuracy_budget is not None else DEFAULT_BUDGET
    result = check_accuracy(
        entry.build(), PARAMS, steps=STEPS, seeds=SEEDS, extra_args_fn=entry.extra_args_fn, budget=budget,
        baseline=baseline, max_ratio=None if baseline is None else MAX_RATIO_TO_OPTAX,
    )
    assert result.step >= 1


# --------------------------------------------------------------------------- the measure itself


def _add_one_subtract_one():
    """``u = (g + 1) - 1``: exact in float64, off by up to half an ulp of 1 in float32.

    Relative to a step whose gradient happens to be near 0, that half ulp is a large error;
    relative to the gradients' scale it is rounding. A one-element leaf over 200 standard
    normal gradients meets |g| < 0.02 at some step.
    """
    def update(g, one, params=None):  # `one` from the state: XLA cannot fold (x + 1) - 1 into x
        return jax.tree_util.tree_map(lambda x: (x + one.astype(x.dtype)) - one.astype(x.dtype), g), one

    return gx.GradientTransformation(lambda params: np.float64(1.0), update)


def test_window_reads_a_cancelling_step_at_its_neighbours_scale():
    params = {"b": np.float64(0.5)}
    strict = check_accuracy(_add_one_subtract_one(), params, steps=200, seeds=(0,), window=0)
    windowed = check_accuracy(_add_one_subtract_one(), params, steps=200, seeds=(0,))
    identity = check_accuracy(gx.identity(), params, steps=200, seeds=(0,))
    assert identity.error <= 2.0**-24  # the gradient's own rounding
    assert strict.error > 1e-6  # half an ulp of 1 over a gradient near 0
    assert windowed.error < 1e-6 and windowed.error < strict.error / 10
    # the window's scale is the largest exact update of the steps around: recompute it
    rng = np.random.default_rng(0)  # given params: the seed draws only the gradients
    g = np.array([rng.standard_normal(()) for _ in range(200)])
    t = strict.step - 1
    u32 = ((g.astype(np.float32) + np.float32(1)) - np.float32(1)).astype(np.float64)
    assert strict.error == pytest.approx(abs(u32[t] - g[t]) / abs(g[t]), rel=1e-12)
    err2 = np.abs(u32 - g) / np.array([np.max(np.abs(g[max(s - 2, 0):s + 3])) for s in range(200)])
    assert windowed.error == pytest.approx(err2.max(), rel=1e-12)
    assert windowed.step == int(np.argmax(err2)) + 1


def test_window_keeps_a_systematic_loss(monkeypatch):
    """Adam with ``1 - b2`` formed in float32 from the rounded ``b2`` (the mutation gallery's
    `float32_scalars`) loses accuracy at every step: the window leaves most of it."""
    from gradxform import _tree  # noqa: PLC0415

    def float32_decay(beta, dtype):
        rate = _tree.hp(beta, dtype)
        return _tree.Decay(rate, 1 - rate)

    good = check_accuracy(gx.scale_by_adam(b2=0.999), PARAMS, steps=STEPS, seeds=SEEDS)
    monkeypatch.setattr(_tree, "decay", float32_decay)
    strict = check_accuracy(gx.scale_by_adam(b2=0.999), PARAMS, steps=STEPS, seeds=SEEDS, window=0)
    windowed = check_accuracy(gx.scale_by_adam(b2=0.999), PARAMS, steps=STEPS, seeds=SEEDS)
    assert windowed.error > strict.error / 2
    assert windowed.error > 5 * good.error


@pytest.mark.parametrize("window", [-1, 1.5, True, "2"])
def test_window_must_be_a_nonnegative_int(window):
    with pytest.raises(ValueError, match="window"):
        check_accuracy(gx.identity(), PARAMS, steps=1, seeds=(0,), window=window)
