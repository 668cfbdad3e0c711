"""`check_transformation_property`: the laws on examples hypothesis draws, and shrinks.

The only module of the toolkit besides `strategies` that imports hypothesis
(`gradxform.testing.strategies`); nothing imports this one but
`gradxform.testing`'s lazy attribute lookup.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import hypothesis
from hypothesis import HealthCheck
from hypothesis import strategies as st

from gradxform.testing import strategies as gst
from gradxform.testing._examples import Example
from gradxform.testing._runner import LawViolation, check_transformation

__all__ = ["check_transformation_property"]


def check_transformation_property(
    tx_factory: Callable[..., Any],
    *,
    hyperparameters: Any = None,
    params: Any = None,
    steps: int = 3,
    max_examples: Optional[int] = None,
    settings: Any = None,
    **check_kwargs: Any,
) -> None:
    """Hypothesis-driven `check_transformation`: draws examples, shrinks a failure.

    Draws the params (default ``strategies.pytrees(max_leaves=4)``), a gradient
    sequence for them (`strategies.gradient_sequences`, with zeros, huge and tiny
    entries) and, if `hyperparameters` is given, keyword arguments for
    `tx_factory`; builds ``tx_factory(**kwargs)`` and checks the laws. A failure
    is shrunk to a minimal example; the raised `LawViolation` reports it, and
    hypothesis adds the drawn values as notes ("Draw 1 (params): ...").

    Args:
        tx_factory: ``(**hyperparameters) -> transformation``, or a transformation.
        hyperparameters: a name in ``strategies.HYPERPARAMETERS`` (``'adam'``), a
            dict of argument -> strategy, or a strategy of kwargs dicts.
        params: a strategy of params trees.
        steps: update steps per example.
        max_examples: overrides the active hypothesis profile's.
        settings: a ``hypothesis.settings`` to use as is.
        **check_kwargs: passed to `check_transformation` (``laws``, ``skip``,
            ``extra_args_fn``, ...); ``fail_fast`` defaults to True so shrinking
            is quick.

    Examples:
        >>> import gradxform as gx
        >>> gx.testing.check_transformation_property(
        ...     lambda decay, nesterov: gx.trace(decay, nesterov),
        ...     hyperparameters='trace', max_examples=2, laws=['updates_dtype', 'state_dtype'])
    """
    if hasattr(tx_factory, "init") and hasattr(tx_factory, "update"):
        tx_object = tx_factory
        tx_factory = lambda: tx_object  # noqa: E731
    if hyperparameters is None:
        hp = st.just({})
    elif isinstance(hyperparameters, str):
        hp = gst.hyperparameters(hyperparameters)
    elif isinstance(hyperparameters, dict):
        hp = st.fixed_dictionaries(hyperparameters)
    else:
        hp = hyperparameters
    params_strategy = params if params is not None else gst.pytrees(max_leaves=4)
    check_kwargs.setdefault("fail_fast", True)
    if "examples" in check_kwargs or "grads" in check_kwargs:
        raise ValueError(
            "check_transformation_property draws the examples: pass neither examples= nor grads="
        )

    def run(data):
        kwargs = data.draw(hp, label="hyperparameters")
        p = data.draw(params_strategy, label="params")
        g = data.draw(gst.gradient_sequences(p, steps), label="grads")
        tx = tx_factory(**kwargs)
        try:
            example = Example("drawn by hypothesis", p, tuple(g))
            check_transformation(tx, examples=[example], **check_kwargs)
        except LawViolation as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise LawViolation(
                err.violations,
                err.laws,
                header=f"check_transformation_property: law(s) {', '.join(err.laws)} broken"
                + (f" with hyperparameters {shown}" if kwargs else ""),
            ) from None

    if settings is None:
        extra = {"max_examples": max_examples} if max_examples is not None else {}
        # No "explain" phase: it reruns many examples (each compiles) to list covered lines.
        phases = [p for p in hypothesis.settings.default.phases if p != hypothesis.Phase.explain]
        settings = hypothesis.settings(
            deadline=None,
            phases=phases,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            **extra,
        )
    test = settings(hypothesis.given(data=st.data())(run))
    test()

