"""AdaGrad (Duchi et al., 2011): `scale_by_rss` and the `adagrad` alias."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp

from gradxform import _checks, _hyper, _tree
from gradxform._base import GradientTransformation, ScalarOrSchedule
from gradxform._combine import chain
from gradxform.transforms._scale import scale_by_learning_rate


class ScaleByRssState(NamedTuple):
    sum_of_squares: Any  # like params


@_tree.leaf_rule(static=("eps_in_sqrt",))
def _rss_rule(g, r, eps, *, eps_in_sqrt):
    x = g.astype(eps.dtype)
    r_new = _tree.abs_sq(x) + r.astype(eps.dtype)
    scaling = jnp.where(r_new > 0, _tree.inverse_root(r_new, eps, eps_in_sqrt), 0).astype(x.dtype)
    return (scaling * x).astype(g.dtype), r_new.astype(r.dtype)


_RSS = dict(
    initial_accumulator_value=_hyper.NONNEG._replace(draw=(0.0, 1.0), source="validator"),
    eps=_hyper.EPS,
    eps_in_sqrt=_hyper.BOOL,
)


@_hyper.declare(**_RSS)
def scale_by_rss(
    initial_accumulator_value=0.1, eps=1e-7, *, eps_in_sqrt: bool = True
) -> GradientTransformation:
    r"""Divides by the root of the sum of squared gradients (AdaGrad).

    .. math::
        r_t = r_{t-1} + g_t \odot g_t, \qquad
        u_t = \frac{g_t}{\sqrt{r_t + \epsilon}} \;(\texttt{eps\_in\_sqrt=True})
        \quad\text{or}\quad u_t = \frac{g_t}{\epsilon + \sqrt{r_t}} \;(\texttt{False})

    with :math:`r_0` = ``initial_accumulator_value``; coordinates with
    :math:`r_t = 0` get a zero update.

    Note:
        The default is optax's (``r_0 = 0.1``, eps inside the root). Goodfellow et
        al. (2016), Algorithm 8.4, start the accumulator at 0 and add
        :math:`\epsilon = 10^{-7}` outside the root (as PyTorch does):
        ``scale_by_rss(0.0, 1e-7, eps_in_sqrt=False)``.

    Args:
        initial_accumulator_value: :math:`r_0 \ge 0`.
        eps: :math:`\epsilon \ge 0`.
        eps_in_sqrt: where :math:`\epsilon` goes (see above).

    Raises:
        ValueError: a negative ``initial_accumulator_value`` or ``eps``.
    """
    fn = "scale_by_rss"

    def init_fn(params):
        return ScaleByRssState(sum_of_squares=_tree.square_full_like(params, initial_accumulator_value))

    def update_fn(updates, state, params=None, **extra_args):
        del params, extra_args
        _checks.check_update(fn, state, ScaleByRssState, updates, "sum_of_squares")
        updates, r = _tree.apply_rule(
            _rss_rule, updates, state.sum_of_squares, eps_in_sqrt=eps_in_sqrt,
            scalars=lambda dtype: _tree.hp(eps, dtype),
        )
        return updates, ScaleByRssState(sum_of_squares=r)

    return GradientTransformation(init_fn, update_fn)


@_hyper.declare(learning_rate=_hyper.LR, **_RSS)
def adagrad(
    learning_rate: ScalarOrSchedule, initial_accumulator_value=0.1, eps=1e-7, *, eps_in_sqrt: bool = True
) -> GradientTransformation:
    """AdaGrad: ``chain(scale_by_rss(...), scale_by_learning_rate(learning_rate))``; see `scale_by_rss`."""
    return chain(
        scale_by_rss(initial_accumulator_value, eps, eps_in_sqrt=eps_in_sqrt),
        scale_by_learning_rate(learning_rate),
    )
