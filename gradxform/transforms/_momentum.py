"""Momentum: `trace` (heavy ball / Nesterov), `ema`, and the `sgd` alias."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, identity
from gradxform._combine import chain
from gradxform.transforms._scale import scale_by_learning_rate


class TraceState(NamedTuple):
    trace: Any  # like params (in accumulator_dtype if given)


@_tree.leaf_rule(static=("nesterov",))
def _trace_rule(g, t, mu, *, nesterov):
    x = g.astype(mu.dtype)
    t_new = x + mu * t.astype(mu.dtype)
    u = x + mu * t_new if nesterov else t_new
    return u.astype(g.dtype), t_new.astype(t.dtype)


@_hyper.declare(decay=_hyper.DECAY, nesterov=_hyper.BOOL)
def trace(decay, nesterov: bool = False, accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
    r"""Momentum with the learning rate outside the velocity (optax's and PyTorch's form).

    .. math::
        t_k = g_k + \mu\, t_{k-1}, \qquad
        u_k = t_k \;\text{(heavy ball)} \quad\text{or}\quad u_k = g_k + \mu\, t_k \;\text{(Nesterov)}

    Followed by ``scale_by_learning_rate(eta)`` this is SGD with momentum (Polyak,
    1964). Goodfellow et al. (2016), Algorithm 8.2, write it with the learning rate
    inside the velocity,
    :math:`v \leftarrow \alpha v - \epsilon g`; with a constant learning rate the two
    are the same (:math:`v = -\epsilon t`), with a schedule they differ: here a
    change of learning rate applies to the whole accumulated velocity at once.
    Their Nesterov momentum (Algorithm 8.3; Sutskever et al., 2013) evaluates the
    gradient at the look-ahead point
    :math:`\theta + \alpha v`; the form above is its change of variables
    :math:`\phi = \theta + \alpha v`, which needs the gradient at the current iterate
    only (see ``gradxform.testing.reference.nesterov_reformulated_trajectory``).

    Args:
        decay: the momentum :math:`\mu \in [0, 1)`.
        nesterov: use Nesterov's accelerated form.
        accumulator_dtype: dtype of the trace (default: the params' dtype).

    Returns:
        A `GradientTransformation` with state `TraceState`.

    Raises:
        ValueError: ``decay`` outside [0, 1).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.trace(0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.ones(1), state)
        >>> u, state = tx.update(jnp.ones(1), state)
        >>> u.tolist()  # 1 + 0.5 * 1
        [1.5]
    """

    def init_fn(params):
        return TraceState(trace=_tree.zeros_like(params, accumulator_dtype))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update("trace", state, TraceState, updates, "trace")
        updates, new_trace = _tree.apply_rule(
            _trace_rule, updates, state.trace, nesterov=nesterov, squared=(False,),
            scalars=lambda dtype: _tree.hp(decay, dtype),
        )
        return updates, TraceState(trace=new_trace)

    return GradientTransformation(init_fn, update_fn)


@_tree.leaf_rule
def _ema_rule(g, m, scalars):
    beta, bc = scalars
    x = g.astype(beta.rate.dtype)
    m_new = _tree.update_moment(x, m, beta)
    u = m_new if bc is None else m_new / bc
    return u.astype(g.dtype), m_new.astype(m.dtype)


class EmaState(NamedTuple):
    count: jax.Array  # shape (), int32
    ema: Any  # like params


@_hyper.declare(decay=_hyper.DECAY, debias=_hyper.BOOL)
def ema(decay, debias: bool = True, accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
    r"""Exponential moving average of the updates, optionally debiased.

    .. math:: m_t = (1 - \beta) g_t + \beta m_{t-1}, \qquad u_t = m_t / (1 - \beta^t) \text{ if debias}

    Args:
        decay: :math:`\beta \in [0, 1)`.
        debias: divide by :math:`1 - \beta^t` (Adam's bias correction).
        accumulator_dtype: dtype of the average (default: the params' dtype).

    Returns:
        A `GradientTransformation` with state `TraceState`.

    Raises:
        ValueError: ``decay`` outside [0, 1).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.trace(0.5)
        >>> state = tx.init(jnp.zeros(1))
        >>> u, state = tx.update(jnp.ones(1), state)
        >>> u, state = tx.update(jnp.ones(1), state)
        >>> u.tolist()  # 1 + 0.5 * 1
        [1.5]
    """

    def init_fn(params):
        return EmaState(count=jnp.zeros([], jnp.int32), ema=_tree.zeros_like(params, accumulator_dtype))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update("ema", state, EmaState, updates, "ema")
        count = _tree.safe_increment(state.count)

        def scalars(dtype):
            return _tree.decay(decay, dtype), _tree.bias_correction(decay, count, dtype) if debias else None

        updates, new_ema = _tree.apply_rule(_ema_rule, updates, state.ema, scalars=scalars, squared=(False,))
        return updates, EmaState(count=count, ema=new_ema)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    _hyper.NESTEROV_NEEDS_MOMENTUM, learning_rate=_hyper.LR, momentum=_hyper.MOMENTUM, nesterov=_hyper.BOOL
)
def sgd(
    learning_rate: ScalarOrSchedule,
    momentum: Optional[float] = None,
    nesterov: bool = False,
    accumulator_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""Stochastic gradient descent, with optional (Nesterov) momentum.

    ``chain(trace(momentum, nesterov), scale_by_learning_rate(learning_rate))``, or
    just the learning rate when ``momentum`` is None; see `trace` for the rule.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.sgd(0.1, momentum=0.9)
        >>> params = {'w': jnp.array([1.0, -2.0])}
        >>> updates, state = opt.update({'w': jnp.array([1.0, 1.0])}, opt.init(params))
        >>> gx.apply_updates(params, updates)['w'].tolist()
        [0.8999999761581421, -2.0999999046325684]
    """
    # As in optax, a two-part chain either way (`identity` without momentum), so that the
    # state's tree structure is optax's: ``(EmptyState(), EmptyState())``.
    first = identity() if momentum is None else trace(momentum, nesterov, accumulator_dtype)
    return chain(first, scale_by_learning_rate(learning_rate))
