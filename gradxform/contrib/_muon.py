"""Muon, momentum orthogonalized by Newton-Schulz (Jordan et al., 2024): `scale_by_muon` and `muon`."""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import EmptyState, GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain, partition
from gradxform.transforms._adam import adamw
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = ["MuonDimensionNumbers", "MuonState", "muon", "scale_by_muon"]


class MuonDimensionNumbers(NamedTuple):
    """Which axes of a weight form the matrix Muon orthogonalizes.

    For :math:`y = x W`, the reduction axes (contracted with :math:`x`, the fan-in)
    form the rows and the output axes (the fan-out) the columns; every other axis
    is a batch axis, each of its slices orthogonalized on its own. The default is a
    plain ``(fan_in, fan_out)`` matrix. A conv kernel ``(h, w, c_in, c_out)`` is
    ``MuonDimensionNumbers(reduction_axis=(0, 1, 2), output_axis=3)``.
    """

    reduction_axis: Union[Sequence[int], int] = 0
    output_axis: Union[Sequence[int], int] = 1


class MuonState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    mu: Any  # the momentum, like params (in mu_dtype if given)
    ns_coeffs: jax.Array  # shape (3,) or (steps, 3), float32: the Newton-Schulz coefficients (a, b, c)


_DEFAULT_NS_COEFFS = (3.4445, -4.775, 2.0315)
# Ahn et al. (2025), Dion: one (a, b, c) per iteration (the "Polar Express" schedule).
_NS_PRESETS = {
    "standard": _DEFAULT_NS_COEFFS,
    "dion": (
        (4.0848, -6.8946, 2.9270),
        (3.9505, -6.3029, 2.6377),
        (3.7418, -5.5913, 2.3037),
        (2.8769, -3.1427, 1.2046),
        (2.8366, -3.0525, 1.2012),
    ),
}
_PRECONDITIONINGS = ("frobenius", "spectral", "aol", "schatten")
# The AOL and Schatten-4 rescalings divide by a root of a sum of squares plus this
# (what keeps all-zero gradients at zero instead of 0/0).
_TINY = 1e-16


def _ns_coefficients(ns_coeffs: Any, fn: str) -> np.ndarray:
    """The coefficients as a float64 array of shape (3,) or (steps, 3); ValueError otherwise."""
    if isinstance(ns_coeffs, str):
        raise ValueError(f"{fn}: `ns_coeffs` must be (a, b, c) or a sequence of them; got {ns_coeffs!r} "
                         "(named presets are accepted by `muon`).")
    if isinstance(ns_coeffs, jax.core.Tracer):
        return ns_coeffs
    arr = np.asarray(ns_coeffs, dtype=np.float64)
    if not (arr.shape == (3,) or (arr.ndim == 2 and arr.shape[1] == 3 and arr.shape[0] >= 1)):
        raise ValueError(f"{fn}: `ns_coeffs` must have shape (3,) or (steps, 3); got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{fn}: `ns_coeffs` must be finite; got ns_coeffs={ns_coeffs!r}.")
    return arr


def _axes(axis: Union[Sequence[int], int], ndim: int) -> tuple:
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    return tuple(int(a) % ndim for a in axes)


def _layout(shape: tuple, dn: MuonDimensionNumbers) -> tuple:
    """(batch, reduction, output) axes of a leaf of `shape`; ValueError if they overlap."""
    ndim = len(shape)
    red, out = _axes(dn.reduction_axis, ndim), _axes(dn.output_axis, ndim)
    if not red or not out or set(red) & set(out) or len(set(red)) < len(red) or len(set(out)) < len(out):
        raise ValueError(f"MuonDimensionNumbers{tuple(dn)}: the reduction and output axes must be "
                         f"non-empty and disjoint for a leaf of shape {shape}.")
    batch = tuple(a for a in range(ndim) if a not in red and a not in out)
    return batch, red, out


def _fans(shape: tuple, dn: MuonDimensionNumbers) -> tuple:
    """(fan_in, fan_out): the products of the reduction and of the output axes' sizes."""
    _, red, out = _layout(shape, dn)
    return math.prod(shape[a] for a in red), math.prod(shape[a] for a in out)


def _is_spec_leaf(x: Any) -> bool:
    return x is None or isinstance(x, MuonDimensionNumbers)


def _dimension_numbers(spec: Any, tree: Any, fn: str) -> list:
    """One `MuonDimensionNumbers` (or None) per leaf of `tree` (``None`` leaves kept as None).

    `spec` is None (every leaf a matrix), a tree like `tree` (leaves
    `MuonDimensionNumbers` or None), or a callable returning one. Leaves are matched
    by key path, so a `tree` with masked-out subtrees finds its leaves' numbers.
    """
    paths = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_tree.is_none)[0]
    if callable(spec) and not isinstance(spec, MuonDimensionNumbers):
        spec = spec(tree)
    if spec is None:
        return [None] * len(paths)
    if isinstance(spec, MuonDimensionNumbers):
        return [spec] * len(paths)
    by_path = {
        jax.tree_util.keystr(p): d
        for p, d in jax.tree_util.tree_flatten_with_path(spec, is_leaf=_is_spec_leaf)[0]
    }
    out = []
    for p, _ in paths:
        key = jax.tree_util.keystr(p)
        if key not in by_path:
            raise _checks.TreeMismatchError(
                f"{fn}: `weight_dimension_numbers` has no entry at {key}; give a tree with the "
                "params' structure (None for a leaf that is not a Muon matrix)."
            )
        out.append(by_path[key])
    return out


def _check_matrix(shape: tuple, dn: Optional[MuonDimensionNumbers], where: str, fn: str) -> MuonDimensionNumbers:
    if dn is None:
        if len(shape) != 2:
            raise ValueError(
                f"{fn}: the leaf at {where} has shape {shape}; Muon orthogonalizes matrices. Give its "
                "`MuonDimensionNumbers` in `weight_dimension_numbers`, or leave it to `muon`'s Adam."
            )
        return MuonDimensionNumbers()
    _layout(shape, dn)
    return dn


class _MuonScalars(NamedTuple):
    beta: _tree.Decay
    bc: jax.Array  # 1 - beta^t
    bc_next: jax.Array  # 1 - beta^(t+1)


def _nonzero(d: jax.Array) -> jax.Array:
    """`d`, with 1 where it is 0: a zero norm (eps = 0) belongs to a zero matrix, which stays 0 (not 0/0)."""
    return jnp.where(d == 0, jnp.ones_like(d), d)


def _precondition(x: jax.Array, kind: str, eps: jax.Array) -> jax.Array:
    """The rescaling before the iterations (x: a batch of wide matrices, rows <= columns)."""
    if kind == "frobenius":
        norm = jnp.sqrt(jnp.sum(x * x, axis=(-2, -1), keepdims=True))
        return x / _nonzero(norm + eps)
    if kind == "spectral":
        norm = jnp.linalg.norm(x, ord=2, axis=(-2, -1), keepdims=True)
        return x / _nonzero(norm + eps)
    a = x @ jnp.swapaxes(x, -1, -2)
    tiny = jnp.asarray(_TINY, x.dtype)
    if kind == "schatten":  # ||x||_{S_4} = ||x x^T||_F^(1/2)
        return x * jax.lax.rsqrt(jnp.sqrt(jnp.sum(a * a, axis=(-2, -1), keepdims=True)) + tiny)
    # "aol": rows scaled by (sum_j |x x^T|_ij)^(-1/2) (Prach & Lampert's almost-orthogonal layer)
    return x * jax.lax.rsqrt(jnp.sum(jnp.abs(a), axis=-1, keepdims=True) + tiny)


def _newton_schulz(x: jax.Array, coeffs: jax.Array, steps: int, kind: str, eps: jax.Array) -> jax.Array:
    r"""Newton-Schulz's quintic iteration on a batch of matrices ``x`` (..., m, n).

    :math:`X \leftarrow a X + (b A + c A^2) X`, :math:`A = X X^\top`, on the wide
    orientation (transposed when :math:`m > n`, so that :math:`A` is the smaller
    Gram matrix). The AOL and Schatten rescalings belong to the first iteration
    (none with ``steps == 0``).
    """
    tall = x.shape[-2] > x.shape[-1]
    if tall:
        x = jnp.swapaxes(x, -1, -2)
    if kind in ("frobenius", "spectral") or steps > 0:
        x = _precondition(x, kind, eps)
    for i in range(steps):
        abc = coeffs if coeffs.ndim == 1 else coeffs[i]
        a = x @ jnp.swapaxes(x, -1, -2)
        x = abc[0] * x + (abc[1] * a + abc[2] * (a @ a)) @ x
    return jnp.swapaxes(x, -1, -2) if tall else x


@_tree.leaf_rule(static=("layout", "steps", "kind", "nesterov", "adaptive"))
def _muon_rule(g, mu, coeffs, eps, s: _MuonScalars, *, layout, steps, kind, nesterov, adaptive):
    x = g.astype(s.bc.dtype)
    m = _tree.update_moment(x, mu, s.beta)
    if nesterov:
        m_hat = s.beta.rate * m / s.bc_next + s.beta.complement * x / s.bc
    else:
        m_hat = m / s.bc
    batch, red, out = layout
    perm = batch + red + out
    moved = jnp.transpose(m_hat, perm)
    shape = moved.shape
    rows = math.prod(g.shape[a] for a in red)
    cols = math.prod(g.shape[a] for a in out)
    batch_size = math.prod(g.shape[a] for a in batch)
    if rows * cols * batch_size == 0:  # an empty matrix: nothing to orthogonalize
        return jnp.zeros_like(g), m.astype(mu.dtype)
    o = _newton_schulz(moved.reshape((batch_size, rows, cols)), coeffs.astype(x.dtype), steps, kind, eps)
    o = jnp.transpose(o.reshape(shape), np.argsort(perm))
    if adaptive:  # scaled by <O, m_hat>, the dual (nuclear) norm of m_hat (Bernstein et al., 2024)
        o = o * jnp.sum(o * m_hat)
    return o.astype(g.dtype), m.astype(mu.dtype)


_MUON = dict(
    ns_steps=_hyper.integer(0, math.inf, draw=(1, 6), source="Jordan et al. (2024): 5 iterations"),
    beta=_hyper.DECAY,
    eps=_hyper.EPS,
    nesterov=_hyper.BOOL,
    adaptive=_hyper.BOOL,
    preconditioning=_hyper.choice(*_PRECONDITIONINGS),
)


@_hyper.declare(**_MUON)
def scale_by_muon(
    ns_coeffs=_DEFAULT_NS_COEFFS,
    ns_steps=5,
    beta=0.95,
    eps=1e-8,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    weight_dimension_numbers: Any = None,
) -> GradientTransformation:
    r"""Muon's orthogonalized momentum (Jordan et al., 2024), on matrix-shaped leaves.

    With :math:`\beta` the momentum and :math:`t` the step,

    .. math::
        \mu_t = \beta \mu_{t-1} + (1 - \beta) g_t, \qquad
        \hat\mu_t = \frac{\beta \mu_t}{1 - \beta^{t+1}} + \frac{(1 - \beta) g_t}{1 - \beta^t}
        \ \text{(Nesterov; else } \mu_t / (1 - \beta^t)\text{)}, \\
        X_0 = \frac{\hat\mu_t}{\|\hat\mu_t\|_F + \epsilon}, \qquad
        X_{k+1} = a X_k + (b A_k + c A_k^2) X_k, \quad A_k = X_k X_k^\top, \qquad
        u_t = X_K

    :math:`K` = ``ns_steps`` iterations of the quintic with ``ns_coeffs`` =
    :math:`(a, b, c)` (or one triple per iteration, then ``ns_steps`` is ignored)
    drive every singular value of :math:`\hat\mu_t` towards 1: :math:`u_t \approx U V^\top`
    for :math:`\hat\mu_t = U \Sigma V^\top`. The iteration runs on the wide
    orientation (:math:`X^\top` when it has more rows than columns). ``adaptive``
    multiplies :math:`u_t` by :math:`\langle u_t, \hat\mu_t \rangle`, the nuclear
    norm of :math:`\hat\mu_t` (Bernstein & Newhouse, 2024). ``preconditioning``
    replaces the Frobenius norm of :math:`X_0` by the spectral norm (``"spectral"``),
    the Schatten-4 norm :math:`\|X X^\top\|_F^{1/2}` (``"schatten"``, Grishina et al.,
    2025) or AOL's row scaling :math:`\operatorname{diag}(|X X^\top| \mathbf 1)^{-1/2} X`
    (``"aol"``, Boissin et al., 2025); the last two ignore ``eps``.

    Every leaf must be a matrix, or have its `MuonDimensionNumbers` in
    ``weight_dimension_numbers`` (other axes are batch axes). The step is not scaled
    by the matrix's shape here; `muon` does that.

    Args:
        ns_coeffs: :math:`(a, b, c)`, or a sequence of them (one per iteration).
        ns_steps: :math:`K \ge 0`, the number of iterations (ignored for a sequence).
        beta: :math:`\beta \in [0, 1)`, the momentum's decay.
        eps: :math:`\epsilon \ge 0`, added to the norm of :math:`\hat\mu_t`.
        mu_dtype: dtype of the momentum (default: the params' dtype).
        nesterov: Nesterov's look-ahead :math:`\hat\mu_t` (the default).
        adaptive: scale by :math:`\langle u_t, \hat\mu_t \rangle`.
        preconditioning: ``"frobenius"``, ``"spectral"``, ``"aol"`` or ``"schatten"``.
        weight_dimension_numbers: None (every leaf a matrix), a tree like the params
            of `MuonDimensionNumbers`, or a callable returning one from the params.

    Returns:
        A `GradientTransformation` with state `MuonState`.

    Raises:
        ValueError: ``beta`` outside [0, 1), ``eps < 0``, ``ns_steps < 0``, an unknown
            ``preconditioning``, ``ns_coeffs`` not of shape (3,) or (steps, 3); ``init``
            on a leaf that is not a matrix and has no dimension numbers.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.scale_by_muon()
        >>> g = jnp.array([[3.0, 0.0], [0.0, 0.5]])
        >>> u, _ = tx.update(g, tx.init(jnp.zeros((2, 2))))
        >>> [[round(v, 2) for v in row] for row in u.tolist()]  # p^5(sigma / ||g||_F): about U V^T = I
        [[0.71, 0.0], [0.0, 1.04]]

    References:
        Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024
        (blog; the quintic Newton-Schulz iteration and its coefficients).
        Liu et al., "Muon is Scalable for LLM Training", 2025, Section 2.
        Bernstein & Newhouse, "Old Optimizer, New Norm: An Anthology", 2024.
    """
    fn = "scale_by_muon"
    coeffs = _ns_coefficients(ns_coeffs, fn)
    steps = int(coeffs.shape[0]) if coeffs.ndim == 2 else int(ns_steps)

    def init_fn(params):
        leaves = jax.tree_util.tree_flatten_with_path(params, is_leaf=_tree.is_none)[0]
        dns = _dimension_numbers(weight_dimension_numbers, params, fn)
        for (path, x), dn in zip(leaves, dns):
            if x is not None:
                _check_matrix(np.shape(x), dn, jax.tree_util.keystr(path), fn)
        return MuonState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            ns_coeffs=jnp.asarray(coeffs, jnp.float32),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, MuonState, updates, "mu")
        count = _tree.safe_increment(state.count)
        by_dtype = _tree.per_dtype(lambda dtype: _MuonScalars(
            _tree.decay(beta, dtype),
            _tree.bias_correction(beta, count, dtype),
            _tree.bias_correction(beta, _tree.safe_increment(count), dtype),
        ))
        paths, treedef = jax.tree_util.tree_flatten_with_path(updates, is_leaf=_tree.is_none)
        mus = treedef.flatten_up_to(state.mu)
        dns = _dimension_numbers(weight_dimension_numbers, updates, fn)
        outs, new_mus = [], []
        for (path, g), m, dn in zip(paths, mus, dns):
            if g is None:
                outs.append(None)
                new_mus.append(m)
                continue
            dn = _check_matrix(g.shape, dn, jax.tree_util.keystr(path), fn)
            g = _tree.as_update(g, [m])  # the wider of the gradient's and the momentum's dtype
            cdt = _tree.compute_dtype(g.dtype)
            u, m = _muon_rule(
                g, m, state.ns_coeffs, _tree.hp(eps, cdt), by_dtype(cdt),
                layout=_layout(g.shape, dn), steps=steps, kind=preconditioning,
                nesterov=nesterov, adaptive=adaptive,
            )
            outs.append(u)
            new_mus.append(m)
        new_state = MuonState(count=count, mu=treedef.unflatten(new_mus), ns_coeffs=state.ns_coeffs)
        return treedef.unflatten(outs), new_state

    return GradientTransformation(init_fn, update_fn)


def _scale_by_shape(weight_dimension_numbers: Any, consistent_rms: Optional[float]) -> GradientTransformation:
    r"""Each Muon matrix's update times :math:`\sqrt{\max(1, n_{out}/n_{in})}`, or
    :math:`r\sqrt{\max(n_{in}, n_{out})}` with ``consistent_rms`` = :math:`r`."""

    def factor(shape, dn):
        fan_in, fan_out = _fans(shape, dn or MuonDimensionNumbers())
        if consistent_rms is None:
            return math.sqrt(max(1.0, fan_out / fan_in)) if fan_in else 1.0
        return math.sqrt(max(fan_in, fan_out)) * consistent_rms

    def init_fn(params):
        del params
        return EmptyState()

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        leaves, treedef = jax.tree_util.tree_flatten(updates, is_leaf=_tree.is_none)
        dns = _dimension_numbers(weight_dimension_numbers, updates, "muon")
        out = [None if g is None else _tree.scale_tree(g, factor(g.shape, dn)) for g, dn in zip(leaves, dns)]
        return treedef.unflatten(out), state

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    learning_rate=_hyper.LR,
    **_MUON,
    weight_decay=_hyper.NONNEG,
    adam_b1=_hyper.DECAY,
    adam_b2=_hyper.DECAY,
    adam_eps_root=_hyper.EPS_ROOT,
    adam_weight_decay=_hyper.NONNEG,
    adam_learning_rate=_hyper.LR._replace(optional=True),
    consistent_rms=_hyper.number(0.0, _hyper.F32_MAX, draw=(0.1, 1.0), optional=True),
)
def muon(
    learning_rate: ScalarOrSchedule,
    ns_coeffs=_DEFAULT_NS_COEFFS,
    ns_steps=5,
    beta=0.95,
    eps=1e-8,
    weight_decay=0.0,
    weight_decay_mask=None,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1=0.9,
    adam_b2=0.999,
    adam_eps_root=0.0,
    adam_weight_decay=0.0,
    adam_learning_rate: Optional[ScalarOrSchedule] = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: Optional[float] = None,
) -> GradientTransformation:
    r"""Muon on the matrices, AdamW on every other leaf (Jordan et al., 2024; Liu et al., 2025).

    A leaf is a Muon matrix when ``muon_weight_dimension_numbers`` gives it
    `MuonDimensionNumbers` (or, when that is None, when it is 2-D); its step is

    .. math::
        -\eta_t \left(s\, u_t + \lambda \theta_{t-1}\right), \qquad
        s = \sqrt{\max(1, n_{out} / n_{in})} \ \text{or}\ r \sqrt{\max(n_{in}, n_{out})}

    with :math:`u_t` from `scale_by_muon`, :math:`n_{in}, n_{out}` the products of
    the reduction and output axes' sizes and :math:`r` = ``consistent_rms`` (Liu et
    al., 2025, Section 2.2: :math:`r = 0.2` matches AdamW's update RMS). Every other
    leaf takes ``adamw(adam_learning_rate or learning_rate, adam_b1, adam_b2, eps,
    adam_eps_root, weight_decay=adam_weight_decay, nesterov=nesterov)``. The state is
    a `PartitionState` with the labels ``"adam"`` and ``"muon"``.

    Args:
        learning_rate: :math:`\eta_t`, a number or a schedule (any finite value).
        ns_coeffs: :math:`(a, b, c)`, a sequence of them, or a preset name:
            ``"standard"`` (the default triple) or ``"dion"`` (Ahn et al., 2025: five
            iterations, one triple each).
        ns_steps, beta, eps, mu_dtype, nesterov, adaptive, preconditioning: see `scale_by_muon`.
        weight_decay: :math:`\lambda \ge 0` of the Muon matrices (scaled by the learning rate).
        weight_decay_mask: a tree of booleans (or a callable returning one) selecting
            the leaves :math:`\lambda` applies to.
        adam_b1, adam_b2: Adam's decays, in [0, 1).
        adam_eps_root: Adam's :math:`\epsilon_{root} \ge 0`.
        adam_weight_decay: AdamW's decay, :math:`\ge 0`.
        adam_learning_rate: Adam's rate (None: ``learning_rate``).
        muon_weight_dimension_numbers: see `scale_by_muon`'s ``weight_dimension_numbers``;
            a None leaf goes to Adam.
        consistent_rms: :math:`r \ge 0`, or None for the width scaling.

    Returns:
        A `GradientTransformation` (a `partition` of AdamW and Muon).

    Raises:
        ValueError: as `scale_by_muon`, an unknown preset, a negative weight decay or
            ``consistent_rms``, Adam's decays outside [0, 1).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.muon(0.1)
        >>> params = {'w': jnp.zeros((2, 2)), 'b': jnp.zeros(2)}
        >>> grads = {'w': jnp.array([[3.0, 0.0], [0.0, 0.5]]), 'b': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update(grads, opt.init(params), params)
        >>> [round(v, 3) for v in updates['b'].tolist()]  # NAdam's first step: -0.1 (1 + 0.9 / 1.9) sign(g)
        [-0.147, 0.147]
        >>> [round(v, 3) for v in jnp.diag(updates['w']).tolist()]  # -0.1 * scale_by_muon's
        [-0.071, -0.104]

    References:
        Jordan et al., "Muon: An optimizer for hidden layers in neural networks", 2024.
        Liu et al., "Muon is Scalable for LLM Training", 2025, Section 2.2 (update RMS).
        Ahn et al., "Dion: Distributed Orthonormalized Updates", 2025 (the "dion" preset).
    """
    if isinstance(ns_coeffs, str):
        if ns_coeffs not in _NS_PRESETS:
            raise ValueError(f"muon: `ns_coeffs` must be (a, b, c), a sequence of them or one of "
                             f"{sorted(_NS_PRESETS)}; got ns_coeffs={ns_coeffs!r}.")
        ns_coeffs = _NS_PRESETS[ns_coeffs]
    spec = muon_weight_dimension_numbers

    def muon_numbers(tree):
        """The numbers of the Muon leaves: the given spec, or the default for 2-D leaves."""
        if spec is None:
            return jax.tree_util.tree_map(
                lambda x: MuonDimensionNumbers() if np.ndim(x) == 2 else None, tree, is_leaf=_tree.is_none)
        return spec(tree) if callable(spec) else spec

    def labels(params):
        numbers = muon_numbers(params)
        by_path = {jax.tree_util.keystr(p): d
                   for p, d in jax.tree_util.tree_flatten_with_path(numbers, is_leaf=_is_spec_leaf)[0]}
        return jax.tree_util.tree_map_with_path(
            lambda p, _: "muon" if by_path.get(jax.tree_util.keystr(p)) is not None else "adam", params)

    numbers = muon_numbers
    return partition(
        {
            "adam": adamw(
                learning_rate=adam_learning_rate if adam_learning_rate is not None else learning_rate,
                b1=adam_b1, b2=adam_b2, eps=eps, eps_root=adam_eps_root, mu_dtype=mu_dtype,
                weight_decay=adam_weight_decay, nesterov=nesterov,
            ),
            "muon": chain(
                scale_by_muon(ns_coeffs, ns_steps, beta, eps, mu_dtype, nesterov=nesterov, adaptive=adaptive,
                              preconditioning=preconditioning, weight_dimension_numbers=numbers),
                _scale_by_shape(numbers, consistent_rms),
                add_decayed_weights(weight_decay, weight_decay_mask),
                scale_by_learning_rate(learning_rate),
            ),
        },
        labels,
    )
