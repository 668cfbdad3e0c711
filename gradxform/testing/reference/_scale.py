r"""Scaling, clipping and weight decay (the library's ``transforms/_scale``, ``_clipping``, ``_regularization``)."""

from __future__ import annotations

import numpy as np

from gradxform.testing.reference._common import Reference, _at, _counted, _leaves, _map, _no_state, _rule, identity

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
    r"""Element-wise clipping (Mikolov, 2012; Goodfellow, Bengio & Courville (2016), Deep Learning, Section 10.11.1).

    .. math:: u_i = g_i \, \frac{\Delta_{max}}{\max(|g_i|, \Delta_{max})}

    which equals optax's ``clip`` (clamping to :math:`[-\Delta_{max}, \Delta_{max}]`).
    """

    def update(g, state, params):
        return _map(lambda x: x * max_delta / np.maximum(np.abs(x), max_delta), g), state

    return _rule(_no_state, update)


def clip_by_global_norm(max_norm: float) -> Reference:
    r"""Clipping by the global norm (Pascanu, Mikolov & Bengio (2013), Algorithm 1; optax ``clip_by_global_norm``).

    .. math:: u = g \, \frac{c}{\max(\|g\|_2, c)}, \qquad \|g\|_2^2 = \sum_{\text{leaves}} \sum_i g_i^2

    so :math:`u = g` when :math:`\|g\| \le c` (all-zero gradients give zeros).
    """

    def update(g, state, params):
        norm = np.sqrt(sum(float(np.sum(x * x)) for x in _leaves(g)))
        factor = max_norm / max(norm, max_norm)
        return _map(lambda x: x * factor, g), state

    return _rule(_no_state, update)


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
