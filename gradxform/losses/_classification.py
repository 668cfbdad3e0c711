"""Classification losses on logits: softmax and sigmoid cross-entropies, focal and
poly losses, hinge and perceptron losses, sparsemax losses, label smoothing.

References: Goodfellow, Bengio and Courville, *Deep Learning* (2016), Sections
3.13 and 6.2.2; Lin et al. (2017), *Focal Loss for Dense Object Detection*;
Leng et al. (2022), *PolyLoss*; Martins and Astudillo (2016), *From Softmax to
Sparsemax*; Blondel, Martins and Niculae (2020), *Learning with Fenchel-Young
Losses*; Mueller, Kornblith and Hinton (2019), *When does label smoothing help?*
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from gradxform.losses import _common
from gradxform.losses._common import Axis


def softmax_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Cross-entropy between ``softmax(logits)`` and target distributions.

    .. math::
        \ell(x, y) = -\sum_j y_j \log \frac{e^{x_j}}{\sum_k e^{x_k}}
                   = \sum_j y_j \Big(\operatorname{LSE}(x) - x_j\Big)
                     \quad\text{when } \textstyle\sum_j y_j = 1,

    with the log-sum-exp formed after subtracting the maximum (finite for
    logits of 1e4). Sums run over the entries where `where` is True.

    Args:
        logits: unnormalized log-probabilities, classes along `axis`.
        labels: target distributions (non-negative, summing to one, e.g. one-hot),
            broadcastable to `logits`.
        axis: the class axis or axes.
        where: optional boolean mask, either `logits`' shape (entries outside it
            are excluded from the softmax and the sum) or the batch shape (rows
            outside it give 0).

    Returns:
        The loss per example, `logits`' shape without `axis`, in `logits`' float
        dtype (computed in at least float32).

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
        >>> labels = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        >>> [round(v, 4) for v in gx.losses.softmax_cross_entropy(logits, labels).tolist()]
        [0.2761, 2.9518]

    Note:
        A logit of ``-inf`` with label 0 gives NaN here (``0 * -inf``), as in
        optax; :func:`safe_softmax_cross_entropy` treats it as 0.

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), Eq. 6.30 and Section 6.2.2.3.
    """
    x = _common.as_compute(logits)
    y = _common.as_compute(labels, like=logits)
    mask = _common.expand_where(where, x.ndim, axis)
    lsm = _common.log_softmax(x, axis, mask)
    loss = -_common.masked_sum(y * lsm, axis, mask)
    return _common.cast_out(loss, jnp.asarray(logits))


def safe_softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Softmax cross-entropy with the convention :math:`0 \log 0 = 0`.

    .. math::
        \ell(x, y) = -\sum_{j:\, y_j \neq 0} y_j \log \operatorname{softmax}(x)_j,

    so a logit of ``-inf`` with label 0 contributes 0 instead of NaN (rows
    whose logits are all ``-inf`` are still NaN).

    Args:
        logits: unnormalized log-probabilities, classes on the last axis.
        labels: target distributions broadcastable to `logits`.

    Returns:
        The loss per example (`logits`' shape without the last axis), in
        `logits`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> float(gx.losses.safe_softmax_cross_entropy(
        ...     jnp.array([0.0, -jnp.inf]), jnp.array([1.0, 0.0]))) == 0.0
        True

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), Eq. 6.30.
    """
    x = _common.as_compute(logits)
    y = _common.as_compute(labels, like=logits)
    lsm = _common.log_softmax(x, -1, None)
    terms = jnp.where(y != 0, y * lsm, jnp.zeros((), x.dtype))
    return _common.cast_out(-jnp.sum(terms, axis=-1), jnp.asarray(logits))


def _check_labels_in_range(
    labels: np.ndarray, num_classes: int, rows: np.ndarray | None
) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if rows is not None:
        bad = bad & np.broadcast_to(rows, bad.shape)
    if np.any(bad):
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        value = int(labels[position])
        raise ValueError(
            f"softmax_cross_entropy_with_integer_labels: label {value} at position "
            f"{position} is out of range for {num_classes} classes; labels must be in "
            f"[0, {num_classes - 1}] (mask padded rows with `where`)."
        )


def softmax_cross_entropy_with_integer_labels(
    logits: jax.Array,
    labels: jax.Array,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Softmax cross-entropy against integer class labels.

    .. math::
        \ell(x, c) = \operatorname{LSE}(x) - x_c
                   = -\log \frac{e^{x_c}}{\sum_k e^{x_k}},

    with the log-sum-exp formed after subtracting the maximum.

    Args:
        logits: unnormalized log-probabilities, classes along `axis`. With a
            tuple of axes, a label is a flat (C-order) index into the slice
            ``logits[axis]``.
        labels: integer class indices in ``[0, num_classes - 1]``, with
            `logits`' shape without `axis`.
        axis: the class axis or axes.
        where: optional boolean mask, either `logits`' shape (entries outside it
            are left out of the log-sum-exp) or the batch shape (rows outside it
            give 0 and their labels are not checked).

    Returns:
        The loss per example, in `logits`' float dtype (computed in at least float32).

    Raises:
        ValueError: if a concrete label is out of range; the message names the
            label's value and position. Under ``jit`` (traced labels) nothing is
            checked and an out-of-range label gives NaN.
        TypeError: if `labels` is not an integer array.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> logits = jnp.array([[1.2, -0.8, -0.5], [0.9, -1.2, 1.1]])
        >>> loss = gx.losses.softmax_cross_entropy_with_integer_labels(logits, jnp.array([0, 1]))
        >>> [round(v, 4) for v in loss.tolist()]
        [0.2761, 2.9518]

    Note:
        optax returns NaN for a label ``>= num_classes`` and silently wraps a
        negative label to the last classes; gradxform raises for concrete labels
        and returns NaN for traced ones.

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), Section 6.2.2.3.
    """
    logits = jnp.asarray(logits)
    labels_arr = labels if isinstance(labels, jax.core.Tracer) else jnp.asarray(labels)
    if not jnp.issubdtype(labels_arr.dtype, jnp.integer):
        raise TypeError(
            "softmax_cross_entropy_with_integer_labels: labels must be integers; "
            f"got dtype {labels_arr.dtype}."
        )
    axes = _common.axes_tuple(axis, logits.ndim)
    batch_shape = tuple(s for i, s in enumerate(logits.shape) if i not in axes)
    num_classes = int(np.prod([logits.shape[a] for a in axes]))
    dest = tuple(range(logits.ndim - len(axes), logits.ndim))
    x = jnp.moveaxis(_common.as_compute(logits), axes, dest).reshape(
        batch_shape + (num_classes,)
    )
    mask = _common.expand_where(where, logits.ndim, axes)
    rows = None
    if mask is not None:
        mask = jnp.broadcast_to(mask, jnp.broadcast_shapes(mask.shape, logits.shape))
        mask = jnp.moveaxis(mask, axes, dest).reshape(batch_shape + (num_classes,))
        rows = jnp.any(mask, axis=-1)
    if _common.is_concrete(labels_arr, rows):
        _check_labels_in_range(
            np.asarray(labels_arr),
            num_classes,
            None if rows is None else np.asarray(rows),
        )
    lsm = _common.log_softmax(x, -1, mask)
    valid = (labels_arr >= 0) & (labels_arr < num_classes)
    index = jnp.where(valid, labels_arr, 0).astype(jnp.int32)
    picked = jnp.take_along_axis(lsm, index[..., None], axis=-1)[..., 0]
    loss = jnp.where(valid, -picked, jnp.array(jnp.nan, x.dtype))
    if rows is not None:
        loss = jnp.where(rows, loss, jnp.zeros((), x.dtype))
    return _common.cast_out(loss, logits)


def sigmoid_binary_cross_entropy(logits, labels):
    r"""Element-wise cross-entropy of ``sigmoid(logits)`` against binary or soft labels.

    .. math::
        \ell(z, y) = -y \log \sigma(z) - (1 - y) \log \sigma(-z),
        \qquad \log\sigma(z) = -\operatorname{softplus}(-z),

    finite for logits of :math:`\pm 10^4` (no ``log(0)``).

    Args:
        logits: logit of the positive class per element.
        labels: labels in {0, 1} or probabilities in [0, 1], broadcastable to `logits`.

    Returns:
        The loss per element (the broadcast shape), in `logits`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> loss = gx.losses.sigmoid_binary_cross_entropy(jnp.array([0.0, 2.0]), jnp.array([1.0, 0.0]))
        >>> [round(v, 4) for v in loss.tolist()]
        [0.6931, 2.1269]

    References:
        Goodfellow, Bengio and Courville, *Deep Learning* (2016), Section 6.2.2.2, Eq. 6.22.
    """
    z = _common.as_compute(logits)
    y = _common.as_compute(labels, like=logits)
    loss = -y * jax.nn.log_sigmoid(z) - (1.0 - y) * jax.nn.log_sigmoid(-z)
    return _common.cast_out(loss, jnp.asarray(logits))


def sigmoid_focal_loss(
    logits: jax.Array,
    labels: jax.Array,
    *,
    alpha: float | None = None,
    gamma: float = 2.0,
) -> jax.Array:
    r"""Focal loss: sigmoid cross-entropy down-weighted on well-classified elements.

    .. math::
        \ell(z, y) = \alpha_t\, (1 - p_t)^{\gamma}\, \operatorname{BCE}(z, y),
        \quad p_t = y\,\sigma(z) + (1 - y)\,\sigma(-z),
        \quad \alpha_t = \alpha y + (1 - \alpha)(1 - y),

    with :math:`(1 - p_t)^\gamma = \exp\big(\gamma \log(y\,\sigma(-z) + (1-y)\,\sigma(z))\big)`
    formed in log space (finite values and gradients for :math:`\gamma < 1` and
    logits of :math:`\pm 10^4`). Without `alpha`, :math:`\alpha_t = 1`.

    Args:
        logits: logit of the positive class per element.
        labels: labels in {0, 1} or soft labels in [0, 1], broadcastable to `logits`.
        alpha: optional weight of the positive class, in [0, 1].
        gamma: focusing exponent, >= 0 (0 gives the plain cross-entropy).

    Returns:
        The loss per element, in `logits`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> loss = gx.losses.sigmoid_focal_loss(jnp.array([0.0, 2.0]), jnp.array([1.0, 1.0]))
        >>> [round(v, 4) for v in loss.tolist()]
        [0.1733, 0.0018]

    References:
        Lin, Goyal, Girshick, He and Dollar (2017), *Focal Loss for Dense Object
        Detection*, Eq. 5 (and Eq. 4 for alpha).
    """
    z = _common.as_compute(logits)
    y = _common.as_compute(labels, like=logits)
    ce = -y * jax.nn.log_sigmoid(z) - (1.0 - y) * jax.nn.log_sigmoid(-z)
    neg_inf = jnp.array(-jnp.inf, z.dtype)
    log_y = jnp.where(y > 0, jnp.log(jnp.where(y > 0, y, 1.0)), neg_inf)
    log_1my = jnp.where(y < 1, jnp.log1p(-jnp.where(y < 1, y, 0.0)), neg_inf)
    a = log_y + jax.nn.log_sigmoid(-z)
    b = log_1my + jax.nn.log_sigmoid(z)
    hi = jnp.maximum(a, b)
    lo = jnp.minimum(a, b)
    safe_hi = jnp.where(jnp.isfinite(hi), hi, 0.0)
    log_one_minus_pt = hi + jnp.log1p(
        jnp.exp(jnp.where(jnp.isfinite(lo), lo - safe_hi, neg_inf))
    )
    loss = jnp.exp(gamma * log_one_minus_pt) * ce
    if alpha is not None:
        loss = (alpha * y + (1.0 - alpha) * (1.0 - y)) * loss
    return _common.cast_out(loss, jnp.asarray(logits))


def poly_loss_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    epsilon: float = 2.0,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Poly-1 loss: softmax cross-entropy plus :math:`\epsilon (1 - P_t)`.

    .. math::
        \ell(x, y) = \sum_j y_j \Big(-\log p_j + \epsilon\,(1 - p_j)\Big),
        \qquad p = \operatorname{softmax}(x),

    which for a one-hot `y` is :math:`-\log P_t + \epsilon (1 - P_t)`.

    Args:
        logits: unnormalized log-probabilities, classes along `axis`.
        labels: target distributions broadcastable to `logits`.
        epsilon: coefficient of the first polynomial term (any real; the paper
            recommends 2 for ImageNet classification, -1 for detection).
        axis: the class axis or axes.
        where: optional boolean mask of `logits`' shape or of the batch shape.

    Returns:
        The loss per example, in `logits`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> loss = gx.losses.poly_loss_cross_entropy(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 1.0, 0.0]))
        >>> round(float(loss), 3)  # -log 0.2447 + 2 (1 - 0.2447)
        2.918

    References:
        Leng et al. (2022), *PolyLoss: A Polynomial Expansion Perspective of
        Classification Loss Functions*, Eq. 3 (Poly-1).
    """
    x = _common.as_compute(logits)
    y = _common.as_compute(labels, like=logits)
    mask = _common.expand_where(where, x.ndim, axis)
    lsm = _common.log_softmax(x, axis, mask)
    terms = y * (-lsm + epsilon * (1.0 - jnp.exp(lsm)))
    return _common.cast_out(_common.masked_sum(terms, axis, mask), jnp.asarray(logits))


def hinge_loss(predictor_outputs: jax.Array, targets: jax.Array) -> jax.Array:
    r"""Binary hinge loss :math:`\max(0,\, 1 - y\, s)` for targets in {-1, 1}.

    Args:
        predictor_outputs: decision values `s`.
        targets: targets in {-1, 1}, broadcastable to `predictor_outputs`.

    Returns:
        The loss per element, in `predictor_outputs`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> loss = gx.losses.hinge_loss(jnp.array([0.3, -2.0, 1.5]), jnp.array([1.0, 1.0, -1.0]))
        >>> [round(v, 4) for v in loss.tolist()]
        [0.7, 3.0, 2.5]

    References:
        Cortes and Vapnik (1995), *Support-Vector Networks*; Hastie, Tibshirani and
        Friedman, *The Elements of Statistical Learning* (2009), Eq. 12.25.
    """
    s = _common.as_compute(predictor_outputs)
    y = _common.as_compute(targets, like=predictor_outputs)
    return _common.cast_out(
        jnp.maximum(0.0, 1.0 - y * s), jnp.asarray(predictor_outputs)
    )


def perceptron_loss(predictor_outputs: jax.Array, targets: jax.Array) -> jax.Array:
    r"""Binary perceptron loss :math:`\max(0,\, -y\, s)` for targets in {-1, 1}.

    Args:
        predictor_outputs: decision values `s`.
        targets: targets in {-1, 1}, broadcastable to `predictor_outputs`.

    Returns:
        The loss per element, in `predictor_outputs`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.losses.perceptron_loss(jnp.array([0.3, -2.0, 1.5]), jnp.array([1.0, 1.0, -1.0])).tolist()
        [0.0, 2.0, 1.5]

    References:
        Rosenblatt (1958); Bishop, *Pattern Recognition and Machine Learning* (2006), Eq. 4.54.
    """
    s = _common.as_compute(predictor_outputs)
    y = _common.as_compute(targets, like=predictor_outputs)
    return _common.cast_out(jnp.maximum(0.0, -y * s), jnp.asarray(predictor_outputs))


def _label_scores(scores: jax.Array, labels: jax.Array) -> jax.Array:
    index = jnp.asarray(labels).astype(jnp.int32)
    return jnp.take_along_axis(scores, index[..., None], axis=-1)[..., 0]


def multiclass_hinge_loss(scores: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Multiclass (Crammer-Singer) hinge loss.

    .. math::
        \ell(s, c) = \max_j \big(s_j + [j \neq c]\big) - s_c .

    Args:
        scores: scores per class, classes on the last axis.
        labels: integer labels, `scores`' shape without the last axis.

    Returns:
        The loss per example, in `scores`' float dtype.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.losses.multiclass_hinge_loss(jnp.array([[1.0, 2.0, 3.0]]), jnp.array([0])).tolist()
        [3.0]

    References:
        Crammer and Singer (2001), *On the Algorithmic Implementation of Multiclass
        Kernel-based Vector Machines*, Eq. 13.
    """
    s = _common.as_compute(scores)
    margin = 1.0 - jax.nn.one_hot(labels, s.shape[-1], dtype=s.dtype)
    loss = jnp.max(s + margin, axis=-1) - _label_scores(s, labels)
    return _common.cast_out(loss, jnp.asarray(scores))


def multiclass_perceptron_loss(scores: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Multiclass perceptron loss :math:`\max_j s_j - s_c`.

    Args:
        scores: scores per class, classes on the last axis.
        labels: integer labels, `scores`' shape without the last axis.

    Returns:
        The loss per example, in `scores`' float dtype.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.losses.multiclass_perceptron_loss(jnp.array([[1.0, 2.0, 3.0]]), jnp.array([0])).tolist()
        [2.0]

    References:
        Collins (2002), *Discriminative Training Methods for Hidden Markov Models*, Fig. 1.
    """
    s = _common.as_compute(scores)
    loss = jnp.max(s, axis=-1) - _label_scores(s, labels)
    return _common.cast_out(loss, jnp.asarray(scores))


def _sparsemax(z: jax.Array) -> jax.Array:
    """Euclidean projection of `z` onto the simplex, along the last axis (Martins 2016, Alg. 1)."""
    k = z.shape[-1]
    z_sorted = -jnp.sort(-z, axis=-1)
    cumsum = jnp.cumsum(z_sorted, axis=-1)
    ks = jnp.arange(1, k + 1, dtype=z.dtype)
    support = 1.0 + ks * z_sorted > cumsum
    k_z = jnp.sum(support, axis=-1, keepdims=True)
    tau = (jnp.take_along_axis(cumsum, k_z - 1, axis=-1) - 1.0) / k_z.astype(z.dtype)
    return jnp.maximum(z - tau, 0.0)


def multiclass_sparsemax_loss(scores: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Multiclass sparsemax loss (the Fenchel-Young loss of sparsemax).

    .. math::
        \ell(z, c) = \langle p, z\rangle - \tfrac12 \lVert p \rVert^2 + \tfrac12 - z_c,
        \qquad p = \operatorname{sparsemax}(z) = \arg\min_{q \in \Delta} \lVert q - z \rVert^2,

    whose gradient is :math:`p - e_c`.

    Args:
        scores: scores per class, classes on the last axis.
        labels: integer labels, `scores`' shape without the last axis.

    Returns:
        The loss per example, in `scores`' float dtype.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.losses.multiclass_sparsemax_loss(jnp.array([[1.0, 2.0, 3.0]]), jnp.array([0])).tolist()
        [2.0]

    References:
        Martins and Astudillo (2016), *From Softmax to Sparsemax*, Eq. 19 and
        Algorithm 1; Blondel, Martins and Niculae (2020), JMLR, Section 4.
    """
    z = _common.as_compute(scores)
    p = jax.lax.stop_gradient(_sparsemax(z))
    # <p, z> - |p|^2 / 2 has gradient p (Danskin); p itself is held constant.
    loss = (
        jnp.sum(p * z, axis=-1)
        - 0.5 * jnp.sum(p * p, axis=-1)
        + 0.5
        - _label_scores(z, labels)
    )
    return _common.cast_out(loss, jnp.asarray(scores))


def sparsemax_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    r"""Binary sparsemax loss (the modified Huber loss of the margin).

    With the margin :math:`s = (2y - 1)\, z`,

    .. math::
        \ell(z, y) = \begin{cases} -s & s \le -1 \\ \tfrac14 (1 - s)^2 & -1 < s < 1 \\
        0 & s \ge 1 \end{cases},

    which is zero exactly when ``jax.nn.sparse_sigmoid(z) == y``.

    Args:
        logits: scores `z`.
        labels: labels in {0, 1} (int or float), broadcastable to `logits`.

    Returns:
        The loss per element, in `logits`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> [round(v, 4) for v in gx.losses.sparsemax_loss(jnp.array([0.3, -2.0]), jnp.array([1, 1])).tolist()]
        [0.1225, 2.0]

    References:
        Blondel, Martins and Niculae (2020), *Learning with Fenchel-Young Losses*,
        JMLR 21, Section 4.4 and Table 1.
    """
    z = _common.as_compute(logits)
    y = _common.as_compute(labels, like=logits)
    s = (2.0 * y - 1.0) * z
    quad = 0.25 * jnp.square(1.0 - s)
    loss = jnp.where(s <= -1.0, -s, jnp.where(s >= 1.0, jnp.zeros((), z.dtype), quad))
    return _common.cast_out(loss, jnp.asarray(logits))


def smooth_labels(
    labels: jax.Array,
    alpha: float,
    *,
    axis: Axis = -1,
    where: jax.Array | None = None,
) -> jax.Array:
    r"""Label smoothing towards the uniform distribution (optax's form).

    .. math::
        \tilde y = (1 - \alpha)\, y + \frac{\alpha}{k},

    with `k` the number of classes (the size of `axis`, or the number of True
    entries of `where` along it). The true class of a one-hot `y` gets
    :math:`1 - \alpha + \alpha / k`.

    Note:
        :func:`gradxform.nn.smooth_labels` is the other common form,
        :math:`(1 - \epsilon) y + \epsilon (1 - y) / (k - 1)` (Goodfellow et al.
        2016, Section 7.5.1: the true class gets exactly :math:`1 - \epsilon`);
        the two agree for :math:`\alpha = \epsilon k / (k - 1)`. Use this one to
        reproduce optax (``optax.smooth_labels``) and Mueller et al. (2019).

    Args:
        labels: one-hot (or soft) labels, classes along `axis`.
        alpha: the smoothing factor, usually in [0, 1].
        axis: the class axis or axes.
        where: optional boolean mask; only True entries are counted in `k`.

    Returns:
        Smoothed labels, `labels`' shape, in `labels`' float dtype (float32 for
        integer labels).

    Raises:
        ValueError: if `where` does not broadcast to `labels`.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> y = gx.losses.smooth_labels(jnp.array([0.0, 1.0, 0.0, 0.0, 0.0]), 0.2)
        >>> [round(v, 4) for v in y.tolist()]
        [0.04, 0.84, 0.04, 0.04, 0.04]

    References:
        Szegedy et al. (2016), *Rethinking the Inception Architecture*, Section 7;
        Mueller, Kornblith and Hinton (2019), *When does label smoothing help?*, Section 2.
    """
    y = _common.as_compute(labels)
    axes = _common.axes_tuple(axis, y.ndim)
    mask = _common.expand_where(where, y.ndim, axes)
    if mask is None:
        k = float(np.prod([y.shape[a] for a in axes]))
    else:
        mask = jnp.broadcast_to(mask, jnp.broadcast_shapes(mask.shape, y.shape))
        k = jnp.sum(mask, axis=axes, keepdims=True).astype(y.dtype)
    smoothed = (1.0 - alpha) * y + alpha / k
    return _common.cast_out(smoothed, jnp.asarray(labels))
