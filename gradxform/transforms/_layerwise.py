"""Layer-wise rules: the trust ratio of LARS and LAMB (You et al., 2017, 2020), Fromage
(Bernstein et al., 2020) and NovoGrad (Ginsburg et al., 2019); with Adafactor (`_factored`)
and SM3 (`_sm3`) re-exported here.

"Layer-wise": each leaf of the params is one layer's block; norms are over the whole leaf.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import (
    EmptyState,
    GradientTransformation,
    ScalarOrSchedule,
    stateless,
)
from gradxform._combine import chain, masked
from gradxform.transforms._adam import scale_by_adam
from gradxform.transforms._clipping import _per_leaf_parts
from gradxform.transforms._factored import (
    FactoredState,
    adafactor,
    scale_by_factored_rms,
    scale_by_param_block_norm,
    scale_by_param_block_rms,
)
from gradxform.transforms._momentum import trace
from gradxform.transforms._regularization import (
    _add_term,
    _identity,
    add_decayed_weights,
)
from gradxform.transforms._scale import scale_by_learning_rate
from gradxform.transforms._sm3 import ScaleBySM3State, scale_by_sm3, sm3

__all__ = [
    "FactoredState",
    "ScaleByNovogradState",
    "ScaleBySM3State",
    "ScaleByTrustRatioState",
    "adafactor",
    "fromage",
    "lamb",
    "lars",
    "novograd",
    "scale_by_factored_rms",
    "scale_by_novograd",
    "scale_by_param_block_norm",
    "scale_by_param_block_rms",
    "scale_by_sm3",
    "scale_by_trust_ratio",
    "sm3",
]

ScaleByTrustRatioState = EmptyState  # as optax: the trust ratio keeps no state


# --------------------------------------------------------------------------- the trust ratio


class _TrustScalars(NamedTuple):
    min_norm: jax.Array
    trust_coefficient: jax.Array
    eps: jax.Array


def _norm(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(_tree.abs_sq(x)))


@_tree.leaf_rule
def _trust_ratio_rule(g, p, norm_value, norm_scale, s: _TrustScalars):
    x = g.astype(_tree.compute_dtype(g.dtype))
    param_norm = jnp.maximum(_norm(p.astype(_tree.compute_dtype(p.dtype))).astype(s.eps.dtype), s.min_norm)
    # The update's norm is norm_value * norm_scale (scale 2**k where its plain sum of squares
    # overflowed: finite gradients of 3e38 are rescaled, not zeroed). There min_norm and eps
    # are below the norm's last bit, and 1 / scale is applied as a factor of its own.
    over = norm_scale.reshape(()) != 1
    value = norm_value.reshape(()).astype(s.eps.dtype)
    update_norm = jnp.where(over, value, jnp.maximum(value, s.min_norm))
    # A zero layer (or no update) would never move: keep the update as it is.
    zero_norm = (param_norm == 0) | (update_norm == 0)
    ratio = s.trust_coefficient * param_norm / jnp.where(zero_norm, 1, update_norm + jnp.where(over, 0, s.eps))
    ratio = jnp.where(zero_norm, 1, ratio)
    inv_scale = jnp.where(zero_norm, 1, 1 / norm_scale.reshape(()).astype(x.real.dtype))
    return (((x * inv_scale.astype(x.dtype)) * ratio.astype(x.dtype)).astype(g.dtype),)


@_hyper.declare(
    min_norm=_hyper.NONNEG,
    trust_coefficient=_hyper.NONNEG._replace(draw=(1e-3, 1.0), source="You et al. (2017): eta > 0"),
    eps=_hyper.EPS,
)
def scale_by_trust_ratio(min_norm=0.0, trust_coefficient=1.0, eps=0.0) -> GradientTransformation:
    r"""Rescales each leaf by its trust ratio, the ratio of the parameter and update norms.

    .. math::
        u_t = c\, \frac{\max(\|\theta_{t-1}\|, n_{min})}{\max(\|g_t\|, n_{min}) + \epsilon}\, g_t

    (You et al., 2017, equation 6; You et al., 2020, Algorithm 2, line 9 with
    :math:`\phi(z) = z`), norms taken over the whole leaf, and :math:`u_t = g_t` where
    either norm is 0 (a zero layer would never move; a zero update is not 0/0).

    Args:
        min_norm: :math:`n_{min} \ge 0`, the smallest norm (no clipping at 0).
        trust_coefficient: :math:`c \ge 0`.
        eps: :math:`\epsilon \ge 0`, added to the update's norm.

    Returns:
        A stateless `GradientTransformation` (`ScaleByTrustRatioState`, i.e. `EmptyState`);
        its update needs the params.

    Raises:
        ValueError: a negative argument; at update, no params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_trust_ratio()
        >>> p = jnp.array([3.0, 4.0])  # norm 5
        >>> tx.update(jnp.array([0.0, 0.5]), tx.init(p), p)[0].tolist()  # g * 5 / 0.5
        [0.0, 5.0]

    References:
        You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017.
        You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
        minutes", ICLR 2020, Algorithm 2.
    """
    fn = "scale_by_trust_ratio"

    def scalars(dtype):
        real = _tree.real_dtype(dtype)
        return _TrustScalars(_tree.hp(min_norm, real), _tree.hp(trust_coefficient, real), _tree.hp(eps, real))

    def scale_updates(updates, params):
        _checks.require_params(params, fn)
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)
        leaves, treedef = jax.tree_util.tree_flatten(_tree.arrays(updates), is_leaf=_tree.is_none)
        parts = _per_leaf_parts(leaves)  # one lax.cond for the tree: the scaled sums only on overflow
        values = treedef.unflatten([None if q is None else q.value for q in parts])
        scales = treedef.unflatten([None if q is None else q.scale for q in parts])
        (out,) = _tree.apply_rule(_trust_ratio_rule, updates, inputs=(params, values, scales), scalars=scalars)
        return out

    return stateless(scale_updates, name=fn)


_ADAM = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT)


@_hyper.declare(learning_rate=_hyper.LR, **_ADAM, weight_decay=_hyper.NONNEG)
def lamb(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-6,
    eps_root=0.0,
    weight_decay=0.0,
    mask=None,
) -> GradientTransformation:
    r"""LAMB (You et al., 2020, Algorithm 2): Adam with decoupled weight decay, rescaled per layer.

    ``chain(scale_by_adam(b1, b2, eps, eps_root), add_decayed_weights(weight_decay, mask),
    scale_by_trust_ratio(), scale_by_learning_rate(learning_rate))``:

    .. math::
        r_t = \frac{\hat m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}, \qquad
        \theta_t = \theta_{t-1} - \eta_t \frac{\|\theta_{t-1}\|}{\|r_t + \lambda\theta_{t-1}\|}
            (r_t + \lambda\theta_{t-1})

    Args:
        learning_rate: :math:`\eta_t`, a number or a schedule.
        b1, b2: Adam's decay rates in [0, 1). eps, eps_root: stabilizers >= 0.
        weight_decay: :math:`\lambda \ge 0` (or a schedule). mask: the decayed leaves.

    Returns:
        A `GradientTransformation`; its update needs the params.

    Raises:
        ValueError: a value outside the ranges above.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.lamb(0.1)
        >>> params = {'w': jnp.array([3.0, 4.0])}
        >>> updates, _ = opt.update({'w': jnp.array([1.0, 1.0])}, opt.init(params), params)
        >>> [round(x, 4) for x in updates['w'].tolist()]  # -0.1 * 5 * (1, 1) / sqrt(2)
        [-0.3536, -0.3536]

    References:
        You et al., "Large Batch Optimization for Deep Learning: Training BERT in 76
        minutes", ICLR 2020, Algorithm 2.
    """
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_trust_ratio(),
        scale_by_learning_rate(learning_rate),
    )


@_hyper.declare(
    learning_rate=_hyper.LR,
    weight_decay=_hyper.NONNEG,
    trust_coefficient=_hyper.NONNEG._replace(draw=(1e-3, 1.0), source="You et al. (2017): eta > 0"),
    eps=_hyper.EPS,
    momentum=_hyper.DECAY,
    nesterov=_hyper.BOOL,
)
def lars(
    learning_rate: ScalarOrSchedule,
    weight_decay=0.0,
    weight_decay_mask=True,
    trust_coefficient=0.001,
    eps=0.0,
    trust_ratio_mask=True,
    momentum=0.9,
    nesterov: bool = False,
) -> GradientTransformation:
    r"""LARS (You et al., 2017, Algorithm 1): layer-wise rates with momentum.

    ``chain(add_decayed_weights(weight_decay, weight_decay_mask), masked(scale_by_trust_ratio(
    trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask),
    scale_by_learning_rate(learning_rate), trace(momentum, nesterov))``:

    .. math::
        d_t = g_t + \beta\theta_{t-1}, \qquad
        v_t = m\, v_{t-1} - \eta_t\, c \frac{\|\theta_{t-1}\|}{\|d_t\| + \epsilon}\, d_t, \qquad
        \theta_t = \theta_{t-1} + v_t

    Note:
        The paper's local rate is :math:`c\|w\| / (\|\nabla L\| + \beta\|w\|)`; optax's,
        and this one, divides by the norm of the decayed gradient :math:`\|\nabla L + \beta w\|`.

    Args:
        learning_rate: :math:`\eta_t`, a number or a schedule.
        weight_decay: :math:`\beta \ge 0`; weight_decay_mask: the decayed leaves (True: all).
        trust_coefficient: :math:`c \ge 0`; eps: :math:`\epsilon \ge 0`.
        trust_ratio_mask: the leaves that get the trust ratio (True: all).
        momentum: :math:`m \in [0, 1)`; nesterov: Nesterov's form of the momentum.

    Returns:
        A `GradientTransformation`; its update needs the params.

    Raises:
        ValueError: a value outside the ranges above.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.lars(0.1, trust_coefficient=1.0)
        >>> params = {'w': jnp.array([3.0, 4.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.0, 2.0])}, opt.init(params), params)
        >>> updates['w'].tolist()  # -0.1 * 5 * g / |g|
        [0.0, -0.5]

    References:
        You, Gitman & Ginsburg, "Large Batch Training of Convolutional Networks", 2017.
    """
    return chain(
        add_decayed_weights(weight_decay, mask=weight_decay_mask),
        masked(scale_by_trust_ratio(trust_coefficient=trust_coefficient, eps=eps), trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
        trace(decay=momentum, nesterov=nesterov),
    )


@_hyper.declare(learning_rate=_hyper.LR._replace(scalar=True), min_norm=_hyper.NONNEG._replace(draw=(1e-8, 1e-3)))
def fromage(learning_rate: float, min_norm=1e-6) -> GradientTransformation:
    r"""Fromage (Bernstein et al., 2020, Algorithm 1): a step of relative size :math:`\eta` per layer.

    .. math::
        \theta_t = \frac{1}{\sqrt{1 + \eta^2}} \left(\theta_{t-1}
            - \eta \frac{\|\theta_{t-1}\|}{\|g_t\|} g_t\right)

    built as optax does, ``chain(scale_by_trust_ratio(min_norm), scale_by_learning_rate(
    learning_rate / sqrt(1 + learning_rate**2)), add_decayed_weights(1 / sqrt(1 +
    learning_rate**2) - 1))`` (the last one a negative decay: a shrinking of the weights).

    Args:
        learning_rate: :math:`\eta`, a number (not a schedule: the shrinking is fixed).
        min_norm: the smallest norm of the trust ratio (>= 0).

    Raises:
        ValueError: a negative ``min_norm``; TypeError: a schedule as ``learning_rate``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.fromage(0.75)  # 1 / sqrt(1 + 0.75^2) = 0.8
        >>> params = {'w': jnp.array([3.0, 4.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.0, 1.0])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]  # 0.8 * (p - 3.75 g)
        [2.4, 0.2]

    References:
        Bernstein, Vahdat, Yue & Liu, "On the distance between two neural networks and the
        stability of learning", NeurIPS 2020, Algorithm 1.
    """
    if callable(learning_rate):
        raise TypeError("fromage: `learning_rate` must be a number, not a schedule (the shrinking "
                        "1 / sqrt(1 + learning_rate**2) is fixed when the optimizer is built).")
    lr = float(learning_rate)
    root = math.sqrt(1.0 + lr * lr)
    # 1 / root - 1 without cancellation for small learning rates.
    shrink = -lr * lr / (root * (1.0 + root))
    return chain(
        scale_by_trust_ratio(min_norm),
        scale_by_learning_rate(lr / root),
        _add_term("fromage", shrink, _identity),
    )


# --------------------------------------------------------------------------- NovoGrad


class ScaleByNovogradState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    mu: Any  # the first moment, like params (in mu_dtype if given)
    nu: Any  # per leaf, shape (), float32 (float64 for float64 params): the layer's second moment


class _NovogradScalars(NamedTuple):
    first: jax.Array  # bool: the first step initializes the moments
    b1: jax.Array
    b2: _tree.Decay
    eps: jax.Array
    eps_root: jax.Array
    weight_decay: jax.Array


@_tree.leaf_rule(static=("use_params",))
def _novograd_rule(g, mu, nu, p, s: _NovogradScalars, *, use_params):
    x = g.astype(s.eps.dtype)
    n2 = jnp.linalg.norm(x) ** 2
    v = jnp.where(s.first, n2, _tree.update_moment(n2, nu, s.b2)).astype(nu.dtype)
    # eps = eps_root = 0 and an all-zero layer: v = 0 and x = 0, and 0/0 is 0 (never NaN).
    step = jnp.where(x == 0, 0, x / (jnp.sqrt(v.astype(x.dtype) + s.eps_root) + s.eps))
    if use_params:
        step = step + s.weight_decay * p.astype(x.dtype)
    m = jnp.where(s.first, step, s.b1 * mu.astype(x.dtype) + step)
    return m.astype(g.dtype), m.astype(mu.dtype), v


_NOVOGRAD = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT,
                 weight_decay=_hyper.NONNEG)


@_hyper.declare(**_NOVOGRAD)
def scale_by_novograd(
    b1=0.9, b2=0.25, eps=1e-8, eps_root=0.0, weight_decay=0.0, mu_dtype: Optional[Any] = None
) -> GradientTransformation:
    r"""NovoGrad's layer-wise normalized momentum (Ginsburg et al., 2019, Algorithm 1).

    Per leaf (layer), with :math:`v` a scalar:

    .. math::
        v_1 = \|g_1\|^2, \qquad v_t = \beta_2 v_{t-1} + (1 - \beta_2)\|g_t\|^2, \\
        m_1 = \frac{g_1}{\sqrt{v_1 + \epsilon_{root}} + \epsilon} + d\,\theta_0, \qquad
        m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t + \epsilon_{root}} + \epsilon} + d\,\theta_{t-1},
        \qquad u_t = m_t

    Args:
        b1: :math:`\beta_1 \in [0, 1)`. b2: :math:`\beta_2 \in [0, 1)`.
        eps, eps_root: :math:`\epsilon, \epsilon_{root} \ge 0`, outside / inside the root.
        weight_decay: :math:`d \ge 0` (reads the params when not 0).
        mu_dtype: dtype of the first moment (default: the params').

    Returns:
        A `GradientTransformation` with state `ScaleByNovogradState` (``nu``: one scalar per leaf).

    Raises:
        ValueError: a decay outside [0, 1), a negative ``eps``, ``eps_root`` or ``weight_decay``;
            at update, no params while ``weight_decay`` is not 0.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_novograd()
        >>> u, state = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 4) for x in u.tolist()], state.nu.item()  # g / |g|, |g|^2
        ([0.6, 0.8], 25.0)

    References:
        Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive Moments for
        Training of Deep Networks", 2019, Algorithm 1.
    """
    fn = "scale_by_novograd"
    use_params = not (isinstance(weight_decay, (int, float)) and weight_decay == 0)

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays
        nu = jax.tree_util.tree_map(lambda p: jnp.zeros((), _tree.real_dtype(p.dtype)), params)
        return ScaleByNovogradState(count=jnp.zeros([], jnp.int32), mu=_tree.zeros_like(params, mu_dtype), nu=nu)

    def update_fn(updates, state, params=None, **extra_args):
        updates, params = _tree.arrays(updates), _tree.arrays(params)  # Python floats: arrays
        del extra_args
        _checks.check_update(fn, state, ScaleByNovogradState, updates, "mu")
        if use_params:
            _checks.require_params(params, fn)
            _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)
        first = state.count == 0

        def scalars(dtype):
            real = _tree.real_dtype(dtype)
            return _NovogradScalars(first, _tree.hp(b1, real), _tree.decay(b2, real), _tree.hp(eps, real),
                                    _tree.hp(eps_root, real), _tree.hp(weight_decay, real))

        updates, mu, nu = _tree.apply_rule(
            _novograd_rule, updates, state.mu, state.nu, inputs=(params if use_params else updates,),
            scalars=scalars, use_params=use_params,
        )
        return updates, ScaleByNovogradState(count=_tree.safe_increment(state.count), mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_NOVOGRAD)
def novograd(
    learning_rate: ScalarOrSchedule, b1=0.9, b2=0.25, eps=1e-6, eps_root=0.0, weight_decay=0.0
) -> GradientTransformation:
    r"""NovoGrad: ``chain(scale_by_novograd(b1, b2, eps, eps_root, weight_decay), scale_by_learning_rate(learning_rate))``.

    :math:`\theta_t = \theta_{t-1} - \eta_t m_t` (Ginsburg et al., 2019, Algorithm 1); see
    `scale_by_novograd`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.novograd(0.1)
        >>> params = {'w': jnp.zeros(2)}
        >>> updates, _ = opt.update({'w': jnp.array([3.0, 4.0])}, opt.init(params), params)
        >>> [round(x, 4) for x in updates['w'].tolist()]
        [-0.06, -0.08]

    References:
        Ginsburg et al., "Stochastic Gradient Methods with Layer-wise Adaptive Moments for
        Training of Deep Networks", 2019.
    """
    return chain(
        scale_by_novograd(b1=b1, b2=b2, eps=eps, eps_root=eps_root, weight_decay=weight_decay),
        scale_by_learning_rate(learning_rate),
    )
