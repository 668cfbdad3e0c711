"""DoG, distance over gradients (Ivgi et al., 2023): `scale_by_distance_over_gradients`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation


class ScaleByDistanceOverGradientsState(NamedTuple):
    max_dist: Any  # per leaf: shape (), float32 (float64 for float64 params): r_t
    grad_sum_of_squares: Any  # per leaf: shape (1,) as optax's, float32 (float64): G_t
    init_params: Any  # theta_0, like params, in param_dtype


class _DogScalars(NamedTuple):
    eps: jax.Array
    global_scale: jax.Array


def _acc_dtype(dtype: Any) -> np.dtype:
    return _tree.real_dtype(dtype)


def _distance(x: jax.Array, y: Any = None) -> jax.Array:
    """||x - y|| (or ||x||) in at least float32."""
    d = _tree.wide(x) if y is None else _tree.wide(x) - y.astype(_tree.compute_dtype(x.dtype))
    return jnp.sqrt(jnp.sum(_tree.abs_sq(d))).astype(_acc_dtype(x.dtype))


@_tree.leaf_rule
def _dog_rule(g, r, gsq, p, p0, s: _DogScalars):
    x = g.astype(s.eps.dtype)
    r_new = jnp.maximum(r, _distance(p, p0).astype(r.dtype))
    gsq_new = gsq + jnp.sum(_tree.abs_sq(x)).astype(gsq.dtype)
    eta = s.global_scale * r_new.astype(x.dtype) / jnp.sqrt(gsq_new[0].astype(x.dtype) + s.eps)
    return jnp.where(x == 0, 0, eta * x).astype(g.dtype), r_new, gsq_new  # eps = 0, g = 0: 0, not inf * 0


@_hyper.declare(
    reps_rel=_hyper.POSITIVE._replace(draw=(1e-6, 1e-2), source="Ivgi et al. (2023): r_eps > 0"),
    eps=_hyper.EPS,
    global_scale=_hyper.number(draw=(-1.0, 1.0)),
)
def scale_by_distance_over_gradients(
    reps_rel=1e-6, eps=1e-8, param_dtype=jnp.float32, global_scale=1.0
) -> GradientTransformation:
    r"""Layer-wise DoG, a learning-rate-free step size (Ivgi et al., 2023, LDoG).

    For each leaf (layer) of the params, with :math:`\theta_0` the params ``init``
    saw and :math:`s` the global scale,

    .. math::
        r_t = \max\left(r_{t-1}, \|\theta_t - \theta_0\|\right), \quad
        r_0 = r_\epsilon (1 + \|\theta_0\|), \qquad
        G_t = G_{t-1} + \|g_t\|^2, \qquad
        u_t = s \frac{r_t}{\sqrt{G_t + \epsilon}}\, g_t

    The update has the gradient's sign (``global_scale=-1.0`` descends, or chain
    with a negative `scale`). ``init`` keeps a copy of the params (the distance is
    measured from them), so the state is not independent of the params' values.
    The authors recommend averaging the iterates.

    Args:
        reps_rel: :math:`r_\epsilon > 0`, the initial distance relative to
            :math:`1 + \|\theta_0\|` (1e-4 for models with batch norm, 1e-6 otherwise).
        eps: :math:`\epsilon \ge 0`, added to :math:`G_t`.
        param_dtype: dtype of the stored initial params (None: the params' dtype).
        global_scale: :math:`s`, any real number (typically 1.0 or -1.0).

    Returns:
        A `GradientTransformation` with state `ScaleByDistanceOverGradientsState`;
        its update needs the params.

    Raises:
        ValueError: ``reps_rel <= 0`` or ``eps < 0``; ``update`` without params.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_distance_over_gradients(reps_rel=0.1, eps=0.0)
        >>> params = jnp.array([3.0, 4.0])  # r_0 = 0.1 * (1 + 5) = 0.6
        >>> u, state = tx.update(jnp.array([0.0, 2.0]), tx.init(params), params)
        >>> u.tolist()  # 0.6 / sqrt(4) * g
        [0.0, 0.6000000238418579]

    References:
        Ivgi et al., "DoG is SGD's Best Friend: A Parameter-Free Dynamic Step Size
        Schedule", ICML 2023, Eq. (1) (DoG) and Section 3.3 (layer-wise LDoG).
    """
    fn = "scale_by_distance_over_gradients"

    def init_fn(params):
        params = _tree.arrays(params)  # Python floats: arrays

        def r0(x):
            dt = _acc_dtype(x.dtype)
            return _tree.hp(reps_rel, dt) * (1 + _distance(x))

        return ScaleByDistanceOverGradientsState(
            max_dist=jax.tree_util.tree_map(r0, params),
            grad_sum_of_squares=jax.tree_util.tree_map(lambda x: jnp.zeros((1,), _acc_dtype(x.dtype)), params),
            init_params=jax.tree_util.tree_map(
                # own buffers (astype to the same dtype returns x itself): a jitted step may donate both
                lambda x: jnp.array(
                    jnp.asarray(x).astype(param_dtype if param_dtype is not None else x.dtype), copy=True
                ),
                params,
            ),
        )

    def update_fn(updates, state, params=None, **extra_args):
        updates, params = _tree.arrays(updates), _tree.arrays(params)  # Python floats: arrays
        del extra_args
        _checks.check_update(fn, state, ScaleByDistanceOverGradientsState, updates, "init_params")
        _checks.require_params(params, fn)
        # Its params-shaped state is the initial params: updates in the wider of their dtype and
        # the gradients' (its per-leaf distances are one-element statistics and do not count).
        updates = _tree.as_updates(updates, state.init_params)
        updates, max_dist, gsq = _tree.apply_rule(
            _dog_rule,
            updates,
            state.max_dist,
            state.grad_sum_of_squares,
            inputs=(params, state.init_params),
            scalars=lambda dtype: _DogScalars(_tree.hp(eps, dtype), _tree.hp(global_scale, dtype)),
        )
        return updates, ScaleByDistanceOverGradientsState(max_dist, gsq, state.init_params)

    return GradientTransformation(init_fn, update_fn)
