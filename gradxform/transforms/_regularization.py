"""Regularization: `add_decayed_weights` (L2), `add_l1_decay` (L1), `add_noise` (gradient noise)."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import EmptyState, GradientTransformation

AddDecayedWeightsState = EmptyState  # `add_decayed_weights`' state without a schedule (optax's name)


class ScheduledDecayState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far (the schedule's argument)


@_tree.leaf_rule(static=("term",))
def _add_term_rule(g, p, coef, *, term):
    x = g.astype(coef.dtype)
    return ((x + coef * term(p.astype(coef.dtype))).astype(g.dtype),)


def _identity(p):
    return p


def _add_term(fn: str, coef: Any, term) -> GradientTransformation:
    """Adds ``coef * term(params)`` to the updates; `coef` a number or a schedule of the step count."""
    scheduled = callable(coef)

    def init_fn(params):
        del params
        return ScheduledDecayState(count=jnp.zeros([], jnp.int32)) if scheduled else EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_state_type(state, ScheduledDecayState if scheduled else EmptyState, fn)
        _checks.require_params(params, fn)
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)
        c = jnp.asarray(coef(state.count), jnp.float32) if scheduled else coef
        (new,) = _tree.apply_rule(
            _add_term_rule, updates, inputs=(params,), term=term, scalars=lambda dtype: _tree.hp(c, dtype)
        )
        if scheduled:
            return new, ScheduledDecayState(count=_tree.safe_increment(state.count))
        return new, state

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(weight_decay=_hyper.NONNEG)
def add_decayed_weights(weight_decay=0.0, mask=None) -> GradientTransformation:
    r"""Adds :math:`\lambda\theta` to the updates: the gradient of the L2 penalty :math:`\frac{\lambda}{2}\|\theta\|^2`.

    Followed by ``scale_by_learning_rate(eta)`` it multiplies the weights by
    :math:`(1 - \eta\lambda)` each step: weight decay (Goodfellow et al., 2016,
    section 7.1.1, equation 7.5).

    Args:
        weight_decay: :math:`\lambda \ge 0`, or a schedule ``count -> lambda``.
        mask: a tree of bools (or a function of the params returning one): decay
            only where True.

    Raises:
        ValueError: a negative ``weight_decay``.
    """
    from gradxform._combine import masked  # noqa: PLC0415 - avoid a cycle at import

    tx = _add_term("add_decayed_weights", weight_decay, _identity)
    return masked(tx, mask) if mask is not None else tx


@_hyper.declare(l1=_hyper.NONNEG)
def add_l1_decay(l1=0.0, mask=None) -> GradientTransformation:
    r"""Adds :math:`\lambda_1 \operatorname{sign}(\theta)`: the (sub)gradient of the L1 penalty :math:`\lambda_1\|\theta\|_1`.

    Raises:
        ValueError: a negative ``l1``.
    """
    from gradxform._combine import masked  # noqa: PLC0415

    tx = _add_term("add_l1_decay", l1, jnp.sign)
    return masked(tx, mask) if mask is not None else tx


class AddNoiseState(NamedTuple):
    count: jax.Array  # shape (), int32
    rng_key: jax.Array  # a PRNG key


@_hyper.declare(
    eta=_hyper.NONNEG._replace(draw=(0.0, 1.0), source="validator"),
    gamma=_hyper.NONNEG._replace(draw=(0.0, 1.0), source="validator"),
    key=_hyper.integer(0, 2**31 - 1, source="a seed (not validated)")._replace(validated=False),
)
def add_noise(eta, gamma, key) -> GradientTransformation:
    r"""Adds annealed Gaussian noise to the updates (Neelakantan et al., 2015).

    .. math:: u_t = g_t + \mathcal N\!\left(0, \frac{\eta}{(1 + t)^{\gamma}}\right), \quad t = 0, 1, \dots

    Args:
        eta: the initial variance :math:`\eta \ge 0`.
        gamma: the annealing exponent :math:`\gamma \ge 0`.
        key: a PRNG key (``jax.random.key`` or ``PRNGKey``) or an int seed.

    Raises:
        ValueError: a negative ``eta`` or ``gamma``; TypeError: a missing key.
    """
    if key is None:
        raise TypeError("add_noise: `key` must be a PRNG key or an int seed, got None.")

    def init_fn(params):
        del params
        k = jax.random.PRNGKey(key) if isinstance(key, int) else key
        return AddNoiseState(count=jnp.zeros([], jnp.int32), rng_key=k)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, AddNoiseState, "add_noise")
        count = _tree.safe_increment(state.count)
        std = jnp.sqrt(_tree.hp(eta, jnp.float32) / count.astype(jnp.float32) ** _tree.hp(gamma, jnp.float32))
        new_key, sample_key = jax.random.split(state.rng_key)
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_tree.is_none)
        keys = jax.random.split(sample_key, max(len(leaves), 1))

        def leaf(g, k):
            if g is None:
                return None
            cdt = _tree.compute_dtype(g.dtype)
            noise = jax.random.normal(k, g.shape, cdt)
            return (g.astype(cdt) + std.astype(cdt) * noise).astype(g.dtype)

        noisy = treedef.unflatten([leaf(g, k) for g, k in zip(leaves, keys)])
        return noisy, AddNoiseState(count=count, rng_key=new_key)

    return GradientTransformation(init_fn, update_fn)
