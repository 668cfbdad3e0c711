"""Constraints: `zero_nans` (NaN updates replaced by 0) and `keep_params_nonnegative` (projection onto params >= 0)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _tree
from gradxform._base import EmptyState, GradientTransformation, stateless

__all__ = ["NonNegativeParamsState", "ZeroNansState", "keep_params_nonnegative", "zero_nans"]


class ZeroNansState(NamedTuple):
    found_nan: Any  # like params: per leaf, shape () bool, True iff the last update of that leaf had a NaN


NonNegativeParamsState = EmptyState  # keep_params_nonnegative keeps no state (as optax)


@_tree.leaf_rule
def _zero_nans_rule(g, found):
    nan = jnp.isnan(g)
    return jnp.where(nan, jnp.zeros_like(g), g), jnp.any(nan).astype(found.dtype)


def zero_nans() -> GradientTransformation:
    r"""Replaces every NaN of the updates by 0, and records which leaves had one.

    .. math:: u_i = \begin{cases} 0 & g_i \text{ is NaN} \\ g_i & \text{otherwise} \end{cases}

    Infinities are kept. The state's ``found_nan`` has the params' tree
    structure, one boolean scalar per leaf: True iff that leaf of the last
    update had a NaN. It is not read by the transformation; it lets a training
    loop report that NaNs were zeroed.

    Returns:
        A `GradientTransformation` with state `ZeroNansState`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.zero_nans()
        >>> updates, state = tx.update({'w': jnp.array([1.0, jnp.nan])}, tx.init({'w': jnp.zeros(2)}))
        >>> updates['w'].tolist(), bool(state.found_nan['w'])
        ([1.0, 0.0], True)
    """
    fn = "zero_nans"

    def init_fn(params):
        return ZeroNansState(found_nan=jax.tree_util.tree_map(lambda p: jnp.zeros((), jnp.bool_), params))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ZeroNansState, fn)
        # found_nan holds scalars: compare the tree structure only.
        shapes = jax.tree_util.tree_map(lambda g: np.zeros((), np.bool_), updates)
        _checks.check_tree_like(shapes, state.found_nan, tree_name="updates", like_name="state.found_nan", fn=fn)
        updates, found = _tree.apply_rule(_zero_nans_rule, updates, state.found_nan)
        return updates, ZeroNansState(found_nan=found)

    return GradientTransformation(init_fn, update_fn)


@_tree.leaf_rule
def _nonnegative_rule(u, p):
    x = _tree.wide(u)
    q = p.astype(x.dtype)
    return (jnp.where(q + x < 0, -q, x).astype(u.dtype),)


def keep_params_nonnegative() -> GradientTransformation:
    r"""Changes the updates so that the params stay non-negative: the projection onto :math:`\theta \ge 0`.

    .. math:: u_i \leftarrow \begin{cases} -\theta_i & \theta_i + u_i < 0 \\ u_i & \text{otherwise} \end{cases}

    so that :math:`\theta + u = \max(\theta + u, 0)` for non-negative params
    (a negative param is moved to 0 by a step that would make it more
    negative). Use it last in a chain, after the learning rate.

    Returns:
        A stateless `GradientTransformation` (state `EmptyState`) whose update
        needs the params.

    Raises:
        ValueError: at update, when no params are given.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.keep_params_nonnegative()
        >>> params = jnp.array([1.0, 1.0])
        >>> tx.update(jnp.array([-2.0, 0.5]), tx.init(params), params)[0].tolist()
        [-1.0, 0.5]

    References:
        Projected gradient descent onto the non-negative orthant; e.g. Bertsekas,
        "Nonlinear Programming", 3rd ed., section 3.3.
    """
    fn = "keep_params_nonnegative"

    def project(updates, params):
        _checks.require_params(params, fn)
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)
        (out,) = _tree.apply_rule(_nonnegative_rule, updates, inputs=(params,))
        return out

    return stateless(project, name=fn)
