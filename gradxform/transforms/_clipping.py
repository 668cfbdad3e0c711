"""Clipping: element-wise `clip` and `clip_by_global_norm` (Pascanu et al., 2013)."""

from __future__ import annotations

import jax.numpy as jnp

from gradxform import _hyper, _tree
from gradxform._base import GradientTransformation, stateless


@_tree.leaf_rule
def _clip_rule(g, max_delta):
    x = g.astype(_tree.compute_dtype(g.dtype))
    if jnp.iscomplexobj(x):
        magnitude = jnp.abs(x)
        clipping = magnitude > max_delta  # a traced bound of 0 on a zero entry is not 0/0
        factor = jnp.where(clipping, max_delta / jnp.where(clipping, magnitude, 1), 1)
        return ((x * factor.astype(x.dtype)).astype(g.dtype),)
    return (jnp.clip(x, -max_delta, max_delta).astype(g.dtype),)


@_hyper.declare(max_delta=_hyper.POSITIVE)
def clip(max_delta) -> GradientTransformation:
    r"""Clips every update element-wise to :math:`[-\Delta, \Delta]`.

    Element-wise clipping (Mikolov, 2012; Goodfellow et al., 2016, section 10.11.1):

    .. math:: g_i \leftarrow g_i \frac{\Delta}{\max(|g_i|, \Delta)}

    which equals ``jnp.clip(g, -max_delta, max_delta)`` (for complex updates the
    magnitude is clipped and the phase kept).

    Args:
        max_delta: the bound :math:`\Delta > 0`.

    Returns:
        A stateless `GradientTransformation`.

    Raises:
        ValueError: ``max_delta <= 0``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.clip(1.0)
        >>> tx.update(jnp.array([0.5, -3.0]), tx.init(jnp.zeros(2)))[0].tolist()
        [0.5, -1.0]
    """

    def clip_updates(updates, params):
        del params
        (clipped,) = _tree.apply_rule(
            _clip_rule, updates, scalars=lambda dtype: _tree.hp(max_delta, _tree.real_dtype(dtype))
        )
        return clipped

    return stateless(clip_updates, name="clip")


@_hyper.declare(max_norm=_hyper.POSITIVE)
def clip_by_global_norm(max_norm) -> GradientTransformation:
    r"""Rescales the updates so that their global L2 norm is at most ``max_norm`` (Pascanu et al., 2013).

    .. math:: u \leftarrow g \cdot \frac{c}{\max(\|g\|_2, c)}, \qquad \|g\|_2 = \sqrt{\textstyle\sum_{leaves} \sum_i g_i^2}

    The norm is accumulated in at least float32 (float16 gradients whose squares
    underflow or overflow in float16 are still clipped correctly), and the factor
    is applied in float32 before casting back. All-zero gradients give zeros.

    Args:
        max_norm: the bound :math:`c > 0`.

    Returns:
        A stateless `GradientTransformation`.

    Raises:
        ValueError: ``max_norm <= 0``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.clip_by_global_norm(1.0)
        >>> tx.update({'w': jnp.array([3.0, 4.0])}, tx.init(None))[0]['w'].tolist()
        [0.6000000238418579, 0.800000011920929]

    References:
        Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
        networks", ICML 2013.
    """

    def clip_updates(updates, params):
        del params
        norm = _tree.global_norm(updates)
        c = _tree.hp(max_norm, norm.dtype)
        clipping = norm > c
        # Not c / max(norm, c): a traced bound of 0 on all-zero gradients would be 0/0.
        factor = jnp.where(clipping, c / jnp.where(clipping, norm, 1), 1)
        return _tree.scale_tree(updates, factor)

    return stateless(clip_updates, name="clip_by_global_norm")
