"""Keyed data augmentation for image batches (dataset augmentation, Goodfellow,
Bengio & Courville, "Deep Learning", 2016, Section 7.4): random flips, random
crops with padding, and additive Gaussian noise.

Images are batches laid out ``(N, H, W, C)`` (channels last); every image of
the batch gets its own random draw. Pure functions of a key: they run under
``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp

from gradxform import _checks, _tree


def _check_images(images: jax.Array, fn: str) -> jax.Array:
    images = jnp.asarray(images)
    if images.ndim != 4:
        raise ValueError(
            f"{fn}: expects a batch of images of shape (N, H, W, C); got shape {images.shape}. "
            "Add a batch axis (x[None]) or a channel axis (x[..., None])."
        )
    return images


def random_flip(
    key: jax.Array,
    images: jax.Array,
    *,
    horizontal: bool = True,
    vertical: bool = False,
    prob: float = 0.5,
) -> jax.Array:
    """Flips each image left-right (and/or up-down) with probability `prob`.

    Each enabled direction is drawn independently per image.

    Args:
        key: a PRNG key.
        images: ``(N, H, W, C)``.
        horizontal: flip along the width axis.
        vertical: flip along the height axis.
        prob: probability of each flip, in [0, 1].

    Returns:
        The augmented batch, same shape and dtype.

    Raises:
        ValueError: if `prob` is outside [0, 1] or `images` is not 4-D.

    Example:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> x = jnp.arange(4.0).reshape(1, 1, 4, 1)
        >>> gx.nn.random_flip(jax.random.key(0), x, prob=1.0)[0, 0, :, 0].tolist()
        [3.0, 2.0, 1.0, 0.0]
    """
    fn = "random_flip"
    _checks.check_range("prob", prob, 0.0, 1.0, fn=fn)
    images = _check_images(images, fn)
    n = images.shape[0]
    k_h, k_v = jax.random.split(key)
    out = images
    if horizontal:
        flip = jax.random.bernoulli(k_h, prob, (n, 1, 1, 1))
        out = jnp.where(flip, jnp.flip(out, axis=2), out)
    if vertical:
        flip = jax.random.bernoulli(k_v, prob, (n, 1, 1, 1))
        out = jnp.where(flip, jnp.flip(out, axis=1), out)
    return out


def random_crop(
    key: jax.Array,
    images: jax.Array,
    size: Optional[Union[int, Sequence[int]]] = None,
    *,
    padding: int = 0,
    pad_mode: str = "constant",
) -> jax.Array:
    """Pads each image by `padding` pixels on every side, then crops a random ``size`` window.

    The classic CIFAR recipe is ``random_crop(key, x, padding=4)``: a random
    translation by up to 4 pixels, the border filled with zeros.

    Args:
        key: a PRNG key.
        images: ``(N, H, W, C)``.
        size: ``(h, w)`` of the crop (an int for square); default ``(H, W)``.
        padding: pixels added on each side of height and width, >= 0.
        pad_mode: a ``jnp.pad`` mode: ``"constant"`` (zeros), ``"edge"``,
            ``"reflect"``, ...

    Returns:
        ``(N, h, w, C)`` in `images`' dtype.

    Raises:
        ValueError: for a negative `padding`, a crop larger than the padded
            image, or `images` not 4-D.

    Example:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> x = jnp.ones((2, 8, 8, 3))
        >>> gx.nn.random_crop(jax.random.key(0), x, padding=2).shape
        (2, 8, 8, 3)
    """
    fn = "random_crop"
    _checks.check_non_negative("padding", padding, fn=fn)
    images = _check_images(images, fn)
    n, h, w, c = images.shape
    if size is None:
        ch, cw = h, w
    elif isinstance(size, int):
        ch = cw = size
    else:
        ch, cw = (int(s) for s in size)
    padding = int(padding)
    ph, pw = h + 2 * padding, w + 2 * padding
    if not (0 < ch <= ph and 0 < cw <= pw):
        raise ValueError(
            f"{fn}: crop size {(ch, cw)} must be positive and fit in the padded image of size "
            f"{(ph, pw)} (images {images.shape}, padding={padding})."
        )
    if padding:
        pads = ((0, 0), (padding, padding), (padding, padding), (0, 0))
        padded = jnp.pad(images, pads, mode=pad_mode)
    else:
        padded = images
    k_y, k_x = jax.random.split(key)
    ys = jax.random.randint(k_y, (n,), 0, ph - ch + 1)
    xs = jax.random.randint(k_x, (n,), 0, pw - cw + 1)

    def crop(img, y0, x0):
        return jax.lax.dynamic_slice(img, (y0, x0, 0), (ch, cw, c))

    return jax.vmap(crop)(padded, ys, xs)


def gaussian_noise(key: jax.Array, x: jax.Array, stddev: float) -> jax.Array:
    r"""Adds :math:`\mathcal N(0, \mathrm{stddev}^2)` noise to every entry of `x`.

    Noise added to the inputs, as augmentation and as a regularizer
    (Goodfellow et al., 2016, Sections 7.4 and 7.5); works on any shape, not
    only image batches.

    Args:
        key: a PRNG key.
        x: the inputs.
        stddev: the noise's standard deviation, >= 0.

    Returns:
        ``x + noise`` in `x`'s dtype (noise drawn in at least float32).

    Raises:
        ValueError: if `stddev` is negative or `x` is not floating point.

    Example:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> gx.nn.gaussian_noise(jax.random.key(0), jnp.zeros((2, 3)), 0.1).shape
        (2, 3)
    """
    _checks.check_non_negative("stddev", stddev, fn="gaussian_noise")
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(
            f"gaussian_noise: x must be floating point to take real-valued noise; got dtype {x.dtype}. "
            "Convert it first (e.g. x.astype(jnp.float32) / 255)."
        )
    acc = _tree.compute_dtype(x.dtype)  # noise drawn in at least float32
    noise = jax.random.normal(key, x.shape, acc) * jnp.asarray(stddev).astype(acc)
    return (x.astype(acc) + noise).astype(x.dtype)
