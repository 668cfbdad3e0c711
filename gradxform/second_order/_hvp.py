"""Hessian-vector products, Hutchinson's diagonal estimator and small dense Hessians.

References:
    Pearlmutter, `Fast exact multiplication by the Hessian
    <https://doi.org/10.1162/neco.1994.6.1.147>`_, 1994 (Hessian-vector products).
    Hutchinson, `A stochastic estimator of the trace of the influence matrix
    <https://doi.org/10.1080/03610919008812866>`_, 1990; Bekas, Kokiopoulou & Saad,
    `An estimator for the diagonal of a matrix <https://doi.org/10.1016/j.apnum.2007.01.003>`_, 2007.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _tree, _treeops


def _cast_tangent(v: Any, params: Any) -> Any:
    """`v` cast leaf by leaf to the params' dtypes (jvp needs tangents of the primal dtype)."""
    _checks.check_tree_like(v, params, tree_name="v", like_name="params", fn="hvp", allow_none=False)
    return _tree.cast_like(v, params)


def _grad_and_hvp(fn: Callable[[Any], jax.Array], params: Any, v: Any) -> tuple[Any, Any]:
    return jax.jvp(jax.grad(fn), (params,), (_cast_tangent(v, params),))


def hvp(fn: Callable[[Any], jax.Array], params: Any, v: Any) -> Any:
    r"""The Hessian of `fn` at `params` times `v`, forward-over-reverse.

    .. math:: H v = \frac{\partial}{\partial \epsilon} \nabla f(\theta + \epsilon v)\Big|_{\epsilon=0}

    computed as ``jax.jvp(jax.grad(fn), (params,), (v,))``: one gradient's cost
    (times a small constant), never forming :math:`H`.

    Args:
        fn: a scalar function of the params (close over data with a lambda or
            ``functools.partial``).
        params: any pytree of floating arrays.
        v: a tree like `params` (cast to the params' dtypes).

    Returns:
        :math:`H v`, a tree like `params`, in the params' dtypes.

    Raises:
        TreeMismatchError: `v` does not have the params' structure and shapes.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> f = lambda p: 0.5 * jnp.sum(jnp.array([1.0, 3.0]) * p['w'] ** 2) + p['w'][0] * p['w'][1]
        >>> hv = gx.second_order.hvp(f, {'w': jnp.zeros(2)}, {'w': jnp.array([1.0, 0.0])})
        >>> hv['w'].tolist()  # first column of [[1, 1], [1, 3]]
        [1.0, 1.0]

    References:
        Pearlmutter, Fast exact multiplication by the Hessian, 1994.
    """
    return _grad_and_hvp(fn, params, v)[1]


def _rademacher_like(key: jax.Array, params: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, max(len(leaves), 1))
    return treedef.unflatten(
        [jax.random.rademacher(k, jnp.shape(p), jnp.asarray(p).dtype) for k, p in zip(keys, leaves)]
    )


def _hutchinson(fn, params, key, num_samples, with_grad):
    _checks.check_range("num_samples", num_samples, 1, fn="hutchinson_diagonal")
    if not isinstance(num_samples, (int, np.integer)):
        raise TypeError(
            f"hutchinson_diagonal: `num_samples` must be a Python int >= 1, got {num_samples!r}."
        )
    if isinstance(key, int):
        key = jax.random.PRNGKey(key)
    acc0 = jax.tree_util.tree_map(lambda p: jnp.zeros(jnp.shape(p), _tree.compute_dtype(jnp.asarray(p).dtype)), params)

    g0 = jax.tree_util.tree_map(jnp.zeros_like, params)

    def body(carry, k):
        acc, _ = carry
        z = _rademacher_like(k, params)
        g, hz = _grad_and_hvp(fn, params, z)
        acc = jax.tree_util.tree_map(lambda a, zz, h: a + _tree.wide(zz) * _tree.wide(h), acc, z, hz)
        return (acc, g), None

    (acc, grads), _ = jax.lax.scan(body, (acc0, g0), jax.random.split(key, num_samples))
    n = float(num_samples)
    diag = jax.tree_util.tree_map(
        lambda a, p: (a / jnp.asarray(n, a.dtype)).astype(jnp.asarray(p).dtype), acc, params
    )
    if with_grad:
        return grads, diag
    return diag


def hutchinson_diagonal(fn: Callable[[Any], jax.Array], params: Any, key: Any, num_samples: int = 1) -> Any:
    r"""Hutchinson's unbiased estimate of the diagonal of the Hessian of `fn` at `params`.

    .. math::
        \operatorname{diag}(H) \approx D_n = \frac{1}{n} \sum_{i=1}^{n} z_i \odot (H z_i),
        \qquad z_i \in \{-1, +1\}^p \text{ i.i.d. Rademacher}

    :math:`\mathbb{E}[z \odot Hz] = \operatorname{diag}(H)`; the variance of
    coordinate :math:`j` of one sample is :math:`\sum_{k \ne j} H_{jk}^2`, so the
    error shrinks like :math:`1/\sqrt{n}` (and is zero for a diagonal Hessian).
    Samples are taken one after the other (``lax.scan``), so memory does not grow
    with `num_samples`; the sum is accumulated in at least float32.

    Args:
        fn: a scalar function of the params.
        params: any pytree of floating arrays.
        key: a PRNG key (or an int seed).
        num_samples: the number :math:`n \ge 1` of probes (a Python int).

    Returns:
        :math:`D_n`, a tree like `params`, in the params' dtypes.

    Raises:
        ValueError: ``num_samples < 1``.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: 0.5 * jnp.sum(jnp.array([2.0, 5.0]) * w ** 2)
        >>> gx.second_order.hutchinson_diagonal(f, jnp.ones(2), jax.random.PRNGKey(0)).tolist()
        [2.0, 5.0]

    References:
        Hutchinson, 1990; Bekas, Kokiopoulou & Saad, 2007; Yao et al., ADAHESSIAN, 2021.
    """
    return _hutchinson(fn, params, key, num_samples, with_grad=False)


def grad_and_hutchinson_diagonal(
    fn: Callable[[Any], jax.Array], params: Any, key: Any, num_samples: int = 1
) -> tuple[Any, Any]:
    """``(jax.grad(fn)(params), hutchinson_diagonal(fn, params, key, num_samples))`` sharing work.

    The forward-over-reverse product yields the gradient as its primal output, so
    AdaHessian's two inputs cost one pass per probe. See `hutchinson_diagonal`.

    Examples:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> f = lambda w: 0.5 * jnp.sum(jnp.array([2.0, 5.0]) * w ** 2)
        >>> g, d = gx.second_order.grad_and_hutchinson_diagonal(f, jnp.ones(2), jax.random.PRNGKey(0))
        >>> g.tolist(), d.tolist()
        ([2.0, 5.0], [2.0, 5.0])
    """
    return _hutchinson(fn, params, key, num_samples, with_grad=True)


def dense_hessian(fn: Callable[[Any], jax.Array], params: Any) -> jax.Array:
    r"""The dense Hessian of `fn` over the params flattened as ``ravel_pytree`` flattens them.

    .. math:: H_{ij} = \frac{\partial^2 f}{\partial \theta_i \partial \theta_j}, \quad
              \theta = \operatorname{ravel}(\text{params}) \in \mathbb{R}^p

    For small problems only (:math:`p^2` memory); it is what `scale_by_newton`'s
    ``hessian=`` expects.

    Args:
        fn: a scalar function of the params.
        params: any pytree of floating arrays, with :math:`p` elements in all.

    Returns:
        A ``(p, p)`` array in at least float32.

    Raises:
        ValueError: `fn` does not return a scalar (its output shape is named;
            a loss summed over a batch is ``jnp.sum(...)`` or ``jnp.mean(...)``).

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> f = lambda p: p['a'] ** 2 * p['b'][0] + p['b'][1] ** 3
        >>> gx.second_order.dense_hessian(f, {'a': jnp.array(1.0), 'b': jnp.array([2.0, 1.0])}).tolist()
        [[4.0, 2.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 6.0]]
    """
    flat, unravel = _treeops.ravel(params)

    def scalar_fn(x):
        out = jnp.asarray(fn(unravel(x)))
        if out.shape != ():  # checked while tracing: costs nothing at run time
            raise ValueError(
                f"dense_hessian: `fn` must return a scalar; it returned an array of shape {out.shape}. "
                "Reduce it to one number first (jnp.sum or jnp.mean)."
            )
        return out.astype(flat.dtype)

    return jax.hessian(scalar_fn)(flat)
