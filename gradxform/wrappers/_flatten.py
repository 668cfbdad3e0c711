"""Runs a transformation on the params packed into one vector per dtype (for trees of many small leaves)."""

from __future__ import annotations

import math
from typing import Any, Dict, List, NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation
from gradxform._combine import call_update, check_transform


class FlattenState(NamedTuple):
    """Not used by `flatten` any more: its state is now the inner state itself, as optax's.

    Kept so that imports of the name keep working; nothing builds it.
    """

    inner_state: Any
    offsets: Any


class _Layout(NamedTuple):
    keys: Tuple[str, ...]  # per leaf: the name of the dtype group it is packed in
    shapes: Tuple[Tuple[int, ...], ...]  # per leaf
    offsets: Tuple[int, ...]  # per leaf, into its group's vector
    groups: Dict[str, List[int]]  # group name -> leaf indices, in leaf order


def _layout(keys: List[str], shapes: List[Tuple[int, ...]]) -> _Layout:
    groups: Dict[str, List[int]] = {}
    filled: Dict[str, int] = {}
    offsets = []
    for i, (key, shape) in enumerate(zip(keys, shapes)):
        groups.setdefault(key, []).append(i)
        offsets.append(filled.get(key, 0))
        filled[key] = offsets[-1] + int(np.prod(shape, dtype=np.int64))
    return _Layout(tuple(keys), tuple(shapes), tuple(offsets), groups)


def _dtype_name(x: Any) -> str:
    return jnp.dtype(x.dtype).name


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


def _pack(leaves: List[Any], layout: _Layout, two_level: bool = False) -> Any:
    """The leaves packed by group: one 1-D vector when there is one group, else {group: vector}."""
    packed = {key: _concatenate([_ravel(leaves[i]) for i in idx], two_level) for key, idx in layout.groups.items()}
    return next(iter(packed.values())) if len(packed) == 1 else packed


def _groups(packed: Any, layout: _Layout) -> Dict[str, Any]:
    """`_pack`'s output as {group: vector} whatever the number of groups."""
    return {next(iter(layout.groups)): packed} if len(layout.groups) == 1 else packed


_INT32_MAX = int(np.iinfo(np.int32).max)


def _opaque_offsets(offsets: List[int], probe: jax.Array) -> List[jax.Array]:
    """The int32 scalars `offsets`, as values XLA cannot see (so it cannot fold them into kernels).

    A slice at a constant offset makes every leaf's read-back kernel a distinct
    computation, and XLA compiles each one separately (about 17 ms apiece on CPU:
    35 s for 2,000 leaves, ``optax.flatten``'s first call); at an offset it cannot
    see, leaves of one shape share one compiled kernel that takes the offset as an
    operand. The offsets leave a ``while`` loop whose trip count depends on the data
    (``probe != probe``: once for a NaN, else never) and whose body swaps two copies
    of the offsets (the identity: both copies are equal). XLA does not evaluate the
    loop, so its outputs are run-time values; the loop has no kernel in its body and
    costs one condition check per step (per `_LOOP_CHUNK` offsets). An
    ``optimization_barrier`` does not hide a constant: XLA's CPU pipeline removes
    barriers before folding.
    """
    trips = (probe != probe).astype(jnp.int32)

    def body(carry):
        k, a, b = carry
        return k + 1, b, a

    out: List[jax.Array] = []
    for i in range(0, len(offsets), _LOOP_CHUNK):
        consts = [jnp.asarray(o, jnp.int32) for o in offsets[i:i + _LOOP_CHUNK]]
        out += jax.lax.while_loop(lambda c: c[0] < trips, body, (jnp.int32(0), consts, list(consts)))[1]
    return out


# Offsets per loop. Each loop compiles its condition and counter (a few ms); one loop
# over thousands of pairs compiles no faster. 128 leaves a 2,000-leaf tree 16 loops.
_LOOP_CHUNK = 128


def _check_state(state: Any, packed: Any, inner: Any, fn: str) -> None:
    """`state` has the structure and shapes `inner.init` gives the packed updates (at trace time)."""
    want = jax.eval_shape(inner.init, packed)
    got_leaves, got_def = jax.tree_util.tree_flatten(state)
    want_leaves, want_def = jax.tree_util.tree_flatten(want)
    if got_def != want_def:
        raise TypeError(
            f"{fn}.update expected the state that {fn}(inner).init builds (inner's state over the "
            f"packed params: {want_def}), got {got_def}. Was this state built by another "
            "transformation, or by inner.init on the unpacked params?"
        )
    for path_leaf, a, b in zip(jax.tree_util.tree_flatten_with_path(state)[0], got_leaves, want_leaves):
        if np.shape(a) != np.shape(b):
            sizes = {k: int(v.size) for k, v in _as_dict(packed).items()}
            raise _checks.TreeMismatchError(
                f"{fn}: the updates pack into {sizes} entries, but the state was built for params of "
                f"another size (state{jax.tree_util.keystr(path_leaf[0])} has shape "
                f"{tuple(np.shape(a))}, expected {tuple(np.shape(b))}): a leaf is missing, added or "
                "of another shape than in the params given to init. Pass the params to update to "
                "get the key path."
            )


def _as_dict(packed: Any) -> Dict[str, Any]:
    return packed if isinstance(packed, dict) else {"vector": packed}


def flatten(inner: Any) -> GradientTransformation:
    r"""Runs `inner` on the params packed into one vector (per dtype) instead of on their leaves.

    For trees of many small leaves. XLA compiles and launches a few kernels per
    leaf and transformation, and on CPU the launches cost more than the arithmetic
    once leaves are small: 2,000 leaves of 4,096 floats take about 10x the time of
    one leaf of the same size for an Adam step. Packed, the inner transformation
    runs as a few kernels over the vector; the gradients are concatenated in, and
    every leaf's update is read back out by one kernel that XLA fuses with
    `apply_updates`.

    The state is `inner`'s state over the packed vector, as ``optax.flatten``'s:
    for params of one dtype the same leaves, shapes and tree (an optax checkpoint
    loads as it is). Params of several dtypes are packed into one vector per
    dtype and `inner` sees ``{dtype name: vector}`` (``optax.flatten`` promotes
    them all to one dtype, here bfloat16 params keep bfloat16 moments).

    The read-back slices at offsets that XLA cannot constant-fold (they come out
    of a never-run loop), so leaves of one shape share one compiled kernel. With
    constant offsets, as in ``optax.flatten``, each leaf gets its own: XLA
    compiles 2,000 distinct kernels for 2,000 leaves, for over half a minute. On
    2,000 leaves of 4,096 floats (CPU, ``python -m benchmarks.flatten_profile``) a
    step takes the time of ``optax.flatten``'s (0.99x, interquartile range
    0.92-1.05 over 300 rounds) and the first call (trace and compile) about 0.3x
    that of optax's unflattened Adam and 0.2x that of ``optax.flatten``'s.

    Args:
        inner: the transformation to run on the packed vector. It sees params and
            updates as one 1-D array, or ``{dtype name: 1-D array}`` for params of
            several dtypes.

    Returns:
        A `GradientTransformation` with the same updates as `inner` for every
        transformation that treats all entries alike, to float rounding:
        element-wise ones to the last bit in our tests, up to an ulp where
        XLA's CPU code rounds an element by its position in the array; ones
        with a global norm (``clip_by_global_norm``) to a few ulps (the sum runs
        in another order). Transformations that act leaf by leaf
        (``clip_by_block_rms``, ``scale_by_trust_ratio``, `masked`,
        `multi_transform`, ``scale_by_adahessian`` with spatial averaging) see
        one leaf and change meaning: do not flatten them.

    Raises:
        TypeError: `inner` is not a transformation; at update, a state that is not
            `inner`'s over the packed vector, or update leaves of mixed dtypes
            where the params had one.
        TreeMismatchError: updates whose structure or shapes differ from the
            params given to update (it names the key path), or whose packed size
            differs from the params given to init.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> params = {"a": jnp.ones(3), "b": jnp.ones((2, 2))}
        >>> opt = gx.flatten(gx.adam(0.1))
        >>> state = opt.init(params)
        >>> state[0].mu.shape  # adam's state over one vector of 3 + 4 entries
        (7,)
        >>> u, state = opt.update({"a": jnp.ones(3), "b": jnp.ones((2, 2))}, state, params)
        >>> u["b"].shape, round(u["b"][0, 0].item(), 4)
        ((2, 2), -0.1)

    Note:
        The state (moments and all) is packed too, so it does not follow a
        per-leaf sharding: flatten trees of small replicated leaves, not sharded
        ones. Memory: the step holds a packed copy of the gradients (and of the
        params if `inner` reads them) besides the unpacked ones. Updates are
        packed by the params' dtypes when `update` gets the params, else by their
        own dtypes: give the params to update when the gradients of a tree of
        several dtypes come in other dtypes than the params.
    """
    fn = "flatten"
    check_transform(inner, f"{fn}: inner")

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays
        leaves = jax.tree_util.tree_leaves(params)
        layout = _layout([_dtype_name(x) for x in leaves], [tuple(np.shape(x)) for x in leaves])
        return inner.init(_pack(leaves, layout, two_level=True))

    def update_fn(updates, state, params=None, **extra_args):
        # Python floats and integer gradients: float arrays (the dtype policy's cast).
        updates, params = _tree.as_updates(updates), _tree.arrays(params)
        u_leaves, treedef = jax.tree_util.tree_flatten(updates)
        p_leaves = None
        if params is not None:
            _checks.check_tree_like(updates, params, tree_name="updates", like_name="params",
                                    fn=fn, allow_none=False)
            p_leaves = treedef.flatten_up_to(params)
        keys = [_dtype_name(x) for x in (p_leaves if p_leaves is not None else u_leaves)]
        layout = _layout(keys, [tuple(np.shape(x)) for x in u_leaves])
        for key, idx in layout.groups.items():
            got = {_dtype_name(u_leaves[i]) for i in idx}
            if len(got) > 1:
                paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(updates)[0]]
                detail = ", ".join(f"{paths[i]}: {_dtype_name(u_leaves[i])}" for i in idx)
                raise TypeError(
                    f"{fn}: the updates of the {key} params must share one dtype to be packed "
                    f"together, got {detail}. Cast them to one dtype first."
                )
        u_packed = _pack(u_leaves, layout)
        _check_state(state, u_packed, inner, fn)
        p_packed = None if p_leaves is None else _pack(p_leaves, layout)
        new_u, inner_state = call_update(inner, u_packed, state, p_packed, extra_args)
        return jax.tree_util.tree_unflatten(treedef, _unpack(new_u, layout, u_leaves)), inner_state

    return GradientTransformation(init_fn, update_fn)


def _unpack(packed: Any, layout: _Layout, like: List[Any]) -> List[jax.Array]:
    """Each leaf's piece of its group's vector, in its shape: a dynamic slice at an opaque offset."""
    vectors = _groups(packed, layout)
    # The offsets that need a slice: groups of several leaves, non-empty leaves.
    sliced = [i for idx in layout.groups.values() if len(idx) > 1 for i in idx if math.prod(layout.shapes[i]) > 0]
    total = max((layout.offsets[i] + math.prod(layout.shapes[i]) for i in sliced), default=0)
    opaque: Dict[int, Any] = {}
    if sliced and total <= _INT32_MAX:
        probe = _ravel(like[sliced[0]])[0]
        opaque = dict(zip(sliced, _opaque_offsets([layout.offsets[i] for i in sliced], probe)))
    out = []
    for i, shape in enumerate(layout.shapes):
        vec = vectors[layout.keys[i]]
        size = math.prod(shape)
        if len(layout.groups[layout.keys[i]]) == 1:
            piece = vec
        elif size == 0:
            piece = jnp.zeros((0,), vec.dtype)
        elif i in opaque:
            piece = jax.lax.dynamic_slice(vec, (opaque[i],), (size,), allow_negative_indices=False)
        else:  # offsets past int32: constant slices (one compiled kernel per leaf)
            piece = jax.lax.slice(vec, (layout.offsets[i],), (layout.offsets[i] + size,))
        out.append(jax.lax.reshape(piece, shape) if piece.shape != shape else piece)
    return out
