"""The frame of the test files' mutants: a leaf-by-leaf transformation from a step function.

A mutant is a deliberately broken copy of a rule; the tests assert that
`gradxform.testing.check_against_reference` catches it (and that the unbroken copy,
written in the same frame, passes).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import pytest

import gradxform as gx
from gradxform.testing import check_against_reference


def bias_correction(beta, t):
    """1 - beta^t for a float t >= 0, accurate in float32 (so that the correct copies pass the tight check)."""
    return -jnp.expm1(t * math.log(beta)) if beta > 0 else jnp.ones_like(t)


def elementwise(step, n_states, init_value=0.0):
    """A transformation applying ``step(g, t, *state_leaves) -> (u, *new_state_leaves)`` leaf by leaf."""

    def init(params):
        trees = tuple(jax.tree_util.tree_map(lambda p: jnp.full_like(p, init_value), params) for _ in range(n_states))
        return jnp.zeros([], jnp.int32), trees

    def update(updates, state, params=None, **extra):
        count, trees = state
        count = count + 1
        leaves, treedef = jax.tree_util.tree_flatten(updates)
        state_leaves = [treedef.flatten_up_to(tree) for tree in trees]
        outs = [step(g, count.astype(g.dtype), *s) for g, *s in zip(leaves, *state_leaves)]
        new = tuple(treedef.unflatten([o[k + 1] for o in outs]) for k in range(n_states))
        return treedef.unflatten([o[0] for o in outs]), (count, new)

    return gx.GradientTransformation(init, update)


def caught(tx, ref, steps=8):
    with pytest.raises(AssertionError, match="differ from the reference"):
        check_against_reference(tx, ref, steps=steps)
