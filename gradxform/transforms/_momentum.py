"""Momentum: `trace` (heavy ball / Nesterov), `ema`, and the `sgd` alias."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._scale import scale_by_learning_rate


class TraceState(NamedTuple):
    trace: Any  # like params (in accumulator_dtype if given)


def trace(decay, nesterov: bool = False, accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
    r"""Momentum with the learning rate outside the velocity (optax's and PyTorch's form).

    .. math::
        t_k = g_k + \mu\, t_{k-1}, \qquad
        u_k = t_k \;\text{(heavy ball)} \quad\text{or}\quad u_k = g_k + \mu\, t_k \;\text{(Nesterov)}

    Followed by ``scale_by_learning_rate(eta)`` this is SGD with momentum. The seed
    decks write it with the learning rate inside the velocity,
    :math:`v \leftarrow \alpha v - \epsilon g`; with a constant learning rate the two
    are the same (:math:`v = -\epsilon t`), with a schedule they differ: here a
    change of learning rate applies to the whole accumulated velocity at once.
    The seed's Nesterov evaluates the gradient at the look-ahead point
    :math:`\theta + \alpha v`; the form above is its change of variables
    :math:`\phi = \theta + \alpha v`, which needs the gradient at the current iterate
    only (see ``gradxform.testing.reference.nesterov_reformulated_trajectory``).

    Args:
        decay: the momentum :math:`\mu \in [0, 1)`.
        nesterov: use Nesterov's accelerated form.
        accumulator_dtype: dtype of the trace (default: the params' dtype).

    Raises:
        ValueError: ``decay`` outside [0, 1).
    """
    _checks.check_decay("decay", decay, fn="trace")

    def init_fn(params):
        return TraceState(trace=_tree.zeros_like(params, accumulator_dtype))

    def leaf(g, t):
        if g is None:
            return None, t
        cdt = _tree.compute_dtype(g.dtype)
        mu = _tree.hp(decay, cdt)
        g_ = _tree.cast(g, cdt)
        t_new = _tree.add(g_, _tree.mul(mu, _tree.cast(t, cdt)))
        u = _tree.add(g_, _tree.mul(mu, t_new)) if nesterov else t_new
        return _tree.cast(u, g.dtype), _tree.cast(t_new, t.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, TraceState, "trace")
        _checks.check_tree_like(updates, state.trace, tree_name="updates", like_name="state.trace", fn="trace")
        updates, new_trace = _tree.map_leaves(leaf, updates, state.trace, n_out=2)
        return updates, TraceState(trace=new_trace)

    return GradientTransformation(init_fn, update_fn)


class EmaState(NamedTuple):
    count: jax.Array  # shape (), int32
    ema: Any  # like params


def ema(decay, debias: bool = True, accumulator_dtype: Optional[Any] = None) -> GradientTransformation:
    r"""Exponential moving average of the updates, optionally debiased.

    .. math:: m_t = (1 - \beta) g_t + \beta m_{t-1}, \qquad u_t = m_t / (1 - \beta^t) \text{ if debias}

    Args:
        decay: :math:`\beta \in [0, 1)`.
        debias: divide by :math:`1 - \beta^t` (Adam's bias correction).
        accumulator_dtype: dtype of the average (default: the params' dtype).

    Raises:
        ValueError: ``decay`` outside [0, 1).
    """
    _checks.check_decay("decay", decay, fn="ema")

    def init_fn(params):
        return EmaState(count=jnp.zeros([], jnp.int32), ema=_tree.zeros_like(params, accumulator_dtype))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, EmaState, "ema")
        _checks.check_tree_like(updates, state.ema, tree_name="updates", like_name="state.ema", fn="ema")
        count = _tree.safe_increment(state.count)

        def leaf(g, m):
            if g is None:
                return None, m
            cdt = _tree.compute_dtype(g.dtype)
            b = _tree.hp(decay, cdt)
            m_new = (1 - b) * g.astype(cdt) + b * m.astype(cdt)
            u = m_new / _tree.bias_correction(decay, count, cdt) if debias else m_new
            return u.astype(g.dtype), m_new.astype(m.dtype)

        updates, new_ema = _tree.map_leaves(leaf, updates, state.ema, n_out=2)
        return updates, EmaState(count=count, ema=new_ema)

    return GradientTransformation(init_fn, update_fn)


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
    if momentum is None:
        if nesterov:
            raise ValueError("sgd: `nesterov=True` needs a `momentum`; got momentum=None.")
        return chain(scale_by_learning_rate(learning_rate))
    _checks.check_decay("momentum", momentum, fn="sgd")
    return chain(trace(momentum, nesterov, accumulator_dtype), scale_by_learning_rate(learning_rate))
