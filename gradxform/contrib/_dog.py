"""DoG (Ivgi et al., 2023) and DoWG (Khaled et al., 2023): `dog`, `dowg`, their states.

Both are learning-rate-free step sizes over the whole parameter vector (one
global step size, not one per layer; the layer-wise DoG is the top-level
`gradxform.scale_by_distance_over_gradients`). Both keep the initial params in
their state: the step size grows with the distance travelled from them.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule, identity
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = ["DoGState", "DoWGState", "dog", "dowg"]


class DoGState(NamedTuple):
    is_init_step: jax.Array  # shape (), bool: True until the first update
    init_params: Any  # x_0, like params
    max_dist: jax.Array  # shape (), float32 (float64 if a param is float64): \bar r_t
    sum_sq_norm_grads: jax.Array  # shape (), float32 (float64): G_t


class DoWGState(NamedTuple):
    init_params: Any  # x_0, like params
    weighted_sq_norm_grads: jax.Array  # shape (), float32 (float64 if a param is float64): v_t
    estim_sq_dist: jax.Array  # shape (), float32 (float64): \bar r_t^2


# ----------------------------------------------------------------------------- shared helpers


@_tree.leaf_rule
def _leaf_sq_norm(x):
    return jnp.sum(_tree.abs_sq(_tree.wide(x)))


@_tree.leaf_rule
def _leaf_sq_dist(p, p0):
    return jnp.sum(_tree.abs_sq(_tree.wide(p) - p0.astype(_tree.compute_dtype(p.dtype))))


def _sq_norm(tree: Any, dtype: Any) -> jax.Array:
    r""":math:`\|x\|^2` over every (non-None) leaf, accumulated in `dtype`."""
    total = jnp.zeros((), dtype)
    for x in jax.tree_util.tree_leaves(tree):
        total = total + _leaf_sq_norm(x).astype(dtype)
    return total


def _sq_dist(params: Any, init_params: Any, dtype: Any) -> jax.Array:
    r""":math:`\|x_t - x_0\|^2` over every leaf, each difference taken in its compute dtype."""
    total = jnp.zeros((), dtype)
    for p, p0 in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(init_params)):
        total = total + _leaf_sq_dist(p, p0).astype(dtype)
    return total


def _copy(params: Any) -> Any:
    # A copy, so that donating the params to a jitted step never donates the state's x_0 too.
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), params)


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
    """num / den, and 0 where den is 0 (eps=0 with all-zero gradients: no step, never NaN)."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0)


def _weight_decay(weight_decay: Any, mask: Any) -> GradientTransformation:
    return identity() if weight_decay is None else add_decayed_weights(weight_decay, mask)


# ----------------------------------------------------------------------------- DoG

_INIT_STEP_TAGS = ("distance", "learning_rate", "heuristic")


def _check_init_step(init_step: Any, fn: str) -> tuple:
    bad = ValueError(
        f"{fn}: `init_step` must be a pair (tag, value) with tag one of 'distance', "
        f"'learning_rate', 'heuristic' and value > 0; got init_step={init_step!r}."
    )
    if not isinstance(init_step, (tuple, list)) or len(init_step) != 2:
        raise bad
    tag, value = init_step
    if tag not in _INIT_STEP_TAGS:
        raise bad
    try:
        _checks.check_range("init_step", value, 0.0, _hyper.F32_MAX, low_inclusive=False, fn=fn)
    except ValueError:
        raise bad from None
    return tag, value


def _scale_by_dog(init_step: tuple, eps: Any = 1e-8) -> GradientTransformation:
    r"""DoG's step size times the update (no sign change); `dog` negates it. See `dog`."""
    fn = "dog"
    tag, value = _check_init_step(init_step, fn)

    def init_fn(params):
        dtype = _tree.accumulation_dtype(params)
        if tag == "heuristic":
            r0 = _tree.hp(value, dtype) * (1 + jnp.sqrt(_sq_norm(params, dtype)))
        elif tag == "distance":
            r0 = _tree.hp(value, dtype)
        else:  # "learning_rate": the first step is eta_0 g_0, r is measured from then on
            r0 = jnp.zeros((), dtype)
        return DoGState(
            is_init_step=jnp.asarray(True),
            init_params=_copy(params),
            max_dist=r0,
            sum_sq_norm_grads=jnp.zeros((), dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_update(fn, state, DoGState, updates, "init_params")
        _checks.require_params(params, fn)
        updates = _tree.as_updates(updates, state.init_params, squared=(False,))
        dtype = state.max_dist.dtype
        r = jnp.maximum(state.max_dist, jnp.sqrt(_sq_dist(params, state.init_params, dtype)))
        G = state.sum_sq_norm_grads + _sq_norm(updates, dtype)
        eta = _safe_div(r, jnp.sqrt(G + _tree.hp(eps, dtype)))
        if tag == "learning_rate":
            eta = jnp.where(state.is_init_step, _tree.hp(value, dtype), eta)
        new_state = DoGState(jnp.zeros_like(state.is_init_step), state.init_params, r, G)
        return _tree.scale_tree(updates, eta), new_state

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    learning_rate=_hyper.LR,
    eps=_hyper.EPS,
    weight_decay=_hyper.NONNEG._replace(optional=True),
)
def dog(
    learning_rate: ScalarOrSchedule = 1.0,
    init_step: tuple = ("heuristic", 1e-6),
    eps=1e-8,
    weight_decay: Optional[Any] = None,
    mask: Any = None,
) -> GradientTransformation:
    r"""DoG, distance over gradients: a step size from the distance travelled (Ivgi et al., 2023).

    With :math:`x_0` the params ``init`` saw and :math:`\|\cdot\|` the norm over
    the whole tree, at each step :math:`t = 0, 1, \dots`

    .. math::
        \bar r_t = \max\left(\bar r_{t-1}, \|x_t - x_0\|\right), \qquad
        G_t = G_{t-1} + \|g_t\|^2, \qquad
        \eta_t = \frac{\bar r_t}{\sqrt{G_t + \epsilon}}, \qquad
        u_t = -\alpha_t\, \eta_t\, g_t

    with :math:`G_{-1} = 0` and :math:`\alpha_t` the learning rate (1 for the
    paper's DoG). ``init_step`` sets the first step: ``("distance", r)`` gives
    :math:`\bar r_{-1} = r` (the paper's :math:`r_\epsilon`);
    ``("heuristic", a)`` gives :math:`\bar r_{-1} = a (1 + \|x_0\|)`, the paper's
    suggestion with :math:`a = 10^{-6}` (:math:`10^{-4}` for models with batch
    normalization); ``("learning_rate", e)`` makes the first step
    :math:`\eta_0 = e` and starts :math:`\bar r_{-1} = 0`. With ``weight_decay``,
    :math:`g_t` is the gradient plus :math:`\lambda x_t` (where ``mask`` is True).
    The authors recommend averaging the iterates.

    Args:
        learning_rate: :math:`\alpha_t`, a float or schedule (1.0 for DoG itself; any
            value finite in float32, negative ascends).
        init_step: ``(tag, value)``, tag one of ``"distance"``, ``"learning_rate"``,
            ``"heuristic"``, value > 0 (see above).
        eps: :math:`\epsilon \ge 0`, added to :math:`G_t`.
        weight_decay: :math:`\lambda \ge 0` added to the gradient before DoG, or None.
        mask: a tree of booleans like the params (or a function of them) selecting
            the leaves decayed.

    Returns:
        ``chain(add_decayed_weights(weight_decay, mask) or identity(), scale_by_dog,
        scale_by_learning_rate(learning_rate))``, the middle state a `DoGState`;
        its update needs the params.

    Raises:
        ValueError: an ``init_step`` whose tag is unknown or whose value is not
            positive, ``eps < 0``, ``weight_decay < 0``, a non-finite learning rate;
            ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.dog(init_step=("distance", 0.5), eps=0.0)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, state = tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)
        >>> u.tolist()  # -0.5 / sqrt(4) * g
        [-0.0, -0.5]

    References:
        Ivgi, Hinder & Carmon, "DoG is SGD's Best Friend: A Parameter-Free Dynamic
        Step Size Schedule", ICML 2023, Algorithm 1 (DoG, global: one step size for
        the whole vector).
    """
    return chain(
        _weight_decay(weight_decay, mask),
        _scale_by_dog(init_step, eps),
        scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- DoWG


def _scale_by_dowg(init_estim_sq_dist: Any = None, eps: Any = 1e-4) -> GradientTransformation:
    r"""DoWG's step size times the update (no sign change); `dowg` negates it. See `dowg`."""
    fn = "dowg"
    r0_sq = eps if init_estim_sq_dist is None else init_estim_sq_dist

    def init_fn(params):
        dtype = _tree.accumulation_dtype(params)
        return DoWGState(
            init_params=_copy(params),
            weighted_sq_norm_grads=jnp.zeros((), dtype),
            estim_sq_dist=_tree.hp(r0_sq, dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del extra_args
        _checks.check_update(fn, state, DoWGState, updates, "init_params")
        _checks.require_params(params, fn)
        updates = _tree.as_updates(updates, state.init_params, squared=(False,))
        dtype = state.estim_sq_dist.dtype
        r_sq = jnp.maximum(state.estim_sq_dist, _sq_dist(params, state.init_params, dtype))
        v = state.weighted_sq_norm_grads + r_sq * _sq_norm(updates, dtype)
        eta = _safe_div(r_sq, jnp.sqrt(v) + _tree.hp(eps, dtype))
        return _tree.scale_tree(updates, eta), DoWGState(state.init_params, v, r_sq)

    return GradientTransformation(init_fn, update_fn)


_DOWG_START = _hyper.Constraint(
    ("init_estim_sq_dist", "eps"),
    lambda kw: not (kw["init_estim_sq_dist"] is None and kw["eps"] == 0),
    "with init_estim_sq_dist=None the initial squared distance is `eps`, which must then be > 0 "
    "(eps=0 never moves); got eps={eps!r}.",
    lambda kw: kw | ({"eps": 1e-4} if kw["init_estim_sq_dist"] is None and kw["eps"] == 0 else {}),
)


@_hyper.declare(
    _DOWG_START,
    learning_rate=_hyper.LR,
    init_estim_sq_dist=_hyper.POSITIVE._replace(
        optional=True, draw=(1e-6, 1e-2), source="Khaled et al. (2023): r_eps > 0"
    ),
    eps=_hyper.EPS._replace(draw=(1e-6, 1e-3)),
    weight_decay=_hyper.NONNEG._replace(optional=True),
)
def dowg(
    learning_rate: ScalarOrSchedule = 1.0,
    init_estim_sq_dist: Optional[Any] = None,
    eps=1e-4,
    weight_decay: Optional[Any] = None,
    mask: Any = None,
) -> GradientTransformation:
    r"""DoWG, distance over weighted gradients (Khaled, Mishchenko & Jin, 2023).

    With :math:`x_0` the params ``init`` saw and :math:`\|\cdot\|` the norm over
    the whole tree, at each step :math:`t = 0, 1, \dots`

    .. math::
        \bar r_t^2 = \max\left(\bar r_{t-1}^2, \|x_t - x_0\|^2\right), \qquad
        v_t = v_{t-1} + \bar r_t^2 \|g_t\|^2, \qquad
        \eta_t = \frac{\bar r_t^2}{\sqrt{v_t} + \epsilon}, \qquad
        u_t = -\alpha_t\, \eta_t\, g_t

    with :math:`v_{-1} = 0`, :math:`\bar r_{-1}^2` = ``init_estim_sq_dist`` (the
    paper's :math:`r_\epsilon^2`), or :math:`\epsilon` when it is None, and
    :math:`\alpha_t` the learning rate (1 for the paper's DoWG). The paper has no
    :math:`\epsilon`; it keeps the first step finite. With ``weight_decay``,
    :math:`g_t` is the gradient plus :math:`\lambda x_t` (where ``mask`` is True).

    Args:
        learning_rate: :math:`\alpha_t`, a float or schedule (1.0 for DoWG itself; any
            value finite in float32, negative ascends).
        init_estim_sq_dist: :math:`\bar r_{-1}^2 > 0`, the initial guess of the squared
            distance to a solution, or None for :math:`\epsilon`.
        eps: :math:`\epsilon \ge 0` (> 0 when ``init_estim_sq_dist`` is None), added to
            :math:`\sqrt{v_t}`.
        weight_decay: :math:`\lambda \ge 0` added to the gradient before DoWG, or None.
        mask: a tree of booleans like the params (or a function of them) selecting
            the leaves decayed.

    Returns:
        ``chain(add_decayed_weights(weight_decay, mask) or identity(), scale_by_dowg,
        scale_by_learning_rate(learning_rate))``, the middle state a `DoWGState`;
        its update needs the params.

    Raises:
        ValueError: ``init_estim_sq_dist <= 0``, ``eps < 0`` (or ``eps == 0`` with
            ``init_estim_sq_dist=None``), ``weight_decay < 0``, a non-finite learning
            rate; ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.dowg(init_estim_sq_dist=0.25, eps=0.0)
        >>> params = jnp.array([3.0, 4.0])
        >>> u, state = tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)
        >>> u.tolist()  # v = 0.25 * 4 = 1, eta = 0.25 / 1: -0.25 * g
        [-0.0, -0.5]

    References:
        Khaled, Mishchenko & Jin, "DoWG Unleashed: An Efficient Universal
        Parameter-Free Gradient Descent Method", NeurIPS 2023, Algorithm 1.
    """
    return chain(
        _weight_decay(weight_decay, mask),
        _scale_by_dowg(init_estim_sq_dist, eps),
        scale_by_learning_rate(learning_rate),
    )

