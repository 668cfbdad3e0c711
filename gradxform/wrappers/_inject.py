"""`inject_hyperparams`: hyperparameters as float32 state, changeable without recompiling."""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation
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

        # Validate once, now, with concrete values (schedules at step 0).
        build(hyperparams_at(jnp.zeros([], jnp.int32), numeric))

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

    return wrapped


def set_hyperparams(state: InjectHyperparamsState, **values: Any) -> InjectHyperparamsState:
    """A copy of `state` with the given hyperparameters replaced, in their stored dtypes.

    Converting here (rather than assigning a Python float, which JAX passes as a
    weakly typed scalar and so traces anew) keeps the jitted step from recompiling.

    Raises:
        KeyError: a name that is not one of ``state.hyperparams``.
    """
    _checks.check_state_type(state, InjectHyperparamsState, "set_hyperparams")
    hps = dict(state.hyperparams)
    for name, value in values.items():
        if name not in hps:
            raise KeyError(f"set_hyperparams: no hyperparameter {name!r}; the state has {sorted(hps)!r}.")
        hps[name] = jnp.asarray(value).astype(jnp.asarray(hps[name]).dtype)
    return state._replace(hyperparams=hps)
