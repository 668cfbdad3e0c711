"""L-BFGS (Liu & Nocedal, 1989): the two-loop recursion, and the `lbfgs` optimizer with a line search."""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, identity
from gradxform._combine import chain
from gradxform._tree import accumulation_dtype
from gradxform._treeops import tree_vdot
from gradxform.second_order._linesearch import scale_by_zoom_linesearch
from gradxform.transforms._scale import scale, scale_by_learning_rate


class ScaleByLBFGSState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    params: Any  # the params at the last update, like params
    updates: Any  # the gradient at the last update, like params
    diff_params_memory: Any  # s_i = w_{i+1} - w_i, like params with a leading axis of memory_size
    diff_updates_memory: Any  # y_i = g_{i+1} - g_i, same shape
    weights_memory: jax.Array  # shape (memory_size,), float32: rho_i = 1 / <s_i, y_i> (0: unused slot)


def _two_loop(g, s_mem, y_mem, rho, gamma, newest_first, vdt):
    """H_k g by the two-loop recursion (Nocedal & Wright, Algorithm 7.4)."""

    def pick(tree, i):
        return jax.tree_util.tree_map(lambda x: x[i], tree)

    def axpy(alpha, x, y):  # y + alpha x, in y's dtypes, computed in the value dtype
        return jax.tree_util.tree_map(
            lambda xx, yy: (yy.astype(vdt) + alpha * xx.astype(vdt)).astype(yy.dtype), x, y
        )

    def first(q, i):
        a = rho[i] * tree_vdot(pick(s_mem, i), q, vdt)
        return axpy(-a, pick(y_mem, i), q), a

    q, alphas = jax.lax.scan(first, g, newest_first)
    r = jax.tree_util.tree_map(lambda x: (gamma * x.astype(vdt)).astype(x.dtype), q)

    def second(r, i_a):
        i, a = i_a
        b = rho[i] * tree_vdot(pick(y_mem, i), r, vdt)
        return axpy(a - b, pick(s_mem, i), r), None

    r, _ = jax.lax.scan(second, r, (newest_first[::-1], alphas[::-1]))
    return r


@functools.partial(jax.jit, static_argnums=(0, 1))
def _lbfgs_update(m: int, scale_init_precond: bool, updates, state: ScaleByLBFGSState, params):
    """One `scale_by_lbfgs` step; jitted at module level so eager calls compile once per shape."""
    vdt = state.weights_memory.dtype
    started = state.count > 0

    def diff(a, b):
        cdt = _tree.compute_dtype(jnp.asarray(a).dtype)
        d = jnp.asarray(a).astype(cdt) - jnp.asarray(b).astype(cdt)
        return jnp.where(started, d, jnp.zeros_like(d)).astype(jnp.asarray(b).dtype)

    s = jax.tree_util.tree_map(diff, params, state.params)
    y = jax.tree_util.tree_map(diff, updates, state.updates)
    sy = tree_vdot(s, y, vdt)
    yy = tree_vdot(y, y, vdt)
    curved = sy > 0  # pairs without positive curvature are not used (rho = 0)
    rho = jnp.where(curved, 1 / jnp.where(curved, sy, 1), 0).astype(vdt)
    # A pair with a non-finite entry (a NaN or inf gradient or step) is stored as zeros:
    # with rho = 0 it would still poison the two-loop recursion (0 * nan = nan) for m steps.
    finite = jnp.isfinite(sy) & jnp.isfinite(yy)
    slot = (state.count - 1) % m  # the newest pair's slot (count 0 writes zeros with rho 0)

    def store(mem, x):
        return mem.at[slot].set(jnp.where(finite, x, jnp.zeros_like(x)).astype(mem.dtype))

    s_mem = jax.tree_util.tree_map(store, state.diff_params_memory, s)
    y_mem = jax.tree_util.tree_map(store, state.diff_updates_memory, y)
    rhos = state.weights_memory.at[slot].set(rho)
    if scale_init_precond:
        g_norm = jnp.sqrt(tree_vdot(updates, updates, vdt))
        bounded = jnp.minimum(1, 1 / g_norm)  # a step of length at most 1
        gamma = jnp.where(curved & (yy > 0), sy / jnp.where(yy > 0, yy, 1), bounded)
        gamma = jnp.where(started, gamma, bounded).astype(vdt)
    else:
        gamma = jnp.ones([], vdt)
    newest_first = (slot - jnp.arange(m, dtype=jnp.int32)) % m
    direction = _two_loop(updates, s_mem, y_mem, rhos, gamma, newest_first, vdt)
    return direction, ScaleByLBFGSState(
        count=_tree.safe_increment(state.count),
        params=_tree.cast_like(params, state.params),
        updates=_tree.cast_like(updates, state.updates),
        diff_params_memory=s_mem,
        diff_updates_memory=y_mem,
        weights_memory=rhos,
    )


_MEMORY_SIZE = _hyper.integer(1, draw=(1, 10), source="validator")


@_hyper.declare(memory_size=_MEMORY_SIZE)
def scale_by_lbfgs(memory_size: int = 10, scale_init_precond: bool = True) -> GradientTransformation:
    r"""Multiplies the gradient by the L-BFGS approximation of the inverse Hessian.

    With :math:`s_i = w_{i+1} - w_i`, :math:`y_i = g_{i+1} - g_i`,
    :math:`\rho_i = 1/\langle s_i, y_i\rangle` over the last ``memory_size`` steps:

    .. math::
        H_{k} = V_{k-1}^\top H_{k-1} V_{k-1} + \rho_{k-1} s_{k-1} s_{k-1}^\top, \quad
        V_i = I - \rho_i y_i s_i^\top, \quad H_{k-m} = \gamma_k I, \quad
        \gamma_k = \frac{\langle s_{k-1}, y_{k-1}\rangle}{\langle y_{k-1}, y_{k-1}\rangle}

    and returns :math:`u_k = H_k g_k` by the two-loop recursion (the gradient's
    sign: chain a negative scaling and a line search, as `lbfgs` does). At the
    first step :math:`\gamma_0 = \min(1, 1/\|g_0\|)` (a step of length at most 1),
    and with ``scale_init_precond=False`` :math:`\gamma_k = 1`. Only pairs with
    :math:`\langle s_i, y_i\rangle > 0` are used (see the note).

    Note:
        optax's ``scale_by_lbfgs`` keeps pairs with :math:`\langle s, y\rangle < 0`,
        which makes :math:`H_k` indefinite: chained with a backtracking (Armijo) line
        search, which does not enforce the curvature condition, optax 0.2.8's L-BFGS
        then meets an ascent direction and stalls for good (on Rosenbrock from
        (-1.2, 1) it stops at (-0.888, 0.831)). Here a pair without positive
        curvature gets :math:`\rho = 0` (it is skipped, Nocedal & Wright Section 7.2;
        it still takes its slot in the memory) and :math:`\gamma_k` falls back to the
        first step's :math:`\min(1, 1/\|g_k\|)`. Where every pair has positive
        curvature (convex problems, or the default strong-Wolfe search) the numbers
        are optax's. The memory is kept in the params' dtype, the inner products in
        at least float32.

    Args:
        memory_size: the number :math:`m \ge 1` of pairs kept.
        scale_init_precond: use :math:`\gamma_k` above (else the identity).

    Returns:
        A `GradientTransformation`; its update needs the params.

    Raises:
        ValueError: ``memory_size < 1``; at update, missing params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_lbfgs()
        >>> u, _ = tx.update(jnp.array([3.0, 4.0]), tx.init(jnp.zeros(2)), jnp.zeros(2))
        >>> u.tolist()  # first step: g / ||g||
        [0.6000000238418579, 0.800000011920929]

    References:
        Nocedal & Wright, Numerical Optimization, 2nd ed., 2006, Algorithms 7.4 and 7.5;
        Liu & Nocedal, On the limited memory BFGS method for large scale optimization, 1989.
    """
    fn = "scale_by_lbfgs"
    m = int(memory_size)

    def init_fn(params):
        def stacked():  # a fresh buffer per field: jit's donate_argnums rejects one buffer twice
            return jax.tree_util.tree_map(lambda p: jnp.zeros((m,) + jnp.shape(p), jnp.asarray(p).dtype), params)

        return ScaleByLBFGSState(
            count=jnp.zeros([], jnp.int32),
            params=_tree.zeros_like(params),
            updates=_tree.zeros_like(params),
            diff_params_memory=stacked(),
            diff_updates_memory=stacked(),
            weights_memory=jnp.zeros((m,), accumulation_dtype(params)),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_state_type(state, ScaleByLBFGSState, fn)
        _checks.require_params(params, fn)
        _checks.check_tree_like(updates, state.params, tree_name="updates", like_name="state.params", fn=fn,
                                allow_none=False)
        _checks.check_tree_like(params, state.params, tree_name="params", like_name="state.params", fn=fn,
                                allow_none=False)
        updates = _tree.as_updates(updates, state.params, squared=(False,))  # the dtype policy
        return _lbfgs_update(m, scale_init_precond, updates, state, params)

    return GradientTransformation(init_fn, update_fn)


# A scale of the direction the line search then tries: a negative one would search uphill.
_LBFGS_LR = _hyper.number(0.0, _hyper.F32_MAX, draw=(1e-4, 1.0), optional=True, source="validator")


@_hyper.declare(learning_rate=_LBFGS_LR, memory_size=_MEMORY_SIZE)
def lbfgs(
    learning_rate: Optional[ScalarOrSchedule] = None,
    memory_size: int = 10,
    scale_init_precond: bool = True,
    linesearch: Optional[Any] = scale_by_zoom_linesearch(max_linesearch_steps=20, initial_guess_strategy="one"),
) -> GradientTransformation:
    r"""L-BFGS: ``chain(scale_by_lbfgs(memory_size, scale_init_precond), -learning_rate, linesearch)``.

    The direction :math:`-H_k g_k` of `scale_by_lbfgs` is scaled by
    ``-learning_rate`` (by :math:`-1` when None, the default: the line search
    sets the step) and then by the step size of `linesearch`, by default the
    strong-Wolfe zoom search (`scale_by_zoom_linesearch`, starting from 1) whose
    curvature condition keeps :math:`\langle s, y \rangle > 0`; pass
    ``scale_by_backtracking_linesearch(...)`` for Armijo backtracking, or None
    for a fixed step.

    The update takes optax's extra arguments: ``update(grad, state, params,
    value=f(params), grad=grad, value_fn=f)`` (and whatever else ``f`` takes
    by name); `value_and_grad_from_state` reuses the value and gradient the
    search computed at the new params.

    Args:
        learning_rate: None, a non-negative float or a schedule.
        memory_size: pairs kept, >= 1.
        scale_init_precond: see `scale_by_lbfgs`.
        linesearch: a line-search transformation, or None.

    Raises:
        ValueError: ``memory_size < 1``, a negative ``learning_rate``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: (1 - w[0]) ** 2 + 100 * (w[1] - w[0] ** 2) ** 2  # Rosenbrock
        >>> opt, w = gx.lbfgs(), jnp.array([-1.2, 1.0])
        >>> @jax.jit
        ... def step(w, state):
        ...     v, g = jax.value_and_grad(f)(w)
        ...     u, state = opt.update(g, state, w, value=v, grad=g, value_fn=f)
        ...     return gx.apply_updates(w, u), state
        >>> state = opt.init(w)
        >>> for _ in range(60):
        ...     w, state = step(w, state)
        >>> [round(x, 4) for x in w.tolist()]
        [1.0, 1.0]

    References:
        Nocedal & Wright, Numerical Optimization, 2nd ed., 2006, Algorithms 7.4, 7.5;
        optax.lbfgs (the interface).
    """
    base_scaling = scale(-1.0) if learning_rate is None else scale_by_learning_rate(learning_rate)
    return chain(
        scale_by_lbfgs(memory_size=memory_size, scale_init_precond=scale_init_precond),
        base_scaling,
        identity() if linesearch is None else linesearch,
    )
