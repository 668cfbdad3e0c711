"""Regularizers (Goodfellow, Bengio & Courville, "Deep Learning", 2016, chapter 7):
dropout, label smoothing, L1/L2 penalties, adversarial examples (FGSM) and
Gaussian weight noise.

All are pure functions of their arguments (randomness comes from an explicit
key) and run under ``jax.jit`` / ``jax.vmap``.

References:
    Srivastava et al. (2014), "Dropout"; Szegedy et al. (2016) (label
    smoothing); Goodfellow et al. (2015), "Explaining and Harnessing
    Adversarial Examples" (FGSM); Goodfellow, Bengio & Courville (2016),
    "Deep Learning", Sections 7.1 (norm penalties), 7.5 (noise robustness,
    label smoothing in 7.5.1), 7.12 (dropout) and 7.13 (adversarial training).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree


def dropout(
    key: jax.Array,
    x: jax.Array,
    rate: float,
    *,
    deterministic: bool = False,
    broadcast_dims: Sequence[int] = (),
) -> jax.Array:
    r"""Inverted dropout: zeroes each entry with probability `rate`, scales the rest by ``1 / (1 - rate)``.

    .. math::
        y_i = \frac{m_i\,x_i}{1 - \mathrm{rate}},\qquad m_i \sim \mathrm{Bernoulli}(1 - \mathrm{rate}),

    so :math:`\mathbb E[y_i] = x_i`, and at test time (``deterministic=True``)
    the layer is the identity.

    Note:
        Srivastava et al. (2014) and Goodfellow et al. (2016, Section 7.12) keep
        units with probability :math:`p = 1 - \mathrm{rate}` and multiply the
        weights by p at test time (the weight scaling inference rule); inverted
        dropout, as in PyTorch and flax, moves that factor to training time
        (``1 / p``), which gives the same expectations and leaves inference untouched.

    Args:
        key: a PRNG key.
        x: the activations.
        rate: the drop probability, in [0, 1).
        deterministic: return `x` unchanged (evaluation).
        broadcast_dims: axes along which the mask is shared (e.g. the spatial
            axes, for channel dropout).

    Returns:
        An array of `x`'s shape and dtype.

    Raises:
        ValueError: if `rate` is outside [0, 1), or a broadcast axis is out of range.

    Example:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> y = gx.nn.dropout(jax.random.key(0), jnp.ones(4), 0.5)
        >>> sorted(set(y.tolist())) in ([0.0, 2.0], [0.0], [2.0])
        True
        >>> gx.nn.dropout(jax.random.key(0), jnp.ones(2), 0.5, deterministic=True).tolist()
        [1.0, 1.0]
    """
    _checks.check_range("rate", rate, 0.0, 1.0, high_inclusive=False, fn="dropout")
    x = jnp.asarray(x)
    if deterministic:
        return x
    if not isinstance(rate, jax.core.Tracer) and float(rate) == 0.0:
        return x
    dims = set()
    for d in broadcast_dims:
        if not -x.ndim <= d < x.ndim:
            raise ValueError(f"dropout: broadcast_dims contains {d}, out of range for x of shape {x.shape}.")
        dims.add(d % x.ndim)
    mask_shape = tuple(1 if i in dims else n for i, n in enumerate(x.shape))
    keep_prob = 1.0 - rate
    keep = jax.random.bernoulli(key, keep_prob, mask_shape)
    scale = jnp.asarray(1.0 / keep_prob).astype(x.dtype)
    return jnp.where(keep, x * scale, jnp.zeros((), x.dtype))


def smooth_labels(one_hot: jax.Array, epsilon: float) -> jax.Array:
    r"""Label smoothing: ``1 - epsilon`` for the true class, ``epsilon / (k - 1)`` elsewhere.

    .. math::
        \tilde y = (1 - \epsilon)\, y + \frac{\epsilon}{k - 1}\,(1 - y),

    with k the size of the last axis. For a one-hot `y` these are the targets of
    Goodfellow et al. (2016), Section 7.5.1; any row summing to one (a soft
    label) still sums to one.

    Note:
        :func:`gradxform.losses.smooth_labels` (also ``gx.smooth_labels``) is
        optax's form, :math:`(1-\alpha) y + \alpha / k` (the true class gets
        ``1 - alpha + alpha / k``), with ``axis`` and ``where`` arguments; use it
        to reproduce ``optax.smooth_labels``. Both sum to one and agree for
        :math:`\alpha = \epsilon k / (k - 1)`.

    Args:
        one_hot: targets with classes on the last axis (float, or an integer
            one-hot, which gives float32).
        epsilon: the smoothing mass moved off the true class, in [0, 1].

    Returns:
        Smoothed targets, same shape, in `one_hot`'s float dtype.

    Raises:
        ValueError: if `epsilon` is outside [0, 1], or there are fewer than 2 classes.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> y = gx.nn.smooth_labels(jnp.array([0.0, 1.0, 0.0, 0.0, 0.0]), 0.2)
        >>> [round(v, 4) for v in y.tolist()]
        [0.05, 0.8, 0.05, 0.05, 0.05]
    """
    _checks.check_range("epsilon", epsilon, 0.0, 1.0, fn="smooth_labels")
    y = jnp.asarray(one_hot)
    if y.ndim == 0 or y.shape[-1] < 2:
        raise ValueError(
            "smooth_labels: needs at least 2 classes on the last axis (epsilon / (k - 1)); "
            f"got one_hot of shape {y.shape}."
        )
    if not jnp.issubdtype(y.dtype, jnp.floating):
        y = y.astype(jnp.float32)
    k = y.shape[-1]
    eps = jnp.asarray(epsilon).astype(y.dtype)
    return (1.0 - eps) * y + (eps / (k - 1)) * (1.0 - y)


def _sum_over_leaves(params: Any, term: Callable[[jax.Array], jax.Array]) -> jax.Array:
    leaves = [jnp.asarray(p) for p in jax.tree_util.tree_leaves(params)]
    acc = _tree.accumulation_dtype(leaves)
    total = jnp.zeros((), acc)
    for p in leaves:
        total = total + jnp.sum(term(p.astype(acc)))
    return total


def l1_penalty(params: Any) -> jax.Array:
    r"""The L1 norm of every leaf of `params`: :math:`\Omega(w) = \|w\|_1 = \sum_i |w_i|`.

    Its gradient is ``sign(w)``; add ``lam * l1_penalty(params)`` to a loss
    for L1 regularization (sparse weights).

    Args:
        params: a pytree of arrays (None leaves are skipped).

    Returns:
        A scalar in float32 (float64 if a leaf is float64), summed in that dtype.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.nn.l1_penalty({'w': jnp.array([1.0, -2.0]), 'b': jnp.array(-0.5)}).tolist()
        3.5
    """
    return _sum_over_leaves(params, jnp.abs)


def l2_penalty(params: Any) -> jax.Array:
    r"""Half the squared L2 norm of `params`: :math:`\Omega(w) = \tfrac12 \|w\|_2^2 = \tfrac12\sum_i w_i^2`.

    Its gradient is ``w`` itself: ``loss + lam * l2_penalty(params)`` is
    weight decay, ``w <- (1 - lr * lam) w - lr * grad``.

    Args:
        params: a pytree of arrays (None leaves are skipped).

    Returns:
        A scalar in float32 (float64 if a leaf is float64).

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.nn.l2_penalty({'w': jnp.array([1.0, -2.0])}).tolist()
        2.5
    """
    return 0.5 * _sum_over_leaves(params, jnp.square)


def fgsm(loss_fn: Callable[[Any, Any], jax.Array], x: jax.Array, y: Any, epsilon: float) -> jax.Array:
    r"""Fast gradient sign method: :math:`x' = x + \epsilon\,\mathrm{sign}(\nabla_x L(x, y))`.

    The adversarial example of Goodfellow et al. (2015): a step of size
    `epsilon` per entry in the direction that increases the loss most under an
    :math:`L^\infty` budget. Train on ``x'`` for adversarial training
    (Goodfellow et al., 2016, Section 7.13).

    Args:
        loss_fn: ``loss_fn(x, y) -> scalar``, differentiable in x (close over
            the model's parameters).
        x: the inputs.
        y: the targets, passed through to `loss_fn`.
        epsilon: the step size, >= 0.

    Returns:
        ``x'`` with `x`'s shape and dtype (no clipping to a data range; apply
        ``jnp.clip`` afterwards if needed).

    Raises:
        ValueError: if `epsilon` is negative.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> w = jnp.array([2.0, -3.0])
        >>> gx.nn.fgsm(lambda x, y: jnp.dot(w, x) - y, jnp.zeros(2), 0.0, 0.1).tolist()
        [0.10000000149011612, -0.10000000149011612]
    """
    _checks.check_non_negative("epsilon", epsilon, fn="fgsm")
    x = jnp.asarray(x)
    g = jax.grad(loss_fn)(x, y)
    step = jnp.asarray(epsilon).astype(x.dtype) * jnp.sign(g).astype(x.dtype)
    return x + step


def weight_noise(key: jax.Array, params: Any, stddev: float) -> Any:
    r"""Gaussian noise on the weights: :math:`\tilde w = w + \sigma\,\xi`, :math:`\xi \sim \mathcal N(0, I)`.

    Noise injected at the weights (Goodfellow et al., 2016, Section 7.5):
    evaluate the loss at the perturbed weights (and differentiate through the
    addition) to push training toward flat minima. Each leaf gets independent noise.

    Args:
        key: a PRNG key.
        params: a pytree of float arrays.
        stddev: sigma, >= 0.

    Returns:
        A pytree like `params`, leaves in their own dtypes (noise drawn in at
        least float32, then cast).

    Raises:
        ValueError: if `stddev` is negative.

    Example:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> noisy = gx.nn.weight_noise(jax.random.key(0), {'w': jnp.zeros(3)}, 0.0)
        >>> noisy['w'].tolist()
        [0.0, 0.0, 0.0]
    """
    _checks.check_non_negative("stddev", stddev, fn="weight_noise")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    out = []
    for k, p in zip(keys, leaves):
        p = jnp.asarray(p)
        acc = _tree.real_dtype(p.dtype)
        noise = jax.random.normal(k, p.shape, acc) * jnp.asarray(stddev).astype(acc)
        out.append((p.astype(acc) + noise).astype(p.dtype))
    return jax.tree_util.tree_unflatten(treedef, out)
