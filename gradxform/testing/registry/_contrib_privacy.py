"""Registry entries of DP-SGD and `split_real_and_imaginary` (gx.contrib).

DP-SGD's update takes per-example gradients (a leading batch axis on every leaf)
and returns params-shaped updates, while the registry's tests feed params-shaped
gradients. Its entries therefore build the factory behind `_per_example`, which
turns each gradient :math:`g` into the batch :math:`(g, g/8, -2g)` of three
examples (exact in every float dtype; the first and last are clipped at
``l2_norm_clip=1``, the middle one mostly not). The NumPy reference sees the same
batch. Parity with optax on genuine per-example gradients is in
tests/test_contrib_privacy.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx
from gradxform._base import GradientTransformationExtraArgs
from gradxform.testing.reference._common import Reference
from gradxform.testing.registry._entry import case

_SCALES = (1.0, 0.125, -2.0)


def _examples(tree):
    return jax.tree_util.tree_map(lambda x: jnp.stack([x * jnp.asarray(s, jnp.result_type(x)) for s in _SCALES]), tree)


def _examples_np(tree):
    return jax.tree_util.tree_map(lambda x: np.stack([np.asarray(x) * np.asarray(s, np.asarray(x).dtype)
                                                       for s in _SCALES]), tree)


def _per_example(factory):
    """`factory` (same name, signature and declared hyperparameters) fed the batch `_SCALES` * g."""

    @functools.wraps(factory)
    def build(*args, **kwargs):
        tx = factory(*args, **kwargs)

        def update_fn(updates, state, params=None, **extra_args):
            return tx.update(_examples(updates), state, params, **extra_args)

        return GradientTransformationExtraArgs(tx.init, update_fn)

    return build


def _reference_per_example(make):
    def build(ref):
        inner = make(ref)

        def update(grads, state, params=None, **extra_args):
            return inner.update(_examples_np(grads), state, params, **extra_args)

        return Reference(inner.init, update)

    return build


_aggregate = _per_example(gx.contrib.differentially_private_aggregate)
_dpsgd = _per_example(gx.contrib.dpsgd)

_DP = {"l2_norm_clip": 1.0, "noise_multiplier": 0.5, "key": 3}
_DP_NO_NOISE = {"l2_norm_clip": 1.0, "noise_multiplier": 0.0, "key": 0}
_DPSGD = {"learning_rate": 0.1, "l2_norm_clip": 1.0, "noise_multiplier": 0.5, "seed": 1, "momentum": 0.9}


def _split_adam(optax):
    return {"inner": optax.adam(0.1)}


ENTRIES = [
    # DP-SGD: a fixed key makes the noise reproducible; the reference draws the same noise.
    case(_aggregate, _DP, optax=False,
         reference=_reference_per_example(lambda ref: ref.differentially_private_aggregate(**_DP))),
    case(_aggregate, _DP_NO_NOISE, "no_noise", optax=False,
         reference=_reference_per_example(lambda ref: ref.differentially_private_aggregate(**_DP_NO_NOISE))),
    case(_dpsgd, _DPSGD, optax=False, reference=_reference_per_example(lambda ref: ref.dpsgd(**_DPSGD))),
    # complex params as real pairs; the registry's params are real, so this checks the pass-through
    # (complex params: tests/test_contrib_privacy.py)
    case(gx.contrib.split_real_and_imaginary, {"inner": gx.adam(0.1)}, optax="contrib.split_real_and_imaginary",
         optax_kwargs=_split_adam, reference=lambda ref: ref.split_real_and_imaginary(ref.adam(0.1))),
]
