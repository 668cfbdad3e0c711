"""Sharpness-Aware Minimization (Foret et al., 2021): `sam` and its ascent direction `normalize`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, GradientTransformationExtraArgs
from gradxform._combine import call_update, check_transform

__all__ = ["NormalizeState", "SAMState", "normalize", "sam"]


class NormalizeState(NamedTuple):
    """`normalize` keeps no state."""


@_tree.leaf_rule
def _divide_rule(g, norm):
    n = norm.astype(_tree.compute_dtype(g.dtype))
    safe = jnp.where(n > 0, n, 1)
    return ((_tree.wide(g) / safe).astype(g.dtype),)


def normalize() -> GradientTransformation:
    r"""The gradient divided by its global norm: SAM's ascent direction.

    .. math:: u = \frac{g}{\|g\|_2}, \qquad u = 0 \text{ where } g = 0

    The norm is taken over every leaf together, accumulated in at least float32.
    All-zero gradients give zero updates (optax 0.2.8 gives NaN: 0 / 0).

    Returns:
        A `GradientTransformation` with the empty state `NormalizeState`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.normalize()
        >>> u, _ = tx.update({'a': jnp.array([3.0]), 'b': jnp.array([4.0])}, tx.init(None))
        >>> u['a'].tolist(), u['b'].tolist()
        ([0.6000000238418579], [0.800000011920929])
        >>> tx.update(jnp.zeros(2), tx.init(None))[0].tolist()
        [0.0, 0.0]

    References:
        Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for Efficiently
        Improving Generalization", ICLR 2021, Eq. (2) (:math:`p = 2`).
    """

    def init_fn(params):
        del params
        return NormalizeState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, NormalizeState, "normalize")
        norm = _tree.global_norm(updates)
        (out,) = _tree.apply_rule(_divide_rule, updates, scalars=lambda dtype: norm)
        return out, state

    return GradientTransformation(init_fn, update_fn)


class SAMState(NamedTuple):
    steps_since_sync: jax.Array  # shape (), int32: steps since the last outer step
    opt_state: Any  # the outer optimizer's state
    adv_state: Any  # the adversarial optimizer's state
    cache: Any  # the params at the start of the sync period (None in opaque mode)


def _negate(tree: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: None if x is None else -x, tree, is_leaf=_tree.is_none)


def _add(a: Any, b: Any) -> Any:
    return jax.tree_util.tree_map(
        lambda x, y: (_tree.wide(x) + _tree.wide(y)).astype(x.dtype), a, b
    )


def _difference(cache: Any, params: Any, like: Any) -> Any:
    """cache - params, leaf by leaf, in the dtype of the matching update leaf."""
    return jax.tree_util.tree_map(
        lambda c, p, u: (_tree.wide(c) - _tree.wide(p)).astype(u.dtype), cache, params, like
    )


@_hyper.declare(
    sync_period=_hyper.integer(1, 2**31 - 1, draw=(1, 4)),
    reset_state=_hyper.BOOL,
    opaque_mode=_hyper.BOOL,
)
def sam(
    optimizer: GradientTransformation,
    adv_optimizer: GradientTransformation,
    sync_period: int = 2,
    reset_state: bool = True,
    opaque_mode: bool = False,
    batch_axis_name: str | None = None,
) -> GradientTransformationExtraArgs:
    r"""SAM: steps of an adversarial (ascent) optimizer, then one outer step from where they started (Foret et al., 2021, Algorithm 1).

    With :math:`n` = ``sync_period``, a period is :math:`n - 1` ascent steps from the
    true params :math:`w`, each :math:`\epsilon \leftarrow \epsilon - A(g)` with
    :math:`A` = ``adv_optimizer`` (``chain(normalize(), sgd(rho))`` gives the
    paper's :math:`\hat\epsilon(w) = \rho\, g / \|g\|_2`), then one outer step
    taken at :math:`w` with the gradient at :math:`w + \epsilon`:

    .. math::
        w \leftarrow w + O\big(\nabla L(w + \epsilon)\big)

    ``opaque_mode=False``: each ``update`` is one of these steps; the ascent steps
    return the perturbation :math:`-A(g)` (the caller evaluates the next gradient
    at the perturbed params) and the outer step returns
    :math:`(w - \text{params}) + O(g)`, back to :math:`w` plus the outer update.
    ``opaque_mode=True``: each ``update`` runs the :math:`n - 1` ascent steps itself,
    calling ``grad_fn(params, i)`` (``i = 0 .. n-2``) for the gradients, and returns
    the outer update only (the updates given are the gradient at :math:`w`).
    ``reset_state`` restarts the adversarial optimizer's state after each outer step.
    ``batch_axis_name``: in opaque mode, the gradient given to the outer optimizer is
    averaged over that axis (``jax.lax.pmean``). Extra keyword arguments of ``update``
    reach both optimizers where they take them.

    Note:
        With ``sync_period=1`` (no ascent step) this is the outer optimizer; optax
        0.2.8 then returns to the initial params at every step (its cache of
        :math:`w` is only refreshed by an ascent step).

    Args:
        optimizer: the outer optimizer :math:`O`.
        adv_optimizer: the adversarial optimizer :math:`A` (its update is negated).
        sync_period: :math:`n \ge 1`, the steps per period (1 outer step).
        reset_state: re-initialize the adversarial state after each outer step.
        opaque_mode: run the ascent steps inside ``update`` (needs ``grad_fn=``).
        batch_axis_name: the axis to average the outer gradient over (opaque mode).

    Returns:
        A `GradientTransformationExtraArgs` with state `SAMState`; its update needs
        the params (and ``grad_fn`` in opaque mode).

    Raises:
        ValueError: ``sync_period < 1``; ``update`` without params, or in opaque mode
            without ``grad_fn``.
        TypeError: ``optimizer`` or ``adv_optimizer`` is not a transformation.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: jnp.sum(w ** 2)
        >>> opt = gx.contrib.sam(gx.sgd(0.1), gx.chain(gx.contrib.normalize(), gx.sgd(0.5)))
        >>> w = jnp.array([3.0, 4.0])
        >>> state = opt.init(w)
        >>> u, state = opt.update(jax.grad(f)(w), state, w)  # ascent: +0.5 g / |g|
        >>> u.tolist()
        [0.30000001192092896, 0.4000000059604645]
        >>> w_adv = w + u
        >>> u, state = opt.update(jax.grad(f)(w_adv), state, w_adv)  # back to w, then -0.1 g(w_adv)
        >>> (w_adv + u).tolist()
        [2.3399999141693115, 3.119999885559082]

    References:
        Foret, Kleiner, Mobahi & Neyshabur, "Sharpness-Aware Minimization for Efficiently
        Improving Generalization", ICLR 2021, Algorithm 1 and Eq. (2).
    """
    check_transform(optimizer, "sam: optimizer")
    check_transform(adv_optimizer, "sam: adv_optimizer")
    fn = "sam"

    def init_fn(params):
        return SAMState(
            steps_since_sync=jnp.zeros([], jnp.int32),
            opt_state=optimizer.init(params),
            adv_state=adv_optimizer.init(params),
            cache=None if opaque_mode else jax.tree_util.tree_map(jnp.asarray, params),
        )

    def reset(adv_state, params):
        if not reset_state:
            return adv_state
        return _tree.cast_like(adv_optimizer.init(params), adv_state)

    def opaque_update(updates, state, params, grad_fn=None, **extra_args):
        _checks.check_state_type(state, SAMState, fn)
        _checks.require_params(params, fn)
        if grad_fn is None:
            raise ValueError(
                "sam.update with opaque_mode=True needs the gradient function: "
                "update(updates, state, params, grad_fn=lambda params, i: grads)."
            )
        adv_params, adv_state, grads = params, state.adv_state, updates
        for i in range(sync_period - 1):
            adv_updates, adv_state = call_update(adv_optimizer, grads, adv_state, adv_params, extra_args)
            adv_params = _add(adv_params, _negate(adv_updates))
            grads = grad_fn(adv_params, i)
        if batch_axis_name is not None:
            grads = jax.lax.pmean(grads, axis_name=batch_axis_name)
        out, opt_state = call_update(optimizer, grads, state.opt_state, params, extra_args)
        return out, SAMState(state.steps_since_sync, opt_state, reset(adv_state, params), None)

    def transparent_update(updates, state, params=None, **extra_args):
        _checks.check_update(fn, state, SAMState, updates, "cache")
        _checks.require_params(params, fn)
        steps = state.steps_since_sync
        # The true params w: refreshed when a period starts (so sync_period=1 is the outer optimizer).
        cache = jax.tree_util.tree_map(
            lambda p, c: jnp.where(steps == 0, jnp.asarray(p).astype(c.dtype), c), params, state.cache
        )

        def outer(_):
            u, opt_state = call_update(optimizer, updates, state.opt_state, cache, extra_args)
            u = _add(_difference(cache, params, u), u)
            new_cache = cache if sync_period == 1 else state.cache
            return u, SAMState(jnp.zeros_like(steps), opt_state, reset(state.adv_state, params), new_cache)

        def ascent(_):
            u, adv_state = call_update(adv_optimizer, updates, state.adv_state, params, extra_args)
            return _negate(u), SAMState(_tree.safe_increment(steps), state.opt_state, adv_state, cache)

        def fix(result, like):
            u, s = result
            return _tree.cast_like(u, like), _tree.cast_like(s, state)

        if sync_period == 1:
            return fix(outer(None), updates)
        return jax.lax.cond(
            steps >= sync_period - 1,
            lambda op: fix(outer(op), updates),
            lambda op: fix(ascent(op), updates),
            None,
        )

    return GradientTransformationExtraArgs(init_fn, opaque_update if opaque_mode else transparent_update)
