"""COCOB-Backprop, continuous coin betting (Orabona & Tommasi, 2017): `scale_by_cocob`, `cocob`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = ["COCOBState", "cocob", "scale_by_cocob"]


class COCOBState(NamedTuple):
    init_particles: Any  # w_1, the params init saw, like params
    cumulative_gradients: Any  # theta_t, the sum of the negative gradients, like params
    scale: Any  # L_t, the largest |g| seen (eps at first), like params
    subgradients: Any  # G_t, the sum of |g|, like params
    reward: Any  # Reward_t, like params


class _CocobScalars(NamedTuple):
    alpha: jax.Array


@_tree.leaf_rule
def _cocob_rule(g, theta, L, G, R, w, w1, s: _CocobScalars):
    x = -g.astype(s.alpha.dtype)  # the paper bets on the negative gradient
    w, w1 = w.astype(x.dtype), w1.astype(x.dtype)
    L_new = jnp.maximum(L.astype(x.dtype), jnp.abs(x))
    G_new = G.astype(x.dtype) + jnp.abs(x)
    R_new = jnp.maximum(R.astype(x.dtype) + (w - w1) * x, 0)
    theta_new = theta.astype(x.dtype) + x
    den = L_new * jnp.maximum(G_new + L_new, s.alpha * L_new)
    ok = den > 0  # only with eps = 0 and gradients all zero so far, where theta = 0: no bet
    beta = jnp.where(ok, theta_new / jnp.where(ok, den, 1), 0)
    u = (w1 + beta * (L_new + R_new)) - w  # w_{t+1} - w_t: apply_updates lands on w_{t+1} exactly
    return (
        u.astype(g.dtype),
        theta_new.astype(theta.dtype),
        L_new.astype(L.dtype),
        G_new.astype(G.dtype),
        R_new.astype(R.dtype),
    )


_COCOB = dict(
    alpha=_hyper.POSITIVE._replace(draw=(1.0, 100.0), source="Orabona & Tommasi (2017): alpha > 0"),
    eps=_hyper.EPS,
)


@_hyper.declare(**_COCOB)
def scale_by_cocob(alpha=100.0, eps=1e-8) -> GradientTransformation:
    r"""COCOB-Backprop's coin-betting step, per coordinate (Orabona & Tommasi, 2017, Algorithm 2).

    With :math:`w_1` the params ``init`` saw, :math:`w_t` the current params and
    :math:`g_t = -\nabla_t` the negative gradient, for every coordinate

    .. math::
        L_t = \max(L_{t-1}, |g_t|), \qquad
        G_t = G_{t-1} + |g_t|, \qquad
        \mathrm{Reward}_t = \max\left(\mathrm{Reward}_{t-1} + (w_t - w_1) g_t, 0\right),

    .. math::
        \theta_t = \theta_{t-1} + g_t, \qquad
        w_{t+1} = w_1 + \frac{\theta_t}{L_t \max(G_t + L_t, \alpha L_t)}
                        \left(L_t + \mathrm{Reward}_t\right), \qquad
        u_t = w_{t+1} - w_t

    from :math:`L_0 = \epsilon` and :math:`G_0 = \mathrm{Reward}_0 = \theta_0 = 0`.
    The update already descends (apply it as it is). It is computed as optax does,
    :math:`w_{t+1}` first and then :math:`w_{t+1} - w_t` (exact when the two are
    within a factor 2), so that ``apply_updates`` lands exactly on the rounded
    :math:`w_{t+1}`: the iterate is a dual average of the gradients, and its
    rounding errors do not accumulate from step to step. The update itself is then
    known to one rounding of the params, not of the update. Where the denominator
    is 0 (``eps=0`` and only zero gradients so far) no bet is placed:
    :math:`w_{t+1} = w_1`.

    Args:
        alpha: :math:`\alpha > 0`, bounds the first bets (the fraction bet is at most
            :math:`1 / \alpha` of the wealth while :math:`G_t + L_t < \alpha L_t`).
        eps: :math:`\epsilon \ge 0`, the initial :math:`L_0`.

    Returns:
        A `GradientTransformation` with state `COCOBState`; its update needs the params.

    Raises:
        ValueError: ``alpha <= 0`` or ``eps < 0``; ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.scale_by_cocob(alpha=4.0)
        >>> params = jnp.array([1.0, 2.0])
        >>> u, state = tx.update(jnp.array([0.5, -2.0]), tx.init(params), params)
        >>> u.tolist()  # theta / (L max(G + L, 4 L)) * L = -g / (4 |g|)
        [-0.25, 0.25]

    References:
        Orabona & Tommasi, "Training Deep Networks without Learning Rates Through
        Coin Betting", NeurIPS 2017, Algorithm 2 (COCOB-Backprop).
    """
    fn = "scale_by_cocob"

    def init_fn(params):
        return COCOBState(
            init_particles=jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), params),
            cumulative_gradients=_tree.zeros_like(params),
            scale=_tree.full_like(params, eps),
            subgradients=_tree.zeros_like(params),
            reward=_tree.zeros_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_update(fn, state, COCOBState, updates, "init_particles")
        _checks.require_params(params, fn)
        updates, theta, L, G, R = _tree.apply_rule(
            _cocob_rule,
            updates,
            state.cumulative_gradients,
            state.scale,
            state.subgradients,
            state.reward,
            inputs=(params, state.init_particles),
            scalars=lambda dtype: _CocobScalars(_tree.hp(alpha, dtype)),
        )
        return updates, COCOBState(state.init_particles, theta, L, G, R)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_COCOB, weight_decay=_hyper.NONNEG)
def cocob(
    learning_rate: ScalarOrSchedule = 1.0,
    alpha=100.0,
    eps=1e-8,
    weight_decay=0.0,
    mask: Any = None,
) -> GradientTransformation:
    r"""COCOB-Backprop: ``chain(add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate, flip_sign=False), scale_by_cocob(alpha, eps))``.

    The learning rate scales the gradients *before* the bet (as optax does): COCOB
    is invariant to a constant scale of its gradients, so a constant
    ``learning_rate > 0`` changes nothing (up to :math:`\epsilon`), a negative one
    ascends, and a schedule reweights the gradients the bets are made on. The
    paper's algorithm has no learning rate (``learning_rate=1.0``). See
    `scale_by_cocob` for the rule.

    Args:
        learning_rate: :math:`\alpha_t`, a float or schedule multiplying the gradients
            (any value finite in float32).
        alpha: :math:`\alpha > 0` of `scale_by_cocob`.
        eps: :math:`\epsilon \ge 0` of `scale_by_cocob`.
        weight_decay: :math:`\lambda \ge 0`, added as :math:`\lambda w_t` to the gradient.
        mask: a tree of booleans like the params (or a function of them) selecting
            the leaves decayed.

    Returns:
        The chain above; its last state is a `COCOBState`; its update needs the params.

    Raises:
        ValueError: ``alpha <= 0``, ``eps < 0``, ``weight_decay < 0`` or a non-finite
            learning rate; ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.cocob()
        >>> params = {'w': jnp.array([0.0, 0.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -3.0])}, opt.init(params), params)
        >>> updates['w'].tolist()  # -sign(g) / alpha at the first step
        [-0.009999999776482582, 0.009999999776482582]

    References:
        Orabona & Tommasi, "Training Deep Networks without Learning Rates Through
        Coin Betting", NeurIPS 2017, Algorithm 2 (COCOB-Backprop).
    """
    return chain(
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate, flip_sign=False),
        scale_by_cocob(alpha, eps),
    )
