"""Mechanic, a learning-rate tuner around any optimizer (Cutkosky, Defazio & Mehta, 2023): `mechanize`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, with_extra_args_support

__all__ = ["MechanicState", "mechanize"]


class MechanicState(NamedTuple):
    base_optimizer_state: Any  # the base optimizer's state
    count: jax.Array  # shape (), int32: number of updates so far
    r: jax.Array  # shape (num_betas,), float32 (float64 for float64 params): the reward
    m: jax.Array  # shape (num_betas,), float32 (float64): the running max of |h|
    v: jax.Array  # shape (num_betas,), float32 (float64): the sum of squares of h
    s: jax.Array  # shape (num_betas,), float32 (float64): the scales, s_1 = s_init
    x0: Any  # x_1, the params init saw


class _MechanicScalars(NamedTuple):
    wd: jax.Array  # lambda ||g_t|| sum(s_t) / (||x_t|| + eps)
    s_sum: jax.Array  # sum(s_t)
    growth: jax.Array  # (sum(s_{t+1}) - sum(s_t)) / sum(s_t)
    s_sum_next: jax.Array  # sum(s_{t+1})


@_tree.leaf_rule
def _mechanic_inner(g, p, x0, c: _MechanicScalars):
    x = g.astype(c.wd.dtype)
    delta = (p.astype(x.dtype) - x0.astype(x.dtype)) / c.s_sum  # Delta_t = (x_t - x_1) / sum(s_t)
    return jnp.vdot(delta, x + c.wd * p.astype(x.dtype))


@_tree.leaf_rule
def _mechanic_step(g, u, p, x0, c: _MechanicScalars):
    # x_{t+1} - x_t = sum(s_{t+1}) (Delta_t + u_t) - sum(s_t) Delta_t, without forming x_{t+1}.
    moved = p.astype(c.wd.dtype) - x0.astype(c.wd.dtype)
    out = moved * c.growth + c.s_sum_next * u.astype(c.wd.dtype)
    return out.astype(g.dtype)


@_hyper.declare(
    weight_decay=_hyper.NONNEG,
    eps=_hyper.POSITIVE._replace(draw=(1e-10, 1e-6), source="Cutkosky et al. (2023): eps > 0 (s_2 = 0/0 at eps = 0)"),
    s_init=_hyper.POSITIVE._replace(draw=(1e-8, 1e-2), source="Cutkosky et al. (2023): s_init > 0"),
    num_betas=_hyper.integer(1, 16, draw=(1, 8)),
)
def mechanize(base_optimizer: Any, weight_decay=1e-2, eps=1e-8, s_init=1e-6, num_betas: int = 6) -> GradientTransformation:
    r"""Mechanic: learns the scale of `base_optimizer`'s updates (Cutkosky, Defazio & Mehta, 2023).

    With :math:`u_t` the base optimizer's update, :math:`x_1` the params ``init``
    saw, :math:`\Delta_t = (x_t - x_1) / \textstyle\sum_i s_{t,i}` the sum of the
    base updates so far and :math:`\beta_i = 1 - 10^{-i}` (:math:`i = 1..n`, all
    operations element-wise over the :math:`n` betas),

    .. math::
        h_t &= \left\langle \Delta_t,\ g_t + \lambda \frac{\|g_t\| \sum_i s_{t,i}}{\|x_t\| + \epsilon} x_t \right\rangle \\
        m_t &= \max(\beta m_{t-1}, |h_t| + \epsilon), \qquad v_t = \beta^2 v_{t-1} + h_t^2 \\
        r_t &= \beta r_{t-1} - s_t \operatorname{clip}(h_t, -m_{t-1}, m_{t-1}), \qquad
        s_{t+1} = \frac{s_{\mathrm{init}} m_t / n + \max(0, r_t)}{\sqrt{v_t} + \epsilon} \\
        x_{t+1} &= x_1 + \textstyle\sum_i s_{t+1,i}\, (\Delta_t + u_t)

    with :math:`s_1 = s_{\mathrm{init}}`; the update returned is
    :math:`x_{t+1} - x_t`. :math:`\Delta_t` is recovered from the params (the
    memory-efficient form; so the params must change only by these updates).
    The clip of :math:`h_t` and the :math:`\epsilon` in :math:`m_t` are the
    authors' later additions (as optax).

    Args:
        base_optimizer: the `GradientTransformation` whose updates are scaled (its
            learning rate a schedule around 1.0 or any constant).
        weight_decay: :math:`\lambda \ge 0`, Mechanic's own weight decay in
            :math:`h_t` (not the base optimizer's).
        eps: :math:`\epsilon > 0`.
        s_init: :math:`s_{\mathrm{init}} > 0`, the initial scale.
        num_betas: :math:`n \in [1, 16]`, the number of betas.

    Returns:
        A `GradientTransformation` with state `MechanicState`; its update needs the
        params.

    Raises:
        ValueError: ``weight_decay < 0``, ``eps <= 0``, ``s_init <= 0``,
            ``num_betas`` outside [1, 16]; ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.mechanize(gx.sgd(1.0))
        >>> params = jnp.array([1.0, 2.0])
        >>> u, state = tx.update(jnp.array([3.0, -4.0]), tx.init(params), params)
        >>> u.tolist()  # s_2 = s_init / n per beta, so -s_init g
        [-3.000000106112566e-06, 3.999999989900971e-06]

    References:
        Cutkosky, Defazio & Mehta, "Mechanic: A Learning Rate Tuner", NeurIPS 2023,
        Algorithm 1, with the clip of :math:`h_t` of the authors' implementation.
    """
    fn = "mechanize"
    base = with_extra_args_support(base_optimizer)
    betas64 = np.array([1.0 - 0.1**i for i in range(1, int(num_betas) + 1)])

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays
        acc = _tree.accumulation_dtype(params)
        zeros = jnp.zeros((num_betas,), acc)
        return MechanicState(
            base_optimizer_state=base.init(params),
            count=jnp.zeros((), jnp.int32),
            r=zeros,
            m=jnp.zeros((num_betas,), acc),  # one buffer per field (donation)
            v=jnp.zeros((num_betas,), acc),
            s=jnp.full((num_betas,), s_init, acc),
            x0=jax.tree_util.tree_map(lambda p: jnp.array(p, copy=True), params),  # own buffers (donation)
        )

    def update_fn(updates, state, params=None, **extra_args):
        updates, params = _tree.arrays(updates), _tree.arrays(params)  # Python floats: arrays
        _checks.check_update(fn, state, MechanicState, updates, "x0")
        _checks.require_params(params, fn)
        base_updates, base_state = base.update(updates, state.base_optimizer_state, params, **extra_args)
        acc = state.s.dtype
        e = _tree.hp(eps, acc)
        s_sum = jnp.sum(state.s)
        wd = _tree.hp(weight_decay, acc) * s_sum * _tree.global_norm(updates).astype(acc)
        wd = wd / (_tree.global_norm(params).astype(acc) + e)

        def scalars(dtype, growth=None, s_next=s_sum):
            growth = jnp.zeros((), acc) if growth is None else growth
            return _MechanicScalars(*(_tree.cast(x, dtype) for x in (wd, s_sum, growth, s_next)))

        def inner(g, p, x0):
            return None if g is None else _mechanic_inner(g, p, x0, scalars(_tree.compute_dtype(g.dtype)))

        (h_leaves,) = _tree.map_leaves(lambda *a: (inner(*a),), updates, params, state.x0, n_out=1)
        h = sum((x.astype(acc) for x in jax.tree_util.tree_leaves(h_leaves)), jnp.zeros((), acc))
        beta = _tree.hp(betas64, acc)
        beta_sq = _tree.hp(betas64**2, acc)
        m = jnp.maximum(beta * state.m, jnp.abs(h) + e)
        v = beta_sq * state.v + h * h
        r = beta * state.r - state.s * jnp.clip(h, -state.m, state.m)
        wealth = _tree.hp(s_init / num_betas, acc) * m + jnp.maximum(r, 0)
        s = wealth / (jnp.sqrt(v) + e)
        s_next = jnp.sum(s)
        growth = (s_next - s_sum) / s_sum

        def step(g, u, p, x0):
            if g is None:
                return (None,)
            return (_mechanic_step(g, u, p, x0, scalars(_tree.compute_dtype(g.dtype), growth, s_next)),)

        cast = _tree.as_updates(updates, state.x0, squared=(False,))
        (out,) = _tree.map_leaves(step, cast, base_updates, params, state.x0, n_out=1)
        new_state = MechanicState(base_state, _tree.safe_increment(state.count), r, m, v, s, state.x0)
        return out, new_state

    return GradientTransformation(init_fn, update_fn)
