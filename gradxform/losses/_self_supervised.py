"""Metric-learning losses: NT-Xent (SimCLR's contrastive loss) and the triplet margin loss.

References: Chen, Kornblith, Norouzi and Hinton (2020), *A Simple Framework for
Contrastive Learning of Visual Representations*; Balntas, Riba, Ponsa and
Mikolajczyk (2016), *Learning local feature descriptors with triplets and
shallow convolutional neural networks*.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradxform.losses import _common


def ntxent(
    embeddings: jax.Array, labels: jax.Array, temperature: float = 0.07
) -> jax.Array:
    r"""Normalized temperature-scaled cross-entropy (NT-Xent) over positive pairs.

    With cosine similarities :math:`s_{ij} = \langle u_i, u_j\rangle / \tau`,
    :math:`u = e / \lVert e \rVert`, positives :math:`P = \{(i, j): i \neq j,\ l_i = l_j\}`
    and negatives :math:`N_i = \{k: l_k \neq l_i\}`,

    .. math::
        \mathcal L = \frac{1}{|P|} \sum_{(i, j) \in P}
        -\log \frac{e^{s_{ij}}}{e^{s_{ij}} + \sum_{k \in N_i} e^{s_{ik}}}
        = \frac{1}{|P|} \sum_{(i, j) \in P}
        \operatorname{softplus}\Big(\log\sum_{k \in N_i} e^{s_{ik}} - s_{ij}\Big),

    formed with a log-sum-exp (finite for small temperatures). A batch
    without positive pairs gives NaN (0/0), as in optax.

    Args:
        embeddings: ``[batch, features]`` embeddings (non-zero rows).
        labels: ``[batch]`` integer group ids; equal ids form positive pairs.
        temperature: the temperature :math:`\tau` > 0.

    Returns:
        The scalar loss, in `embeddings`' float dtype.

    Raises:
        ValueError: if the shapes do not match.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> e = jnp.array([[1.0, 0.5], [0.8, 0.7], [-0.3, 1.0], [-0.5, 0.9], [0.2, -1.0]])
        >>> round(float(gx.losses.ntxent(e, jnp.array([0, 0, 0, 1, 1]), temperature=0.5)), 4)
        1.4116

    References:
        Chen et al. (2020), *A Simple Framework for Contrastive Learning of Visual
        Representations*, Eq. 1 and Algorithm 1 (here with several positives per
        anchor and only the other groups as negatives).
    """
    e = _common.as_compute(embeddings)
    labels = jnp.asarray(labels)
    u = e * jax.lax.rsqrt(jnp.sum(e * e, axis=-1, keepdims=True))
    sim = (u @ u.T) / temperature
    n = e.shape[0]
    same = labels[:, None] == labels[None, :]
    positive = same & ~jnp.eye(n, dtype=jnp.bool_)
    negative = ~same
    has_negative = jnp.any(negative, axis=-1, keepdims=True)
    m = jax.lax.stop_gradient(
        jnp.max(
            jnp.where(negative, sim, jnp.array(-jnp.inf, sim.dtype)),
            axis=-1,
            keepdims=True,
        )
    )
    m = jnp.where(has_negative, m, jnp.zeros((), sim.dtype))
    total = jnp.sum(
        jnp.where(negative, jnp.exp(sim - m), jnp.zeros((), sim.dtype)),
        axis=-1,
        keepdims=True,
    )
    lse_negative = m + jnp.log(jnp.where(has_negative, total, jnp.ones((), sim.dtype)))
    pair_loss = jnp.where(
        has_negative & positive,
        jax.nn.softplus(lse_negative - sim),
        jnp.zeros((), sim.dtype),
    )
    loss = jnp.sum(pair_loss) / jnp.sum(positive).astype(sim.dtype)
    return _common.cast_out(loss, jnp.asarray(embeddings))


def triplet_margin_loss(
    anchors: jax.Array,
    positives: jax.Array,
    negatives: jax.Array,
    axis: int = -1,
    norm_degree: float = 2,
    margin: float = 1.0,
    eps: float = 1e-6,
) -> jax.Array:
    r"""Triplet margin loss on :math:`p`-norm distances.

    .. math::
        \ell(a, p, n) = \max\big(0,\ d(a, p) - d(a, n) + \text{margin}\big),
        \qquad d(x, y) = \Big(\sum_k |x_k - y_k|^{q} + \epsilon\Big)^{1/q},

    with :math:`q` = `norm_degree`; :math:`\epsilon` keeps the gradient finite
    when two embeddings coincide.

    Note:
        optax raises the *signed* differences to the power `norm_degree`, so
        odd degrees give wrong distances (``norm_degree=1``) or NaN (3);
        gradxform takes absolute values. Even degrees (the default 2) agree.

    Args:
        anchors: ``[batch, features]`` anchor embeddings.
        positives: embeddings similar to the anchors, same shape.
        negatives: embeddings dissimilar to the anchors, same shape.
        axis: the feature axis.
        norm_degree: the norm's degree :math:`q` > 0.
        margin: the margin by which the positive distance should be smaller.
        eps: a small non-negative constant inside the root.

    Returns:
        The loss per triplet, in `anchors`' float dtype.

    Raises:
        ValueError: if the shapes do not broadcast.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> a = jnp.array([[0.0, 0.0], [1.0, 1.0]])
        >>> p = jnp.array([[0.1, 0.1], [1.1, 1.1]])
        >>> n = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> [round(v, 4) for v in gx.losses.triplet_margin_loss(a, p, n).tolist()]
        [0.1414, 0.1414]

    References:
        Balntas et al. (2016), *Learning local feature descriptors with triplets and
        shallow convolutional neural networks*, BMVC, Eq. 1; Schroff, Kalenichenko
        and Philbin (2015), *FaceNet*, Eq. 1.
    """
    a = _common.as_compute(anchors)
    p = _common.as_compute(positives, like=anchors)
    n = _common.as_compute(negatives, like=anchors)

    def distance(x, y):
        return (jnp.sum(jnp.abs(x - y) ** norm_degree, axis=axis) + eps) ** (
            1.0 / norm_degree
        )

    loss = jnp.maximum(0.0, distance(a, p) - distance(a, n) + margin)
    return _common.cast_out(loss, jnp.asarray(anchors))
