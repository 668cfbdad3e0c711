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
  built-in transformations, drawn from the ranges each factory declares
  (``factory.hyperparameters``, collected in `HYPERPARAMETERS`).

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
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from gradxform._hyper import Hyper
from gradxform.testing._hyper_strategies import (
    CONSTRAINTS,
    HYPERPARAMETERS,
    _f32_inward,
    hyperparameters,
    invalid_hyperparameters,
)

# The NamedTuple node drawn here is the one the default examples use.
from gradxform.testing._examples import Layer

__all__ = [
    "CONSTRAINTS",
    "DEFAULT_DTYPES",
    "HYPERPARAMETERS",
    "Hyper",
    "arrays_like",
    "gradient_sequences",
    "hyperparameters",
    "invalid_hyperparameters",
    "leaf_specs",
    "params_and_grads",
    "pytrees",
    "shapes",
    "tree_specs",
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
