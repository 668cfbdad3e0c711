"""Adam (Kingma & Ba, 2015) and AdamW (Loshchilov & Hutter, 2019)."""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._regularization import add_decayed_weights
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByAdamState(NamedTuple):
    count: jax.Array  # shape (), int32: number of updates so far
    mu: Any  # first moment, like params (in mu_dtype if given)
    nu: Any  # second moment, like params (in nu_dtype if given)


def scale_by_adam(
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""Rescales by Adam's bias-corrected moment estimates.

    .. math::
        s_t = \beta_1 s_{t-1} + (1-\beta_1) g_t, \qquad
        r_t = \beta_2 r_{t-1} + (1-\beta_2) g_t \odot g_t, \\
        \hat s_t = \frac{s_t}{1-\beta_1^t}, \qquad \hat r_t = \frac{r_t}{1-\beta_2^t}, \qquad
        u_t = \frac{\hat s_t}{\sqrt{\hat r_t + \epsilon_{root}} + \epsilon}

    With ``nesterov=True`` (NAdam), :math:`\hat s_t = \frac{\beta_1 s_t}{1-\beta_1^{t+1}} + \frac{(1-\beta_1) g_t}{1-\beta_1^t}`.

    Note:
        Decks 000 and 002 (and the paper) put :math:`\delta` outside the root, as here;
        deck 003 (Goodfellow et al. Algorithm 8.7) writes :math:`\sqrt{\hat r + \delta}`,
        which is ``eps=0, eps_root=delta``.

    Args:
        b1, b2: decay rates in [0, 1).
        eps, eps_root: non-negative stabilizers outside / inside the root.
        mu_dtype: dtype of the first moment (default: the params' dtype).
        nesterov: use NAdam's look-ahead first moment.
        nu_dtype: dtype of the second moment (default: the params' dtype, float32 for
            float16 params, whose range cannot hold squared gradients above 256).

    Raises:
        ValueError: ``b1`` or ``b2`` outside [0, 1), negative ``eps`` or ``eps_root``.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.scale_by_adam()
        >>> u, _ = tx.update(jnp.array([0.5, -2.0]), tx.init(jnp.zeros(2)))
        >>> [round(x, 6) for x in u.tolist()]  # the first step is sign(g) up to eps
        [1.0, -1.0]
    """
    fn = "scale_by_adam"
    _checks.check_decay("b1", b1, fn=fn)
    _checks.check_decay("b2", b2, fn=fn)
    _checks.check_non_negative("eps", eps, fn=fn)
    _checks.check_non_negative("eps_root", eps_root, fn=fn)

    def init_fn(params):
        return ScaleByAdamState(
            count=jnp.zeros([], jnp.int32),
            mu=_tree.zeros_like(params, mu_dtype),
            nu=_tree.square_zeros_like(params, nu_dtype),
        )

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByAdamState, fn)
        _checks.check_tree_like(updates, state.mu, tree_name="updates", like_name="state.mu", fn=fn)
        count = _tree.safe_increment(state.count)

        def make_scalars(cdt):
            # Once per compute dtype, not once per leaf: a tree of N leaves traces N
            # times fewer scalar ops (and XLA has fewer to CSE away).
            beta1, beta2 = _tree.hp(b1, cdt), _tree.hp(b2, cdt)
            bc1 = _tree.bias_correction(b1, count, cdt)
            bc1_next = _tree.bias_correction(b1, _tree.safe_increment(count), cdt) if nesterov else None
            return (beta1, beta2, 1 - beta1, 1 - beta2, bc1, bc1_next,
                    _tree.bias_correction(b2, count, cdt), _tree.hp(eps_root, cdt), _tree.hp(eps, cdt))

        scalars = _tree.per_dtype(make_scalars)

        def leaf(g, m, v):
            if g is None:
                return None, m, v
            cdt = _tree.compute_dtype(g.dtype)
            beta1, beta2, one_m_b1, one_m_b2, bc1, bc1_next, bc2, e_root, e = scalars(cdt)
            t = _tree
            g_ = t.cast(g, cdt)
            # Round the moments to their storage dtype first and use the stored values:
            # then the update reads the new moments (written in place) and never the old
            # ones, so XLA needs no copy of the donated state (bf16 moments).
            m_out = t.cast(t.add(t.mul(one_m_b1, g_), t.mul(beta1, t.cast(m, cdt))), m.dtype)
            v_out = t.cast(t.add(t.mul(one_m_b2, t.abs_sq(g_)), t.mul(beta2, t.cast(v, cdt))), v.dtype)
            m_new, v_new = t.cast(m_out, cdt), t.cast(v_out, cdt)
            if nesterov:
                m_hat = t.add(t.div(t.mul(beta1, m_new), bc1_next), t.div(t.mul(one_m_b1, g_), bc1))
            else:
                m_hat = t.div(m_new, bc1)
            v_hat = t.div(v_new, bc2)
            u = t.div(m_hat, t.add(t.sqrt(t.add(v_hat, e_root)), e))
            return t.cast(u, g.dtype), m_out, v_out

        updates, mu, nu = _tree.map_leaves(leaf, updates, state.mu, state.nu, n_out=3)
        return updates, ScaleByAdamState(count=count, mu=mu, nu=nu)

    return GradientTransformation(init_fn, update_fn)


def adam(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    *,
    nesterov: bool = False,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    """Adam: ``chain(scale_by_adam(...), scale_by_learning_rate(learning_rate))``; see `scale_by_adam`.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> opt = gx.adam(1e-2)
        >>> params = {'w': jnp.ones(3)}
        >>> state = opt.init(params)
        >>> grads = jax.grad(lambda p: jnp.sum(p['w'] ** 2))(params)
        >>> updates, state = opt.update(grads, state, params)
        >>> [round(x, 4) for x in gx.apply_updates(params, updates)['w'].tolist()]
        [0.99, 0.99, 0.99]
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        scale_by_learning_rate(learning_rate),
    )


def adamw(
    learning_rate: ScalarOrSchedule,
    b1=0.9,
    b2=0.999,
    eps=1e-8,
    eps_root=0.0,
    mu_dtype: Optional[Any] = None,
    weight_decay=1e-4,
    mask=None,
    *,
    nesterov: bool = False,
    nu_dtype: Optional[Any] = None,
) -> GradientTransformation:
    r"""AdamW: ``chain(scale_by_adam, add_decayed_weights(weight_decay, mask), scale_by_learning_rate)``.

    The update is :math:`-\eta\,(u^{adam}_t + \lambda \theta_t)` (optax's and PyTorch's
    form: the decay is scaled by the learning rate). Deck 002 writes
    :math:`-\alpha u^{adam}_t - \lambda\theta_t` (decay not scaled by the learning
    rate); with a constant learning rate, ``weight_decay = lambda / alpha`` gives it.
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, nu_dtype=nu_dtype),
        add_decayed_weights(weight_decay, mask),
        scale_by_learning_rate(learning_rate),
    )
