"""Closed-form schedules: constant, polynomial, linear, exponential, inverse-time, cosine.

A schedule is a pure function ``step -> value``. Each one here takes a Python or
NumPy integer, or a (traced) ``int32`` array, and returns a ``float32`` array:
hyperparameters are held in ``float32`` whatever the dtype of the parameters.
The factories validate their arguments once, when the schedule is built.

Signatures, defaults and values follow optax 0.2.8 (``optax.schedules``), except
where a docstring's Note says otherwise; `inverse_time_decay`
(``init_value / (1 + decay_rate * k) ** power``, TensorFlow's ``InverseTimeDecay``
for ``power=1``) is not in optax.
"""

from __future__ import annotations

from typing import Any, Optional

import jax
import jax.numpy as jnp

from gradxform._base import Schedule
from gradxform._checks import check_positive, check_range
from gradxform.schedules._steps import elapsed, hyper, step_count, to_f32


def constant_schedule(value: jax.typing.ArrayLike) -> Schedule:
    r"""A schedule that returns `value` at every step: :math:`v_k = v`.

    Args:
      value: the value to hold; any real scalar.

    Returns:
      A schedule ``step -> float32 scalar``.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.constant_schedule(0.5)
      >>> print(schedule(0), schedule(10_000))
      0.5 0.5

    Note:
      optax returns `value` itself; this returns it as a ``float32`` array, like
      every other schedule here, so that a state holding it keeps one dtype.
    """

    def schedule(step: Any) -> jax.Array:
        del step
        return to_f32(value)

    return schedule


def polynomial_schedule(
    init_value: jax.typing.ArrayLike,
    end_value: jax.typing.ArrayLike,
    power: jax.typing.ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""A polynomial transition from `init_value` to `end_value`.

    With :math:`I` = `init_value`, :math:`E` = `end_value`, :math:`p` = `power`,
    :math:`B` = `transition_begin` and :math:`T` = `transition_steps`:

    .. math::
      v_k = (I - E) \left(1 - \frac{\min(\max(k - B, 0), T)}{T}\right)^{p} + E,

    that is :math:`I` until step :math:`B`, then a polynomial of degree :math:`p`
    reaching :math:`E` at step :math:`B + T`, and :math:`E` afterwards.

    Args:
      init_value: value held until `transition_begin`; any real scalar.
      end_value: value reached at ``transition_begin + transition_steps``; any real.
      power: the degree :math:`p > 0` (``1`` is linear; ``2`` falls fast, then flattens).
      transition_steps: length :math:`T \ge 0` of the transition, in steps. ``0``
        disables it: the schedule then holds `init_value` forever (as in optax).
      transition_begin: the step :math:`B \ge 0` at which the transition starts.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `transition_steps` or `transition_begin` is negative, or
        `power` is not positive.
      TypeError: if `transition_steps` or `transition_begin` is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.polynomial_schedule(
      ...     init_value=1.0, end_value=0.0, power=2, transition_steps=10)
      >>> print([round(float(schedule(k)), 4) for k in (0, 5, 10, 20)])
      [1.0, 0.25, 0.0, 0.0]

    Note:
      optax logs and carries on where this raises: it treats a negative
      `transition_steps` like ``0`` and a negative `transition_begin` like ``0``.
      A count of steps below zero is a bug upstream (for example
      ``total - warmup`` with ``warmup > total``), so it is reported here.
      ``power <= 0`` never reaches `end_value` (``0 ** 0 == 1``) or divides by
      zero at the end, so it is rejected too.
    """
    fn = "polynomial_schedule"
    t_steps = step_count("transition_steps", transition_steps, fn)
    t_begin = step_count("transition_begin", transition_begin, fn)
    check_positive("power", power, fn=fn)
    if t_steps == 0:
        return constant_schedule(init_value)

    def schedule(step: Any) -> jax.Array:
        # (T - t) / T, not 1 - t / T: XLA may fuse the latter into something that is
        # not exactly 0 at t = T, and a fractional power then turns 1e-8 into 1e-4.
        frac = (t_steps - elapsed(step, t_begin, t_steps)) / t_steps
        init, end = hyper(init_value), hyper(end_value)
        return to_f32((init - end) * frac ** hyper(power) + end)

    return schedule


def linear_schedule(
    init_value: jax.typing.ArrayLike,
    end_value: jax.typing.ArrayLike,
    transition_steps: int,
    transition_begin: int = 0,
) -> Schedule:
    r"""A linear transition from `init_value` to `end_value` (Goodfellow et al., 2016, Section 8.3.1).

    With :math:`\varepsilon_0` = `init_value`, :math:`\varepsilon_\tau` =
    `end_value`, :math:`\tau` = `transition_steps` and :math:`B` =
    `transition_begin`:

    .. math::
      \varepsilon_k = (1 - \alpha)\,\varepsilon_0 + \alpha\,\varepsilon_\tau,
      \qquad \alpha = \min\!\left(1, \frac{\max(k - B, 0)}{\tau}\right).

    Args:
      init_value: :math:`\varepsilon_0`, held until `transition_begin`; any real.
      end_value: :math:`\varepsilon_\tau`, held from ``transition_begin +
        transition_steps`` on; any real (Goodfellow et al. suggest about 1% of
        :math:`\varepsilon_0`).
      transition_steps: :math:`\tau \ge 0`, the length of the transition in steps.
        ``0`` disables it: the schedule then holds `init_value` forever (as in optax).
      transition_begin: the step :math:`B \ge 0` at which the transition starts.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `transition_steps` or `transition_begin` is negative.
      TypeError: if `transition_steps` or `transition_begin` is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.linear_schedule(
      ...     init_value=1.0, end_value=0.01, transition_steps=100)
      >>> print([round(float(schedule(k)), 4) for k in (0, 50, 100, 1000)])
      [1.0, 0.505, 0.01, 0.01]

    Note:
      This is `polynomial_schedule` with ``power=1``, written in the book's form
      with both ends exact, eagerly and under ``jax.jit``: every step up to ``B``
      gives `init_value` and every step from ``B + tau`` on gives `end_value`,
      to the bit. Values in between agree
      with optax's to float32 rounding. As in `polynomial_schedule`, negative
      counts of steps raise where optax falls back to ``0``.

      The decay :math:`\eta_0 / (k + 1)`, sometimes called "linear decay", is a
      different schedule: `inverse_time_decay` with ``power=1``.

    References:
      Goodfellow, Bengio & Courville, "Deep Learning", 2016, Section 8.3.1
      (the linear decay of the learning rate until iteration :math:`\tau`).
    """
    fn = "linear_schedule"
    t_steps = step_count("transition_steps", transition_steps, fn)
    t_begin = step_count("transition_begin", transition_begin, fn)
    if t_steps == 0:
        return constant_schedule(init_value)

    def schedule(step: Any) -> jax.Array:
        t = elapsed(step, t_begin, t_steps)
        init, end = to_f32(init_value), to_f32(end_value)
        value = (t_steps - t) / t_steps * init + t / t_steps * end
        # Under jit XLA may divide through a rounded reciprocal; pin both ends exactly.
        return jnp.where(t <= 0, init, jnp.where(t >= t_steps, end, value))

    return schedule


def exponential_decay(
    init_value: jax.typing.ArrayLike,
    transition_steps: int,
    decay_rate: float,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Optional[jax.typing.ArrayLike] = None,
) -> Schedule:
    r"""Exponential decay: `init_value` times `decay_rate` every `transition_steps` steps.

    With :math:`\eta_0` = `init_value`, :math:`r` = `decay_rate`, :math:`T` =
    `transition_steps` and :math:`B` = `transition_begin`:

    .. math::
      \eta_k = \eta_0 \, r^{\,p_k}, \qquad p_k = \frac{\max(k - B, 0)}{T}
      \quad\left(\text{or } \left\lfloor \frac{\max(k - B, 0)}{T} \right\rfloor
      \text{ with staircase}\right),

    then, when `end_value` is given, clipped to it: :math:`\max(\eta_k, E)` when
    :math:`r < 1` (a floor) and :math:`\min(\eta_k, E)` when :math:`r \ge 1` (a ceiling).

    Args:
      init_value: :math:`\eta_0`, any real scalar.
      transition_steps: :math:`T \ge 0`, the number of steps over which the value
        is multiplied by `decay_rate`. ``0`` disables the decay: the schedule
        holds `init_value` forever (as in optax).
      decay_rate: :math:`r > 0`; below 1 it decays, above 1 it grows.
      transition_begin: the step :math:`B \ge 0` before which `init_value` is held.
      staircase: if True, decay in discrete jumps every `transition_steps` steps.
      end_value: optional bound (a floor when decaying, a ceiling when growing).

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `decay_rate` is not positive, or `transition_steps` or
        `transition_begin` is negative.
      TypeError: if `transition_steps` or `transition_begin` is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.exponential_decay(
      ...     init_value=1.0, transition_steps=10, decay_rate=0.5)
      >>> print([round(float(schedule(k)), 4) for k in (0, 10, 15, 20)])
      [1.0, 0.5, 0.3536, 0.25]

    Note:
      The exponential decay :math:`\eta_k = \eta_0 e^{-\beta k}`,
      :math:`\beta > 0`, is ``exponential_decay(eta0, transition_steps=1,
      decay_rate=exp(-beta))``.

      optax treats ``decay_rate == 0`` as "no decay" (a constant schedule) and
      lets a negative rate produce NaN; both raise here (optax's own docstring
      says the rate must not be zero; use `constant_schedule` for a constant).
      Negative counts of steps raise where optax falls back to ``0``.
    """
    fn = "exponential_decay"
    t_steps = step_count("transition_steps", transition_steps, fn)
    t_begin = step_count("transition_begin", transition_begin, fn)
    check_positive("decay_rate", decay_rate, fn=fn)
    if t_steps == 0:
        return constant_schedule(init_value)

    def schedule(step: Any) -> jax.Array:
        p = elapsed(step, t_begin) / t_steps
        if staircase:
            p = jnp.floor(p)
        rate = hyper(decay_rate)
        value = to_f32(hyper(init_value) * rate**p)
        if end_value is not None:
            end = to_f32(end_value)
            value = jnp.where(rate < 1, jnp.maximum(value, end), jnp.minimum(value, end))
        return value

    return schedule


def inverse_time_decay(
    init_value: jax.typing.ArrayLike,
    decay_rate: jax.typing.ArrayLike = 1.0,
    power: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    r"""Inverse-time decay: :math:`\eta_0 / (k + 1)` (power 1) and :math:`\eta_0 / (k + 1)^2` (power 2).

    .. math::
      \eta_k = \frac{\eta_0}{(1 + \gamma k)^{p}},

    with :math:`\eta_0` = `init_value`, :math:`\gamma` = `decay_rate` and
    :math:`p` = `power`. With :math:`\gamma = 1` this is
    :math:`\eta_0 / (k + 1)` for :math:`p = 1` and :math:`\eta_0 / (k + 1)^2`
    for :math:`p = 2`. Steps below 0 give :math:`\eta_0`.

    Args:
      init_value: :math:`\eta_0`, any real scalar.
      decay_rate: :math:`\gamma \ge 0`, how fast time passes (``0`` holds
        :math:`\eta_0`).
      power: :math:`p \ge 0` (``0`` holds :math:`\eta_0`).

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `decay_rate` or `power` is negative (the value would grow
        or, for :math:`\gamma < 0`, divide by zero).

    Examples:
      >>> import gradxform as gx
      >>> linear = gx.schedules.inverse_time_decay(1.0)             # 1 / (k + 1)
      >>> quadratic = gx.schedules.inverse_time_decay(1.0, power=2)  # 1 / (k + 1)^2
      >>> print(float(linear(3)), float(quadratic(3)))
      0.25 0.0625

    Note:
      Not in optax. :math:`\eta_0/(k+1)` is sometimes called "linear decay"
      because the denominator grows linearly; it is not `linear_schedule`,
      whose value falls linearly. TensorFlow's ``InverseTimeDecay`` is the
      ``power=1`` case with :math:`\gamma` = ``decay_rate / decay_steps``.
    """
    fn = "inverse_time_decay"
    check_range("decay_rate", decay_rate, 0.0, fn=fn)
    check_range("power", power, 0.0, fn=fn)

    def schedule(step: Any) -> jax.Array:
        k = elapsed(step)
        return to_f32(hyper(init_value) / (1 + hyper(decay_rate) * k) ** hyper(power))

    return schedule


def _cosine(init_value: Any, decay_steps: Any, alpha: Any, exponent: Any) -> Schedule:
    """The cosine decay of `cosine_decay_schedule`, without validating `alpha`.

    `decay_steps` is a positive count from `step_count`.
    """

    def schedule(step: Any) -> jax.Array:
        t = elapsed(step, 0, decay_steps)
        w = (0.5 * (1 + jnp.cos(jnp.pi * t / decay_steps))) ** hyper(exponent)
        # w + (1 - w) alpha rather than (1 - alpha) w + alpha: exactly 1 at t = 0.
        return to_f32(hyper(init_value) * (w + (1 - w) * hyper(alpha)))

    return schedule


def cosine_decay_schedule(
    init_value: jax.typing.ArrayLike,
    decay_steps: int,
    alpha: jax.typing.ArrayLike = 0.0,
    exponent: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    r"""Cosine decay from `init_value` to ``alpha * init_value`` over `decay_steps` steps.

    With :math:`I` = `init_value`, :math:`T` = `decay_steps`, :math:`\alpha` =
    `alpha`, :math:`p` = `exponent` and :math:`t = \min(\max(k, 0), T)`:

    .. math::
      v_k = I \left[(1 - \alpha) \left(\frac{1 + \cos(\pi t / T)}{2}\right)^{p}
      + \alpha\right].

    Args:
      init_value: :math:`I`, the value at step 0; any real scalar.
      decay_steps: :math:`T > 0`, the number of steps of the decay.
      alpha: :math:`\alpha \in [0, 1]`, the final value as a fraction of
        `init_value`, held from step :math:`T` on.
      exponent: :math:`p > 0`; above 1 the value falls faster at the start.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `decay_steps` or `exponent` is not positive, or `alpha` is
        outside [0, 1].
      TypeError: if `decay_steps` is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.cosine_decay_schedule(1.0, decay_steps=100, alpha=0.1)
      >>> print([round(float(schedule(k)), 4) for k in (0, 50, 100, 200)])
      [1.0, 0.55, 0.1, 0.1]

    Note:
      optax accepts any `alpha` and `exponent`; here `alpha` outside [0, 1]
      (a "minimum" above the start, or a negative one) and ``exponent <= 0``
      (no decay, or a division by zero at the end) raise. For a cosine between
      two arbitrary values use `warmup_cosine_decay_schedule` with
      ``warmup_steps=0``. Steps below 0 give `init_value` (optax mirrors them).

    References:
      Loshchilov and Hutter, `SGDR: Stochastic Gradient Descent with Warm
      Restarts <https://arxiv.org/abs/1608.03983>`_, 2017.
    """
    fn = "cosine_decay_schedule"
    t_steps = step_count("decay_steps", decay_steps, fn, positive=True)
    check_range("alpha", alpha, 0.0, 1.0, fn=fn)
    check_positive("exponent", exponent, fn=fn)
    return _cosine(init_value, t_steps, alpha, exponent)
