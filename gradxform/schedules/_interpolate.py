"""Schedules interpolated between values at boundary steps: piecewise, one-cycle, warm-up + constant."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from gradxform._base import Schedule
from gradxform._checks import _concrete_float, check_positive, check_range
from gradxform.schedules._schedules import constant_schedule, linear_schedule
from gradxform.schedules._steps import as_step, elapsed, reached, step_count, to_f32

_KINDS = ("cosine", "linear")


def _mix(kind: str, a: jax.Array, b: jax.Array, p: jax.Array) -> jax.Array:
    r"""From `a` (:math:`p = 0`) to `b` (:math:`p = 1`): linearly, or along a half cosine.

    Both are written as weighted means, exact at both ends and well conditioned
    whatever the ratio of the values: the cosine weights
    :math:`\tfrac12(1 \pm \cos \pi p)` are computed as :math:`\cos^2(\pi p / 2)` and
    :math:`\sin^2(\pi p / 2)`, which keep their relative accuracy near 0.
    """
    if kind == "linear":
        return (1 - p) * a + p * b
    half = (jnp.pi / 2) * p
    return jnp.cos(half) ** 2 * a + jnp.sin(half) ** 2 * b


def _interpolated(kind: str, bounds: Sequence[int], values: Sequence[Any]) -> Schedule:
    """`values[i]` at step `bounds[i]` (``bounds[0] == 0``), interpolated between, held after.

    Steps below 0 hold ``values[0]``; an interval of length 0 is a jump to its
    end value at its step.
    """

    def schedule(step: Any) -> jax.Array:
        k = as_step(step)
        vs = [to_f32(v) for v in values]
        value = vs[0]
        for i in range(1, len(bounds)):
            length = bounds[i] - bounds[i - 1]
            if length == 0:
                continue
            p = elapsed(k, bounds[i - 1], length) / length
            value = jnp.where(reached(k, bounds[i - 1]), _mix(kind, vs[i - 1], vs[i], p), value)
        return jnp.where(reached(k, bounds[-1]), vs[-1], value)

    return schedule


def _product(a: Any, b: Any) -> Any:
    """``a * b``, in float64 when both are Python numbers, else in float32."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) * float(b)
    return to_f32(a) * to_f32(b)


def piecewise_interpolate_schedule(
    interpolate_type: str,
    init_value: jax.typing.ArrayLike,
    boundaries_and_scales: Optional[Mapping[int, float]] = None,
) -> Schedule:
    r"""Interpolates, linearly or along a half cosine, between values scaled at boundary steps.

    For the entries :math:`b_1 < \dots < b_n` of `boundaries_and_scales`, with
    scales :math:`s_i`, the value reached at :math:`b_i` is the accumulated product
    :math:`v_i = v_0 \prod_{j \le i} s_j` (:math:`v_0` = `init_value`, :math:`b_0 = 0`).
    Between two boundaries, with :math:`p = (k - b_{i-1}) / (b_i - b_{i-1})`:

    .. math::
      v_k = \begin{cases}
        (1 - p)\, v_{i-1} + p\, v_i & \text{linear} \\
        \tfrac12 (1 + \cos \pi p)\, v_{i-1} + \tfrac12 (1 - \cos \pi p)\, v_i & \text{cosine}
      \end{cases}
      \quad (b_{i-1} \le k < b_i),

    and :math:`v_k = v_n` from :math:`b_n` on.

    Args:
      interpolate_type: ``'linear'`` or ``'cosine'``.
      init_value: :math:`v_0`, the value at step 0; any real.
      boundaries_and_scales: a mapping ``{step: scale}``, steps :math:`b_i \ge 0`,
        scales :math:`s_i \ge 0`. ``None`` or ``{}`` gives a constant schedule.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `interpolate_type` is neither ``'linear'`` nor ``'cosine'``,
        or a scale or a boundary step is negative.
      TypeError: if a boundary step is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.piecewise_interpolate_schedule(
      ...     'linear', 1.0, {4: 0.1, 8: 0.01})
      >>> print([round(float(schedule(k)), 6) for k in (0, 2, 4, 6, 8, 10)])
      [1.0, 0.55, 0.1, 0.0505, 0.001, 0.001]

    Note:
      optax returns 0 at negative steps and accepts a negative boundary; here a
      negative step holds `init_value` and a negative boundary raises (as in
      `piecewise_constant_schedule`).
    """
    fn = "piecewise_interpolate_schedule"
    if interpolate_type not in _KINDS:
        raise ValueError(
            f"{fn}: `interpolate_type` must be 'linear' or 'cosine'; got interpolate_type={interpolate_type!r}."
        )
    name = "boundaries_and_scales"
    items = sorted((boundaries_and_scales or {}).items(), key=lambda kv: kv[0])
    bounds, values = [0], [init_value]
    for b, s in items:
        count = step_count(f"{name} key {b!r}", b, fn)
        v = _concrete_float(s)
        if v is not None and not v >= 0:
            raise ValueError(f"{fn}: the scales of `{name}` must be non-negative; got {name}[{b!r}]={s!r}.")
        bounds.append(count)
        values.append(_product(values[-1], s))
    if len(bounds) == 1:
        return constant_schedule(init_value)
    return _interpolated(interpolate_type, bounds, values)


def _check_fraction(name: str, value: Any, fn: str, low: float = 0.0) -> float:
    v = _concrete_float(value)
    if v is None:
        raise TypeError(f"{fn}: `{name}` must be a concrete number; got {name}={value!r}.")
    check_range(name, v, low, 1.0, fn=fn)
    return v


def _onecycle_values(peak_value: Any, div_factor: Any, final_div_factor: Any) -> tuple:
    """(initial, final) values: ``peak / div`` and ``peak / (div * final_div)``."""
    if all(isinstance(x, (int, float)) for x in (peak_value, div_factor, final_div_factor)):
        init = float(peak_value) / float(div_factor)
        return init, init / float(final_div_factor)
    init = to_f32(peak_value) / to_f32(div_factor)
    return init, init / to_f32(final_div_factor)


def cosine_onecycle_schedule(
    transition_steps: int,
    peak_value: jax.typing.ArrayLike,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""The one-cycle policy with cosine phases: up from ``peak / div`` to `peak`, then down.

    With :math:`T` = `transition_steps`, :math:`P` = `peak_value`, :math:`d` =
    `div_factor`, :math:`f` = `final_div_factor` and the turning step
    :math:`S = \lfloor \text{pct\_start} \cdot T \rfloor`, this is
    `piecewise_interpolate_schedule` (``'cosine'``) through

    .. math::
      v_0 = P / d, \qquad v_S = P, \qquad v_T = P / (d f),

    holding :math:`P / (d f)` from step :math:`T` on.

    Args:
      transition_steps: :math:`T > 0`, the length of the cycle.
      peak_value: :math:`P`, the value at step :math:`S`; any real.
      pct_start: the fraction of the cycle spent rising, in [0, 1].
      div_factor: :math:`d > 0`: the cycle starts at :math:`P / d`.
      final_div_factor: :math:`f > 0`: the cycle ends at :math:`P / (d f)`.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `transition_steps` is not positive, `pct_start` is outside
        [0, 1], or `div_factor` or `final_div_factor` is not positive.
      TypeError: if `transition_steps` or `pct_start` is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.cosine_onecycle_schedule(100, 1.0)
      >>> print([round(float(schedule(k)), 6) for k in (0, 15, 30, 65, 100)])  # 65: (1 + 4e-6) / 2
      [0.04, 0.52, 1.0, 0.500002, 4e-06]

    Note:
      optax accepts ``pct_start > 1`` (a turning step beyond the end, whose values
      are meaningless); it raises here.

    References:
      Smith and Topin, `Super-Convergence: Very Fast Training of Neural Networks
      Using Large Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2019,
      Section 3 (the one-cycle policy).
    """
    fn = "cosine_onecycle_schedule"
    total = step_count("transition_steps", transition_steps, fn, positive=True)
    start = _check_fraction("pct_start", pct_start, fn)
    check_positive("div_factor", div_factor, fn=fn)
    check_positive("final_div_factor", final_div_factor, fn=fn)
    turn = int(math.floor(start * total))
    init, final = _onecycle_values(peak_value, div_factor, final_div_factor)
    return _interpolated("cosine", [0, turn, total], [init, peak_value, final])


def linear_onecycle_schedule(
    transition_steps: int,
    peak_value: jax.typing.ArrayLike,
    pct_start: float = 0.3,
    pct_final: float = 0.85,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    r"""The one-cycle policy with linear phases: up to `peak`, back down, then an annealing tail.

    With :math:`T` = `transition_steps`, :math:`P` = `peak_value`, :math:`d` =
    `div_factor`, :math:`f` = `final_div_factor`, :math:`S = \lfloor
    \text{pct\_start} \cdot T \rfloor` and :math:`F = \lfloor \text{pct\_final}
    \cdot T \rfloor`, this is `piecewise_interpolate_schedule` (``'linear'``) through

    .. math::
      v_0 = P / d, \qquad v_S = P, \qquad v_F = P / d, \qquad v_T = P / (d f),

    holding :math:`P / (d f)` from step :math:`T` on.

    Args:
      transition_steps: :math:`T > 0`, the length of the cycle.
      peak_value: :math:`P`, the value at step :math:`S`; any real.
      pct_start: the fraction of the cycle spent rising, in [0, 1].
      pct_final: the fraction of the cycle at which the value is back at
        :math:`P / d`, in [`pct_start`, 1].
      div_factor: :math:`d > 0`.
      final_div_factor: :math:`f > 0`.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `transition_steps` is not positive, ``0 <= pct_start <=
        pct_final <= 1`` does not hold, or `div_factor` or `final_div_factor` is
        not positive.
      TypeError: if `transition_steps`, `pct_start` or `pct_final` is not a
        concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.linear_onecycle_schedule(100, 1.0)
      >>> print([round(float(schedule(k)), 6) for k in (0, 15, 30, 85, 100)])
      [0.04, 0.52, 1.0, 0.04, 4e-06]

    Note:
      optax's docstring says the tail ends at :math:`P / f`; its schedule (and
      this one) ends at :math:`P / (d f)`. optax accepts fractions outside
      [0, 1] or ``pct_final < pct_start`` (boundaries out of order, or two equal
      ones collapsing into one dictionary key); they raise here, and equal
      turning steps give a phase of length 0.

    References:
      Smith and Topin, `Super-Convergence: Very Fast Training of Neural Networks
      Using Large Learning Rates <https://arxiv.org/abs/1708.07120>`_, 2019,
      Section 3 (the one-cycle policy: a rise, a symmetric fall, and a final
      annihilation phase).
    """
    fn = "linear_onecycle_schedule"
    total = step_count("transition_steps", transition_steps, fn, positive=True)
    start = _check_fraction("pct_start", pct_start, fn)
    final_pct = _concrete_float(pct_final)
    if final_pct is None:
        raise TypeError(f"{fn}: `pct_final` must be a concrete number; got pct_final={pct_final!r}.")
    if not start <= final_pct <= 1.0:
        raise ValueError(
            f"{fn}: `pct_final` must be in [pct_start, 1] = [{start:g}, 1]; got pct_final={pct_final!r}."
        )
    check_positive("div_factor", div_factor, fn=fn)
    check_positive("final_div_factor", final_div_factor, fn=fn)
    turn, back = int(math.floor(start * total)), int(math.floor(final_pct * total))
    init, final = _onecycle_values(peak_value, div_factor, final_div_factor)
    return _interpolated("linear", [0, turn, back, total], [init, peak_value, init, final])


def warmup_constant_schedule(
    init_value: jax.typing.ArrayLike,
    peak_value: jax.typing.ArrayLike,
    warmup_steps: int,
) -> Schedule:
    r"""Linear warm-up from `init_value` to `peak_value`, then `peak_value` for ever.

    .. math::
      v_k = I + (P - I) \, \frac{\min(\max(k, 0), W)}{W},

    with :math:`I` = `init_value`, :math:`P` = `peak_value`, :math:`W` = `warmup_steps`
    (:math:`v_k = P` for every step when :math:`W = 0`).

    Args:
      init_value: :math:`I`, the value at step 0; any real.
      peak_value: :math:`P`, the value from step :math:`W` on; any real.
      warmup_steps: :math:`W \ge 0`, the length of the warm-up.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `warmup_steps` is negative.
      TypeError: if `warmup_steps` is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.warmup_constant_schedule(0.0, 1.0, warmup_steps=10)
      >>> print([float(schedule(k)) for k in (0, 5, 10, 1000)])
      [0.0, 0.5, 1.0, 1.0]

    Note:
      optax, given ``warmup_steps=0``, holds `init_value` for ever (its linear
      warm-up of length 0 never ends); no warm-up means `peak_value` from step 0
      here, as in `warmup_cosine_decay_schedule`.

    References:
      Goyal et al., `Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour
      <https://arxiv.org/abs/1706.02677>`_, 2017, Section 2.2 (gradual warm-up).
    """
    warmup = step_count("warmup_steps", warmup_steps, "warmup_constant_schedule")
    if warmup == 0:
        return constant_schedule(peak_value)
    return linear_schedule(init_value, peak_value, transition_steps=warmup)
