"""Runs a transformation on the params packed into one vector per dtype (for trees of many small leaves)."""

from __future__ import annotations

import math
import re
from typing import Any, Dict, List, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks
from gradxform._base import GradientTransformation
from gradxform._combine import call_update, check_transform

_SLOT_KEY = re.compile(r"^([a-z][a-z0-9_]*)\[([0-9,]*)\]$")


class FlattenState(NamedTuple):
    inner_state: Any  # the inner transformation's state, over {dtype name: packed 1-D vector}
    # Like the params; each leaf a one-entry dict {"<dtype>[<shape>]": int32 scalar}: where
    # the leaf starts in its dtype's vector. The key records the leaf's dtype and shape.
    offsets: Any


def _slot_key(leaf: Any) -> str:
    shape = ",".join(str(int(d)) for d in np.shape(leaf))
    return f"{jnp.dtype(leaf.dtype).name}[{shape}]"


def _is_slot(x: Any) -> bool:
    return (
        type(x) is dict and len(x) == 1
        and isinstance(next(iter(x)), str) and _SLOT_KEY.match(next(iter(x))) is not None
    )


def _parse_slot(key: str) -> Tuple[str, Tuple[int, ...]]:
    m = _SLOT_KEY.match(key)
    assert m is not None, key
    dims = m.group(2)
    return m.group(1), tuple(int(d) for d in dims.split(",")) if dims else ()


class _Layout(NamedTuple):
    dtypes: Tuple[str, ...]  # per leaf
    shapes: Tuple[Tuple[int, ...], ...]  # per leaf
    offsets: Tuple[int, ...]  # per leaf, into its dtype's vector
    groups: Dict[str, List[int]]  # dtype name -> leaf indices, in leaf order


def _layout(dtypes: List[str], shapes: List[Tuple[int, ...]]) -> _Layout:
    groups: Dict[str, List[int]] = {}
    filled: Dict[str, int] = {}
    offsets = []
    for i, (dt, shape) in enumerate(zip(dtypes, shapes)):
        groups.setdefault(dt, []).append(i)
        offsets.append(filled.get(dt, 0))
        filled[dt] = offsets[-1] + int(np.prod(shape, dtype=np.int64))
    return _Layout(tuple(dtypes), tuple(shapes), tuple(offsets), groups)


def _ravel(x: Any) -> jax.Array:
    x = jnp.asarray(x)
    return x if x.ndim == 1 else jax.lax.reshape(x, (x.size,))


def _concatenate(parts: List[jax.Array], two_level: bool) -> jax.Array:
    """`jnp.concatenate(parts)`, in two levels when asked and there are many parts.

    Run eagerly (`init`), a concatenation of n arrays is compiled on its own, in
    time linear in n on CPU (1.2-2.4 s for 2,000). In chunks of about sqrt(n)
    parts, materialized by an optimization barrier (else XLA merges them back),
    chunks of one shape share one compiled kernel: `init` of 2,000 leaves takes
    0.85 s instead of 2.6 s. Inside the jitted update XLA compiles the one-level
    concatenation as fast and runs it in one pass, so `update` keeps it.
    """
    n = len(parts)
    if not two_level or n <= _ONE_LEVEL_MAX:
        return parts[0] if n == 1 else jnp.concatenate(parts)
    k = math.isqrt(n - 1) + 1
    chunks = [jnp.concatenate(parts[i:i + k]) for i in range(0, n, k)]
    return jnp.concatenate(jax.lax.optimization_barrier(chunks))


_ONE_LEVEL_MAX = 64


def _pack(leaves: List[Any], layout: _Layout, two_level: bool = False) -> Dict[str, jax.Array]:
    return {dt: _concatenate([_ravel(leaves[i]) for i in idx], two_level) for dt, idx in layout.groups.items()}


def flatten(inner: Any) -> GradientTransformation:
    r"""Runs `inner` on one packed vector per dtype instead of on the params' leaves.

    For trees of many small leaves. XLA compiles and launches a few kernels per
    leaf and transformation, and on CPU the launches cost more than the arithmetic
    once leaves are small: 2,000 leaves of 4,096 floats take about 10x the time of
    one leaf of the same size for an Adam step. Packed, the inner transformation
    runs as a few kernels over each dtype's vector; the gradients are concatenated
    in, and every leaf's update is read back out by one kernel that XLA fuses with
    `apply_updates`.

    The read-back slices at offsets held in the state as int32 scalars (not
    constants), so leaves of the same shape share one compiled kernel. With
    constant offsets, as in ``optax.flatten``, each leaf gets its own: XLA
    compiles 2,000 distinct kernels for 2,000 leaves, for over half a minute.
    The price is one more buffer per leaf crossing the jit boundary (a few
    microseconds each per step): on 2,000 leaves of 4,096 floats (CPU, see
    ``benchmarks/``) a step takes about 0.85x the time of optax's unflattened
    Adam and 1.55x that of ``optax.flatten``'s, and the first call (trace and
    compile) about 0.3x the former's and 0.14x the latter's.

    Args:
        inner: the transformation to run on the packed vectors. It sees params and
            updates as ``{dtype name: 1-D array}``.

    Returns:
        A `GradientTransformation` with the same updates as `inner` for every
        transformation that treats all entries alike, to float rounding:
        element-wise ones to the last bit in our tests, up to an ulp where
        XLA's CPU code rounds an element by its position in the array; ones
        with a global norm (``clip_by_global_norm``) to a few ulps (the sum runs
        in another order). Transformations that act leaf by leaf
        (``clip_by_block_rms``, ``scale_by_trust_ratio``, `masked`,
        `multi_transform`, ``scale_by_adahessian`` with spatial averaging) see
        one leaf per dtype and change meaning: do not flatten them.

    Raises:
        TypeError: `inner` is not a transformation; at update, a state from
            another transformation, or update leaves of mixed dtypes where the
            params given to init had one.
        TreeMismatchError: updates or params whose structure, shapes or leaf
            count differ from the params given to init (it names the key path).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
        >>> opt = gx.flatten(gx.adam(0.1))
        >>> state = opt.init(params)
        >>> sorted(state.inner_state[0].mu)  # one vector per dtype
        ['float32']
        >>> state.inner_state[0].mu["float32"].shape
        (7,)
        >>> u, state = opt.update({"a": jnp.ones(3), "b": jnp.ones((2, 2))}, state, params)
        >>> u["b"].shape, round(u["b"][0, 0].item(), 4)
        ((2, 2), -0.1)

    Note:
        The state (moments and all) is packed too, so it does not follow a
        per-leaf sharding: flatten trees of small replicated leaves, not sharded
        ones. Memory: the step holds a packed copy of the gradients (and of the
        params if `inner` reads them) besides the unpacked ones.
    """
    fn = "flatten"
    check_transform(inner, f"{fn}: inner")

    def init_fn(params):
        leaves, treedef = jax.tree_util.tree_flatten(params)
        keys = [_slot_key(x) for x in leaves]
        layout = _layout([jnp.dtype(x.dtype).name for x in leaves], [tuple(np.shape(x)) for x in leaves])
        offsets = jax.tree_util.tree_unflatten(
            treedef, [{k: jnp.asarray(o, jnp.int32)} for k, o in zip(keys, layout.offsets)]
        )
        return FlattenState(inner_state=inner.init(_pack(leaves, layout, two_level=True)), offsets=offsets)

    def update_fn(updates, state, params=None, **extra_args):
        _checks.check_state_type(state, FlattenState, fn)
        slots, treedef = jax.tree_util.tree_flatten(state.offsets, is_leaf=_is_slot)
        parsed = [_parse_slot(next(iter(s))) for s in slots]
        layout = _layout([p[0] for p in parsed], [p[1] for p in parsed])
        like = jax.tree_util.tree_unflatten(
            treedef, [jax.ShapeDtypeStruct(shape, jnp.dtype(dt)) for dt, shape in parsed]
        )
        _checks.check_tree_like(updates, like, tree_name="updates", like_name="params given to init",
                                fn=fn, allow_none=False)
        u_leaves = treedef.flatten_up_to(updates)
        for dt, idx in layout.groups.items():
            got = {jnp.dtype(u_leaves[i].dtype).name for i in idx}
            if len(got) > 1:
                paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(like)[0]]
                detail = ", ".join(f"{paths[i]}: {jnp.dtype(u_leaves[i].dtype).name}" for i in idx)
                raise TypeError(
                    f"{fn}: the updates of the {dt} params must share one dtype to be packed "
                    f"together, got {detail}. Cast them to one dtype first."
                )
        p_packed = None
        if params is not None:
            _checks.check_tree_like(params, like, tree_name="params", like_name="params given to init",
                                    fn=fn, allow_none=False)
            p_packed = _pack(treedef.flatten_up_to(params), layout)
        new_u, inner_state = call_update(inner, _pack(u_leaves, layout), state.inner_state, p_packed, extra_args)

        out = []
        for i, slot in enumerate(slots):
            vec = new_u[layout.dtypes[i]]
            shape = layout.shapes[i]
            if len(layout.groups[layout.dtypes[i]]) == 1:
                out.append(jnp.reshape(vec, shape))
                continue
            size = int(np.prod(shape, dtype=np.int64))
            offset = next(iter(slot.values()))
            piece = jax.lax.dynamic_slice(vec, (offset,), (size,), allow_negative_indices=False)
            out.append(jax.lax.reshape(piece, shape) if piece.shape != shape else piece)
        return jax.tree_util.tree_unflatten(treedef, out), FlattenState(inner_state, state.offsets)

    return GradientTransformation(init_fn, update_fn)
