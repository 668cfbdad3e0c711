"""Line searches: strong-Wolfe zoom (Nocedal & Wright 3.5/3.6) and backtracking Armijo.

Both follow optax's extra-arguments convention: ``update(updates, state, params,
value=f(params), grad=grad f(params), value_fn=f, **fn_kwargs)`` returns the
updates scaled by the step size found, and the state keeps the value and the
gradient at the new params for `value_and_grad_from_state`. Both run their
inner loop in ``lax.while_loop``, so they work under ``jax.jit``.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation
from gradxform._combine import apply_updates
from gradxform._tree import accumulation_dtype
from gradxform._treeops import tree_vdot, tree_where

# ----------------------------------------------------------------------------- helpers


def step_tree(params: Any, stepsize: jax.Array, updates: Any) -> Any:
    """params + stepsize * updates, computed as ``apply_updates(params, scale_tree(updates, stepsize))``."""
    return apply_updates(params, _tree.scale_tree(updates, stepsize))


def fn_kwargs_for(value_fn: Callable, extra_args: dict) -> dict:
    """The extra arguments `value_fn` takes by name (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(value_fn).parameters
    except (TypeError, ValueError):
        return dict(extra_args)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return dict(extra_args)
    return {k: v for k, v in extra_args.items() if k in params}


def _require(fn: str, value, grad, value_fn) -> None:
    missing = [n for n, v in (("value", value), ("grad", grad), ("value_fn", value_fn)) if v is None]
    if missing:
        raise ValueError(
            f"{fn}.update needs the keyword arguments value=f(params), grad=grad f(params) and "
            f"value_fn=f; missing: {', '.join(missing)}. See value_and_grad_from_state."
        )


def _finite_or_inf(x: jax.Array) -> jax.Array:
    return jnp.where(jnp.isfinite(x), x, jnp.inf)


def _is_plain_leaf(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, int, float, complex, bool))


def _jit_per_value_fn(core: Callable, hyperparameters: tuple) -> Callable:
    """``core(value_fn, *args, kwargs)``, compiled once per `value_fn` when that is possible.

    A line search's ``while_loop`` closes over the objective; run eagerly it would
    be traced and compiled anew at every call. Here the search is jitted per
    (transformation, `value_fn`) (a small LRU cache), so eager training loops
    compile once. Falls back to calling `core` directly when a hyperparameter is
    traced (``inject_hyperparams``), `value_fn` is not hashable, or the extra
    arguments hold something other than arrays and numbers.
    """
    if any(isinstance(h, jax.core.Tracer) for h in hyperparameters):
        return core

    @functools.lru_cache(maxsize=8)
    def compiled(value_fn):
        return jax.jit(functools.partial(core, value_fn))

    def run(value_fn, *args):
        kwargs = args[-1]
        if all(_is_plain_leaf(x) for x in jax.tree_util.tree_leaves(kwargs)):
            try:
                fn = compiled(value_fn)
            except TypeError:  # an unhashable objective
                fn = None
            if fn is not None:
                return fn(*args)
        return core(value_fn, *args)

    return run


# ----------------------------------------------------------------------------- zoom (strong Wolfe)


class ZoomLinesearchInfo(NamedTuple):
    num_linesearch_steps: jax.Array  # shape (), int32: function evaluations in the last search
    decrease_error: jax.Array  # shape (), value dtype: max(f(a) - f(0) - c1 a f'(0), 0) at the step taken
    curvature_error: jax.Array  # shape (), value dtype: max(|f'(a)| - c2 |f'(0)|, 0) at the step taken


class ScaleByZoomLinesearchState(NamedTuple):
    learning_rate: jax.Array  # shape (), value dtype: the step size of the last search
    value: jax.Array  # shape (), value dtype: f at the new params (+inf before the first search)
    grad: Any  # gradient at the new params, like params
    info: ZoomLinesearchInfo


class _Zoom(NamedTuple):
    count: jax.Array
    done: jax.Array
    zooming: jax.Array
    a_try: jax.Array
    a_lo: jax.Array
    f_lo: jax.Array
    d_lo: jax.Array
    g_lo: Any
    a_hi: jax.Array
    f_hi: jax.Array
    d_hi: jax.Array
    a_out: jax.Array
    f_out: jax.Array
    d_out: jax.Array
    g_out: Any


def _cubic_min(a, fa, da, b, fb, db):
    """Minimizer of the cubic interpolating (a, fa, da), (b, fb, db) (Nocedal & Wright eq. 3.59)."""
    d1 = da + db - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - da * db
    d2 = jnp.sign(b - a) * jnp.sqrt(jnp.maximum(disc, 0))
    x = b - (b - a) * (db + d2 - d1) / (db - da + 2 * d2)
    return jnp.where(disc >= 0, x, jnp.nan)


def _zoom_candidate(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi):
    """The cubic step, safeguarded to the middle 80% of the interval, else the midpoint."""
    lo, hi = jnp.minimum(a_lo, a_hi), jnp.maximum(a_lo, a_hi)
    width = hi - lo
    x = _cubic_min(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
    ok = jnp.isfinite(x) & (x > lo + 0.1 * width) & (x < hi - 0.1 * width)
    return jnp.where(ok, x, 0.5 * (a_lo + a_hi))


@_hyper.declare(
    max_linesearch_steps=_hyper.integer(1, draw=(1, 30), source="validator"),
    max_learning_rate=_hyper.number(
        0.0, low_inclusive=False, draw=(0.1, 10.0), optional=True, source="validator"
    ),
    tol=_hyper.NONNEG._replace(draw=(0.0, 1e-6), source="validator"),
    increase_factor=_hyper.number(1.0, low_inclusive=False, draw=(1.1, 4.0), source="validator"),
    slope_rtol=_hyper.number(
        0.0, 1.0, low_inclusive=False, high_inclusive=False, draw=(1e-5, 0.3), source="validator"
    ),
    curv_rtol=_hyper.number(0.0, low_inclusive=False, draw=(0.5, 0.99), source="validator"),
    approx_dec_rtol=_hyper.NONNEG._replace(draw=(0.0, 1e-4), optional=True, source="validator"),
    stepsize_precision=_hyper.NONNEG._replace(draw=(0.0, 1e-3), source="validator"),
    initial_guess_strategy=_hyper.choice("keep", "one"),
)
def scale_by_zoom_linesearch(
    max_linesearch_steps: int,
    max_learning_rate: Optional[float] = None,
    tol=0.0,
    increase_factor=2.0,
    slope_rtol=1e-4,
    curv_rtol=0.9,
    approx_dec_rtol: Optional[float] = 1e-6,
    stepsize_precision=1e-5,
    initial_guess_strategy: str = "keep",
    verbose: bool = False,
) -> GradientTransformation:
    r"""Scales the updates by a step size satisfying the strong Wolfe conditions.

    With :math:`\varphi(\eta) = f(w + \eta u)` along the update direction :math:`u`
    (a descent direction: :math:`\varphi'(0) = \langle \nabla f(w), u\rangle < 0`),
    finds :math:`\eta` with

    .. math::
        \varphi(\eta) \le \varphi(0) + c_1 \eta\, \varphi'(0) + \epsilon
        \quad\text{(sufficient decrease)}, \qquad
        |\varphi'(\eta)| \le c_2 |\varphi'(0)| + \epsilon \quad\text{(curvature)}

    by Nocedal & Wright's Algorithm 3.5 (grow :math:`\eta` by ``increase_factor``
    until an interval brackets such a point) and 3.6 (zoom: cubic interpolation
    of :math:`\varphi, \varphi'` at the interval's ends, safeguarded to its middle
    80%, else bisection). Near a minimum, where values differ by less than
    rounding, the decrease test also accepts Hager & Zhang's approximate Wolfe
    condition :math:`\varphi'(\eta) \le (1 - 2c_1)|\varphi'(0)|` when
    :math:`\varphi(\eta) \le \varphi(0) + c_3 |\varphi(0)|` (:math:`c_3` = ``approx_dec_rtol``).
    If no step satisfies both conditions within ``max_linesearch_steps``
    evaluations, or the interval shrinks below ``stepsize_precision``, it takes
    the best step satisfying the decrease condition found, or 0 if none.

    A failed search (step 0 although :math:`\varphi'(0) \ne 0`: no decreasing
    step found, an uphill direction, or a NaN/inf value or slope at the start)
    returns exactly zero updates, so the params stay where they are even when
    the direction holds NaN, and reports ``state.learning_rate == 0`` and
    ``state.info.decrease_error == state.info.curvature_error == inf``.

    Args:
        max_linesearch_steps: the most evaluations of ``value_fn`` per search, >= 1.
        max_learning_rate: upper bound on the step size (None: none).
        tol: the non-negative slack :math:`\epsilon` in both conditions.
        increase_factor: factor > 1 growing the step while bracketing.
        slope_rtol: :math:`c_1 \in (0, 1)`, default 1e-4.
        curv_rtol: :math:`c_2 \in (c_1, 1)` for the strong Wolfe conditions (default 0.9);
            ``inf`` drops the curvature condition.
        approx_dec_rtol: :math:`c_3 \ge 0`, or None for the exact Armijo test only.
        stepsize_precision: the zoom stops when the interval is shorter than this
            times its larger end (a relative precision, >= 0).
        initial_guess_strategy: ``"keep"`` starts from the previous step size,
            ``"one"`` from 1 (for Newton and quasi-Newton directions).
        verbose: unused (kept for optax's signature); read ``state.info``.

    Returns:
        A `GradientTransformation` whose update needs ``value=``, ``grad=``,
        ``value_fn=`` (extra keyword arguments that ``value_fn`` takes by name are
        passed to it).

    Raises:
        ValueError: an argument outside the ranges above; at update, a missing
            ``value``, ``grad`` or ``value_fn``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: jnp.sum((w - 3.0) ** 2)
        >>> tx = gx.chain(gx.scale(-1.0), gx.scale_by_zoom_linesearch(10))
        >>> w = jnp.zeros(2)
        >>> v, g = jax.value_and_grad(f)(w)
        >>> u, state = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f)
        >>> gx.apply_updates(w, u).tolist()  # the exact line minimum, found by the cubic step
        [3.0, 3.0]

    Note:
        optax raises on extra keyword arguments ``value_fn`` does not take; here
        they are ignored, since in a chain they may be meant for another
        transformation (``hessian_diag=``, ...). The zoom is written from the
        book, not from optax's code: trajectories agree with optax's only up to
        its different interpolation rules.

    References:
        Nocedal & Wright, Numerical Optimization, 2nd ed., 2006, Algorithms 3.5 and 3.6,
        eq. 3.59; Hager & Zhang, Algorithm 851: CG_DESCENT, 2006 (approximate Wolfe).
    """
    fn = "scale_by_zoom_linesearch"
    del verbose

    def init_fn(params):
        vdt = accumulation_dtype(params)
        return ScaleByZoomLinesearchState(
            learning_rate=jnp.ones([], vdt),
            value=jnp.asarray(jnp.inf, vdt),
            grad=_tree.zeros_like(params),
            info=ZoomLinesearchInfo(
                num_linesearch_steps=jnp.zeros([], jnp.int32),
                decrease_error=jnp.asarray(jnp.inf, vdt),
                curvature_error=jnp.asarray(jnp.inf, vdt),
            ),
        )

    def update_fn(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        _checks.check_state_type(state, ScaleByZoomLinesearchState, fn)
        _require(fn, value, grad, value_fn)
        _checks.require_params(params, fn)
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn, allow_none=False)
        kwargs = fn_kwargs_for(value_fn, extra_args)
        return run_core(value_fn, updates, state, params, value, grad, kwargs)

    def core(value_fn, updates, state, params, value, grad, kwargs):
        vdt = state.value.dtype
        value_and_grad = jax.value_and_grad(functools.partial(value_fn, **kwargs))
        grad = _tree.cast_like(grad, params)
        c1, c2, eps = _tree.hp(slope_rtol, vdt), _tree.hp(curv_rtol, vdt), _tree.hp(tol, vdt)
        f0 = jnp.asarray(value).astype(vdt)
        d0 = tree_vdot(grad, updates, vdt)
        a_max = jnp.asarray(jnp.inf if max_learning_rate is None else max_learning_rate).astype(vdt)
        guess = state.learning_rate if initial_guess_strategy == "keep" else jnp.ones([], vdt)
        guess = jnp.minimum(jnp.where(guess > 0, guess, jnp.ones([], vdt)), a_max)

        def decrease_ok(a, f, d):
            armijo = f <= f0 + c1 * a * d0 + eps
            if approx_dec_rtol is None:
                return armijo
            c3 = _tree.hp(approx_dec_rtol, vdt)
            approx = (f <= f0 + c3 * jnp.abs(f0) + eps) & (d <= (1 - 2 * c1) * jnp.abs(d0) + eps)
            return armijo | approx

        def curvature_ok(d):
            return jnp.abs(d) <= c2 * jnp.abs(d0) + eps

        zero = jnp.zeros([], vdt)
        init = _Zoom(
            count=jnp.zeros([], jnp.int32),
            done=~(d0 < 0),  # not a descent direction (or a stationary point): step 0
            zooming=jnp.asarray(False),
            a_try=guess,
            a_lo=zero, f_lo=f0, d_lo=d0, g_lo=grad,
            a_hi=zero, f_hi=f0, d_hi=d0,
            a_out=zero, f_out=f0, d_out=d0, g_out=grad,
        )

        def cond(s: _Zoom):
            return (~s.done) & (s.count < max_linesearch_steps)

        def body(s: _Zoom) -> _Zoom:
            a = s.a_try
            f, g = value_and_grad(step_tree(params, a, updates))
            f = _finite_or_inf(jnp.asarray(f).astype(vdt))
            g = _tree.cast_like(g, params)
            d = tree_vdot(g, updates, vdt)
            d = jnp.where(jnp.isfinite(d), d, jnp.inf)
            dec, curv = decrease_ok(a, f, d), curvature_ok(d)
            # Both stages: a point failing the decrease test, or no better than lo, becomes hi.
            worse = (~dec) | ((s.zooming | (s.count > 0)) & (f >= s.f_lo))
            accept = (~worse) & curv
            # A decreasing point (not accepted) becomes lo; the old lo becomes hi when the
            # slope says the minimum lies on lo's side (bracketing: d >= 0; zoom: d (hi - lo) >= 0).
            flip = jnp.where(s.zooming, d * (s.a_hi - s.a_lo) >= 0, d >= 0)
            new_lo = (~worse) & (~accept)
            hi_from_lo = new_lo & flip
            a_hi = jnp.where(worse, a, jnp.where(hi_from_lo, s.a_lo, s.a_hi))
            f_hi = jnp.where(worse, f, jnp.where(hi_from_lo, s.f_lo, s.f_hi))
            d_hi = jnp.where(worse, d, jnp.where(hi_from_lo, s.d_lo, s.d_hi))
            a_lo = jnp.where(new_lo, a, s.a_lo)
            f_lo = jnp.where(new_lo, f, s.f_lo)
            d_lo = jnp.where(new_lo, d, s.d_lo)
            g_lo = tree_where(new_lo, g, s.g_lo)
            # Still bracketing when the point decreased with a negative slope: grow the step.
            keep_growing = (~s.zooming) & new_lo & (~flip)
            at_max = keep_growing & (a >= a_max)
            zooming = s.zooming | worse | hi_from_lo
            grown = jnp.minimum(a * _tree.hp(increase_factor, vdt), a_max)
            zoom_next = _zoom_candidate(a_lo, f_lo, d_lo, a_hi, f_hi, d_hi)
            width = jnp.abs(a_hi - a_lo)
            too_small = zooming & (width <= _tree.hp(stepsize_precision, vdt) * jnp.maximum(a_lo, a_hi))
            done = accept | at_max | too_small
            take_current = accept | at_max
            a_out = jnp.where(take_current, a, a_lo)
            f_out = jnp.where(take_current, f, f_lo)
            d_out = jnp.where(take_current, d, d_lo)
            g_out = tree_where(take_current, g, g_lo)
            return _Zoom(
                count=s.count + 1,
                done=done,
                zooming=zooming,
                a_try=jnp.where(zooming, zoom_next, grown),
                a_lo=a_lo, f_lo=f_lo, d_lo=d_lo, g_lo=g_lo,
                a_hi=a_hi, f_hi=f_hi, d_hi=d_hi,
                a_out=a_out, f_out=f_out, d_out=d_out, g_out=g_out,
            )

        s = jax.lax.while_loop(cond, body, init)
        # Out of evaluations: the best decreasing point (lo), or no step.
        a = jnp.where(s.done, s.a_out, s.a_lo)
        f = jnp.where(s.done, s.f_out, s.f_lo)
        d = jnp.where(s.done, s.d_out, s.d_lo)
        g = tree_where(s.done, s.g_out, s.g_lo)
        # No step although the direction was not flat (d0 != 0: a non-finite start, an uphill
        # direction, or no decrease found): the search failed, and both errors say so (+inf).
        failed = (a == 0) & ~(d0 == 0)
        inf = jnp.asarray(jnp.inf, vdt)
        info = ZoomLinesearchInfo(
            num_linesearch_steps=s.count,
            decrease_error=jnp.where(failed, inf, _finite_or_inf(jnp.maximum(f - f0 - c1 * a * d0, 0))),
            curvature_error=jnp.where(failed, inf, _finite_or_inf(jnp.maximum(jnp.abs(d) - c2 * jnp.abs(d0), 0))),
        )
        # Step 0 is exactly 0, also for a direction with NaN or inf entries (0 * nan = nan).
        new_updates = jax.tree_util.tree_map(
            lambda x: jnp.where(a > 0, x, jnp.zeros_like(x)), _tree.scale_tree(updates, a)
        )
        new_state = ScaleByZoomLinesearchState(
            learning_rate=a.astype(vdt), value=f.astype(vdt), grad=_tree.cast_like(g, state.grad), info=info
        )
        return new_updates, new_state

    run_core = _jit_per_value_fn(
        core, (max_linesearch_steps, max_learning_rate, tol, increase_factor, slope_rtol, curv_rtol,
               approx_dec_rtol, stepsize_precision)
    )
    return GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- backtracking (Armijo)


class BacktrackingLinesearchInfo(NamedTuple):
    num_linesearch_steps: jax.Array  # shape (), int32: function evaluations in the last search
    decrease_error: jax.Array  # shape (), value dtype: max(f(a) - (1+rtol) f(0) - c a f'(0), 0); 0 = success


class ScaleByBacktrackingLinesearchState(NamedTuple):
    learning_rate: jax.Array  # shape (), value dtype: the step size of the last search
    value: jax.Array  # shape (), value dtype: f at the new params (+inf before the first search)
    grad: Any  # gradient at the new params if store_grad, else None
    info: BacktrackingLinesearchInfo


@_hyper.declare(
    max_backtracking_steps=_hyper.integer(0, draw=(0, 30), source="validator"),
    slope_rtol=_hyper.number(0.0, 1.0, high_inclusive=False, draw=(0.0, 0.5), source="validator"),
    decrease_factor=_hyper.number(
        0.0, 1.0, low_inclusive=False, high_inclusive=False, draw=(0.1, 0.9), source="validator"
    ),
    increase_factor=_hyper.number(1.0, draw=(1.0, 2.0), source="validator"),
    max_learning_rate=_hyper.number(0.0, low_inclusive=False, draw=(0.1, 10.0), source="validator"),
    atol=_hyper.NONNEG._replace(source="validator"),
    rtol=_hyper.NONNEG._replace(source="validator"),
)
def scale_by_backtracking_linesearch(
    max_backtracking_steps: int,
    slope_rtol=1e-4,
    decrease_factor=0.8,
    increase_factor=1.5,
    max_learning_rate=1.0,
    atol=0.0,
    rtol=0.0,
    store_grad: bool = False,
    verbose: bool = False,
) -> GradientTransformation:
    r"""Scales the updates by the first step of a geometric sequence with sufficient decrease.

    Starting from :math:`\eta_0 = \min(\text{increase\_factor}\cdot\eta_{prev}, \text{max\_learning\_rate})`,
    tries :math:`\eta_j = \eta_0\, \text{decrease\_factor}^j` until the Armijo condition

    .. math:: f(w + \eta u) \le (1 + \delta) f(w) + c\, \eta \langle u, \nabla f(w)\rangle + \epsilon

    holds (:math:`c` = ``slope_rtol``, :math:`\delta` = ``rtol``, :math:`\epsilon`
    = ``atol``), at most ``max_backtracking_steps + 1`` evaluations. A NaN or
    infinite value at the last try gives step 0, and step 0 gives exactly zero
    updates (also for a direction holding NaN). A zero update direction is not
    searched: it keeps :math:`\eta_0`, ``value`` and ``grad``.

    Args:
        max_backtracking_steps: the most decreases per search, >= 0.
        slope_rtol: :math:`c \in [0, 1)`.
        decrease_factor: in (0, 1).
        increase_factor: >= 1 (``inf`` restarts from ``max_learning_rate``).
        max_learning_rate: > 0.
        atol, rtol: non-negative slacks.
        store_grad: also keep the gradient at the new params (one more gradient
            evaluation per step) for `value_and_grad_from_state`.
        verbose: unused (kept for optax's signature); read ``state.info``.

    Returns:
        A `GradientTransformation` whose update needs ``value=``, ``grad=``, ``value_fn=``.

    Raises:
        ValueError: an argument outside the ranges above; at update, a missing
            ``value``, ``grad`` or ``value_fn``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: jnp.sum(w ** 2)
        >>> tx = gx.chain(gx.sgd(1.0), gx.scale_by_backtracking_linesearch(max_backtracking_steps=15))
        >>> w = jnp.array([1.0, 2.0])
        >>> v, g = jax.value_and_grad(f)(w)
        >>> u, state = tx.update(g, tx.init(w), w, value=v, grad=g, value_fn=f)
        >>> round(float(state[1].learning_rate), 4)  # 1 fails, 0.8 decreases enough
        0.8

    Note:
        The same rule and numerics as optax's ``scale_by_backtracking_linesearch``;
        extra keyword arguments ``value_fn`` does not take are ignored rather than
        rejected (see `scale_by_zoom_linesearch`).

    References:
        Nocedal & Wright, Numerical Optimization, 2nd ed., 2006, Algorithm 3.1;
        Vaswani et al., Painless Stochastic Gradient, 2019.
    """
    fn = "scale_by_backtracking_linesearch"
    del verbose

    def init_fn(params):
        vdt = accumulation_dtype(params)
        return ScaleByBacktrackingLinesearchState(
            learning_rate=jnp.ones([], vdt),
            value=jnp.asarray(jnp.inf, vdt),
            grad=_tree.zeros_like(params) if store_grad else None,
            info=BacktrackingLinesearchInfo(
                num_linesearch_steps=jnp.zeros([], jnp.int32), decrease_error=jnp.asarray(jnp.inf, vdt)
            ),
        )

    def update_fn(updates, state, params=None, *, value=None, grad=None, value_fn=None, **extra_args):
        _checks.check_state_type(state, ScaleByBacktrackingLinesearchState, fn)
        _require(fn, value, grad, value_fn)
        _checks.require_params(params, fn)
        _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn, allow_none=False)
        return run_core(value_fn, updates, state, params, value, grad, fn_kwargs_for(value_fn, extra_args))

    def core(value_fn, updates, state, params, value, grad, kwargs):
        vdt = state.value.dtype
        f_ = functools.partial(value_fn, **kwargs)
        f0 = jnp.asarray(value).astype(vdt)
        slope = tree_vdot(grad, updates, vdt)
        c, dec = _tree.hp(slope_rtol, vdt), _tree.hp(decrease_factor, vdt)
        eps, delta = _tree.hp(atol, vdt), _tree.hp(rtol, vdt)

        def error(a, f):
            e = f - (1 + delta) * f0 - a * c * slope
            return jnp.maximum(jnp.where(jnp.isnan(e), jnp.inf, e), 0)

        def cond(carry):
            _, _, err, it = carry
            return (~(err <= eps)) & (it <= max_backtracking_steps)

        def body(carry):
            a, _, _, it = carry
            a = jnp.where(it > 0, dec * a, a)
            f = jnp.asarray(f_(step_tree(params, a, updates))).astype(vdt)
            return a, f, error(a, f), it + 1

        a0 = jnp.minimum(_tree.hp(increase_factor, vdt) * state.learning_rate, _tree.hp(max_learning_rate, vdt))
        # A zero direction leaves the params where they are: nothing to search or evaluate.
        standing = tree_vdot(updates, updates, vdt) == 0
        err0 = jnp.where(standing, jnp.zeros([], vdt), jnp.asarray(jnp.inf, vdt))
        a, f, err, it = jax.lax.while_loop(cond, body, (a0.astype(vdt), f0, err0, jnp.zeros([], jnp.int32)))
        a = jnp.where(jnp.isinf(err), jnp.zeros_like(a), a)
        new_grad = None
        if store_grad:
            fresh = _tree.cast_like(jax.grad(f_)(step_tree(params, a, updates)), state.grad)
            given = _tree.cast_like(grad, state.grad)
            new_grad = tree_where(standing, given, fresh)
        # Step 0 is exactly 0, also for a direction with NaN or inf entries (0 * nan = nan).
        new_updates = jax.tree_util.tree_map(
            lambda x: jnp.where(a > 0, x, jnp.zeros_like(x)), _tree.scale_tree(updates, a)
        )
        return new_updates, ScaleByBacktrackingLinesearchState(
            learning_rate=a.astype(vdt),
            value=f.astype(vdt),
            grad=new_grad,
            info=BacktrackingLinesearchInfo(num_linesearch_steps=it, decrease_error=err.astype(vdt)),
        )

    run_core = _jit_per_value_fn(
        core, (max_backtracking_steps, slope_rtol, decrease_factor, increase_factor, max_learning_rate, atol, rtol)
    )
    return GradientTransformation(init_fn, update_fn)


# ----------------------------------------------------------------------------- reuse of the search's value


_SEARCH_STATES = (ScaleByZoomLinesearchState, ScaleByBacktrackingLinesearchState)


def _find_search_state(state: Any) -> Any:
    found = [
        x
        for x in jax.tree_util.tree_leaves(state, is_leaf=lambda x: isinstance(x, _SEARCH_STATES))
        if isinstance(x, _SEARCH_STATES)
    ]
    if len(found) != 1:
        raise ValueError(
            "value_and_grad_from_state: expected exactly one line-search state "
            f"(zoom or backtracking) in the optimizer state, found {len(found)}."
        )
    return found[0]


def value_and_grad_from_state(value_fn: Callable[..., Any]) -> Callable[..., tuple[jax.Array, Any]]:
    r"""Like ``jax.value_and_grad(value_fn)``, reusing the value and gradient the line search stored.

    The line search evaluates :math:`f` and :math:`\nabla f` at the params it
    returns; the next step needs exactly those. The returned function
    ``(params, *args, state=opt_state, **kwargs) -> (value, grad)`` reads them
    from the (only) line-search state inside ``opt_state``, and computes them
    afresh when the stored value is not finite (before the first step).

    Args:
        value_fn: the objective, ``value_fn(params, *args, **kwargs) -> scalar``.

    Returns:
        The function described above. It is only right when the params given are
        the ones the last update produced and the objective is deterministic.

    Raises:
        ValueError: (when called) no line-search state, several, or one without a
            stored gradient (backtracking with ``store_grad=False``).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: jnp.sum((w - 1.0) ** 2)
        >>> opt, w = gx.lbfgs(), jnp.zeros(3)
        >>> state, vg = opt.init(w), gx.value_and_grad_from_state(f)
        >>> for _ in range(3):
        ...     v, g = vg(w, state=state)
        ...     u, state = opt.update(g, state, w, value=v, grad=g, value_fn=f)
        ...     w = gx.apply_updates(w, u)
        >>> [round(x, 6) for x in w.tolist()]
        [1.0, 1.0, 1.0]
    """

    def value_and_grad(params: Any, *args: Any, state: Any, **kwargs: Any) -> tuple[jax.Array, Any]:
        search = _find_search_state(state)
        if search.grad is None:
            raise ValueError(
                "value_and_grad_from_state: the line search keeps no gradient; build "
                "scale_by_backtracking_linesearch with store_grad=True."
            )
        stored_value, stored_grad = search.value, search.grad

        def fresh(_):
            v, g = jax.value_and_grad(value_fn)(params, *args, **kwargs)
            return jnp.asarray(v).astype(stored_value.dtype), _tree.cast_like(g, stored_grad)

        return jax.lax.cond(
            jnp.isfinite(stored_value), lambda _: (stored_value, stored_grad), fresh, None
        )

    return value_and_grad
