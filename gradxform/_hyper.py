"""Hyperparameter declarations: each argument's valid range, written once, next to its factory.

A factory declares its hyperparameters with `declare`::

    @declare(b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS_ROOT, nesterov=BOOL)
    def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, ...): ...

and everything else is derived from that one declaration:

* the validator: calling the factory checks every declared argument and raises a
  ``ValueError`` naming the factory, the argument and its value (traced values
  pass unchecked; see `gradxform._checks`). A number argument takes a Python
  int or float, a NumPy scalar or a NumPy/JAX array of a real dtype; not a bool,
  a str, a list or a complex; None only where declared `optional` or where None is
  the default; a schedule only where it `takes_schedule`; and its value must be in
  range in float64 and, for a float, not round onto an excluded bound in float32;
* the hypothesis strategies (`gradxform.testing.strategies.hyperparameters`), which
  draw valid keyword arguments from ``factory.hyperparameters``;
* the invalid cases of the tests (`invalid_values`, `invalid_cases`): a value just
  outside each finite bound, NaN, a value rounding onto an excluded bound in
  float32, a bool, a str, a list, None and a schedule where not taken.

A `Constraint` ties arguments together (``nesterov=True`` needs a ``momentum``): it
is checked by the validator and used by the strategies to repair a draw.
"""

from __future__ import annotations

import functools
import inspect
import math
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple, Optional

import jax
import numpy as np

from gradxform import _checks

_INF = math.inf
F32_MAX = 3.4028234663852886e38  # the largest finite float32: bounds "any value finite in float32"


class Hyper(NamedTuple):
    """One hyperparameter's declaration: its kind, valid range and typical range.

    `kind` is ``"float"``, ``"int"``, ``"bool"`` or ``"choice"``. For numbers,
    ``valid = (low, high, low_inclusive, high_inclusive)`` is what the validator
    accepts and ``draw = (low, high)`` the closed sub-range the strategies sample by
    default; for ``"choice"``, ``draw`` is the tuple of options. `optional` accepts
    ``None``. `validated=False` marks an argument that is declared for the
    strategies but never checked (a PRNG seed). `source` says where the range
    comes from (the API contract, or the algorithm's paper). `schedule` says
    whether a number argument also takes a schedule ``count -> value``; None
    derives it from the factory's signature (`takes_schedule`). `scalar` rejects arrays
    with axes: the rule uses the value as one number (a learning rate that enters scalar
    sums or state), so an array would change the state's shapes or fail deep inside.
    """

    kind: str
    valid: tuple = ()
    draw: tuple = ()
    optional: bool = False
    source: str = "API.md"
    validated: bool = True
    schedule: Optional[bool] = None
    scalar: bool = False

    def describe(self) -> str:
        """The valid range as an interval (``[0, 1)``) or a set of choices."""
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.draw)
        if self.kind == "bool":
            return "True or False"
        lo, hi, lo_in, hi_in = self.valid
        left = ("[" if lo_in else "(") + (f"{lo:g}" if math.isfinite(lo) else "-inf")
        right = (f"{hi:g}" if math.isfinite(hi) else "inf") + ("]" if hi_in else ")")
        return f"{left}, {right}"


# The recurring rows.
# learning_rate: any value finite in float32. A negative rate is gradient ascent (optax's
# idiom, ``rmsprop(-lr)``), 0 is allowed (warm-up); NaN and values that overflow float32
# (1e39, inf) are rejected. Where the rate is a step size (Rprop) or the start of a line
# search (L-BFGS), the factory declares its own row instead. Draws stay positive.
LR = Hyper("float", (-F32_MAX, F32_MAX, True, True), (1e-4, 1.0))
DECAY = Hyper("float", (0.0, 1.0, True, False), (0.0, 0.999))  # b1, b2, momentum, decay, rho in [0, 1)
EPS = Hyper("float", (0.0, _INF, True, True), (1e-8, 1e-3))  # eps >= 0
EPS_ROOT = Hyper("float", (0.0, _INF, True, True), (0.0, 1e-8))  # eps_root >= 0
NONNEG = Hyper("float", (0.0, _INF, True, True), (0.0, 1e-2))  # weight decay, l1, ... >= 0
POSITIVE = Hyper("float", (0.0, _INF, False, True), (1e-2, 10.0))  # max_norm, max_delta > 0
BOOL = Hyper("bool")
MOMENTUM = DECAY._replace(optional=True)  # None or [0, 1)


def number(
    low: float = -_INF,
    high: float = _INF,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    draw: tuple = (),
    kind: str = "float",
    optional: bool = False,
    source: str = "API.md",
) -> Hyper:
    """A numeric row; `draw` defaults to the valid range (capped at +-10 where unbounded)."""
    if not draw:
        draw = (low if math.isfinite(low) else -10.0, high if math.isfinite(high) else 10.0)
    return Hyper(kind, (low, high, low_inclusive, high_inclusive), draw, optional, source)


def integer(low: float = -_INF, high: float = _INF, *, draw: tuple = (), source: str = "API.md") -> Hyper:
    """An integer row with an inclusive range."""
    return number(low, high, draw=draw, kind="int", source=source)


def choice(*options: Any) -> Hyper:
    return Hyper("choice", (), tuple(options))


class Constraint(NamedTuple):
    """A rule tying arguments together: `holds(kwargs)` must be true.

    `message` is the error's text, formatted with the arguments' values
    (``"{momentum!r}"``); `repair(kwargs) -> kwargs` turns a draw of
    independently valid values into one that satisfies the rule (for strategies).
    """

    args: tuple
    holds: Callable[[dict], bool]
    message: str
    repair: Callable[[dict], dict]


NESTEROV_NEEDS_MOMENTUM = Constraint(
    ("momentum", "nesterov"),
    lambda kw: not (kw["nesterov"] and kw["momentum"] is None),
    "`nesterov=True` needs a `momentum`; got momentum=None.",
    lambda kw: kw | {"nesterov": bool(kw["nesterov"]) and kw["momentum"] is not None},
)


class HyperparameterTypeError(ValueError, TypeError):
    """A number argument given something else: a bool, a str, a list, None or a schedule
    where the argument takes neither. Both a ``ValueError`` (gradxform's error for an
    impossible hyperparameter) and a ``TypeError`` (Python's for a wrong type)."""


def _check_one(
    fn: str,
    name: str,
    value: Any,
    h: Hyper,
    *,
    accepts_none: Optional[bool] = None,
    takes_schedule: bool = False,
    schedulable: tuple = (),
) -> None:
    """Checks one argument against its declaration; raises ``ValueError`` naming it.

    For a number (``"float"``/``"int"``): None only where `accepts_none` (default:
    ``h.optional``); a callable only where `takes_schedule` (the message lists the
    function's `schedulable` arguments); no bool, str, list or other object;
    then the range, in float64 and, for ``"float"``, in float32 too (the value
    every transformation computes with: ``1 - 1e-10`` is 1.0 there). Traced
    values pass unchecked.
    """
    accepts_none = h.optional if accepts_none is None else accepts_none
    if value is None and accepts_none:
        return
    if not h.validated or h.kind == "bool":
        return
    if h.kind == "choice":
        if not callable(value) and value not in h.draw:
            raise ValueError(f"{fn}: `{name}` must be {h.describe()}; got {name}={value!r}.")
        return
    if isinstance(value, jax.core.Tracer):
        return  # traced (under jit, or injected): its value is not known here
    allowed = _allowed(h, accepts_none, takes_schedule)
    if value is None:
        hint = " (None would skip the scaling: the update would be +g, an ascent step)" if name == "learning_rate" else ""
        raise HyperparameterTypeError(f"{fn}: `{name}` must be {allowed}, not None{hint}; got {name}=None.")
    if callable(value) and not isinstance(value, (jax.Array, np.ndarray, np.generic)):
        if takes_schedule:
            return
        which = (
            f"{fn} takes schedules for " + ", ".join(f"`{a}`" for a in schedulable)
            if schedulable
            else f"{fn} takes no schedules"
        )
        raise HyperparameterTypeError(f"{fn}: `{name}` must be {allowed}, not a schedule ({which}); got {name}={value!r}.")
    if _is_bool(value):
        raise HyperparameterTypeError(f"{fn}: `{name}` must be {allowed}, not a bool; got {name}={value!r}.")
    if not _is_real_number(value):
        raise HyperparameterTypeError(
            f"{fn}: `{name}` must be {allowed}; got {name}={value!r} (a {type(value).__name__})."
        )
    if h.kind == "int":
        _check_integral(fn, name, value)
    lo, hi, lo_in, hi_in = h.valid
    if np.shape(value) != ():
        if h.scalar:
            raise ValueError(
                f"{fn}: `{name}` must be {allowed}, not an array of shape {tuple(np.shape(value))} "
                f"({fn} uses it as one number); got {name}={value!r}."
            )
        _check_array_range(fn, name, value, h)
        return
    _checks.check_range(name, value, lo, hi, low_inclusive=lo_in, high_inclusive=hi_in, fn=fn)
    if h.kind == "float":
        _check_float32(fn, name, value, h)


def _allowed(h: Hyper, accepts_none: bool, takes_schedule: bool) -> str:
    """What an argument takes, in words: ``a number or an array of numbers, a schedule or None``."""
    what = ["an integer" if h.kind == "int" else "a number"] + ([] if h.scalar else ["an array of numbers"])
    if takes_schedule:
        what.append("a schedule")
    if accepts_none:
        what.append("None")
    lo, hi = h.valid[:2]
    where = "finite in float32" if (lo, hi) == (-F32_MAX, F32_MAX) else f"in {h.describe()}"
    words = what[0] if len(what) == 1 else ", ".join(what[:-1]) + " or " + what[-1]
    return words + " " + where


def _is_bool(value: Any) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return True
    dtype = getattr(value, "dtype", None)
    return dtype is not None and np.dtype(dtype) == np.bool_


def _is_real_number(value: Any) -> bool:
    """A Python int/float, a NumPy real scalar, or a NumPy/JAX array of a real dtype."""
    if isinstance(value, (int, float)):
        return True
    if isinstance(value, (np.generic, np.ndarray, jax.Array)):
        dtype = np.dtype(value.dtype)
        return np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype.name == "bfloat16"
    return False


def _to_float32(value: Any) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.asarray(np.asarray(value, np.float64), np.float32)


def _check_float32(fn: str, name: str, value: Any, h: Hyper) -> None:
    """An exclusive bound also excludes the values that round onto it in float32 (``b2=1 - 1e-10``)."""
    lo, hi, lo_in, hi_in = h.valid
    rounded = float(_to_float32(value))
    bad = (not lo_in and rounded == float(_to_float32(lo))) or (not hi_in and rounded == float(_to_float32(hi)))
    if bad:
        shown = repr(value) if isinstance(value, (int, float)) else repr(float(np.asarray(value, np.float64)))
        raise ValueError(
            f"{fn}: `{name}` must be in {h.describe()}; got {name}={shown}, which rounds to {rounded!r} "
            "in float32 (the precision it is used in)."
        )


def _check_array_range(fn: str, name: str, value: Any, h: Hyper) -> None:
    """Every element of a concrete array in range (in float64, and not onto an excluded bound in float32)."""
    lo, hi, lo_in, hi_in = h.valid
    x = np.asarray(value, np.float64)
    x32 = _to_float32(x).astype(np.float64)
    lo32, hi32 = float(_to_float32(lo)), float(_to_float32(hi))
    ok = ~np.isnan(x) & ((x >= lo) if lo_in else (x > lo)) & ((x <= hi) if hi_in else (x < hi))
    if h.kind == "float":
        ok &= (x32 > lo32 if not lo_in else True) & (x32 < hi32 if not hi_in else True)
    if not ok.all():
        first = x.reshape(-1)[np.argmin(ok.reshape(-1))]
        raise ValueError(
            f"{fn}: every element of `{name}` must be in {h.describe()} (in float32 too); "
            f"got {name}={value!r}, with {first!r}."
        )


def _check_integral(fn: str, name: str, value: Any) -> None:
    """A count is an integer: ``MultiSteps(tx, 2.5)`` and ``patience=True`` are errors.

    An integral float (``1000.0``) and concrete integer arrays are accepted; traced
    values are not checked.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{fn}: `{name}` must be an integer, not a bool; got {name}={value!r}.")
    try:
        number = float(value)
    except Exception:  # noqa: BLE001 - traced, a schedule, or not a number (the range check reports it)
        return
    if math.isfinite(number) and number != int(number):
        raise ValueError(f"{fn}: `{name}` must be an integer; got {name}={value!r}.")


def _concrete(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


# optax's convention: learning rates and weight-decay strengths take schedules
# (``ScalarOrSchedule``) across the library; it decides for an argument whose annotation
# says nothing (none, or ``Any``).
SCHEDULE_BY_NAME = frozenset({"learning_rate", "weight_decay", "weight_decay_rate", "adam_weight_decay", "l1"})


def takes_schedule(h: Hyper, parameter: inspect.Parameter) -> bool:
    """Whether a declared number argument takes a schedule ``count -> value``.

    `Hyper.schedule` when set; else the annotation when it names one
    (``ScalarOrSchedule``, ``Callable``: yes) or a plain type (``float``, ``int``:
    no); else the argument's name (`SCHEDULE_BY_NAME`).
    """
    if h.kind not in ("float", "int"):
        return False
    if h.schedule is not None:
        return h.schedule
    annotation = parameter.annotation
    text = "" if annotation is inspect.Parameter.empty else str(annotation)
    if "Schedule" in text or "Callable" in text:
        return True
    if text and "Any" not in text:
        return False
    return parameter.name in SCHEDULE_BY_NAME


def declare(*constraints: Constraint, **hyperparameters: Hyper) -> Callable[[Callable], Callable]:
    """Declares a factory's hyperparameters; calling the factory validates them.

    The decorated factory keeps its signature and docstring and gains
    ``factory.hyperparameters`` (argument -> `Hyper`, read-only),
    ``factory.constraints``, ``factory.takes_schedules`` (the declared arguments
    that take a schedule, `takes_schedule`) and ``factory.accepts_none`` (those
    that take None: declared `optional`, or None by default). Every declared
    argument must be a parameter of the factory.
    """

    def wrap(factory: Callable) -> Callable:
        signature = inspect.signature(factory)
        unknown = set(hyperparameters) - set(signature.parameters)
        if unknown:
            raise TypeError(f"declare: {factory.__name__} has no argument(s) {sorted(unknown)}")
        fn = factory.__name__
        parameters = signature.parameters
        schedulable = tuple(n for n, h in hyperparameters.items() if takes_schedule(h, parameters[n]))
        nullable = tuple(n for n, h in hyperparameters.items() if h.optional or parameters[n].default is None)

        @functools.wraps(factory)
        def validated(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            for name, h in hyperparameters.items():
                _check_one(
                    fn, name, values[name], h, accepts_none=name in nullable,
                    takes_schedule=name in schedulable, schedulable=schedulable,
                )
            for c in constraints:
                shown = {k: values[k] for k in c.args}
                if all(_concrete(v) for v in shown.values()) and not c.holds(shown):
                    raise ValueError(f"{fn}: {c.message.format(**shown)}")
            return factory(*args, **kwargs)

        validated.hyperparameters = MappingProxyType(dict(hyperparameters))
        validated.constraints = tuple(constraints)
        validated.takes_schedules = frozenset(schedulable)
        validated.accepts_none = frozenset(nullable)
        return validated

    return wrap


def declared(factory: Any) -> Mapping[str, Hyper]:
    """The hyperparameters `factory` declares (empty for an undeclared callable)."""
    return getattr(factory, "hyperparameters", MappingProxyType({}))


def invalid_values(h: Hyper) -> list:
    """Values the validator of `h` must reject, whatever the factory.

    For a number: just outside each finite bound; NaN; a value that rounds onto
    an excluded bound in float32 (``1 - 1e-10`` for ``[0, 1)``); a bool; a
    valid value as a str and in a list (neither is a number).
    """
    if h.kind not in ("float", "int") or not h.validated:
        return []
    lo, hi, lo_in, hi_in = h.valid
    out: list = []
    # One below / above an inclusive bound; at float32's limit (where 1 is lost to
    # rounding) twice the bound, a value that is finite in float64 only.
    if math.isfinite(lo):
        out.append((lo - max(1.0, abs(lo)) if lo - 1 == lo else lo - 1) if lo_in else lo)
    if math.isfinite(hi):
        out.append((hi + max(1.0, abs(hi)) if hi + 1 == hi else hi + 1) if hi_in else hi)
    if h.kind == "float" and out:
        out.append(float("nan"))
    if h.kind == "float":
        out += _rounding_onto_excluded_bounds(h)
    if h.kind == "int":
        inside = lo + 0.5 if math.isfinite(lo) else (hi - 0.5 if math.isfinite(hi) else 0.5)
        out += [inside] if inside <= hi else []  # not an integer
    valid = _a_valid_value(h)
    out += [True, repr(valid), [valid]]  # a bool is not a number; nor is a str, nor a list
    return out


def _a_valid_value(h: Hyper) -> Any:
    lo, hi, lo_in, hi_in = h.valid
    value = h.draw[0] if h.draw else 0
    return int(value) if h.kind == "int" else float(value)


def _rounding_onto_excluded_bounds(h: Hyper) -> list:
    """For each finite excluded bound, a float64 value inside the range that is the bound in float32."""
    lo, hi, lo_in, hi_in = h.valid
    out = []
    for bound, inward, excluded in ((lo, math.inf, not lo_in), (hi, -math.inf, not hi_in)):
        if not excluded or not math.isfinite(bound):
            continue
        b32 = np.float32(bound)
        gap = float(abs(np.nextafter(b32, np.float32(inward)) - b32))  # float32's spacing there
        value = bound + math.copysign(gap / 4, inward)
        if value != bound and float(np.float32(value)) == float(b32):
            out.append(value)
    return out


def _constant_schedule(count: Any) -> float:
    """A schedule, given where the argument takes none (an invalid case)."""
    del count
    return 0.5


def invalid_cases(factory: Any) -> list[tuple[dict, str]]:
    """``(kwargs override, argument)`` pairs the factory must reject, naming the argument.

    `invalid_values` of each declared argument, and, for a number argument,
    None where it takes no None and a schedule where it takes none.
    """
    schedulable = getattr(factory, "takes_schedules", None)
    nullable = getattr(factory, "accepts_none", None)
    out = []
    for name, h in declared(factory).items():
        out += [({name: bad}, name) for bad in invalid_values(h)]
        if h.kind not in ("float", "int") or not h.validated:
            continue
        if nullable is not None and name not in nullable:
            out.append(({name: None}, name))
        if schedulable is not None and name not in schedulable:
            out.append(({name: _constant_schedule}, name))
    return out


# --------------------------------------------------------------------------- classes


def declare_class(*constraints: Constraint, **hyperparameters: Hyper) -> Callable[[type], type]:
    """`declare` for a class whose constructor is the factory (``MultiSteps(opt, every_k_schedule)``).

    The class stays a class (``isinstance`` keeps working): its ``__init__``
    validates the declared arguments as `declare` does, the errors naming the
    class, and the class gains ``hyperparameters`` and ``constraints``.
    """

    def wrap(cls: type) -> type:
        init = cls.__init__
        signature = inspect.signature(init)
        without_self = signature.replace(parameters=list(signature.parameters.values())[1:])

        def constructor(*args: Any, **kwargs: Any) -> None:
            """Stands for the constructor, without `self`, for `declare` to validate."""

        constructor.__name__ = constructor.__qualname__ = cls.__name__
        constructor.__signature__ = without_self  # type: ignore[attr-defined]
        check = declare(*constraints, **hyperparameters)(constructor)

        @functools.wraps(init)
        def validated_init(self: Any, *args: Any, **kwargs: Any) -> None:
            check(*args, **kwargs)
            init(self, *args, **kwargs)

        cls.__init__ = validated_init  # type: ignore[misc]
        cls.hyperparameters = check.hyperparameters  # type: ignore[attr-defined]
        cls.constraints = check.constraints  # type: ignore[attr-defined]
        cls.takes_schedules = check.takes_schedules  # type: ignore[attr-defined]
        cls.accepts_none = check.accepts_none  # type: ignore[attr-defined]
        return cls

    return wrap
