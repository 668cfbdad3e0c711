"""`check_transformation`: runs a transformation on the examples and checks the laws.

The runner computes each example's eager trajectory once (`_Run`), hands it to
each law's check (`gradxform.testing.laws`), and gathers what they find into one
`LawViolation` whose report names the law, the key path, the step, what was
expected and what was found, the example and a hint.
"""

from __future__ import annotations

import contextlib
import dataclasses
import traceback
from typing import Any, Callable, Optional, Sequence

import jax

from gradxform.testing._examples import Example, default_examples, make_grads
from gradxform.testing._law_checks import Broken
from gradxform.testing.laws import DEFAULT_LAWS, LAWS

__all__ = ["LawViolation", "Violation", "check_transformation"]


@dataclasses.dataclass(frozen=True)
class Violation:
    """One broken law: where, what was expected and what was found."""

    law: str
    example: Optional[Example]
    path: Optional[str] = None  # e.g. "updates['w']" or "state.mu['w']"
    step: Optional[int] = None
    expected: Optional[str] = None
    got: Optional[str] = None
    detail: Optional[str] = None

    def report(self) -> str:
        law = LAWS[self.law]
        lines = [f"law '{self.law}': {law.statement}"]
        if self.path is not None or self.step is not None:
            where = [self.path] if self.path is not None else []
            if self.step is not None:
                where.append(f"step {self.step}")
            lines.append(f"    where:    {' at '.join(where)}")
        if self.expected is not None:
            lines.append(f"    expected: {self.expected}")
        if self.got is not None:
            lines.append(f"    got:      {self.got}")
        if self.detail:
            detail = self.detail.strip().replace("\n", "\n              ")
            lines.append(f"    detail:   {detail}")
        if self.example is not None:
            lines.append(f"    example:  {self.example.describe()}")
        if law.hint is not None:
            lines.append(f"    hint:     {law.hint}")
        return "\n".join(lines)


class LawViolation(AssertionError):
    """Raised by `check_transformation`; ``violations`` lists each broken law."""

    def __init__(self, violations: Sequence[Violation], checked: Sequence[str], header: str = ""):
        self.violations = list(violations)
        self.laws = [v.law for v in self.violations]
        head = header or (
            f"check_transformation: {len(self.laws)} of {len(checked)} laws broken: "
            + ", ".join(self.laws)
        )
        super().__init__("\n\n".join([head] + [v.report() for v in self.violations]))


class _Run:
    """One example: the eager baseline trajectory and what the laws share (a `_law_checks.Run`)."""

    def __init__(self, tx, example: Example, extra_args_fn, tol, thorough: bool):
        self.tx, self.example, self.thorough = tx, example, thorough
        self.rtol, self.atol = tol
        self.params = example.params
        self.extra_args_fn = extra_args_fn
        self.extras: list = []
        self.states: list = []
        self.updates: list = []
        self.step: Optional[int] = None
        self.cache: dict = {}  # what several laws of this example share (one jitted update)

    def baseline(self) -> None:
        """The eager trajectory every law compares against."""
        fn = self.extra_args_fn
        self.extras = [dict(fn(k, self.params, g)) if fn else {} for k, g in enumerate(self.example.grads)]
        self.states.append(self.tx.init(self.params))
        for k, g in enumerate(self.example.grads):
            self.step = k
            u, s = self.update(g, self.states[-1], k)
            self.updates.append(u)
            self.states.append(s)
        self.step = None

    def update(self, g, s, k, tx=None, **more):
        return (tx or self.tx).update(g, s, self.params, **self.extras[k], **more)

    @property
    def jit_steps(self) -> range:
        return range(self.example.steps if self.thorough else min(2, self.example.steps))

    def broken(self, law: str, **fields: Any) -> Violation:
        return Violation(law=law, example=self.example, **fields)


def _eager():
    """Eager execution for the baseline and the eager laws: ``jax.disable_jit()``.

    Plain jax would compile each ``lax.cond`` / ``while_loop`` a wrapper calls eagerly,
    every call (their branches are new closures); with jit disabled they run as
    Python control flow, which is what "no jit" means and an order of magnitude faster.
    """
    return jax.disable_jit()


def _summarize_exception(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    where = ""
    if frames:
        f = frames[-1]
        where = f" (in {f.name}, {f.filename.rsplit('/', 1)[-1]}:{f.lineno})"
    text = str(err).strip().splitlines()
    first = " ".join(text[:3]) if text else ""
    if len(first) > 400:
        first = first[:400] + " ..."
    return f"raised {type(err).__name__}{where}: {first}"


def check_transformation(
    tx: Any,
    params: Any = None,
    *,
    steps: int = 3,
    extra_args_fn: Optional[Callable[[int, Any, Any], dict]] = None,
    thorough: bool = False,
    grads: Optional[Sequence[Any]] = None,
    laws: Optional[Sequence[str]] = None,
    skip: Sequence[str] = (),
    include: Sequence[str] = (),
    init_reads_params: bool = False,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    examples: Optional[Sequence[Example]] = None,
    fail_fast: bool = False,
    seed: int = 0,
) -> None:
    """Checks the generic laws (`gradxform.testing.laws`) on `tx`; returns None, or raises `LawViolation`.

    Args:
        tx: any object with ``init(params)`` and ``update(updates, state, params, **extra)``.
        params: one params tree to run on; None runs the default examples
            (`default_examples`).
        steps: update steps per example (``thorough`` raises it to at least 6).
        extra_args_fn: ``(step, params, grads) -> dict`` of extra keyword
            arguments for each update call (``value=``, ``hessian_diag=``, ...).
            Values that are not arrays are passed to jitted code as static
            arguments, so they must be hashable and the same object every step.
        thorough: more example trees (float16, bf16 params with f32 grads, a bare
            array, a larger tree), more steps with huge and tiny gradients, jit
            and lax.cond on every step, lax.cond / lax.scan on every example.
        grads: the gradient trees, one per step (then ``steps = len(grads)``);
            default `make_grads(params, steps)`.
        laws: the laws to check (default ``laws.DEFAULT_LAWS``); see ``laws.LAWS``.
        skip: laws to leave out.
        include: optional laws to add (``laws.OPTIONAL_LAWS``: ``'none_leaves'``,
            ``'masked'``, ``'ignores_extra_args'``).
        init_reads_params: ``init`` legitimately reads the params' values (a
            lookahead keeps a copy of them): skips ``init_value_independent``.
        rtol, atol: tolerance of the agreement laws (jit, cond, chain; scan allows
            ``4 * steps`` times more): ``|a - b| <= rtol * (|a| + max|a|) + atol``
            per leaf. Default rtol: 2e-6 for float32, 1.6e-2 for bfloat16, 2e-3
            for float16 (about 16 ulps of float32, 2 of bfloat16 and float16).
        examples: explicit `Example` objects to run instead of the default ones.
        fail_fast: stop at the first broken law (used while hypothesis shrinks).
        seed: seed of the example trees and gradients.

    Raises:
        LawViolation: an ``AssertionError`` listing every broken law with the
            example, the step and the key path where it broke.
        ValueError: an unknown law name.
    """
    chosen = list(DEFAULT_LAWS if laws is None else laws) + [n for n in include if n not in (laws or ())]
    unknown = [n for n in list(chosen) + list(skip) if n not in LAWS]
    if unknown:
        raise ValueError(f"check_transformation: unknown law(s) {unknown}; the laws are {list(LAWS)}")
    chosen = [n for n in LAWS if n in chosen and n not in skip and n != "runs"]  # canonical order
    if init_reads_params and "init_value_independent" in chosen:
        chosen.remove("init_value_independent")
    if thorough:
        steps = max(steps, 6)
    if examples is None:
        if params is None:
            if grads is not None:
                raise ValueError("check_transformation: grads= needs the params= they belong to")
            examples = default_examples(steps=steps, thorough=thorough, seed=seed)
        else:
            if grads is None:
                grads = make_grads(params, steps, seed=seed, thorough=thorough)
            examples = [Example("given params", params, tuple(grads))]
    violations: dict[str, Violation] = {}
    for i, example in enumerate(examples):
        run = _Run(tx, example, extra_args_fn, (rtol, atol), thorough)
        try:
            with _eager():
                run.baseline()
        except Exception as err:  # noqa: BLE001 - reported as the law 'runs'
            what = "init" if not run.states else "update"
            violations.setdefault(
                "runs",
                run.broken("runs", step=run.step, detail=f"{what} {_summarize_exception(err)}"),
            )
            if fail_fast:
                break
            continue
        for name in chosen:
            law = LAWS[name]
            limit = law.compiles if law.compiles is not None else law.examples
            if name in violations or (not thorough and limit is not None and i >= limit):
                continue
            try:
                with contextlib.nullcontext() if law.compiles is not None else _eager():
                    law.check(run)
            except Broken as broken:
                fields = dict(broken.fields)
                # A type mismatch under lax.cond / lax.scan that an eager law already
                # reported for this example adds nothing: leave it out of the report.
                if fields.pop("secondary", False) and any(LAWS[n].checks_types for n in violations):
                    continue
                violations[name] = run.broken(name, **fields)
            except Exception as err:  # noqa: BLE001 - a law that cannot even run is broken
                violations[name] = run.broken(name, detail=_summarize_exception(err))
            if fail_fast and violations:
                break
        if fail_fast and violations:
            break
    if violations:
        order = ["runs"] + chosen
        ordered = sorted(violations.values(), key=lambda v: order.index(v.law))
        raise LawViolation(ordered, ["runs"] * ("runs" in violations) + chosen)
    return None


# Tracebacks print the exception's public path, gradxform.testing.LawViolation. (Not done for
# functions: doctest would then no longer find their examples in this module.)
LawViolation.__module__ = "gradxform.testing"
