"""`check_against_reference`: a JAX transformation and its NumPy reference, step by step."""

from __future__ import annotations

import numpy as np

from gradxform.testing._compare import compare, max_abs_error
from gradxform.testing._examples import describe_tree
from gradxform.testing.reference._common import Reference, _f64, _map


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


def _check_step(step: int, steps: int, expected, got, dtype, rtol, atol) -> None:
    """Raises an AssertionError naming the step and the first leaf where ``got`` leaves the tolerance."""
    mismatch = compare(expected, got, purpose="reference", dtype=dtype, rtol=rtol, atol=atol)
    if mismatch is None:
        return
    where = f"check_against_reference: step {step} of {steps}"
    if mismatch.kind == "tree":
        raise AssertionError(
            f"{where}: the updates' tree structure differs at {mismatch.path or 'the root'} "
            f"(reference {mismatch.expected}, transformation {mismatch.got})\n"
            f"  reference:      {describe_tree(expected)}\n  transformation: {describe_tree(got)}"
        )
    where = f"{where}, leaf {mismatch.path}"
    if mismatch.kind == "shape":
        raise AssertionError(
            f"{where}: shape {np.shape(mismatch.got)} from the transformation, "
            f"{np.shape(mismatch.expected)} from the reference"
        )
    head = f"{where}: updates differ from the reference in {len(mismatch.bad)} of {mismatch.expected.size} elements"
    raise AssertionError("\n".join([head] + mismatch.details()))


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
    updates are compared leaf by leaf with ``|got - expected| <= atol + rtol * |expected|``
    (non-finite values must match exactly), by the ``'reference'`` rows of the toolkit's one
    tolerance table (`gradxform.testing._compare.TOLERANCES`).

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

    Examples:
      >>> import gradxform as gx
      >>> report = gx.testing.check_against_reference(gx.adam(0.1), gx.testing.reference.adam(0.1), steps=3)
      >>> report['steps'], report['max_abs_error'] < 1e-5
      (3, True)
    """
    import jax
    import jax.numpy as jnp

    if steps < 1:
        raise ValueError(f"check_against_reference: steps must be >= 1, got {steps}")
    dt = np.dtype(dtype)
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
        _check_step(step, steps, expected, got, dt, rtol, atol)
        worst = max(worst, max_abs_error(expected, got))
        tx_params = _map(lambda p, u: (p + u.astype(p.dtype)).astype(p.dtype), tx_params, got)
        ref_params = _map(lambda p, u: (_f64(p) + _f64(u)).astype(p.dtype), ref_params, expected)
    return {"steps": steps, "max_abs_error": worst}

