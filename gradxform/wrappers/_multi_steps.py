"""`MultiSteps`: gradient accumulation over k mini-steps before one inner step."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation
from gradxform._combine import check_transform
from gradxform._treeops import cond_inner_update


class MultiStepsState(NamedTuple):
    mini_step: jax.Array  # shape (), int32: mini-steps accumulated since the last inner step
    gradient_step: jax.Array  # shape (), int32: inner steps taken so far
    inner_opt_state: Any  # the inner transformation's state
    acc_grads: Any  # running mean (or sum) of the gradients, like params, in accumulator_dtype
    skip_state: Any = ()  # whatever should_skip_update_fn returns as its second output


def _no_skip(updates, gradient_step, params):
    del updates, gradient_step, params
    return jnp.asarray(False), ()


def skip_not_finite(updates: Any, gradient_step: jax.Array, params: Any) -> tuple[jax.Array, dict]:
    """A ``should_skip_update_fn`` rejecting mini-steps whose gradients hold a NaN or an infinity.

    Returns ``(should_skip, {'should_skip': ..., 'num_not_finite': int32 count})``.
    """
    del gradient_step, params
    counts = [jnp.sum(~jnp.isfinite(x)).astype(jnp.int32) for x in jax.tree_util.tree_leaves(updates)]
    num = sum(counts, jnp.zeros([], jnp.int32))
    return num > 0, {"should_skip": num > 0, "num_not_finite": num}


@_hyper.declare_class(every_k_schedule=_hyper.integer(1, draw=(1, 4), source="validator"))
class MultiSteps:
    r"""Accumulates gradients over ``k`` mini-steps, then takes one step of `opt` on their mean.

    .. math::
        a_j = a_{j-1} + \frac{g_j - a_{j-1}}{j} \quad (j = 1..k, \ a_0 = 0), \qquad
        u = \begin{cases} \text{opt.update}(a_k) & \text{at the } k\text{-th mini-step} \\
                          0 & \text{before} \end{cases}

    (Welford's running mean; with ``use_grad_mean=False``, :math:`a_j = a_{j-1} + g_j`.)
    ``k = every_k_schedule(gradient_step)`` may change between inner steps, which
    varies the effective batch size. The inner update runs only on the emitting
    mini-step (``lax.cond``), and the only parameter-sized buffer added to the
    inner state is the accumulator, stored in ``accumulator_dtype``.

    Args:
        opt: the inner transformation.
        every_k_schedule: an int ``k >= 1``, or a schedule ``gradient_step -> k``.
        use_grad_mean: average the accumulated gradients (True) or sum them.
        should_skip_update_fn: optional ``(updates, gradient_step, params) ->
            (bool scalar, skip_state)``; a skipped mini-step leaves everything but
            ``skip_state`` as it was (e.g. `skip_not_finite`).
        accumulator_dtype: dtype of the accumulator (default float32, as in optax;
            ``None`` uses each parameter's dtype).

    Raises:
        ValueError: ``every_k_schedule < 1`` (an int, or a schedule's value at step 0).
        TypeError: `opt` is not a transformation; at update, a state of another type.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.MultiSteps(gx.sgd(1.0), every_k_schedule=2)
        >>> state = opt.init(jnp.zeros(1))
        >>> u1, state = opt.update(jnp.array([1.0]), state)
        >>> u2, state = opt.update(jnp.array([3.0]), state)
        >>> u1.tolist(), u2.tolist()  # zeros, then -(1 + 3) / 2
        ([0.0], [-2.0])

    Note:
        Numerics as optax's ``MultiSteps``: the same Welford update, in the wider of
        the gradients' and the accumulator's dtype; the inner update receives it
        unrounded (in the gradients' dtype) and only the stored accumulator is rounded
        to ``accumulator_dtype``. optax evaluates the inner update at every mini-step
        and discards it; here it runs only when it is used.
    """

    def __init__(
        self,
        opt: Any,
        every_k_schedule: Union[int, Callable[[jax.Array], Any]],
        use_grad_mean: bool = True,
        should_skip_update_fn: Optional[Callable[..., tuple[jax.Array, Any]]] = None,
        accumulator_dtype: Optional[Any] = jnp.float32,
    ):
        fn = "MultiSteps"
        check_transform(opt, f"{fn}: opt")
        if callable(every_k_schedule):
            # The declaration checks an int; a schedule is checked by its value at step 0.
            k0 = every_k_schedule(jnp.zeros([], jnp.int32))
            _checks.check_range("every_k_schedule", k0, 1, fn=fn + " (the schedule's value at step 0)")
            self._every_k = every_k_schedule
        else:
            self._every_k = lambda step: every_k_schedule
        self._opt = opt
        self._use_grad_mean = use_grad_mean
        self._should_skip = should_skip_update_fn or _no_skip
        self._acc_dtype = None if accumulator_dtype is None else np.dtype(accumulator_dtype)

    @property
    def inner_opt(self) -> Any:
        return self._opt

    def init(self, params: Any) -> MultiStepsState:
        params = _tree.arrays(params)  # Python floats: arrays
        gradient_step = jnp.zeros([], jnp.int32)
        _, skip_state = self._should_skip(_tree.zeros_like(params), gradient_step, params)
        return MultiStepsState(
            mini_step=jnp.zeros([], jnp.int32),
            gradient_step=gradient_step,
            inner_opt_state=self._opt.init(params),
            acc_grads=_tree.zeros_like(params, self._acc_dtype),
            skip_state=skip_state,
        )

    def update(self, updates: Any, state: MultiStepsState, params: Any = None, **extra_args: Any):
        updates, params = _tree.arrays(updates), _tree.arrays(params)  # Python floats: arrays
        fn = "MultiSteps"
        _checks.check_state_type(state, MultiStepsState, fn)
        _checks.check_tree_like(
            updates, state.acc_grads, tree_name="updates", like_name="state.acc_grads", fn=fn, allow_none=False
        )
        k = jnp.maximum(jnp.asarray(self._every_k(state.gradient_step)).astype(jnp.int32), 1)
        skip, skip_state = self._should_skip(updates, state.gradient_step, params)
        skip = jnp.asarray(skip)
        if skip.shape != () or skip.dtype != jnp.bool_:
            raise ValueError(
                f"{fn}: should_skip_update_fn must return a bool scalar first, got dtype "
                f"{skip.dtype} and shape {skip.shape}."
            )
        n = state.mini_step

        def accumulate(g, a):
            # In the wider of the gradient's and the accumulator's dtype; the inner update
            # gets this unrounded sum or mean (in the gradient's dtype) and only the stored
            # accumulator is rounded to its dtype, as in optax.
            cdt = np.promote_types(_tree.compute_dtype(a.dtype), _tree.compute_dtype(g.dtype))
            a_, g_ = a.astype(cdt), g.astype(cdt)
            if self._use_grad_mean:
                new = a_ + (g_ - a_) / (n + 1).astype(cdt)
            else:
                new = a_ + g_
            return new.astype(g.dtype), jnp.where(skip, a, new.astype(a.dtype))

        leaves, treedef = jax.tree_util.tree_flatten(updates)
        pairs = [accumulate(g, a) for g, a in zip(leaves, treedef.flatten_up_to(state.acc_grads))]
        mean = treedef.unflatten([m for m, _ in pairs])
        acc = treedef.unflatten([a for _, a in pairs])
        emit = (n >= k - 1) & ~skip
        new_updates, inner_state = cond_inner_update(
            emit, self._opt, mean, state.inner_opt_state, params, extra_args
        )
        acc = jax.tree_util.tree_map(lambda a: jnp.where(emit, jnp.zeros_like(a), a), acc)
        mini_step = jnp.where(emit, 0, jnp.where(skip, n, _tree.safe_increment(n))).astype(jnp.int32)
        gradient_step = jnp.where(emit, _tree.safe_increment(state.gradient_step), state.gradient_step)
        return new_updates, MultiStepsState(
            mini_step=mini_step,
            gradient_step=gradient_step.astype(jnp.int32),
            inner_opt_state=inner_state,
            acc_grads=acc,
            skip_state=skip_state,
        )

    def has_updated(self, state: MultiStepsState) -> jax.Array:
        """True right after a mini-step that took an inner step."""
        return jnp.logical_and(state.mini_step == 0, state.gradient_step > 0)

    def gradient_transformation(self) -> GradientTransformation:
        """This wrapper as a `GradientTransformation` NamedTuple."""
        return GradientTransformation(self.init, self.update)
