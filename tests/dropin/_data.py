"""Synthetic data shared by the drop-in programs (NumPy only, fixed seeds)."""

import numpy as np


def classification(n=128, d=8, k=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, k)).astype(np.float32)
    y = np.argmax(x @ w + 0.3 * rng.normal(size=(n, k)), axis=1).astype(np.int32)
    return x, y


def mlp_params(sizes=(8, 16, 3), seed=1):
    rng = np.random.default_rng(seed)
    return {
        f"layer{i}": {
            "w": (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32),
            "b": np.zeros(b, np.float32),
        }
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))
    }


def loss_fn(params, x, y):
    """Mean cross entropy of a two-layer ReLU network (plain JAX, so both libraries share it)."""
    import jax  # noqa: PLC0415 - keep this module importable without jax for the data helpers

    h = jax.nn.relu(x @ params["layer0"]["w"] + params["layer0"]["b"])
    logits = h @ params["layer1"]["w"] + params["layer1"]["b"]
    logp = jax.nn.log_softmax(logits)
    return -(jax.numpy.take_along_axis(logp, y[:, None], axis=1)).mean()
