"""Sophia (Liu et al., 2023) and Hutchinson's Hessian-diagonal estimator: `sophia`,
`hutchinson_estimator_diag_hessian`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import (
    GradientTransformation,
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
)
from gradxform._combine import chain
from gradxform.second_order._hvp import _rademacher_like, hvp
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = ["HutchinsonState", "SophiaState", "hutchinson_estimator_diag_hessian", "sophia"]


class HutchinsonState(NamedTuple):
    key: jax.Array  # the PRNG key of the next probe (a raw uint32 key, shape (2,))


class SophiaState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    mu: Any  # m_t, the average of the gradients, like params (in mu_dtype if given)
    nu: Any  # h_t, the average of the Hessian-diagonal estimates, like params
    hessian_fn_state: Any  # the state of hessian_diagonal_fn


@_tree.leaf_rule
def _probe_rule(z, hz):
    return ((_tree.wide(z) * _tree.wide(hz)).astype(z.dtype),)


def hutchinson_estimator_diag_hessian(random_seed: jax.Array | None = None) -> GradientTransformationExtraArgs:
    r"""Hutchinson's estimate of the Hessian's diagonal, as a transformation (Sophia-H's estimator).

    .. math::
        \hat h = z \odot (\nabla^2 f(\theta)\, z), \qquad z \in \{-1, +1\}^p \text{ Rademacher}

    an unbiased estimate of :math:`\operatorname{diag}\nabla^2 f(\theta)`, exact for a
    diagonal Hessian (one Hessian-vector product, `gx.second_order.hvp`). Each update
    splits the key (the next state's key, and the probe's); the probe draws one
    Rademacher vector per leaf as optax does, so the same seed gives optax's
    estimates. ``update(updates, state, params, obj_fn=f)`` ignores `updates` and
    returns :math:`\hat h` (a tree like the params) with the new state.

    Args:
        random_seed: a PRNG key (default ``jax.random.PRNGKey(0)``).

    Returns:
        A `GradientTransformationExtraArgs` with state `HutchinsonState`; its update
        needs the params and ``obj_fn``, a scalar function of the params.

    Raises:
        ValueError: ``update`` without params or without ``obj_fn``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> est = gx.contrib.hutchinson_estimator_diag_hessian(jax.random.PRNGKey(1))
        >>> f = lambda w: 0.5 * jnp.sum(jnp.array([2.0, 5.0]) * w ** 2)
        >>> x = jnp.ones(2)
        >>> h, state = est.update(None, est.init(x), x, obj_fn=f)
        >>> h.tolist()  # diagonal Hessian: exact
        [2.0, 5.0]

    References:
        Hutchinson, "A stochastic estimator of the trace of the influence matrix for
        Laplacian smoothing splines", 1990; Liu et al., "Sophia", 2023, Algorithm 1
        (which draws Gaussian probes; Rademacher probes, as here and in optax, are
        unbiased too and have a lower variance).
    """
    fn = "hutchinson_estimator_diag_hessian"

    def init_fn(params):
        del params
        key = jax.random.PRNGKey(0) if random_seed is None else random_seed
        return HutchinsonState(key=jnp.asarray(key))

    def update_fn(updates, state, params=None, obj_fn=None, **extra_args):
        del updates, extra_args
        _checks.check_state_type(state, HutchinsonState, fn)
        _checks.require_params(params, fn)
        if obj_fn is None:
            raise ValueError(f"{fn}.update needs the objective: call update(updates, state, params, obj_fn=f).")
        key, sub = jax.random.split(state.key)
        z = _rademacher_like(sub, params)
        hz = hvp(obj_fn, params, z)
        (diag,) = _tree.map_leaves(lambda a, b: _probe_rule(a, b), z, hz, n_out=1)
        return diag, HutchinsonState(key=key)

    return GradientTransformationExtraArgs(init_fn, update_fn)


class _SophiaScalars(NamedTuple):
    b1: _tree.Decay
    gamma: jax.Array
    eps: jax.Array
    clip: jax.Array


@_tree.leaf_rule(static=("clipped",))
def _sophia_rule(g, mu, nu, s: _SophiaScalars, *, clipped):
    x = g.astype(s.eps.dtype)
    m = _tree.update_moment(x, mu, s.b1)
    # eps = 0 and h = 0: m / 0 is clipped to +-rho below, but 0/0 (m = 0) is 0, not NaN.
    r = jnp.where(m == 0, 0, m / jnp.maximum(s.gamma * nu.astype(x.dtype), s.eps))
    if clipped:
        r = jnp.clip(r, -s.clip, s.clip)
    return r.astype(g.dtype), m.astype(mu.dtype), (jnp.abs(r) < s.clip).sum()


class _NuScalars(NamedTuple):
    b2: _tree.Decay


@_tree.leaf_rule
def _nu_rule(h, nu, s: _NuScalars):
    x = h.astype(s.b2.rate.dtype)
    return (h, _tree.update_moment(x, nu, s.b2).astype(nu.dtype))


def _scale_by_sophia(b1, b2, eps, gamma, clip_threshold, update_interval, hessian_diagonal_fn, mu_dtype,
                     verbose, print_win_rate_every_n_steps) -> GradientTransformationExtraArgs:
    fn = "sophia"

    def init_fn(params):
        return SophiaState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.zeros_like(params),
            hessian_fn_state=hessian_diagonal_fn.init(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_update(fn, state, SophiaState, updates, "mu")
        _checks.require_params(params, fn)

        def estimate(operand):
            nu, hstate = operand
            h, hstate = hessian_diagonal_fn.update(updates, hstate, params, **extra_args)
            _, nu = _tree.apply_rule(
                _nu_rule, h, nu, scalars=lambda dtype: _NuScalars(_tree.decay(b2, dtype))
            )
            return _tree.cast_like(nu, operand[0]), hstate

        nu, hstate = jax.lax.cond(
            state.count % update_interval == 0, estimate, lambda operand: operand, (state.nu, state.hessian_fn_state)
        )

        def scalars(dtype):
            clip = jnp.inf if clip_threshold is None else clip_threshold
            return _SophiaScalars(_tree.decay(b1, dtype), _tree.hp(gamma, dtype), _tree.hp(eps, dtype), _tree.hp(clip, dtype))

        cast = _tree.as_updates(updates, state.mu, state.nu, squared=(False, True))
        leaves, treedef = jax.tree_util.tree_flatten(cast, is_leaf=_tree.is_none)
        mus, nus = treedef.flatten_up_to(state.mu), treedef.flatten_up_to(nu)
        outs, new_mu, wins, total = [], list(mus), jnp.zeros((), jnp.int32), 0
        by_dtype = _tree.per_dtype(scalars)
        for i, g in enumerate(leaves):
            if g is None:
                outs.append(None)
                continue
            u, new_mu[i], w = _sophia_rule(
                g, mus[i], nus[i], by_dtype(_tree.compute_dtype(g.dtype)), clipped=clip_threshold is not None
            )
            outs.append(u)
            wins, total = wins + w.astype(jnp.int32), total + g.size
        if verbose and print_win_rate_every_n_steps:
            jax.lax.cond(
                state.count % print_win_rate_every_n_steps == 0,
                lambda rate: jax.debug.print("Sophia optimizer win rate: {}", rate),
                lambda rate: None,
                wins.astype(jnp.float32) / max(total, 1),
            )
        new_state = SophiaState(_tree.safe_increment(state.count), treedef.unflatten(new_mu), nu, hstate)
        return treedef.unflatten(outs), new_state

    return GradientTransformationExtraArgs(init_fn, update_fn)


@_hyper.declare(
    learning_rate=_hyper.LR,
    b1=_hyper.DECAY,
    b2=_hyper.DECAY,
    eps=_hyper.EPS,
    weight_decay=_hyper.NONNEG,
    gamma=_hyper.POSITIVE._replace(draw=(1e-3, 1.0), source="Liu et al. (2023): gamma > 0 scales h"),
    clip_threshold=_hyper.POSITIVE._replace(optional=True, draw=(0.1, 10.0)),
    update_interval=_hyper.integer(1, 2**31 - 1, draw=(1, 10)),
    verbose=_hyper.BOOL,
    print_win_rate_every_n_steps=_hyper.integer(0, 2**31 - 1, draw=(0, 0)),
)
def sophia(
    learning_rate: ScalarOrSchedule,
    b1=0.965,
    b2=0.99,
    eps=1e-8,
    weight_decay=1e-4,
    weight_decay_mask=None,
    gamma=0.01,
    clip_threshold=1.0,
    update_interval=10,
    hessian_diagonal_fn: GradientTransformation = hutchinson_estimator_diag_hessian(),  # noqa: B008 - stateless
    mu_dtype: Any | None = None,
    verbose: bool = False,
    print_win_rate_every_n_steps=0,
) -> GradientTransformationExtraArgs:
    r"""Sophia: a clipped, Hessian-diagonal-preconditioned momentum (Liu et al., 2023, Algorithm 3).

    With :math:`\hat h_t` the estimate of ``hessian_diagonal_fn`` (Hutchinson's by
    default: Sophia-H), refreshed every :math:`k` = ``update_interval`` steps
    (:math:`t` counted from 0),

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        h_t = \begin{cases}\beta_2 h_{t-1} + (1-\beta_2)\hat h_t & t \bmod k = 0 \\
        h_{t-1} & \text{otherwise}\end{cases}

        u_t = -\eta_t\left(\operatorname{clip}\left(\frac{m_t}{\max(\gamma h_t, \epsilon)}, \rho\right)
        + \lambda \theta_t\right)

    with :math:`\operatorname{clip}(x, \rho) = \max(\min(x, \rho), -\rho)` coordinate-wise
    (:math:`\rho` = ``clip_threshold``, the paper's 1; None: no clipping). A negative
    or zero :math:`h_t` gives :math:`\max(\gamma h_t, \epsilon) = \epsilon`, so that
    coordinate moves by the clipped sign of :math:`m_t`. The weight decay applies where
    ``weight_decay_mask`` is True (`add_decayed_weights`).

    Note:
        optax 0.2.8 steps with :math:`\operatorname{clip}(\hat m_t / \max(\gamma h_{t-1}, \epsilon), \rho)`:
        the bias-corrected :math:`\hat m_t = m_t / (1 - \beta_1^{t+1})` and the Hessian
        average from before the step's refresh (so its first step, with :math:`h = 0`,
        is a sign step). This follows the paper's Algorithm 3: :math:`m_t` as is, and
        :math:`h_t` refreshed before it is used.

    Extra keyword arguments of ``update`` go to ``hessian_diagonal_fn``'s update:
    the default estimator needs ``obj_fn``, the loss as a function of the params
    alone (``obj_fn=lambda p: loss(p, batch)``). The estimator runs only on the steps
    that refresh :math:`h_t` (`jax.lax.cond`). ``verbose`` with
    ``print_win_rate_every_n_steps > 0`` prints the fraction of unclipped coordinates
    (the paper suggests keeping it in 0.1 to 0.5 by tuning :math:`\gamma`).

    Args:
        learning_rate: :math:`\eta_t` (any value finite in float32, or a schedule).
        b1: :math:`\beta_1 \in [0, 1)`, the momentum.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the Hessian average (per refresh).
        eps: :math:`\epsilon \ge 0`, the floor of :math:`\gamma h_t`.
        weight_decay: :math:`\lambda \ge 0`.
        weight_decay_mask: a tree of booleans (or a callable returning one): where to decay.
        gamma: :math:`\gamma > 0`, the scale of the Hessian.
        clip_threshold: :math:`\rho > 0`, or None for no clipping.
        update_interval: :math:`k \ge 1`, the steps between Hessian estimates.
        hessian_diagonal_fn: a transformation whose update returns the Hessian's
            diagonal (default: `hutchinson_estimator_diag_hessian`).
        mu_dtype: dtype of :math:`m_t` (default: the params').
        verbose, print_win_rate_every_n_steps: print the win rate every n steps (0: never).

    Returns:
        A `GradientTransformationExtraArgs` whose state is optax's
        ``(SophiaState, EmptyState or MaskedState, EmptyState or ScaleByScheduleState)``;
        its update needs the params.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), ``eps < 0``, ``weight_decay < 0``,
            ``gamma <= 0``, ``clip_threshold <= 0``, ``update_interval < 1``; ``update``
            without params (or, with the default estimator, without ``obj_fn``).

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: 0.5 * jnp.sum(jnp.array([2.0, 50.0]) * w ** 2)
        >>> opt = gx.contrib.sophia(0.1, b1=0.0, b2=0.0, gamma=1.0, weight_decay=0.0)
        >>> x = jnp.ones(2)
        >>> u, state = opt.update(jax.grad(f)(x), opt.init(x), x, obj_fn=f)
        >>> u.tolist()  # -0.1 * clip(g / h, 1): g = [2, 50], h = [2, 50]
        [-0.10000000149011612, -0.10000000149011612]

    References:
        Liu, Li, Hall, Liang & Ma, "Sophia: A Scalable Stochastic Second-order Optimizer
        for Language Model Pre-training", ICLR 2024, Algorithm 3 (Sophia) with
        Algorithm 1 (Hutchinson's estimator, Sophia-H).
    """
    return chain(
        _scale_by_sophia(b1, b2, eps, gamma, clip_threshold, update_interval, hessian_diagonal_fn, mu_dtype,
                         verbose, print_win_rate_every_n_steps),
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_learning_rate(learning_rate),
    )
