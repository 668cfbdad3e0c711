"""`inject_hyperparams`: hyperparameters as float32 state, changeable without recompiling."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, NamedTuple, Optional, Protocol, Union, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation, Schedule
from gradxform._combine import call_update


class InjectHyperparamsState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far (the schedules' step)
    hyperparams: dict  # name -> float32 array (int32 for integer hyperparameters)
    inner_state: Any  # the inner transformation's state


def _is_numeric(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float, np.number)):
        return True
    if isinstance(value, (jax.Array, np.ndarray)):
        return np.issubdtype(value.dtype, np.number) and not np.issubdtype(value.dtype, np.bool_)
    return False


def _as_hyperparam(value: Any, float_dtype: np.dtype) -> jax.Array:
    """Floating values (and schedule outputs) in `float_dtype`; integers as int32."""
    dtype = np.result_type(value) if not isinstance(value, jax.Array) else value.dtype
    if isinstance(value, float) or np.issubdtype(dtype, np.floating):
        return jnp.asarray(value).astype(float_dtype)
    if isinstance(value, int) or np.issubdtype(dtype, np.integer):
        return jnp.asarray(value).astype(jnp.int32)
    return jnp.asarray(value)


def inject_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: Union[str, Iterable[str]] = (),
    hyperparam_dtype: Optional[Any] = None,
) -> Callable[..., GradientTransformation]:
    r"""Makes the numeric hyperparameters of `inner_factory` part of the state.

    ``inject_hyperparams(factory)(**kwargs)`` builds a transformation whose state
    has ``hyperparams``, a dict of float32 scalars (one per numeric argument and
    per schedule). At each update it rebuilds ``factory(**hyperparams)`` inside the
    trace, with the hyperparameters as arrays, so

    * a value set between steps (``state.hyperparams['learning_rate'] =
      jnp.float32(1e-4)``, or `set_hyperparams`) is used at the next step
      without recompiling: the values are array inputs of the jitted step, not
      constants of its trace;
    * a schedule given for an argument is evaluated at each step,
      :math:`h_t = \text{schedule}(t)` with :math:`t` = ``state.count`` from 0, and
      its value is stored in ``hyperparams`` (setting it by hand has no effect);
    * the results are bit-identical to ``factory(**kwargs)``: gradxform's
      transformations cast every hyperparameter to float32 (``_tree.hp``) before
      use, so a Python float and the same float32 array give the same numbers.

    Note:
        optax stores the hyperparameters in the params' dtype, so with bfloat16
        params ``b2=0.999`` becomes ``1.0`` and Adam divides by
        :math:`1 - 1^t = 0`: NaN. Here they are float32 whatever the params
        (``hyperparam_dtype`` overrides it, e.g. float64 under x64). Integer
        arguments are stored as int32; list those the factory needs as Python
        ints (sizes, periods) in `static_args`, with booleans and non-numeric
        arguments, which are passed through unchanged.

    Args:
        inner_factory: a function returning a transformation (``gx.adam``, ...).
        static_args: names of arguments to pass through unchanged (a string or
            an iterable of strings); callables not listed are schedules.
        hyperparam_dtype: dtype of the floating hyperparameters (default float32).

    Returns:
        A function with the signature of `inner_factory` (schedules allowed for
        numeric arguments) returning a `GradientTransformation` with state
        `InjectHyperparamsState`.

    Raises:
        ValueError: `static_args` names an argument `inner_factory` does not take;
            when called, whatever `inner_factory` raises for impossible values
            (checked once at build time with the schedules' values at step 0).

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> opt = gx.inject_hyperparams(gx.sgd)(learning_rate=0.1)
        >>> state = opt.init(jnp.zeros(1))
        >>> state.hyperparams['learning_rate'] = jnp.float32(0.5)
        >>> jax.jit(opt.update)(jnp.ones(1), state)[0].tolist()
        [-0.5]

    References:
        optax.inject_hyperparams (the interface).
    """
    static_args = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    if not static_args.issubset(signature.parameters):
        raise ValueError(
            "inject_hyperparams: `static_args` must name parameters of the factory; got "
            f"{sorted(static_args)!r}, the factory takes {list(signature.parameters)!r}."
        )
    float_dtype = np.dtype(np.float32 if hyperparam_dtype is None else hyperparam_dtype)

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        schedules, numeric, other = {}, {}, {}
        for name, value in bound.arguments.items():
            if name in static_args or isinstance(value, bool) or value is None:
                other[name] = value
            elif callable(value) and not hasattr(value, "init"):
                schedules[name] = value
            elif _is_numeric(value):
                numeric[name] = value
            else:
                other[name] = value
        if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
            raise TypeError("inject_hyperparams: factories taking *args are not supported.")

        def hyperparams_at(count, stored):
            hps = {k: _as_hyperparam(v, float_dtype) for k, v in stored.items()}
            hps.update({k: _as_hyperparam(s(count), float_dtype) for k, s in schedules.items()})
            return hps

        def build(hps):
            return inner_factory(**other, **hps)

        # Validate once, now, with the values as given (so that an error shows them, not
        # their float32 rounding: 1e39 rather than inf) and the schedules at step 0.
        zero = jnp.zeros([], jnp.int32)
        inner_factory(**other, **numeric, **{k: _as_hyperparam(s(zero), float_dtype) for k, s in schedules.items()})

        def init_fn(params):
            count = jnp.zeros([], jnp.int32)
            hps = hyperparams_at(count, numeric)
            return InjectHyperparamsState(count=count, hyperparams=hps, inner_state=build(hps).init(params))

        def update_fn(updates, state, params=None, **extra_args):
            _checks.check_state_type(state, InjectHyperparamsState, f"inject_hyperparams({inner_factory.__name__})")
            stored = {k: v for k, v in state.hyperparams.items() if k not in schedules}
            hps = hyperparams_at(state.count, stored)
            updates, inner_state = call_update(build(hps), updates, state.inner_state, params, extra_args)
            return updates, InjectHyperparamsState(
                count=_tree.safe_increment(state.count), hyperparams=hps, inner_state=inner_state
            )

        return GradientTransformation(init_fn, update_fn)

    _takes_schedules_for_numbers(wrapped, static_args)
    return wrapped


def _takes_schedules_for_numbers(wrapped: Any, static_args: set) -> None:
    """The wrapper takes a schedule for every declared number argument it injects.

    ``functools.wraps`` copied the inner factory's declaration (`gradxform._hyper.declare`)
    onto the wrapper, whose own rule differs: a callable given for a number is a
    schedule, evaluated at each step, so the invalid cases derived from it must not
    list "a schedule where none is taken" for them.
    """
    hyperparameters = getattr(wrapped, "hyperparameters", None)
    if hyperparameters is None:
        return
    wrapped.takes_schedules = frozenset(getattr(wrapped, "takes_schedules", ())) | {
        name for name, h in hyperparameters.items() if h.kind in ("float", "int") and name not in static_args
    }


def set_hyperparams(state: Any, **values: Any) -> Any:
    """A copy of `state` with the given hyperparameters replaced, in their stored dtypes.

    Works on the states of `inject_hyperparams` and `inject_stateful_hyperparams`.

    Converting here (rather than assigning a Python float, which JAX passes as a
    weakly typed scalar and so traces anew) keeps the jitted step from recompiling.

    Raises:
        KeyError: a name that is not one of ``state.hyperparams``.
    """
    _checks.check_state_type(state, (InjectHyperparamsState, InjectStatefulHyperparamsState), "set_hyperparams")
    hps = dict(state.hyperparams)
    for name, value in values.items():
        if name not in hps:
            raise KeyError(f"set_hyperparams: no hyperparameter {name!r}; the state has {sorted(hps)!r}.")
        hps[name] = jnp.asarray(value).astype(jnp.asarray(hps[name]).dtype)
    return state._replace(hyperparams=hps)


# --------------------------------------------------------------------------- stateful schedules


@runtime_checkable
class StatefulSchedule(Protocol):
    """A schedule with a state: ``init() -> state``, ``update(state, **extra_args) -> state``
    and ``__call__(state, **extra_args) -> value``.

    The value used at a step is computed from the state *before* that step's
    ``update``, both with the step's extra arguments (a loss, a metric, ...), as in
    optax. Any object with these three methods is one.
    """

    def init(self) -> Any:
        """The schedule's initial state (a pytree of arrays)."""

    def update(self, state: Any, **extra_args: Any) -> Any:
        """The state after one step."""

    def __call__(self, state: Any, **extra_args: Any) -> Any:
        """The value at `state`."""


class WrappedScheduleState(NamedTuple):
    count: jax.Array  # shape (), int32: the step the wrapped schedule is evaluated at


class WrappedSchedule:
    """A plain schedule ``step -> value`` as a `StatefulSchedule` whose state is its step.

    Examples:
        >>> import gradxform as gx
        >>> s = gx.schedules.WrappedSchedule(lambda count: 0.5 * count.astype('float32'))
        >>> state = s.update(s.update(s.init()))
        >>> int(state.count), float(s(state))
        (2, 1.0)
    """

    def __init__(self, schedule_fn: Schedule):
        if not callable(schedule_fn):
            raise TypeError(f"WrappedSchedule: `schedule_fn` must be callable step -> value; got {schedule_fn!r}.")
        self.schedule_fn = schedule_fn

    def init(self) -> WrappedScheduleState:
        return WrappedScheduleState(count=jnp.zeros([], jnp.int32))

    def update(self, state: WrappedScheduleState, **extra_args: Any) -> WrappedScheduleState:
        del extra_args
        return WrappedScheduleState(count=_tree.safe_increment(state.count))

    def __call__(self, state: WrappedScheduleState, **extra_args: Any) -> Any:
        del extra_args
        return self.schedule_fn(state.count)


class InjectStatefulHyperparamsState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    hyperparams: dict  # name -> float32 array (int32 for integer hyperparameters)
    hyperparams_states: dict  # name -> the state of that argument's (stateful) schedule
    inner_state: Any  # the inner transformation's state


def _is_stateful(value: Any) -> bool:
    return callable(value) and callable(getattr(value, "init", None)) and callable(getattr(value, "update", None))


def inject_stateful_hyperparams(
    inner_factory: Callable[..., Any],
    static_args: Union[str, Iterable[str]] = (),
    hyperparam_dtype: Optional[Any] = None,
) -> Callable[..., GradientTransformation]:
    r"""`inject_hyperparams` that also takes stateful schedules (`StatefulSchedule`).

    Each argument given a schedule gets a state in ``hyperparams_states``: a plain
    schedule ``step -> value`` is wrapped in `WrappedSchedule` (its state is its
    step); a stateful one (an object with ``init``, ``update`` and ``__call__``)
    keeps its own. At each update, with the update's extra arguments :math:`a`,

    .. math::
        h_t = 	ext{schedule}(\sigma_t, a), \qquad \sigma_{t+1} = 	ext{schedule.update}(\sigma_t, a),

    and the inner transformation is rebuilt with :math:`h_t` (stored in
    ``hyperparams``); the other numeric arguments are stored in ``hyperparams``
    and may be changed between steps without recompiling, as in
    `inject_hyperparams`.

    Args:
        inner_factory: a function returning a transformation (``gx.adam``, ...).
        static_args: names of arguments to pass through unchanged (a string or
            an iterable of strings); other callables are schedules.
        hyperparam_dtype: dtype of the floating hyperparameters (default float32).

    Returns:
        A function with the signature of `inner_factory` (schedules allowed for
        numeric arguments) returning a `GradientTransformation` with state
        `InjectStatefulHyperparamsState` (``count, hyperparams,
        hyperparams_states, inner_state``: optax's layout).

    Raises:
        ValueError: `static_args` names an argument `inner_factory` does not take;
            when called, whatever `inner_factory` raises for impossible values
            (checked once at build time, each schedule at its initial state).

    Note:
        As in `inject_hyperparams`, floating hyperparameters are float32 whatever
        the params' dtype (optax stores them in the params' dtype, so bfloat16
        params turn ``b2=0.999`` into ``1.0``). optax 0.2.8 marks this wrapper
        deprecated in favour of `inject_hyperparams`; it is kept for programs that
        use it.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> class LossScaled:  # a stateful schedule: 0.1 / (1 + sum of the losses so far)
        ...     def init(self):
        ...         return jnp.zeros([], jnp.float32)
        ...     def update(self, total, loss=0.0, **extra_args):
        ...         return total + loss
        ...     def __call__(self, total, **extra_args):
        ...         return 0.1 / (1.0 + total)
        >>> opt = gx.inject_stateful_hyperparams(gx.sgd)(learning_rate=LossScaled())
        >>> state = opt.init(jnp.zeros(1))
        >>> u, state = opt.update(jnp.ones(1), state, loss=jnp.float32(1.0))
        >>> u, state = opt.update(jnp.ones(1), state, loss=jnp.float32(1.0))
        >>> u.tolist(), float(state.hyperparams['learning_rate'])
        ([-0.05000000074505806], 0.05000000074505806)

    References:
        optax.inject_stateful_hyperparams (the interface).
    """
    static_args = {static_args} if isinstance(static_args, str) else set(static_args)
    signature = inspect.signature(inner_factory)
    if not static_args.issubset(signature.parameters):
        raise ValueError(
            "inject_stateful_hyperparams: `static_args` must name parameters of the factory; got "
            f"{sorted(static_args)!r}, the factory takes {list(signature.parameters)!r}."
        )
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        raise TypeError("inject_stateful_hyperparams: factories taking *args are not supported.")
    float_dtype = np.dtype(np.float32 if hyperparam_dtype is None else hyperparam_dtype)
    where = f"inject_stateful_hyperparams({getattr(inner_factory, '__name__', 'factory')})"

    @functools.wraps(inner_factory)
    def wrapped(*args: Any, **kwargs: Any) -> GradientTransformation:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        schedules, numeric, other = {}, {}, {}
        for name, value in bound.arguments.items():
            if name in static_args or isinstance(value, bool) or value is None:
                other[name] = value
            elif _is_stateful(value):
                schedules[name] = value
            elif callable(value) and not hasattr(value, "init"):
                schedules[name] = WrappedSchedule(value)
            elif _is_numeric(value):
                numeric[name] = value
            else:
                other[name] = value

        def scheduled(states, extra_args):
            return {k: _as_hyperparam(s(states[k], **extra_args), float_dtype) for k, s in schedules.items()}

        def build(hps):
            return inner_factory(**other, **hps)

        # Validate once, now, with the values as given and each schedule at its initial state.
        inner_factory(**other, **numeric, **scheduled({k: s.init() for k, s in schedules.items()}, {}))

        def init_fn(params):
            states = {k: s.init() for k, s in schedules.items()}
            hps = {k: _as_hyperparam(v, float_dtype) for k, v in numeric.items()}
            hps.update(scheduled(states, {}))
            return InjectStatefulHyperparamsState(
                count=jnp.zeros([], jnp.int32), hyperparams=hps, hyperparams_states=states,
                inner_state=build(hps).init(params),
            )

        def update_fn(updates, state, params=None, **extra_args):
            _checks.check_state_type(state, InjectStatefulHyperparamsState, where)
            hps = {k: _as_hyperparam(v, float_dtype) for k, v in state.hyperparams.items() if k not in schedules}
            hps.update(scheduled(state.hyperparams_states, extra_args))
            states = {k: s.update(state.hyperparams_states[k], **extra_args) for k, s in schedules.items()}
            updates, inner_state = call_update(build(hps), updates, state.inner_state, params, extra_args)
            return updates, InjectStatefulHyperparamsState(
                count=_tree.safe_increment(state.count), hyperparams=hps, hyperparams_states=states,
                inner_state=inner_state,
            )

        return GradientTransformation(init_fn, update_fn)

    _takes_schedules_for_numbers(wrapped, static_args)
    return wrapped
