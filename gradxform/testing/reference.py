r"""Plain NumPy textbook update rules: the ground truth transformations are checked against.

Every factory takes the optimizer's (or transformation's) own arguments and returns a
:class:`Reference`: ``init(params) -> state`` and
``update(grads, state, params=None, **extra_args) -> (updates, state)`` over pytrees of
array-likes (NumPy or jax arrays; ``jax.tree_util`` handles the trees). Everything is
computed in float64; updates come back in each gradient leaf's dtype, the state is float64
(counts are Python ints). Extra keyword arguments are accepted and ignored, as in the
transformation protocol. Nothing here imports gradxform's own transformations.

Defaults reproduce optax 0.2.8's numerics (gradxform matches optax); the lecture decks'
variants are options. Sources, by the seed deck's file name under ``shared/seeds``:

* ``000``: gradient clipping, SGD, momentum, Nesterov look-ahead, AdaGrad and RMSProp with
  :math:`\delta + \sqrt{r}`, Adam with :math:`\sqrt{\hat r} + \delta`;
* ``001``: Rprop (sign rule only), momentum and Nesterov in :math:`\Delta W` form;
* ``002``: momentum, Nesterov, AdaGrad / RMSProp with :math:`\delta + \sqrt{r}`, Adam, AdamW
  (decay not scaled by the learning rate), AdaBelief's second moment;
* ``003`` (Goodfellow et al., ch. 8): Algorithms 8.2 (momentum), 8.4 (AdaGrad), 8.5
  (RMSProp with :math:`\sqrt{\delta + r}`), 8.7 (Adam with :math:`\sqrt{\hat r + \delta}`).

Notation, shared with the library's docstrings: :math:`g_t` the incoming gradient (or
update) at step :math:`t = 1, 2, \dots`; :math:`\eta_t` the learning rate, a float or a
schedule evaluated at the 0-based count :math:`t - 1` (as optax does); :math:`\mu_t,
\nu_t` the first and second moments, :math:`\hat\mu_t, \hat\nu_t` their bias-corrected
values :math:`\mu_t / (1 - \beta_1^t)`; :math:`\theta_t` the parameters; :math:`u_t` the
returned update (the caller applies :math:`\theta_{t} = \theta_{t-1} + u_t`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import numpy as np
from jax import tree_util as jtu

__all__ = [
    "Reference",
    "chain",
    "identity",
    "scale",
    "scale_by_learning_rate",
    "clip",
    "clip_by_global_norm",
    "trace",
    "ema",
    "scale_by_rss",
    "scale_by_rms",
    "scale_by_stddev",
    "scale_by_adam",
    "scale_by_belief",
    "scale_by_adadelta",
    "scale_by_rprop",
    "add_decayed_weights",
    "add_l1_decay",
    "sgd",
    "momentum_seed",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "adabelief",
    "adadelta",
    "rprop",
    "nesterov_lookahead_trajectory",
    "nesterov_reformulated_trajectory",
    "check_against_reference",
]


class Reference(NamedTuple):
    """A NumPy update rule: ``init(params) -> state``, ``update(grads, state, params=None) -> (updates, state)``."""

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any]]


# ----------------------------------------------------------------------------- tree helpers


def _map(fn, tree, *rest):
    return jtu.tree_map(fn, tree, *rest)


def _f64(x) -> np.ndarray:
    return np.asarray(x).astype(np.float64)


def _to64(tree):
    return _map(_f64, tree)


def _out_dtype(leaf) -> np.dtype:
    dtype = np.asarray(leaf).dtype
    # ml_dtypes' bfloat16 & co. are kind 'V' and not np.inexact subtypes.
    return dtype if np.issubdtype(dtype, np.inexact) or dtype.kind == "V" else np.dtype(np.float64)


def _cast_like(tree, like):
    return _map(lambda u, g: np.asarray(u).astype(_out_dtype(g)), tree, like)


def _full_like(tree, value: float):
    return _map(lambda x: np.full(np.shape(x), value, dtype=np.float64), tree)


def _at(value, count: int) -> float:
    """A float hyperparameter, or a schedule evaluated at the 0-based ``count``."""
    return float(value(count)) if callable(value) else float(value)


def _rule(init64, update64) -> Reference:
    """Wraps float64 ``init64(params)`` / ``update64(g, state, params)`` with the dtype conversions."""

    def init(params):
        return init64(_to64(params))

    def update(grads, state, params=None, **extra_args):
        del extra_args
        params64 = None if params is None else _to64(params)
        updates, new_state = update64(_to64(grads), state, params64)
        return _cast_like(updates, grads), new_state

    return Reference(init, update)


def _no_state(params):
    del params
    return {}


def _counted(params):
    del params
    return {"count": 0}


# ----------------------------------------------------------------------------- combinators


def chain(*references: Reference) -> Reference:
    """Applies references in order (as ``optax.chain``); the state is the tuple of their states.

    Intermediate results stay in float64; only the final updates are cast to the grads' dtype.
    """

    def init(params):
        return tuple(r.init(params) for r in references)

    def update(grads, state, params=None, **extra_args):
        updates, new_state = _to64(grads), []
        for ref, inner in zip(references, state):
            updates, inner = ref.update(updates, inner, params, **extra_args)
            new_state.append(inner)
        return _cast_like(updates, grads), tuple(new_state)

    return Reference(init, update)


def identity() -> Reference:
    r"""Identity, :math:`u_t = g_t`."""
    return _rule(_no_state, lambda g, state, params: (g, state))


# ----------------------------------------------------------------------------- scaling


def scale(step_size: float) -> Reference:
    r"""Scaling by a constant, :math:`u_t = s\, g_t` (optax ``scale``)."""
    return _rule(_no_state, lambda g, state, params: (_map(lambda x: step_size * x, g), state))


def scale_by_learning_rate(learning_rate, *, flip_sign: bool = True) -> Reference:
    r"""Learning-rate scaling as optax: :math:`u_t = -\eta_t g_t` (``+`` when ``flip_sign=False``).

    A schedule is evaluated at the 0-based count (the first update uses ``learning_rate(0)``).
    ``learning_rate=None`` is the identity: optax returns ``identity()`` there, so the sign
    is *not* flipped either (this matters for ``adadelta(None)``).
    """
    if learning_rate is None:
        return identity()
    sign = -1.0 if flip_sign else 1.0

    def update(g, state, params):
        lr = sign * _at(learning_rate, state["count"])
        return _map(lambda x: lr * x, g), {"count": state["count"] + 1}

    return _rule(_counted, update)


# ----------------------------------------------------------------------------- clipping


def clip(max_delta: float) -> Reference:
    r"""Element-wise clipping, seed deck 000 ("gradient clipping for handling cliffs").

    .. math:: u_i = g_i \, \frac{\Delta_{max}}{\max(|g_i|, \Delta_{max})}

    which equals optax's ``clip`` (clamping to :math:`[-\Delta_{max}, \Delta_{max}]`).
    """

    def update(g, state, params):
        return _map(lambda x: x * max_delta / np.maximum(np.abs(x), max_delta), g), state

    return _rule(_no_state, update)


def clip_by_global_norm(max_norm: float) -> Reference:
    r"""Clipping by the global norm (Pascanu et al., 2013; optax ``clip_by_global_norm``).

    .. math:: u = g \, \frac{c}{\max(\|g\|_2, c)}, \qquad \|g\|_2^2 = \sum_{\text{leaves}} \sum_i g_i^2

    so :math:`u = g` when :math:`\|g\| \le c` (all-zero gradients give zeros).
    """

    def update(g, state, params):
        norm = np.sqrt(sum(float(np.sum(x * x)) for x in jtu.tree_leaves(g)))
        factor = max_norm / max(norm, max_norm)
        return _map(lambda x: x * factor, g), state

    return _rule(_no_state, update)


# ----------------------------------------------------------------------------- momentum


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


def momentum_seed(learning_rate, momentum: float) -> Reference:
    r"""SGD with momentum, learning rate *inside* the velocity: seed decks 000, 002, 003 (Alg. 8.2).

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


# ----------------------------------------------------------------------------- adaptive


def scale_by_rss(initial_accumulator_value: float = 0.1, eps: float = 1e-7, *, eps_in_sqrt: bool = True) -> Reference:
    r"""AdaGrad scaling by the root of the sum of squares.

    .. math:: r_t = r_{t-1} + g_t^2, \quad r_0 = r_{init}

    * ``eps_in_sqrt=True`` (optax ``scale_by_rss``): :math:`u_t = g_t / \sqrt{r_t + \epsilon}`,
      and :math:`u_t = 0` where :math:`r_t = 0`;
    * ``eps_in_sqrt=False`` (seed decks 000, 002, 003 Alg. 8.4): :math:`u_t = g_t / (\epsilon + \sqrt{r_t})`.
      The seeds start the accumulator at 0: pass ``initial_accumulator_value=0.``.
    """

    def update(g, state, params):
        acc = _map(lambda x, r: r + x * x, g, state["sum_of_squares"])
        if eps_in_sqrt:
            with np.errstate(divide="ignore"):
                out = _map(lambda x, r: np.where(r > 0, 1.0 / np.sqrt(r + eps), 0.0) * x, g, acc)
        else:
            out = _map(lambda x, r: x / (eps + np.sqrt(r)), g, acc)
        return out, {"sum_of_squares": acc}

    return _rule(lambda p: {"sum_of_squares": _full_like(p, initial_accumulator_value)}, update)


def _denominator(second: np.ndarray, eps: float, eps_in_sqrt: bool) -> np.ndarray:
    return np.sqrt(second + eps) if eps_in_sqrt else np.sqrt(second) + eps


def scale_by_rms(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Reference:
    r"""RMSProp scaling (Hinton, 2012), optax ``scale_by_rms``.

    .. math:: \nu_t = \rho \nu_{t-1} + (1 - \rho) g_t^2, \quad \nu_0 = \nu_{init}, \quad
              \hat\nu_t = \nu_t / (1 - \rho^t) \ \text{if bias\_correction else}\ \nu_t

    * ``eps_in_sqrt=True`` (optax, seed deck 003 Alg. 8.5): :math:`u_t = g_t / \sqrt{\hat\nu_t + \epsilon}`;
    * ``eps_in_sqrt=False`` (seed decks 000, 002): :math:`u_t = g_t / (\sqrt{\hat\nu_t} + \epsilon)`.
    """

    def update(g, state, params):
        count = state["count"] + 1
        nu = _map(lambda x, n: decay * n + (1 - decay) * x * x, g, state["nu"])
        nu_hat = _map(lambda n: n / (1 - decay**count), nu) if bias_correction else nu
        out = _map(lambda x, n: x / _denominator(n, eps, eps_in_sqrt), g, nu_hat)
        return out, {"count": count, "nu": nu}

    return _rule(lambda p: {"count": 0, "nu": _full_like(p, initial_scale)}, update)


def scale_by_stddev(
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    bias_correction: bool = False,
) -> Reference:
    r"""Centered RMSProp (Graves, 2013), optax ``scale_by_stddev``.

    .. math:: \mu_t = \rho \mu_{t-1} + (1 - \rho) g_t, \quad
              \nu_t = \rho \nu_{t-1} + (1 - \rho) g_t^2, \quad \mu_0 = 0, \ \nu_0 = \nu_{init}

    .. math:: u_t = g_t / \sqrt{\hat\nu_t - \hat\mu_t^2 + \epsilon}
              \quad (\text{eps\_in\_sqrt=False: } g_t / (\sqrt{\hat\nu_t - \hat\mu_t^2} + \epsilon))

    with hats the bias-corrected moments when ``bias_correction`` (else the moments).
    """

    def update(g, state, params):
        count = state["count"] + 1
        mu = _map(lambda x, m: decay * m + (1 - decay) * x, g, state["mu"])
        nu = _map(lambda x, n: decay * n + (1 - decay) * x * x, g, state["nu"])
        corr = (1 - decay**count) if bias_correction else 1.0
        out = _map(lambda x, m, n: x / _denominator(n / corr - (m / corr) ** 2, eps, eps_in_sqrt), g, mu, nu)
        return out, {"count": count, "mu": mu, "nu": nu}

    return _rule(lambda p: {"count": 0, "mu": _full_like(p, 0.0), "nu": _full_like(p, initial_scale)}, update)


def _first_moment_hat(mu, g, b1: float, count: int, nesterov: bool):
    r"""Bias-corrected first moment; Nesterov (NAdam, Dozat 2016, as optax, without the extra
    :math:`\beta_2`): :math:`\beta_1 \mu_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)`."""
    if nesterov:
        return _map(lambda m, x: b1 * m / (1 - b1 ** (count + 1)) + (1 - b1) * x / (1 - b1**count), mu, g)
    return _map(lambda m: m / (1 - b1**count), mu)


def _stored(tree, dtype):
    """The tree as a state in ``dtype`` holds it (rounded), kept as float64."""
    return tree if dtype is None else _map(lambda x: x.astype(np.dtype(dtype)).astype(np.float64), tree)


def scale_by_adam(
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    *,
    nesterov: bool = False,
    eps_in_sqrt: bool = False,
) -> Reference:
    r"""Adam scaling (Kingma & Ba, 2015), optax ``scale_by_adam``.

    .. math:: \mu_t = \beta_1 \mu_{t-1} + (1 - \beta_1) g_t, \quad
              \nu_t = \beta_2 \nu_{t-1} + (1 - \beta_2) g_t^2, \quad
              \hat\mu_t = \frac{\mu_t}{1 - \beta_1^t}, \quad \hat\nu_t = \frac{\nu_t}{1 - \beta_2^t}

    * default (optax; seed decks 000, 002 when :math:`\epsilon_{root} = 0`):
      :math:`u_t = \hat\mu_t / (\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon)`;
    * ``eps_in_sqrt=True`` (seed deck 003 Alg. 8.7):
      :math:`u_t = \hat\mu_t / \sqrt{\hat\nu_t + \epsilon_{root} + \epsilon}`;
    * ``nesterov=True`` (NAdam as optax):
      :math:`\hat\mu_t = \beta_1 \mu_t / (1 - \beta_1^{t+1}) + (1 - \beta_1) g_t / (1 - \beta_1^t)`.

    ``mu_dtype`` rounds the stored first moment to that dtype after each step (as optax
    stores it), while the current step uses the unrounded value.
    """

    def update(g, state, params):
        count = state["count"] + 1
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        nu = _map(lambda x, n: b2 * n + (1 - b2) * x * x, g, state["nu"])
        mu_hat = _first_moment_hat(mu, g, b1, count, nesterov)
        out = _map(lambda m, n: m / _denominator(n / (1 - b2**count) + eps_root, eps, eps_in_sqrt), mu_hat, nu)
        return out, {"count": count, "mu": _stored(mu, mu_dtype), "nu": nu}

    return _rule(lambda p: {"count": 0, "mu": _full_like(p, 0.0), "nu": _full_like(p, 0.0)}, update)


def scale_by_belief(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16, eps_root: float = 1e-16, *, nesterov: bool = False
) -> Reference:
    r"""AdaBelief scaling (Zhuang et al., 2020; seed deck 002's second moment), optax ``scale_by_belief``.

    .. math:: \mu_t = \beta_1 \mu_{t-1} + (1 - \beta_1) g_t, \quad
              s_t = \beta_2 s_{t-1} + (1 - \beta_2) (g_t - \mu_t)^2 + \epsilon_{root}

    .. math:: u_t = \hat\mu_t / (\sqrt{s_t / (1 - \beta_2^t)} + \epsilon)

    :math:`\epsilon_{root}` is added to the *stored* second moment every step (so it
    accumulates, as in the paper's Algorithm 2 and in optax) and is bias-corrected with it.
    ``nesterov`` as in :func:`scale_by_adam`.
    """

    def update(g, state, params):
        count = state["count"] + 1
        mu = _map(lambda x, m: b1 * m + (1 - b1) * x, g, state["mu"])
        nu = _map(lambda x, m, s: b2 * s + (1 - b2) * (x - m) ** 2 + eps_root, g, mu, state["nu"])
        mu_hat = _first_moment_hat(mu, g, b1, count, nesterov)
        out = _map(lambda m, s: m / (np.sqrt(s / (1 - b2**count)) + eps), mu_hat, nu)
        return out, {"count": count, "mu": mu, "nu": nu}

    return _rule(lambda p: {"count": 0, "mu": _full_like(p, 0.0), "nu": _full_like(p, 0.0)}, update)


def scale_by_adadelta(rho: float = 0.9, eps: float = 1e-6) -> Reference:
    r"""AdaDelta scaling (Zeiler, 2012, Algorithm 1), optax ``scale_by_adadelta``.

    .. math:: E[g^2]_t = \rho E[g^2]_{t-1} + (1 - \rho) g_t^2, \quad
              u_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t, \quad
              E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1 - \rho) u_t^2

    (positive: the paper's :math:`\Delta x_t` is :math:`-u_t`; the sign comes from the learning rate).
    """

    def update(g, state, params):
        e_g = _map(lambda x, e: rho * e + (1 - rho) * x * x, g, state["e_g"])
        out = _map(lambda x, eg, ex: np.sqrt(ex + eps) / np.sqrt(eg + eps) * x, g, e_g, state["e_x"])
        e_x = _map(lambda u, e: rho * e + (1 - rho) * u * u, out, state["e_x"])
        return out, {"e_g": e_g, "e_x": e_x}

    return _rule(lambda p: {"e_g": _full_like(p, 0.0), "e_x": _full_like(p, 0.0)}, update)


def scale_by_rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> Reference:
    r"""iRprop- (Igel & Hüsken, 2000; seed deck 001's sign rule) as in PyTorch's ``Rprop``.

    Per coordinate, with step sizes :math:`\Delta_0 = \eta` (the learning rate) and
    :math:`g'_0 = 0`:

    .. math:: \Delta_t = \begin{cases}
                \mathrm{clip}(\eta^+ \Delta_{t-1}, \Delta_{min}, \Delta_{max}) & g_t g'_{t-1} > 0 \\
                \mathrm{clip}(\eta^- \Delta_{t-1}, \Delta_{min}, \Delta_{max}) & g_t g'_{t-1} < 0 \\
                \Delta_{t-1} & \text{otherwise} \end{cases}, \quad
              g'_t = \begin{cases} 0 & g_t g'_{t-1} < 0 \\ g_t & \text{otherwise} \end{cases}

    .. math:: u_t = \Delta_t \, \mathrm{sign}(g'_t)

    (positive; ``rprop`` negates it). A coordinate whose gradient changed sign takes no step
    this time and forgets its gradient. The update uses the *current* step's sign and size.

    Note:
      optax 0.2.8's ``scale_by_rprop`` has the same step-size rule (clipping to
      :math:`[\Delta_{min}, \Delta_{max}]` on every change, like PyTorch) but returns the
      previous step's :math:`u_{t-1}` (zero at the first step): a bug not reproduced here.
    """

    def update(g, state, params):
        prod = _map(lambda x, p: x * p, g, state["prev_grads"])
        step = _map(
            lambda s, size: np.where(
                s > 0,
                np.clip(size * eta_plus, min_step_size, max_step_size),
                np.where(s < 0, np.clip(size * eta_minus, min_step_size, max_step_size), size),
            ),
            prod,
            state["step_sizes"],
        )
        g_eff = _map(lambda x, s: np.where(s < 0, 0.0, x), g, prod)
        out = _map(lambda size, x: size * np.sign(x), step, g_eff)
        return out, {"step_sizes": step, "prev_grads": g_eff}

    return _rule(lambda p: {"step_sizes": _full_like(p, learning_rate), "prev_grads": _full_like(p, 0.0)}, update)


# ----------------------------------------------------------------------------- regularization


def _need_params(params, name: str):
    if params is None:
        raise ValueError(f"reference.{name} needs the params: call update(grads, state, params)")


def _masked_add(g, params, mask, term):
    """``g + term(p)`` on the leaves whose mask is True (all leaves when ``mask`` is None)."""
    if mask is None:
        return _map(lambda x, p: x + term(p), g, params)
    mask_tree = mask(params) if callable(mask) else mask
    # A mask leaf may stand for a whole subtree (a prefix of the params), as in optax's masks.
    return _map(lambda m, x, p: _map(lambda xi, pi: xi + term(pi), x, p) if m else x, mask_tree, g, params)


def add_decayed_weights(weight_decay=0.0, mask=None) -> Reference:
    r"""Weight decay / L2, optax ``add_decayed_weights``: :math:`u_t = g_t + \lambda_t \theta_{t-1}`.

    ``weight_decay`` may be a schedule (0-based count). ``mask``: a tree of booleans like the
    params (or a function of the params returning one); False leaves pass through unchanged.
    """

    def update(g, state, params):
        _need_params(params, "add_decayed_weights")
        wd = _at(weight_decay, state["count"])
        return _masked_add(g, params, mask, lambda p: wd * p), {"count": state["count"] + 1}

    return _rule(_counted, update)


def add_l1_decay(l1: float, mask=None) -> Reference:
    r"""L1 penalty's (sub)gradient: :math:`u_t = g_t + \lambda_1 \mathrm{sign}(\theta_{t-1})`, with sign(0) = 0."""

    def update(g, state, params):
        _need_params(params, "add_l1_decay")
        return _masked_add(g, params, mask, lambda p: l1 * np.sign(p)), state

    return _rule(_no_state, update)


# ----------------------------------------------------------------------------- optimizers


def sgd(learning_rate, momentum: float | None = None, nesterov: bool = False) -> Reference:
    r"""SGD as optax (seed decks 000, 003 Alg. 8.1 without momentum).

    .. math:: \tau_t = g_t + \alpha \tau_{t-1}, \quad
              u_t = -\eta_t \tau_t \ \ (\text{Nesterov: } u_t = -\eta_t (g_t + \alpha \tau_t))

    and :math:`u_t = -\eta_t g_t` with ``momentum=None``. ``chain(trace, scale_by_learning_rate)``.
    The seeds' velocity form (learning rate inside) is :func:`momentum_seed`; the seeds'
    Nesterov look-ahead is :func:`nesterov_lookahead_trajectory`.
    """
    first = identity() if momentum is None else trace(momentum, nesterov)
    return chain(first, scale_by_learning_rate(learning_rate))


def adagrad(
    learning_rate, initial_accumulator_value: float = 0.1, eps: float = 1e-7, *, eps_in_sqrt: bool = True
) -> Reference:
    r"""AdaGrad (Duchi et al., 2011): :math:`u_t = -\eta_t\, \mathrm{scale\_by\_rss}(g)_t`, see :func:`scale_by_rss`.

    Default: optax's :math:`-\eta g_t / \sqrt{r_t + \epsilon}`, :math:`r_0 = 0.1`. The seed decks'
    AdaGrad (000, 002, 003 Alg. 8.4) is ``adagrad(lr, initial_accumulator_value=0., eps_in_sqrt=False)``:
    :math:`-\eta g_t / (\delta + \sqrt{r_t})`, :math:`r_0 = 0`.
    """
    return chain(
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )


def rmsprop(
    learning_rate,
    decay: float = 0.9,
    eps: float = 1e-8,
    initial_scale: float = 0.0,
    eps_in_sqrt: bool = True,
    centered: bool = False,
    momentum: float | None = None,
    nesterov: bool = False,
    bias_correction: bool = False,
) -> Reference:
    r"""RMSProp as optax: ``chain(scale_by_rms | scale_by_stddev, scale_by_learning_rate, trace)``.

    .. math:: s_t = -\eta_t\, g_t / \sqrt{\hat\nu_t + \epsilon}, \quad
              u_t = s_t \ \ \text{or, with momentum,}\ \ \tau_t = s_t + \alpha \tau_{t-1},\ u_t = \tau_t

    The momentum trace comes *after* the learning rate (so past steps keep their learning
    rate). ``centered`` uses :func:`scale_by_stddev`; eps placement as :func:`scale_by_rms`
    (``eps_in_sqrt=False`` is seed decks 000 / 002; the default matches deck 003).
    """
    if centered:
        scaling = scale_by_stddev(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
    else:
        scaling = scale_by_rms(decay, eps, initial_scale, eps_in_sqrt, bias_correction)
    last = identity() if momentum is None else trace(momentum, nesterov)
    return chain(scaling, scale_by_learning_rate(learning_rate), last)


def adam(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    *,
    nesterov: bool = False,
    eps_in_sqrt: bool = False,
) -> Reference:
    r"""Adam: :math:`u_t = -\eta_t \hat\mu_t / (\sqrt{\hat\nu_t + \epsilon_{root}} + \epsilon)`.

    See :func:`scale_by_adam`. ``nesterov=True`` is optax's NAdam; ``eps_in_sqrt=True`` is seed deck 003's
    :math:`-\eta \hat s / \sqrt{\hat r + \delta}`.
    """
    return chain(
        scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )


def _negated(value):
    return (lambda count: -value(count)) if callable(value) else -value


def adamw(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype=None,
    weight_decay=1e-4,
    mask=None,
    *,
    nesterov: bool = False,
    variant: str = "optax",
) -> Reference:
    r"""AdamW (Loshchilov & Hutter, 2019). With :math:`a_t` the :func:`scale_by_adam` output:

    * ``variant="optax"``: :math:`u_t = -\eta_t (a_t + \lambda \theta_{t-1})` (decay scaled by
      the learning rate; ``chain(scale_by_adam, add_decayed_weights, scale_by_learning_rate)``);
    * ``variant="seed"`` (seed deck 002, "Adam versus AdamW", step 8):
      :math:`u_t = -\eta_t \hat s / (\delta + \sqrt{\hat r}) - \lambda \theta_{t-1}`, the decay
      *not* multiplied by the learning rate. (Step 4 of that slide, adding :math:`\lambda\theta`
      to the gradient, is the coupled L2 "Adam" side of the comparison, not AdamW.)
    """
    adam_part = scale_by_adam(b1, b2, eps, eps_root, mu_dtype, nesterov=nesterov)
    if variant == "optax":
        return chain(adam_part, add_decayed_weights(weight_decay, mask), scale_by_learning_rate(learning_rate))
    if variant == "seed":
        decay = add_decayed_weights(_negated(weight_decay), mask)
        return chain(adam_part, scale_by_learning_rate(learning_rate), decay)
    raise ValueError(f"reference.adamw: variant must be 'optax' or 'seed', got {variant!r}")


def adabelief(
    learning_rate,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-16,
    eps_root: float = 1e-16,
    *,
    nesterov: bool = False,
) -> Reference:
    r"""AdaBelief: :math:`u_t = -\eta_t \hat\mu_t / (\sqrt{\hat s_t} + \epsilon)`, see :func:`scale_by_belief`
    (where :math:`\epsilon_{root}` goes)."""
    return chain(scale_by_belief(b1, b2, eps, eps_root, nesterov=nesterov), scale_by_learning_rate(learning_rate))


def adadelta(
    learning_rate=None,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay=0.0,
    weight_decay_mask=None,
    *,
    variant: str = "optax",
) -> Reference:
    r"""AdaDelta as optax: ``chain(add_decayed_weights, scale_by_adadelta, scale_by_learning_rate)``.

    With a learning rate: :math:`u_t = -\eta_t\, \mathrm{adadelta}(g_t + \lambda\theta_{t-1})`.

    ``learning_rate=None``:

    * ``variant="optax"`` (default, optax 0.2.8's numerics): no learning-rate transform at all,
      so :math:`u_t = +\sqrt{E[\Delta^2]_{t-1} + \epsilon} / \sqrt{E[g^2]_t + \epsilon}\, g_t`,
      a step *up* the gradient;
    * ``variant="paper"`` (Zeiler, 2012): :math:`u_t = \Delta x_t = -(\dots) g_t`, descent
      (the same as ``learning_rate=1.``).
    """
    if variant not in ("optax", "paper"):
        raise ValueError(f"reference.adadelta: variant must be 'optax' or 'paper', got {variant!r}")
    if learning_rate is None and variant == "paper":
        learning_rate = 1.0
    return chain(
        add_decayed_weights(weight_decay, weight_decay_mask),
        scale_by_adadelta(rho, eps),
        scale_by_learning_rate(learning_rate),
    )


def rprop(
    learning_rate: float,
    eta_minus: float = 0.5,
    eta_plus: float = 1.2,
    min_step_size: float = 1e-6,
    max_step_size: float = 50.0,
) -> Reference:
    r"""iRprop- as PyTorch: :math:`u_t = -\Delta_t \mathrm{sign}(g'_t)`, see :func:`scale_by_rprop`
    (which does not copy optax 0.2.8's one-step lag)."""
    return chain(scale_by_rprop(learning_rate, eta_minus, eta_plus, min_step_size, max_step_size), scale(-1.0))


# ----------------------------------------------------------------------------- Nesterov trajectories


def nesterov_lookahead_trajectory(grad_fn, params, learning_rate, momentum: float, steps: int):
    r"""The seeds' Nesterov momentum (decks 000, 001, 002), gradient at the look-ahead point.

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


# ----------------------------------------------------------------------------- side-by-side check

# dtype name -> (rtol, atol). float32: a faithful float32 Adam computes 1 - 0.999**t from the
# float32 value of b2 (relative error 1.3e-5 at t = 1), about 7e-6 in the update, so 1e-5 is too tight.
_TOLERANCES = {
    "float64": (2e-5, 1e-6),  # jax computes in float32 unless jax_enable_x64 is set
    "float32": (2e-5, 1e-6),
    "bfloat16": (2e-2, 1e-2),
    "float16": (2e-2, 1e-2),
}
_SHOWN = 4  # mismatching values listed in a report


def _default_params(rng: np.random.Generator):
    return {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal((4,)), "nested": [rng.standard_normal((2,))]}


def _default_grads(rng: np.random.Generator, params, steps: int) -> list:
    """Seeded normal gradients; at step ``min(2, steps)`` every other entry of each leaf is exactly 0."""
    zero_step = min(2, steps)
    sequence = []
    for step in range(1, steps + 1):

        def draw(p, step=step):
            g = rng.standard_normal(np.shape(p))
            if step == zero_step:
                g.reshape(-1)[::2] = 0.0
            return g

        sequence.append(_map(draw, params))
    return sequence


def _leaf_report(step: int, steps: int, path: str, expected, got, rtol: float, atol: float) -> str | None:
    exp, act = _f64(expected), _f64(got)
    where = f"check_against_reference: step {step} of {steps}, leaf {path}"
    if exp.shape != act.shape:
        return f"{where}: shape {act.shape} from the transformation, {exp.shape} from the reference"
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(act - exp)
        ok = (act == exp) | (np.isnan(act) & np.isnan(exp)) | (err <= atol + rtol * np.abs(exp))
        if ok.all():
            return None
        rel = np.where(exp != 0, err / np.abs(exp), np.where(err > 0, np.inf, 0.0))
    bad = np.argwhere(~ok)
    lines = [
        f"{where}: updates differ from the reference in {len(bad)} of {exp.size} elements",
        f"  max abs error {np.nanmax(err):.3g}, max rel error {np.nanmax(rel):.3g} (rtol={rtol:g}, atol={atol:g})",
        "  index: expected (reference) vs got (transformation)",
    ]
    for index in bad[:_SHOWN]:
        index = tuple(int(i) for i in index)
        lines.append(f"    {index}: {exp[index]:.9g} vs {act[index]:.9g}")
    return "\n".join(lines)


def _compare(step: int, steps: int, expected, got, rtol: float, atol: float) -> float:
    exp_leaves, exp_def = jtu.tree_flatten_with_path(expected)
    got_leaves, got_def = jtu.tree_flatten_with_path(got)
    if exp_def != got_def:
        raise AssertionError(
            f"check_against_reference: step {step} of {steps}: the updates' tree structure differs\n"
            f"  reference:      {exp_def}\n  transformation: {got_def}"
        )
    worst = 0.0
    for (path, e), (_, g) in zip(exp_leaves, got_leaves):
        report = _leaf_report(step, steps, jtu.keystr(path), e, g, rtol, atol)
        if report is not None:
            raise AssertionError(report)
        if np.size(e):
            worst = max(worst, float(np.nanmax(np.abs(_f64(g) - _f64(e)), initial=0.0)))
    return worst


def check_against_reference(
    tx,
    reference: Reference,
    steps: int = 5,
    *,
    params=None,
    grads=None,
    seed: int = 0,
    dtype=np.float32,
    rtol: float | None = None,
    atol: float | None = None,
    extra_args_fn=None,
    jit: bool = True,
) -> dict:
    """Runs a JAX transformation and a NumPy reference side by side and compares their updates.

    Both sides start from the same params and see the same gradient sequence; each applies
    its own updates to its own copy of the params (like a training loop), and each step's
    updates are compared leaf by leaf with ``|got - expected| <= atol + rtol * |expected|``.

    Args:
      tx: any object with ``init(params)`` and ``update(updates, state, params, **extra)``.
      reference: a :class:`Reference` (e.g. ``reference.adam(1e-3)``).
      steps: number of steps (>= 1).
      params: a pytree of arrays; default ``{'w': (3, 4), 'b': (4,), 'nested': [(2,)]}``
        drawn from ``numpy.random.default_rng(seed)``.
      grads: a sequence of at least ``steps`` gradient pytrees, or a function
        ``(step, params) -> grads`` (1-based step, the reference side's NumPy params); by
        default seeded standard normals, with every other entry exactly 0 at step 2.
      seed: seed of the default params and gradients.
      dtype: params and gradients are cast to it; the reference gets the same cast values.
      rtol, atol: default by dtype: float32 ``2e-5`` / ``1e-6``, bfloat16 and float16 ``2e-2`` / ``1e-2``.
      extra_args_fn: ``(step, params, grads) -> dict`` of extra keyword arguments for
        ``tx.update`` (given the JAX side's params and grads); the reference's ``update`` gets
        the same keywords with array values converted to NumPy (the references here ignore them).
      jit: jit ``tx.update`` (extra arguments must then be arrays).

    Returns:
      ``{'steps': steps, 'max_abs_error': float}`` over all steps and leaves.

    Raises:
      AssertionError: naming the 1-based step, the key path of the first offending leaf, the
        max abs / rel errors and the first few expected vs got values.
    """
    import jax
    import jax.numpy as jnp

    if steps < 1:
        raise ValueError(f"check_against_reference: steps must be >= 1, got {steps}")
    dt = np.dtype(dtype)
    default_rtol, default_atol = _TOLERANCES.get(dt.name, _TOLERANCES["float32"])
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    rng = np.random.default_rng(seed)
    cast = lambda tree: _map(lambda x: np.asarray(x).astype(dt), tree)  # noqa: E731

    ref_params = cast(_default_params(rng) if params is None else params)
    if grads is None:
        grads = _default_grads(rng, ref_params, steps)
    if not callable(grads) and len(grads) < steps:
        raise ValueError(f"check_against_reference: {len(grads)} gradient trees given for {steps} steps")

    tx_params = _map(jnp.asarray, ref_params)
    tx_state, ref_state = tx.init(tx_params), reference.init(ref_params)
    tx_update = jax.jit(tx.update) if jit else tx.update
    to_numpy = lambda x: np.asarray(x) if isinstance(x, (jax.Array, np.ndarray)) else x  # noqa: E731
    worst = 0.0
    for step in range(1, steps + 1):
        ref_grads = cast(grads(step, ref_params) if callable(grads) else grads[step - 1])
        tx_grads = _map(jnp.asarray, ref_grads)
        extra = {} if extra_args_fn is None else dict(extra_args_fn(step, tx_params, tx_grads))
        got, tx_state = tx_update(tx_grads, tx_state, tx_params, **extra)
        expected, ref_state = reference.update(ref_grads, ref_state, ref_params, **_map(to_numpy, extra))
        worst = max(worst, _compare(step, steps, expected, got, rtol, atol))
        tx_params = _map(lambda p, u: (p + u.astype(p.dtype)).astype(p.dtype), tx_params, got)
        ref_params = _map(lambda p, u: (_f64(p) + _f64(u)).astype(p.dtype), ref_params, expected)
    return {"steps": steps, "max_abs_error": worst}
