"""Optimistic gradient descent (Daskalakis et al., 2018): `scale_by_optimistic_gradient`,
`optimistic_gradient_descent`, `optimistic_adam`, `optimistic_adam_v2`."""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._adam import scale_by_adam
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByOptimisticGradientState(NamedTuple):
    is_initial_step: jax.Array  # shape (), bool: no gradient has been seen yet
    previous_gradient: Any  # g_{t-1}, like params (zeros before the first step)


class _OptimisticScalars(NamedTuple):
    alpha_plus_beta: jax.Array
    beta: jax.Array
    first: jax.Array  # bool: g_{t-1} := g_t at the first step


@_tree.leaf_rule
def _optimistic_rule(g, prev, s: _OptimisticScalars):
    x = g.astype(s.beta.dtype)
    p = jnp.where(s.first, x, prev.astype(x.dtype))
    u = s.alpha_plus_beta * x - s.beta * p
    return u.astype(g.dtype), g.astype(prev.dtype)


def _no_schedule(fn: str, **values: Any) -> None:
    for name, value in values.items():
        if callable(value):
            raise TypeError(
                f"{fn}: `{name}` must be a number, got the callable {value!r}; the state keeps no step "
                "count, so a schedule is not supported."
            )


_COEF = _hyper.number(draw=(0.0, 2.0), source="Mokhtari et al. (2020): alpha, beta > 0; any real accepted")
_OPTIMISTIC = {"alpha": _COEF, "beta": _COEF}


def _sum(a: Any, b: Any, dtype: Any) -> jax.Array:
    """a + b in `dtype`, formed in double precision when both are Python numbers."""
    if _tree._python_number(a) and _tree._python_number(b):
        return _tree.hp(float(a) + float(b), dtype)
    return _tree.hp(a, dtype) + _tree.hp(b, dtype)


@_hyper.declare(**_OPTIMISTIC)
def scale_by_optimistic_gradient(alpha=1.0, beta=1.0) -> GradientTransformation:
    r"""Generalized optimistic gradient: the gradient plus a correction by the previous one.

    .. math:: u_t = (\alpha + \beta)\, g_t - \beta\, g_{t-1}, \qquad g_0 := g_1

    With :math:`\alpha = \beta = 1` and a learning rate :math:`\eta` this is
    optimistic gradient descent, :math:`\theta_{t+1} = \theta_t - 2\eta g_t + \eta g_{t-1}`
    (Daskalakis et al., 2018, Section 3). At the first step there is no previous
    gradient and :math:`u_1 = \alpha g_1` (optax's convention, issue 1082).

    Args:
        alpha: :math:`\alpha`, the weight of the gradient (a real number).
        beta: :math:`\beta`, the weight of the optimistic correction, the negative
            momentum (a real number).

    Returns:
        A `GradientTransformation` with state `ScaleByOptimisticGradientState`.

    Raises:
        ValueError: a NaN ``alpha`` or ``beta``. TypeError: a schedule (callable).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_optimistic_gradient(alpha=1.0, beta=1.0)
        >>> state = tx.init(jnp.zeros(2))
        >>> u, state = tx.update(jnp.array([1.0, 2.0]), state)
        >>> u.tolist()  # alpha * g_1
        [1.0, 2.0]
        >>> tx.update(jnp.array([3.0, 0.0]), state)[0].tolist()  # 2 g_2 - g_1
        [5.0, -2.0]

    References:
        Daskalakis et al., "Training GANs with Optimism", ICLR 2018, Section 3.
        Mokhtari et al., "A Unified Analysis of Extra-gradient and Optimistic Gradient
        Methods for Saddle Point Problems", AISTATS 2020 (the generalized form).
    """
    fn = "scale_by_optimistic_gradient"
    _no_schedule(fn, alpha=alpha, beta=beta)

    def init_fn(params):
        return ScaleByOptimisticGradientState(
            is_initial_step=jnp.array(True), previous_gradient=_tree.zeros_like(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByOptimisticGradientState, updates, "previous_gradient")
        first = jnp.asarray(state.is_initial_step, bool)

        def scalars(dtype):
            return _OptimisticScalars(_sum(alpha, beta, dtype), _tree.hp(beta, dtype), first)

        updates, prev = _tree.apply_rule(_optimistic_rule, updates, state.previous_gradient, scalars=scalars)
        return updates, ScaleByOptimisticGradientState(is_initial_step=jnp.array(False), previous_gradient=prev)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_OPTIMISTIC)
def optimistic_gradient_descent(
    learning_rate: ScalarOrSchedule, alpha=1.0, beta=1.0
) -> GradientTransformation:
    r"""Optimistic gradient descent: ``chain(scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))``.

    The step is :math:`-\eta_t((\alpha + \beta) g_t - \beta g_{t-1})`; with the
    defaults, :math:`\theta_{t+1} = \theta_t - 2\eta g_t + \eta g_{t-1}`
    (Daskalakis et al., 2018); see `scale_by_optimistic_gradient`. ``alpha`` and
    ``beta`` are numbers (optax's annotation allows schedules, which its update
    cannot use).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.optimistic_gradient_descent(0.1)
        >>> state = opt.init(jnp.zeros(1))
        >>> _, state = opt.update(jnp.array([1.0]), state)
        >>> opt.update(jnp.array([2.0]), state)[0].tolist()  # -0.1 * (2 * 2 - 1)
        [-0.30000001192092896]

    References:
        Daskalakis et al., "Training GANs with Optimism", ICLR 2018.
    """
    return chain(
        scale_by_optimistic_gradient(alpha=alpha, beta=beta),
        scale_by_learning_rate(learning_rate),
    )


_ADAM = {"b1": _hyper.DECAY, "b2": _hyper.DECAY, "eps": _hyper.EPS, "eps_root": _hyper.EPS_ROOT, "nesterov": _hyper.BOOL}


@_hyper.declare(learning_rate=_hyper.LR._replace(scalar=True), optimism=_COEF._replace(optional=True), **_ADAM)
def optimistic_adam(
    learning_rate,
    optimism=None,
    b1=0.9,
    b2=0.999,
    eps=1e-08,
    eps_root=0.0,
    mu_dtype: Any | None = None,
    *,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam (deprecated in optax; use `optimistic_adam_v2`).

    ``chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov),
    scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism),
    scale_by_learning_rate(1.0))``: with :math:`a_t` Adam's direction and
    :math:`\rho` the optimism (default: the learning rate),

    .. math:: \theta_{t+1} = \theta_t - (\eta + \rho)\, a_t + \rho\, a_{t-1}

    which for :math:`\rho = \eta` is Daskalakis et al. (2018), Algorithm 1.

    Args:
        learning_rate: :math:`\eta`, a number (no schedule).
        optimism: :math:`\rho`, the weight of the correction (None: the learning rate).
        b1, b2, eps, eps_root, mu_dtype, nesterov: as for `scale_by_adam` (NAdam's
            look-ahead by default).

    Raises:
        ValueError: a schedule as ``learning_rate`` (as optax), or an argument out of range.

    Warns:
        DeprecationWarning: as optax's.

    Examples:
        >>> import warnings, jax.numpy as jnp, gradxform as gx
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     opt = gx.optimistic_adam(0.1, nesterov=False)
        >>> opt.update(jnp.array([1.0, -1.0]), opt.init(jnp.zeros(2)))[0].tolist()  # -0.1 a_1, a_1 = sign(g_1)
        [-0.10000000149011612, 0.10000000149011612]

    References:
        Daskalakis et al., "Training GANs with Optimism", ICLR 2018, Algorithm 1.
    """
    warnings.warn(
        "`optimistic_adam` is deprecated, please use `optimistic_adam_v2` instead.",
        category=DeprecationWarning,
        stacklevel=3,  # the caller of the validating wrapper
    )
    if callable(learning_rate):
        raise ValueError(  # noqa: TRY004 - optax's error type
            "optimistic_adam: `learning_rate` must be a number, not a schedule; "
            "`optimistic_adam_v2` supports learning rate schedules."
        )
    if optimism is None:
        optimism = learning_rate
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha=learning_rate, beta=optimism),
        scale_by_learning_rate(1.0),
    )


@_hyper.declare(learning_rate=_hyper.LR, **_OPTIMISTIC, **_ADAM)
def optimistic_adam_v2(
    learning_rate: ScalarOrSchedule,
    *,
    alpha=1.0,
    beta=1.0,
    b1=0.9,
    b2=0.999,
    eps=1e-08,
    eps_root=0.0,
    mu_dtype: Any | None = None,
    nesterov: bool = True,
) -> GradientTransformation:
    r"""Optimistic Adam: ``chain(scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov), scale_by_optimistic_gradient(alpha, beta), scale_by_learning_rate(learning_rate))``.

    With :math:`a_t` Adam's direction (NAdam's look-ahead by default),

    .. math:: \theta_{t+1} = \theta_t - \eta_t\left((\alpha + \beta)\, a_t - \beta\, a_{t-1}\right)

    which for :math:`\alpha = \beta = 1` is Daskalakis et al. (2018), Algorithm 1.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.optimistic_adam_v2(0.1, nesterov=False)
        >>> opt.update(jnp.array([1.0, -1.0]), opt.init(jnp.zeros(2)))[0].tolist()  # -0.1 * alpha a_1
        [-0.10000000149011612, 0.10000000149011612]

    References:
        Daskalakis et al., "Training GANs with Optimism", ICLR 2018, Algorithm 1.
    """
    return chain(
        scale_by_adam(b1=b1, b2=b2, eps=eps, eps_root=eps_root, mu_dtype=mu_dtype, nesterov=nesterov),
        scale_by_optimistic_gradient(alpha=alpha, beta=beta),
        scale_by_learning_rate(learning_rate),
    )
