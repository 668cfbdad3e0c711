"""Hyperparameter declarations: each argument's valid range, written once, next to its factory.

A factory declares its hyperparameters with `declare`::

    @declare(b1=DECAY, b2=DECAY, eps=EPS, eps_root=EPS_ROOT, nesterov=BOOL)
    def scale_by_adam(b1=0.9, b2=0.999, eps=1e-8, eps_root=0.0, ...): ...

and everything else is derived from that one declaration:

* the validator: calling the factory checks every declared argument and raises a
  ``ValueError`` naming the factory, the argument and its value (traced values and
  schedules are not checked; see `gradxform._checks`);
* the hypothesis strategies (`gradxform.testing.strategies.hyperparameters`), which
  draw valid keyword arguments from ``factory.hyperparameters``;
* the invalid cases of the tests (`invalid_values`): a value just outside each
  finite bound, and NaN.

A `Constraint` ties arguments together (``nesterov=True`` needs a ``momentum``): it
is checked by the validator and used by the strategies to repair a draw.
"""

from __future__ import annotations

import functools
import inspect
import math
from types import MappingProxyType
from typing import Any, Callable, Mapping, NamedTuple

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
    comes from (the API contract, or the algorithm's paper).
    """

    kind: str
    valid: tuple = ()
    draw: tuple = ()
    optional: bool = False
    source: str = "API.md"
    validated: bool = True

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


def _check_one(fn: str, name: str, value: Any, h: Hyper) -> None:
    if value is None and h.optional:
        return
    if not h.validated or h.kind == "bool":
        return
    if h.kind == "choice":
        if not callable(value) and value not in h.draw:
            raise ValueError(f"{fn}: `{name}` must be {h.describe()}; got {name}={value!r}.")
        return
    if h.kind == "int":
        _check_integral(fn, name, value)
    lo, hi, lo_in, hi_in = h.valid
    _checks.check_range(name, value, lo, hi, low_inclusive=lo_in, high_inclusive=hi_in, fn=fn)


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


def declare(*constraints: Constraint, **hyperparameters: Hyper) -> Callable[[Callable], Callable]:
    """Declares a factory's hyperparameters; calling the factory validates them.

    The decorated factory keeps its signature and docstring and gains
    ``factory.hyperparameters`` (argument -> `Hyper`, read-only) and
    ``factory.constraints``. Every declared argument must be a parameter of the
    factory.
    """

    def wrap(factory: Callable) -> Callable:
        signature = inspect.signature(factory)
        unknown = set(hyperparameters) - set(signature.parameters)
        if unknown:
            raise TypeError(f"declare: {factory.__name__} has no argument(s) {sorted(unknown)}")
        fn = factory.__name__

        @functools.wraps(factory)
        def validated(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = bound.arguments
            for name, h in hyperparameters.items():
                _check_one(fn, name, values[name], h)
            for c in constraints:
                shown = {k: values[k] for k in c.args}
                if all(_concrete(v) for v in shown.values()) and not c.holds(shown):
                    raise ValueError(f"{fn}: {c.message.format(**shown)}")
            return factory(*args, **kwargs)

        validated.hyperparameters = MappingProxyType(dict(hyperparameters))
        validated.constraints = tuple(constraints)
        return validated

    return wrap


def declared(factory: Any) -> Mapping[str, Hyper]:
    """The hyperparameters `factory` declares (empty for an undeclared callable)."""
    return getattr(factory, "hyperparameters", MappingProxyType({}))


def invalid_values(h: Hyper) -> list:
    """Values the validator of `h` must reject: just outside each finite bound, and NaN."""
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
    if h.kind == "int":
        inside = lo + 0.5 if math.isfinite(lo) else (hi - 0.5 if math.isfinite(hi) else 0.5)
        out += ([inside] if inside <= hi else []) + [True]  # not an integer; a bool is not a count
    return out


def invalid_cases(factory: Any) -> list[tuple[dict, str]]:
    """``(kwargs override, argument)`` pairs the factory must reject, naming the argument."""
    return [({name: bad}, name) for name, h in declared(factory).items() for bad in invalid_values(h)]


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
        return cls

    return wrap
