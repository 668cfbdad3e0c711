"""Listwise ranking loss: the softmax cross-entropy over a list of items.

Reference: Cao et al. (2007), *Learning to Rank: From Pairwise Approach to
Listwise Approach* (ListNet, Eq. 3 with top-one probabilities); Bruch et al.
(2019), *An Analysis of the Softmax Cross Entropy Loss for Learning-to-Rank*.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradxform.losses import _common


def ranking_softmax_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    where: jax.Array | None = None,
    weights: jax.Array | None = None,
    reduce_fn: Callable[..., jax.Array] | None = jnp.mean,
) -> jax.Array:
    r"""Ranking softmax loss: cross-entropy of the item scores against relevance labels.

    .. math::
        \ell(s, y) = -\sum_{i \in \text{where}} w_i\, y_i
        \log \frac{e^{s_i}}{\sum_{j \in \text{where}} e^{s_j}},

    per list (last axis); labels are not normalized. Items outside `where` are
    left out of the softmax and the sum; a score of ``-inf`` with label 0
    contributes 0.

    Args:
        logits: scores, ``[..., list_size]``.
        labels: relevance labels (non-negative), same shape.
        where: optional boolean mask of valid items, same shape.
        weights: optional per-item weights, same shape.
        reduce_fn: reduction over lists, called as ``reduce_fn(loss)`` or, with
            `where`, as ``reduce_fn(loss, where=lists_with_a_valid_item)``
            (``jnp.mean`` and ``jnp.sum`` accept that); None for no reduction.

    Returns:
        The reduced loss, or the loss per list when `reduce_fn` is None, in
        `logits`' float dtype (formed in at least float32).

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> s = jnp.array([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
        >>> y = jnp.array([[0.0, 1.0, 2.0], [1.0, 0.0, 0.0]])
        >>> [round(v, 4) for v in gx.losses.ranking_softmax_loss(s, y, reduce_fn=None).tolist()]
        [2.2228, 1.7413]

    Note:
        optax returns NaN for a ``-inf`` score even when its label is 0, and always
        calls ``reduce_fn(loss, where=...)`` (so a reducer without a ``where``
        argument fails there even without a mask).

    References:
        Cao et al. (2007), *Learning to Rank: From Pairwise Approach to Listwise
        Approach*, Eq. 3; Bruch et al. (2019), Eq. 1.
    """
    s = _common.as_compute(logits)
    y = _common.as_compute(labels, like=logits)
    if weights is not None:
        y = y * _common.as_compute(weights, like=logits)
    mask = None
    if where is not None:
        mask = jnp.broadcast_to(jnp.asarray(where).astype(jnp.bool_), s.shape)
    present = s != -jnp.inf  # a -inf score is an absent item
    mask = present if mask is None else mask & present
    safe_s = jnp.where(mask, s, jnp.zeros((), s.dtype))
    lsm = _common.log_softmax(safe_s, -1, mask)
    y = jnp.broadcast_to(y, s.shape)
    terms = jnp.where(mask & (y != 0), y * lsm, jnp.zeros((), s.dtype))
    loss = -jnp.sum(terms, axis=-1)
    if reduce_fn is not None:
        if where is None:
            loss = reduce_fn(loss)
        else:
            loss = reduce_fn(
                loss,
                where=jnp.any(
                    jnp.broadcast_to(jnp.asarray(where).astype(jnp.bool_), s.shape),
                    axis=-1,
                ),
            )
    return _common.cast_out(jnp.asarray(loss), jnp.asarray(logits))
