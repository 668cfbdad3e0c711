r"""Momentum: the trace, the EMA, SGD, and both forms of Nesterov momentum (``transforms/_momentum``)."""

from __future__ import annotations

from gradxform.testing.reference._common import Reference, _at, _full_like, _map, _rule, _to64, chain, identity
from gradxform.testing.reference._scale import scale_by_learning_rate


def trace(decay: float, nesterov: bool = False) -> Reference:
    r"""Momentum trace, optax ``trace`` (learning rate outside the trace).

    .. math:: \tau_t = g_t + \beta \tau_{t-1}, \quad u_t = \tau_t
              \ \ (\text{Nesterov: } u_t = g_t + \beta \tau_t), \quad \tau_0 = 0
    """

    def update(g, state, params):
        tr = _map(lambda x, t: x + decay * t, g, state["trace"])
        out = _map(lambda x, t: x + decay * t, g, tr) if nesterov else tr
        return out, {"trace": tr}

    return _rule(lambda p: {"trace": _full_like(p, 0.0)}, update)


def ema(decay: float, debias: bool = True) -> Reference:
    r"""Exponential moving average, optax ``ema``.

    .. math:: e_t = \beta e_{t-1} + (1 - \beta) g_t, \quad
              u_t = e_t / (1 - \beta^t) \ \text{if debias else}\ e_t, \quad e_0 = 0
    """

    def update(g, state, params):
        count = state["count"] + 1
        new = _map(lambda x, e: (1 - decay) * x + decay * e, g, state["ema"])
        out = _map(lambda e: e / (1 - decay**count), new) if debias else new
        return out, {"count": count, "ema": new}

    return _rule(lambda p: {"count": 0, "ema": _full_like(p, 0.0)}, update)


def sgd(learning_rate, momentum: float | None = None, nesterov: bool = False) -> Reference:
    r"""SGD as optax; without momentum Goodfellow, Bengio & Courville (2016), Deep Learning, Algorithm 8.1.

    .. math:: \tau_t = g_t + \alpha \tau_{t-1}, \quad
              u_t = -\eta_t \tau_t \ \ (\text{Nesterov: } u_t = -\eta_t (g_t + \alpha \tau_t))

    and :math:`u_t = -\eta_t g_t` with ``momentum=None``. ``chain(trace, scale_by_learning_rate)``.
    The velocity form of Algorithm 8.2 (learning rate inside) is :func:`momentum_velocity`; the
    look-ahead Nesterov momentum of Algorithm 8.3 is :func:`nesterov_lookahead_trajectory`.
    """
    first = identity() if momentum is None else trace(momentum, nesterov)
    return chain(first, scale_by_learning_rate(learning_rate))


def momentum_velocity(learning_rate, momentum: float) -> Reference:
    r"""SGD with momentum, learning rate *inside* the velocity (Goodfellow, Bengio & Courville (2016), Algorithm 8.2).

    .. math:: v_t = \alpha v_{t-1} - \eta_t g_t, \quad u_t = v_t, \quad v_0 = 0

    Note:
      ``sgd(lr, momentum)`` keeps the learning rate outside: :math:`u_t = -\eta_t \tau_t`
      with :math:`\tau_t = g_t + \alpha \tau_{t-1}`. With a constant learning rate the two
      are identical (:math:`v_t = -\eta \tau_t`); once :math:`\eta_t` changes over time they
      differ, because here past steps keep the learning rate they were taken with, while
      ``sgd`` rescales the whole trace by the current one.
    """

    def update(g, state, params):
        lr = _at(learning_rate, state["count"])
        vel = _map(lambda x, v: momentum * v - lr * x, g, state["velocity"])
        return vel, {"count": state["count"] + 1, "velocity": vel}

    return _rule(lambda p: {"count": 0, "velocity": _full_like(p, 0.0)}, update)


def nesterov_lookahead_trajectory(grad_fn, params, learning_rate, momentum: float, steps: int):
    r"""Nesterov momentum, gradient at the look-ahead point (Goodfellow, Bengio & Courville (2016), Algorithm 8.3).

    .. math:: \tilde\theta_k = \theta_k + \alpha v_k, \quad
              v_{k+1} = \alpha v_k - \eta_k \nabla L(\tilde\theta_k), \quad
              \theta_{k+1} = \theta_k + v_{k+1}, \quad v_0 = 0

    Args:
      grad_fn: ``params -> grads`` (pytrees).
      params: :math:`\theta_0`.
      learning_rate: a float or a schedule of the 0-based step :math:`k`.
      momentum: :math:`\alpha`.
      steps: number of iterations.

    Returns:
      ``(thetas, velocities)``: lists of ``steps + 1`` float64 pytrees, :math:`\theta_0..\theta_K`
      and :math:`v_0..v_K`.
    """
    theta = _to64(params)
    vel = _full_like(theta, 0.0)
    thetas, velocities = [theta], [vel]
    for k in range(steps):
        lr = _at(learning_rate, k)
        grads = _to64(grad_fn(_map(lambda t, v: t + momentum * v, theta, vel)))
        vel = _map(lambda v, g: momentum * v - lr * g, vel, grads)
        theta = _map(lambda t, v: t + v, theta, vel)
        thetas.append(theta)
        velocities.append(vel)
    return thetas, velocities


def nesterov_reformulated_trajectory(grad_fn, params, learning_rate, momentum: float, steps: int):
    r"""Nesterov momentum with the gradient at the current iterate (Sutskever et al., 2013; optax, PyTorch).

    The change of variables :math:`\phi_k = \theta_k + \alpha v_k` (the look-ahead point of
    :func:`nesterov_lookahead_trajectory`) turns the look-ahead form into

    .. math:: v_{k+1} = \alpha v_k - \eta_k \nabla L(\phi_k), \quad
              \phi_{k+1} = \phi_k + \alpha v_{k+1} - \eta_k \nabla L(\phi_k), \quad \phi_0 = \theta_0

    (from :math:`\phi_{k+1} = \theta_k + v_{k+1} + \alpha v_{k+1} = \phi_k - \alpha v_k + (1 + \alpha) v_{k+1}`),
    so the velocities are the same and :math:`\phi_k = \theta_k + \alpha v_k` at every step.
    With a constant learning rate :math:`\phi_{k+1} - \phi_k` is ``sgd(lr, momentum, nesterov=True)``'s
    update (:math:`v_k = -\eta \tau_k`).

    Returns:
      ``(phis, velocities)``: lists of ``steps + 1`` float64 pytrees.
    """
    phi = _to64(params)
    vel = _full_like(phi, 0.0)
    phis, velocities = [phi], [vel]
    for k in range(steps):
        lr = _at(learning_rate, k)
        grads = _to64(grad_fn(phi))
        vel = _map(lambda v, g: momentum * v - lr * g, vel, grads)
        phi = _map(lambda p, v, g: p + momentum * v - lr * g, phi, vel, grads)
        phis.append(phi)
        velocities.append(vel)
    return phis, velocities
