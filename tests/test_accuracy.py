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
