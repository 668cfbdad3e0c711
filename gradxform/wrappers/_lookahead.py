"""Lookahead (Zhang et al., 2019): k fast steps forward, one slow step back."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation
from gradxform._combine import call_update, check_transform
from gradxform._treeops import tree_where


class LookaheadState(NamedTuple):
    fast_state: Any  # the fast optimizer's state
    steps_since_sync: jax.Array  # shape (), int32: fast steps since the last synchronization


class LookaheadParams(NamedTuple):
    """The fast params (take gradients here) and the slow params (evaluate these)."""

    fast: Any
    slow: Any

    @classmethod
    def init_synced(cls, params: Any) -> "LookaheadParams":
        """Fast and slow params both equal to `params` (`slow` is a copy, `fast` is `params`).

        The copy gives each its own buffers, so that a jitted step may donate the
        `LookaheadParams` (``donate_argnums``); with one buffer in both, XLA rejects
        the call ("Attempt to donate the same buffer twice").
        """
        return cls(fast=params, slow=jax.tree_util.tree_map(lambda p: jnp.array(p, copy=True), params))


@_hyper.declare(
    sync_period=_hyper.integer(1, draw=(1, 10), source="validator"),
    slow_step_size=_hyper.number(0.0, 1.0, draw=(0.0, 1.0), source="validator"),
    reset_state=_hyper.BOOL,
)
def lookahead(
    fast_optimizer: Any, sync_period: int, slow_step_size: float, reset_state: bool = False
) -> GradientTransformation:
    r"""Runs `fast_optimizer` on the fast params; every `sync_period` steps pulls both back.

    With :math:`\phi` the slow and :math:`\theta` the fast params, :math:`u_t` the
    fast optimizer's update, :math:`k` = ``sync_period`` and :math:`\alpha` = ``slow_step_size``:

    .. math::
        \theta_{t+1} = \theta_t + u_t \quad\text{except every } k\text{-th step, where}\quad
        \phi \leftarrow \phi + \alpha (\theta_t + u_t - \phi), \quad \theta_{t+1} = \phi

    Both are returned as one update of `LookaheadParams`, so
    ``apply_updates(LookaheadParams(fast, slow), updates)`` applies them: the
    updates must not be transformed further.

    Args:
        fast_optimizer: the inner ("fast") transformation.
        sync_period: :math:`k \ge 1` fast steps between synchronizations.
        slow_step_size: :math:`\alpha \in [0, 1]`.
        reset_state: re-initialize the fast optimizer's state at each synchronization.

    Returns:
        A `GradientTransformation` whose ``update`` takes the fast params'
        gradients and needs ``params`` as `LookaheadParams`.

    Raises:
        ValueError: ``sync_period < 1``, ``slow_step_size`` outside [0, 1]; at update,
            params that are not `LookaheadParams`.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> opt = gx.lookahead(gx.sgd(0.1), sync_period=2, slow_step_size=0.5)
        >>> params = gx.LookaheadParams.init_synced(jnp.array([1.0]))
        >>> state = opt.init(params)
        >>> for _ in range(2):
        ...     u, state = opt.update(jnp.array([1.0]), state, params)
        ...     params = gx.apply_updates(params, u)
        >>> [round(x, 4) for x in (params.fast[0].item(), params.slow[0].item())]  # 1 + 0.5 (0.8 - 1)
        [0.9, 0.9]

    Note:
        Numerics as optax's ``lookahead``; ``reset_state`` selects leaf by leaf
        (``where``), so integer and boolean state leaves reset exactly.

    References:
        Zhang, Lucas, Hinton & Ba, `Lookahead Optimizer: k steps forward, 1 step back
        <https://arxiv.org/abs/1907.08610>`_, NeurIPS 2019 (Algorithm 1).
    """
    fn = "lookahead"
    check_transform(fast_optimizer, f"{fn}: fast_optimizer")

    def init_fn(params):
        fast = params.fast if isinstance(params, LookaheadParams) else params
        return LookaheadState(fast_state=fast_optimizer.init(fast), steps_since_sync=jnp.zeros([], jnp.int32))

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, LookaheadState, fn)
        if not isinstance(params, LookaheadParams):
            raise ValueError(
                f"{fn}.update needs params=LookaheadParams(fast, slow) (LookaheadParams.init_synced(p) "
                f"to start), got {type(params).__name__}."
            )
        updates, fast_state = call_update(fast_optimizer, updates, state.fast_state, params.fast, extra_args)
        sync = state.steps_since_sync == (jnp.asarray(sync_period).astype(jnp.int32) - 1)

        def leaf(u, f, s):
            if u is None:
                return None, None
            cdt = _tree.compute_dtype(u.dtype)
            alpha = _tree.hp(slow_step_size, cdt)
            sync_ = sync.astype(cdt)
            diff = f.astype(cdt) + u.astype(cdt) - s.astype(cdt)
            slow_u = alpha * sync_ * diff
            fast_u = u.astype(cdt) - sync_ * (1 - alpha) * diff
            return fast_u.astype(u.dtype), slow_u.astype(u.dtype)

        fast_u, slow_u = _tree.map_leaves(leaf, updates, params.fast, params.slow, n_out=2)
        if reset_state:
            fast_state = tree_where(sync, fast_optimizer.init(params.fast), fast_state)
        steps = jnp.where(sync, 0, _tree.safe_increment(state.steps_since_sync)).astype(jnp.int32)
        return LookaheadParams(fast=fast_u, slow=slow_u), LookaheadState(fast_state, steps)

    return GradientTransformation(init_fn, update_fn)
