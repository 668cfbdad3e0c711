"""AdEMAMix (Pagliardini et al., 2024) and Simplified-AdEMAMix (Morwani et al., 2025)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate

__all__ = [
    "ScaleByAdemamixState",
    "ScaleBySimplifiedAdEMAMixState",
    "ademamix",
    "scale_by_ademamix",
    "scale_by_simplified_ademamix",
    "simplified_ademamix",
]


class ScaleByAdemamixState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far (t - 1 before the update)
    count_m2: jax.Array  # shape (), int32: the step the b3 and alpha schedules are evaluated at
    m1: Any  # the fast EMA, like params (in mu_dtype if given)
    m2: Any  # the slow EMA, like params (in mu_dtype if given)
    nu: Any  # second moment, like params (float32 for float16 params)


class ScaleBySimplifiedAdEMAMixState(NamedTuple):
    t: jax.Array  # shape (), int32: number of updates so far
    m: Any  # the (unnormalized) momentum, like params
    n: Any  # second moment, like params (float32 for float16 params)


# ----------------------------------------------------------------------------- AdEMAMix


class _AdemamixScalars(NamedTuple):
    m: _tree.MomentScalars  # b1, b2, their bias corrections, eps, eps_root
    b3: _tree.Decay
    alpha: jax.Array


@_tree.leaf_rule
def _ademamix_rule(g, m1, m2, nu, s: _AdemamixScalars):
    x = g.astype(s.m.eps.dtype)
    m1_new = _tree.update_moment(x, m1, s.m.b1)
    m2_new = _tree.update_moment(x, m2, s.b3)
    nu_new = _tree.update_moment(_tree.abs_sq(x), nu, s.m.b2)
    m1_hat = m1_new / s.m.bc1
    nu_hat = nu_new / s.m.bc2
    num = m1_hat + s.alpha * m2_new
    u = jnp.where(num == 0, 0, num / (jnp.sqrt(nu_hat + s.m.eps_root) + s.m.eps))  # eps = 0, g = 0: 0, not 0/0
    return u.astype(g.dtype), m1_new.astype(m1.dtype), m2_new.astype(m2.dtype), nu_new.astype(nu.dtype)


def _at(value: Any, step: jax.Array) -> Any:
    """A hyperparameter, or a schedule evaluated at the 0-based `step`."""
    return value(step) if callable(value) else value


_ALPHA = _hyper.NONNEG._replace(draw=(0.0, 10.0), source="Pagliardini et al. (2024): alpha >= 0 weighs the slow EMA")
_ADEMAMIX = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, b3=_hyper.DECAY, alpha=_ALPHA, eps=_hyper.EPS,
                 eps_root=_hyper.EPS_ROOT)


@_hyper.declare(**_ADEMAMIX)
def scale_by_ademamix(
    b1=0.9,
    b2=0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 6.0,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""Rescales by AdEMAMix's mixture of a fast and a slow EMA (Pagliardini et al., 2024, Algorithm 1).

    .. math::
        m^{(1)}_t = \beta_1 m^{(1)}_{t-1} + (1 - \beta_1) g_t, \qquad
        m^{(2)}_t = \beta_3 m^{(2)}_{t-1} + (1 - \beta_3) g_t, \qquad
        \nu_t = \beta_2 \nu_{t-1} + (1 - \beta_2) g_t^2, \\
        u_t = \frac{m^{(1)}_t / (1 - \beta_1^t) + \alpha\, m^{(2)}_t}
                   {\sqrt{\nu_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon}

    The slow EMA :math:`m^{(2)}` is not bias-corrected. ``b3`` and ``alpha`` may be
    schedules (the paper warms both up over many steps), called with the 0-based
    step ``count_m2`` (0 at the first update).

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the fast EMA.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
        b3: :math:`\beta_3 \in [0, 1)`, the decay of the slow EMA, or a schedule of it.
        alpha: :math:`\alpha \ge 0`, the weight of the slow EMA, or a schedule of it.
        eps, eps_root: non-negative stabilizers outside / inside the root.
        mu_dtype: dtype of both EMAs (default: the params' dtype).

    Returns:
        A `GradientTransformation` with state `ScaleByAdemamixState`.

    Raises:
        ValueError: ``b1``, ``b2`` or a constant ``b3`` outside [0, 1), a constant
            ``alpha < 0``, negative ``eps`` or ``eps_root``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.scale_by_ademamix(b3=0.5, alpha=1.0, eps=0.1)
        >>> u, _ = tx.update(jnp.array([3.0, -1.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 6) for x in u.tolist()]  # (g + 0.5 g) / (|g| + 0.1)
        [1.451613, -1.363636]

    References:
        Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older",
        ICLR 2025 (arXiv:2409.03137), Algorithm 1.
    """
    fn = "scale_by_ademamix"

    def init_fn(params):
        return ScaleByAdemamixState(
            count=jnp.zeros([], jnp.int32),
            count_m2=jnp.zeros([], jnp.int32),
            m1=_tree.zeros_like(params, mu_dtype),
            m2=_tree.zeros_like(params, mu_dtype),
            nu=_tree.square_zeros_like(params),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByAdemamixState, updates, "m1")
        count = _tree.safe_increment(state.count)
        b3_t, alpha_t = _at(b3, state.count_m2), _at(alpha, state.count_m2)

        def scalars(dtype):
            return _AdemamixScalars(
                m=_tree.moment_scalars(b1, b2, eps, eps_root, count, dtype),
                b3=_tree.decay(b3_t, dtype),
                alpha=_tree.hp(alpha_t, dtype),
            )

        updates, m1, m2, nu = _tree.apply_rule(
            _ademamix_rule, updates, state.m1, state.m2, state.nu, scalars=scalars
        )
        new_state = ScaleByAdemamixState(
            count=count, count_m2=_tree.safe_increment(state.count_m2), m1=m1, m2=m2, nu=nu
        )
        return updates, new_state

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_ADEMAMIX, weight_decay=_hyper.NONNEG)
def ademamix(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    b3: ScalarOrSchedule = 0.9999,
    alpha: ScalarOrSchedule = 5.0,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    weight_decay=0.0,
    mask: Any = None,
) -> GradientTransformation:
    r"""AdEMAMix: ``chain(scale_by_ademamix(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))``.

    The step is :math:`-\eta_t(u_t + \lambda\theta_{t-1})` with :math:`u_t` of
    `scale_by_ademamix` (Pagliardini et al., 2024, Algorithm 1, line 12). The
    default ``alpha`` is 5.0 here and 6.0 in `scale_by_ademamix`, as in optax.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.ademamix(0.1, b3=0.5, alpha=1.0, eps=0.0)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, 0.5])}, opt.init(params), params)
        >>> gx.apply_updates(params, updates)['w'].tolist()  # -0.1 * (1 + 0.5)
        [0.8500000238418579, -1.149999976158142]

    References:
        Pagliardini, Ablin & Grangier, "The AdEMAMix Optimizer: Better, Faster, Older",
        ICLR 2025 (arXiv:2409.03137), Algorithm 1.
    """
    return chain(
        scale_by_ademamix(b1, b2, b3, alpha, eps, eps_root, mu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )


# ----------------------------------------------------------------------------- Simplified-AdEMAMix


class _SimplifiedScalars(NamedTuple):
    b1: jax.Array
    b2: _tree.Decay
    bc2: jax.Array
    alpha: jax.Array
    eps: jax.Array
    eps_root: jax.Array


@_tree.leaf_rule
def _simplified_rule(g, m, n, s: _SimplifiedScalars):
    x = g.astype(s.eps.dtype)
    m_new = s.b1 * m.astype(x.dtype) + x  # an unnormalized sum: no (1 - b1)
    n_new = _tree.update_moment(_tree.abs_sq(x), n, s.b2)
    num = m_new + s.alpha * x
    u = jnp.where(num == 0, 0, num / (jnp.sqrt(n_new / s.bc2 + s.eps_root) + s.eps))  # eps = 0, g = 0: 0, not 0/0
    return u.astype(g.dtype), m_new.astype(m.dtype), n_new.astype(n.dtype)


_SIMPLIFIED = dict(b1=_hyper.DECAY, b2=_hyper.DECAY, alpha=_ALPHA, eps=_hyper.EPS, eps_root=_hyper.EPS_ROOT)


@_hyper.declare(**_SIMPLIFIED)
def scale_by_simplified_ademamix(
    b1=0.99, b2=0.95, alpha: ScalarOrSchedule = 0.0, eps=1e-8, eps_root=0.0
) -> GradientTransformation:
    r"""Rescales by Simplified-AdEMAMix's one momentum and the current gradient (Morwani et al., 2025).

    .. math::
        m_t = \beta_1 m_{t-1} + g_t, \qquad
        \nu_t = \beta_2 \nu_{t-1} + (1 - \beta_2) g_t^2, \qquad
        u_t = \frac{m_t + \alpha g_t}{\sqrt{\nu_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon}

    The momentum is a sum, not an average (no :math:`1 - \beta_1` and no bias
    correction): it plays AdEMAMix's slow EMA, and :math:`\alpha g_t` its fast one.
    ``alpha`` may be a schedule, called with the 0-based step (0 at the first update).
    With :math:`\alpha = 0` this is Adam with learning rate :math:`\eta / (1 - \beta_1)`
    and no first-moment bias correction.

    Args:
        b1: :math:`\beta_1 \in [0, 1)`, the decay of the momentum.
        b2: :math:`\beta_2 \in [0, 1)`, the decay of the second moment.
        alpha: :math:`\alpha \ge 0`, the weight of the current gradient, or a schedule of it.
        eps, eps_root: non-negative stabilizers outside / inside the root.

    Returns:
        A `GradientTransformation` with state `ScaleBySimplifiedAdEMAMixState`.

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), a constant ``alpha < 0``, negative
            ``eps`` or ``eps_root``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.scale_by_simplified_ademamix(b1=0.5, b2=0.8, alpha=2.0, eps=0.1)
        >>> u, _ = tx.update(jnp.array([3.0, -1.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 6) for x in u.tolist()]  # (g + 2 g) / (|g| + 0.1)
        [2.903226, -2.727273]

    References:
        Morwani, Vyas, Zhang & Kakade, "Connections between Schedule-Free Optimizers,
        AdEMAMix, and Accelerated SGD Variants", arXiv:2502.02431 (2025), the
        Simplified-AdEMAMix algorithm.
    """
    fn = "scale_by_simplified_ademamix"

    def init_fn(params):
        return ScaleBySimplifiedAdEMAMixState(
            t=jnp.zeros([], jnp.int32), m=_tree.zeros_like(params), n=_tree.square_zeros_like(params)
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleBySimplifiedAdEMAMixState, updates, "m")
        t = _tree.safe_increment(state.t)
        alpha_t = _at(alpha, state.t)

        def scalars(dtype):
            return _SimplifiedScalars(
                b1=_tree.hp(b1, dtype),
                b2=_tree.decay(b2, dtype),
                bc2=_tree.bias_correction(b2, t, dtype),
                alpha=_tree.hp(alpha_t, dtype),
                eps=_tree.hp(eps, dtype),
                eps_root=_tree.hp(eps_root, dtype),
            )

        updates, m, n = _tree.apply_rule(_simplified_rule, updates, state.m, state.n, scalars=scalars)
        return updates, ScaleBySimplifiedAdEMAMixState(t=t, m=m, n=n)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_SIMPLIFIED, weight_decay=_hyper.NONNEG)
def simplified_ademamix(
    learning_rate: ScalarOrSchedule,
    b1=0.99,
    b2=0.95,
    alpha: ScalarOrSchedule = 0.0,
    eps=1e-8,
    eps_root=0.0,
    weight_decay=0.0,
    mask: Any = None,
) -> GradientTransformation:
    r"""Simplified-AdEMAMix: ``chain(scale_by_simplified_ademamix(...), add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))``.

    The step is :math:`-\eta_t(u_t + \lambda\theta_{t-1})` with :math:`u_t` of
    `scale_by_simplified_ademamix`.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> opt = gx.contrib.simplified_ademamix(0.1, alpha=1.0, eps=0.0)
        >>> params = {'w': jnp.array([1.0, -1.0])}
        >>> updates, _ = opt.update({'w': jnp.array([0.5, 0.5])}, opt.init(params), params)
        >>> gx.apply_updates(params, updates)['w'].tolist()  # -0.1 * (1 + 1)
        [0.800000011920929, -1.2000000476837158]

    References:
        Morwani, Vyas, Zhang & Kakade, "Connections between Schedule-Free Optimizers,
        AdEMAMix, and Accelerated SGD Variants", arXiv:2502.02431 (2025).
    """
    return chain(
        scale_by_simplified_ademamix(b1, b2, alpha, eps, eps_root),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
