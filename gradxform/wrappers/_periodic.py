"""Target-network helpers: `incremental_update` (Polyak averaging) and `periodic_update` (a periodic copy)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from gradxform import _tree

__all__ = ["incremental_update", "periodic_update"]


def incremental_update(new_tensors: Any, old_tensors: Any, step_size: Any) -> Any:
    r"""One step of an exponential moving average of parameters: :math:`\tau\,\theta + (1 - \tau)\,\bar\theta`.

    .. math:: \bar\theta \leftarrow \tau\, \theta_{\text{new}} + (1 - \tau)\, \bar\theta_{\text{old}}

    The "soft" target-network update of DDPG (Lillicrap et al., 2016) and Polyak
    averaging of the iterates. Each leaf is computed in at least float32 and
    returned in the old tensor's dtype; ``None`` leaves stay ``None``.

    Args:
        new_tensors: the latest values (a tree).
        old_tensors: the running average (a tree of the same structure).
        step_size: :math:`\tau`, a scalar (1 copies, 0 keeps the old values).

    Returns:
        A tree like `old_tensors`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.incremental_update(jnp.array([1.0]), jnp.array([0.0]), 0.25).tolist()
        [0.25]

    References:
        Polyak & Juditsky (1992), Acceleration of stochastic approximation by
        averaging, SIAM J. Control Optim. 30(4); Lillicrap et al. (2016),
        Continuous control with deep reinforcement learning, Algorithm 1.
    """

    def one(new, old):
        if new is None:
            return None
        old = jnp.asarray(old)
        cdt = _tree.accumulation_dtype([old, jnp.asarray(new)])
        tau = _tree.hp(step_size, cdt)
        return (tau * jnp.asarray(new).astype(cdt) + (1 - tau) * old.astype(cdt)).astype(old.dtype)

    return jax.tree_util.tree_map(one, new_tensors, old_tensors, is_leaf=_tree.is_none)


def periodic_update(new_tensors: Any, old_tensors: Any, steps: Any, update_period: Any) -> Any:
    r"""The new tensors at every ``update_period``-th step, else the old ones (a periodic target-network copy).

    .. math:: \bar\theta \leftarrow \begin{cases} \theta_{\text{new}} & t \bmod K = 0 \\
              \bar\theta_{\text{old}} & \text{otherwise} \end{cases}

    Args:
        new_tensors: the online network's parameters.
        old_tensors: the target copy (same structure).
        steps: :math:`t`, the number of online updates (an int or int array).
        update_period: :math:`K`, copy every K steps.

    Returns:
        `new_tensors` or `old_tensors` (selected by ``lax.cond``, so usable under jit).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> gx.periodic_update(jnp.ones(1), jnp.zeros(1), steps=4, update_period=2).tolist()
        [1.0]

    References:
        Mnih et al. (2015), Human-level control through deep reinforcement learning,
        Nature 518, Algorithm 1 (every C steps reset the target network).
    """
    return jax.lax.cond(jnp.mod(steps, update_period) == 0, lambda: new_tensors, lambda: old_tensors)
