"""Lion (Chen et al., 2023): `scale_by_lion` and `lion`."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByLionState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    mu: Any  # the momentum mu, like params (in mu_dtype if given)


class _LionScalars(NamedTuple):
    b1: _tree.Decay
    b2: _tree.Decay
    smooth_beta: jax.Array


@_tree.leaf_rule(static=("mode",))
def _lion_rule(g, mu, s: _LionScalars, *, mode):
    x = g.astype(s.smooth_beta.dtype)
    c = _tree.update_moment(x, mu, s.b1)
    if mode == "hard":
        u = jnp.sign(c)
    elif mode == "smooth":
        u = jnp.tanh(s.smooth_beta * c)
    else:  # "refined": linear near 0, the sign beyond 1
        u = jnp.where(jnp.abs(c) < 1, c, jnp.sign(c))
    mu = _tree.update_moment(x, mu, s.b2).astype(mu.dtype)
    return u.astype(g.dtype), mu


_LION = dict(b1=_hyper.DECAY, b2=_hyper.DECAY)
_MODE = dict(
    mode=_hyper.choice("hard", "smooth", "refined"),
    smooth_beta=_hyper.POSITIVE._replace(draw=(0.1, 10.0), source="tanh(beta * c) with beta > 0"),
)


@_hyper.declare(**_LION, **_MODE)
def scale_by_lion(
    b1=0.9, b2=0.99, mu_dtype: Optional[Any] = None, *, mode: str = "hard", smooth_beta=1.0
) -> GradientTransformation:
    r"""Lion's sign of an interpolated momentum (Chen et al., 2023, Algorithm 2).

    .. math::
        c_t = \beta_1 \mu_{t-1} + (1 - \beta_1) g_t, \qquad
        u_t = \operatorname{sign}(c_t), \qquad
        \mu_t = \beta_2 \mu_{t-1} + (1 - \beta_2) g_t

    The update interpolates with :math:`\beta_1` but the momentum is tracked with
    :math:`\beta_2`; every coordinate of the update is :math:`\pm 1` (0 where
    :math:`c_t = 0`). ``mode="smooth"`` uses :math:`\tanh(\beta_s c_t)` and
    ``mode="refined"`` keeps :math:`c_t` where :math:`|c_t| < 1` (optax's variants).

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the interpolation of the update.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the momentum.
        mu_dtype: dtype of the momentum (default: the params' dtype).
        mode: ``"hard"`` (the paper's sign), ``"smooth"`` or ``"refined"``.
        smooth_beta: :math:`\beta_s > 0` of ``mode="smooth"``.

    Returns:
        A `GradientTransformation` with state `ScaleByLionState`.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), an unknown ``mode``, or
            ``smooth_beta <= 0``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_lion()
        >>> u, state = tx.update(jnp.array([0.3, -2.0, 0.0]), tx.init(jnp.zeros(3)))
        >>> u.tolist()
        [1.0, -1.0, 0.0]

    References:
        Chen et al., "Symbolic Discovery of Optimization Algorithms", NeurIPS 2023.
    """
    fn = "scale_by_lion"

    def init_fn(params):
        return ScaleByLionState(count=jnp.zeros([], jnp.int32), mu=_tree.zeros_like(params, mu_dtype))

    def scalars(dtype):
        return _LionScalars(_tree.decay(b1, dtype), _tree.decay(b2, dtype), _tree.hp(smooth_beta, dtype))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByLionState, updates, "mu")
        updates, mu = _tree.apply_rule(_lion_rule, updates, state.mu, mode=mode, scalars=scalars)
        return updates, ScaleByLionState(count=_tree.safe_increment(state.count), mu=mu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_LION, weight_decay=_hyper.NONNEG)
def lion(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.99,
    mu_dtype: Optional[Any] = None,
    weight_decay=1e-3,
    mask=None,
) -> GradientTransformation:
    r"""Lion: ``chain(scale_by_lion(b1, b2, mu_dtype), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))``.

    The step is :math:`-\eta_t(\operatorname{sign}(c_t) + \lambda\theta_{t-1})`, the
    decoupled weight decay of Chen et al. (2023), Algorithm 2; see `scale_by_lion`.
    The paper suggests a learning rate 3-10x smaller and a weight decay 3-10x
    larger than AdamW's.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.lion(0.1, weight_decay=0.0)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, 0.5])}, opt.init(params), params)
        >>> gx.apply_updates(params, updates)['w'].tolist()
        [0.8999999761581421, -1.100000023841858]
    """
    return chain(
        scale_by_lion(b1, b2, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
