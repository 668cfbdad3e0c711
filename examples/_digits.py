"""The digits data and the MLP shared by `train_digits.py` and `data_parallel.py`.

Data: the 8x8 handwritten digits that ship inside scikit-learn (1797 images,
no download), split once and for all (``random_state=0``, stratified) into
train / validation / test, scaled to [0, 1] and centred with the training mean.

Model: ``Linear -> BatchNorm -> ReLU -> Dropout`` blocks and a linear read-out,
written as plain functions of plain dicts, so the same code runs on one device
and, with ``axis_name``, inside ``jax.shard_map`` as sync batch norm.
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

import gradxform as gx

NUM_CLASSES = 10
BN_MOMENTUM = 0.9  # flax's convention: the weight of the old running average
LABEL_SMOOTHING = 0.1


def load_splits(test_fraction: float = 0.2, val_fraction: float = 0.15) -> dict:
    """Returns ``{'train': (x, y), 'val': (x, y), 'test': (x, y)}`` as NumPy float32 / int32 arrays.

    The split does not depend on any seed of the run: every optimizer and every
    seed is scored on the same 360 test images.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int32)
    x_rest, x_test, y_rest, y_test = train_test_split(
        x, y, test_size=test_fraction, random_state=0, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(
        x_rest, y_rest, test_size=val_fraction / (1.0 - test_fraction), random_state=0, stratify=y_rest)
    mean = x_train.mean(axis=0, keepdims=True)
    std = np.float32(x_train.std())  # one scale for all pixels: some are always 0 in training
    norm = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
    return {"train": (norm(x_train), y_train), "val": (norm(x_val), y_val), "test": (norm(x_test), y_test)}


def init_mlp(key: jax.Array, sizes=(64, 256, 256, NUM_CLASSES)) -> tuple[dict, dict]:
    """``(params, bn_state)`` of an MLP with Kaiming-normal hidden layers.

    Hidden layers have no bias (batch norm's shift replaces it); the read-out
    layer is Xavier-normal with a zero bias.
    """
    keys = jax.random.split(key, len(sizes) - 1)
    params, bn_state = {}, {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-2], sizes[1:-1])):
        params[f"dense{i}"] = {"w": gx.nn.kaiming_normal()(keys[i], (fan_in, fan_out))}
        params[f"bn{i}"], bn_state[f"bn{i}"] = gx.nn.batch_norm_init(fan_out)
    params["out"] = {"w": gx.nn.xavier_normal()(keys[-1], (sizes[-2], sizes[-1])),
                     "b": jnp.zeros((sizes[-1],), jnp.float32)}
    return params, bn_state


def decay_mask(params: dict) -> dict:
    """True for the weight matrices, False for biases and batch-norm scale/shift (no decay there)."""
    return {name: {k: k == "w" for k in layer} for name, layer in params.items()}


def apply_mlp(
    params: dict,
    bn_state: dict,
    x: jax.Array,
    *,
    training: bool,
    key: Optional[jax.Array] = None,
    example_ids: Optional[jax.Array] = None,
    dropout_rate: float = 0.2,
    axis_name: Optional[str] = None,
) -> tuple[jax.Array, dict]:
    """Logits and the new batch-norm state.

    Dropout draws each example's mask from ``fold_in(key, example_id)``, so the
    masks do not depend on how the batch is split across devices: a run over 8
    devices sees exactly the masks of the single-device run.
    """
    n_hidden = sum(1 for name in params if name.startswith("dense"))
    new_state = {}
    h = x
    for i in range(n_hidden):
        h = h @ params[f"dense{i}"]["w"]
        h, new_state[f"bn{i}"] = gx.nn.batch_norm(
            params[f"bn{i}"], bn_state[f"bn{i}"], h,
            training=training, momentum=BN_MOMENTUM, axis_name=axis_name)
        h = jax.nn.relu(h)
        if training and dropout_rate > 0.0:
            layer_key = jax.random.fold_in(key, i)
            keys = jax.vmap(lambda j: jax.random.fold_in(layer_key, j))(example_ids)
            h = jax.vmap(lambda k, row: gx.nn.dropout(k, row, dropout_rate))(keys, h)
    logits = h @ params["out"]["w"] + params["out"]["b"]
    return logits, new_state


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy with integer labels."""
    logp = jax.nn.log_softmax(logits)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def smoothed_cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float = LABEL_SMOOTHING) -> jax.Array:
    """Cross-entropy against `gx.nn.smooth_labels` targets (1 - eps for the true class, eps / 9 for the others).

    The training loss: smoothing keeps the network from chasing ever larger
    logits once the training set is memorized, so the validation loss (plain
    cross-entropy) stays a useful early-stopping signal.
    """
    targets = gx.nn.smooth_labels(jax.nn.one_hot(labels, NUM_CLASSES, dtype=logits.dtype), smoothing)
    return -jnp.mean(jnp.sum(targets * jax.nn.log_softmax(logits), axis=-1))


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))


@jax.jit
def evaluate(params: dict, bn_state: dict, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(loss, accuracy)`` in eval mode (running batch-norm statistics, no dropout)."""
    logits, _ = apply_mlp(params, bn_state, x, training=False)
    return cross_entropy(logits, y), accuracy(logits, y)


def readme_chain(peak_lr: float, total_steps: int, warmup_steps: int, weight_decay: float,
                 mask=decay_mask) -> gx.GradientTransformation:
    """README's chain: clip -> Adam scaling -> weight decay -> warm-up cosine schedule (descent sign)."""
    schedule = gx.warmup_cosine_decay_schedule(0.0, peak_lr, warmup_steps, total_steps,
                                               end_value=0.01 * peak_lr)
    return gx.chain(
        gx.clip_by_global_norm(1.0),
        gx.scale_by_adam(),
        gx.add_decayed_weights(weight_decay, mask=mask),
        gx.scale_by_schedule(lambda count: -schedule(count)),
    )
