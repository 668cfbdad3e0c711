"""Connectionist temporal classification (CTC) loss, by the forward algorithm in log space.

Reference: Graves, Fernandez, Gomez and Schmidhuber (2006), *Connectionist
Temporal Classification: Labelling Unsegmented Sequence Data with Recurrent
Neural Networks*, ICML, Section 4.1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform.losses import _common


def ctc_loss_with_forward_probs(
    logits: jax.Array,
    logit_paddings: jax.Array,
    labels: jax.Array,
    label_paddings: jax.Array,
    *,
    blank_id: int = 0,
    log_epsilon: float = -1e5,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    r"""CTC loss and the forward (alpha) log-probabilities.

    For a label sequence :math:`y_{1:N}` and per-frame log-probabilities
    :math:`\log p_t(k)` (a log-softmax of `logits`), the forward variables
    after frame `t` with the first `n` labels emitted, ending in a blank
    (:math:`\alpha^B`) or in label :math:`y_n` (:math:`\alpha^L`), are

    .. math::
        \alpha^B_t(n) &= \log p_t(\phi) + \operatorname{LSE}\big(\alpha^B_{t-1}(n),\ \alpha^L_{t-1}(n)\big), \\
        \alpha^L_t(n) &= \log p_t(y_n) + \operatorname{LSE}\big(\alpha^L_{t-1}(n),\ \alpha^B_{t-1}(n-1),\
                         [y_n \ne y_{n-1}]\ \alpha^L_{t-1}(n-1)\big),

    from :math:`\alpha^B_0(0) = 0` (everything else impossible, started at
    `log_epsilon`); padded frames copy the previous values. The loss is
    :math:`-\operatorname{LSE}(\alpha^B_T(N), \alpha^L_T(N))` with `N` the
    unpadded label length (Graves et al. 2006, Eqs. 6-8, with the blank-
    interleaved sequence split into its blank and label states).

    Args:
        logits: ``[B, T, K]`` logits (K classes including the blank).
        logit_paddings: ``[B, T]``, 1.0 marks a padded frame.
        labels: ``[B, N]`` integer labels (never `blank_id` in the unpadded part).
        label_paddings: ``[B, N]``, 1.0 marks padding; each row must be zeros
            followed by ones (right padding).
        blank_id: the class index of the blank.
        log_epsilon: the stand-in for :math:`\log 0` (finite, so gradients stay finite).

    Returns:
        ``(loss, logalpha_blank, logalpha_nonblank)``: ``[B]`` losses, the
        ``[T, B, N + 1]`` array of :math:`\alpha^B_t(n)` (``n = 0..N``) and the
        ``[T, B, N]`` array of :math:`\alpha^L_t(n)` (``n = 1..N`` at index
        ``n - 1``), for frames ``t = 1..T``, in `logits`' float dtype (computed
        in at least float32). As in optax, the last frame's blank row holds the
        total :math:`\operatorname{LSE}(\alpha^B_T(n), \alpha^L_T(n))` (so
        ``loss = -logalpha_blank[-1, b, N_b]``), and unreachable states hold
        values near `log_epsilon` (their exact values are not specified).

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> logits = jnp.zeros((1, 3, 3))
        >>> loss, _, _ = gx.losses.ctc_loss_with_forward_probs(
        ...     logits, jnp.zeros((1, 3)), jnp.array([[1, 2]]), jnp.zeros((1, 2)))
        >>> round(float(loss[0]), 4)  # 5 of the 27 paths give "1 2": -log(5/27)
        1.6864

    References:
        Graves et al. (2006), *Connectionist Temporal Classification*, ICML,
        Section 4.1, Eqs. 6-8.
    """
    logits = jnp.asarray(logits)
    b, t_max, _ = logits.shape
    labels = jnp.asarray(labels).astype(jnp.int32)
    if labels.ndim != 2 or labels.shape[0] != b:
        raise ValueError(
            f"ctc_loss: labels must be [B, N] with B={b}; got shape {labels.shape}."
        )
    n_max = labels.shape[1]
    if jnp.shape(logit_paddings) != (b, t_max) or jnp.shape(label_paddings) != (
        b,
        n_max,
    ):
        raise ValueError(
            f"ctc_loss: logit_paddings must be {(b, t_max)} and label_paddings {(b, n_max)}; "
            f"got {jnp.shape(logit_paddings)} and {jnp.shape(label_paddings)}."
        )
    x = _common.as_compute(logits)
    dtype = x.dtype
    logprobs = _common.log_softmax(x, -1, None)
    frame_pad = _common.as_compute(logit_paddings, like=logits) > 0.5
    label_lengths = n_max - jnp.sum(
        _common.as_compute(label_paddings, like=logits) > 0.5, axis=1
    )

    lp_blank = jnp.moveaxis(logprobs[:, :, blank_id], 1, 0)  # [T, B]
    lp_label = jnp.take_along_axis(logprobs, labels[:, None, :], axis=2)  # [B, T, N]
    lp_label = jnp.moveaxis(lp_label, 1, 0)  # [T, B, N]
    repeat = jnp.concatenate(
        [jnp.zeros((b, 1), jnp.bool_), labels[:, 1:] == labels[:, :-1]], axis=1
    )  # [B, N]: y_n == y_{n-1}
    eps = jnp.asarray(log_epsilon, dtype)

    alpha_b0 = jnp.full((b, n_max + 1), eps).at[:, 0].set(0.0)
    alpha_l0 = jnp.full((b, n_max), eps)

    pad_tb = jnp.moveaxis(frame_pad, 1, 0)  # [T, B]

    def step(carry, inputs):
        prev_b, prev_l = carry  # [B, N + 1] and [B, N]
        lpb, lpl, pad = inputs
        stay_l = jnp.concatenate([jnp.full((b, 1), eps), prev_l], axis=1)
        new_b = jnp.logaddexp(prev_b, stay_l) + lpb[:, None]
        from_prev_label = jnp.concatenate(
            [jnp.full((b, 1), eps), prev_l[:, :-1]], axis=1
        )
        from_prev_label = jnp.where(repeat, eps, from_prev_label)
        new_l = (
            jnp.logaddexp(jnp.logaddexp(prev_l, prev_b[:, :-1]), from_prev_label) + lpl
        )
        keep = pad[:, None]  # a padded frame changes nothing
        new_b = jnp.where(keep, prev_b, new_b)
        new_l = jnp.where(keep, prev_l, new_l)
        return (new_b, new_l), (new_b, new_l)

    (last_b, last_l), (alphas_b, alphas_l) = jax.lax.scan(
        step, (alpha_b0, alpha_l0), (lp_blank, lp_label, pad_tb)
    )
    # After the last frame, the blank row holds the total (blank or label) of each state.
    total = jnp.concatenate(
        [last_b[:, :1], jnp.logaddexp(last_b[:, 1:], last_l)], axis=1
    )
    alphas_b = alphas_b.at[-1].set(total)
    idx = label_lengths[:, None].astype(jnp.int32)
    loss = -jnp.take_along_axis(total, idx, axis=1)[:, 0]
    return (
        _common.cast_out(loss, logits),
        _common.cast_out(alphas_b, logits),
        _common.cast_out(alphas_l, logits),
    )


def ctc_loss(
    logits: jax.Array,
    logit_paddings: jax.Array,
    labels: jax.Array,
    label_paddings: jax.Array,
    *,
    blank_id: int = 0,
    log_epsilon: float = -1e5,
) -> jax.Array:
    r"""CTC loss :math:`-\log p(y \mid x)` per sequence; see :func:`ctc_loss_with_forward_probs`.

    .. math::
        -\log p(y \mid x) = -\log \sum_{\pi \in \mathcal B^{-1}(y)} \prod_t p_t(\pi_t),

    summed over all blank-interleaved alignments :math:`\pi` that collapse to `y`.

    Args:
        logits: ``[B, T, K]`` logits.
        logit_paddings: ``[B, T]``, 1.0 marks a padded frame.
        labels: ``[B, N]`` integer labels.
        label_paddings: ``[B, N]``, 1.0 marks (right) padding.
        blank_id: the class index of the blank.
        log_epsilon: the stand-in for :math:`\log 0`.

    Returns:
        ``[B]`` losses in `logits`' float dtype.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> loss = gx.losses.ctc_loss(jnp.zeros((1, 3, 3)), jnp.zeros((1, 3)),
        ...                           jnp.array([[1, 2]]), jnp.zeros((1, 2)))
        >>> round(float(loss[0]), 4)
        1.6864

    References:
        Graves et al. (2006), *Connectionist Temporal Classification*, ICML, Eq. 3 and Section 4.1.
    """
    loss, _, _ = ctc_loss_with_forward_probs(
        logits,
        logit_paddings,
        labels,
        label_paddings,
        blank_id=blank_id,
        log_epsilon=log_epsilon,
    )
    return loss
