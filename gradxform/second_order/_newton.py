"""Newton's method with Levenberg damping, on the dense Hessian of a small problem."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation
from gradxform._treeops import ravel

# The most damping increases tried before giving up (each doubles tau).
MAX_DAMPING_TRIES = 100


class ScaleByNewtonState(NamedTuple):
    damping: jax.Array  # shape (), float32: the tau used at the last step (>= the damping argument)


def damped_cholesky(hessian: jax.Array, damping) -> tuple[jax.Array, jax.Array]:
    r"""Cholesky factor of :math:`H + \tau I` with the smallest tau of the sequence below that works.

    Nocedal & Wright's Algorithm 3.3 ("Cholesky with added multiple of the
    identity"): with :math:`\beta = 10^{-3} \max(\max_{ij} |H_{ij}|, 1)`,
    :math:`\tau_0 = \text{damping}` when :math:`\min_i H_{ii} > 0` (or damping > 0),
    else :math:`\tau_0 = \beta - \min_i H_{ii}`; while the factorization fails
    (:math:`H + \tau_k I` not positive definite), :math:`\tau_{k+1} = \max(2\tau_k, \beta)`.

    Returns:
        ``(L, tau)`` with :math:`L L^\top = H + \tau I`; tau is a scalar of H's dtype.
    """
    n = hessian.shape[0]
    dtype = hessian.dtype
    eye = jnp.eye(n, dtype=dtype)
    damping = _tree.hp(damping, dtype)
    beta = jnp.asarray(1e-3, dtype) * jnp.maximum(jnp.max(jnp.abs(hessian)) if n else jnp.asarray(0, dtype), 1)
    min_diag = jnp.min(jnp.diagonal(hessian)) if n else jnp.asarray(1, dtype)
    tau0 = jnp.where((min_diag > 0) | (damping > 0), damping, beta - min_diag)

    def cond(carry):
        _, ok, tries, _ = carry
        return (~ok) & (tries <= MAX_DAMPING_TRIES)

    def body(carry):  # one factorization per try; tau grows from the second try on
        tau, _, tries, _ = carry
        tau = jnp.where(tries > 0, jnp.maximum(2 * tau, beta), tau)
        chol = jnp.linalg.cholesky(hessian + tau * eye)
        return tau, jnp.all(jnp.isfinite(chol)), tries + 1, chol

    init = (tau0, jnp.asarray(False), jnp.zeros([], jnp.int32), jnp.zeros_like(hessian))
    tau, _, _, chol = jax.lax.while_loop(cond, body, init)
    return chol, tau


@jax.jit
def _damped_solve(hessian: jax.Array, g: jax.Array, damping: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(H + tau I)^{-1} g by a Cholesky solve; jitted at module level so eager calls compile once."""
    h = hessian.astype(g.dtype)
    h = 0.5 * (h + h.T)  # the solve assumes symmetry; round-off asymmetry is dropped
    chol, tau = damped_cholesky(h, damping)
    return jax.scipy.linalg.cho_solve((chol, True), g), tau


@_hyper.declare(damping=_hyper.NONNEG._replace(draw=(0.0, 1.0), source="validator"))
def scale_by_newton(damping=0.0) -> GradientTransformation:
    r"""Newton's direction: solves :math:`(H + \tau I)\, u = g` for the flattened gradient.

    With ``hessian=`` the dense Hessian :math:`H` of the loss over the params
    flattened by ``jax.flatten_util.ravel_pytree`` (see
    `gradxform.second_order.dense_hessian`):

    .. math::
        u = (H + \tau I)^{-1} g, \qquad \tau = \text{damping}
        \text{ if } H + \text{damping}\, I \succ 0, \text{ else the Levenberg increase of `damped_cholesky`}

    computed by a Cholesky solve, never an explicit inverse. ``u`` has the
    gradient's sign, so ``chain(scale_by_newton(), scale_by_learning_rate(1.))``
    is a full Newton step :math:`\theta \leftarrow \theta - H^{-1} g`, which
    reaches the minimum of a positive definite quadratic
    :math:`E = \frac12 w^\top A w + w^\top b` in one step (the optimal learning
    rate :math:`\eta_{opt} = E''^{-1}` of LeCun et al., 1998, Section 5.1). On a
    non-convex point (:math:`H` indefinite) :math:`\tau` grows until
    :math:`H + \tau I \succ 0`, so :math:`u` is a descent direction.

    Note:
        :math:`O(p^2)` memory and :math:`O(p^3)` time in the number of parameters
        :math:`p`: for small problems. optax has no Newton transformation. The
        tau actually used is ``state.damping``.

    Args:
        damping: :math:`\tau \ge 0` added to the diagonal (Levenberg damping);
            0 gives the pure Newton step where :math:`H \succ 0`.

    Returns:
        A `GradientTransformation` whose ``update`` needs ``hessian=`` (a ``(p, p)`` array).

    Raises:
        ValueError: a negative ``damping``; at update, a missing ``hessian`` or one
            not of shape ``(p, p)``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: 0.5 * w @ jnp.array([[2.0, 1.0], [1.0, 4.0]]) @ w - w.sum()
        >>> w = jnp.zeros(2)
        >>> tx = gx.chain(gx.scale_by_newton(), gx.scale_by_learning_rate(1.0))
        >>> u, _ = tx.update(jax.grad(f)(w), tx.init(w), w, hessian=gx.second_order.dense_hessian(f, w))
        >>> [round(x, 5) for x in gx.apply_updates(w, u).tolist()]  # A^{-1} 1
        [0.42857, 0.14286]

    References:
        Goodfellow, Bengio & Courville, Deep Learning, 2016, Section 8.6.1 (Newton's
        method); Nocedal & Wright, Numerical Optimization, 2nd ed., 2006: Section 3.4,
        Algorithm 3.3; Levenberg, 1944; LeCun, Bottou, Orr & Müller, Efficient
        BackProp, 1998, Section 5.1 (the optimal learning rate of a quadratic).
    """
    fn = "scale_by_newton"

    def init_fn(params):
        del params
        return ScaleByNewtonState(damping=jnp.zeros([], jnp.float32))

    def update_fn(updates, state, params=None, *, hessian=None, **extra_args):
        del extra_args
        _checks.check_state_type(state, ScaleByNewtonState, fn)
        if hessian is None:
            raise ValueError(
                f"{fn}.update needs the keyword argument `hessian=`: the dense (p, p) Hessian "
                "of the loss over the flattened params (gradxform.second_order.dense_hessian)."
            )
        if any(u is None for u in jax.tree_util.tree_leaves(updates, is_leaf=_tree.is_none)):
            raise ValueError(f"{fn}: updates with None leaves (masked) are not supported.")
        if params is not None:  # the dtype policy: the wider of the gradients' and the params' dtype
            updates = _tree.as_updates(updates, params, squared=(False,))
        flat_g, unravel = ravel(updates)
        p = flat_g.shape[0]
        if np.shape(hessian) != (p, p):
            raise ValueError(
                f"{fn}: `hessian` must have shape ({p}, {p}) for updates with {p} elements in all "
                f"(flattened like jax.flatten_util.ravel_pytree); got shape {tuple(np.shape(hessian))}."
            )
        direction, tau = _damped_solve(jnp.asarray(hessian), flat_g, jnp.asarray(damping))
        return unravel(direction), ScaleByNewtonState(damping=tau.astype(state.damping.dtype))

    return GradientTransformation(init_fn, update_fn)
