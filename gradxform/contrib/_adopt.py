"""ADOPT (Taniguchi et al., 2024): `scale_by_adopt` and `adopt`."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._adam import ScaleByAdamState
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = ["adopt", "scale_by_adopt"]


def _fourth_root(step: jax.Array) -> jax.Array:
    """The paper's clipping bound :math:`c_t = t^{1/4}` (optax's default ``clip_value_fn``)."""
    return jnp.asarray(step).astype(jnp.float32) ** 0.25


class _AdoptScalars(NamedTuple):
    b1: _tree.Decay
    b2: _tree.Decay
    eps: jax.Array
    clip: Optional[jax.Array]  # c_t, or None without clipping
    first: jax.Array  # bool, shape (): the first update, which only sets v_0 = g_0^2


@_tree.leaf_rule(static=("nesterov",))
def _adopt_rule(g, mu, nu, s: _AdoptScalars, *, nesterov):
    x = g.astype(s.eps.dtype)
    # The step normalizes g_t by the second moment of the gradients before it.
    v_prev = nu.astype(x.dtype)
    d = x / jnp.maximum(jnp.sqrt(v_prev), s.eps)
    if s.clip is not None:
        d = jnp.clip(d, -s.clip, s.clip)
    m = _tree.update_moment(d, mu, s.b1)
    u = s.b1.rate * m + s.b1.complement * d if nesterov else m
    v = _tree.update_moment(_tree.abs_sq(x), nu, s.b2)
    # Step 0 initializes v_0 = g_0^2 and leaves the params and the momentum as they are.
    u = jnp.where(s.first, jnp.zeros_like(u), u)
    m = jnp.where(s.first, mu.astype(m.dtype), m)
    v = jnp.where(s.first, _tree.abs_sq(x), v)
    return u.astype(g.dtype), m.astype(mu.dtype), v.astype(nu.dtype)


_ADOPT = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, nesterov=_hyper.BOOL, use_clipping=_hyper.BOOL)


@_hyper.declare(**_ADOPT)
def scale_by_adopt(
    b1=0.9,
    b2=0.9999,
    eps=1e-6,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _fourth_root,
) -> GradientTransformation:
    r"""Rescales by ADOPT's momentum of normalized gradients (Taniguchi et al., 2024, Algorithm 2).

    The first update only sets :math:`v_0 = g_0^2` (its update is 0); then, for
    :math:`t \ge 1`,

    .. math::
        m_t = \beta_1 m_{t-1} + (1 - \beta_1)\,
              \operatorname{clip}\left(\frac{g_t}{\max(\sqrt{v_{t-1}}, \epsilon)}, c_t\right), \qquad
        u_t = m_t, \qquad
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2

    with :math:`c_t` = ``clip_value_fn(t)`` (default :math:`t^{1/4}`), and no clipping
    with ``use_clipping=False`` (the paper's Algorithm 1). Unlike Adam, the gradient is
    normalized by the second moment of the *previous* steps, before it enters the
    momentum, so that the two are independent; no bias correction is needed.
    ``nesterov=True`` (optax's option) steps by
    :math:`\beta_1 m_t + (1 - \beta_1)\operatorname{clip}(\cdot)`.

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the momentum.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
        eps: :math:`\epsilon \ge 0`, the floor of :math:`\sqrt{v_{t-1}}`.
        mu_dtype: dtype of the momentum (default: the params' dtype).
        nesterov: use the look-ahead momentum.
        use_clipping: clip the normalized gradient to :math:`[-c_t, c_t]`.
        clip_value_fn: the step :math:`t` (an int32 scalar, 1 at the second update)
            to :math:`c_t > 0`.

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState` (optax's layout).

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.scale_by_adopt(b1=0.5, b2=0.8, eps=0.1)
        >>> u, state = tx.update(jnp.array([3.0, -1.0]), tx.init(jnp.zeros(2)))
        >>> u.tolist(), state.nu.tolist()  # step 0: no update, v_0 = g_0^2
        ([0.0, 0.0], [9.0, 1.0])
        >>> u, state = tx.update(jnp.array([1.0, 2.0]), state)
        >>> [round(x, 6) for x in u.tolist()]  # 0.5 * clip(g / |g_0|, 1)
        [0.166667, 0.5]

    References:
        Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the
        Optimal Rate", NeurIPS 2024, Algorithm 2 (with clipping) and Algorithm 1.
    """
    fn = "scale_by_adopt"

    def init_fn(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.square_zeros_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAdamState, updates, "mu")
        first = state.count == 0
        clip = clip_value_fn(state.count) if use_clipping else None

        def scalars(dtype):
            return _AdoptScalars(
                b1=_tree.decay(b1, dtype),
                b2=_tree.decay(b2, dtype),
                eps=_tree.hp(eps, dtype),
                clip=None if clip is None else _tree.hp(clip, dtype),
                first=first,
            )

        updates, mu, nu = _tree.apply_rule(
            _adopt_rule, updates, state.mu, state.nu, nesterov=nesterov, scalars=scalars
        )
        return updates, ScaleByAdamState(count=_tree.safe_increment(state.count), mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_ADOPT)
def adopt(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.9999,
    eps=1e-6,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    use_clipping: bool = True,
    clip_value_fn: Callable[[jax.Array], jax.Array] = _fourth_root,
) -> GradientTransformation:
    r"""ADOPT: ``chain(scale_by_adopt(...), scale_by_learning_rate(learning_rate))``; see `scale_by_adopt`.

    The step is :math:`\theta_t = \theta_{t-1} - \eta_t m_t` (Taniguchi et al., 2024,
    Algorithm 2, line 6); the first update leaves the params as they are.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.adopt(0.1)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> state = opt.init(params)
        >>> for g in ([0.5, 0.5], [0.5, -0.25]):
        ...     updates, state = opt.update({'w': jnp.array(g)}, state, params)
        ...     params = gx.apply_updates(params, updates)
        >>> [round(x, 6) for x in params['w'].tolist()]  # -0.1 * 0.1 * clip(g_1 / |g_0|, 1)
        [0.99, -0.995]

    References:
        Taniguchi et al., "ADOPT: Modified Adam Can Converge with Any beta2 with the
        Optimal Rate", NeurIPS 2024.
    """
    return chain(
        scale_by_adopt(b1, b2, eps, mu_dtype, nesterov=nesterov, use_clipping=use_clipping,
                       clip_value_fn=clip_value_fn),
        scale_by_learning_rate(learning_rate),
    )
