"""Schedules built from pieces: join, piecewise constant, warm-up + decay, SGDR."""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from gradxform._base import Schedule
from gradxform._checks import _concrete_float, check_positive
from gradxform.schedules._schedules import exponential_decay, linear_schedule
from gradxform.schedules._steps import as_step, elapsed, hyper, reached, shift, step_count, to_f32


def _check_boundaries(boundaries: Sequence[Any], name: str, fn: str) -> list:
    """Concrete, non-negative, non-decreasing step counts, or ValueError naming `name`."""
    counts = [step_count(f"{name}[{i}]", b, fn) for i, b in enumerate(boundaries)]
    for i in range(1, len(counts)):
        if counts[i] < counts[i - 1]:
            raise ValueError(
                f"{fn}: `{name}` must be non-decreasing; got {name}[{i - 1}]={counts[i - 1]!r} "
                f"> {name}[{i}]={counts[i]!r} in {name}={list(boundaries)!r}. "
                "Give the steps at which each schedule starts, in order."
            )
    return counts


def join_schedules(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    r"""Runs `schedules` one after another, switching at the steps in `boundaries`.

    With boundaries :math:`b_1 \le \dots \le b_{n-1}` (and :math:`b_0 = 0`),
    schedule :math:`i` is used on :math:`b_i \le k < b_{i+1}` and receives the
    step counted from its own start:

    .. math::
      v_k = s_i(k - b_i) \quad \text{for } b_i \le k < b_{i+1}.

    Steps below 0 go to the first schedule, unshifted.

    Args:
      schedules: :math:`n \ge 1` schedules (callables ``step -> value``; optax
        schedules work too). Each value is cast to ``float32``.
      boundaries: the :math:`n - 1` steps at which the next schedule starts:
        non-negative and non-decreasing (an equal pair gives a phase of length 0).

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `schedules` is empty, `boundaries` has neither
        ``len(schedules) - 1`` nor ``len(schedules)`` entries, or a boundary is
        negative or smaller than the one before it.

    Warns:
      UserWarning: given as many boundaries as schedules (optax's idiom), the last
        boundary is ignored, as in optax.
      TypeError: if an entry of `schedules` is not callable, or a boundary is
        not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> warmup = gx.schedules.linear_schedule(0.0, 1.0, transition_steps=10)
      >>> decay = gx.schedules.inverse_time_decay(1.0)
      >>> schedule = gx.schedules.join_schedules([warmup, decay], boundaries=[10])
      >>> print([float(schedule(k)) for k in (0, 5, 10, 11, 13)])
      [0.0, 0.5, 1.0, 0.5, 0.25]

    Note:
      optax does not check its arguments: extra schedules or boundaries are
      silently ignored there, and decreasing boundaries make a schedule
      unreachable. Both raise here, except one boundary per schedule (the last
      one unused), which optax's own examples do: it warns.
    """
    fn = "join_schedules"
    schedules = list(schedules)
    if not schedules:
        raise ValueError(f"{fn}: `schedules` must hold at least one schedule; got schedules=[].")
    for i, s in enumerate(schedules):
        if not callable(s):
            raise TypeError(
                f"{fn}: `schedules[{i}]` must be a schedule (a callable step -> value); "
                f"got {s!r}. Wrap a constant in constant_schedule."
            )
    boundaries = list(boundaries)
    if len(boundaries) == len(schedules):
        # optax's idiom (its docstring's own examples give one boundary per schedule): the
        # last boundary, the end of the last schedule, is not used. Accepted, with a warning.
        warnings.warn(
            f"{fn}: got as many boundaries as schedules ({len(schedules)}); the last one, "
            f"boundaries[-1]={boundaries[-1]!r}, is not used (the last schedule runs for ever). "
            "Give one boundary fewer than schedules.",
            UserWarning,
            stacklevel=2,
        )
        boundaries = boundaries[:-1]
    if len(boundaries) != len(schedules) - 1:
        raise ValueError(
            f"{fn}: `boundaries` must have one entry fewer than `schedules` (the step at "
            f"which each schedule after the first starts); got len(boundaries)="
            f"{len(boundaries)} for len(schedules)={len(schedules)}, boundaries={boundaries!r}."
        )
    counts = _check_boundaries(boundaries, "boundaries", fn)

    def schedule(step: Any) -> jax.Array:
        k = as_step(step)
        value = to_f32(schedules[0](k))
        for b, s in zip(counts, schedules[1:]):
            value = jnp.where(reached(k, b), to_f32(s(shift(k, b))), value)
        return value

    return schedule


def piecewise_constant_schedule(
    init_value: jax.typing.ArrayLike,
    boundaries_and_scales: Optional[Mapping[int, float]] = None,
) -> Schedule:
    r"""`init_value`, multiplied by a scale at each boundary step reached.

    .. math::
      v_k = v_0 \prod_{i \,:\, k \ge b_i} s_i,

    for the entries :math:`b_i \mapsto s_i` of `boundaries_and_scales`.

    Args:
      init_value: :math:`v_0`, the value before the first boundary; any real.
      boundaries_and_scales: a mapping ``{step: scale}``; steps :math:`b_i \ge 0`,
        scales :math:`s_i \ge 0`. ``None`` or ``{}`` gives a constant schedule.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if a scale or a boundary step is negative.
      TypeError: if a boundary step is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.piecewise_constant_schedule(
      ...     1.0, {100: 0.5, 200: 0.5})
      >>> print([float(schedule(k)) for k in (0, 99, 100, 200, 10_000)])
      [1.0, 1.0, 0.5, 0.25, 0.25]

    Note:
      optax accepts a negative boundary (whose scale then applies from step 0);
      it raises here, as it is never what was meant.
    """
    fn = "piecewise_constant_schedule"
    name = "boundaries_and_scales"
    items = sorted((boundaries_and_scales or {}).items(), key=lambda kv: kv[0])
    pieces = []
    for b, s in items:
        count = step_count(f"{name} key {b!r}", b, fn)
        v = _concrete_float(s)
        if v is not None and not v >= 0:
            raise ValueError(
                f"{fn}: the scales of `{name}` must be non-negative; got {name}[{b!r}]={s!r}."
            )
        pieces.append((count, s))

    def schedule(step: Any) -> jax.Array:
        k = as_step(step)
        value = to_f32(init_value)
        for b, s in pieces:
            value = value * jnp.where(reached(k, b), to_f32(s), to_f32(1.0))
        return value

    return schedule


def _cosine_between(peak_value: Any, end_value: Any, decay_steps: Any, exponent: Any) -> Schedule:
    """Cosine from `peak_value` (step 0) to `end_value` (step `decay_steps` on).

    Written as a weighted mean of the two values, which is exact at both ends and
    well conditioned whatever their ratio; optax's ``P((1 - E/P) c + E/P)`` is the
    same function, except that optax gives 0 throughout when ``P == 0``, which is
    kept here for parity.
    """

    def schedule(step: Any) -> jax.Array:
        t = elapsed(step, 0, decay_steps)
        w = (0.5 * (1 + jnp.cos(jnp.pi * t / decay_steps))) ** hyper(exponent)
        peak, end = to_f32(peak_value), to_f32(end_value)
        return jnp.where(peak == 0, to_f32(0.0), w * peak + (1 - w) * end)

    return schedule


def warmup_cosine_decay_schedule(
    init_value: jax.typing.ArrayLike,
    peak_value: jax.typing.ArrayLike,
    warmup_steps: int,
    decay_steps: int,
    end_value: jax.typing.ArrayLike = 0.0,
    exponent: jax.typing.ArrayLike = 1.0,
) -> Schedule:
    r"""Linear warm-up from `init_value` to `peak_value`, then cosine decay to `end_value`.

    With :math:`W` = `warmup_steps`, :math:`T` = `decay_steps` (the total
    length, warm-up included), :math:`P` = `peak_value`, :math:`E` = `end_value`,
    :math:`p` = `exponent` and :math:`t = \min(k - W, T - W)`:

    .. math::
      v_k = \begin{cases}
        \text{linear\_schedule}(I, P, W)(k) & k < W \\
        c_t^{\,p} P + \left(1 - c_t^{\,p}\right) E,
        \quad c_t = \tfrac{1}{2}\left(1 + \cos\tfrac{\pi t}{T - W}\right)
        & k \ge W
      \end{cases}

    Args:
      init_value: the value at step 0; any real.
      peak_value: the value reached at step `warmup_steps`; any real.
      warmup_steps: :math:`W \ge 0`, the length of the linear warm-up.
      decay_steps: :math:`T > W`, the total length of the schedule (warm-up
        included), after which `end_value` is held.
      end_value: the final value; any real.
      exponent: :math:`p > 0`, as in `cosine_decay_schedule`.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `warmup_steps` is negative, ``decay_steps <= warmup_steps``,
        or `exponent` is not positive.
      TypeError: if `warmup_steps` or `decay_steps` is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.warmup_cosine_decay_schedule(
      ...     init_value=0.0, peak_value=1.0, warmup_steps=10, decay_steps=110,
      ...     end_value=0.1)
      >>> print([round(float(schedule(k)), 4) for k in (0, 5, 10, 60, 110, 500)])
      [0.0, 0.5, 1.0, 0.55, 0.1, 0.1]

    Note:
      The decay is computed as :math:`c_t^{\,p} P + (1 - c_t^{\,p}) E`, the same
      function as optax's, but exact at both ends and well conditioned when
      :math:`|E| \gg |P|`. As in optax, ``peak_value == 0`` makes the decay
      phase 0 whatever `end_value`.
      ``decay_steps <= warmup_steps`` raises here, as in optax (which reports
      it through the inner cosine schedule's `decay_steps`).
    """
    fn = "warmup_cosine_decay_schedule"
    warmup = step_count("warmup_steps", warmup_steps, fn)
    total = step_count("decay_steps", decay_steps, fn, positive=True)
    if not total > warmup:
        raise ValueError(
            f"{fn}: `decay_steps` is the total length of the schedule, warm-up included, so "
            f"it must exceed `warmup_steps`; got decay_steps={decay_steps!r}, "
            f"warmup_steps={warmup_steps!r}."
        )
    check_positive("exponent", exponent, fn=fn)
    warm = linear_schedule(init_value, peak_value, transition_steps=warmup)
    decay = _cosine_between(peak_value, end_value, total - warmup, exponent)
    return join_schedules([warm, decay], [warmup])


def warmup_exponential_decay_schedule(
    init_value: jax.typing.ArrayLike,
    peak_value: jax.typing.ArrayLike,
    warmup_steps: int,
    transition_steps: int,
    decay_rate: jax.typing.ArrayLike,
    transition_begin: int = 0,
    staircase: bool = False,
    end_value: Optional[jax.typing.ArrayLike] = None,
) -> Schedule:
    r"""Linear warm-up from `init_value` to `peak_value`, then `exponential_decay`.

    .. math::
      v_k = \begin{cases}
        \text{linear\_schedule}(I, P, W)(k) & k < W \\
        \text{exponential\_decay}(P, T, r, B, \text{staircase}, E)(k - W) & k \ge W
      \end{cases}

    Args:
      init_value: the value at step 0; any real.
      peak_value: the value reached at step `warmup_steps`; any real.
      warmup_steps: :math:`W \ge 0`, the length of the linear warm-up.
      transition_steps, decay_rate, transition_begin, staircase, end_value: as in
        `exponential_decay`, with steps counted from the end of the warm-up.

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: as `exponential_decay`, or if `warmup_steps` is negative.
      TypeError: if a count of steps is not a concrete number.

    Examples:
      >>> import gradxform as gx
      >>> schedule = gx.schedules.warmup_exponential_decay_schedule(
      ...     init_value=0.0, peak_value=1.0, warmup_steps=10, transition_steps=10,
      ...     decay_rate=0.5)
      >>> print([float(schedule(k)) for k in (0, 5, 10, 20, 30)])
      [0.0, 0.5, 1.0, 0.5, 0.25]
    """
    warmup = step_count("warmup_steps", warmup_steps, "warmup_exponential_decay_schedule")
    warm = linear_schedule(init_value, peak_value, transition_steps=warmup)
    decay = exponential_decay(
        peak_value, transition_steps, decay_rate, transition_begin, staircase, end_value
    )
    return join_schedules([warm, decay], [warmup])


def sgdr_schedule(cosine_kwargs: Iterable[Mapping[str, Any]]) -> Schedule:
    r"""SGD with warm restarts: `warmup_cosine_decay_schedule` cycles, one after another.

    Cycle :math:`j` runs ``warmup_cosine_decay_schedule(**cosine_kwargs[j])``
    for its ``decay_steps`` steps, then the next cycle starts from its own step 0.

    Args:
      cosine_kwargs: one mapping of `warmup_cosine_decay_schedule` arguments per
        cycle, each with ``decay_steps`` (the cycle's length).

    Returns:
      A schedule ``step -> float32 scalar``.

    Raises:
      ValueError: if `cosine_kwargs` is empty, a cycle has no ``decay_steps``,
        or a cycle's arguments are invalid for `warmup_cosine_decay_schedule`.

    Examples:
      >>> import gradxform as gx
      >>> cycle = dict(init_value=0.0, peak_value=1.0, warmup_steps=0, decay_steps=10)
      >>> schedule = gx.schedules.sgdr_schedule([cycle, cycle])
      >>> print([round(float(schedule(k)), 4) for k in (0, 5, 9, 10, 15)])
      [1.0, 0.5, 0.0245, 1.0, 0.5]

    References:
      Loshchilov and Hutter, `SGDR: Stochastic Gradient Descent with Warm
      Restarts <https://arxiv.org/abs/1608.03983>`_, 2017.
    """
    fn = "sgdr_schedule"
    cycles = list(cosine_kwargs)
    if not cycles:
        raise ValueError(f"{fn}: `cosine_kwargs` must hold at least one cycle; got [].")
    schedules, starts, start = [], [], 0
    for j, kwargs in enumerate(cycles):
        if "decay_steps" not in kwargs:
            raise ValueError(
                f"{fn}: `cosine_kwargs[{j}]` has no 'decay_steps' (the cycle's length); "
                f"got {dict(kwargs)!r}."
            )
        schedules.append(warmup_cosine_decay_schedule(**kwargs))
        starts.append(start)
        start = start + step_count(f"cosine_kwargs[{j}]['decay_steps']", kwargs["decay_steps"], fn)
    return join_schedules(schedules, starts[1:])
