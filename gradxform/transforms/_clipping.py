"""Clipping: element-wise `clip` and `clip_by_global_norm`."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import EmptyState, GradientTransformation


def clip(max_delta) -> GradientTransformation:
    r"""Clips every update element-wise to :math:`[-\Delta, \Delta]`.

    The seed lecture's formula (deck 000, "Gradient clipping for handling cliffs"):

    .. math:: \Delta\theta_i \leftarrow \Delta\theta_i \frac{\Delta_{MAX}}{\max(|\Delta\theta_i|, \Delta_{MAX})}

    which equals ``jnp.clip(g, -max_delta, max_delta)``.

    Args:
        max_delta: the bound :math:`\Delta_{MAX} > 0`.

    Raises:
        ValueError: ``max_delta <= 0``.
    """
    _checks.check_positive("max_delta", max_delta, fn="clip")

    def leaf(g):
        if g is None:
            return None
        cdt = _tree.compute_dtype(g.dtype)
        d = _tree.hp(max_delta, _tree.real_dtype(g.dtype))
        if jnp.iscomplexobj(g):
            mag = jnp.abs(g.astype(cdt))
            return (g.astype(cdt) * (d / jnp.maximum(mag, d)).astype(cdt)).astype(g.dtype)
        return jnp.clip(g.astype(cdt), -d, d).astype(g.dtype)

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "clip")
        return jax.tree_util.tree_map(leaf, updates, is_leaf=_tree.is_none), state

    return GradientTransformation(init_fn, update_fn)


def clip_by_global_norm(max_norm) -> GradientTransformation:
    r"""Rescales the updates so that their global L2 norm is at most ``max_norm``.

    .. math:: u \leftarrow g \cdot \frac{c}{\max(\|g\|_2, c)}, \qquad \|g\|_2 = \sqrt{\textstyle\sum_{leaves} \sum_i g_i^2}

    The norm is accumulated in at least float32 (float16 gradients whose squares
    underflow or overflow in float16 are still clipped correctly), and the factor
    is applied in float32 before casting back. All-zero gradients give zeros.

    Args:
        max_norm: the bound :math:`c > 0`.

    Raises:
        ValueError: ``max_norm <= 0``.
    """
    _checks.check_positive("max_norm", max_norm, fn="clip_by_global_norm")

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "clip_by_global_norm")
        norm = _tree.global_norm(updates)
        c = _tree.hp(max_norm, norm.dtype)
        factor = c / jnp.maximum(norm, c)

        def leaf(g):
            if g is None:
                return None
            cdt = _tree.compute_dtype(g.dtype)
            return _tree.cast(_tree.mul(_tree.cast(g, cdt), _tree.cast(factor, cdt)), g.dtype)

        return jax.tree_util.tree_map(leaf, updates, is_leaf=_tree.is_none), state

    return GradientTransformation(init_fn, update_fn)
