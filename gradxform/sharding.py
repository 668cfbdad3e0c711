"""Optimizer state sharded over a device mesh (ZeRO stage 1), in one process or many.

`shard_state` wraps any transformation so that its parameter-shaped state (Adam's
``mu`` and ``nu``, momentum traces, accumulators) is split over one axis of a
`jax.sharding.Mesh`; `state_shardings` gives the `NamedSharding` of every state
leaf, for ``jax.jit(out_shardings=...)`` and for restoring a checkpoint onto a
mesh. Nothing here is specific to one process: under ``jax.distributed.initialize``
the mesh spans every process's devices and the same code runs unchanged.

The arithmetic is the inner transformation's, run by XLA's SPMD partitioner on
the sharded layout: each device updates its slice of the state from its slice
of the gradients, and the updates are gathered back to the gradients' layout
(an all-gather per split leaf; a reduction over the whole tree, such as a global
norm, adds an all-reduce of a scalar).

References:
    Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
    Parameter Models", SC 2020 (stage 1: optimizer state partitioning).
    Xu et al., "Automatic Cross-Replica Sharding of Weight Update in
    Data-Parallel Training", arXiv:2004.13336, 2020.
"""

from __future__ import annotations

import threading
from typing import Any

import jax
from jax.experimental.shard_alike import shard_alike
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from gradxform._base import (
    GradientTransformationExtraArgs,
    ParamsPlaceholder,
    is_placeholder,
)

__all__ = ["shard_state", "state_shardings"]

_LAYOUT_ATTR = "_gx_shard_state_layout"  # (mesh, axis) on the init function of a `shard_state`


def _keystr(path: tuple) -> str:
    return jax.tree_util.keystr(path)


class _NotParam:
    """Marks a state leaf outside every params-shaped subtree."""


_NOT_PARAM = _NotParam()


def _param_of_each_leaf(init: Any, state: Any, params: Any) -> list:
    """For each leaf of `state` (flattened), the params leaf it is shaped like, or None.

    A leaf is parameter-shaped when it lies in a subtree of the state where
    ``init`` put its params (found by calling ``init`` with a placeholder, as
    `gx.tree_map_params` does) at the key path of a params leaf of the same
    shape (or at a key path that extends the parameter's, as SM3's lists of
    per-axis accumulators do). When ``init`` cannot run on the placeholder (it reads the params'
    values, ravels them, ...), a leaf of at least one dimension is matched to the
    params leaf of the same shape whose key path ends its own (else the first
    params leaf of that shape).
    """
    param_items = jax.tree_util.tree_flatten_with_path(params)[0]
    state_items = jax.tree_util.tree_flatten_with_path(state)[0]

    def mark(template, value):
        if is_placeholder(template):  # a params-shaped subtree: each leaf's key path inside it
            return jax.tree_util.tree_map_with_path(lambda path, _: _keystr(path), value)
        return jax.tree_util.tree_map(lambda _: _NOT_PARAM, value)

    try:
        template = init(ParamsPlaceholder())
        marks = jax.tree_util.tree_leaves(jax.tree_util.tree_map(mark, template, state, is_leaf=is_placeholder))
        if len(marks) != len(state_items):
            raise ValueError("the placeholder's state does not line up with the state")
    except Exception:  # noqa: BLE001 - init needs real params: match by shape and key path
        marks = None
    by_path = {_keystr(path): leaf for path, leaf in param_items}
    out = []
    for i, (path, leaf) in enumerate(state_items):
        shape = tuple(getattr(leaf, "shape", ()))
        if not shape:
            out.append(None)
        elif marks is not None:  # the param at that key path, or at a prefix of it (SM3's per-axis lists)
            mark = marks[i]
            found = [(k, p) for k, p in by_path.items()
                     if isinstance(mark, str) and mark.startswith(k) and tuple(getattr(p, "shape", ())) == shape]
            out.append(max(found, key=lambda kp: len(kp[0]))[1] if found else None)
        else:
            key = _keystr(path)
            same = [(_keystr(k), p) for k, p in param_items if tuple(getattr(p, "shape", ())) == shape]
            suffix = [(k, p) for k, p in same if key.endswith(k)]
            if suffix:
                out.append(max(suffix, key=lambda kp: len(kp[0]))[1])
            else:
                out.append(same[0][1] if same else None)
    return out


def _split_spec(shape: tuple, axis: str, size: int) -> P:
    """`axis` on the first dimension whose size `size` divides; replicated if there is none."""
    for d, n in enumerate(shape):
        if n > 0 and n % size == 0:
            return P(*([None] * d + [axis]))  # no trailing Nones: the form jit gives its outputs (no retrace)
    return P()


def _layout(state: Any, params: Any, init: Any, mesh: Mesh, axis: str | None) -> Any:
    """The `NamedSharding` of each state leaf: split over `axis`, or the param's own when `axis` is None."""
    leaves, treedef = jax.tree_util.tree_flatten(state)
    matched = _param_of_each_leaf(init, state, params)
    replicated = NamedSharding(mesh, P())
    out = []
    for leaf, param in zip(leaves, matched):
        if param is None:
            out.append(replicated)
        elif axis is not None:
            out.append(NamedSharding(mesh, _split_spec(tuple(leaf.shape), axis, mesh.shape[axis])))
        else:
            own = getattr(param, "sharding", None)
            out.append(NamedSharding(mesh, own.spec) if isinstance(own, NamedSharding) else replicated)
    return jax.tree_util.tree_unflatten(treedef, out)


_RECORDER = threading.local()  # while `state_shardings` traces an init: id(leaf) -> (leaf, sharding)


def _put(tree: Any, shardings: Any) -> Any:
    """Each leaf on its sharding: a constraint under tracing, a transfer otherwise."""
    recorded = getattr(_RECORDER, "leaves", None)

    def put(x, s):
        if isinstance(x, jax.core.Tracer):
            x = jax.lax.with_sharding_constraint(x, s)
            if recorded is not None:
                recorded[id(x)] = (x, s)  # the leaf is kept alive with it, so its id stays its own
            return x
        return jax.device_put(x, s)

    return jax.tree_util.tree_map(put, tree, shardings)


def _on_mesh(x: Any, mesh: Mesh) -> Any:
    """A concrete array on other devices than the mesh's, replicated onto the mesh (tracers: unchanged)."""
    concrete = isinstance(x, jax.Array) and not isinstance(x, jax.core.Tracer)
    if concrete and x.sharding.device_set != set(mesh.devices.flat):
        return jax.device_put(x, NamedSharding(mesh, P()))
    return x


def _check_mesh(fn: str, mesh: Any, axis: Any) -> None:
    if not isinstance(mesh, Mesh):
        raise TypeError(f"{fn}: `mesh` must be a jax.sharding.Mesh; got {type(mesh).__name__}")
    if axis not in mesh.axis_names:
        raise ValueError(f"{fn}: `axis` must be one of the mesh's axes {tuple(mesh.axis_names)}; got axis={axis!r}")


def shard_state(inner: Any, mesh: Mesh, axis: str = "data") -> GradientTransformationExtraArgs:
    r"""`inner` with its parameter-shaped state split over mesh axis `axis` (ZeRO stage 1).

    The updates are those of `inner` (to float32 rounding: a reduction over a
    split leaf, such as a global norm, sums in another order). Each state leaf
    built like a parameter is sharded over `axis` along its first dimension whose
    size the axis size :math:`N` divides; a leaf with no such dimension, every scalar (step counts)
    and every other leaf are replicated over the mesh. Per device, a split leaf
    holds :math:`1/N` of its bytes.

    ``update`` takes replicated or sharded gradients and params on the mesh and
    returns updates with the gradients' sharding: exactly so outside ``jax.jit``;
    inside it the updates are tied to the gradients (and to the params of the same
    shape, when given) with ``shard_alike``, so the compiler gives them the
    gradients' layout when the gradients and params agree (they are computed from
    the params in a train step) and the params' layout when they differ. Under
    ``jax.jit``, give ``out_shardings`` (`state_shardings`) to pin every output.

    A leaf is parameter-shaped when ``inner.init`` places it where the params go
    (found with a placeholder, as `gx.tree_map_params` does), at the key path of a
    parameter of the same shape; for an ``init`` that reads the params' values, a
    leaf with a parameter's shape whose key path ends with that parameter's.

    Args:
        inner: any transformation (an object with ``init`` and ``update``).
        mesh: a `jax.sharding.Mesh`; the params and gradients must live on its
            devices (arrays on other devices are replicated onto it).
        axis: the name of the mesh axis to split the state over.

    Returns:
        A `GradientTransformationExtraArgs` whose ``init`` places the state on the
        mesh and whose ``update`` keeps it there.

    Raises:
        TypeError: if `mesh` is not a `jax.sharding.Mesh`.
        ValueError: if `axis` is not one of the mesh's axis names.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np, gradxform as gx
        >>> from jax.sharding import Mesh
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
        >>> tx = gx.sharding.shard_state(gx.adam(0.1), mesh)
        >>> params = {'w': jnp.ones(4)}
        >>> state = tx.init(params)
        >>> state[0].mu['w'].sharding.spec, state[0].count.sharding.spec
        (P('data',), P())
        >>> updates, state = tx.update({'w': jnp.ones(4)}, state, params)
        >>> [round(u, 4) for u in updates['w'].tolist()]  # Adam's first step: -lr * sign(g)
        [-0.1, -0.1, -0.1, -0.1]

    References:
        Rajbhandari et al., "ZeRO: Memory Optimizations Toward Training Trillion
        Parameter Models", SC 2020.
    """
    _check_mesh("shard_state", mesh, axis)
    inner_init, inner_update = inner.init, inner.update

    def init_fn(params):
        state = inner_init(params)
        return _put(state, _layout(state, params, inner_init, mesh, axis))

    def update_fn(updates, state, params=None, **extra_args):
        shardings = _layout(state, updates, inner_init, mesh, axis)
        grads = jax.tree_util.tree_map(lambda g: _on_mesh(g, mesh), updates)
        if params is not None:
            params = jax.tree_util.tree_map(lambda p: _on_mesh(p, mesh), params)
        state = _put(state, shardings)
        new_updates, new_state = inner_update(grads, state, params, **extra_args)
        new_state = _put(new_state, shardings)
        return _like_gradients(new_updates, updates, params), new_state

    setattr(init_fn, _LAYOUT_ATTR, (mesh, axis))
    return GradientTransformationExtraArgs(init_fn, update_fn)


def _like_gradients(new_updates: Any, grads: Any, params: Any) -> Any:
    """The updates in the gradients' sharding (exact for arrays; ``shard_alike`` for tracers)."""
    params_leaves = (jax.tree_util.tree_leaves(params, is_leaf=lambda x: x is None)
                     if params is not None else None)

    def like(u, g, p):
        if u is None or g is None or not hasattr(u, "shape"):
            return u
        if not isinstance(u, jax.core.Tracer) and isinstance(g, jax.Array) and not isinstance(g, jax.core.Tracer):
            return jax.device_put(u, g.sharding)
        if isinstance(u, jax.core.Tracer) and getattr(g, "shape", None) == u.shape:
            # a new value: where the update *is* a state leaf (trace's), its sharded layout must not win
            u = jax.lax.optimization_barrier(u)
            _, u = shard_alike(g, u)
            if p is not None and getattr(p, "shape", None) == u.shape and isinstance(p, jax.core.Tracer):
                _, u = shard_alike(p, u)
        return u

    u_leaves, treedef = jax.tree_util.tree_flatten(new_updates, is_leaf=lambda x: x is None)
    g_leaves = jax.tree_util.tree_leaves(grads, is_leaf=lambda x: x is None)
    if len(g_leaves) != len(u_leaves):
        return new_updates
    p_leaves = params_leaves if params_leaves is not None and len(params_leaves) == len(u_leaves) else [None] * len(u_leaves)
    return jax.tree_util.tree_unflatten(treedef, [like(u, g, p) for u, g, p in zip(u_leaves, g_leaves, p_leaves)])


def state_shardings(tx: Any, params: Any, mesh: Mesh | None = None, axis: str | None = None) -> Any:
    """The `NamedSharding` of each leaf of ``tx.init(params)``.

    A parameter-shaped leaf (as `shard_state` finds them) follows its parameter's
    `NamedSharding`, or, with `axis` given, is split over `axis` along its first
    dimension that the axis size divides (replicated if none does); every other
    leaf, scalars included, is replicated over the mesh. Every leaf that a
    `shard_state` inside `tx` places (``tx`` itself, or a part of a ``chain``,
    the inner transformation of ``MultiSteps``, ...) keeps the sharding that
    `shard_state` gives it, so the result is the layout ``tx.init`` produces; when
    `tx` is a `shard_state`, `mesh` and `axis` default to its own. Nothing is
    allocated: ``init`` is only traced (``jax.eval_shape``).

    Use it for ``jax.jit(step, out_shardings=...)``, and to restore a checkpoint
    onto a mesh (e.g. orbax's ``ArrayRestoreArgs(sharding=...)`` per leaf).

    Args:
        tx: any transformation (an object with ``init`` and ``update``).
        params: the params (arrays, or `jax.ShapeDtypeStruct` with a ``sharding``).
        mesh: the mesh; by default `tx`'s own (a `shard_state`, or one inside it)
            or that of the params' `NamedSharding`.
        axis: the mesh axis to split parameter-shaped leaves over; by default
            `tx`'s own (a `shard_state`), else None: each follows its parameter.

    Returns:
        A tree of `NamedSharding` with the structure of ``tx.init(params)``.

    Raises:
        ValueError: if no mesh is given and none can be found, or if `axis` is
            not one of the mesh's axes.

    Examples:
        >>> import jax, jax.numpy as jnp, numpy as np, gradxform as gx
        >>> from jax.sharding import Mesh
        >>> mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
        >>> tx = gx.sharding.shard_state(gx.sgd(0.1, momentum=0.9), mesh)
        >>> sh = gx.sharding.state_shardings(tx, {'w': jnp.ones((2, 3))})
        >>> sh[0].trace['w'].spec
        P('data',)
    """
    own = getattr(tx.init, _LAYOUT_ATTR, None)
    if own is not None:
        mesh = own[0] if mesh is None else mesh
        axis = own[1] if axis is None else axis
    recorded: dict = {}
    placed: list = []

    def init(params):  # traced only: each leaf a `shard_state` inside `tx` places is recorded with its sharding
        _RECORDER.leaves = recorded
        try:
            state = tx.init(params)
        finally:
            _RECORDER.leaves = None
        placed.extend(recorded.get(id(leaf), (None, None))[1] for leaf in jax.tree_util.tree_leaves(state))
        return state

    state = jax.eval_shape(init, params)
    if mesh is None:
        candidates = [s for s in placed if s is not None]
        candidates += [leaf.sharding for leaf in jax.tree_util.tree_leaves(params)
                       if isinstance(getattr(leaf, "sharding", None), NamedSharding)]
        mesh = candidates[0].mesh if candidates else None
    if mesh is None:
        raise ValueError("state_shardings: `mesh` is None and no parameter has a NamedSharding to take it "
                         "from; got mesh=None")
    if axis is not None:
        _check_mesh("state_shardings", mesh, axis)
    default, treedef = jax.tree_util.tree_flatten(_layout(state, params, tx.init, mesh, axis))
    return jax.tree_util.tree_unflatten(treedef, [p if p is not None else d for p, d in zip(placed, default)])
