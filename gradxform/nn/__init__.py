"""Model-side functions: initializers, functional batch norm, regularizers, augmentation.

Plain pure functions that compose with any model code and run under ``jax.jit``,
``jax.vmap``, ``lax.scan`` and ``jax.shard_map``.
"""

from gradxform.nn._augment import gaussian_noise, random_crop, random_flip
from gradxform.nn._batch_norm import batch_norm, batch_norm_init
from gradxform.nn._initializers import (
    compute_fans,
    constant,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    normal,
    ones,
    orthogonal,
    uniform,
    variance_scaling,
    xavier_normal,
    xavier_uniform,
    zeros,
)
from gradxform.nn._regularizers import (
    dropout,
    fgsm,
    l1_penalty,
    l2_penalty,
    smooth_labels,
    weight_noise,
)

__all__ = [
    "batch_norm",
    "batch_norm_init",
    "compute_fans",
    "constant",
    "dropout",
    "fgsm",
    "gaussian_noise",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "kaiming_normal",
    "kaiming_uniform",
    "l1_penalty",
    "l2_penalty",
    "lecun_normal",
    "lecun_uniform",
    "normal",
    "ones",
    "orthogonal",
    "random_crop",
    "random_flip",
    "smooth_labels",
    "uniform",
    "variance_scaling",
    "weight_noise",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
]
