"""Adan, the adaptive Nesterov momentum algorithm (Xie et al., 2022): `scale_by_adan` and `adan`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByAdanState(NamedTuple):
    m: Any  # first moment of the gradients, like params
    v: Any  # first moment of the gradient differences, like params
    n: Any  # second moment of the look-ahead gradient, like params (float32 for float16 params)
    g: Any  # the previous gradient, like params
    t: jax.Array  # shape (), int32: number of updates so far


class _AdanScalars(NamedTuple):
    b1: _tree.Decay
    b2: _tree.Decay
    b3: _tree.Decay
    bc1: jax.Array  # 1 - b1^t
    bc2: jax.Array  # 1 - b2^t
    bc3: jax.Array  # 1 - b3^t
    first: jax.Array  # bool scalar: t = 1, no previous gradient
    eps: jax.Array
    eps_root: jax.Array


@_tree.leaf_rule
def _adan_rule(g, m, v, n, g_prev, s: _AdanScalars):
    x = g.astype(s.eps.dtype)
    diff = jnp.where(s.first, jnp.zeros_like(x), x - g_prev.astype(x.dtype))
    m_new = _tree.update_moment(x, m, s.b1)
    v_new = _tree.update_moment(diff, v, s.b2)
    n_new = _tree.update_moment(_tree.abs_sq(x + s.b2.rate * diff), n, s.b3)
    direction = m_new / s.bc1 + s.b2.rate * (v_new / s.bc2)
    u = jnp.where(direction == 0, 0, direction / (jnp.sqrt(n_new / s.bc3 + s.eps_root) + s.eps))  # never 0/0
    return (
        u.astype(g.dtype), m_new.astype(m.dtype), v_new.astype(v.dtype), n_new.astype(n.dtype),
        x.astype(g_prev.dtype),
    )


_ADAN = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, b3=_hyper.DECAY, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT)


@_hyper.declare(**_ADAN)
def scale_by_adan(b1=0.98, b2=0.92, b3=0.99, eps=1e-8, eps_root=0.0) -> GradientTransformation:
    r"""Rescales by Adan's Nesterov momentum estimate (Xie et al., 2022, Algorithm 1).

    With :math:`\Delta_t = g_t - g_{t-1}` (:math:`\Delta_1 = 0`),

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) \Delta_t, \\
        n_t = \beta_3 n_{t-1} + (1-\beta_3) (g_t + \beta_2 \Delta_t)^2, \qquad
        u_t = \frac{\hat m_t + \beta_2 \hat v_t}{\sqrt{\hat n_t + \epsilon_{root}} + \epsilon},

    where the hats divide by :math:`1-\beta_i^t`. The paper writes the decay rates the
    other way round (its :math:`\beta_i` is :math:`1-\beta_i` here; its defaults 0.02,
    0.08, 0.01 are these 0.98, 0.92, 0.99), so its :math:`(1-\beta_2)` factor of
    :math:`\Delta_t` and :math:`v_t` is :math:`\beta_2` here, as in the authors' code.

    Note:
        optax 0.2.8 scales :math:`\Delta_t` and :math:`v_t` by :math:`1-\beta_2` (0.08
        by default) instead of :math:`\beta_2` (0.92), a bug (the two agree only at
        :math:`\beta_2 = 0.5`); this follows the paper and the authors' code.

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the gradients' average.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the gradient differences' average.
        b3: :math:`\beta_3 \in [0, 1)`, the decay of the second moment.
        eps, eps_root: non-negative stabilizers outside / inside the root.

    Returns:
        A `GradientTransformation` with state `ScaleByAdanState` (fields ``m, v, n, g, t``
        as in optax: the count comes last).

    Raises:
        ValueError: ``b1``, ``b2`` or ``b3`` outside [0, 1), negative ``eps`` or ``eps_root``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_adan()
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.array([2.0]), state)
        >>> round(float(u[0]), 6)  # no difference yet: sign(g) up to eps
        1.0
        >>> u, state = tx.update(jnp.array([1.0]), state)
        >>> round(float(u[0]), 4)  # (1.49495 + 0.92 * -0.52083) / sqrt(0.039664 / 0.0199)
        0.7195

    References:
        Xie, Zhou, Li, Lin & Yan, "Adan: Adaptive Nesterov Momentum Algorithm for Faster
        Optimizing Deep Models", arXiv:2208.06677 (2022), Algorithm 1.
    """
    fn = "scale_by_adan"

    def init_fn(params):
        return ScaleByAdanState(
            m=_tree.zeros_like(params),
            v=_tree.zeros_like(params),
            n=_tree.square_zeros_like(params),
            g=_tree.zeros_like(params),
            t=jnp.zeros([], jnp.int32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAdanState, updates, "m")
        t = _tree.safe_increment(state.t)

        def scalars(dtype):
            return _AdanScalars(
                _tree.decay(b1, dtype), _tree.decay(b2, dtype), _tree.decay(b3, dtype),
                _tree.bias_correction(b1, t, dtype), _tree.bias_correction(b2, t, dtype),
                _tree.bias_correction(b3, t, dtype), state.t == 0, _tree.hp(eps, dtype),
                _tree.hp(eps_root, dtype),
            )

        updates, m, v, n, g = _tree.apply_rule(
            _adan_rule, updates, state.m, state.v, state.n, state.g, scalars=scalars
        )
        return updates, ScaleByAdanState(m=m, v=v, n=n, g=g, t=t)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, weight_decay=_hyper.NONNEG, **_ADAN)
def adan(
    learning_rate: ScalarOrSchedule,
    b1=0.98,
    b2=0.92,
    b3=0.99,
    eps=1e-8,
    eps_root=1e-8,
    weight_decay=0.0,
    mask=None,
) -> GradientTransformation:
    r"""Adan: ``chain(scale_by_adan(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate)``.

    The step is :math:`-\eta_t (u_t + \lambda \theta_{t-1})`; see `scale_by_adan`. Note
    the alias's ``eps_root=1e-8`` (``scale_by_adan``'s is 0), as in optax.

    Note:
        The paper's weight decay is proximal,
        :math:`\theta_t = (\theta_{t-1} - \eta u_t) / (1 + \lambda\eta)`; optax's (and
        this) is decoupled, :math:`\theta_t = \theta_{t-1} - \eta (u_t + \lambda \theta_{t-1})`,
        the same to first order in :math:`\lambda\eta` (the authors' ``no_prox=True``).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.adan(0.1)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -0.5])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]
        [0.9, -0.9]
    """
    return chain(
        scale_by_adan(b1=b1, b2=b2, b3=b3, eps=eps, eps_root=eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
