"""Divergences between distributions given as log-probabilities: Kullback-Leibler
(with plain or log targets) and its generalization to unnormalized measures.

References: Kullback and Leibler (1951), *On Information and Sufficiency*;
Boyd and Vandenberghe, *Convex Optimization* (2004), Section 3.1.5 and p. 90;
Bregman (1967).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform.losses import _common
from gradxform.losses._common import Axis


def _xlogx(t: jax.Array) -> jax.Array:
    """:math:`t \\log t` with :math:`0 \\log 0 = 0` (and a finite gradient at 0 for t's branch)."""
    positive = t > 0
    safe = jnp.where(positive, t, jnp.ones((), t.dtype))
    return jnp.where(positive, safe * jnp.log(safe), jnp.zeros((), t.dtype))


def kl_divergence(
    log_predictions: jax.Array,
    targets: jax.Array,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Kullback-Leibler divergence :math:`\mathrm{KL}(t \,\Vert\, p)` from log-predictions.

    .. math::
        \mathrm{KL}(t \Vert p) = \sum_j t_j \big(\log t_j - \log p_j\big),
        \qquad 0 \log 0 = 0 .

    Args:
        log_predictions: :math:`\log p`, e.g. ``jax.nn.log_softmax(logits)``.
        targets: target probabilities `t` (non-negative), broadcastable.
        axis: the axis or axes summed over.
        where: optional boolean mask; entries outside it are left out of the sum.

    Returns:
        The divergence per example, in `log_predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> lp = jax.nn.log_softmax(jnp.array([1.0, 2.0, 3.0]))
        >>> round(float(gx.losses.kl_divergence(lp, jnp.array([0.2, 0.3, 0.5]))), 4)
        0.078

    References:
        Kullback and Leibler (1951), *On Information and Sufficiency*, Eq. 2.4.
    """
    lp = _common.as_compute(log_predictions)
    t = _common.as_compute(targets, like=log_predictions)
    mask = _common.expand_where(
        where, jnp.broadcast_shapes(lp.shape, t.shape).__len__(), axis
    )
    terms = _xlogx(t) - t * lp
    return _common.cast_out(
        _common.masked_sum(terms, axis, mask), jnp.asarray(log_predictions)
    )


def kl_divergence_with_log_targets(
    log_predictions: jax.Array,
    log_targets: jax.Array,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Kullback-Leibler divergence with the targets also given as logarithms.

    .. math::
        \mathrm{KL}(t \Vert p) = \sum_j e^{\log t_j} \big(\log t_j - \log p_j\big).

    Args:
        log_predictions: :math:`\log p`.
        log_targets: :math:`\log t`, broadcastable to `log_predictions`.
        axis: the axis or axes summed over.
        where: optional boolean mask; entries outside it are left out of the sum.

    Returns:
        The divergence per example, in `log_predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> lp = jax.nn.log_softmax(jnp.array([1.0, 2.0, 3.0]))
        >>> lt = jnp.log(jnp.array([0.2, 0.3, 0.5]))
        >>> round(float(gx.losses.kl_divergence_with_log_targets(lp, lt)), 4)
        0.078

    References:
        Kullback and Leibler (1951), *On Information and Sufficiency*, Eq. 2.4.
    """
    lp = _common.as_compute(log_predictions)
    lt = _common.as_compute(log_targets, like=log_predictions)
    mask = _common.expand_where(
        where, len(jnp.broadcast_shapes(lp.shape, lt.shape)), axis
    )
    terms = jnp.exp(lt) * (lt - lp)
    return _common.cast_out(
        _common.masked_sum(terms, axis, mask), jnp.asarray(log_predictions)
    )


def generalized_kl_divergence(
    log_predictions: jax.Array,
    targets: jax.Array,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Generalized KL divergence between unnormalized non-negative measures.

    .. math::
        D(t \Vert p) = \sum_j \Big(t_j \log t_j - t_j \log p_j - t_j + p_j\Big),

    the Bregman divergence of :math:`f(x) = x \log x - x`; it equals
    :func:`kl_divergence` when both sum to one.

    Args:
        log_predictions: :math:`\log p`.
        targets: non-negative targets `t`, broadcastable.
        axis: the axis or axes summed over.
        where: optional boolean mask; entries outside it are left out of the sum.

    Returns:
        The divergence per example, in `log_predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> lp = jnp.array([0.1, -0.5, 0.3])
        >>> round(float(gx.losses.generalized_kl_divergence(lp, jnp.array([0.5, 2.0, 0.1]))), 4)
        2.191

    References:
        Boyd and Vandenberghe, *Convex Optimization* (2004), p. 90 (Example 3.14 /
        Exercise 3.13); Bregman (1967).
    """
    lp = _common.as_compute(log_predictions)
    t = _common.as_compute(targets, like=log_predictions)
    mask = _common.expand_where(
        where, len(jnp.broadcast_shapes(lp.shape, t.shape)), axis
    )
    terms = _xlogx(t) - t * lp - t + jnp.exp(lp)
    return _common.cast_out(
        _common.masked_sum(terms, axis, mask), jnp.asarray(log_predictions)
    )


def convex_kl_divergence(
    log_predictions: jax.Array,
    targets: jax.Array,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Same as :func:`generalized_kl_divergence` (optax's older name, kept for compatibility).

    .. math::
        D(t \Vert p) = \sum_j \Big(t_j \log t_j - t_j \log p_j - t_j + p_j\Big).

    Args:
        log_predictions: :math:`\log p`.
        targets: non-negative targets `t`, broadcastable.
        axis: the axis or axes summed over.
        where: optional boolean mask.

    Returns:
        The divergence per example, in `log_predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> lp = jnp.array([0.1, -0.5, 0.3])
        >>> round(float(gx.losses.convex_kl_divergence(lp, jnp.array([0.5, 2.0, 0.1]))), 4)
        2.191

    References:
        Boyd and Vandenberghe, *Convex Optimization* (2004), p. 90.
    """
    return generalized_kl_divergence(log_predictions, targets, axis=axis, where=where)
