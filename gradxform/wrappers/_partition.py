"""Freezing parameters: `freeze`, `selective_transform`; and `partition` (defined with the combinators)."""

from __future__ import annotations

from typing import Any

import jax

from gradxform._base import GradientTransformationExtraArgs, set_to_zero
from gradxform._combine import PartitionState, masked, partition

__all__ = ["PartitionState", "freeze", "partition", "selective_transform"]


def freeze(mask: Any) -> GradientTransformationExtraArgs:
    r"""Zeros the updates of the leaves where `mask` is True (freezes those params); passes the others through.

    .. math:: u_i = \begin{cases} 0 & m_i \\ g_i & \text{otherwise} \end{cases}

    ``masked(set_to_zero(), mask)``: chain it after an optimizer to hold some
    parameters fixed (the optimizer still keeps state for them; see
    `selective_transform` to avoid that).

    Args:
        mask: a static bool (every leaf), or a tree of bools with the params'
            structure (or a prefix of it), True where the param is frozen.

    Returns:
        A `GradientTransformationExtraArgs` with state `MaskedState`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.freeze({'a': True, 'b': False})
        >>> g = {'a': jnp.ones(1), 'b': jnp.ones(2)}
        >>> u, _ = tx.update(g, tx.init(g))
        >>> u['a'].tolist(), u['b'].tolist()
        ([0.0], [1.0, 1.0])
    """
    return masked(set_to_zero(), mask)


def selective_transform(optimizer: Any, *, freeze_mask: Any) -> GradientTransformationExtraArgs:
    r"""Runs `optimizer` only on the leaves where ``freeze_mask`` is False; the frozen ones get zero updates.

    .. math:: u_i = \begin{cases} 0 & m_i \\ \text{optimizer}(g)_i & \text{otherwise} \end{cases}

    ``partition({'train': optimizer, 'freeze': set_to_zero()}, labels)``: the
    optimizer's state holds only the trained leaves.

    Args:
        optimizer: the transformation for the leaves that train.
        freeze_mask: a static bool, or a tree of bools with the params' structure
            (or a prefix of it), True where the param is frozen (keyword-only); or a
            function ``params -> such a tree`` (an extension: optax takes no function).

    Returns:
        A `GradientTransformationExtraArgs` with state `PartitionState`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.selective_transform(gx.sgd(0.5), freeze_mask={'a': True, 'b': False})
        >>> g = {'a': jnp.ones(1), 'b': jnp.ones(2)}
        >>> u, _ = tx.update(g, tx.init(g))
        >>> u['a'].tolist(), u['b'].tolist()
        ([0.0], [-0.5, -0.5])
    """

    def labels(params):
        mask = freeze_mask(params) if callable(freeze_mask) else freeze_mask
        return jax.tree_util.tree_map(lambda frozen: "freeze" if frozen else "train", mask)

    return partition({"train": optimizer, "freeze": set_to_zero()}, param_labels=labels)
