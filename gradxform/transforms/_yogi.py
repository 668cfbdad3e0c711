"""Yogi (Zaheer et al., 2018): `scale_by_yogi` and `yogi`."""

from __future__ import annotations

import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._adam import ScaleByAdamState
from gradxform.transforms._scale import scale_by_learning_rate


@_tree.leaf_rule
def _yogi_rule(g, mu, nu, s: _tree.MomentScalars):
    x = g.astype(s.eps.dtype)
    x2 = _tree.abs_sq(x)
    mu_new = _tree.update_moment(x, mu, s.b1)
    nu_old = nu.astype(x.dtype)
    nu_new = nu_old - s.b2.complement * jnp.sign(nu_old - x2) * x2
    u = (mu_new / s.bc1) / (jnp.sqrt(nu_new / s.bc2 + s.eps_root) + s.eps)
    return u.astype(g.dtype), mu_new.astype(mu.dtype), nu_new.astype(nu.dtype)


_YOGI = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, eps=_hyper.EPS)


@_hyper.declare(**_YOGI, eps_root=_hyper.EPS_ROOT, initial_accumulator_value=_hyper.NONNEG)
def scale_by_yogi(
    b1=0.9, b2=0.999, eps=1e-3, eps_root=0.0, initial_accumulator_value=1e-6
) -> GradientTransformation:
    r"""Rescales by Yogi's additively updated second moment (Zaheer et al., 2018, Algorithm 2).

    .. math::
        \mu_t = \beta_1 \mu_{t-1} + (1-\beta_1) g_t, \qquad
        \nu_t = \nu_{t-1} - (1-\beta_2) \operatorname{sign}(\nu_{t-1} - g_t^2)\, g_t^2, \\
        u_t = \frac{\mu_t / (1-\beta_1^t)}{\sqrt{\nu_t / (1-\beta_2^t) + \epsilon_{root}} + \epsilon},
        \qquad \mu_0 = \nu_0 = v_{init}

    Adam's :math:`\nu_t - \nu_{t-1} = (1-\beta_2)(g_t^2 - \nu_{t-1})` moves by a
    multiple of :math:`\nu_{t-1}` and can forget a large second moment within a few
    steps; Yogi's moves by at most :math:`(1-\beta_2) g_t^2`.

    Note:
        The paper's Algorithm 2 has no bias correction; optax divides both moments
        by :math:`1-\beta^t`, and so does this. Both moments start at
        ``initial_accumulator_value`` (the paper's experiments use :math:`10^{-6}`).

    Args:
        b1, b2: decay rates :math:`\beta_1, \beta_2` in [0, 1).
        eps: :math:`\epsilon \ge 0` outside the root (the paper suggests :math:`10^{-3}`).
        eps_root: :math:`\epsilon_{root} \ge 0` inside the root.
        initial_accumulator_value: :math:`v_{init} \ge 0`, the initial value of both moments.

    Returns:
        A `GradientTransformation` with state `ScaleByAdamState`.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps``, ``eps_root`` or
            ``initial_accumulator_value``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_yogi(initial_accumulator_value=0.0, eps=0.0)
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 6) for x in u.tolist()]  # from nu_0 = 0 the first step is sign(g)
        [1.0, -1.0]

    References:
        Zaheer, Reddi, Sachan, Kale & Kumar, "Adaptive Methods for Nonconvex
        Optimization", NeurIPS 2018, Algorithm 2.
    """
    fn = "scale_by_yogi"

    def init_fn(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.full_like(params, initial_accumulator_value),
            nu=_tree.square_full_like(params, initial_accumulator_value),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAdamState, updates, "mu")
        count = _tree.safe_increment(state.count)
        updates, mu, nu = _tree.apply_rule(
            _yogi_rule, updates, state.mu, state.nu,
            scalars=lambda dtype: _tree.moment_scalars(b1, b2, eps, eps_root, count, dtype),
        )
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_YOGI)
def yogi(learning_rate: ScalarOrSchedule, b1=0.9, b2=0.999, eps=1e-3) -> GradientTransformation:
    """Yogi: ``chain(scale_by_yogi(b1, b2, eps), scale_by_learning_rate(learning_rate))``; see `scale_by_yogi`.

    As in optax, ``eps_root`` is 0 and ``initial_accumulator_value`` :math:`10^{-6}`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.yogi(0.1)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, -0.5])}, opt.init(params), params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]  # 1 - 0.1 * 0.50001 / 0.502
        [0.9004, -0.9004]
    """
    return chain(scale_by_yogi(b1=b1, b2=b2, eps=eps), scale_by_learning_rate(learning_rate))
