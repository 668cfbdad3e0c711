"""Regression losses (squared error, L2, Huber, log-cosh) and cosine similarity/distance.

References: Bishop, *Pattern Recognition and Machine Learning* (2006), Eq. 1.2;
Huber (1964), *Robust Estimation of a Location Parameter*; Chen et al. (2019),
*Log Hyperbolic Cosine Loss Improves Variational Auto-Encoder*.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from gradxform.losses import _common
from gradxform.losses._common import Axis


def _residual(predictions: jax.Array, targets: jax.Array | None) -> jax.Array:
    p = _common.as_compute(predictions)
    if targets is None:
        return p
    return p - _common.as_compute(targets, like=predictions)


def squared_error(
    predictions: jax.Array, targets: jax.Array | None = None
) -> jax.Array:
    r"""Element-wise squared error :math:`(p - t)^2` (targets default to zeros).

    ``squared_error(p, t).mean()`` is the mean squared error.

    Args:
        predictions: predictions of any shape.
        targets: targets broadcastable to `predictions`, or None for zeros.

    Returns:
        The squared differences (broadcast shape), in `predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.losses.squared_error(jnp.array([1.0, -2.0]), jnp.array([0.5, 1.0])).tolist()
        [0.25, 9.0]

    References:
        Hastie, Tibshirani and Friedman, *The Elements of Statistical Learning* (2009), Eq. 2.3.
    """
    r = _residual(predictions, targets)
    return _common.cast_out(r * r, jnp.asarray(predictions))


def l2_loss(predictions: jax.Array, targets: jax.Array | None = None) -> jax.Array:
    r"""Element-wise half squared error :math:`\tfrac12 (p - t)^2`.

    Args:
        predictions: predictions of any shape.
        targets: targets broadcastable to `predictions`, or None for zeros.

    Returns:
        Half the squared differences, in `predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.losses.l2_loss(jnp.array([1.0, -2.0]), jnp.array([0.5, 1.0])).tolist()
        [0.125, 4.5]

    References:
        Bishop, *Pattern Recognition and Machine Learning* (2006), Eq. 1.2 (the 1/2 factor).
    """
    r = _residual(predictions, targets)
    return _common.cast_out(0.5 * (r * r), jnp.asarray(predictions))


def huber_loss(
    predictions: jax.Array,
    targets: jax.Array | None = None,
    *,
    delta: float = 1.0,
) -> jax.Array:
    r"""Huber loss: quadratic near zero, linear beyond `delta`.

    .. math::
        \ell(r) = \begin{cases} \tfrac12 r^2 & |r| \le \delta \\
        \delta\,(|r| - \tfrac12 \delta) & |r| > \delta \end{cases},
        \qquad r = p - t,

    whose gradient is :math:`\operatorname{clip}(r, -\delta, \delta)`.

    Args:
        predictions: predictions of any shape.
        targets: targets broadcastable to `predictions`, or None for zeros.
        delta: the switch point, > 0.

    Returns:
        The loss per element, in `predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.losses.huber_loss(jnp.array([0.5, 3.0])).tolist()
        [0.125, 2.5]

    References:
        Huber (1964), *Robust Estimation of a Location Parameter*, Section 3.
    """
    r = _residual(predictions, targets)
    abs_r = jnp.abs(r)
    quadratic = jnp.minimum(abs_r, delta)
    linear = abs_r - quadratic
    loss = 0.5 * quadratic * quadratic + delta * linear
    return _common.cast_out(loss, jnp.asarray(predictions))


def log_cosh(predictions: jax.Array, targets: jax.Array | None = None) -> jax.Array:
    r"""Log-cosh loss :math:`\log\cosh(p - t)`, formed stably.

    .. math::
        \log\cosh r = |r| + \log\big(1 + e^{-2|r|}\big) - \log 2,

    about :math:`r^2/2` near 0 and :math:`|r| - \log 2` far away (finite for
    residuals of 1e4).

    Args:
        predictions: predictions of any shape.
        targets: targets broadcastable to `predictions`, or None for zeros.

    Returns:
        The loss per element, in `predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> [round(v, 4) for v in gx.losses.log_cosh(jnp.array([0.0, 2.0, 1e4])).tolist()]
        [0.0, 1.325, 9999.3066]

    References:
        Chen et al. (2019), *Log Hyperbolic Cosine Loss Improves Variational
        Auto-Encoder*, Eq. 3.
    """
    r = _residual(predictions, targets)
    loss = jnp.logaddexp(r, -r) - math.log(2.0)
    return _common.cast_out(loss, jnp.asarray(predictions))


def cosine_similarity(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    epsilon: float = 0.0,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Cosine of the angle between predictions and targets along `axis`.

    .. math::
        \cos(p, t) = \frac{\langle p, t \rangle}
        {\sqrt{\max(\lVert p \rVert^2, \epsilon)}\,\sqrt{\max(\lVert t \rVert^2, \epsilon)}} .

    Note:
        As in optax, `epsilon` bounds the *squared* norms from below (a zero
        vector with ``epsilon=0`` gives NaN).

    Args:
        predictions: predicted vectors, features along `axis`.
        targets: target vectors, broadcastable to `predictions`.
        epsilon: lower bound on each squared norm, >= 0.
        axis: the feature axis or axes.
        where: optional boolean mask; entries outside it are left out of the
            norms and the inner product.

    Returns:
        The cosine similarity per vector, in `predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> round(float(gx.losses.cosine_similarity(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 1.0, 0.0]))), 4)
        0.5345

    References:
        Salton and McGill (1983), *Introduction to Modern Information Retrieval*;
        Wikipedia, *Cosine similarity*.
    """
    p = _common.as_compute(predictions)
    t = _common.as_compute(targets, like=predictions)
    mask = _common.expand_where(
        where, len(jnp.broadcast_shapes(p.shape, t.shape)), axis
    )

    def unit(v):
        sq = _common.masked_sum(v * v, axis, mask)
        sq = jnp.maximum(sq, epsilon)
        axes = _common.axes_tuple(axis, v.ndim)
        return v * jnp.expand_dims(jax.lax.rsqrt(sq), axes)

    cos = _common.masked_sum(unit(p) * unit(t), axis, mask)
    return _common.cast_out(cos, jnp.asarray(predictions))


def cosine_distance(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    epsilon: float = 0.0,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Cosine distance :math:`1 - \cos(p, t)`, see :func:`cosine_similarity`.

    Args:
        predictions: predicted vectors, features along `axis`.
        targets: target vectors, broadcastable to `predictions`.
        epsilon: lower bound on each squared norm, >= 0.
        axis: the feature axis or axes.
        where: optional boolean mask.

    Returns:
        The cosine distance per vector (in [0, 2]), in `predictions`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> round(float(gx.losses.cosine_distance(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 1.0, 0.0]))), 4)
        0.4655

    References:
        Wikipedia, *Cosine similarity*, section "Cosine distance".
    """
    p = _common.as_compute(predictions)
    t = _common.as_compute(targets, like=predictions)
    cos = cosine_similarity(p, t, epsilon=epsilon, axis=axis, where=where)
    return _common.cast_out(1.0 - cos, jnp.asarray(predictions))
