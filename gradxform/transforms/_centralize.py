"""Gradient centralization (Yong et al., 2020): `centralize`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import EmptyState, GradientTransformation


@_tree.leaf_rule
def _centralize_rule(g: jax.Array) -> tuple[jax.Array]:
    if g.ndim <= 1:
        return (g,)
    x = _tree.wide(g)
    return ((x - jnp.mean(x, axis=tuple(range(1, g.ndim)), keepdims=True)).astype(g.dtype),)


def centralize() -> GradientTransformation:
    r"""Gradient centralization: each slice along the leading axis minus its mean.

    For a leaf of two or more dimensions, with :math:`i` the index of the leading
    axis (the output neuron in the paper's layout),

    .. math:: u_{i,\cdot} = g_{i,\cdot} - \frac{1}{M} \sum_{j} g_{i,j}

    the mean taken over the :math:`M` entries of all the other axes. Scalars and
    vectors (biases) pass unchanged. The mean is taken in at least float32.

    Note: Flax's ``Dense`` kernels are laid out (inputs, outputs); the leading axis
    is then the input, not the output neuron of the paper (optax's convention too).

    Returns:
        A stateless `GradientTransformation` (state `EmptyState`).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.centralize()
        >>> g = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]])
        >>> tx.update(g, tx.init(g))[0].tolist()
        [[-1.0, 0.0, 1.0], [-2.0, -1.0, 3.0]]

    References:
        Yong et al., "Gradient Centralization: A New Optimization Technique for Deep
        Neural Networks", ECCV 2020, Eq. (2).
    """

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "centralize")
        (updates,) = _tree.apply_rule(_centralize_rule, updates)
        return updates, state

    return GradientTransformation(init_fn, update_fn)
