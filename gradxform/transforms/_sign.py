"""signSGD and Signum (Bernstein et al., 2018): `scale_by_sign`, `sign_sgd`, `signum`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import EmptyState, GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._momentum import ema
from gradxform.transforms._scale import scale_by_learning_rate


@_tree.leaf_rule
def _sign_rule(g: jax.Array) -> tuple[jax.Array]:
    return (jnp.sign(g),)


def scale_by_sign() -> GradientTransformation:
    r"""The sign of each gradient coordinate (Bernstein et al., 2018, Algorithm 1).

    .. math:: u_t = \operatorname{sign}(g_t) \in \{-1, 0, 1\}

    Returns:
        A stateless `GradientTransformation` (state `EmptyState`).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_sign()
        >>> tx.update(jnp.array([0.3, -2.0, 0.0]), tx.init(jnp.zeros(3)))[0].tolist()
        [1.0, -1.0, 0.0]

    References:
        Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex Problems",
        ICML 2018, Algorithm 1.
    """

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmptyState, "scale_by_sign")
        (updates,) = _tree.apply_rule(_sign_rule, updates)
        return updates, state

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR)
def sign_sgd(learning_rate: ScalarOrSchedule) -> GradientTransformation:
    r"""signSGD: ``chain(scale_by_sign(), scale_by_learning_rate(learning_rate))``.

    The step is :math:`-\eta_t \operatorname{sign}(g_t)` (Bernstein et al., 2018,
    Algorithm 1); see `scale_by_sign`.

    Args:
        learning_rate: :math:`\eta_t`, a number or a schedule (negative ascends).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.sign_sgd(0.1)
        >>> opt.update(jnp.array([3.0, -0.01]), opt.init(jnp.zeros(2)))[0].tolist()
        [-0.10000000149011612, 0.10000000149011612]

    References:
        Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex Problems",
        ICML 2018, Algorithm 1.
    """
    return chain(scale_by_sign(), scale_by_learning_rate(learning_rate))


@_hyper.declare(learning_rate=_hyper.LR, beta=_hyper.DECAY)
def signum(
    learning_rate: ScalarOrSchedule, beta=0.9, accumulator_dtype: Any | None = None
) -> GradientTransformation:
    r"""Signum, the sign of the momentum: ``chain(ema(beta, debias=False, accumulator_dtype), scale_by_sign(), scale_by_learning_rate(learning_rate))``.

    .. math::
        m_t = \beta m_{t-1} + (1 - \beta) g_t, \qquad
        \theta_t = \theta_{t-1} - \eta_t \operatorname{sign}(m_t)

    (Bernstein et al., 2018, Algorithm 3). The average is not debiased: a positive
    factor does not change its sign.

    Args:
        learning_rate: :math:`\eta_t`, a number or a schedule (negative ascends).
        beta: :math:`\beta \in [0, 1)`, the decay of the momentum.
        accumulator_dtype: dtype of the momentum (default: the params' dtype).

    Raises:
        ValueError: ``beta`` outside [0, 1).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.signum(0.1, beta=0.5)
        >>> state = opt.init(jnp.zeros(2))
        >>> _, state = opt.update(jnp.array([1.0, 1.0]), state)
        >>> opt.update(jnp.array([-0.2, -2.0]), state)[0].tolist()  # m = [0.15, -0.75]
        [-0.10000000149011612, 0.10000000149011612]

    References:
        Bernstein et al., "signSGD: Compressed Optimisation for Non-Convex Problems",
        ICML 2018, Algorithm 3 (Signum).
    """
    return chain(
        ema(beta, debias=False, accumulator_dtype=accumulator_dtype),
        scale_by_sign(),
        scale_by_learning_rate(learning_rate),
    )
