"""Hypothesis strategies of valid and invalid hyperparameters, derived from the declarations.

Each built-in factory declares its hyperparameters once, next to its code
(`gradxform._hyper.declare`); this module collects them (`HYPERPARAMETERS`,
`CONSTRAINTS`) and draws keyword arguments from them. Public through
`gradxform.testing.strategies`.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from hypothesis import strategies as st

from gradxform import _hyper
from gradxform._hyper import Hyper


def _declaring_factories() -> dict[str, Callable[..., Any]]:
    """Every public factory that declares its hyperparameters, by name (first public path wins)."""
    import gradxform as gx  # noqa: PLC0415 - strategies are loaded on demand, after gradxform

    found: dict[str, Callable[..., Any]] = {}
    for module in (gx, gx.transforms, gx.second_order, gx.wrappers, gx.training, gx.schedules, gx.nn,
                   gx.contrib):
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name, None)
            if callable(obj) and _hyper.declared(obj):
                found.setdefault(name, obj)
    return found


def _combined_repair(constraints: Sequence[_hyper.Constraint]) -> Callable[[dict], dict]:
    def repair(kw: dict) -> dict:
        for c in constraints:
            if all(a in kw for a in c.args):
                kw = c.repair(kw)
        return kw

    return repair


_FACTORIES = _declaring_factories()

# Derived from the declarations (`@gradxform._hyper.declare` next to each factory):
# transformation name -> {argument: Hyper}, and the constraints tying arguments together
# (``nesterov=True`` needs a momentum; ``max_step_size >= min_step_size``).
HYPERPARAMETERS: dict[str, dict[str, Hyper]] = {
    name: dict(factory.hyperparameters) for name, factory in sorted(_FACTORIES.items())
}
CONSTRAINTS: dict[str, Callable[[dict], dict]] = {
    name: _combined_repair(factory.constraints)
    for name, factory in sorted(_FACTORIES.items())
    if factory.constraints
}


def _f32_inward(lo: float, hi: float) -> tuple[float, float]:
    """The float32 numbers nearest to [lo, hi] from inside (hypothesis' width=32 needs them)."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    if float(hi32) > hi:
        hi32 = np.nextafter(hi32, np.float32(-np.inf))
    return float(lo32), float(hi32)


def _is_bound(x: float) -> bool:
    """A finite bound below float32's limit (one at the limit only says "finite in float32")."""
    return math.isfinite(x) and abs(x) < _hyper.F32_MAX


def _number(h: Hyper, edge_cases: bool) -> st.SearchStrategy:
    lo, hi, lo_in, hi_in = h.valid
    dlo, dhi = h.draw
    if edge_cases:
        # The whole valid range, boundaries included where valid; unbounded sides capped.
        # A bound at float32's limit (learning_rate: "any finite value") is no edge worth
        # drawing: such a side is capped at the typical range, or at 0 when that is
        # inside (a learning rate of 0, warm-up's start, is an edge; a negative one is
        # not drawn: draws stay in the typical sign).
        lo_, hi_ = (lo if _is_bound(lo) else dlo), (hi if _is_bound(hi) else dhi)
        if math.isfinite(lo) and not _is_bound(lo) and lo <= 0 <= dlo:
            lo_ = 0.0
        excl_lo = _is_bound(lo) and not lo_in
        excl_hi = _is_bound(hi) and not hi_in
    else:
        lo_, hi_, excl_lo, excl_hi = dlo, dhi, False, False
    if h.kind == "int":
        return st.integers(int(lo_) + excl_lo, int(hi_) - excl_hi)
    # float32-representable draws, so that a decay rate below 1 stays below 1 in float32.
    flo, fhi = _f32_inward(lo_, hi_)
    draws = st.floats(
        flo, fhi, width=32, allow_subnormal=False, exclude_min=excl_lo and flo == lo_,
        exclude_max=excl_hi and fhi == hi_,
    ).map(float)
    if edge_cases:
        # A side capped at float32's limit is sampled only where it was capped at 0 (exact in
        # float32); a typical-range cap there (0.1) need not be a float32 number.
        at_limit_lo, at_limit_hi = math.isfinite(lo) and not _is_bound(lo), math.isfinite(hi) and not _is_bound(hi)
        bounds = [
            b for b, ok in ((lo_, not excl_lo and (not at_limit_lo or lo_ == 0.0)), (hi_, not excl_hi and not at_limit_hi))
            if ok
        ]
        if bounds:
            draws = st.one_of(st.sampled_from(bounds), draws)
    return draws


def _draw(h: Hyper, edge_cases: bool) -> st.SearchStrategy:
    if h.kind == "bool":
        s: st.SearchStrategy = st.booleans()
    elif h.kind == "choice":
        s = st.sampled_from(h.draw)
    else:
        s = _number(h, edge_cases)
    return st.one_of(st.none(), s) if h.optional else s


def _row(name: str) -> dict[str, Hyper]:
    try:
        return HYPERPARAMETERS[name]
    except KeyError:
        raise KeyError(
            f"no hyperparameter table for {name!r}; known: {', '.join(sorted(HYPERPARAMETERS))}"
        ) from None


def hyperparameters(
    name: str, *, edge_cases: bool = False, fixed: Optional[Mapping[str, Any]] = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for the built-in transformation `name`, all valid.

    Draws every argument listed in ``HYPERPARAMETERS[name]`` from its ``draw``
    range (with `edge_cases`, from the whole valid range, boundaries included).
    `fixed` pins some arguments. ``CONSTRAINTS`` ties arguments together
    (``nesterov=True`` only with a momentum; ``max_step_size >= min_step_size``).

    Examples:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5)
        ... @given(hyperparameters('adam'))
        ... def check(kwargs):
        ...     assert sorted(kwargs) == ['b1', 'b2', 'eps', 'eps_root', 'learning_rate', 'nesterov']
        ...     assert 0 <= kwargs['b1'] < 1 and kwargs['eps'] >= 0
        >>> check()
    """
    row = _row(name)
    fixed = dict(fixed or {})
    strategies = {k: st.just(v) for k, v in fixed.items()}
    for arg, h in row.items():
        if arg not in strategies:
            strategies[arg] = _draw(h, edge_cases)
    drawn = st.fixed_dictionaries(strategies)
    if name in CONSTRAINTS:
        drawn = drawn.map(CONSTRAINTS[name])
    return drawn


def invalid_hyperparameters(
    name: str, *, only: Optional[Sequence[str]] = None
) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """``(argument, kwargs)`` where `argument` is outside its valid range and the rest valid.

    For testing that the validators raise ``ValueError`` naming the argument.
    Only numeric arguments with a finite bound are broken, and only those whose
    ``source`` does not say "not validated" (and, given `only`, named in it);
    ``None`` is never drawn.

    Examples:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5)
        ... @given(invalid_hyperparameters('adam', only=['b2']))
        ... def check(arg_and_kwargs):
        ...     arg, kwargs = arg_and_kwargs
        ...     assert arg == 'b2' and not 0 <= kwargs['b2'] < 1
        >>> check()
    """
    row = _row(name)
    breakable = []
    for arg, h in row.items():
        if h.kind not in ("float", "int") or not h.validated:
            continue
        if only is not None and arg not in only:
            continue
        lo, hi, lo_in, hi_in = h.valid
        outside = []
        if math.isfinite(lo) and not _is_bound(lo):
            # Beyond float32's range: infinities, NaN and float64 values that overflow float32.
            outside.append(st.sampled_from([-math.inf, math.nan, 2 * lo, -1e39]))
        elif math.isfinite(lo):
            below = st.floats(lo - 10.0, lo, exclude_max=lo_in, width=32, allow_subnormal=False)
            if h.kind == "int":
                below = st.integers(int(lo) - 10, int(lo) - (1 if lo_in else 0))
            outside.append(below)
        if math.isfinite(hi) and not _is_bound(hi):
            outside.append(st.sampled_from([math.inf, math.nan, 2 * hi, 1e39]))
        elif math.isfinite(hi):
            above = st.floats(hi, hi + 10.0, exclude_min=hi_in, width=32, allow_subnormal=False)
            if h.kind == "int":
                above = st.integers(int(hi) + (1 if hi_in else 0), int(hi) + 10)
            outside.append(above)
        if outside:
            breakable.append((arg, st.one_of(outside)))
    if not breakable:
        raise ValueError(f"{name!r} has no validated argument with a finite bound to break")

    def build(choice):
        arg, bad = choice
        valid = {k: _draw(h._replace(optional=False), False) for k, h in row.items() if k != arg}
        return st.tuples(st.just(arg), st.fixed_dictionaries(valid | {arg: bad}))

    return st.sampled_from(breakable).flatmap(build)
