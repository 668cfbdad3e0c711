"""`reduce_on_plateau`: scales the updates down when a monitored metric stops improving."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation


class ReduceLROnPlateauState(NamedTuple):
    scale: jax.Array  # shape (), float32: the current multiplier of the updates
    best_value: jax.Array  # shape (), float32: best averaged metric so far (+inf, or -inf in mode "max")
    plateau_count: jax.Array  # shape (), int32: evaluations without improvement
    cooldown_count: jax.Array  # shape (), int32: evaluations left in the cooldown
    count: jax.Array  # shape (), int32: values accumulated into avg_value
    avg_value: jax.Array  # shape (), float32: running mean of the values being accumulated


def improves(value, best, rtol, atol, mode: str = "min") -> jax.Array:
    r"""Whether `value` improves on `best`: :math:`v < b - \text{rtol}\,|b| - \text{atol}` (mode "min").

    Mode "max" is mode "min" on the negated metric: :math:`v > b + \text{rtol}\,|b| + \text{atol}`.
    An infinite `best` (no value seen yet) is improved on by any finite value.
    """
    sign = 1.0 if mode == "min" else -1.0
    v, b = sign * value, sign * best
    threshold = jnp.where(jnp.isfinite(b), b - rtol * jnp.abs(b) - atol, b)
    return v < threshold


@_hyper.declare(
    factor=_hyper.number(0.0, 1.0, low_inclusive=False, draw=(0.01, 1.0), source="validator"),
    patience=_hyper.integer(1, draw=(1, 20)),
    rtol=_hyper.NONNEG._replace(draw=(0.0, 1e-2), source="validator"),
    atol=_hyper.NONNEG._replace(draw=(0.0, 1e-2), source="validator"),
    cooldown=_hyper.integer(0, draw=(0, 5), source="validator"),
    accumulation_size=_hyper.integer(1, draw=(1, 5), source="validator"),
    min_scale=_hyper.NONNEG._replace(draw=(0.0, 1e-2), source="validator"),
    mode=_hyper.choice("min", "max"),
)
def reduce_on_plateau(
    factor=0.1,
    patience=10,
    rtol=1e-4,
    atol=0.0,
    cooldown=0,
    accumulation_size=1,
    min_scale=0.0,
    *,
    mode: str = "min",
) -> GradientTransformation:
    r"""Multiplies the updates by a scale that drops by `factor` when the metric plateaus.

    ``update(updates, state, params, value=metric)``. The values are averaged over
    ``accumulation_size`` calls; then, with :math:`\bar v` that average and
    :math:`b` the best average so far, the evaluation improves when

    .. math:: \bar v < b - \text{rtol}\,|b| - \text{atol} \qquad (\text{mode "min"})

    and otherwise counts towards the plateau. After `patience` evaluations
    without improvement, :math:`s \leftarrow \max(\text{factor}\cdot s, \text{min\_scale})`,
    the count restarts, and `cooldown` evaluations follow in which no plateau is
    counted. ``mode="max"`` behaves exactly like ``mode="min"`` on the negated
    metric (``best_value`` is kept in the metric's own sign).

    Note:
        optax.contrib's rule is :math:`\bar v < (1-\text{rtol})\, b - \text{atol}`,
        which for a negative best value accepts slightly *worse* values as
        improvements (for :math:`b < 0`, :math:`(1-\text{rtol})b > b`): a constant
        negative metric never plateaus and the scale never drops. The rule above
        is the same for positive metrics and correct for negative ones. Unlike
        optax, ``factor=1`` and ``rtol = atol = 0`` (strict improvement) are
        allowed, and the state is float32 whatever the params' dtype.

    Args:
        factor: multiplier in (0, 1] applied at each plateau.
        patience: evaluations without improvement before reducing, >= 1.
        rtol, atol: non-negative relative / absolute improvement thresholds.
        cooldown: evaluations after a reduction during which nothing is counted, >= 0.
        accumulation_size: values averaged per evaluation, >= 1.
        min_scale: the scale never drops below this, >= 0.
        mode: ``"min"`` (a lower metric is better) or ``"max"``.

    Returns:
        A `GradientTransformation` whose ``update`` needs ``value=``.

    Raises:
        ValueError: any argument outside the ranges above; at update, a missing ``value``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.reduce_on_plateau(factor=0.5, patience=2)
        >>> state = tx.init(jnp.zeros(1))
        >>> for loss in [-1.0, -1.0, -1.0]:  # a negative metric that stopped improving
        ...     u, state = tx.update(jnp.ones(1), state, value=loss)
        >>> float(state.scale), u.tolist()
        (0.5, [0.5])

    References:
        PyTorch's ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (threshold_mode="rel")
        and Keras' ``ReduceLROnPlateau`` callback (``min_delta`` is ``atol``; ``cooldown``);
        optax.contrib.reduce_on_plateau (the interface and the state).
    """
    fn = "reduce_on_plateau"
    f32 = jnp.float32

    def init_fn(params):
        del params
        return ReduceLROnPlateauState(
            scale=jnp.ones([], f32),
            best_value=jnp.asarray(jnp.inf if mode == "min" else -jnp.inf, f32),
            plateau_count=jnp.zeros([], jnp.int32),
            cooldown_count=jnp.zeros([], jnp.int32),
            count=jnp.zeros([], jnp.int32),
            avg_value=jnp.zeros([], f32),
        )

    def evaluate(state: ReduceLROnPlateauState) -> ReduceLROnPlateauState:
        better = improves(state.avg_value, state.best_value, _tree.hp(rtol, f32), _tree.hp(atol, f32), mode)
        best = jnp.where(better, state.avg_value, state.best_value)
        plateau = jnp.where(better, 0, _tree.safe_increment(state.plateau_count))
        in_cooldown = state.cooldown_count > 0
        reduce = (~in_cooldown) & (plateau >= jnp.asarray(patience).astype(jnp.int32))
        scale = jnp.where(
            reduce, jnp.maximum(state.scale * _tree.hp(factor, f32), _tree.hp(min_scale, f32)), state.scale
        )
        plateau = jnp.where(in_cooldown | reduce, 0, plateau)
        cooldown_count = jnp.where(
            in_cooldown,
            state.cooldown_count - 1,
            jnp.where(reduce, jnp.asarray(cooldown).astype(jnp.int32), 0),
        )
        return ReduceLROnPlateauState(
            scale=scale.astype(f32),
            best_value=best.astype(f32),
            plateau_count=plateau.astype(jnp.int32),
            cooldown_count=cooldown_count.astype(jnp.int32),
            count=jnp.zeros([], jnp.int32),
            avg_value=jnp.zeros([], f32),
        )

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ReduceLROnPlateauState, fn)
        if value is None:
            raise ValueError(f"{fn}.update needs the keyword argument `value=` (the monitored metric).")
        count = _tree.safe_increment(state.count)
        value = jnp.asarray(value).astype(f32)
        avg = (state.count.astype(f32) * state.avg_value + value) / count.astype(f32)
        state = state._replace(count=count, avg_value=avg)
        full = count >= jnp.asarray(accumulation_size).astype(jnp.int32)
        state = jax.lax.cond(full, evaluate, lambda s: s, state)
        return _tree.scale_tree(updates, state.scale), state

    return GradientTransformation(init_fn, update_fn)
