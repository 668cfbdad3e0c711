r"""DP-SGD (Abadi et al., 2016, Algorithm 1) and complex parameters split into real pairs.

The library's ``contrib/_privacy`` and ``contrib/_complex_valued``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from jax import tree_util as jtu

from gradxform.testing.reference._common import (
    Reference,
    _cast_like,
    _map,
    chain,
    identity,
)
from gradxform.testing.reference._momentum import trace
from gradxform.testing.reference._scale import scale_by_learning_rate

__all__ = ["differentially_private_aggregate", "dpsgd", "split_real_and_imaginary"]


def _key(key: Any):
    import jax

    if key is None:
        return jax.random.key(0)
    if isinstance(key, (int, np.integer)):
        return jax.random.key(int(key))
    if np.shape(key) == (2,):
        return jax.random.wrap_key_data(key)
    return key


def _standard_normal(key, shape, dtype) -> np.ndarray:
    """JAX's float32 (complex64 for complex leaves) standard normal draw for `key`, widened."""
    import jax

    complex_leaf = np.issubdtype(dtype, np.complexfloating)
    drawn = np.asarray(jax.random.normal(key, shape, np.complex64 if complex_leaf else np.float32))
    return drawn.astype(np.complex128 if complex_leaf else np.float64)


def differentially_private_aggregate(l2_norm_clip: float, noise_multiplier: float, key=None, *,
                                     seed=None) -> Reference:
    r"""DP-SGD's aggregation (Abadi et al., 2016, "Deep Learning with Differential Privacy",
    Algorithm 1, lines "Clip gradient" and "Add noise"), over per-example gradients stacked on
    a leading axis of every leaf, the norm of example :math:`i` taken over all its leaves:

    .. math:: \bar g_i = g_i / \max\left(1, \frac{\|g_i\|_2}{C}\right), \qquad
              u = \frac{1}{B}\left(\sum_i \bar g_i + \sigma C\, \xi\right), \quad \xi \sim \mathcal N(0, I)

    :math:`\xi` is JAX's standard normal draw, leaf :math:`j` from ``keys[1 + j]`` of
    ``jax.random.split(key, n_leaves + 1)``, ``keys[0]`` the next step's key (the
    library's documented scheme), so a fixed key gives the same noise on both sides.
    """
    start = _key(seed if key is None else key)

    def init(params):
        del params
        return {"key": start}

    def update(grads, state, params=None, **extra_args):
        import jax

        del params, extra_args
        leaves, treedef = jtu.tree_flatten(grads)
        keys = jax.random.split(state["key"], len(leaves) + 1)
        g64 = [np.asarray(x).astype(np.complex128 if np.iscomplexobj(x) else np.float64) for x in leaves]
        batch = g64[0].shape[0]
        norms = np.sqrt(sum(np.sum(np.abs(x.reshape(batch, -1)) ** 2, axis=1) for x in g64))
        scale = 1.0 / np.maximum(1.0, norms / l2_norm_clip) if l2_norm_clip > 0 else np.zeros(batch)
        out = []
        for j, (x, raw) in enumerate(zip(g64, leaves)):
            clipped = x * scale.reshape((batch,) + (1,) * (x.ndim - 1))
            xi = _standard_normal(keys[1 + j], x.shape[1:], np.asarray(raw).dtype)
            out.append((clipped.sum(axis=0) + noise_multiplier * l2_norm_clip * xi) / batch)
        return _cast_like(treedef.unflatten(out), grads), {"key": keys[0]}

    return Reference(init, update)


def dpsgd(learning_rate, l2_norm_clip: float, noise_multiplier: float, seed: int, momentum=None,
          nesterov: bool = False) -> Reference:
    r"""DP-SGD (Abadi et al., 2016, Algorithm 1, line "Descent"), with optional momentum:
    :math:`\theta_{t} = \theta_{t-1} - \eta_t u_t` (or momentum's trace of :math:`u_t`);
    see :func:`differentially_private_aggregate`."""
    aggregate = differentially_private_aggregate(l2_norm_clip, noise_multiplier, key=seed)
    rest = chain(trace(momentum, nesterov) if momentum is not None else identity(),
                 scale_by_learning_rate(learning_rate))

    def init(params):
        return (aggregate.init(params), *rest.init(params))

    def update(grads, state, params=None, **extra_args):
        # The aggregate sees the grads in their own dtype (its noise is drawn in it).
        u, first = aggregate.update(grads, state[0], params, **extra_args)
        u, others = rest.update(u, state[1:], params, **extra_args)
        return u, (first, *others)

    return Reference(init, update)


class _Split(NamedTuple):
    real: Any
    imaginary: Any


def _split(tree):
    return _map(lambda x: _Split(np.real(x), np.imag(x)) if np.iscomplexobj(x) else x, tree)


def _merge(tree):
    is_split = lambda x: isinstance(x, _Split)
    return jtu.tree_map(lambda x: x.real + 1j * x.imaginary if is_split(x) else x, tree, is_leaf=is_split)


def split_real_and_imaginary(inner: Reference) -> Reference:
    r"""A complex parameter :math:`z = x + iy` as the pair of real parameters :math:`(x, y)`:
    the inner rule sees :math:`(\operatorname{Re} g, \operatorname{Im} g)` and its update
    :math:`(u_x, u_y)` returns as :math:`u_x + i u_y` (the real-pair view of
    :math:`\mathbb C^n = \mathbb R^{2n}`, as in Wirtinger calculus); real leaves pass through."""

    def init(params):
        return inner.init(_split(params))

    def update(grads, state, params=None, **extra_args):
        updates, state = inner.update(_split(grads), state, None if params is None else _split(params), **extra_args)
        return _cast_like(_merge(updates), grads), state

    return Reference(init, update)
