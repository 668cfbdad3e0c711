"""AdaGrad (Duchi et al., 2011): `scale_by_rss` and the `adagrad` alias."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByRssState(NamedTuple):
    sum_of_squares: Any  # like params


def scale_by_rss(
    initial_accumulator_value=0.1, eps=1e-7, *, eps_in_sqrt: bool = True
) -> GradientTransformation:
    r"""Divides by the root of the sum of squared gradients (AdaGrad).

    .. math::
        r_t = r_{t-1} + g_t \odot g_t, \qquad
        u_t = \frac{g_t}{\sqrt{r_t + \delta}} \;(\texttt{eps\_in\_sqrt=True})
        \quad\text{or}\quad u_t = \frac{g_t}{\delta + \sqrt{r_t}} \;(\texttt{False})

    with :math:`r_0` = ``initial_accumulator_value``; coordinates with
    :math:`r_t = 0` get a zero update.

    Note:
        The default is optax's (``r_0 = 0.1``, eps inside the root). The seed decks
        (Goodfellow et al. Algorithm 8.4) start the accumulator at 0 and add
        :math:`\delta = 10^{-7}` outside the root:
        ``scale_by_rss(0.0, 1e-7, eps_in_sqrt=False)``.

    Args:
        initial_accumulator_value: :math:`r_0 \ge 0`.
        eps: :math:`\delta \ge 0`.
        eps_in_sqrt: where :math:`\delta` goes (see above).

    Raises:
        ValueError: a negative ``initial_accumulator_value`` or ``eps``.
    """
    fn = "scale_by_rss"
    _checks.check_non_negative("initial_accumulator_value", initial_accumulator_value, fn=fn)
    _checks.check_non_negative("eps", eps, fn=fn)

    def init_fn(params):
        return ScaleByRssState(sum_of_squares=_tree.square_full_like(params, initial_accumulator_value))

    def leaf(g, r):
        if g is None:
            return None, r
        cdt = _tree.compute_dtype(g.dtype)
        e = _tree.hp(eps, cdt)
        g_ = _tree.cast(g, cdt)
        r_new = _tree.add(_tree.abs_sq(g_), _tree.cast(r, cdt))
        if eps_in_sqrt:
            scaling = jnp.where(r_new > 0, jax.lax.rsqrt(r_new + e), 0)
        else:
            scaling = jnp.where(r_new > 0, 1 / (e + jnp.sqrt(r_new)), 0)
        return (scaling.astype(cdt) * g_).astype(g.dtype), r_new.astype(r.dtype)

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_state_type(state, ScaleByRssState, fn)
        _checks.check_tree_like(
            updates, state.sum_of_squares, tree_name="updates", like_name="state.sum_of_squares", fn=fn
        )
        updates, r = _tree.map_leaves(leaf, updates, state.sum_of_squares, n_out=2)
        return updates, ScaleByRssState(sum_of_squares=r)

    return GradientTransformation(init_fn, update_fn)


def adagrad(
    learning_rate: ScalarOrSchedule, initial_accumulator_value=0.1, eps=1e-7, *, eps_in_sqrt: bool = True
) -> GradientTransformation:
    """AdaGrad: ``chain(scale_by_rss(...), scale_by_learning_rate(learning_rate))``; see `scale_by_rss`."""
    return chain(
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )
