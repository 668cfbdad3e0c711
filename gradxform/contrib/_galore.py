"""GaLore, gradient low-rank projection (Zhao et al., 2024): `scale_by_galore` and `galore`."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._adam import scale_by_adam
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = ["GaLoreDimensionNumbers", "GaLoreState", "galore", "scale_by_galore"]


class GaLoreDimensionNumbers(NamedTuple):
    """Which axes of a weight form GaLore's (input, output) matrix.

    Every axis must be a reduction (input) or an output axis: an attention
    projection ``(embed, heads, head_dim)`` is ``GaLoreDimensionNumbers(0, (1, 2))``.
    """

    reduction_axis: Union[Sequence[int], int] = 0
    output_axis: Union[Sequence[int], int] = 1


class GaLoreState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    base_optimizer_state: Any  # the base optimizer's state over the projected (low-rank) tree
    projector: Any  # per leaf: P, (m, r) or (n, r) in the params' dtype; (0, 0) for unprojected leaves


def _axes(axis: Union[Sequence[int], int], ndim: int) -> tuple:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(int(a) % ndim for a in axes)


class _Plan(NamedTuple):
    """How one leaf is projected: its axes as (rows, cols) and the rank; None when not projected."""

    perm: tuple
    rows: int
    cols: int
    rank: int

    @property
    def left(self) -> bool:  # m >= n: R = P^T G with P (m, r); else R = G P with P (n, r)
        return self.rows >= self.cols

    def low_shape(self) -> tuple:
        return (self.rank, self.cols) if self.left else (self.rows, self.rank)

    def projector_shape(self) -> tuple:
        return (self.rows if self.left else self.cols, self.rank)


def _is_spec_leaf(x: Any) -> bool:
    return x is None or isinstance(x, GaLoreDimensionNumbers)


def _plans(spec: Any, tree: Any, rank: int, fn: str) -> list:
    """One `_Plan` (or None: not projected) per leaf of `tree`, matched by key path."""
    paths = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_tree.is_none)[0]
    if callable(spec) and not isinstance(spec, GaLoreDimensionNumbers):
        spec = spec(tree)
    if spec is None:  # the 2-D leaves, as (rows, columns)
        numbers = [GaLoreDimensionNumbers() if x is not None and np.ndim(x) == 2 else None for _, x in paths]
    elif isinstance(spec, GaLoreDimensionNumbers):
        numbers = [spec] * len(paths)
    else:  # a None leaf is not projected, whatever its shape
        by_path = {jax.tree_util.keystr(p): d
                   for p, d in jax.tree_util.tree_flatten_with_path(spec, is_leaf=_is_spec_leaf)[0]}
        numbers = [by_path.get(jax.tree_util.keystr(p)) for p, _ in paths]
    out = []
    for (path, x), dn in zip(paths, numbers):
        shape = None if x is None else tuple(np.shape(x))
        if shape is None or dn is None:
            out.append(None)
            continue
        red, outs = _axes(dn.reduction_axis, len(shape)), _axes(dn.output_axis, len(shape))
        if sorted(red + outs) != list(range(len(shape))):
            raise ValueError(f"{fn}: the dimension numbers of the leaf at {jax.tree_util.keystr(path)} (shape "
                             f"{shape}) must name every axis once; got reduction={red}, output={outs}.")
        rows, cols = math.prod(shape[a] for a in red), math.prod(shape[a] for a in outs)
        out.append(_Plan(red + outs, rows, cols, min(rank, rows, cols)))
    return out


def _as_matrix(x: jax.Array, plan: _Plan) -> jax.Array:
    return jnp.transpose(x, plan.perm).reshape(plan.rows, plan.cols)


def _from_matrix(m: jax.Array, plan: _Plan, shape: tuple) -> jax.Array:
    moved = tuple(shape[a] for a in plan.perm)
    return jnp.transpose(m.reshape(moved), np.argsort(plan.perm))


def _new_projector(g: jax.Array, plan: _Plan) -> jax.Array:
    """The top-r left (m >= n) or right singular vectors of the gradient matrix (Algorithm 2, line 7)."""
    u, _, vt = jnp.linalg.svd(g, full_matrices=False)
    return u[:, : plan.rank] if plan.left else jnp.swapaxes(vt[: plan.rank], 0, 1)


@_hyper.declare(
    rank=_hyper.integer(1, math.inf, draw=(1, 8), source="Zhao et al. (2024): r >= 1"),
    update_proj_gap=_hyper.integer(1, math.inf, draw=(1, 50), source="Zhao et al. (2024): T >= 1"),
    scale=_hyper.number(draw=(0.1, 2.0)),
)
def scale_by_galore(
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: Optional[GradientTransformation] = None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""GaLore: the base optimizer run on a low-rank projection of each matrix's gradient (Zhao et al., 2024).

    For a gradient matrix :math:`G_t \in \mathbb{R}^{m \times n}` with :math:`m \ge n`
    (else the transposed roles: :math:`R_t = G_t P_t`, :math:`u_t = \alpha\, \rho(R_t) P_t^\top`),

    .. math::
        P_t = \begin{cases} U[:, :r],\ G_t = U \Sigma V^\top & t \bmod T = 0 \\ P_{t-1} & \text{else} \end{cases},
        \qquad R_t = P_t^\top G_t, \qquad u_t = \alpha\, P_t\, \rho_t(R_t)

    with :math:`\rho` the base optimizer (its state lives in the :math:`r \times n`
    space, and is kept when :math:`P` changes, as in the paper), :math:`T` =
    ``update_proj_gap`` counted from step 0, :math:`r` = ``min(rank, m, n)`` and
    :math:`\alpha` = ``scale``. Leaves that are not matrices (or have no dimension
    numbers) take :math:`\rho(g_t)` unprojected and unscaled. The base optimizer
    must not read the params (its leaves are the projected shapes): use
    `scale_by_adam`, not `adamw`, and `galore`'s ``weight_decay``.

    Args:
        rank: :math:`r \ge 1`, the projection's rank.
        update_proj_gap: :math:`T \ge 1`, steps between two SVDs of the gradient.
        scale: :math:`\alpha`, the projected update's scale (any real).
        base_optimizer: :math:`\rho` (default ``scale_by_adam()``).
        weight_dimension_numbers: None (the 2-D leaves are matrices), one
            `GaLoreDimensionNumbers` for every leaf, a tree of them like the params
            (a None leaf is not projected, even a 2-D one), or a callable returning
            one from the params.

    Returns:
        A `GradientTransformation` with state `GaLoreState`.

    Raises:
        ValueError: ``rank < 1``, ``update_proj_gap < 1``; ``init`` on a leaf whose
            dimension numbers do not name every axis once.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.scale_by_galore(rank=1, base_optimizer=gx.identity())
        >>> g = jnp.array([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
        >>> u, state = tx.update(g, tx.init(g))
        >>> [[abs(v) for v in row] for row in u.tolist()]  # P P^T G keeps the top singular direction
        [[3.0, 0.0], [0.0, 0.0], [0.0, 0.0]]

    References:
        Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
        Projection", ICML 2024, Algorithm 2 (Adam with GaLore) and Section 4.
    """
    fn = "scale_by_galore"
    base = base_optimizer if base_optimizer is not None else scale_by_adam()

    def low_tree(tree, plans):
        leaves, treedef = jax.tree_util.tree_flatten(tree, is_leaf=_tree.is_none)
        return treedef.unflatten([
            x if plan is None or x is None else jnp.zeros(plan.low_shape(), x.dtype)
            for x, plan in zip(leaves, plans)
        ])

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays
        plans = _plans(weight_dimension_numbers, params, rank, fn)
        leaves, treedef = jax.tree_util.tree_flatten(params, is_leaf=_tree.is_none)
        projector = treedef.unflatten([
            None if x is None else jnp.zeros(plan.projector_shape() if plan else (0, 0), x.dtype)
            for x, plan in zip(leaves, plans)
        ])
        return GaLoreState(
            count=jnp.zeros([], jnp.int32),
            base_optimizer_state=base.init(low_tree(params, plans)),
            projector=projector,
        )

    def update_fn(updates, state, params=None, **extra_args):
        updates, params = _tree.arrays(updates), _tree.arrays(params)  # Python floats: arrays
        if params is not None:  # names the leaf and both shapes when a gradient is mis-shaped
            _checks.check_tree_like(updates, params, tree_name="updates", like_name="params", fn=fn)
        del params
        # The projector is not shaped like the params: compare the trees' structures only.
        _checks.check_state_type(state, GaLoreState, fn)
        if jax.tree_util.tree_structure(updates, is_leaf=_tree.is_none) != jax.tree_util.tree_structure(
                state.projector, is_leaf=_tree.is_none):
            raise _checks.TreeMismatchError(
                f"{fn}: updates have the structure {jax.tree_util.tree_structure(updates)}, state.projector "
                f"{jax.tree_util.tree_structure(state.projector)}; pass updates shaped like the params given to init.")
        plans = _plans(weight_dimension_numbers, updates, rank, fn)
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_tree.is_none)
        projectors = treedef.flatten_up_to(state.projector)
        # A projected leaf's update comes out in the wider of its gradient's and its projector's
        # (the params') dtype: float32 master params with bfloat16 gradients get float32 updates.
        leaves = [g if g is None or plan is None else _tree.as_update(g, [p])
                  for g, p, plan in zip(leaves, projectors, plans)]
        refresh = state.count % update_proj_gap == 0
        new_p, low = [], []
        for g, p, plan in zip(leaves, projectors, plans):
            if g is None or plan is None:
                new_p.append(p)
                low.append(g)
                continue
            m = _as_matrix(_tree.wide(g), plan)
            p = jax.lax.cond(refresh, lambda m=m, plan=plan, dt=p.dtype: _new_projector(m, plan).astype(dt),
                             lambda p=p: p)
            pw = p.astype(m.dtype)
            low.append((pw.T @ m if plan.left else m @ pw).astype(g.dtype))
            new_p.append(p)
        low_updates, base_state = base.update(treedef.unflatten(low), state.base_optimizer_state, None,
                                              **extra_args)
        low_leaves = treedef.flatten_up_to(low_updates)
        out = []
        for g, r, p, plan in zip(leaves, low_leaves, new_p, plans):
            if g is None or plan is None:
                out.append(r)
                continue
            rw, pw = _tree.wide(r), p.astype(_tree.compute_dtype(r.dtype))
            full = pw @ rw if plan.left else rw @ pw.T
            full = full * _tree.hp(scale, full.dtype)
            out.append(_from_matrix(full, plan, g.shape).astype(g.dtype))
        new_state = GaLoreState(
            count=_tree.safe_increment(state.count),
            base_optimizer_state=base_state,
            projector=treedef.unflatten(new_p),
        )
        return treedef.unflatten(out), new_state

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    learning_rate=_hyper.LR,
    rank=_hyper.integer(1, math.inf, draw=(1, 8), source="Zhao et al. (2024): r >= 1"),
    update_proj_gap=_hyper.integer(1, math.inf, draw=(1, 50), source="Zhao et al. (2024): T >= 1"),
    scale=_hyper.number(draw=(0.1, 2.0)),
    weight_decay=_hyper.NONNEG,
)
def galore(
    learning_rate: ScalarOrSchedule,
    rank: int = 128,
    update_proj_gap: int = 200,
    scale: float = 1.0,
    base_optimizer: Optional[GradientTransformation] = None,
    weight_decay=0.0,
    mask=None,
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""GaLore: ``chain(scale_by_galore(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))``.

    The step is :math:`-\eta_t (u_t + \lambda \theta_{t-1})` with :math:`u_t` from
    `scale_by_galore`: the weight decay is applied in the full parameter space
    (Zhao et al., 2024, Algorithm 2 with AdamW's decoupled decay).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.galore(0.1, rank=1)
        >>> params = {'w': jnp.zeros((3, 2)), 'b': jnp.zeros(2)}
        >>> grads = {'w': jnp.array([[3.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), 'b': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update(grads, opt.init(params), params)
        >>> [round(v, 3) for v in updates['b'].tolist()]  # Adam's first step, unprojected
        [-0.1, 0.1]
        >>> [[abs(round(v, 3)) for v in row] for row in updates['w'].tolist()]  # P Adam(P^T G): rank 1
        [[0.1, 0.0], [0.0, 0.0], [0.0, 0.0]]

    References:
        Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank
        Projection", ICML 2024, Algorithm 2.
    """
    return chain(
        scale_by_galore(rank, update_proj_gap, scale, base_optimizer, weight_dimension_numbers),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
