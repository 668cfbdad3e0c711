"""NumPy float64 references of the interpolated schedules: one-cycle, piecewise interpolation, warm-up.

Each is written from the paper's (or optax's documented) formula, not from
gradxform's code: a plain loop over the phases, in float64, for one step at a time.
"""

from __future__ import annotations

import math
from typing import Callable, Mapping, Optional

__all__ = [
    "cosine_onecycle_schedule",
    "linear_onecycle_schedule",
    "piecewise_interpolate_schedule",
    "warmup_constant_schedule",
]


def _anneal(kind: str, start: float, end: float, pct: float) -> float:
    """Smith & Topin's annealing from `start` to `end` at fraction `pct` of a phase."""
    if kind == "linear":
        return start + (end - start) * pct
    # Cosine annealing (Loshchilov & Hutter, 2017, Eq. 5): end + (start - end)(1 + cos(pi pct)) / 2.
    return end + (start - end) * (1.0 + math.cos(math.pi * pct)) / 2.0


def _phases(kind: str, points: list[tuple[int, float]]) -> Callable[[float], float]:
    """The value through `points` = [(step, value), ...] (steps non-decreasing, first 0)."""

    def schedule(step: float) -> float:
        k = float(step)
        if k < points[0][0]:
            return points[0][1]
        for (b0, v0), (b1, v1) in zip(points, points[1:]):
            if b0 <= k < b1:
                return _anneal(kind, v0, v1, (k - b0) / (b1 - b0))
        return points[-1][1]

    return schedule


def piecewise_interpolate_schedule(
    interpolate_type: str, init_value: float, boundaries_and_scales: Optional[Mapping[int, float]] = None
) -> Callable[[float], float]:
    """optax's documented rule: the values are the running products of the scales.

    The value at boundary :math:`b_i` is :math:`v_0 \\prod_{j \\le i} s_j`; between
    boundaries the value is annealed linearly or along a half cosine; steps before
    0 hold :math:`v_0` and steps after the last boundary hold the last value.
    (optax.schedules.piecewise_interpolate_schedule's docstring.)
    """
    points = [(0, float(init_value))]
    for b, s in sorted((boundaries_and_scales or {}).items()):
        points.append((int(b), points[-1][1] * float(s)))
    return _phases(interpolate_type, points)


def cosine_onecycle_schedule(
    transition_steps: int, peak_value: float, pct_start: float = 0.3, div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Callable[[float], float]:
    """Smith & Topin (2019), Section 3, with cosine annealing in both phases.

    From :math:`\\eta_{max} / d` up to :math:`\\eta_{max}` over the first
    ``pct_start`` of the cycle (the turning step truncated to an integer, as
    optax does), then down to :math:`\\eta_{max} / (d f)` at the end of the cycle.
    """
    start = peak_value / div_factor
    turn = int(pct_start * transition_steps)
    return _phases("cosine", [(0, start), (turn, peak_value), (transition_steps, start / final_div_factor)])


def linear_onecycle_schedule(
    transition_steps: int, peak_value: float, pct_start: float = 0.3, pct_final: float = 0.85,
    div_factor: float = 25.0, final_div_factor: float = 1e4,
) -> Callable[[float], float]:
    """Smith & Topin (2019), Section 3: linear rise, symmetric linear fall, annihilation phase.

    :math:`\\eta_{max} / d \\to \\eta_{max}` over ``[0, pct_start T]``, back to
    :math:`\\eta_{max} / d` at ``pct_final T``, then down to
    :math:`\\eta_{max} / (d f)` at :math:`T` (turning steps truncated to integers).
    """
    start = peak_value / div_factor
    turn, back = int(pct_start * transition_steps), int(pct_final * transition_steps)
    return _phases(
        "linear",
        [(0, start), (turn, peak_value), (back, start), (transition_steps, start / final_div_factor)],
    )


def warmup_constant_schedule(init_value: float, peak_value: float, warmup_steps: int) -> Callable[[float], float]:
    """Goyal et al. (2017), Section 2.2: a linear ramp over the first `warmup_steps` steps, then constant.

    No warm-up (``warmup_steps == 0``) is the constant `peak_value`.
    """

    def schedule(step: float) -> float:
        if warmup_steps == 0:
            return float(peak_value)
        frac = min(max(float(step), 0.0), warmup_steps) / warmup_steps
        return init_value + (peak_value - init_value) * frac

    return schedule
