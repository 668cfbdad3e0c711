"""Moment helpers on whole trees: exponential moving averages and bias correction.

The tree-level counterparts of the per-leaf rules inside the transformations
(Kingma & Ba 2015, Algorithm 1): :math:`m_t = \\beta m_{t-1} + (1 - \\beta) g_t^k`
and :math:`\\hat m_t = m_t / (1 - \\beta^t)`. They are the same objects as
``gx.tree.update_moment`` and friends, with optax's signatures.

Each leaf is computed in at least float32 (`_tree.compute_dtype`) and returned
in the dtype optax's arithmetic gives: the promotion of the update's and the
moment's dtypes (under standard promotion, whatever the promotion mode), and
the moment's own dtype for `bias_correction`. ``None`` update leaves (masked
out) stay ``None``.

References:
    Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015,
    Algorithm 1 (moments and bias correction) and Section 7.1 (AdaMax's
    infinity moment).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _tree

__all__ = [
    "bias_correction",
    "update_infinity_moment",
    "update_moment",
    "update_moment_per_elem_norm",
]


def _promote(*dtypes: Any) -> np.dtype:
    """The standard JAX promotion of `dtypes`, also under ``jax_numpy_dtype_promotion='strict'``."""
    with jax.numpy_dtype_promotion("standard"):
        out = np.dtype(dtypes[0])
        for d in dtypes[1:]:
            out = jnp.promote_types(out, d)
    return np.dtype(out)


def _real(dtype: Any) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype == np.complex128:
        return np.dtype(np.float64)
    if np.issubdtype(dtype, np.complexfloating):
        return np.dtype(np.float32)
    return dtype


def _map(fn, updates, moments):
    return jax.tree_util.tree_map(
        lambda g, m: None if g is None else fn(jnp.asarray(g), jnp.asarray(m)),
        updates,
        moments,
        is_leaf=_tree.is_none,
    )


def update_moment(updates: Any, moments: Any, decay: Any, order: Any) -> Any:
    r"""The exponential moving average of the `order`-th power of the updates.

    .. math::
        m_t = (1 - \beta)\, g_t^{k} + \beta\, m_{t-1}

    with :math:`\beta` = `decay` and :math:`k` = `order` (a plain power, so a
    complex update is squared, not its modulus; see
    `update_moment_per_elem_norm`).

    Args:
        updates: a tree of arrays :math:`g_t` (``None`` leaves stay ``None``).
        moments: a tree of arrays :math:`m_{t-1}` with the structure of `updates`.
        decay: :math:`\beta`, usually in [0, 1] (a number or a scalar array).
        order: :math:`k`, the power of the updates (1 for the mean, 2 for the
            uncentered variance).

    Returns:
        The tree of :math:`m_t`, each leaf in the promotion of the update's and
        the moment's dtypes, computed in at least float32.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.update_moment({'w': jnp.array([2.0, -1.0])}, {'w': jnp.array([1.0, 1.0])}, 0.9, 2)
        {'w': Array([1.3, 1. ], dtype=float32)}

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1.
    """

    def leaf(g, m):
        out = _promote(g.dtype, m.dtype)
        cd = _tree.compute_dtype(out)
        beta = _tree.decay(decay, cd)
        return (beta.complement * g.astype(cd) ** order + beta.rate * m.astype(cd)).astype(out)

    return _map(leaf, updates, moments)


def update_moment_per_elem_norm(updates: Any, moments: Any, decay: Any, order: Any) -> Any:
    r"""The exponential moving average of the `order`-th power of each element's modulus.

    .. math::
        m_t = (1 - \beta)\, |g_t|^{k} + \beta\, m_{t-1}

    For a real update this is `update_moment` of :math:`|g_t|`; for a complex
    one :math:`|g|` is the modulus, and the moment is real.

    Args:
        updates: a tree of arrays :math:`g_t` (``None`` leaves stay ``None``).
        moments: a tree of real arrays :math:`m_{t-1}` with the structure of `updates`.
        decay: :math:`\beta`, usually in [0, 1].
        order: :math:`k` (2 for Adam's second moment).

    Returns:
        The tree of :math:`m_t`, each leaf in the promotion of the update's real
        dtype and the moment's dtype, computed in at least float32.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.update_moment_per_elem_norm(jnp.array([3 + 4j]), jnp.array([0.0]), 0.5, 1)
        Array([2.5], dtype=float32)

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1.
    """

    def leaf(g, m):
        out = _promote(_real(g.dtype), m.dtype)
        cd = _tree.compute_dtype(out)
        beta = _tree.decay(decay, cd)
        sq = _tree.abs_sq(_tree.wide(g)).astype(cd)
        power = sq if (isinstance(order, (int, float)) and order == 2) else sq ** (order / 2)
        return (beta.complement * power + beta.rate * m.astype(cd)).astype(out)

    return _map(leaf, updates, moments)


def update_infinity_moment(updates: Any, moments: Any, decay: Any, eps: Any) -> Any:
    r"""AdaMax's exponentially weighted infinity norm.

    .. math::
        u_t = \max(|g_t| + \epsilon,\; \beta\, u_{t-1})

    Args:
        updates: a tree of arrays :math:`g_t` (``None`` leaves stay ``None``).
        moments: a tree of real arrays :math:`u_{t-1}` with the structure of `updates`.
        decay: :math:`\beta`, usually in [0, 1].
        eps: :math:`\epsilon \ge 0`, added to :math:`|g_t|`.

    Returns:
        The tree of :math:`u_t`, each leaf in the promotion of the update's real
        dtype and the moment's dtype.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.update_infinity_moment(jnp.array([-2.0, 0.5]), jnp.array([1.0, 4.0]), 0.5, 0.0)
        Array([2., 2.], dtype=float32)

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Section 7.1 (AdaMax).
    """

    def leaf(g, m):
        out = _promote(_real(g.dtype), m.dtype)
        cd = _tree.compute_dtype(out)
        absg = jnp.abs(_tree.wide(g)).astype(cd)
        return jnp.maximum(absg + _tree.hp(eps, cd), _tree.hp(decay, cd) * m.astype(cd)).astype(out)

    return _map(leaf, updates, moments)


def bias_correction(moment: Any, decay: Any, count: Any) -> Any:
    r"""Divides a moment by :math:`1 - \beta^t`, undoing the bias of its zero start.

    .. math::
        \hat m_t = \frac{m_t}{1 - \beta^t}

    :math:`1 - \beta^t` is computed as :math:`-\mathrm{expm1}(t \log \beta)`,
    accurate where ``1 - beta**t`` cancels (:math:`\beta` near 1, small
    :math:`t`). It tends to 1 as :math:`t` grows, so the correction becomes a
    no-op.

    Args:
        moment: a tree of arrays :math:`m_t` (``None`` leaves stay ``None``).
        decay: :math:`\beta` of the moving average, usually in [0, 1).
        count: :math:`t \ge 1`, the number of updates averaged (an integer or
            an integer array); :math:`t = 0` divides by zero, as in optax.

    Returns:
        The tree of :math:`\hat m_t`, each leaf in the moment's dtype (float32
        for an integer moment).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.tree.bias_correction({'mu': jnp.array([0.19])}, 0.9, 2)
        {'mu': Array([1.], dtype=float32)}

    References:
        Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015, Algorithm 1 and Section 3.
    """
    t = jnp.asarray(count)

    def leaf(m):
        m = jnp.asarray(m)
        out = m.dtype if jnp.issubdtype(m.dtype, jnp.inexact) else _tree.compute_dtype(m.dtype)
        cd = _tree.compute_dtype(out)
        real = _tree.real_dtype(cd)
        if isinstance(decay, (int, float)) and not isinstance(decay, bool) and decay < 0:
            t_real = t.astype(real)
            correction = 1 - _tree.hp(float(decay), real) ** t_real
        else:
            correction = _tree.bias_correction(decay, t, real)
        return (m.astype(cd) / correction.astype(cd)).astype(out)

    return jax.tree_util.tree_map(lambda m: None if m is None else leaf(m), moment, is_leaf=_tree.is_none)

