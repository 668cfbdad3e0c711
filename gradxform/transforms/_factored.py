"""Adafactor (Shazeer & Stern, 2018): `scale_by_factored_rms`, the parameter-scale rules and `adafactor`."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, stateless
from gradxform._combine import chain
from gradxform.transforms._momentum import ema
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale, scale_by_learning_rate


class FactoredState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    v_row: Any  # per leaf: row statistics R (the leaf's shape less its largest axis) if factored, else zeros (1,)
    v_col: Any  # per leaf: column statistics C (less its second-largest axis) if factored, else zeros (1,)
    v: Any  # per leaf: the full second moment V (like the leaf) if not factored, else zeros (1,)


def _factored_dims(shape: tuple, factored: bool, min_dim_size_to_factor: int) -> Optional[tuple[int, int]]:
    """``(d1, d0)``: the leaf's second-largest and largest axes, or None when it is not factored.

    A leaf is factored when ``factored`` is set, it has at least 2 axes and its
    second-largest axis has at least ``min_dim_size_to_factor`` entries (optax's rule;
    ties are broken by ``np.argsort``, as optax does, so the state layout is the same).
    """
    if not factored or len(shape) < 2:
        return None
    order = np.argsort(shape)
    if shape[order[-2]] < min_dim_size_to_factor:
        return None
    return int(order[-2]), int(order[-1])


def _decay_rate_pow(i, exponent=0.8):
    r"""Shazeer & Stern's (2018) decay schedule :math:`\hat\beta_{2t} = 1 - t^{-c}`, :math:`t = i + 1`."""
    t = jnp.asarray(i + 1, jnp.float32)
    return 1.0 - t ** (-exponent)


def _mean(x: jax.Array, axis: int, keepdims: bool = False) -> jax.Array:
    """The mean over `axis`; 0 (not NaN) over an empty axis (a leaf with a zero-length axis)."""
    return jnp.sum(x, axis=axis, keepdims=keepdims) / max(x.shape[axis], 1)


def _ema(x: jax.Array, v: jax.Array, beta: _tree.Decay) -> jax.Array:
    """:math:`\\beta v + (1 - \\beta) x` as :math:`v + (1 - \\beta)(x - v)`: no rounding of :math:`\\beta` enters."""
    v = v.astype(x.dtype)
    return v + beta.complement * (x - v)


class _FactoredScalars(NamedTuple):
    beta: _tree.Decay  # the step's decay rate and its complement
    eps: jax.Array


@_tree.leaf_rule(static=("factored", "min_dim_size_to_factor"))
def _factored_rule(g, v_row, v_col, v, s: _FactoredScalars, *, factored, min_dim_size_to_factor):
    x = g.astype(s.eps.dtype)
    x2 = _tree.abs_sq(x) + s.eps
    dims = _factored_dims(g.shape, factored, min_dim_size_to_factor)
    if dims is None:
        v = _ema(x2, v, s.beta).astype(v.dtype)
        u = jnp.where(x == 0, 0, x * jax.lax.rsqrt(v.astype(x.dtype)))  # eps = 0, g = 0: 0, not 0 * inf
        return u.astype(g.dtype), v_row, v_col, v
    d1, d0 = dims
    v_row = _ema(_mean(x2, d0), v_row, s.beta).astype(v_row.dtype)
    v_col = _ema(_mean(x2, d1), v_col, s.beta).astype(v_col.dtype)
    r, c = v_row.astype(x.dtype), v_col.astype(x.dtype)
    r_mean = _mean(r, d1 - 1 if d1 > d0 else d1, keepdims=True)
    row_factor = (r / r_mean) ** -0.5
    col_factor = c**-0.5
    u = jnp.where(x == 0, 0, x * jnp.expand_dims(row_factor, d0) * jnp.expand_dims(col_factor, d1))  # never 0 * inf
    return u.astype(g.dtype), v_row, v_col, v


def _expected_state_shapes(shape: tuple, factored: bool, min_dim_size_to_factor: int) -> tuple:
    """``(v_row, v_col, v)`` shapes for a leaf of `shape`."""
    dims = _factored_dims(shape, factored, min_dim_size_to_factor)
    if dims is None:
        return (1,), (1,), tuple(shape)
    d1, d0 = dims
    return tuple(np.delete(shape, d0)), tuple(np.delete(shape, d1)), (1,)


def _check_factored_update(fn, state, updates, params, factored, min_dim_size_to_factor) -> None:
    """The state's type, the updates against the params, then each leaf against its state."""
    _checks.check_state_type(state, FactoredState, fn)
    if params is not None:
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)
    paths, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_tree.is_none)
    try:
        trees = [treedef.flatten_up_to(t) for t in (state.v_row, state.v_col, state.v)]
    except (ValueError, TypeError):
        _checks.check_tree_like(updates, state.v, tree_name="updates", like_name="state.v", fn=fn)
        raise _checks.TreeMismatchError(
            f"{fn}: updates have the structure {treedef} but state.v has "
            f"{jax.tree_util.tree_structure(state.v)}."
        ) from None
    for (path, g), vr, vc, v in zip(paths, *trees):
        if g is None:
            continue
        want = _expected_state_shapes(np.shape(g), factored, min_dim_size_to_factor)
        have = (np.shape(vr), np.shape(vc), np.shape(v))
        if want != have:
            where = jax.tree_util.keystr(path)
            raise _checks.TreeMismatchError(
                f"{fn}: updates{where} has shape {tuple(np.shape(g))} but the state was built for a leaf "
                f"of another shape: state.v{where} has shape {have[2]}, state.v_row{where} {have[0]}, "
                f"state.v_col{where} {have[1]} (expected {want[2]}, {want[0]}, {want[1]}). Pass updates "
                "shaped like the params given to init."
            )


_FACTORED = dict(
    factored=_hyper.BOOL,
    decay_rate=_hyper.NONNEG._replace(
        draw=(0.5, 1.0), source="the exponent c of 1 - t^-c (Shazeer & Stern, 2018, section 7.2)"
    ),
    min_dim_size_to_factor=_hyper.integer(0, float("inf"), draw=(1, 4)),
)


@_hyper.declare(
    **_FACTORED,
    step_offset=_hyper.integer(draw=(-3, 0), source="the step t is count + 1 - step_offset"),
    epsilon=_hyper.EPS._replace(draw=(1e-30, 1e-6)),
)
def scale_by_factored_rms(
    factored: bool = True,
    decay_rate=0.8,
    step_offset=0,
    min_dim_size_to_factor: int = 128,
    epsilon=1e-30,
    decay_rate_fn: Callable[[Any, Any], Any] = _decay_rate_pow,
) -> GradientTransformation:
    r"""Rescales by Adafactor's factored estimate of the root mean square gradient (Shazeer & Stern, 2018).

    With :math:`t` the 1-based step and :math:`\hat\beta_{2t} = 1 - t^{-c}` (``c = decay_rate``),
    a leaf :math:`G_t` of :math:`n \ge 2` axes whose second-largest axis has at least
    ``min_dim_size_to_factor`` entries keeps only row and column statistics (Algorithm 4,
    with means in place of sums, which leaves :math:`\hat V_t` unchanged):

    .. math::
        R_t = \hat\beta_{2t} R_{t-1} + (1 - \hat\beta_{2t})\,\mathrm{mean}_{\text{cols}}(G_t^2 + \epsilon_1), \qquad
        C_t = \hat\beta_{2t} C_{t-1} + (1 - \hat\beta_{2t})\,\mathrm{mean}_{\text{rows}}(G_t^2 + \epsilon_1), \\
        \hat V_t = \frac{R_t C_t}{\mathrm{mean}(R_t)}, \qquad U_t = G_t / \sqrt{\hat V_t}

    where the "columns" are the largest axis and the "rows" the second-largest (other
    axes are batch axes). Every other leaf keeps the full second moment (Algorithm 5):

    .. math::
        V_t = \hat\beta_{2t} V_{t-1} + (1 - \hat\beta_{2t})(G_t^2 + \epsilon_1), \qquad
        U_t = G_t / \sqrt{V_t}

    The first step has :math:`\hat\beta_{21} = 0`: no bias correction is needed.

    Args:
        factored: factor the second moment of leaves of 2 axes or more.
        decay_rate: the exponent :math:`c \ge 0` of :math:`\hat\beta_{2t} = 1 - t^{-c}` (0.8 in the paper).
        step_offset: :math:`t` is ``count + 1 - step_offset`` (to restart the schedule).
        min_dim_size_to_factor: a leaf is factored only if its second-largest axis has at
            least this many entries (an integer >= 0).
        epsilon: :math:`\epsilon_1 \ge 0`, added to the squared gradients.
        decay_rate_fn: ``(step, decay_rate) -> beta_t`` with ``step = count - step_offset``
            (0-based); the default is :math:`1 - (\text{step} + 1)^{-c}`.

    Returns:
        A `GradientTransformation` with state `FactoredState`: for each leaf, ``v_row`` and
        ``v_col`` (zeros of shape (1,) where not factored) and ``v`` (zeros of shape (1,)
        where factored), in the params' dtype (float32 for float16 params).

    Raises:
        ValueError: a negative ``decay_rate``, ``epsilon`` or ``min_dim_size_to_factor``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_factored_rms(min_dim_size_to_factor=2)
        >>> g = jnp.array([[1.0, 2.0], [3.0, 4.0]])
        >>> u, state = tx.update(g, tx.init(g))
        >>> state.v_row.tolist(), state.v_col.tolist()  # row and column means of g^2
        ([2.5, 12.5], [5.0, 10.0])
        >>> [round(x, 4) for x in u.ravel().tolist()]  # g / sqrt(R C / mean(R))
        [0.7746, 1.0954, 1.0392, 0.9798]

    References:
        Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
        ICML 2018, Algorithms 4 and 5, section 7.2 (the decay schedule).
    """
    fn = "scale_by_factored_rms"
    default_schedule = decay_rate_fn is _decay_rate_pow

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays

        def one(p):
            dtype = _tree.square_dtype(p.dtype)
            r, c, v = _expected_state_shapes(np.shape(p), factored, min_dim_size_to_factor)
            return jnp.zeros(r, dtype), jnp.zeros(c, dtype), jnp.zeros(v, dtype)

        leaves, treedef = jax.tree_util.tree_flatten(params)
        triples = [one(p) for p in leaves]
        v_row, v_col, v = (treedef.unflatten([t[k] for t in triples]) for k in range(3))
        return FactoredState(count=jnp.zeros([], jnp.int32), v_row=v_row, v_col=v_col, v=v)

    def update_fn(updates, state, params=None, **extra_args):
        updates, params = _tree.arrays(updates), _tree.arrays(params)  # Python floats: arrays
        del extra_args
        _check_factored_update(fn, state, updates, params, factored, min_dim_size_to_factor)
        step = state.count - step_offset  # 0-based; the paper's t is step + 1

        def scalars(dtype):
            real = _tree.real_dtype(dtype)
            if default_schedule:  # 1 - beta = t^-c formed directly, not as 1 - (1 - t^-c)
                complement = (jnp.asarray(step) + 1).astype(real) ** (-_tree.hp(decay_rate, real))
                beta = _tree.Decay(1 - complement, complement)
            else:
                rate = _tree.hp(decay_rate_fn(step, decay_rate), real)
                beta = _tree.Decay(rate, 1 - rate)
            return _FactoredScalars(beta=beta, eps=_tree.hp(epsilon, real))

        updates, v_row, v_col, v = _tree.apply_rule(
            _factored_rule, updates, state.v_row, state.v_col, state.v, scalars=scalars,
            factored=factored, min_dim_size_to_factor=min_dim_size_to_factor,
        )
        return updates, FactoredState(count=_tree.safe_increment(state.count), v_row=v_row, v_col=v_col, v=v)

    return GradientTransformation(init_fn, update_fn)


# --------------------------------------------------------------------------- parameter scale


@_tree.leaf_rule(static=("kind",))
def _param_block_rule(g, p, min_scale, *, kind):
    q = _tree.abs_sq(p.astype(min_scale.dtype))
    total = jnp.sum(q)
    size = max(p.size, 1)
    block = jnp.sqrt(total / size) if kind == "rms" else jnp.sqrt(total)
    factor = jnp.maximum(block, min_scale)
    return ((g.astype(_tree.compute_dtype(g.dtype)) * factor.astype(_tree.compute_dtype(g.dtype))).astype(g.dtype),)


def _param_block(fn: str, kind: str, min_scale) -> GradientTransformation:
    def scale_updates(updates, params):
        _checks.require_params(params, fn)
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)
        (out,) = _tree.apply_rule(
            _param_block_rule, updates, inputs=(params,), kind=kind,
            scalars=lambda dtype: _tree.hp(min_scale, _tree.real_dtype(dtype)),
        )
        return out

    return stateless(scale_updates, name=fn)


_MIN_SCALE = _hyper.NONNEG._replace(draw=(1e-4, 1e-2), source="epsilon_2 of Shazeer & Stern (2018), Algorithm 4")


@_hyper.declare(min_scale=_MIN_SCALE)
def scale_by_param_block_norm(min_scale=1e-3) -> GradientTransformation:
    r"""Multiplies each leaf's update by the norm of its parameter block, at least ``min_scale``.

    .. math:: u_t = \max(\|\theta_{t-1}\|_2, \epsilon_2)\, g_t

    with the norm taken over the whole leaf.

    Args:
        min_scale: :math:`\epsilon_2 \ge 0`, the smallest factor.

    Returns:
        A stateless `GradientTransformation`; its update needs the params.

    Raises:
        ValueError: a negative ``min_scale``; at update, no params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_param_block_norm()
        >>> p = jnp.array([3.0, 4.0])
        >>> tx.update(jnp.array([1.0, -1.0]), tx.init(p), p)[0].tolist()
        [5.0, -5.0]

    References:
        Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
        ICML 2018, section 8 (the relative step size), with the norm in place of the RMS.
    """
    return _param_block("scale_by_param_block_norm", "norm", min_scale)


@_hyper.declare(min_scale=_MIN_SCALE)
def scale_by_param_block_rms(min_scale=1e-3) -> GradientTransformation:
    r"""Multiplies each leaf's update by the root mean square of its parameter block, at least ``min_scale``.

    Adafactor's relative step size (Shazeer & Stern, 2018, Algorithm 4, line 8):

    .. math:: u_t = \max(\mathrm{RMS}(\theta_{t-1}), \epsilon_2)\, g_t, \qquad
              \mathrm{RMS}(x) = \sqrt{\tfrac1n \textstyle\sum_i x_i^2}

    Args:
        min_scale: :math:`\epsilon_2 \ge 0`, the smallest factor (1e-3 in the paper).

    Returns:
        A stateless `GradientTransformation`; its update needs the params.

    Raises:
        ValueError: a negative ``min_scale``; at update, no params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_param_block_rms()
        >>> p = jnp.array([1.0, 7.0])  # RMS 5
        >>> tx.update(jnp.array([1.0, -1.0]), tx.init(p), p)[0].tolist()
        [5.0, -5.0]

    References:
        Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
        ICML 2018, Algorithm 4 and section 8.
    """
    return _param_block("scale_by_param_block_rms", "rms", min_scale)


@_tree.leaf_rule
def _block_rms_clip_rule(g, threshold):
    x = g.astype(_tree.compute_dtype(g.dtype))
    rms = jnp.sqrt(jnp.sum(_tree.abs_sq(x)) / max(x.size, 1))
    denominator = jnp.maximum(1, rms / threshold)
    return ((x / denominator.astype(x.dtype)).astype(g.dtype),)


def _clip_by_block_rms(threshold) -> GradientTransformation:
    r"""Adafactor's update clipping, :math:`\hat U_t = U_t / \max(1, \mathrm{RMS}(U_t) / d)`, per leaf."""

    def clip_updates(updates, params):
        del params
        (out,) = _tree.apply_rule(
            _block_rms_clip_rule, updates, scalars=lambda dtype: _tree.hp(threshold, _tree.real_dtype(dtype))
        )
        return out

    return stateless(clip_updates, name="clip_by_block_rms")


# --------------------------------------------------------------------------- the optimizer


@_hyper.declare(
    learning_rate=_hyper.LR._replace(optional=True),
    **_FACTORED,
    decay_offset=_hyper.integer(draw=(-3, 0), source="the step t is count + 1 - decay_offset"),
    multiply_by_parameter_scale=_hyper.BOOL,
    clipping_threshold=_hyper.POSITIVE._replace(optional=True, draw=(0.5, 2.0)),
    momentum=_hyper.MOMENTUM,
    weight_decay_rate=_hyper.NONNEG._replace(optional=True),
    eps=_hyper.EPS._replace(draw=(1e-30, 1e-6)),
)
def adafactor(
    learning_rate: Optional[ScalarOrSchedule] = None,
    min_dim_size_to_factor: int = 128,
    decay_rate=0.8,
    decay_offset=0,
    multiply_by_parameter_scale: bool = True,
    clipping_threshold=1.0,
    momentum=None,
    dtype_momentum: Any = jnp.float32,
    weight_decay_rate=None,
    eps=1e-30,
    factored: bool = True,
    weight_decay_mask=None,
) -> GradientTransformation:
    r"""Adafactor (Shazeer & Stern, 2018, Algorithms 4 and 5), as optax builds it.

    ``chain(scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps),``
    ``clip_by_block_rms(clipping_threshold), scale_by_learning_rate(learning_rate, flip_sign=False),``
    ``scale_by_param_block_rms(), ema(momentum, debias=False, accumulator_dtype=dtype_momentum),``
    ``add_decayed_weights(weight_decay_rate, weight_decay_mask), scale(-1))``, each optional
    piece left out when its argument is None (or ``multiply_by_parameter_scale=False``):

    .. math::
        \hat U_t = \frac{U_t}{\max(1, \mathrm{RMS}(U_t) / d)}, \qquad
        \theta_t = \theta_{t-1} - \rho_t \max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))\,\hat U_t

    with :math:`U_t` of `scale_by_factored_rms`, :math:`d` = ``clipping_threshold``,
    :math:`\rho_t` = ``learning_rate`` (1 when None) and :math:`\epsilon_2 = 10^{-3}`.
    ``momentum`` keeps an undebiased EMA of the scaled updates; ``weight_decay_rate``
    adds :math:`\lambda\theta_{t-1}` after the learning rate (not scaled by it).

    Args:
        learning_rate: :math:`\rho_t`, a number or a schedule, or None (no scaling, as the
            paper's relative step size :math:`\min(10^{-2}, 1/\sqrt t)` is left to a schedule).
        min_dim_size_to_factor: factor a leaf only if its second-largest axis has at least
            this many entries (an integer >= 0).
        decay_rate: the exponent :math:`c \ge 0` of :math:`\hat\beta_{2t} = 1 - t^{-c}`.
        decay_offset: :math:`t` is ``count + 1 - decay_offset``.
        multiply_by_parameter_scale: scale by :math:`\max(\epsilon_2, \mathrm{RMS}(\theta_{t-1}))`
            (needs the params).
        clipping_threshold: :math:`d > 0`, or None for no update clipping.
        momentum: :math:`\beta_1 \in [0, 1)`, or None for none.
        dtype_momentum: dtype of the momentum.
        weight_decay_rate: :math:`\lambda \ge 0` (or a schedule), or None for none (needs the params).
        eps: :math:`\epsilon_1 \ge 0`, added to the squared gradients.
        factored: factor the second moment of leaves of 2 axes or more.
        weight_decay_mask: a tree of bools (or a function of the params) selecting the decayed leaves.

    Returns:
        A `GradientTransformation` whose state is the tuple of the chain's states, as optax's
        (`FactoredState` first).

    Raises:
        ValueError: a value outside the ranges above.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.adafactor(learning_rate=0.1, multiply_by_parameter_scale=False)
        >>> params = {'w': jnp.ones((2, 2))}
        >>> updates, _ = opt.update({'w': jnp.full((2, 2), 3.0)}, opt.init(params), params)
        >>> updates['w'].tolist()  # -rho * g / |g|
        [[-0.10000000149011612, -0.10000000149011612], [-0.10000000149011612, -0.10000000149011612]]

    References:
        Shazeer & Stern, "Adafactor: Adaptive Learning Rates with Sublinear Memory Cost",
        ICML 2018.
    """
    txs = [scale_by_factored_rms(factored, decay_rate, decay_offset, min_dim_size_to_factor, eps)]
    if clipping_threshold is not None:
        txs.append(_clip_by_block_rms(clipping_threshold))
    if learning_rate is not None:
        txs.append(scale_by_learning_rate(learning_rate, flip_sign=False))
    if multiply_by_parameter_scale:
        txs.append(scale_by_param_block_rms())
    if momentum is not None:
        txs.append(ema(momentum, debias=False, accumulator_dtype=dtype_momentum))
    if weight_decay_rate is not None:
        txs.append(add_decayed_weights(weight_decay_rate, mask=weight_decay_mask))
    txs.append(scale(-1))
    return chain(*txs)
