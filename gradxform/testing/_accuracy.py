"""`check_accuracy`: a transformation's float32 updates against its own float64 updates.

The float64 run is the yardstick: the same transformation object, the same params
and the same gradients, with every scalar the transformation forms from its
hyperparameters formed in float64. What float32 loses beyond the rounding of its
inputs is the transformation's own arithmetic: how it forms ``1 - beta``,
``1 - beta**t``, the order of its operations, what it accumulates in its state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["AccuracyResult", "check_accuracy"]

# Errors below two float32 ulps of the leaf's largest update (the rounding of the inputs,
# the params and the gradients, and of the result: each up to half an ulp) are noise, and
# count as equal in `AccuracyResult.ratio`. (At one ulp, the order XLA happened to contract a
# product in decided a 1.25x "ratio" between 1.4 and 1.15 ulps.)
RATIO_FLOOR = 2.0**-22

# A leaf's scale at step t is its largest exact update over steps t - WINDOW .. t + WINDOW.
# At a step where a leaf's exact update nearly cancels (a momentum of one element crossing
# zero, 2 m_t - m_{t-1} in optimistic Adam) an error relative to that step alone reads the
# cancellation, which both libraries suffer by chance (the same error, divided by a value that
# happens to be near 0), and one such step decided the worst of 600. Relative to the leaf's
# scale over five steps, a cancelling step reads at its neighbours' scale; a systematic loss
# (a scalar formed in float32) is still there at every step. ``window=0`` is the strict measure.
WINDOW = 2


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """The worst float32 error of one transformation, and where it occurred.

    Attributes:
        error: the worst ``max |u32 - u64|`` of a leaf at a step, relative to the leaf's
            largest exact update within ``window`` steps, over seeds, steps and leaves
            (see `check_accuracy`).
        step: the 1-based step where it occurred.
        path: the key path of the leaf (``"['w']"``, ``"['layers'][1]"``).
        seed: the seed of the gradient sequence.
        steps: the number of steps each run took.
        baseline: the baseline transformation's result, measured the same way, or None.
        narrow_state: the non-scalar state leaves the float64 run keeps in a narrower
            dtype (an option of the transformation: they round alike in both runs), as
            ``"state.acc_grads['w']: float32"``; empty for a float64 yardstick.
    """

    error: float
    step: int
    path: str
    seed: int
    steps: int
    baseline: Optional["AccuracyResult"] = None
    narrow_state: tuple[str, ...] = ()

    @property
    def ratio(self) -> Optional[float]:
        """``max(error, f) / max(baseline.error, f)`` with ``f = RATIO_FLOOR = 2**-22``; None without a baseline.

        Below ``f`` (two float32 ulps relative to the leaf's largest update: the
        rounding of the inputs and of the result) two errors are both rounding noise.
        """
        if self.baseline is None:
            return None
        return max(self.error, RATIO_FLOOR) / max(self.baseline.error, RATIO_FLOOR)

    def where(self) -> str:
        return f"step {self.step} of {self.steps}, leaf {self.path or '(root)'}, seed {self.seed}"

    def __str__(self) -> str:
        text = f"float32 error {self.error:.3g} at {self.where()}"
        if self.narrow_state:
            text += f" (the float64 run keeps {', '.join(self.narrow_state)})"
        if self.baseline is not None:
            text += f"; baseline {self.baseline.error:.3g} at {self.baseline.where()}; ratio {self.ratio:.3g}"
        return text


def _x64() -> Any:
    """A context manager in which float64 arrays are float64."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64  # noqa: PLC0415 - older jax

    return enable_x64()


def _default_params(rng: np.random.Generator) -> Any:
    """A nested tree: a matrix, a vector and a scalar, as float64 NumPy arrays."""
    return {"w": rng.standard_normal((4, 5)), "layers": [rng.standard_normal((5,)), np.float64(rng.standard_normal())]}


def _is_none(x: Any) -> bool:
    return x is None


def _to_numpy(tree: Any) -> Any:
    """Array leaves as NumPy arrays (their own dtype); other leaves (Python numbers) as they are."""
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x) if isinstance(x, (jax.Array, np.ndarray, np.generic)) else x, tree
    )


def _cast(tree: Any, dtype: Any) -> Any:
    """Floating array leaves as jax arrays of `dtype`; other leaves as they are."""

    def cast(x):
        if isinstance(x, (jax.Array, np.ndarray, np.generic)) and np.issubdtype(np.asarray(x).dtype, np.floating):
            return jnp.asarray(np.asarray(x).astype(dtype))
        return x

    return jax.tree_util.tree_map(cast, tree)


def _float_leaves(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [
        (jax.tree_util.keystr(p), x)
        for p, x in flat
        if hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.floating)
    ]


def _check_float64(name: str, state: Any, updates: Any) -> tuple[str, ...]:
    """Raises RuntimeError unless the float64 run computes in float64; returns the narrower state leaves.

    The updates must be float64. A non-scalar state leaf kept in a narrower dtype by
    an option of the transformation (MultiSteps' float32 accumulator, ``mu_dtype``)
    rounds in both runs alike; its path is returned, so the result can say so.
    Scalars may be float32 by the dtype policy (injected hyperparameters).
    """
    if jnp.zeros((), jnp.float64).dtype != np.float64:
        raise RuntimeError("check_accuracy: jax does not give float64 arrays under enable_x64")
    for path, x in _float_leaves(updates):
        if x.dtype != np.float64:
            raise RuntimeError(f"check_accuracy: the float64 run of {name} returned updates{path} as {x.dtype}")
    return tuple(f"state{path}: {x.dtype}" for path, x in _float_leaves(state) if np.ndim(x) > 0 and x.dtype != np.float64)


def _leaf_parts(u32: np.ndarray, u64: np.ndarray) -> tuple[float, float]:
    """``(max |u32 - u64|, max |u64|)`` over one leaf's finite elements; ``(inf, 0)`` when the non-finite ones differ.

    Non-finite values count as an infinite difference unless both runs have the same
    non-finite value at the same place. An empty leaf gives ``(0, 0)``.
    """
    a = np.asarray(u32, np.float64).reshape(-1)
    b = np.asarray(u64, np.float64).reshape(-1)
    if a.size == 0:
        return 0.0, 0.0
    finite = np.isfinite(b)
    if not np.array_equal(np.isfinite(a), finite) or not np.array_equal(a[~finite], b[~finite], equal_nan=True):
        return math.inf, 0.0
    a, b = a[finite], b[finite]
    if a.size == 0:
        return 0.0, 0.0
    return float(np.max(np.abs(a - b))), float(np.max(np.abs(b)))


def _errors(diff: np.ndarray, scale: np.ndarray, window: int) -> np.ndarray:
    """``diff[t, l] / max(scale[t - window : t + window + 1, l])``, 0/0 := 0 and x/0 := inf (x > 0)."""
    wide = scale.copy()
    for shift in range(1, window + 1):
        wide[shift:] = np.maximum(wide[shift:], scale[:-shift])
        wide[:-shift] = np.maximum(wide[:-shift], scale[shift:])
    with np.errstate(divide="ignore", invalid="ignore"):
        err = diff / wide
    err[(diff == 0.0) & (wide == 0.0)] = 0.0
    return err


def _measure(
    tx: Any,
    params: Any,
    steps: int,
    seed: int,
    extra_args_fn: Optional[Callable[[int, Any, Any], dict]],
    name: str,
) -> "_Runs":
    """One seed: the float64 run (which fixes the params trajectory), then the float32 run on the same inputs."""
    rng = np.random.default_rng(seed)
    p = _cast(_default_params(rng) if params is None else _to_numpy(params), np.float64)
    p = jax.tree_util.tree_map(np.asarray, p)
    grads_seq = [jax.tree_util.tree_map(lambda x: rng.standard_normal(np.shape(x)), p) for _ in range(steps)]

    # The float64 run. Its params follow its own updates (a training loop); the float32
    # run then sees the same params and gradients, rounded to float32, at every step.
    params_seq, extra_seq, u64_seq = [], [], []
    with _x64():
        update = jax.jit(tx.update)
        state = tx.init(_cast(p, np.float64))
        for k in range(steps):
            params64, grads64 = _cast(p, np.float64), _cast(grads_seq[k], np.float64)
            extra = {} if extra_args_fn is None else _to_numpy(dict(extra_args_fn(k + 1, params64, grads64)))
            u, state = update(grads64, state, params64, **_cast(extra, np.float64))
            if k == 0:
                narrow = _check_float64(name, state, u)
            u = _to_numpy(u)
            params_seq.append(p)
            extra_seq.append(extra)
            u64_seq.append(u)
            p = jax.tree_util.tree_map(lambda x, d: x if d is None else x + d, p, u, is_leaf=_is_none)

    update = jax.jit(tx.update)
    state = tx.init(_cast(params_seq[0], np.float32))
    diff, scale, paths = [], [], []
    for k in range(steps):
        u, state = update(
            _cast(grads_seq[k], np.float32), state, _cast(params_seq[k], np.float32),
            **_cast(extra_seq[k], np.float32),
        )
        flat64, _ = jax.tree_util.tree_flatten_with_path(u64_seq[k])
        flat32 = jax.tree_util.tree_leaves(u)
        if len(flat32) != len(flat64):
            raise RuntimeError(
                f"check_accuracy: {name}'s float32 updates have {len(flat32)} leaves, its float64 ones {len(flat64)}"
            )
        parts = [_leaf_parts(np.asarray(a), b) for (_, b), a in zip(flat64, flat32)]
        diff.append([d for d, _ in parts])
        scale.append([m for _, m in parts])
        paths = [jax.tree_util.keystr(path) for path, _ in flat64]
    return _Runs(np.array(diff).reshape(steps, len(paths)), np.array(scale).reshape(steps, len(paths)), paths, seed,
                 narrow)


@dataclasses.dataclass(frozen=True)
class _Runs:
    """One seed's per-step, per-leaf ``max|u32 - u64|`` (diff) and ``max|u64|`` (scale), shape (steps, leaves)."""

    diff: np.ndarray
    scale: np.ndarray
    paths: list
    seed: int
    narrow: tuple

    def worst(self, window: int) -> AccuracyResult:
        steps = self.diff.shape[0]
        if not self.paths:
            return AccuracyResult(0.0, 1, "", self.seed, steps, narrow_state=self.narrow)
        err = _errors(self.diff, self.scale, window)
        nan = np.isnan(err)
        t, leaf = np.unravel_index(np.argmax(nan) if nan.any() else np.argmax(err), err.shape)
        return AccuracyResult(float(err[t, leaf]), int(t) + 1, self.paths[leaf], self.seed, steps,
                              narrow_state=self.narrow)


def _runs(tx: Any, params: Any, steps: int, seeds: Sequence[int], extra_args_fn: Any, name: str) -> list:
    """`_Runs` for every seed."""
    return [_measure(tx, params, steps, seed, extra_args_fn, name) for seed in seeds]


def _worst(runs: Sequence[_Runs], window: int) -> AccuracyResult:
    """The worst `AccuracyResult` over the seeds' runs (NaN counts as worst)."""
    results = [r.worst(window) for r in runs]
    return max(results, key=lambda r: math.inf if math.isnan(r.error) else r.error)


def check_accuracy(
    tx: Any,
    params: Any = None,
    *,
    steps: int = 30,
    seeds: Sequence[int] = (0, 1, 2),
    extra_args_fn: Optional[Callable[[int, Any, Any], dict]] = None,
    budget: Optional[float] = None,
    baseline: Any = None,
    max_ratio: Optional[float] = None,
    window: int = WINDOW,
) -> AccuracyResult:
    r"""Measures how far a transformation's float32 updates are from its float64 ones.

    The transformation (built once, so hyperparameters given as Python numbers stay
    Python numbers and each precision forms its own scalars from them) runs twice
    with its own state each time: in float64 (under ``jax.enable_x64``), then in
    float32. Params and gradients are drawn as float64 NumPy arrays from
    ``numpy.random.default_rng(seed)`` (default params: ``{'w': (4, 5), 'layers':
    [(5,), ()]}``; gradients: standard normals, one tree per step) and cast to each
    run's dtype. The float64 run's params follow its own updates, and the float32
    run gets the same params at every step, rounded to float32, so both runs see the
    same inputs up to one rounding. Each run's ``update`` is jitted once.

    The error of leaf :math:`\ell` at step :math:`t` is

    .. math::
        e_{t,\ell} = \frac{\max_i |u^{32}_{t,\ell,i} - u^{64}_{t,\ell,i}|}
                          {\max_{|s - t| \le w} \max_i |u^{64}_{s,\ell,i}|}

    with :math:`w` = `window`: an error relative to the leaf's scale, its largest exact
    update at that step and the :math:`w` steps on either side. So neither an element
    whose exact update is near 0 nor a step where a small leaf's exact update nearly
    cancels (a one-element momentum crossing zero: the same rounding divided by a value
    that happens to be near 0) dominates, while a systematic loss (a scalar formed in
    float32) shows at every step; ``window=0`` is the strict per-step measure. A leaf
    whose float64 updates are all zeros in the window has error 0 when the float32 one
    is all zeros too, and inf otherwise; a non-finite value in either run is inf unless
    both have it at the same place. The result is the worst :math:`e_{t,\ell}` over all
    steps, leaves and seeds. Rounding the inputs and the output alone gives a few times
    :math:`2^{-24} \approx 6\times10^{-8}`.

    Args:
        tx: a `GradientTransformation` (anything with ``init`` and ``update``).
        params: a pytree of float arrays (cast to float64 first); default: the
            nested tree above, drawn from the seed.
        steps: number of steps per run (>= 1).
        seeds: the gradient sequences (one per seed); the worst counts.
        extra_args_fn: ``(step, params, grads) -> dict`` of extra keyword arguments
            for ``update`` (1-based step). It is called once per step with the
            float64 run's params and gradients (under ``enable_x64``); floating
            arrays in what it returns are cast to each run's dtype.
        budget: when given, the largest error allowed.
        baseline: another transformation (e.g. optax's), measured the same way;
            the result then holds its error and the ratio (errors below
            ``RATIO_FLOOR = 2**-22`` count as equal, see `AccuracyResult.ratio`).
        max_ratio: with `baseline`, the largest ``error / baseline error`` allowed.
        window: the steps on either side of a step whose exact updates set a leaf's
            scale (default ``WINDOW = 2``; 0: that step's alone).

    Returns:
        An `AccuracyResult`: ``error``, ``step``, ``path``, ``seed``, ``steps``,
        ``baseline`` (an `AccuracyResult` or None) and ``ratio``.

    Raises:
        AssertionError: the error exceeds `budget`, or the ratio exceeds `max_ratio`;
            the message gives the error, the bound, the step, the key path and the seed.
        ValueError: ``steps < 1``, no seeds, or `max_ratio` without `baseline`.
        RuntimeError: the float64 run does not compute in float64 (its updates are
            not float64).

    Examples:
        >>> import gradxform as gx
        >>> result = gx.testing.check_accuracy(gx.adam(1e-3), steps=5, seeds=(0,), budget=1e-5)
        >>> result.error < 1e-5, result.step <= 5
        (True, True)
    """
    if steps < 1:
        raise ValueError(f"check_accuracy: steps must be >= 1, got {steps}")
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(f"check_accuracy: window must be an int >= 0, got {window!r}")
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("check_accuracy: seeds is empty")
    if max_ratio is not None and baseline is None:
        raise ValueError("check_accuracy: max_ratio needs a baseline")
    ours = _worst(_runs(tx, params, steps, seeds, extra_args_fn, "the transformation"), window)
    if baseline is not None:
        theirs = _worst(_runs(baseline, params, steps, seeds, extra_args_fn, "the baseline"), window)
        ours = dataclasses.replace(ours, baseline=theirs)
    problems = []
    if budget is not None and not ours.error <= budget:
        problems.append(
            f"float32 error {ours.error:.3g} exceeds the budget {budget:.3g}\n"
            f"  at {ours.where()}\n"
            f"  error = max|u32 - u64| / max|u64| over the leaf (its largest within {window} steps), "
            f"u64 the same transformation in float64"
        )
    if max_ratio is not None and not ours.ratio <= max_ratio:
        problems.append(
            f"float32 error {ours.error:.3g} is {ours.ratio:.3g}x the baseline's {ours.baseline.error:.3g}, "
            f"above max_ratio {max_ratio:.3g}\n"
            f"  ours at {ours.where()}\n  baseline at {ours.baseline.where()}"
        )
    if problems:
        raise AssertionError("check_accuracy: " + "\n".join(problems))
    return ours
