"""Early stopping (Goodfellow, Bengio & Courville, "Deep Learning", 2016, Section 7.8,
Algorithm 7.1) as a pure, jit-able state machine.

Algorithm 7.1, with n training steps between evaluations and patience p::

    theta <- theta_o; i <- 0; j <- 0; v <- inf; theta* <- theta; i* <- i
    while j < p:
        train theta for n steps; i <- i + n
        v' <- ValidationSetError(theta)
        if v' < v:  j <- 0; theta* <- theta; i* <- i; v <- v'
        else:       j <- j + 1
    return theta*, i*

One call of ``update(state, metric, params)`` is one pass of the loop body
after the training steps, with ``metric = v'`` and ``params = theta``. The
state holds the algorithm's variables:

==================  =====================================================
state field         Algorithm 7.1
==================  =====================================================
``best_metric``     v (``+inf`` at the start; ``-inf`` with ``mode="max"``)
``best_params``     theta* (``theta_o``, the params given to ``init``, at the start)
``best_step``       i* / n: the 1-based count of ``update`` calls at the best
                    evaluation, 0 before any (multiply by n for training steps)
``patience_count``  j
``should_stop``     ``not (j < p)``: the loop's exit test
``count``           i / n: the number of ``update`` calls that ran the loop body
==================  =====================================================

Extensions, both reducing to Algorithm 7.1 with the defaults: ``min_delta``
requires ``v' < v - min_delta`` to count as an improvement (ties and changes
of at most ``min_delta`` do not improve), and ``mode="max"`` flips the
comparison (``v' > v + min_delta``) for metrics such as accuracy.

Once ``should_stop`` is True the algorithm has exited its loop: further calls
to ``update`` return the state unchanged (``count`` included), so a fixed-length
``lax.scan`` over evaluations ends in the same state as Algorithm 7.1 run to
its exit, and ``should_stop`` stays True.
"""

from __future__ import annotations

import operator
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper
from gradxform._treeops import tree_where

Params = Any


class EarlyStoppingState(NamedTuple):
    """The state of `early_stopping`; see the module docstring for the map to Algorithm 7.1."""

    best_metric: jax.Array  # float32 scalar: v, the best validation metric so far
    best_params: Params  # theta*: the params at the best evaluation (init's params before any)
    best_step: jax.Array  # int32 scalar: i* / n, 1-based update count at the best; 0 before any
    patience_count: jax.Array  # int32 scalar: j, evaluations since the last improvement
    should_stop: jax.Array  # bool scalar: j >= p; stays True
    count: jax.Array  # int32 scalar: i / n, update calls that ran while not stopped


class EarlyStopping(NamedTuple):
    """A pure ``(init, update)`` pair returned by `early_stopping`."""

    init: Callable[[Params], EarlyStoppingState]
    update: Callable[[EarlyStoppingState, Any, Params], EarlyStoppingState]


@_hyper.declare(
    patience=_hyper.integer(1, draw=(1, 20)),
    min_delta=_hyper.NONNEG._replace(draw=(0.0, 1e-2), source="validator"),
    mode=_hyper.choice("min", "max"),
)
def early_stopping(patience: int, min_delta: float = 0.0, *, mode: str = "min") -> EarlyStopping:
    r"""Algorithm 7.1 (early stopping) as a pure state machine that runs under jit, scan and while_loop.

    Per call of ``update(state, metric, params)`` (one evaluation):

    .. math::
        \text{improved} = \begin{cases} v' < v - \delta & \text{mode = min}\\
                                        v' > v + \delta & \text{mode = max}\end{cases}

    if improved: :math:`j \leftarrow 0,\ \theta^* \leftarrow \theta,\ i^* \leftarrow i,\ v \leftarrow v'`;
    else :math:`j \leftarrow j + 1`; then ``should_stop = j >= patience``. Once
    ``should_stop`` is True, ``update`` is the identity. A NaN metric never
    improves. All branches are ``jnp.where`` / ``tree_map``: no Python control
    flow on traced values.

    Args:
        patience: p, the number of evaluations without improvement before
            stopping; an int >= 1.
        min_delta: delta >= 0, the margin an evaluation must beat the best by.
        mode: ``"min"`` (validation error, loss) or ``"max"`` (accuracy).

    Returns:
        An `EarlyStopping` with ``init(params) -> EarlyStoppingState`` and
        ``update(state, metric, params) -> EarlyStoppingState``. The state's
        dtypes never change (float32, int32, bool; `best_params` keeps the
        dtypes of `init`'s params), so it can be a ``lax.scan`` carry.

    Raises:
        ValueError: for a `patience` that is not an int >= 1, a negative
            `min_delta`, or a `mode` other than "min" / "max". ``update``
            raises ValueError for a non-scalar metric, `TypeError` for a state
            not built by ``init``, and `TreeMismatchError` for params whose
            structure differs from ``init``'s.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> es = gx.training.early_stopping(patience=2)
        >>> state = es.init({'w': jnp.zeros(())})
        >>> for t, v in enumerate([3.0, 2.0, 2.5, 2.0, 1.0], start=1):
        ...     state = es.update(state, v, {'w': jnp.array(float(t))})
        >>> bool(state.should_stop), int(state.best_step), float(state.best_metric)
        (True, 2, 2.0)
        >>> float(state.best_params['w'])
        2.0
    """
    fn = "early_stopping"
    # The declaration checks the range; an integer count is checked here.
    p = _checks._concrete_float(patience)
    if p is not None and p != int(p):
        raise ValueError(f"{fn}: `patience` must be an integer >= 1; got patience={patience!r}.")
    if mode == "min":
        start, better, delta_sign = np.inf, operator.lt, -1.0
    else:
        start, better, delta_sign = -np.inf, operator.gt, 1.0

    def init_fn(params: Params) -> EarlyStoppingState:
        return EarlyStoppingState(
            best_metric=jnp.asarray(start, jnp.float32),
            # A copy, not the params' own buffers: a jitted step donating both the params
            # and this state would otherwise donate one buffer twice.
            best_params=jax.tree_util.tree_map(lambda p: jnp.array(p, copy=True), params),
            best_step=jnp.zeros((), jnp.int32),
            patience_count=jnp.zeros((), jnp.int32),
            should_stop=jnp.zeros((), jnp.bool_),
            count=jnp.zeros((), jnp.int32),
        )

    def update_fn(state: EarlyStoppingState, metric: Any, params: Params) -> EarlyStoppingState:
        _checks.check_state_type(state, EarlyStoppingState, fn)
        _checks.check_tree_like(
            params, state.best_params, tree_name="params", like_name="state.best_params",
            fn=f"{fn}.update", allow_none=False,
        )
        metric = jnp.asarray(metric)
        if metric.shape != ():
            raise ValueError(
                f"{fn}.update: `metric` must be a scalar (one validation value); got shape {metric.shape}."
            )
        metric = metric.astype(jnp.float32)
        running = jnp.logical_not(state.should_stop)
        threshold = state.best_metric + delta_sign * jnp.asarray(min_delta).astype(jnp.float32)
        improved = jnp.logical_and(running, better(metric, threshold))
        count = state.count + running.astype(jnp.int32)
        patience_count = jnp.where(
            improved, jnp.zeros_like(state.patience_count),
            state.patience_count + running.astype(jnp.int32),
        )
        best_params = tree_where(improved, params, state.best_params)
        return EarlyStoppingState(
            best_metric=jnp.where(improved, metric, state.best_metric),
            best_params=best_params,
            best_step=jnp.where(improved, count, state.best_step),
            patience_count=patience_count,
            should_stop=jnp.logical_or(state.should_stop, patience_count >= patience),
            count=count,
        )

    return EarlyStopping(init_fn, update_fn)
