"""Functional batch normalization (Ioffe & Szegedy, 2015), with sync batch norm.

Parameters and running statistics are plain dicts passed in and returned, so
`batch_norm` runs under ``jax.jit``, ``jax.vmap``, ``lax.scan`` and, with
`axis_name`, inside ``jax.shard_map`` / ``jax.pmap`` as sync batch norm.

Reference:
    Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network
    Training by Reducing Internal Covariate Shift", Algorithm 1 (mini-batch
    mean, biased mini-batch variance, normalize, scale and shift); Goodfellow,
    Bengio & Courville (2016), "Deep Learning", Section 8.7.1.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _tree

Axis = Union[int, Sequence[int]]


def _is_int(n: Any) -> bool:
    return isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_))


def _feature_shape(num_features: Union[int, Sequence[int]]) -> tuple[int, ...]:
    if _is_int(num_features):
        shape = (int(num_features),)
    elif isinstance(num_features, (tuple, list)) and all(_is_int(n) for n in num_features):
        shape = tuple(int(n) for n in num_features)
    else:
        shape = ()  # a float (2.5, 3.0), a bool, a string...: rejected below
    if not shape or any(n < 1 for n in shape):
        raise ValueError(
            "batch_norm_init: `num_features` must be a positive int (or a tuple of them for "
            f"several feature axes); got num_features={num_features!r}."
        )
    return shape


def batch_norm_init(
    num_features: Union[int, Sequence[int]], dtype: Any = jnp.float32
) -> tuple[dict, dict]:
    """Returns ``(params, state)`` for `batch_norm` over `num_features` features.

    ``params = {'scale': ones, 'bias': zeros}`` (the learned gamma and beta) in
    `dtype`; ``state = {'mean': zeros, 'var': ones}`` (the running averages) in
    at least float32, so that a bf16/f16 model still accumulates its running
    statistics precisely (a 1% step is below bf16's resolution near 1).

    Args:
        num_features: the size of the feature axis (a tuple for several axes).
        dtype: dtype of the learned parameters. Default float32.

    Returns:
        ``(params, state)``, two dicts of arrays of shape ``(num_features,)``.

    Raises:
        ValueError: if `num_features` is not a positive int or a non-empty
            tuple of them (a float such as ``2.5`` or ``3.0`` included).

    Example:
        >>> import gradxform as gx
        >>> params, state = gx.nn.batch_norm_init(3)
        >>> params['scale'].tolist(), state['var'].tolist()
        ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    """
    shape = _feature_shape(num_features)
    sdt = _tree.real_dtype(dtype)  # statistics in at least float32
    params = {"scale": jnp.ones(shape, dtype), "bias": jnp.zeros(shape, dtype)}
    state = {"mean": jnp.zeros(shape, sdt), "var": jnp.ones(shape, sdt)}
    return params, state


def _feature_axes(axis: Axis, ndim: int) -> tuple[int, ...]:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"batch_norm: `axis={axis}` is out of range for an input with {ndim} dimensions."
            )
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"batch_norm: `axis={axis}` names the same axis twice.")
    return tuple(sorted(out))


def _check_leaf(tree: dict, key: str, shape: tuple, tree_name: str, x_shape: tuple) -> None:
    if key not in tree:
        raise ValueError(f"batch_norm: {tree_name} has no entry {key!r}; build it with batch_norm_init.")
    got = tuple(np.shape(tree[key]))
    if got != shape:
        raise ValueError(
            f"batch_norm: {tree_name}[{key!r}] has shape {got} but the input of shape {x_shape} "
            f"has features of shape {shape} on the normalized axis; build the state with "
            f"batch_norm_init({shape[0] if len(shape) == 1 else shape})."
        )


def batch_norm(
    params: Optional[dict],
    state: dict,
    x: jax.Array,
    *,
    training: bool,
    momentum: float = 0.99,
    eps: float = 1e-5,
    axis: Axis = -1,
    axis_name: Optional[Any] = None,
    unbiased_running_var: bool = False,
    fast_variance: bool = False,
) -> tuple[jax.Array, dict]:
    r"""Batch normalization of `x` over every axis but `axis`; returns ``(y, new_state)``.

    Training mode, over the m values of each feature in the batch:

    .. math::
        \mu_B = \frac1m\sum_i x_i,\quad
        \sigma_B^2 = \max\Big(0, \frac1m\sum_i (x_i-\mu_B)^2\Big),\quad
        y_i = \gamma\,\frac{x_i-\mu_B}{\sqrt{\sigma_B^2+\epsilon}} + \beta,

    and the running averages move toward the batch statistics:
    ``mean <- momentum * mean + (1 - momentum) * mu_B`` and
    ``var <- momentum * var + (1 - momentum) * v_B`` with ``v_B = sigma_B^2``
    (biased, flax's convention) or ``v_B = sigma_B^2 * m / (m - 1)`` when
    ``unbiased_running_var=True`` (PyTorch's convention). The batch itself is
    always normalized with the biased variance, in both conventions.

    Eval mode (``training=False``) normalizes with the running ``mean`` /
    ``var`` and returns `state` unchanged.

    With `axis_name`, the per-device means of ``x`` and of the squared
    deviations are averaged across the named mapped axis (``lax.pmean``), so
    that every device normalizes with the statistics of the global batch (sync
    batch norm); this assumes equal per-device batch sizes, and ``m`` counts the
    global batch.

    Statistics are computed in at least float32; the output has `x`'s dtype and
    the new state the old state's dtypes.

    Note:
        Momentum follows flax (weight of the *old* value, default 0.99).
        PyTorch's ``momentum=0.1`` is ``momentum=0.9`` here; PyTorch also
        defaults to the unbiased running variance (``unbiased_running_var=True``)
        and ``eps=1e-5``. The variance is computed in two passes by default;
        ``fast_variance=True`` uses ``E[x^2] - E[x]^2`` (one pass, one
        collective with `axis_name`), which can round below zero and is then
        clamped at zero.

        With ``eps=0`` a feature whose variance is 0 gives :math:`\hat x = 0`
        (``y = beta``) instead of ``0/0``. In training this is the limit of
        :math:`(x-\mu_B)/\sqrt{\sigma_B^2+\epsilon}` as :math:`\epsilon \to 0`,
        since :math:`x - \mu_B` is exactly 0 there. In eval mode, a running
        ``var`` of 0 means the feature never varied in training, where it was
        therefore mapped to ``beta``; an input that now differs from the running
        mean is mapped to ``beta`` as well (the training-time output), rather than
        to :math:`\pm\infty`. Pass ``eps > 0`` to scale such differences by
        :math:`1/\sqrt{\epsilon}` instead. A negative running ``var`` (a corrupted
        state) still gives NaN.

        Integer and boolean inputs are normalized in float32 and return float32
        (as flax's ``BatchNorm`` and ``jax.nn.standardize``); float inputs keep
        their dtype.

    Args:
        params: ``{'scale', 'bias'}`` from `batch_norm_init`, or None for no
            learned scale and shift.
        state: ``{'mean', 'var'}`` running statistics from `batch_norm_init`.
        x: input of any rank >= 1.
        training: Python bool: batch statistics and a state update (True), or
            the running statistics (False).
        momentum: running-average decay in [0, 1]. Default 0.99.
        eps: added to the variance, >= 0. Default 1e-5.
        axis: the feature axis (or axes); statistics reduce over all others.
        axis_name: mapped axis name(s) to average the statistics over.
        unbiased_running_var: store the unbiased (``m / (m - 1)``) batch
            variance in the running average, as PyTorch does.
        fast_variance: one-pass variance, see the Note.

    Returns:
        ``(y, new_state)``: `y` of `x`'s shape and dtype (float32 for integer or
        boolean `x`); the updated running statistics in training mode, `state`
        itself in eval mode.

    Raises:
        ValueError: for `momentum` outside [0, 1], a negative `eps`, an
            out-of-range `axis`, params/state whose shapes do not match the
            feature axes of `x`, or (training) an empty batch: an `x` with 0
            entries on the reduced axes, such as shape ``(0, F)``.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> params, state = gx.nn.batch_norm_init(2)
        >>> x = jnp.array([[1.0, 10.0], [3.0, 30.0]])
        >>> y, state = gx.nn.batch_norm(params, state, x, training=True)
        >>> [round(v, 3) for v in y[:, 0].tolist()]
        [-1.0, 1.0]
        >>> [round(v, 3) for v in state['mean'].tolist()]
        [0.02, 0.2]
    """
    fn = "batch_norm"
    _checks.check_range("momentum", momentum, 0.0, 1.0, fn=fn)
    _checks.check_non_negative("eps", eps, fn=fn)
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(
            f"{fn}: `training` must be a Python bool (it selects the computation); got {training!r}."
        )
    x = jnp.asarray(x)
    feat = _feature_axes(axis, x.ndim)
    red = tuple(i for i in range(x.ndim) if i not in feat)
    feat_shape = tuple(x.shape[i] for i in feat)
    for key in ("mean", "var"):
        _check_leaf(state, key, feat_shape, "state", x.shape)
    if params is not None:
        for key in ("scale", "bias"):
            _check_leaf(params, key, feat_shape, "params", x.shape)

    cdt = _tree.real_dtype(x.dtype)
    # Integer and boolean inputs are normalized in float32 and give float32 (as flax's
    # BatchNorm and jax.nn.standardize): the normalized values are fractions.
    out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else cdt
    bshape = tuple(x.shape[i] if i in feat else 1 for i in range(x.ndim))

    def expand(v):
        return jnp.reshape(v.astype(cdt), bshape)

    xc = x.astype(cdt)
    if training:
        m = int(np.prod([x.shape[i] for i in red], dtype=np.int64))
        if m == 0:
            raise ValueError(
                f"{fn}: an input of shape {x.shape} has no values to take batch statistics over "
                f"(axes {red} hold 0 entries); its running statistics would become NaN. Skip "
                "empty batches, or use training=False."
            )
        if axis_name is not None:
            m *= jax.lax.psum(1, axis_name)
        # Statistics of the data shifted by its first sample, k (without axis_name: the
        # devices' shifts would differ): mean = k + E[x - k] is exactly k for a constant
        # feature, whose variance is then exactly 0, and the one-pass variance loses less.
        if axis_name is None:
            k = xc[tuple(slice(0, 1) if i in red else slice(None) for i in range(x.ndim))]
        else:
            k = jnp.zeros(bshape, cdt)
        xs = xc - k
        if fast_variance:
            moments = jnp.stack([jnp.mean(xs, axis=red), jnp.mean(jnp.square(xs), axis=red)])
            if axis_name is not None:
                moments = jax.lax.pmean(moments, axis_name)
            mean_s, mean_sq = moments[0], moments[1]
            var = mean_sq - jnp.square(mean_s)
            mean = jnp.reshape(k, feat_shape) + mean_s
        else:
            mean = jnp.reshape(k, feat_shape) + jnp.mean(xs, axis=red)
            if axis_name is not None:
                mean = jax.lax.pmean(mean, axis_name)
            var = jnp.mean(jnp.square(xc - jnp.reshape(mean, bshape)), axis=red)
            if axis_name is not None:
                var = jax.lax.pmean(var, axis_name)
        var = jnp.maximum(var, 0.0)
        run_var = var * (m / max(m - 1, 1)) if unbiased_running_var else var
        new_state = dict(state)
        new_state["mean"] = (
            momentum * state["mean"].astype(cdt) + (1.0 - momentum) * mean
        ).astype(state["mean"].dtype)
        new_state["var"] = (
            momentum * state["var"].astype(cdt) + (1.0 - momentum) * run_var
        ).astype(state["var"].dtype)
    else:
        mean = state["mean"].astype(cdt)
        var = state["var"].astype(cdt)
        new_state = state

    # 1 / sqrt(var + eps) per feature; a feature with var + eps == 0 (eps=0) gets 0, so
    # x_hat = 0 (see the Note). The inner where keeps rsqrt(0) = inf out of the gradient.
    v = var + eps
    flat = v == 0
    inv = jnp.where(flat, 0.0, jax.lax.rsqrt(jnp.where(flat, 1.0, v)))
    y = (xc - jnp.reshape(mean, bshape)) * jnp.reshape(inv, bshape)
    if params is not None:
        y = y * expand(params["scale"]) + expand(params["bias"])
    return y.astype(out_dtype), new_state
