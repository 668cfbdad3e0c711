"""Fenchel-Young losses built from a regularized max function.

Reference: Blondel, Martins and Niculae (2020), *Learning with Fenchel-Young
Losses*, JMLR 21.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from gradxform.losses import _common


class MaxFun(Protocol):
    """A regularized max :math:`\\Omega^*`: maps scores ``[n]`` (plus extra arguments) to a scalar."""

    def __call__(self, scores: jax.Array, *args: Any, **kwargs: Any) -> jax.Array: ...


def make_fenchel_young_loss(max_fun: MaxFun) -> Callable[..., jax.Array]:
    r"""Build the Fenchel-Young loss of a regularized max function.

    .. math::
        \ell(\theta, y) = \Omega^*(\theta) - \langle \theta, y \rangle,

    the Fenchel-Young loss :math:`\Omega^*(\theta) + \Omega(y) - \langle\theta, y\rangle`
    without the constant :math:`\Omega(y)`; its gradient in :math:`\theta` is
    :math:`\nabla\Omega^*(\theta) - y` (e.g. ``softmax(theta) - y`` for
    ``max_fun = logsumexp``, giving the softmax cross-entropy).

    Args:
        max_fun: :math:`\Omega^*`, a function of a 1-D score vector (and any extra
            arguments) returning a scalar, e.g. ``jax.scipy.special.logsumexp``.

    Returns:
        ``fy_loss(scores, targets, *args, **kwargs)``: scores ``[..., n]``,
        targets broadcastable to them; `max_fun` is applied to each vector along
        the last axis, with ``*args`` and ``**kwargs`` passed through to it. The
        result has the leading shape, in `scores`' float dtype.

    Raises:
        TypeError: if `max_fun` is not callable.

    Example:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> from jax.scipy.special import logsumexp
        >>> fy = gx.losses.make_fenchel_young_loss(logsumexp)
        >>> round(float(fy(jnp.array([1.0, 2.0, 3.0]), jnp.array([0.0, 1.0, 0.0]))), 4)
        1.4076

    Note:
        optax 0.2.8 accepts ``*args`` and ``**kwargs`` but does not pass keyword
        arguments to `max_fun` (and fails on positional ones); gradxform passes both.

    References:
        Blondel, Martins and Niculae (2020), *Learning with Fenchel-Young Losses*,
        JMLR 21, Definition 2 and Proposition 2.
    """
    if not callable(max_fun):
        raise TypeError(
            f"make_fenchel_young_loss: max_fun must be callable; got {type(max_fun).__name__}."
        )

    def fy_loss(
        scores: jax.Array, targets: jax.Array, *args: Any, **kwargs: Any
    ) -> jax.Array:
        theta = _common.as_compute(scores)
        y = _common.as_compute(targets, like=scores)
        batch_shape = theta.shape[:-1]
        flat = theta.reshape((-1, theta.shape[-1]))
        maxes = jax.vmap(lambda s: max_fun(s, *args, **kwargs))(flat).reshape(
            batch_shape
        )
        loss = maxes.astype(theta.dtype) - jnp.sum(theta * y, axis=-1)
        return _common.cast_out(loss, jnp.asarray(scores))

    fy_loss.__doc__ = (
        f"Fenchel-Young loss of `{getattr(max_fun, '__name__', 'max_fun')}`: "
        "max_fun(scores) - <scores, targets> along the last axis."
    )
    return fy_loss
