"""Clipping: element-wise `clip` and `clip_by_global_norm` (Pascanu et al., 2013)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _linalg, _tree
from gradxform._base import EmptyState, GradientTransformation, stateless


@_tree.leaf_rule
def _clip_rule(g, max_delta):
    x = g.astype(_tree.compute_dtype(g.dtype))
    if jnp.iscomplexobj(x):
        magnitude = jnp.abs(x)
        clipping = magnitude > max_delta  # a traced bound of 0 on a zero entry is not 0/0
        factor = jnp.where(clipping, max_delta / jnp.where(clipping, magnitude, 1), 1)
        return ((x * factor.astype(x.dtype)).astype(g.dtype),)
    return (jnp.clip(x, -max_delta, max_delta).astype(g.dtype),)


@_hyper.declare(max_delta=_hyper.POSITIVE)
def clip(max_delta) -> GradientTransformation:
    r"""Clips every update element-wise to :math:`[-\Delta, \Delta]`.

    Element-wise clipping (Mikolov, 2012; Goodfellow et al., 2016, section 10.11.1):

    .. math:: g_i \leftarrow g_i \frac{\Delta}{\max(|g_i|, \Delta)}

    which equals ``jnp.clip(g, -max_delta, max_delta)`` (for complex updates the
    magnitude is clipped and the phase kept).

    Args:
        max_delta: the bound :math:`\Delta > 0`.

    Returns:
        A stateless `GradientTransformation`.

    Raises:
        ValueError: ``max_delta <= 0``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.clip(1.0)
        >>> tx.update(jnp.array([0.5, -3.0]), tx.init(jnp.zeros(2)))[0].tolist()
        [0.5, -1.0]
    """

    def clip_updates(updates, params):
        del params
        (clipped,) = _tree.apply_rule(
            _clip_rule, updates, scalars=lambda dtype: _tree.hp(max_delta, _tree.real_dtype(dtype))
        )
        return clipped

    return stateless(clip_updates, name="clip")


@_hyper.declare(max_norm=_hyper.POSITIVE)
def clip_by_global_norm(max_norm) -> GradientTransformation:
    r"""Rescales the updates so that their global L2 norm is at most ``max_norm`` (Pascanu et al., 2013).

    .. math:: u \leftarrow g \cdot \frac{c}{\max(\|g\|_2, c)}, \qquad \|g\|_2 = \sqrt{\textstyle\sum_{leaves} \sum_i g_i^2}

    The norm is accumulated in at least float32 (float16 gradients whose squares
    underflow or overflow in float16 are still clipped correctly), and the factor
    is applied in float32 before casting back. All-zero gradients give zeros, and
    float32 gradients of ``3e38`` (whose sum of squares overflows) are clipped,
    not zeroed: a scaled sum of squares, read in the same pass, takes over.

    Args:
        max_norm: the bound :math:`c > 0`.

    Returns:
        A stateless `GradientTransformation`.

    Raises:
        ValueError: ``max_norm <= 0``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.clip_by_global_norm(1.0)
        >>> tx.update({'w': jnp.array([3.0, 4.0])}, tx.init(None))[0]['w'].tolist()
        [0.6000000238418579, 0.800000011920929]

    References:
        Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
        networks", ICML 2013.
    """

    def clip_updates(updates, params):
        del params
        norm = _linalg._tree_norm_parts(updates)  # no overflow for float32 gradients of 3e38
        # Not c / max(norm, c): a traced bound of 0 on all-zero gradients would be 0/0.
        a, b = _clip_factor(norm, _tree.hp(max_norm, norm.value.dtype))
        (clipped,) = _tree.apply_rule(_scale2_rule, updates, scalars=lambda dtype: (a.astype(dtype), b.astype(dtype)))
        return clipped

    return stateless(clip_updates, name="clip_by_global_norm")


@_tree.leaf_rule
def _scale2_rule(g, factors):
    a, b = factors
    return (((_tree.wide(g) * b) * a).astype(g.dtype),)


# --------------------------------------------------------------------------- state names
#
# optax's clipping transformations keep no state; these names are `EmptyState`, as in optax.

ClipState = EmptyState
ClipByGlobalNormState = EmptyState
AdaptiveGradClipState = EmptyState


def _clip_factor(norm: _linalg.NormParts, bound: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``bound / max(norm, bound)`` as a product ``a * b`` of two normal numbers (see `NormParts.clip_factors`).

    Never 0/0: a bound of 0 on a zero norm gives 1. Apply as ``(x * b) * a``.
    """
    _, a, b = norm.clip_factors(bound)
    return a, b


# --------------------------------------------------------------------------- block RMS


def _per_leaf_parts(leaves: list, axes: Any = None) -> list:
    """`NormParts` of each leaf (None for a None leaf) over `axes(leaf)` (all axes when None), keepdims.

    One `lax.cond` for the whole tree: the scaled sums run only when some plain sum overflowed.
    Each leaf's sums are traced once per shape (`_linalg._leaf_sum_squares`).
    """
    present = [x for x in leaves if x is not None]

    def axis(x):
        a = None if axes is None else axes(x)
        return None if a is None else tuple(int(i) for i in np.atleast_1d(a))

    def sums(scaled):
        return [_linalg._leaf_sum_squares(x, axis=axis(x), keepdims=True, scaled=scaled) for x in present]

    parts = iter(_linalg._parts_many(sums(False), lambda: sums(True)))
    return [None if x is None else next(parts) for x in leaves]


def _scaled(g: jax.Array, factors: tuple[jax.Array, jax.Array]) -> jax.Array:
    """``(g * b) * a`` in `g`'s compute dtype, returned in `g`'s dtype."""
    cdt = _tree.compute_dtype(g.dtype)
    a, b = factors
    return _scale2_rule(g, (a.astype(cdt), b.astype(cdt)))[0]


@_hyper.declare(threshold=_hyper.POSITIVE)
def clip_by_block_rms(threshold) -> GradientTransformation:
    r"""Clips each leaf (a weight vector or matrix, a "block") to a root mean square of at most ``threshold``.

    .. math::
        u = g \cdot \frac{c}{\max(\operatorname{rms}(g), c)}, \qquad
        \operatorname{rms}(g) = \sqrt{\tfrac1n \textstyle\sum_i |g_i|^2}

    leaf by leaf (Pascanu et al.'s norm clipping per block, on the RMS rather
    than the norm). The RMS is accumulated in at least float32 and does not
    overflow for float32 gradients of ``3e38``; all-zero leaves stay zero.

    Args:
        threshold: the largest RMS :math:`c > 0` of a leaf.

    Returns:
        A stateless `GradientTransformation` (state `EmptyState`).

    Raises:
        ValueError: ``threshold <= 0``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.clip_by_block_rms(1.0)
        >>> tx.update({'w': jnp.array([3.0, 4.0])}, tx.init(None))[0]['w'].tolist()  # rms = sqrt(12.5)
        [0.8485281467437744, 1.1313709020614624]

    References:
        Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural
        networks", ICML 2013 (norm clipping, section 3.2).
    """

    def clip_updates(updates, params):
        del params
        leaves, treedef = jax.tree_util.tree_flatten(_tree.as_updates(updates), is_leaf=_tree.is_none)  # ints: floats
        out = []
        for g, parts in zip(leaves, _per_leaf_parts(leaves)):
            if g is None:
                out.append(None)
                continue
            n = jnp.sqrt(jnp.asarray(max(g.size, 1), parts.value.dtype))
            rms = _linalg.NormParts(parts.value / n, parts.scale)
            out.append(_scaled(g, _clip_factor(rms, _tree.hp(threshold, parts.value.dtype))))
        return treedef.unflatten(out)

    return stateless(clip_updates, name="clip_by_block_rms")


# --------------------------------------------------------------------------- unit-wise norms (AGC)

_UNIT_AXES = {2: (0,), 3: (0,), 4: (0, 1, 2), 5: (0, 1, 2, 3)}


def _unit_axes(shape: tuple, axis: Any) -> Any:
    if axis is not None:
        return axis
    if sum(d != 1 for d in shape) <= 1:  # a vector, up to axes of size 1: one unit
        return None
    if len(shape) not in _UNIT_AXES:
        raise ValueError(
            f"unitwise_norm: expected an array of rank 0 to 5, got shape {tuple(shape)}; pass "
            "`axis` to name the reduction axes of other shapes."
        )
    return _UNIT_AXES[len(shape)]


def _unit_parts(x: jax.Array, axis: Any) -> _linalg.NormParts:
    """The unit-wise norm parts of `x`, broadcast to its shape (in its real compute dtype)."""
    axes = _unit_axes(x.shape, axis)
    parts = _linalg._norm_parts(x, axis=axes, keepdims=True)
    return _linalg.NormParts(jnp.broadcast_to(parts.value, x.shape), jnp.broadcast_to(parts.scale, x.shape))


def unitwise_norm(x, axis=None) -> jax.Array:
    r"""The L2 norm of each unit of `x`, broadcast to `x`'s shape (Brock et al., 2021).

    A unit is a slice of `x` over the reduction axes, by rank as in the NFNets
    code: all of `x` when it has at most one axis of size above 1, axis 0 of a
    rank-2 or rank-3 array (one norm per output unit of a linear or multi-head
    linear layer), axes (0, 1, 2) of a rank-4 array (2-D convolutions, HWIO),
    axes (0, 1, 2, 3) of a rank-5 array (3-D convolutions); `axis` overrides
    these. (optax 0.2.8 computes the same; its docstring says axes (0, 1, 2)
    for rank 3.)

    .. math:: \|x_{\text{unit}}\|_F = \sqrt{\textstyle\sum_{i \in \text{unit}} |x_i|^2}

    Computed in at least float32 (without overflow where the norm is finite),
    returned in `x`'s real dtype.

    Args:
        x: an array.
        axis: an int or tuple of ints, the reduction axes (None: by rank).

    Returns:
        An array shaped like `x`.

    Raises:
        ValueError: `axis` is None and `x` has rank above 5.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.transforms.unitwise_norm(jnp.array([[3.0, 1.0], [4.0, 0.0]])).tolist()
        [[5.0, 1.0], [5.0, 1.0]]

    References:
        Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image Recognition
        Without Normalization", ICML 2021, section 4.1.
    """
    x = jnp.asarray(x)
    return _unit_parts(x, axis).norm().astype(x.real.dtype)


def unitwise_clip(g_norm, max_norm, grad, div_eps=1e-6) -> jax.Array:
    r"""Rescales each unit of `grad` whose norm `g_norm` exceeds `max_norm` to that norm.

    .. math::
        u = \begin{cases} g \, \dfrac{M}{\max(\|g\|, \delta)} & \|g\| > M \\ g & \text{otherwise} \end{cases}

    Args:
        g_norm: the unit-wise norms of `grad` (`unitwise_norm`), broadcastable to it.
        max_norm: the unit-wise bounds :math:`M`, broadcastable to `grad`.
        grad: the gradient.
        div_eps: :math:`\delta > 0`, guarding the division.

    Returns:
        The clipped gradient, in `grad`'s dtype.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> g = jnp.array([1.0, 10.0])
        >>> gx.transforms.unitwise_clip(jnp.abs(g), jnp.array([2.0, 2.0]), g).tolist()
        [1.0, 2.0]
    """
    grad = jnp.asarray(grad)
    cdt = _tree.compute_dtype(grad.dtype)
    real = _tree.real_dtype(grad.dtype)
    g_norm = jnp.asarray(g_norm).astype(real)
    max_norm = jnp.asarray(max_norm).astype(real)
    factor = max_norm / jnp.maximum(g_norm, _tree.hp(div_eps, real))
    clipped = _tree.wide(grad) * factor.astype(cdt)
    return jnp.where(g_norm > max_norm, clipped, _tree.wide(grad)).astype(grad.dtype)


@_hyper.declare(clipping=_hyper.POSITIVE, eps=_hyper.EPS)
def adaptive_grad_clip(clipping, eps=1e-3, axis=None) -> GradientTransformation:
    r"""Adaptive gradient clipping (AGC): each unit's gradient norm is bounded by ``clipping`` times its parameter norm.

    Brock et al. (2021), eq. 3, unit by unit (see `unitwise_norm` for the units):

    .. math::
        u_i = \begin{cases}
            \lambda \dfrac{\|W_i\|^\star}{\|G_i\|} G_i & \dfrac{\|G_i\|}{\|W_i\|^\star} > \lambda \\
            G_i & \text{otherwise}
        \end{cases}, \qquad \|W_i\|^\star = \max(\|W_i\|_F, \epsilon)

    where :math:`\epsilon` keeps zero-initialized parameters (biases) from
    freezing. The norms are computed in at least float32 and do not overflow
    where they are finite.

    Args:
        clipping: :math:`\lambda > 0`, the largest ratio of a unit's gradient norm
            to its parameter norm.
        eps: :math:`\epsilon \ge 0`, the smallest parameter norm.
        axis: the reduction axes of a unit (None: by rank, as `unitwise_norm`).

    Returns:
        A stateless `GradientTransformation` (state `EmptyState`) whose update
        needs the params.

    Raises:
        ValueError: ``clipping <= 0``, ``eps < 0``; at update, no params, or a
            leaf of rank above 5 with ``axis=None``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.adaptive_grad_clip(0.1)
        >>> params = jnp.array([3.0, 4.0])  # norm 5: unit gradient norms above 0.5 are clipped
        >>> tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)[0].tolist()
        [0.0, 0.5]

    References:
        Brock, De, Smith & Simonyan, "High-Performance Large-Scale Image Recognition
        Without Normalization", ICML 2021, section 4.1, eq. 3.
    """
    fn = "adaptive_grad_clip"
    axis_static = tuple(axis) if isinstance(axis, list) else axis

    def clip_updates(updates, params):
        updates, params = _tree.as_updates(updates), _tree.arrays(params)  # Python floats, ints: float arrays
        _checks.require_params(params, fn)
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)

        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_tree.is_none)
        p_leaves = treedef.flatten_up_to(params)
        units = [None if g is None else _unit_axes(g.shape, axis_static) for g in leaves]
        pairs = [x for g, p, u in zip(leaves, p_leaves, units) if g is not None for x in (g, p)]
        unit_of = {id(x): u for g, p, u in zip(leaves, p_leaves, units) if g is not None for x in (g, p)}
        parts = iter(_per_leaf_parts(pairs, lambda x: unit_of[id(x)]))
        out = []
        for g in leaves:
            if g is None:
                out.append(None)
                continue
            g_parts, p_parts = next(parts), next(parts)
            real = jnp.promote_types(g_parts.value.dtype, p_parts.value.dtype)
            gv, gs = g_parts.value.astype(real), g_parts.scale.astype(real)
            pv, ps = p_parts.value.astype(real), p_parts.scale.astype(real)
            # The bound clipping * max(||W||, eps) on ||G||, as value bv times scale ps (no overflow).
            bv = _tree.hp(clipping, real) * jnp.maximum(pv, _tree.hp(eps, real) / ps)
            # Clip where gv * gs > bv * ps; the factor bv ps / (gv gs) is applied as (x * ps/gs) * (bv/gv).
            over = gv * (gs / ps) > bv
            a = jnp.where(over, bv / jnp.where(over, gv, 1), 1)
            b = jnp.where(over, ps / gs, 1)
            out.append(_scaled(g, (a, b)))
        return treedef.unflatten(out)

    return stateless(clip_updates, name=fn)


# --------------------------------------------------------------------------- per-example clipping


def _batch_size(leaves: list, fn: str) -> int:
    if not leaves:
        raise ValueError(f"{fn}: `grads` has no leaves; expected per-example gradients with a batch axis 0.")
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"{fn}: every leaf of `grads` needs the same batch size on axis 0 (one row per example); "
            f"got leaf shapes {[tuple(jnp.shape(x)) for x in leaves]}."
        )
    return sizes.pop()


def _example_parts(leaves: list) -> _linalg.NormParts:
    """The global norm of each example (row) over `leaves`, as parts of shape (batch,)."""
    acc = _tree.accumulation_dtype(leaves)

    def sums(scaled):
        return [sum(_linalg._sum_squares(x, tuple(range(1, x.ndim)), scaled=scaled).astype(acc) for x in leaves)]

    (parts,) = _linalg._parts_many(sums(False), lambda: sums(True))
    return parts


def _clipped_sum(x: jax.Array, factors: tuple[jax.Array, jax.Array]) -> jax.Array:
    """``sum_b (x_b * b_b) * a_b`` in at least float32, in `x`'s dtype (float32 for integers)."""
    out_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.inexact) else np.dtype(np.float32)
    w = x.astype(_tree.compute_dtype(out_dtype))
    a, b = (f.astype(w.dtype).reshape((-1,) + (1,) * (x.ndim - 1)) for f in factors)
    return jnp.sum((w * b) * a, axis=0).astype(out_dtype)


def _as_float(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    return x if jnp.issubdtype(x.dtype, jnp.inexact) else x.astype(jnp.float32)


def per_example_global_norm_clip(grads, l2_norm_clip) -> tuple[Any, jax.Array]:
    r"""Clips each example's gradient to a global L2 norm of at most ``l2_norm_clip``, then sums them.

    For per-example gradients :math:`g^{(b)}` (row :math:`b` of every leaf),
    DP-SGD's clipping (Abadi et al., 2016, Algorithm 1):

    .. math::
        \bar g = \sum_b g^{(b)} \min\Big(1, \frac{C}{\|g^{(b)}\|_2}\Big), \qquad
        \|g^{(b)}\|_2^2 = \sum_{leaves} \sum_i \big(g^{(b)}_i\big)^2

    This is a function on a batch of gradients, not a transformation. The
    norms are accumulated in at least float32 (without overflow where finite);
    an example of norm 0 is never clipped, so ``C = 0`` gives zeros.

    Args:
        grads: a tree (usually a list) of per-example gradients, every leaf with
            the batch on axis 0.
        l2_norm_clip: :math:`C \ge 0` (``inf``: no clipping).

    Returns:
        ``(summed, num_clipped)``: the sum over the batch of the clipped
        gradients (a tree like `grads` without the batch axis, in each leaf's
        dtype; float32 for integers) and the int32 number of examples whose norm
        exceeded :math:`C`.

    Raises:
        ValueError: ``l2_norm_clip < 0``, `grads` has no leaves, or its leaves
            have different batch sizes.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> grads = [jnp.array([[0.0, 0.0], [3.0, 4.0], [0.6, 0.8]])]  # norms 0, 5, 1
        >>> summed, num_clipped = gx.per_example_global_norm_clip(grads, 2.0)
        >>> summed[0].tolist(), int(num_clipped)  # (3, 4) * 2/5 + (0.6, 0.8)
        ([1.8000000715255737, 2.4000000953674316], 1)

    References:
        Abadi et al., "Deep Learning with Differential Privacy", CCS 2016, Algorithm 1.
    """
    fn = "per_example_global_norm_clip"
    # Validated here, not by `_hyper.declare`: a function on gradients, not a transformation factory.
    _checks.check_non_negative("l2_norm_clip", l2_norm_clip, fn=fn)
    leaves, treedef = jax.tree_util.tree_flatten(grads)
    leaves = [_as_float(x) for x in leaves]
    _batch_size(leaves, fn)
    parts = _example_parts(leaves)
    bound = _tree.hp(l2_norm_clip, parts.value.dtype)
    num_clipped = jnp.sum(parts.exceeds(bound)).astype(jnp.int32)
    summed = treedef.unflatten([_clipped_sum(x, _clip_factor(parts, bound)) for x in leaves])
    return summed, num_clipped


def per_example_layer_norm_clip(grads, global_l2_norm_clip, uniform=True) -> tuple[Any, Any]:
    r"""Clips each example's gradient layer by layer (leaf by leaf), then sums them.

    With :math:`K` leaves (layers) and an overall bound :math:`C`, leaf
    :math:`k` of each example is clipped to

    .. math::
        C_k = \frac{C}{\sqrt K} \ (\text{uniform}), \qquad
        C_k = C \sqrt{\frac{D_k}{D}} \ (\text{otherwise}),

    :math:`D_k` the number of entries of one example's leaf :math:`k` and
    :math:`D = \sum_k D_k`; either way :math:`\sum_k C_k^2 = C^2`, so the
    concatenated gradient has norm at most :math:`C` (McMahan et al., 2018,
    per-layer clipping). Each leaf is then treated as
    `per_example_global_norm_clip` treats the whole tree.

    Args:
        grads: a tree of per-example gradients, every leaf with the batch on axis 0.
        global_l2_norm_clip: :math:`C \ge 0`.
        uniform: the same bound for every layer (True) or bounds proportional to
            the square root of the layer sizes.

    Returns:
        ``(summed, num_clipped)``: trees like `grads`, the sum over the batch of
        each clipped leaf and the int32 number of examples clipped in that leaf.

    Raises:
        ValueError: ``global_l2_norm_clip < 0``, `grads` has no leaves, or its
            leaves have different batch sizes.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> grads = [jnp.array([[3.0, 4.0], [0.3, 0.4]]), jnp.array([[1.0], [1.0]])]
        >>> summed, num_clipped = gx.per_example_layer_norm_clip(grads, 2.0)  # C_k = 2 / sqrt(2)
        >>> [round(v, 4) for v in summed[0].tolist()], [int(n) for n in num_clipped]
        ([1.1485, 1.5314], [1, 0])

    References:
        McMahan, Ramage, Talwar & Zhang, "Learning Differentially Private Recurrent
        Language Models", ICLR 2018, section 3 (per-layer clipping).
    """
    fn = "per_example_layer_norm_clip"
    _checks.check_non_negative("global_l2_norm_clip", global_l2_norm_clip, fn=fn)
    leaves, treedef = jax.tree_util.tree_flatten(grads)
    leaves = [_as_float(x) for x in leaves]
    _batch_size(leaves, fn)
    sizes = [int(np.prod(x.shape[1:], dtype=np.int64)) for x in leaves]
    total = sum(sizes)
    summed, counts = [], []
    for x, size in zip(leaves, sizes):
        parts = _example_parts([x])
        real = parts.value.dtype
        if uniform:
            share = 1.0 / np.sqrt(len(leaves))
        else:
            share = np.sqrt(size / total) if total else 0.0
        bound = _tree.hp(global_l2_norm_clip, real) * _tree.hp(share, real)
        summed.append(_clipped_sum(x, _clip_factor(parts, bound)))
        counts.append(jnp.sum(parts.exceeds(bound)).astype(jnp.int32))
    return treedef.unflatten(summed), treedef.unflatten(counts)


__all__ = [
    "AdaptiveGradClipState",
    "ClipByGlobalNormState",
    "ClipState",
    "adaptive_grad_clip",
    "clip_by_block_rms",
    "per_example_global_norm_clip",
    "per_example_layer_norm_clip",
    "unitwise_clip",
    "unitwise_norm",
]
