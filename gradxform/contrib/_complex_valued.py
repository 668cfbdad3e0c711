"""Complex parameters as pairs of real ones: `split_real_and_imaginary`."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform._base import GradientTransformation, GradientTransformationExtraArgs
from gradxform._checks import check_state_type
from gradxform._combine import call_update, check_transform

__all__ = ["SplitRealAndImaginaryState", "split_real_and_imaginary"]


class SplitRealAndImaginaryArrays(NamedTuple):
    """A complex leaf as its real and imaginary parts (a pytree node: two real leaves)."""

    real: jax.Array
    imaginary: jax.Array


class SplitRealAndImaginaryState(NamedTuple):
    inner_state: Any  # the inner transformation's state, built on the split params


def _is_split(x: Any) -> bool:
    return isinstance(x, SplitRealAndImaginaryArrays)


def _split(tree: Any) -> Any:
    """Every complex leaf replaced by `SplitRealAndImaginaryArrays(real, imaginary)`; the rest kept."""

    def split(x):
        if x is not None and jnp.iscomplexobj(x):
            x = jnp.asarray(x)
            return SplitRealAndImaginaryArrays(jnp.real(x), jnp.imag(x))
        return x

    return jax.tree_util.tree_map(split, tree, is_leaf=lambda x: x is None)


def _merge(tree: Any) -> Any:
    """The inverse of `_split`: each pair back into one complex leaf ``real + i imaginary``."""

    def merge(x):
        return jax.lax.complex(x.real, x.imaginary) if _is_split(x) else x

    return jax.tree_util.tree_map(merge, tree, is_leaf=lambda x: x is None or _is_split(x))


def split_real_and_imaginary(inner: GradientTransformation) -> GradientTransformationExtraArgs:
    r"""Runs `inner` on the real and imaginary parts of complex updates as separate real leaves.

    A complex leaf :math:`z = x + iy` is seen by `inner` as the pair of real
    leaves :math:`(x, y)` (``SplitRealAndImaginaryArrays(real, imaginary)``), the
    params and the updates alike; its updates :math:`(u_x, u_y)` come back as one
    complex update

    .. math:: u = u_x + i\, u_y

    so `inner` treats :math:`\mathbb C^n` as :math:`\mathbb R^{2n}`: an Adam inside
    keeps separate second moments for the real and the imaginary parts (rather than
    one of :math:`|g|^2`). Real leaves pass through unchanged. The inner state is
    built on the split params, so its moments for a complex leaf are a pair of real
    arrays (optax's layout).

    Args:
        inner: any gradient transformation (of real params).

    Returns:
        A `GradientTransformationExtraArgs` with state `SplitRealAndImaginaryState`;
        extra keyword arguments of ``update`` reach `inner`.

    Raises:
        TypeError: `inner` is not a gradient transformation; in ``update``, a state
            built by another transformation.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> tx = gx.contrib.split_real_and_imaginary(gx.sign_sgd(1.0))
        >>> z = jnp.array([1.0 + 2.0j])
        >>> u, _ = tx.update(jnp.array([0.5 - 3.0j]), tx.init(z), z)
        >>> u.tolist()  # -sign(0.5) - i sign(-3)
        [(-1+1j)]

    References:
        Wirtinger calculus's real-pair view of :math:`\mathbb C^n` (a real-valued loss of
        complex parameters descends along :math:`(\partial_x, \partial_y)`); optax's
        ``contrib.split_real_and_imaginary`` interface.
    """
    check_transform(inner, "split_real_and_imaginary: `inner`")
    fn = "split_real_and_imaginary"

    def init_fn(params):
        return SplitRealAndImaginaryState(inner_state=inner.init(_split(params)))

    def update_fn(updates, state, params=None, **extra_args):
        check_state_type(state, SplitRealAndImaginaryState, fn)
        split_params = None if params is None else _split(params)
        new_updates, inner_state = call_update(inner, _split(updates), state.inner_state, split_params, extra_args)
        return _merge(new_updates), SplitRealAndImaginaryState(inner_state=inner_state)

    return GradientTransformationExtraArgs(init_fn, update_fn)
