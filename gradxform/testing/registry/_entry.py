"""`Entry`: one registered configuration of a transformation, and `case` to write one."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional, Union

from gradxform import _hyper


class _ByName:
    def __repr__(self) -> str:
        return "BY_NAME"


BY_NAME = _ByName()  # the NumPy reference / optax function with the factory's own name


@dataclasses.dataclass(frozen=True)
class Entry:
    """A transformation as the registry-driven tests see it.

    Attributes:
        name: the test id (the factory's name, or the factory's name and a variant).
        factory: the public factory; its declared hyperparameters give the invalid cases.
        kwargs: the arguments it is built with.
        reference: ``() -> `` the NumPy reference object, or None (random or
            line-search rules, checked by their own tests).
        extra_args_fn: ``(step, params, grads) -> dict`` of extra keyword arguments
            for update (``hessian_diag=``, ``value=``, ...).
        optax_name, optax_kwargs: the optax function with the same signature and
            numerics (by default the same name and arguments; a dotted name such as
            ``"contrib.muon"`` for a sub-module), or None.
        optax_extra_args: optax's update takes the same extra keyword arguments
            (``value=`` for optax.contrib's Momo), so the parity test passes them on.
        needs_params: the update reads the params.
        random: the output is random (compare distributions, not values).
        slow: compiles for long; the generic-law run skips it unless --runslow.
        init_reads_params: ``init`` keeps the initial params by design (DoG, DoWG,
            COCOB, Prodigy, schedule-free, Mechanic, MADGRAD: API.md waives the
            ``init_value_independent`` law for these; D-Adaptation's init reads only
            shapes, so the law is checked for it).
        accuracy_budget: the largest float32 error `gradxform.testing.check_accuracy`
            may measure in tests/test_accuracy.py (about twice the measured one), or
            None for that test's default.
    """

    name: str
    factory: Callable[..., Any]
    kwargs: dict
    reference: Optional[Callable[[], Any]] = None
    extra_args_fn: Optional[Callable[[int, Any, Any], dict]] = None
    optax_name: Optional[str] = None
    optax_kwargs: Union[dict, Callable[[Any], dict], None] = None
    optax_extra_args: bool = False
    needs_params: bool = False
    random: bool = False
    slow: bool = False
    init_reads_params: bool = False
    accuracy_budget: Optional[float] = None

    def build(self, **overrides: Any) -> Any:
        return self.factory(**{**self.kwargs, **overrides})

    def optax_factory(self, optax: Any) -> Callable[..., Any]:
        """optax's counterpart (`optax_name` looked up in `optax`, dots as sub-modules)."""
        if self.optax_name is None:
            raise ValueError(f"{self.name} has no optax counterpart")
        found = optax
        for part in self.optax_name.split("."):
            found = getattr(found, part)
        return found

    def build_optax(self, optax: Any) -> Any:
        """optax's counterpart built with `optax_arguments`."""
        return self.optax_factory(optax)(**self.optax_arguments(optax))

    def optax_arguments(self, optax: Any) -> dict:
        """The keyword arguments of optax's counterpart: `optax_kwargs` (a dict, or
        ``optax -> dict`` where they hold optax objects, so that this library never
        imports optax), or else `kwargs`."""
        if callable(self.optax_kwargs):
            return self.optax_kwargs(optax)
        return self.optax_kwargs or self.kwargs

    def invalid_cases(self) -> list[tuple[dict, str]]:
        """``(override, argument)`` pairs that must raise ``ValueError`` naming the argument.

        Derived from the factory's declaration (`gradxform._hyper.declare`): a value
        just outside each finite bound of each validated argument, and NaN.
        """
        return _hyper.invalid_cases(self.factory)

    def __repr__(self) -> str:  # shown in pytest ids
        return self.name


def _reference_by_name(factory_name: str, kwargs: dict) -> Callable[[], Any]:
    def make():
        from gradxform.testing import reference  # noqa: PLC0415 - NumPy references load on demand

        return getattr(reference, factory_name)(**kwargs)

    return make


def _reference_from(fn: Callable[[Any], Any]) -> Callable[[], Any]:
    def make():
        from gradxform.testing import reference  # noqa: PLC0415

        return fn(reference)

    return make


def case(
    factory: Callable[..., Any],
    kwargs: Optional[dict] = None,
    variant: str = "",
    *,
    reference: Union[_ByName, None, Callable[[Any], Any]] = BY_NAME,
    optax: Union[bool, str] = True,
    optax_kwargs: Union[dict, Callable[[Any], dict], None] = None,
    name: Optional[str] = None,
    **fields: Any,
) -> Entry:
    """An `Entry` for ``factory(**kwargs)``, named ``factory.__name__`` (+ ``_variant``).

    `reference` is found by the factory's name in `gradxform.testing.reference` and
    called with the same `kwargs` (`BY_NAME`), or given as ``lambda ref: ...`` over
    that module, or None. `optax`: True for optax's function of the same name, a
    name, or False. `name` overrides the entry's name. `fields`: the other `Entry` fields.
    """
    kwargs = dict(kwargs or {})
    base = getattr(factory, "__name__", type(factory).__name__)
    if reference is BY_NAME:
        ref = _reference_by_name(base, kwargs)
    elif reference is None:
        ref = None
    else:
        ref = _reference_from(reference)
    optax_name = base if optax is True else (optax or None)
    return Entry(
        name=name or (f"{base}_{variant}" if variant else base),
        factory=factory,
        kwargs=kwargs,
        reference=ref,
        optax_name=optax_name,
        optax_kwargs=optax_kwargs,
        **fields,
    )
