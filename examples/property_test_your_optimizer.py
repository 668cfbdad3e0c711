"""Property-test your own optimizer with `gradxform.testing`.

You wrote a transformation (here Signum: SGD on the sign of a momentum); before
training with it, check that it keeps the contract every gradxform
transformation keeps: updates and state keep their trees and dtypes (bf16 too),
init and update are pure, jit / lax.cond / lax.scan agree with eager code, no
retrace on the second step, and it composes in a chain. Then let hypothesis
hunt for a counterexample over random trees, gradients (zeros, huge and tiny
entries) and hyperparameters.

Run:
    python examples/property_test_your_optimizer.py            # thorough, 25 examples
    python examples/property_test_your_optimizer.py --smoke    # quick
"""

import argparse
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from hypothesis import strategies as st

import gradxform as gx
from gradxform.testing import LawViolation, check_transformation, check_transformation_property


# ---- your transformation ---------------------------------------------------------------
class SignumState(NamedTuple):
    momentum: Any  # like params, in the params' dtypes


def signum(learning_rate: float, beta: float = 0.9, *, cast_back: bool = True):
    """u = -lr * sign(m), m <- beta * m + (1 - beta) * g (computed in float32)."""

    def init(params):
        return SignumState(jax.tree_util.tree_map(jnp.zeros_like, params))

    def update(updates, state, params=None, **extra_args):
        tmap = jax.tree_util.tree_map
        f32 = jnp.float32
        m32 = tmap(lambda g, m: beta * m.astype(f32) + (1 - beta) * g.astype(f32), updates, state.momentum)
        new_updates = tmap(lambda m, g: (-learning_rate * jnp.sign(m)).astype(g.dtype), m32, updates)
        momentum = tmap(lambda m, old: m.astype(old.dtype), m32, state.momentum) if cast_back else m32
        return new_updates, SignumState(momentum)

    return gx.GradientTransformation(init, update)


# ---- the tests -------------------------------------------------------------------------
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="quick: default laws, 3 hypothesis examples")
    args = parser.parse_args(argv)
    jax.config.update("jax_numpy_dtype_promotion", "strict")  # no silent bf16 -> f32 promotion
    start = time.time()

    # 1. The generic laws on small default trees (f32, bf16, a scalar, an empty axis, nesting).
    check_transformation(signum(1e-2), thorough=not args.smoke)
    print("laws hold on the default example trees")

    # 2. Hypothesis draws trees, gradient sequences and beta; a failure would be shrunk.
    check_transformation_property(
        lambda beta: signum(1e-2, beta),
        hyperparameters={"beta": st.floats(0.0, 0.99)},
        max_examples=3 if args.smoke else 25,
    )
    print("laws hold on the examples hypothesis drew")

    # 3. The laws catch the classic bug: a bf16 momentum silently stored as float32.
    try:
        check_transformation(signum(1e-2, cast_back=False), laws=["state_dtype"])
    except LawViolation as err:
        print(f"the buggy variant is caught: law {err.laws[0]!r} at {err.violations[0].path}")
    else:
        print("the buggy variant was NOT caught")
        return 1
    print(f"done in {time.time() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
