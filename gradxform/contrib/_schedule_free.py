"""Schedule-Free learning (Defazio et al., 2024, "The Road Less Scheduled")."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import (
    GradientTransformationExtraArgs,
    ScalarOrSchedule,
    with_extra_args_support,
)
from gradxform._combine import chain
from gradxform.schedules._interpolate import warmup_constant_schedule
from gradxform.transforms._momentum import sgd
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._rmsprop import scale_by_rms
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = [
    "ScheduleFreeState",
    "schedule_free",
    "schedule_free_adamw",
    "schedule_free_eval_params",
    "schedule_free_sgd",
]


class ScheduleFreeState(NamedTuple):
    b1: jax.Array  # shape (), float32 (float64 for float64 params): beta, read by schedule_free_eval_params
    weight_sum: jax.Array  # shape (), float32 (float64): sum_{i <= t} gamma_max,i^r
    step_count: jax.Array  # shape (), int32: t, the 1-based step of the next update
    max_lr: jax.Array  # shape (), float32 (float64): gamma_max,t, the largest learning rate so far
    base_optimizer_state: Any  # the base optimizer's state
    z: Any  # z_t, like params (in state_dtype if given)


class _ScheduleFreeScalars(NamedTuple):
    b1: _tree.Decay
    c: jax.Array  # c_{t+1}


@_tree.leaf_rule
def _schedule_free_rule(delta, z, y, k: _ScheduleFreeScalars):
    z_old = z.astype(k.c.dtype)
    # The barrier rounds the base step before it is added to z, as eagerly: under jit, XLA would fuse
    # the base optimizer's last product into an FMA with z, rounding z_{t+1} differently (by ulp(z)).
    z_new = (z_old + jax.lax.optimization_barrier(delta).astype(k.c.dtype)).astype(z.dtype)
    dz = z_new.astype(k.c.dtype) - z_old
    # y_{t+1} - y_t = (1 - b) dz + c b (z_{t+1} - x_t), with b (z_t - x_t) = z_t - y_t: the update is
    # formed from differences, not as the difference of two params (which loses ulp(y)).
    u = k.b1.complement * dz + k.c * (k.b1.rate * dz + (z_old - y.astype(k.c.dtype)))
    return u.astype(delta.dtype), z_new


_B1 = _hyper.number(0.0, 1.0, low_inclusive=False, draw=(0.5, 0.99),
                    source="Defazio et al. (2024): beta in (0, 1] (x is recovered as (y - (1 - beta) z) / beta)")
_SCHEDULE_FREE = dict(
    learning_rate=_hyper.NONNEG._replace(
        draw=(1e-3, 0.5), source="Defazio et al. (2024): gamma_t >= 0 (the averaging weights are gamma_max^r)",
        scalar=True,
    ),
    b1=_B1,
    weight_lr_power=_hyper.NONNEG._replace(draw=(0.0, 3.0)),
)


@_hyper.declare(**_SCHEDULE_FREE)
def schedule_free(
    base_optimizer: Any,
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    weight_lr_power=2.0,
    state_dtype: Optional[Any] = None,
) -> GradientTransformationExtraArgs:
    r"""Schedule-Free averaging of a base optimizer (Defazio et al., 2024, Algorithm 1).

    The params are :math:`y_t`; the state keeps :math:`z_t` and recovers
    :math:`x_t = (y_t - (1 - \beta) z_t) / \beta`. With :math:`\Delta_t` the base
    optimizer's update at :math:`y_t` and :math:`\gamma_t` the learning rate at the
    1-based step :math:`t`,

    .. math::
        z_{t+1} = z_t + \Delta_t, \quad
        c_{t+1} = \frac{\gamma_{\max,t}^r}{\sum_{i=1}^{t} \gamma_{\max,i}^r}, \quad
        x_{t+1} = (1 - c_{t+1}) x_t + c_{t+1} z_{t+1}, \quad
        y_{t+1} = (1 - \beta) z_{t+1} + \beta x_{t+1}

    with :math:`\gamma_{\max,t} = \max_{i \le t} \gamma_i` and :math:`r` ``weight_lr_power``
    (:math:`c = 0` while every weight is 0). The update is :math:`y_{t+1} - y_t`, formed
    as :math:`(1 - \beta)(z_{t+1} - z_t) + c_{t+1}\beta(z_{t+1} - x_t)`. Evaluate the
    model at :math:`x_t`, `schedule_free_eval_params`. The base optimizer must have no
    momentum of its own, and its learning rate should be :math:`\gamma_t`.

    Args:
        base_optimizer: the transformation giving :math:`\Delta_t` (e.g. `sgd`);
            extra keyword arguments of ``update`` are passed on to it.
        learning_rate: :math:`\gamma_t \ge 0`, a number or a schedule of the
            1-based step :math:`t` (only its running maximum weights the average).
        b1: :math:`\beta \in (0, 1]`, the interpolation between :math:`z` and :math:`x`.
        weight_lr_power: :math:`r \ge 0`.
        state_dtype: dtype of :math:`z` (default: the params' dtype).

    Returns:
        A `GradientTransformationExtraArgs` with state `ScheduleFreeState`; its update
        needs the params.

    Raises:
        ValueError: ``learning_rate < 0``, ``b1`` outside (0, 1] or
            ``weight_lr_power < 0``; ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.schedule_free(gx.sgd(0.5), 0.5, b1=0.5)
        >>> y = jnp.array([1.0])
        >>> state = tx.init(y)
        >>> for _ in range(2):  # z: 1, 0.5, 0; x: 1, 0.5, 0.25; y: 1, 0.5, 0.125
        ...     u, state = tx.update(jnp.array([1.0]), state, y)
        ...     y = gx.apply_updates(y, u)
        >>> y.tolist(), gx.contrib.schedule_free_eval_params(state, y).tolist()
        ([0.125], [0.25])

    References:
        Defazio, Yang, Mehta, Mishchenko, Khaled & Cutkosky, "The Road Less Scheduled",
        NeurIPS 2024 (arXiv:2405.15682), Algorithm 1 and Section 4.3 (warmup weighting).
    """
    fn = "schedule_free"
    base = with_extra_args_support(base_optimizer)

    def init_fn(params):
        sdt = _tree.accumulation_dtype(params)
        return ScheduleFreeState(
            b1=_tree.hp(b1, sdt),
            weight_sum=jnp.zeros([], sdt),
            step_count=jnp.ones([], jnp.int32),
            max_lr=jnp.zeros([], sdt),
            base_optimizer_state=base.init(params),
            z=jax.tree_util.tree_map(  # own buffers (donation)
                lambda p: jnp.array(jnp.asarray(p).astype(state_dtype or jnp.asarray(p).dtype), copy=True), params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_update(fn, state, ScheduleFreeState, updates, "z")
        _checks.require_params(params, fn)
        sdt = state.weight_sum.dtype
        gamma = learning_rate(state.step_count) if callable(learning_rate) else learning_rate
        max_lr = jnp.maximum(state.max_lr, _tree.hp(gamma, sdt))
        weight = _power(max_lr, weight_lr_power)
        weight_sum = state.weight_sum + weight
        c = jnp.where(weight_sum == 0, 0, weight / jnp.where(weight_sum == 0, 1, weight_sum))
        delta, base_state = base.update(updates, state.base_optimizer_state, params, **extra_args)
        updates, z = _tree.apply_rule(
            _schedule_free_rule,
            delta,
            state.z,
            inputs=(params,),
            scalars=lambda dtype: _ScheduleFreeScalars(_tree.decay(b1, dtype), c.astype(dtype)),
        )
        new_state = ScheduleFreeState(
            b1=state.b1,
            weight_sum=weight_sum.astype(sdt),
            step_count=_tree.safe_increment(state.step_count),
            max_lr=max_lr.astype(sdt),
            base_optimizer_state=base_state,
            z=z,
        )
        return updates, new_state

    return GradientTransformationExtraArgs(init_fn, update_fn)


def _power(x: jax.Array, r: Any) -> jax.Array:
    """x^r; by repeated multiplication for a whole Python number r (exact where pow's exp(r log x) is
    not, and the same under jit and eagerly: XLA rewrites pow by a constant, but not pow by an argument)."""
    if isinstance(r, (int, float)) and float(r).is_integer() and 0 <= r <= 64:
        return jax.lax.integer_pow(x, int(r))
    return x ** _tree.hp(r, x.dtype)


def schedule_free_eval_params(state: ScheduleFreeState, params: Any) -> Any:
    r"""The params to evaluate a Schedule-Free model at: :math:`x_t = (y_t - (1 - \beta) z_t) / \beta`.

    Computed as :math:`y_t + \frac{1 - \beta}{\beta}(y_t - z_t)`, which is :math:`y_1` itself
    at the start (optax's form differs from it by a rounding).

    Args:
        state: the `ScheduleFreeState` (or a state holding one, e.g. the one of a
            `chain`, as long as it is found first when the state is searched).
        params: :math:`y_t`, the params the optimizer updates.

    Returns:
        :math:`x_t`, like `params` (each leaf in its dtype; computed in at least float32).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.schedule_free_sgd(0.5, b1=0.5)
        >>> y = jnp.array([1.0])
        >>> u, state = tx.update(jnp.array([1.0]), tx.init(y), y)  # x = z = 0.5
        >>> gx.contrib.schedule_free_eval_params(state, gx.apply_updates(y, u)).tolist()
        [0.5]
    """
    found = _find_state(state)
    if found is None:
        raise TypeError(
            "schedule_free_eval_params expected a ScheduleFreeState (built by schedule_free.init) "
            f"or a state holding one, got {type(state).__name__}."
        )

    def x_of(y, z):
        dt = _tree.compute_dtype(y.dtype)
        beta = found.b1.astype(dt)
        # y + (1 - b) / b (y - z): exactly y while z = y, and no cancellation of the two params' sizes.
        return (y.astype(dt) + (1 - beta) / beta * (y.astype(dt) - z.astype(dt))).astype(y.dtype)

    return jax.tree_util.tree_map(lambda y, z: x_of(jnp.asarray(y), z), params, found.z)


def _find_state(state: Any) -> Optional[ScheduleFreeState]:
    if isinstance(state, ScheduleFreeState):
        return state
    if isinstance(state, (tuple, list)):
        for inner in state:
            found = _find_state(inner)
            if found is not None:
                return found
    return None


def _shifted(schedule: ScalarOrSchedule) -> ScalarOrSchedule:
    """The base optimizer's learning rate: its 0-based count k is the step t = k + 1."""
    if callable(schedule):
        return lambda count: schedule(count + 1)
    return schedule


def _warmup(learning_rate: ScalarOrSchedule, warmup_steps: Optional[int]) -> ScalarOrSchedule:
    if warmup_steps is None:
        return learning_rate
    return warmup_constant_schedule(init_value=0.0, peak_value=learning_rate, warmup_steps=warmup_steps)


_WARMUP = _hyper.number(0, kind="int", optional=True, draw=(1, 5))


@_hyper.declare(**_SCHEDULE_FREE, warmup_steps=_WARMUP, weight_decay=_hyper.NONNEG._replace(optional=True))
def schedule_free_sgd(
    learning_rate=1.0,
    warmup_steps: Optional[int] = None,
    b1=0.9,
    weight_decay=None,
    weight_lr_power=2.0,
    state_dtype: Optional[Any] = None,
) -> GradientTransformationExtraArgs:
    r"""Schedule-Free SGD: `schedule_free` around ``chain(add_decayed_weights(weight_decay), sgd(gamma))``.

    .. math:: z_{t+1} = z_t - \gamma_t\left(\nabla f(y_t) + \lambda y_t\right), \qquad
              \gamma_t = \gamma \min(1, t / T_{\text{warmup}})

    The same :math:`\gamma_t` takes the step and weights the average (Algorithm 1).

    Args:
        learning_rate: :math:`\gamma \ge 0`, the peak learning rate.
        warmup_steps: :math:`T_{\text{warmup}} \ge 0`, the length of the linear warmup
            (None or 0: none).
        b1: :math:`\beta \in (0, 1]`.
        weight_decay: :math:`\lambda \ge 0`, added to the gradient (None: none).
        weight_lr_power: :math:`r \ge 0`, see `schedule_free`.
        state_dtype: dtype of :math:`z` (default: the params' dtype).

    Returns:
        A `GradientTransformationExtraArgs` with state `ScheduleFreeState`.

    Raises:
        ValueError: an argument outside its range.

    Note:
        optax 0.2.8 steps :math:`z` with the warmup's previous value
        :math:`\gamma_{t-1}` (its inner learning-rate count starts at 0, the weights'
        at 1), so its first step with a warmup does not move; here the step and the
        weight use the same :math:`\gamma_t`, as in the paper and the authors' code.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.schedule_free_sgd(1.0, warmup_steps=4, b1=0.5)
        >>> y = jnp.array([1.0])
        >>> u, state = tx.update(jnp.array([1.0]), tx.init(y), y)  # gamma_1 = 1/4
        >>> u.tolist()
        [-0.25]

    References:
        Defazio et al., "The Road Less Scheduled", NeurIPS 2024, Algorithm 1.
    """
    gamma = _warmup(learning_rate, warmup_steps)
    base = sgd(_shifted(gamma))
    if weight_decay is not None:
        base = chain(add_decayed_weights(weight_decay), base)
    return schedule_free(base, gamma, b1=b1, weight_lr_power=weight_lr_power, state_dtype=state_dtype)


@_hyper.declare(**_SCHEDULE_FREE, warmup_steps=_WARMUP, b2=_hyper.DECAY, eps=_hyper.EPS,
                weight_decay=_hyper.NONNEG)
def schedule_free_adamw(
    learning_rate=0.0025,
    warmup_steps: Optional[int] = None,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    weight_decay=0.0,
    weight_lr_power=2.0,
    state_dtype: Optional[Any] = None,
) -> GradientTransformationExtraArgs:
    r"""Schedule-Free AdamW (Defazio et al., 2024, Algorithm 1, the AdamW version).

    `schedule_free` around ``chain(scale_by_rms(b2, eps, eps_in_sqrt=False,
    bias_correction=True), add_decayed_weights(weight_decay), scale_by_learning_rate(gamma))``:

    .. math::
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2, \quad
        z_{t+1} = z_t - \gamma_t\left(\frac{g_t}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon}
        + \lambda y_t\right), \quad \gamma_t = \gamma \min(1, t / T_{\text{warmup}})

    The base optimizer has no first moment: :math:`\beta` (``b1``) takes its place.

    Args:
        learning_rate: :math:`\gamma \ge 0`, the peak learning rate.
        warmup_steps: :math:`T_{\text{warmup}} \ge 0` (None or 0: no warmup).
        b1: :math:`\beta \in (0, 1]`.
        b2: :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon \ge 0`, outside the root.
        weight_decay: :math:`\lambda \ge 0`, decoupled (applied at :math:`y_t`).
        weight_lr_power: :math:`r \ge 0`, see `schedule_free`.
        state_dtype: dtype of :math:`z` (default: the params' dtype).

    Returns:
        A `GradientTransformationExtraArgs` with state `ScheduleFreeState`.

    Raises:
        ValueError: an argument outside its range.

    Note:
        As for `schedule_free_sgd`, the step and the weight use the same warmup value
        :math:`\gamma_t` (optax 0.2.8 steps with :math:`\gamma_{t-1}`).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.schedule_free_adamw(0.25, b1=0.5, b2=0.0, eps=0.0)
        >>> y = jnp.array([1.0, 2.0])
        >>> u, state = tx.update(jnp.array([3.0, -0.5]), tx.init(y), y)  # -gamma g / |g|
        >>> u.tolist()
        [-0.25, 0.25]

    References:
        Defazio et al., "The Road Less Scheduled", NeurIPS 2024, Algorithm 1.
    """
    gamma = _warmup(learning_rate, warmup_steps)
    base = chain(
        scale_by_rms(decay=b2, eps=eps, eps_in_sqrt=False, bias_correction=True),
        add_decayed_weights(weight_decay),
        scale_by_learning_rate(_shifted(gamma)),
    )
    return schedule_free(base, gamma, b1=b1, weight_lr_power=weight_lr_power, state_dtype=state_dtype)
