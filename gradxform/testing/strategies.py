"""Hypothesis strategies for testing gradient transformations.

Everything here builds `hypothesis` search strategies; nothing runs a
transformation. The building blocks:

* `shapes` and `pytrees`: small pytrees of arrays (nested dicts, lists, tuples
  and `Layer` NamedTuples) with scalars (shape ``()``), empty axes (a
  0-length dimension) and float32 / bfloat16 / float16 leaves;
* `params_and_grads`: a (params, grads) pair of the same structure and shapes,
  the grads optionally in other dtypes (bf16 params with f32 grads, say);
* `gradient_sequences`: one gradient tree per step for given params, with
  all-zero steps and huge, tiny and zero entries mixed in;
* `hyperparameters` / `invalid_hyperparameters`: keyword arguments for the
  built-in transformations, drawn from the table `HYPERPARAMETERS`.

Values are drawn as float32 (``width=32``, no subnormals, no NaN or inf unless
asked) and cast to the leaf's dtype; by default every magnitude is a normal
float16 number (entries that would be float16 subnormals are flushed to zero),
so the same draw is meaningful in all three dtypes. Shapes are small (at most
3 axes of at most 4 elements) so that tests stay fast.

Examples:
    >>> import jax
    >>> from hypothesis import given, settings
    >>> from gradxform.testing import strategies as gst
    >>> @settings(max_examples=10)
    ... @given(gst.params_and_grads(max_leaves=3))
    ... def test_same_shapes(pair):
    ...     params, grads = pair
    ...     assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(grads)
    >>> test_same_shapes()
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

# The NamedTuple node drawn here is the one the laws' default examples use.
from gradxform.testing.laws import Layer

__all__ = [
    "DEFAULT_DTYPES",
    "HYPERPARAMETERS",
    "Layer",
    "Hyper",
    "shapes",
    "leaf_specs",
    "tree_specs",
    "arrays_like",
    "pytrees",
    "params_and_grads",
    "gradient_sequences",
    "hyperparameters",
    "invalid_hyperparameters",
    "CONSTRAINTS",
]

DEFAULT_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)

# The largest magnitude drawn by default: well inside float16's range (65504).
DEFAULT_MAX_VALUE = 1e3
# Default "huge" and "tiny" magnitudes of `gradient_sequences`: both normal float16
# numbers (float16's smallest normal is 6.1e-5, its largest 65504).
DEFAULT_HUGE = 1e4
DEFAULT_TINY = 1e-4

_KEYS = ("w", "b", "kernel", "bias", "scale", "embedding", "layer_0", "layer_1")


# --------------------------------------------------------------------------- shapes and trees


def shapes(
    *, max_dims: int = 3, max_side: int = 4, allow_scalar: bool = True, allow_empty: bool = True
) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes with at most `max_dims` axes of at most `max_side` elements.

    Shrinks towards the scalar shape ``()``. With `allow_empty` an axis may have
    length 0 (an array with no elements).

    Examples:
        >>> from hypothesis import find
        >>> find(shapes(), lambda s: 0 in s)
        (0,)
    """
    return st.lists(
        st.integers(0 if allow_empty else 1, max_side),
        min_size=0 if allow_scalar else 1,
        max_size=max_dims,
    ).map(tuple)


def leaf_specs(
    *, dtypes: Sequence[Any] = DEFAULT_DTYPES, **shape_kwargs: Any
) -> st.SearchStrategy[jax.ShapeDtypeStruct]:
    """A `jax.ShapeDtypeStruct` (shape and dtype of one leaf); `shape_kwargs` go to `shapes`."""
    dts = [jnp.dtype(d) for d in dtypes]
    return st.builds(jax.ShapeDtypeStruct, shapes(**shape_kwargs), st.sampled_from(dts))


def _containers(children: st.SearchStrategy, kinds: Sequence[str]) -> st.SearchStrategy:
    options = []
    if "dict" in kinds:
        options.append(st.dictionaries(st.sampled_from(_KEYS), children, min_size=1, max_size=3))
    if "list" in kinds:
        options.append(st.lists(children, min_size=1, max_size=3))
    if "tuple" in kinds:
        options.append(st.lists(children, min_size=1, max_size=3).map(tuple))
    if "namedtuple" in kinds:
        options.append(st.builds(Layer, children, children))
    if not options:
        raise ValueError(f"containers must name some of dict, list, tuple, namedtuple; got {kinds!r}")
    return st.one_of(options)


def tree_specs(
    *,
    dtypes: Sequence[Any] = DEFAULT_DTYPES,
    max_leaves: int = 6,
    max_side: int = 4,
    max_dims: int = 3,
    allow_scalar: bool = True,
    allow_empty: bool = True,
    containers: Sequence[str] = ("dict", "list", "tuple", "namedtuple"),
    allow_bare_leaf: bool = True,
) -> st.SearchStrategy[Any]:
    """Pytrees whose leaves are `jax.ShapeDtypeStruct` (the skeleton `pytrees` fills).

    Without `allow_bare_leaf` the root is always a container.
    """
    leaf = leaf_specs(
        dtypes=dtypes,
        max_dims=max_dims,
        max_side=max_side,
        allow_scalar=allow_scalar,
        allow_empty=allow_empty,
    )
    tree = st.recursive(leaf, lambda children: _containers(children, containers), max_leaves=max_leaves)
    if not allow_bare_leaf:
        tree = _containers(tree, containers)
    return tree


def _flush_subnormals(x: np.ndarray) -> np.ndarray:
    tiny = float(ml_dtypes.finfo(x.dtype).tiny)
    if x.size:
        x = np.where(np.abs(x.astype(np.float32)) < tiny, np.zeros_like(x), x)
    return x


def _cast(values: np.ndarray, dtype: Any) -> jax.Array:
    """float32 values to `dtype`, flushing results below the dtype's smallest normal to 0."""
    x = np.asarray(values, np.float32).astype(jnp.dtype(dtype))
    if jnp.issubdtype(x.dtype, jnp.floating):
        x = _flush_subnormals(x)
    return jnp.asarray(x)


def floats32(
    *, max_value: float = DEFAULT_MAX_VALUE, min_magnitude: float = 0.0, allow_nonfinite: bool = False
) -> st.SearchStrategy[float]:
    """float32-representable floats in ``[-max_value, max_value]``, no subnormals.

    Nonzero draws have magnitude at least `min_magnitude`; with
    `allow_nonfinite` NaN and +-inf occur too.
    """
    lo, hi = _f32_inward(-max_value, max_value)
    plain = st.floats(lo, hi, width=32, allow_subnormal=False, allow_nan=False, allow_infinity=False)
    if min_magnitude > 0:
        plain = plain.filter(lambda v: v == 0 or abs(v) >= min_magnitude)
    if allow_nonfinite:
        plain = st.one_of(plain, st.sampled_from([math.nan, math.inf, -math.inf]))
    return plain


def arrays_like(
    specs: Any, *, elements: Optional[st.SearchStrategy[float]] = None, **float_kwargs: Any
) -> st.SearchStrategy[Any]:
    """Trees of arrays with the shapes and dtypes of a tree of `jax.ShapeDtypeStruct` (or arrays).

    Values come from `elements` (float32 floats; default `floats32(**float_kwargs)`)
    and are cast to each leaf's dtype.
    """
    elements = floats32(**float_kwargs) if elements is None else elements
    leaves, treedef = jax.tree_util.tree_flatten(specs)
    leaf_strategies = [
        hnp.arrays(np.float32, tuple(leaf.shape), elements=elements).map(
            lambda a, dt=leaf.dtype: _cast(a, dt)
        )
        for leaf in leaves
    ]
    return st.tuples(*leaf_strategies).map(lambda ls: jax.tree_util.tree_unflatten(treedef, list(ls)))


def pytrees(
    *,
    dtypes: Sequence[Any] = DEFAULT_DTYPES,
    max_leaves: int = 6,
    max_side: int = 4,
    max_dims: int = 3,
    allow_scalar: bool = True,
    allow_empty: bool = True,
    containers: Sequence[str] = ("dict", "list", "tuple", "namedtuple"),
    allow_bare_leaf: bool = True,
    max_value: float = DEFAULT_MAX_VALUE,
    allow_nonfinite: bool = False,
) -> st.SearchStrategy[Any]:
    """Pytrees of arrays: nested dicts, lists, tuples and `Layer` NamedTuples.

    Args:
        dtypes: the leaf dtypes to draw from (float32, bfloat16, float16 by default).
        max_leaves: about how many leaves at most (hypothesis' `recursive` bound).
        max_side, max_dims: each leaf has at most `max_dims` axes of at most
            `max_side` elements.
        allow_scalar: leaves of shape ``()`` may occur.
        allow_empty: axes of length 0 may occur.
        containers: which node types to use.
        allow_bare_leaf: the whole tree may be a single array.
        max_value: the largest magnitude drawn (float16-safe by default).
        allow_nonfinite: NaN and +-inf entries may occur.

    Examples:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5)
        ... @given(pytrees(dtypes=(jnp.bfloat16,), max_side=2))
        ... def check(tree):
        ...     for x in jax.tree_util.tree_leaves(tree):
        ...         assert x.dtype == jnp.bfloat16 and max(x.shape, default=0) <= 2
        >>> check()
    """
    specs = tree_specs(
        dtypes=dtypes,
        max_leaves=max_leaves,
        max_side=max_side,
        max_dims=max_dims,
        allow_scalar=allow_scalar,
        allow_empty=allow_empty,
        containers=containers,
        allow_bare_leaf=allow_bare_leaf,
    )
    return specs.flatmap(lambda s: arrays_like(s, max_value=max_value, allow_nonfinite=allow_nonfinite))


def params_and_grads(
    *,
    dtypes: Sequence[Any] = DEFAULT_DTYPES,
    grad_dtypes: Optional[Sequence[Any]] = None,
    max_value: float = DEFAULT_MAX_VALUE,
    grad_max_value: Optional[float] = None,
    allow_nonfinite: bool = False,
    **tree_kwargs: Any,
) -> st.SearchStrategy[tuple[Any, Any]]:
    """Pairs ``(params, grads)`` of the same tree structure and leaf shapes.

    Each grads leaf has its params leaf's dtype, unless `grad_dtypes` is given:
    then each grads leaf's dtype is drawn from it (``dtypes=(jnp.bfloat16,),
    grad_dtypes=(jnp.float32,)`` gives bf16 params with f32 grads).
    `tree_kwargs` go to `tree_specs` (`max_leaves`, `max_side`, ...).

    Examples:
        >>> from hypothesis import given, settings
        >>> def dtypes(tree):
        ...     return {str(x.dtype) for x in jax.tree_util.tree_leaves(tree)}
        >>> @settings(max_examples=5)
        ... @given(params_and_grads(dtypes=(jnp.bfloat16,), grad_dtypes=(jnp.float32,)))
        ... def check(pair):
        ...     params, grads = pair
        ...     assert dtypes(params) == {'bfloat16'} and dtypes(grads) == {'float32'}
        >>> check()
    """
    specs = tree_specs(dtypes=dtypes, **tree_kwargs)
    gmax = max_value if grad_max_value is None else grad_max_value

    def grad_specs(p_specs):
        if grad_dtypes is None:
            return st.just(p_specs)
        leaves, treedef = jax.tree_util.tree_flatten(p_specs)
        dts = st.sampled_from([jnp.dtype(d) for d in grad_dtypes])
        return st.lists(dts, min_size=len(leaves), max_size=len(leaves)).map(
            lambda ds: jax.tree_util.tree_unflatten(
                treedef, [jax.ShapeDtypeStruct(l.shape, d) for l, d in zip(leaves, ds)]
            )
        )

    def fill(p_specs):
        return st.tuples(
            arrays_like(p_specs, max_value=max_value, allow_nonfinite=allow_nonfinite),
            grad_specs(p_specs).flatmap(
                lambda g_specs: arrays_like(g_specs, max_value=gmax, allow_nonfinite=allow_nonfinite)
            ),
        )

    return specs.flatmap(fill)


def _magnitude(low: float, high: float) -> st.SearchStrategy[float]:
    """float32 numbers with magnitude in [low, high] and either sign."""
    mag = st.floats(*_f32_inward(low, high), width=32, allow_subnormal=False)
    return st.tuples(mag, st.booleans()).map(lambda ms: -ms[0] if ms[1] else ms[0])


def gradient_sequences(
    params: Any,
    length: int,
    *,
    dtype: Optional[Any] = None,
    max_value: float = 10.0,
    zeros: bool = True,
    huge: Optional[float] = DEFAULT_HUGE,
    tiny: Optional[float] = DEFAULT_TINY,
) -> st.SearchStrategy[list]:
    """Lists of `length` gradient trees shaped like `params` (a tree or a strategy of trees).

    Each step is either an all-zero tree (when `zeros`) or a tree whose entries
    mix ordinary values in ``[-max_value, max_value]`` with exact zeros, huge
    entries (magnitude in ``[huge / 8, huge]``) and tiny ones (``[tiny, 8 * tiny]``).
    Pass ``huge=None`` / ``tiny=None`` to leave those out. The defaults are normal
    float16 numbers. Each leaf has its params leaf's dtype unless `dtype` is given.

    Examples:
        >>> from hypothesis import given, settings
        >>> import jax.numpy as jnp
        >>> @settings(max_examples=5)
        ... @given(gradient_sequences({'w': jnp.ones(3, jnp.float16)}, 4))
        ... def check(seq):
        ...     assert len(seq) == 4
        ...     assert all(g['w'].shape == (3,) and g['w'].dtype == jnp.float16 for g in seq)
        >>> check()
    """
    if isinstance(params, st.SearchStrategy):
        return params.flatmap(
            lambda p: gradient_sequences(
                p, length, dtype=dtype, max_value=max_value, zeros=zeros, huge=huge, tiny=tiny
            )
        )
    specs = jax.tree_util.tree_map(
        lambda p: jax.ShapeDtypeStruct(np.shape(p), jnp.dtype(dtype if dtype is not None else p.dtype)),
        params,
    )
    parts = [floats32(max_value=max_value)]
    if zeros:
        parts.append(st.just(0.0))
    if huge is not None:
        parts.append(_magnitude(huge / 8, huge))
    if tiny is not None:
        parts.append(_magnitude(tiny, tiny * 8))
    mixed = arrays_like(specs, elements=st.one_of(parts))
    if zeros:
        zero_tree = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), specs)
        step = st.one_of(mixed, st.just(zero_tree))
    else:
        step = mixed
    return st.lists(step, min_size=length, max_size=length)


# --------------------------------------------------------------------------- hyperparameters


class Hyper(NamedTuple):
    """One row of `HYPERPARAMETERS`: the documented valid range and the range drawn.

    `kind` is ``"float"``, ``"int"``, ``"bool"`` or ``"choice"``. For numbers,
    ``valid = (low, high, low_inclusive, high_inclusive)`` is what the validator
    accepts and ``draw = (low, high)`` the (closed) sub-range `hyperparameters`
    samples by default; with ``edge_cases=True`` draws span the whole valid range
    (capped at ``draw``'s high end when the valid range is unbounded). For
    ``"choice"``, ``draw`` is the tuple of options. `optional` adds ``None``.
    `source` says where the valid range comes from.
    """

    kind: str
    valid: tuple = ()
    draw: tuple = ()
    optional: bool = False
    source: str = "API.md"


_INF = math.inf
# Factories for the recurring rows.
_LR = Hyper("float", (0.0, _INF, True, True), (1e-4, 1.0))  # learning_rate >= 0 (0 allowed, warm-up)
_DECAY = Hyper("float", (0.0, 1.0, True, False), (0.0, 0.999))  # b1, b2, momentum, decay, rho in [0, 1)
_EPS = Hyper("float", (0.0, _INF, True, True), (1e-8, 1e-3))  # eps >= 0
_EPS_ROOT = Hyper("float", (0.0, _INF, True, True), (0.0, 1e-8))  # eps_root >= 0
_NONNEG = Hyper("float", (0.0, _INF, True, True), (0.0, 1e-2))  # weight decay, l1, ... >= 0
_POS = Hyper("float", (0.0, _INF, False, True), (1e-2, 10.0))  # max_norm, max_delta > 0
_BOOL = Hyper("bool")
_MOMENTUM = _DECAY._replace(optional=True)  # None or [0, 1)
_HESSIAN_POWER = Hyper("float", (0.0, 1.0, True, True), (0.0, 1.0), source="validator (the paper's range)")


def _adam_like(lr: bool) -> dict[str, Hyper]:
    row = {"b1": _DECAY, "b2": _DECAY, "eps": _EPS, "eps_root": _EPS_ROOT, "nesterov": _BOOL}
    return ({"learning_rate": _LR} if lr else {}) | row


def _rprop(lr: bool) -> dict[str, Hyper]:
    row = {
        "eta_minus": Hyper("float", (0.0, 1.0, False, True), (0.1, 0.9), source="validator"),
        "eta_plus": Hyper("float", (1.0, _INF, True, True), (1.0, 2.0), source="validator"),
        # max_step_size >= min_step_size as well: see CONSTRAINTS.
        "min_step_size": Hyper("float", (0.0, _INF, True, True), (1e-7, 1e-3), source="validator"),
        "max_step_size": Hyper("float", (0.0, _INF, True, True), (1.0, 50.0), source="validator"),
    }
    return {"learning_rate": _LR._replace(draw=(1e-4, 1e-1))} | row


# The table: transformation name -> {argument: Hyper}. Only arguments with a
# documented or validated range are listed; everything else keeps its default.
HYPERPARAMETERS: dict[str, dict[str, Hyper]] = {
    # optimizers
    "sgd": {"learning_rate": _LR, "momentum": _MOMENTUM, "nesterov": _BOOL},
    "adagrad": {
        "learning_rate": _LR,
        "initial_accumulator_value": _NONNEG._replace(draw=(0.0, 1.0), source="validator"),
        "eps": _EPS,
    },
    "rmsprop": {
        "learning_rate": _LR,
        "decay": _DECAY,
        "eps": _EPS,
        "initial_scale": _NONNEG._replace(draw=(0.0, 1.0), source="validator"),
        "eps_in_sqrt": _BOOL,
        "centered": _BOOL,
        "momentum": _MOMENTUM,
        "nesterov": _BOOL,
    },
    "adam": _adam_like(lr=True),
    "adamw": _adam_like(lr=True) | {"weight_decay": _NONNEG},
    "adabelief": {k: v for k, v in _adam_like(lr=True).items() if k != "nesterov"},
    "adadelta": {"learning_rate": _LR._replace(optional=True), "rho": _DECAY, "eps": _EPS},
    "rprop": _rprop(lr=True),
    "adahessian": {
        "learning_rate": _LR,
        "b1": _DECAY,
        "b2": _DECAY,
        "eps": _EPS,
        "hessian_power": _HESSIAN_POWER,
        "weight_decay": _NONNEG,
    },
    "lbfgs": {
        "learning_rate": _LR._replace(optional=True),
        "memory_size": Hyper("int", (1, _INF, True, True), (1, 10), source="validator"),
    },
    # transformations
    "scale": {"step_size": Hyper("float", (-_INF, _INF, True, True), (-1.0, 1.0))},
    "scale_by_learning_rate": {"learning_rate": _LR, "flip_sign": _BOOL},
    "clip": {"max_delta": _POS},
    "clip_by_global_norm": {"max_norm": _POS},
    "trace": {"decay": _DECAY, "nesterov": _BOOL},
    "ema": {"decay": _DECAY, "debias": _BOOL},
    "scale_by_rss": {
        "initial_accumulator_value": _NONNEG._replace(draw=(0.0, 1.0), source="validator"),
        "eps": _EPS,
        "eps_in_sqrt": _BOOL,
    },
    "scale_by_rms": {
        "decay": _DECAY,
        "eps": _EPS,
        "initial_scale": _NONNEG._replace(draw=(0.0, 1.0), source="validator"),
        "eps_in_sqrt": _BOOL,
        "bias_correction": _BOOL,
    },
    "scale_by_adam": _adam_like(lr=False),
    "scale_by_belief": {k: v for k, v in _adam_like(lr=False).items() if k != "nesterov"},
    "scale_by_adadelta": {"rho": _DECAY, "eps": _EPS},
    "scale_by_rprop": _rprop(lr=True),
    "scale_by_adahessian": {
        "b1": _DECAY,
        "b2": _DECAY,
        "eps": _EPS,
        "hessian_power": _HESSIAN_POWER,
    },
    "scale_by_newton": {"damping": _NONNEG._replace(draw=(0.0, 1.0), source="validator")},
    "add_decayed_weights": {"weight_decay": _NONNEG},
    "add_l1_decay": {"l1": _NONNEG},
    "add_noise": {
        "eta": _NONNEG._replace(draw=(0.0, 1.0), source="validator"),
        "gamma": _NONNEG._replace(draw=(0.0, 1.0), source="validator"),
        "key": Hyper("int", (0, 2**31 - 1, True, True), (0, 2**31 - 1), source="a seed (not validated)"),
    },
    "apply_if_finite": {
        "max_consecutive_errors": Hyper("int", (0, _INF, True, True), (0, 5), source="validator"),
    },
    "MultiSteps": {"every_k_schedule": Hyper("int", (1, _INF, True, True), (1, 4), source="validator")},
    "lookahead": {
        "sync_period": Hyper("int", (1, _INF, True, True), (1, 10), source="validator"),
        "slow_step_size": Hyper("float", (0.0, 1.0, True, True), (0.0, 1.0), source="validator"),
        "reset_state": _BOOL,
    },
    "reduce_on_plateau": {
        "factor": Hyper("float", (0.0, 1.0, False, True), (0.01, 1.0), source="validator"),
        "patience": Hyper("int", (1, _INF, True, True), (1, 20)),
        "rtol": _NONNEG._replace(draw=(0.0, 1e-2), source="validator"),
        "atol": _NONNEG._replace(draw=(0.0, 1e-2), source="validator"),
        "cooldown": Hyper("int", (0, _INF, True, True), (0, 5), source="validator"),
        "accumulation_size": Hyper("int", (1, _INF, True, True), (1, 5), source="validator"),
        "min_scale": _NONNEG._replace(draw=(0.0, 1e-2), source="validator"),
        "mode": Hyper("choice", (), ("min", "max")),
    },
    "early_stopping": {
        "patience": Hyper("int", (1, _INF, True, True), (1, 20)),
        "min_delta": _NONNEG._replace(draw=(0.0, 1e-2), source="validator"),
        "mode": Hyper("choice", (), ("min", "max")),
    },
}


def _f32_inward(lo: float, hi: float) -> tuple[float, float]:
    """The float32 numbers nearest to [lo, hi] from inside (hypothesis' width=32 needs them)."""
    lo32, hi32 = np.float32(lo), np.float32(hi)
    if float(lo32) < lo:
        lo32 = np.nextafter(lo32, np.float32(np.inf))
    if float(hi32) > hi:
        hi32 = np.nextafter(hi32, np.float32(-np.inf))
    return float(lo32), float(hi32)


def _nesterov_needs_momentum(kw: dict) -> dict:
    return kw | {"nesterov": bool(kw["nesterov"]) and kw["momentum"] is not None}


def _max_step_at_least_min(kw: dict) -> dict:
    return kw | {"max_step_size": max(kw["max_step_size"], kw["min_step_size"])}


# Constraints between arguments of one row, applied to every draw of `hyperparameters`.
CONSTRAINTS: dict[str, Callable[[dict], dict]] = {
    "sgd": _nesterov_needs_momentum,
    "rmsprop": _nesterov_needs_momentum,
    "rprop": _max_step_at_least_min,
    "scale_by_rprop": _max_step_at_least_min,
}


def _number(h: Hyper, edge_cases: bool) -> st.SearchStrategy:
    lo, hi, lo_in, hi_in = h.valid
    dlo, dhi = h.draw
    if edge_cases:
        # The whole valid range, boundaries included where valid; unbounded sides capped.
        lo_, hi_ = (lo if math.isfinite(lo) else dlo), (hi if math.isfinite(hi) else dhi)
        excl_lo = math.isfinite(lo) and not lo_in
        excl_hi = math.isfinite(hi) and not hi_in
    else:
        lo_, hi_, excl_lo, excl_hi = dlo, dhi, False, False
    if h.kind == "int":
        return st.integers(int(lo_) + excl_lo, int(hi_) - excl_hi)
    # float32-representable draws, so that a decay rate below 1 stays below 1 in float32.
    flo, fhi = _f32_inward(lo_, hi_)
    draws = st.floats(
        flo, fhi, width=32, allow_subnormal=False, exclude_min=excl_lo and flo == lo_,
        exclude_max=excl_hi and fhi == hi_,
    ).map(float)
    if edge_cases:
        bounds = [b for b, ok in ((lo_, not excl_lo), (hi_, not excl_hi)) if ok]
        if bounds:
            draws = st.one_of(st.sampled_from(bounds), draws)
    return draws


def _hyper(h: Hyper, edge_cases: bool) -> st.SearchStrategy:
    if h.kind == "bool":
        s: st.SearchStrategy = st.booleans()
    elif h.kind == "choice":
        s = st.sampled_from(h.draw)
    else:
        s = _number(h, edge_cases)
    return st.one_of(st.none(), s) if h.optional else s


def _row(name: str) -> dict[str, Hyper]:
    try:
        return HYPERPARAMETERS[name]
    except KeyError:
        raise KeyError(
            f"no hyperparameter table for {name!r}; known: {', '.join(sorted(HYPERPARAMETERS))}"
        ) from None


def hyperparameters(
    name: str, *, edge_cases: bool = False, fixed: Optional[Mapping[str, Any]] = None
) -> st.SearchStrategy[dict[str, Any]]:
    """Keyword arguments for the built-in transformation `name`, all valid.

    Draws every argument listed in ``HYPERPARAMETERS[name]`` from its ``draw``
    range (with `edge_cases`, from the whole valid range, boundaries included).
    `fixed` pins some arguments. ``CONSTRAINTS`` ties arguments together
    (``nesterov=True`` only with a momentum; ``max_step_size >= min_step_size``).

    Examples:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5)
        ... @given(hyperparameters('adam'))
        ... def check(kwargs):
        ...     assert sorted(kwargs) == ['b1', 'b2', 'eps', 'eps_root', 'learning_rate', 'nesterov']
        ...     assert 0 <= kwargs['b1'] < 1 and kwargs['eps'] >= 0
        >>> check()
    """
    row = _row(name)
    fixed = dict(fixed or {})
    strategies = {k: st.just(v) for k, v in fixed.items()}
    for arg, h in row.items():
        if arg not in strategies:
            strategies[arg] = _hyper(h, edge_cases)
    drawn = st.fixed_dictionaries(strategies)
    if name in CONSTRAINTS:
        drawn = drawn.map(CONSTRAINTS[name])
    return drawn


def invalid_hyperparameters(
    name: str, *, only: Optional[Sequence[str]] = None
) -> st.SearchStrategy[tuple[str, dict[str, Any]]]:
    """``(argument, kwargs)`` where `argument` is outside its valid range and the rest valid.

    For testing that the validators raise ``ValueError`` naming the argument.
    Only numeric arguments with a finite bound are broken, and only those whose
    ``source`` does not say "not validated" (and, given `only`, named in it);
    ``None`` is never drawn.

    Examples:
        >>> from hypothesis import given, settings
        >>> @settings(max_examples=5)
        ... @given(invalid_hyperparameters('adam', only=['b2']))
        ... def check(arg_and_kwargs):
        ...     arg, kwargs = arg_and_kwargs
        ...     assert arg == 'b2' and not 0 <= kwargs['b2'] < 1
        >>> check()
    """
    row = _row(name)
    breakable = []
    for arg, h in row.items():
        if h.kind not in ("float", "int") or "not validated" in h.source:
            continue
        if only is not None and arg not in only:
            continue
        lo, hi, lo_in, hi_in = h.valid
        outside = []
        if math.isfinite(lo):
            below = st.floats(lo - 10.0, lo, exclude_max=lo_in, width=32, allow_subnormal=False)
            if h.kind == "int":
                below = st.integers(int(lo) - 10, int(lo) - (1 if lo_in else 0))
            outside.append(below)
        if math.isfinite(hi):
            above = st.floats(hi, hi + 10.0, exclude_min=hi_in, width=32, allow_subnormal=False)
            if h.kind == "int":
                above = st.integers(int(hi) + (1 if hi_in else 0), int(hi) + 10)
            outside.append(above)
        if outside:
            breakable.append((arg, st.one_of(outside)))
    if not breakable:
        raise ValueError(f"{name!r} has no validated argument with a finite bound to break")

    def build(choice):
        arg, bad = choice
        valid = {k: _hyper(h._replace(optional=False), False) for k, h in row.items() if k != arg}
        return st.tuples(st.just(arg), st.fixed_dictionaries(valid | {arg: bad}))

    return st.sampled_from(breakable).flatmap(build)
