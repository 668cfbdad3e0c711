"""AdaHessian (Yao et al., 2021): Adam with the Hessian diagonal in place of the squared gradient."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByAdaHessianState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    mu: Any  # first moment of the gradient, like params
    nu: Any  # second moment of the Hessian diagonal estimate, like params


def _spatially_averaged(d: jax.Array, axes: Sequence[int]) -> jax.Array:
    """|D| averaged over `axes` (the kernel's spatial block), broadcast back to D's shape."""
    return jnp.broadcast_to(jnp.mean(jnp.abs(d), axis=tuple(axes), keepdims=True), d.shape)


# hessian_power in [0, 1]: the range of the exponent k in Yao et al. (2021).
_HESSIAN_POWER = _hyper.number(0.0, 1.0, draw=(0.0, 1.0), source="validator (the paper's range)")


@_tree.leaf_rule(static=("spatial_axes",))
def _adahessian_rule(g, mu, nu, d, scalars, *, spatial_axes):
    s, power = scalars
    x = g.astype(s.eps.dtype)
    d = d.astype(x.dtype)
    if spatial_axes is not None and d.ndim == 4:
        d = _spatially_averaged(d, spatial_axes)
    mu_new = _tree.update_moment(x, mu, s.b1)
    nu_new = _tree.update_moment(d * d, nu, s.b2)
    u = (mu_new / s.bc1) / (jnp.sqrt(nu_new / s.bc2) ** power + s.eps)
    return u.astype(g.dtype), mu_new.astype(mu.dtype), nu_new.astype(nu.dtype)


@_hyper.declare(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS, hessian_power=_HESSIAN_POWER)
def scale_by_adahessian(
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    hessian_power=1.0,
    *,
    spatial_average: bool = False,
    spatial_axes: Sequence[int] = (0, 1),
    mu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""Rescales the gradient's moving average by the moving RMS of a Hessian diagonal estimate.

    With :math:`D_t` the Hessian diagonal estimate passed as ``hessian_diag=``
    (for example `gradxform.second_order.hutchinson_diagonal`):

    .. math::
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \qquad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) D_t \odot D_t, \\
        \hat m_t = \frac{m_t}{1-\beta_1^t}, \qquad \hat v_t = \frac{v_t}{1-\beta_2^t}, \qquad
        u_t = \frac{\hat m_t}{\left(\sqrt{\hat v_t}\right)^{k} + \epsilon}

    With ``spatial_average=True``, the estimate of every 4-D leaf (a convolution
    kernel) is replaced by its block average over the kernel's spatial axes,
    :math:`D^{(s)} = \operatorname{mean}_{\text{spatial}} |D|`, broadcast back
    (the paper's spatial averaging, Section 3.3).

    Note:
        The spatial block average uses :math:`|D|`, as the authors' reference code
        does (the paper's Eq. 10 writes :math:`D`); for other leaves the sign is
        irrelevant since only :math:`D^2` is used. ``spatial_axes`` defaults to
        ``(0, 1)``, the spatial axes of a ``(kh, kw, in, out)`` JAX/flax kernel;
        PyTorch's ``(out, in, kh, kw)`` layout needs ``(2, 3)``. The paper's
        :math:`\hat v` uses :math:`\sqrt{v_t}/\sqrt{1-\beta_2^t}`, identical to
        :math:`\sqrt{\hat v_t}` here. optax has no AdaHessian.

    Args:
        b1, b2: decay rates in [0, 1).
        eps: non-negative stabilizer outside the power.
        hessian_power: the exponent :math:`k \in [0, 1]` (1: full curvature scaling,
            0: a momentum SGD with step size :math:`1/(1+\epsilon)`).
        spatial_average: average the estimate over the spatial axes of 4-D leaves.
        spatial_axes: those axes.
        mu_dtype: dtype of the first moment (default: the params' dtype).

    Returns:
        A `GradientTransformation` whose ``update`` needs the keyword argument
        ``hessian_diag=`` (a tree like the updates).

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps``,
            ``hessian_power`` outside [0, 1]; at update, a missing ``hessian_diag``.
        TreeMismatchError: ``hessian_diag`` is not shaped like the updates.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_adahessian()
        >>> u, _ = tx.update(jnp.array([1.0, -2.0]), tx.init(jnp.zeros(2)),
        ...                  hessian_diag=jnp.array([2.0, 4.0]))
        >>> [round(x, 6) for x in u.tolist()]  # g / |D| at the first step
        [0.5, -0.5]

    References:
        Yao, Gholami, Shen, Mustafa, Keutzer & Mahoney, `ADAHESSIAN: An Adaptive
        Second Order Optimizer for Machine Learning <https://arxiv.org/abs/2006.00719>`_,
        AAAI 2021 (Algorithm 1, Eqs. 10-12).
    """
    fn = "scale_by_adahessian"
    spatial_axes = tuple(int(a) for a in spatial_axes)

    def init_fn(params):
        return ScaleByAdaHessianState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.square_zeros_like(params),
        )

    def update_fn(updates, state, params=None, *, hessian_diag=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByAdaHessianState, fn)
        if hessian_diag is None:
            raise ValueError(
                f"{fn}.update needs the keyword argument `hessian_diag=` (a tree like the "
                "updates, e.g. from gradxform.second_order.hutchinson_diagonal); got none."
            )
        _checks.check_tree_like(updates, state.mu, tree_name="updates", like_name="state.mu", fn=fn)
        _checks.check_tree_like(
            hessian_diag, state.nu, tree_name="hessian_diag", like_name="state.nu", fn=fn, allow_none=False
        )
        count = _tree.safe_increment(state.count)

        def scalars(dtype):
            return _tree.moment_scalars(b1, b2, eps, 0.0, count, dtype), _tree.hp(hessian_power, dtype)

        updates, mu, nu = _tree.apply_rule(
            _adahessian_rule, updates, state.mu, state.nu, inputs=(hessian_diag,), scalars=scalars,
            spatial_axes=spatial_axes if spatial_average else None,
        )
        return updates, ScaleByAdaHessianState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(
    learning_rate=_hyper.LR, **scale_by_adahessian.hyperparameters, weight_decay=_hyper.NONNEG
)
def adahessian(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    hessian_power=1.0,
    weight_decay=0.0,
    mask=None,
    *,
    spatial_average: bool = False,
    spatial_axes: Sequence[int] = (0, 1),
    mu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    """AdaHessian: ``chain(scale_by_adahessian, add_decayed_weights, scale_by_learning_rate)``.

    See `scale_by_adahessian` for the rule. The weight decay is decoupled and
    scaled by the learning rate, as in the authors' code
    (:math:`\\theta \\leftarrow \\theta - \\eta (u_t + \\lambda \\theta)`); its
    ``update`` needs ``hessian_diag=`` and the params.

    Note:
        The authors' PyTorch optimizer defaults to ``lr=0.15, eps=1e-4``; here
        ``eps`` keeps `scale_by_adahessian`'s (and Adam's) ``1e-8``.

    Raises:
        ValueError: as `scale_by_adahessian`, a NaN ``learning_rate`` or one not finite
            in float32 (a negative one ascends, as in optax), or a negative
            ``weight_decay``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: 0.5 * jnp.sum(jnp.array([1.0, 10.0]) * w ** 2)
        >>> opt, w = gx.adahessian(0.5), jnp.ones(2)
        >>> state = opt.init(w)
        >>> g, d = gx.second_order.grad_and_hutchinson_diagonal(f, w, jax.random.PRNGKey(0))
        >>> u, state = opt.update(g, state, w, hessian_diag=d)
        >>> [round(x, 3) for x in gx.apply_updates(w, u).tolist()]  # both halve: w - 0.5 g / |D|
        [0.5, 0.5]
    """
    return chain(
        scale_by_adahessian(
            b1,
            b2,
            eps,
            hessian_power,
            spatial_average=spatial_average,
            spatial_axes=spatial_axes,
            mu_dtype=mu_dtype,
        ),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
