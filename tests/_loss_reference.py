"""NumPy float64 references for `gradxform.losses`, each written from its source's formula.

Same names and arguments as the losses. They are deliberately plain (loops,
direct formulas, brute-force enumeration for CTC) so that they share no code
or trick with the library.
"""

from __future__ import annotations

import itertools

import numpy as np


def _f(x):
    return np.asarray(x, dtype=np.float64)


def _log_softmax(x, axis=-1, where=None):
    """log softmax over `axis`, entries outside `where` excluded (Goodfellow et al. 2016, Eq. 6.29)."""
    x = _f(x)
    if where is not None:
        x = np.where(where, x, -np.inf)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.max(x, axis=axis, keepdims=True)
        return x - m - np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))


def _expand(where, ndim, axis):
    if where is None:
        return None
    where = np.asarray(where, bool)
    if where.ndim == ndim - 1:
        where = np.expand_dims(where, axis)
    return where


def softmax_cross_entropy(logits, labels, axis=-1, where=None):
    """-sum_j y_j log softmax(x)_j (Goodfellow et al. 2016, Eq. 6.30)."""
    x = _f(logits)
    w = _expand(where, x.ndim, axis)
    lsm = _log_softmax(x, axis, w)
    terms = _f(labels) * lsm
    if w is not None:
        terms = np.where(w, terms, 0.0)
    return -np.sum(terms, axis=axis)


def safe_softmax_cross_entropy(logits, labels):
    """Eq. 6.30 with 0 log 0 = 0."""
    lsm = _log_softmax(logits)
    y = _f(labels)
    return -np.sum(np.where(y != 0, y * lsm, 0.0), axis=-1)


def softmax_cross_entropy_with_integer_labels(logits, labels, axis=-1, where=None):
    """log sum_k e^{x_k} - x_c (Goodfellow et al. 2016, Section 6.2.2.3)."""
    x = _f(logits)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    axes = tuple(a % x.ndim for a in axes)
    dest = tuple(range(x.ndim - len(axes), x.ndim))
    batch = tuple(s for i, s in enumerate(x.shape) if i not in axes)
    k = int(np.prod([x.shape[a] for a in axes]))
    xf = np.moveaxis(x, axes, dest).reshape(batch + (k,))
    rows = None
    wf = None
    if where is not None:
        w = np.asarray(where, bool)
        if w.ndim == len(batch):
            rows = w
        else:
            wf = np.moveaxis(np.broadcast_to(w, x.shape), axes, dest).reshape(
                batch + (k,)
            )
    # log-sum-exp over the selected classes, minus the label's logit (selected or not).
    sel = np.ones(xf.shape, bool) if wf is None else wf
    m = np.max(np.where(sel, xf, -np.inf), axis=-1, keepdims=True)
    lse = (
        m + np.log(np.sum(np.where(sel, np.exp(xf - m), 0.0), axis=-1, keepdims=True))
    )[..., 0]
    out = lse - np.take_along_axis(xf, np.asarray(labels)[..., None], -1)[..., 0]
    if rows is not None:
        out = np.where(rows, out, 0.0)
    return out


def _sigmoid(z):
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-_f(z)))


def _log_sigmoid(z):
    z = _f(z)
    return -np.logaddexp(0.0, -z)


def sigmoid_binary_cross_entropy(logits, labels):
    """-y log s(z) - (1 - y) log s(-z) (Goodfellow et al. 2016, Eq. 6.22)."""
    y = _f(labels)
    return -y * _log_sigmoid(logits) - (1 - y) * _log_sigmoid(-_f(logits))


def sigmoid_focal_loss(logits, labels, *, alpha=None, gamma=2.0):
    """alpha_t (1 - p_t)^gamma CE (Lin et al. 2017, Eqs. 4-5), p_t = y p + (1 - y)(1 - p)."""
    z, y = _f(logits), _f(labels)
    p = _sigmoid(z)
    p_t = y * p + (1 - y) * (1 - p)
    loss = (1 - p_t) ** gamma * sigmoid_binary_cross_entropy(z, y)
    if alpha is not None:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    return loss


def poly_loss_cross_entropy(logits, labels, *, epsilon=2.0, axis=-1, where=None):
    """Poly-1: -log P_t + epsilon (1 - P_t), per label mass (Leng et al. 2022, Eq. 3)."""
    x = _f(logits)
    w = _expand(where, x.ndim, axis)
    lsm = _log_softmax(x, axis, w)
    y = _f(labels)
    with np.errstate(invalid="ignore"):  # masked entries: 0 * inf, dropped below
        terms = y * (-lsm + epsilon * (1 - np.exp(lsm)))
    if w is not None:
        terms = np.where(w, terms, 0.0)
    return np.sum(terms, axis=axis)


def hinge_loss(predictor_outputs, targets):
    """max(0, 1 - y s) (Cortes and Vapnik 1995)."""
    return np.maximum(0.0, 1 - _f(targets) * _f(predictor_outputs))


def perceptron_loss(predictor_outputs, targets):
    """max(0, -y s) (Bishop 2006, Eq. 4.54)."""
    return np.maximum(0.0, -_f(targets) * _f(predictor_outputs))


def multiclass_hinge_loss(scores, labels):
    """max_j (s_j + [j != c]) - s_c (Crammer and Singer 2001, Eq. 13)."""
    s = _f(scores)
    out = np.empty(s.shape[:-1])
    for idx in np.ndindex(*s.shape[:-1]):
        c = int(np.asarray(labels)[idx])
        out[idx] = max(s[idx][j] + (j != c) for j in range(s.shape[-1])) - s[idx][c]
    return out


def multiclass_perceptron_loss(scores, labels):
    """max_j s_j - s_c (Collins 2002)."""
    s = _f(scores)
    return (
        np.max(s, -1) - np.take_along_axis(s, np.asarray(labels)[..., None], -1)[..., 0]
    )


def sparsemax(z):
    """Projection onto the simplex (Martins and Astudillo 2016, Algorithm 1), one vector."""
    z = _f(z)
    zs = np.sort(z)[::-1]
    k = max(j for j in range(1, len(z) + 1) if 1 + j * zs[j - 1] > zs[:j].sum())
    tau = (zs[:k].sum() - 1) / k
    return np.maximum(z - tau, 0.0)


def multiclass_sparsemax_loss(scores, labels):
    """Fenchel-Young loss of sparsemax: <p, z> - |p|^2/2 + 1/2 - z_c (Martins 2016, Eq. 19)."""
    s = _f(scores)
    out = np.empty(s.shape[:-1])
    for idx in np.ndindex(*s.shape[:-1]):
        z = s[idx]
        p = sparsemax(z)
        out[idx] = p @ z - 0.5 * p @ p + 0.5 - z[int(np.asarray(labels)[idx])]
    return out


def sparsemax_loss(logits, labels):
    """Binary sparsemax loss: the FY loss with Omega(p) = p^2 - p over [0, 1]
    (Blondel et al. 2020, Section 4.4), evaluated by maximizing over p on a fine grid."""
    z, y = _f(logits), _f(labels)
    out = np.empty(np.broadcast(z, y).shape)
    grid = np.linspace(0.0, 1.0, 200001)
    # Omega(p) for the 2-class simplex (p, 1 - p), written on the scalar margin 2z:
    # Omega*(theta) = max_p theta p - (p^2 - p); loss = Omega*(z') + Omega(y) - z' y.
    for idx in np.ndindex(*out.shape):
        zi, yi = np.broadcast_to(z, out.shape)[idx], np.broadcast_to(y, out.shape)[idx]
        conj = np.max(zi * grid - (grid**2 - grid))
        out[idx] = conj + (yi**2 - yi) - zi * yi
    return out


def smooth_labels(labels, alpha, *, axis=-1, where=None):
    """(1 - alpha) y + alpha / k (Szegedy et al. 2016, Section 7)."""
    y = _f(labels)
    if where is None:
        k = y.shape[axis]
    else:
        k = np.sum(
            np.broadcast_to(_expand(where, y.ndim, axis), y.shape),
            axis=axis,
            keepdims=True,
        )
    return (1 - alpha) * y + alpha / k


def kl_divergence(log_predictions, targets, axis=-1, where=None):
    """sum t (log t - log p), 0 log 0 = 0 (Kullback and Leibler 1951, Eq. 2.4)."""
    t = _f(targets)
    terms = np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0) - t * _f(
        log_predictions
    )
    if where is not None:
        terms = np.where(where, terms, 0.0)
    return np.sum(terms, axis=axis)


def kl_divergence_with_log_targets(log_predictions, log_targets, axis=-1, where=None):
    """sum e^{lt} (lt - lp)."""
    lt = _f(log_targets)
    terms = np.exp(lt) * (lt - _f(log_predictions))
    if where is not None:
        terms = np.where(where, terms, 0.0)
    return np.sum(terms, axis=axis)


def generalized_kl_divergence(log_predictions, targets, axis=-1, where=None):
    """sum t log t - t log p - t + p (Boyd and Vandenberghe 2004, p. 90)."""
    t, lp = _f(targets), _f(log_predictions)
    terms = (
        np.where(t > 0, t * np.log(np.where(t > 0, t, 1.0)), 0.0)
        - t * lp
        - t
        + np.exp(lp)
    )
    if where is not None:
        terms = np.where(where, terms, 0.0)
    return np.sum(terms, axis=axis)


convex_kl_divergence = generalized_kl_divergence


def squared_error(predictions, targets=None):
    r = _f(predictions) - (0.0 if targets is None else _f(targets))
    return r**2


def l2_loss(predictions, targets=None):
    """(1/2)(p - t)^2 (Bishop 2006, Eq. 1.2)."""
    return 0.5 * squared_error(predictions, targets)


def huber_loss(predictions, targets=None, *, delta=1.0):
    """Huber (1964), Section 3."""
    r = np.abs(_f(predictions) - (0.0 if targets is None else _f(targets)))
    return np.where(r <= delta, 0.5 * r**2, delta * (r - 0.5 * delta))


def log_cosh(predictions, targets=None):
    """log cosh(p - t) (Chen et al. 2019, Eq. 3)."""
    r = _f(predictions) - (0.0 if targets is None else _f(targets))
    return np.logaddexp(r, -r) - np.log(2.0)


def cosine_similarity(predictions, targets, *, epsilon=0.0, axis=-1, where=None):
    """<p, t> / (sqrt(max(|p|^2, eps)) sqrt(max(|t|^2, eps)))."""
    p, t = np.broadcast_arrays(_f(predictions), _f(targets))
    if where is not None:
        p = np.where(where, p, 0.0)
        t = np.where(where, t, 0.0)
    np_ = np.sqrt(np.maximum(np.sum(p * p, axis=axis), epsilon))
    nt = np.sqrt(np.maximum(np.sum(t * t, axis=axis), epsilon))
    return np.sum(p * t, axis=axis) / (np_ * nt)


def cosine_distance(predictions, targets, *, epsilon=0.0, axis=-1, where=None):
    return 1.0 - cosine_similarity(
        predictions, targets, epsilon=epsilon, axis=axis, where=where
    )


def ranking_softmax_loss(
    logits, labels, *, where=None, weights=None, reduce_fn=np.mean
):
    """-sum_i w_i y_i log softmax(s)_i over valid items (Cao et al. 2007, Eq. 3)."""
    s = _f(logits)
    y = _f(labels) * (1.0 if weights is None else _f(weights))
    w = np.ones(s.shape, bool) if where is None else np.asarray(where, bool)
    lsm = _log_softmax(s, -1, w)
    with np.errstate(invalid="ignore"):  # masked entries: 0 * inf, dropped by the where
        loss = -np.sum(np.where(w & (y != 0), y * lsm, 0.0), axis=-1)
    if reduce_fn is None:
        return loss
    if where is None:
        return reduce_fn(loss)
    return reduce_fn(loss, where=np.any(w, -1))


def ntxent(embeddings, labels, temperature=0.07):
    """Chen et al. (2020), Eq. 1, averaged over all positive pairs (i != j, same label)."""
    e = _f(embeddings)
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = u @ u.T / temperature
    labels = np.asarray(labels)
    losses = []
    for i, j in itertools.permutations(range(len(labels)), 2):
        if labels[i] == labels[j]:
            neg = [k for k in range(len(labels)) if labels[k] != labels[i]]
            denom = np.exp(s[i, j]) + sum(np.exp(s[i, k]) for k in neg)
            losses.append(np.log(denom) - s[i, j])
    return np.mean(losses)


def triplet_margin_loss(
    anchors, positives, negatives, axis=-1, norm_degree=2, margin=1.0, eps=1e-6
):
    """max(0, d(a, p) - d(a, n) + margin), d = (sum |x - y|^q + eps)^(1/q) (Balntas et al. 2016, Eq. 1)."""
    a, p, n = _f(anchors), _f(positives), _f(negatives)

    def d(x, y):
        return (np.sum(np.abs(x - y) ** norm_degree, axis=axis) + eps) ** (
            1 / norm_degree
        )

    return np.maximum(0.0, d(a, p) - d(a, n) + margin)


def make_fenchel_young_loss(max_fun):
    """Omega*(theta) - <theta, y> (Blondel et al. 2020, Definition 2, without Omega(y))."""

    def loss(scores, targets, *args, **kwargs):
        s = _f(scores)
        out = np.empty(s.shape[:-1])
        for idx in np.ndindex(*s.shape[:-1]):
            out[idx] = (
                max_fun(s[idx], *args, **kwargs)
                - s[idx] @ np.broadcast_to(_f(targets), s.shape)[idx]
            )
        return out

    return loss


def _softmax(x, axis=-1):
    return np.exp(_log_softmax(x, axis))


def dice_loss(
    predictions,
    targets,
    *,
    class_weights=None,
    smooth=1.0,
    alpha=0.5,
    beta=0.5,
    apply_softmax=True,
    reduction="mean",
    ignore_background=False,
    axis=None,
):
    """Tversky / soft Dice per class (Salehi et al. 2017, Eq. 3; Milletari et al. 2016, Eq. 1)."""
    p, t = _f(predictions), _f(targets)
    if p.ndim == t.ndim - 1:
        p = p[..., None]
    if t.ndim == p.ndim - 1:
        t = t[..., None]
    if apply_softmax:
        p = _sigmoid(p) if p.shape[-1] == 1 else _softmax(p)
    axes = tuple(range(1, p.ndim - 1)) if axis is None else axis
    i_c = np.sum(p * t, axis=axes)
    p_c = np.sum(p, axis=axes)
    t_c = np.sum(t, axis=axes)
    loss = 1 - (i_c + smooth) / (
        i_c + alpha * (p_c - i_c) + beta * (t_c - i_c) + smooth
    )
    if class_weights is not None:
        loss = loss * _f(class_weights)
    if ignore_background and p.shape[-1] > 1:
        loss = loss[..., 1:]
    return {"mean": np.mean, "sum": np.sum}.get(reduction, lambda v, axis: v)(
        loss, axis=-1
    )


def multiclass_generalized_dice_loss(
    predictions, targets, *, smooth=1.0, apply_softmax=True, ignore_background=False
):
    """Per-class Dice weighted by 1/(F_c^2 + 1e-7) normalized to mean 1 (Sudre et al. 2017, Eq. 2 weights)."""
    t = _f(targets)
    f = np.sum(t, axis=tuple(range(t.ndim - 1)))
    w = 1 / (f**2 + 1e-7)
    w = w / w.sum() * len(w)
    return np.mean(
        dice_loss(
            predictions,
            targets,
            class_weights=w,
            smooth=smooth,
            apply_softmax=apply_softmax,
            reduction="none",
            ignore_background=ignore_background,
        )
    )


def binary_dice_loss(predictions, targets, *, smooth=1.0, apply_sigmoid=True):
    """1 - (2I + 2s) / (P + T + 2s) on sigmoid probabilities (Milletari et al. 2016, Eq. 1)."""
    p, t = _f(predictions), _f(targets)
    if p.shape[-1] != 1:
        p, t = p[..., None], t[..., None]
    return dice_loss(p, t, smooth=smooth, apply_softmax=apply_sigmoid)


def ctc_loss(
    logits, logit_paddings, labels, label_paddings, *, blank_id=0, log_epsilon=-1e5
):
    """-log sum over all alignments pi with B(pi) = y of prod_t p_t(pi_t) (Graves et al. 2006, Eq. 3),
    by brute-force enumeration of every path (small T and K only)."""
    logits = _f(logits)
    out = []
    for b in range(logits.shape[0]):
        t_len = int(np.rint(logits.shape[1] - np.sum(logit_paddings[b])))
        n_len = int(np.rint(labels.shape[1] - np.sum(label_paddings[b])))
        target = tuple(int(v) for v in np.asarray(labels)[b, :n_len])
        logp = _log_softmax(logits[b, :t_len])
        total = -np.inf
        for path in itertools.product(range(logits.shape[2]), repeat=t_len):
            collapsed = [k for i, k in enumerate(path) if (i == 0 or k != path[i - 1])]
            collapsed = tuple(k for k in collapsed if k != blank_id)
            if collapsed == target:
                total = np.logaddexp(total, sum(logp[i, k] for i, k in enumerate(path)))
        out.append(-total)
    return np.array(out)
