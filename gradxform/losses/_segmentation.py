"""Segmentation losses: soft Dice / Tversky, its binary form and a class-weighted form.

References: Milletari, Navab and Ahmadi (2016), *V-Net*; Tversky (1977) and
Salehi, Erdogmus and Gholipour (2017), *Tversky loss function for image
segmentation*; Sudre et al. (2017), *Generalised Dice overlap as a deep learning
loss function for highly unbalanced segmentations*.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from gradxform.losses import _common

_REDUCTIONS = ("mean", "sum", "none")


def _prepare(predictions, targets, fn: str):
    p = jnp.asarray(predictions)
    t = jnp.asarray(targets)
    if p.ndim == t.ndim - 1:
        p = p[..., None]
    if t.ndim == p.ndim - 1:
        t = t[..., None]
    if p.shape != t.shape:
        raise ValueError(
            f"{fn}: predictions and targets must have the same shape (up to a trailing "
            f"class axis of size 1); got {jnp.shape(predictions)} and {jnp.shape(targets)}."
        )
    return p, t


def dice_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    class_weights: jax.Array | None = None,
    smooth: float = 1.0,
    alpha: float = 0.5,
    beta: float = 0.5,
    apply_softmax: bool = True,
    reduction: str = "mean",
    ignore_background: bool = False,
    axis: int | Sequence[int] | None = None,
) -> jax.Array:
    r"""Soft Dice (Tversky) loss per class, reduced over classes.

    With probabilities :math:`p` (softmax over the last, class, axis; a sigmoid
    when there is a single class), summed over the spatial axes,
    :math:`I_c = \sum_i p_{ic} t_{ic}`, :math:`P_c = \sum_i p_{ic}`,
    :math:`T_c = \sum_i t_{ic}`:

    .. math::
        \ell_c = 1 - \frac{I_c + s}{I_c + \alpha (P_c - I_c) + \beta (T_c - I_c) + s},

    which for :math:`\alpha = \beta = \tfrac12` is :math:`1 - (2 I_c + 2s)/(P_c + T_c + 2s)`
    (the Dice coefficient). With `class_weights` each :math:`\ell_c` is multiplied
    by :math:`w_c` before the reduction.

    Args:
        predictions: logits ``[batch, *spatial, classes]`` (or probabilities with
            ``apply_softmax=False``); ``[..., 1]`` or a missing class axis is binary.
        targets: one-hot (or binary) targets, same shape.
        class_weights: optional ``[classes]`` weights.
        smooth: smoothing constant :math:`s` >= 0 added to numerator and denominator.
        alpha: weight of false positives (Tversky), >= 0.
        beta: weight of false negatives (Tversky), >= 0.
        apply_softmax: turn logits into probabilities (softmax, or sigmoid for one class).
        reduction: ``"mean"`` or ``"sum"`` over classes, or ``"none"``.
        ignore_background: leave class 0 out (when there is more than one class).
        axis: the axes summed over; default all but the first and the last.

    Returns:
        ``[batch]`` losses (``[batch, classes]`` for ``reduction="none"``), in
        `predictions`' float dtype.

    Raises:
        ValueError: if the shapes differ, `reduction` is unknown, or (for concrete
            inputs with ``apply_softmax=False`` and several classes) the
            predictions do not sum to one over the classes.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> logits = jnp.array([[1.0, -1.0], [0.5, 0.5]])
        >>> targets = jnp.array([[1.0, 0.0], [1.0, 0.0]])
        >>> [round(v, 4) for v in gx.losses.dice_loss(logits[..., None], targets[..., None]).tolist()]
        [0.1345, 0.2356]

    Note:
        optax also checks that the probabilities sum to one when there is a
        single class, so ``optax.losses.binary_dice_loss(p, t, apply_sigmoid=False)``
        rejects valid probabilities; gradxform checks only with several classes.

    References:
        Milletari, Navab and Ahmadi (2016), *V-Net*, Eq. 1 (with the squares
        dropped); Salehi, Erdogmus and Gholipour (2017), *Tversky loss function
        for image segmentation*, Eq. 3.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"dice_loss: reduction must be one of {_REDUCTIONS}; got {reduction!r}."
        )
    p, t = _prepare(predictions, targets, "dice_loss")
    out_like = jnp.asarray(predictions)
    probs = _common.as_compute(p)
    t = _common.as_compute(t, like=p)
    if not apply_softmax and probs.shape[-1] > 1 and _common.is_concrete(probs):
        sums = np.asarray(jnp.sum(probs, axis=-1))
        tol = max(
            1e-5, 8 * float(jnp.finfo(_common.float_dtype(p)).eps)
        )  # bf16 rows sum to 1 only roughly
        if not np.allclose(sums, 1.0, rtol=0.0, atol=tol):
            raise ValueError(
                "dice_loss: with apply_softmax=False, predictions must be probabilities "
                "summing to 1 over the last (class) axis; sums range over "
                f"[{sums.min():.6f}, {sums.max():.6f}]."
            )
    if apply_softmax:
        probs = (
            jax.nn.sigmoid(probs)
            if probs.shape[-1] == 1
            else jax.nn.softmax(probs, axis=-1)
        )
    axes = tuple(range(1, probs.ndim - 1)) if axis is None else axis
    inter = jnp.sum(probs * t, axis=axes)
    pred_sum = jnp.sum(probs, axis=axes)
    target_sum = jnp.sum(t, axis=axes)
    denom = inter + alpha * (pred_sum - inter) + beta * (target_sum - inter) + smooth
    loss = 1.0 - (inter + smooth) / denom
    if class_weights is not None:
        w = _common.as_compute(class_weights, like=p)
        if w.ndim != 1:
            raise ValueError(
                f"dice_loss: class_weights must be 1-D [classes]; got shape {w.shape}."
            )
        loss = loss * w
    if ignore_background and probs.shape[-1] > 1:
        loss = loss[..., 1:]
    if reduction == "mean":
        loss = jnp.mean(loss, axis=-1)
    elif reduction == "sum":
        loss = jnp.sum(loss, axis=-1)
    return _common.cast_out(loss, out_like)


def multiclass_generalized_dice_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    smooth: float = 1.0,
    apply_softmax: bool = True,
    ignore_background: bool = False,
) -> jax.Array:
    r"""Dice loss with Sudre et al.'s inverse-squared-frequency class weights (optax's form).

    .. math::
        w_c = \frac{C}{\sum_k 1 / (F_k^2 + 10^{-7})} \cdot \frac{1}{F_c^2 + 10^{-7}},
        \qquad F_c = \sum_{b, i} t_{bic},
        \qquad \mathcal L = \operatorname{mean}_{b, c}\; w_c\, \ell_{bc},

    with :math:`\ell_{bc}` the per-class Dice loss of :func:`dice_loss`
    (``alpha = beta = 0.5``); the weights are normalized to mean 1 and
    computed over the whole batch.

    Note:
        This follows optax: a weighted *mean of per-class Dice losses*.
        Sudre et al. (2017), Eq. 2, instead form one ratio
        :math:`1 - 2\sum_c w_c I_c / \sum_c w_c (P_c + T_c)`.

    Args:
        predictions: logits ``[batch, *spatial, classes]``.
        targets: one-hot targets, same shape.
        smooth: smoothing constant >= 0.
        apply_softmax: turn logits into probabilities.
        ignore_background: leave class 0 out.

    Returns:
        The scalar loss, in `predictions`' float dtype.

    Raises:
        ValueError: as :func:`dice_loss`.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> logits = jnp.array([[[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
        >>> targets = jnp.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]])
        >>> round(float(gx.losses.multiclass_generalized_dice_loss(logits, targets)), 4)
        0.15

    References:
        Sudre et al. (2017), *Generalised Dice overlap as a deep learning loss
        function for highly unbalanced segmentations*, Eq. 2 (the weights).
    """
    t = _common.as_compute(targets, like=jnp.asarray(predictions))
    freq = jnp.sum(t, axis=tuple(range(t.ndim - 1)))
    w = 1.0 / (freq * freq + 1e-7)
    w = w / jnp.sum(w) * w.shape[0]
    loss = dice_loss(
        predictions,
        targets,
        class_weights=w,
        smooth=smooth,
        apply_softmax=apply_softmax,
        reduction="none",
        ignore_background=ignore_background,
    )
    return _common.cast_out(jnp.mean(loss.astype(w.dtype)), jnp.asarray(predictions))


def binary_dice_loss(
    predictions: jax.Array,
    targets: jax.Array,
    *,
    smooth: float = 1.0,
    apply_sigmoid: bool = True,
) -> jax.Array:
    r"""Dice loss for binary segmentation: :func:`dice_loss` with one class.

    .. math::
        \ell = 1 - \frac{2 I + 2 s}{P + T + 2 s},
        \qquad I = \sum_i \sigma(z_i)\, t_i,\ P = \sum_i \sigma(z_i),\ T = \sum_i t_i .

    Args:
        predictions: logits ``[batch, *spatial]`` or ``[batch, *spatial, 1]``
            (probabilities with ``apply_sigmoid=False``).
        targets: binary targets, same shape.
        smooth: smoothing constant >= 0.
        apply_sigmoid: turn logits into probabilities.

    Returns:
        ``[batch]`` losses, in `predictions`' float dtype.

    Raises:
        ValueError: if the shapes differ.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> logits = jnp.array([[1.0, -1.0], [0.5, 0.5]])
        >>> targets = jnp.array([[1.0, 0.0], [1.0, 0.0]])
        >>> [round(v, 4) for v in gx.losses.binary_dice_loss(logits, targets).tolist()]
        [0.1345, 0.2356]

    References:
        Milletari, Navab and Ahmadi (2016), *V-Net*, Eq. 1.
    """
    p = jnp.asarray(predictions)
    t = jnp.asarray(targets)
    if p.ndim == t.ndim and p.shape[-1] != 1:
        p = p[..., None]
        t = t[..., None]
    return dice_loss(p, t, smooth=smooth, apply_softmax=apply_sigmoid, reduction="mean")
