"""Parameter initializers: constant, normal, uniform, variance scaling (Xavier/Glorot,
Kaiming/He/MSRA, LeCun) and orthogonal.

Calling convention (as in ``jax.nn.initializers``): ``zeros`` and ``ones`` are
initializers ``init(key, shape, dtype=jnp.float32) -> array``; every other name
is a factory returning one, e.g. ``xavier_uniform()(key, (512, 256))``.

Fans. For a kernel of shape ``(*receptive, in, out)`` the receptive-field size
is ``prod(receptive)`` and

    fan_in  = prod(receptive) * shape[in_axis]
    fan_out = prod(receptive) * shape[out_axis]

so ``(3, 3, 16, 32)`` has fan-in 144 and fan-out 288, and a dense ``(m, n)``
kernel has fan-in ``m`` and fan-out ``n``. ``in_axis`` / ``out_axis`` select
other layouts (PyTorch's ``(out, in, kh, kw)`` is ``in_axis=1, out_axis=0``);
``batch_axis`` names axes of independent kernels stacked together, which count
in neither fan.

References:
    Glorot & Bengio (2010), "Understanding the difficulty of training deep
    feedforward neural networks" (Xavier). He et al. (2015), "Delving deep into
    rectifiers" (Kaiming / MSRA, the derivation of ``Var(w) = 2 / n_in``).
    LeCun, Bottou, Orr & Müller (1998), "Efficient BackProp" (LeCun,
    ``Var(w) = 1 / n_in``). Saxe et al. (2014) (orthogonal). Goodfellow, Bengio
    & Courville (2016), "Deep Learning", Section 8.4.

Note:
    The papers' formulas use plain normals, and so do ``xavier_normal``,
    ``kaiming_normal`` and ``lecun_normal`` here by default (as PyTorch's
    ``xavier_normal_`` and ``kaiming_normal_`` do); pass
    ``truncated=True`` for a normal truncated at two standard deviations and
    rescaled to the same variance (``jax.nn.initializers.glorot_normal`` and
    friends truncate by default).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np

from gradxform import _checks, _tree

Shape = Union[int, Sequence[int]]
DType = Any
Initializer = Callable[..., jax.Array]

_MODES = ("fan_in", "fan_out", "fan_avg")
_DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

# A standard normal truncated to [-2, 2] has standard deviation
# sqrt(1 - 2 b phi(b) / (2 Phi(b) - 1)) at b = 2; dividing by it restores unit variance.
_TRUNC_BOUND = 2.0
_TRUNC_STD = math.sqrt(
    1.0
    - 2.0 * _TRUNC_BOUND * math.exp(-0.5 * _TRUNC_BOUND**2) / math.sqrt(2.0 * math.pi)
    / math.erf(_TRUNC_BOUND / math.sqrt(2.0))
)


def _is_dim(d: Any) -> bool:
    return isinstance(d, (int, np.integer)) and not isinstance(d, (bool, np.bool_))


def _as_shape(shape: Shape, fn: str) -> tuple[int, ...]:
    """The one shape check of every initializer (and `compute_fans`): non-negative ints only.

    A float dimension is rejected, not truncated (``(3.5, 4)`` would silently give ``(3, 4)``).
    """
    if _is_dim(shape):
        shape = (shape,)
    try:
        dims = tuple(shape)
    except TypeError:
        raise TypeError(f"{fn}: `shape` must be an int or a sequence of ints; got shape={shape!r}.") from None
    bad = [d for d in dims if not _is_dim(d)]
    if bad:
        raise ValueError(
            f"{fn}: `shape` must hold integer dimensions; got shape={shape!r} "
            f"({', '.join(repr(d) for d in bad)} {'is' if len(bad) == 1 else 'are'} not an int)."
        )
    out = tuple(int(d) for d in dims)
    if any(d < 0 for d in out):
        raise ValueError(f"{fn}: `shape` must have non-negative dimensions; got shape={out}.")
    return out


def _check_float_dtype(dtype: DType, fn: str) -> np.dtype:
    dt = np.dtype(dtype)
    if not jnp.issubdtype(dt, jnp.floating):
        raise ValueError(
            f"{fn}: random initializers draw floating-point values; got dtype={dt}. "
            "Pass float32, bfloat16, float16 (or float64 with x64 enabled)."
        )
    return dt


def _normalize_axes(axes: Union[int, Sequence[int]], ndim: int, name: str, shape, fn: str):
    axes = (axes,) if isinstance(axes, (int, np.integer)) else tuple(axes)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"{fn}: `{name}={a}` is out of range for a kernel of shape {shape} "
                f"({ndim} dimensions)."
            )
        out.append(int(a) % ndim)
    return tuple(out)


def compute_fans(
    shape: Shape,
    in_axis: Union[int, Sequence[int]] = -2,
    out_axis: Union[int, Sequence[int]] = -1,
    batch_axis: Union[int, Sequence[int]] = (),
) -> tuple[int, int]:
    """Returns ``(fan_in, fan_out)`` of a kernel of shape `shape`.

    ``fan_in = prod(receptive) * prod(shape[in_axis])`` and
    ``fan_out = prod(receptive) * prod(shape[out_axis])``, where the receptive
    field is every axis that is neither an in, out nor batch axis.

    Args:
        shape: the kernel's shape, at least 2-D.
        in_axis: the input-feature axis (or axes). Default -2.
        out_axis: the output-feature axis (or axes). Default -1.
        batch_axis: axes of stacked independent kernels, in neither fan.

    Returns:
        ``(fan_in, fan_out)`` as Python ints.

    Raises:
        ValueError: for a shape with fewer than 2 dimensions (a bias, a
            scalar), naming the shape; for out-of-range or overlapping axes.

    Example:
        >>> import gradxform as gx
        >>> gx.nn.compute_fans((3, 3, 16, 32))
        (144, 288)
    """
    fn = "compute_fans"
    shape = _as_shape(shape, fn)
    if len(shape) < 2:
        raise ValueError(
            f"{fn}: a kernel of shape {shape} has no fan-in/fan-out: it needs at least "
            f"2 dimensions (..., in, out), got {len(shape)}. Initialize 1-D parameters "
            "(biases, scales) with zeros, ones, constant, normal or uniform instead."
        )
    ndim = len(shape)
    ins = _normalize_axes(in_axis, ndim, "in_axis", shape, fn)
    outs = _normalize_axes(out_axis, ndim, "out_axis", shape, fn)
    batch = _normalize_axes(batch_axis, ndim, "batch_axis", shape, fn)
    if set(ins) & set(outs) or set(batch) & (set(ins) | set(outs)):
        raise ValueError(
            f"{fn}: in_axis={in_axis}, out_axis={out_axis} and batch_axis={batch_axis} "
            f"must name different axes of the kernel of shape {shape}."
        )
    receptive = math.prod(d for i, d in enumerate(shape) if i not in set(ins) | set(outs) | set(batch))
    fan_in = receptive * math.prod(shape[i] for i in ins)
    fan_out = receptive * math.prod(shape[i] for i in outs)
    return fan_in, fan_out


def zeros(key: jax.Array, shape: Shape, dtype: DType = jnp.float32) -> jax.Array:
    """An array of zeros; `key` is ignored.

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.zeros(jax.random.key(0), (2,)).tolist()
        [0.0, 0.0]
    """
    del key
    return jnp.zeros(_as_shape(shape, "zeros"), dtype)


def ones(key: jax.Array, shape: Shape, dtype: DType = jnp.float32) -> jax.Array:
    """An array of ones; `key` is ignored.

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.ones(jax.random.key(0), (2,)).tolist()
        [1.0, 1.0]
    """
    del key
    return jnp.ones(_as_shape(shape, "ones"), dtype)


def constant(value: Any, dtype: DType = jnp.float32) -> Initializer:
    """Returns an initializer filling every entry with `value`.

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.constant(0.5)(jax.random.key(0), (2,)).tolist()
        [0.5, 0.5]
    """

    def init(key: jax.Array, shape: Shape, dtype: DType = dtype) -> jax.Array:
        del key
        return jnp.full(_as_shape(shape, "constant"), value, dtype)

    return init


def normal(stddev: float = 1.0, dtype: DType = jnp.float32, *, truncated: bool = False) -> Initializer:
    r"""Returns an initializer drawing :math:`w \sim \mathcal N(0, \mathrm{stddev}^2)`.

    Args:
        stddev: standard deviation, >= 0. Default 1, a standard normal as
            PyTorch's ``normal_`` (``jax.nn.initializers.normal`` defaults to 0.01).
        dtype: default output dtype of the initializer.
        truncated: draw from a normal truncated at two standard deviations,
            rescaled so that the variance is still ``stddev**2``.

    Returns:
        ``init(key, shape, dtype=dtype) -> array``.

    Raises:
        ValueError: if `stddev` is negative.

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.normal(0.01)(jax.random.key(0), (3, 4)).shape
        (3, 4)
    """
    _checks.check_non_negative("stddev", stddev, fn="normal")
    kind = "truncated_unit_std" if truncated else "normal_unit_std"
    return _scaled_draw(lambda fan_in, fan_out: stddev, kind, dtype, None, "normal")


def uniform(scale: float = 1.0, dtype: DType = jnp.float32) -> Initializer:
    r"""Returns an initializer drawing :math:`w \sim U(-\mathrm{scale}, \mathrm{scale})`, variance ``scale**2 / 3``.

    Note:
        Symmetric around zero, as PyTorch's ``uniform_(-scale, scale)``;
        ``jax.nn.initializers.uniform`` draws from ``[0, scale)`` instead.

    Args:
        scale: half-width of the interval, >= 0.
        dtype: default output dtype of the initializer.

    Returns:
        ``init(key, shape, dtype=dtype) -> array``.

    Raises:
        ValueError: if `scale` is negative.

    Example:
        >>> import jax, gradxform as gx
        >>> w = gx.nn.uniform(0.5)(jax.random.key(0), (100,))
        >>> bool((abs(w) <= 0.5).all())
        True
    """
    _checks.check_non_negative("scale", scale, fn="uniform")
    return _scaled_draw(lambda fan_in, fan_out: scale, "uniform_half_width", dtype, None, "uniform")


def _scaled_draw(width_fn, kind, dtype, fan_args, fn) -> Initializer:
    """The shared sampler. `width_fn(fan_in, fan_out)` gives the std (normals) or half-width (uniform)."""

    def init(key: jax.Array, shape: Shape, dtype: DType = dtype) -> jax.Array:
        shape_t = _as_shape(shape, fn)
        dt = _check_float_dtype(dtype, fn)
        if fan_args is None:
            fan_in = fan_out = None
        else:
            try:
                fan_in, fan_out = compute_fans(shape_t, *fan_args)
            except ValueError as e:
                raise ValueError(str(e).replace("compute_fans:", f"{fn}:", 1)) from None
        width = width_fn(fan_in, fan_out)
        draw_dt = _tree.compute_dtype(dt)  # drawn in at least float32, then cast
        if kind == "normal_unit_std":
            w = jax.random.normal(key, shape_t, draw_dt) * width
        elif kind == "truncated_unit_std":
            w = jax.random.truncated_normal(key, -_TRUNC_BOUND, _TRUNC_BOUND, shape_t, draw_dt)
            w = w * (width / _TRUNC_STD)
        else:  # uniform with half-width `width`
            w = jax.random.uniform(key, shape_t, draw_dt, minval=-1.0, maxval=1.0) * width
        return w.astype(dt)

    return init


def variance_scaling(
    scale: float,
    mode: str,
    distribution: str,
    in_axis: Union[int, Sequence[int]] = -2,
    out_axis: Union[int, Sequence[int]] = -1,
    batch_axis: Union[int, Sequence[int]] = (),
    dtype: DType = jnp.float32,
) -> Initializer:
    r"""Returns an initializer with variance ``scale / n``, n chosen by `mode`.

    .. math::
        \mathrm{Var}(w) = \frac{\mathrm{scale}}{n},\qquad
        n = \begin{cases} \text{fan\_in} & \text{mode = fan\_in} \\
        \text{fan\_out} & \text{mode = fan\_out} \\
        (\text{fan\_in} + \text{fan\_out}) / 2 & \text{mode = fan\_avg}\end{cases}

    with ``distribution``:

    * ``"normal"``: :math:`\mathcal N(0, \mathrm{scale}/n)`;
    * ``"truncated_normal"``: a normal truncated at +-2 standard deviations,
      rescaled (by ``1 / 0.8796``) so that its variance is still ``scale / n``;
    * ``"uniform"``: :math:`U(-\sqrt{3\,\mathrm{scale}/n}, \sqrt{3\,\mathrm{scale}/n})`.

    Fans as in `compute_fans`.

    Args:
        scale: variance multiplier, > 0 (1 for Xavier/LeCun, 2 for Kaiming).
        mode: ``"fan_in"``, ``"fan_out"`` or ``"fan_avg"``.
        distribution: ``"normal"``, ``"truncated_normal"`` or ``"uniform"``.
        in_axis: input-feature axis (or axes) of the kernel. Default -2.
        out_axis: output-feature axis (or axes). Default -1.
        batch_axis: axes of stacked independent kernels, in neither fan.
        dtype: default output dtype (float32, bfloat16, float16, float64).

    Returns:
        ``init(key, shape, dtype=dtype) -> array``. Samples are drawn in
        float32 (float64 for float64) and cast to `dtype`.

    Raises:
        ValueError: for ``scale <= 0``, an unknown `mode` or `distribution`
            (when the factory is called); for a shape with no fan (fewer
            than 2 dimensions), naming the shape, or a non-float dtype (when
            the initializer is called).

    Example:
        >>> import jax, gradxform as gx
        >>> init = gx.nn.variance_scaling(2.0, "fan_in", "normal")
        >>> init(jax.random.key(0), (3, 3, 16, 32)).shape   # std sqrt(2 / 144)
        (3, 3, 16, 32)
    """
    fn = "variance_scaling"
    _checks.check_positive("scale", scale, fn=fn)
    if mode not in _MODES:
        raise ValueError(f"{fn}: `mode` must be one of {_MODES}; got mode={mode!r}.")
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(
            f"{fn}: `distribution` must be one of {_DISTRIBUTIONS}; got distribution={distribution!r}."
        )

    def variance(fan_in: int, fan_out: int) -> float:
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[mode]
        if n <= 0:
            raise ValueError(f"{fn}: the kernel has {mode}={n}; a zero-sized axis has no variance to scale.")
        return float(scale) / n

    if distribution == "uniform":
        width_fn = lambda fi, fo: math.sqrt(3.0 * variance(fi, fo))  # noqa: E731
        kind = "uniform_half_width"
    else:
        width_fn = lambda fi, fo: math.sqrt(variance(fi, fo))  # noqa: E731
        kind = "normal_unit_std" if distribution == "normal" else "truncated_unit_std"
    return _scaled_draw(width_fn, kind, dtype, (in_axis, out_axis, batch_axis), fn)


def _normal_distribution(truncated: bool) -> str:
    return "truncated_normal" if truncated else "normal"


def xavier_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype: DType = jnp.float32) -> Initializer:
    r"""Xavier/Glorot uniform: :math:`U(-\sqrt{6/(m+n)}, \sqrt{6/(m+n)})`, m = fan-in, n = fan-out.

    ``variance_scaling(1.0, "fan_avg", "uniform", ...)``; variance ``2 / (m + n)``.

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.xavier_uniform()(jax.random.key(0), (512, 512)).dtype
        dtype('float32')
    """
    return variance_scaling(1.0, "fan_avg", "uniform", in_axis, out_axis, batch_axis, dtype)


def xavier_normal(
    in_axis=-2, out_axis=-1, batch_axis=(), dtype: DType = jnp.float32, *, truncated: bool = False
) -> Initializer:
    r"""Xavier/Glorot normal: :math:`\mathcal N(0, \sigma^2)`, :math:`\sigma = \sqrt{2/(m+n)}`.

    ``variance_scaling(1.0, "fan_avg", "normal", ...)``. A plain normal as in
    Glorot & Bengio (2010) and PyTorch; ``truncated=True`` gives jax's default
    (truncated, same variance).

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.xavier_normal()(jax.random.key(0), (4, 3)).shape
        (4, 3)
    """
    dist = _normal_distribution(truncated)
    return variance_scaling(1.0, "fan_avg", dist, in_axis, out_axis, batch_axis, dtype)


def kaiming_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype: DType = jnp.float32) -> Initializer:
    r"""Kaiming/He/MSRA uniform: :math:`U(-\sqrt{6/m}, \sqrt{6/m})`, m = fan-in (variance ``2 / m``).

    ``variance_scaling(2.0, "fan_in", "uniform", ...)``.

    Note:
        PyTorch's ``kaiming_uniform_`` defaults to ``a=sqrt(5)`` in ``nn.Linear``
        (variance ``1 / (3 m)``); this is He et al.'s ReLU gain (``a = 0``).

    Example:
        >>> import jax, gradxform as gx
        >>> w = gx.nn.kaiming_uniform()(jax.random.key(0), (6, 2))
        >>> bool((abs(w) <= 1.0).all())   # sqrt(6 / 6) = 1
        True
    """
    return variance_scaling(2.0, "fan_in", "uniform", in_axis, out_axis, batch_axis, dtype)


def kaiming_normal(
    in_axis=-2, out_axis=-1, batch_axis=(), dtype: DType = jnp.float32, *, truncated: bool = False
) -> Initializer:
    r"""Kaiming/He/MSRA normal: :math:`\mathcal N(0, \sigma^2)`, :math:`\sigma = \sqrt{2/m}`, m = fan-in.

    ``variance_scaling(2.0, "fan_in", "normal", ...)``: the MSRA condition
    :math:`\tfrac12 n_l \mathrm{Var}(w_l) = 1` keeps ReLU activations steady.

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.kaiming_normal()(jax.random.key(0), (3, 3, 16, 32)).shape
        (3, 3, 16, 32)
    """
    dist = _normal_distribution(truncated)
    return variance_scaling(2.0, "fan_in", dist, in_axis, out_axis, batch_axis, dtype)


def lecun_uniform(in_axis=-2, out_axis=-1, batch_axis=(), dtype: DType = jnp.float32) -> Initializer:
    r"""LeCun uniform: :math:`U(-\sqrt{3/m}, \sqrt{3/m})`, variance ``1 / m`` (LeCun et al., 1998).

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.lecun_uniform()(jax.random.key(0), (3, 2)).shape
        (3, 2)
    """
    return variance_scaling(1.0, "fan_in", "uniform", in_axis, out_axis, batch_axis, dtype)


def lecun_normal(
    in_axis=-2, out_axis=-1, batch_axis=(), dtype: DType = jnp.float32, *, truncated: bool = False
) -> Initializer:
    r"""LeCun normal: :math:`\mathcal N(0, 1/m)`, m = fan-in.

    Example:
        >>> import jax, gradxform as gx
        >>> gx.nn.lecun_normal()(jax.random.key(0), (3, 2)).shape
        (3, 2)
    """
    dist = _normal_distribution(truncated)
    return variance_scaling(1.0, "fan_in", dist, in_axis, out_axis, batch_axis, dtype)


glorot_uniform = xavier_uniform
glorot_normal = xavier_normal
he_uniform = kaiming_uniform
he_normal = kaiming_normal


def orthogonal(scale: float = 1.0, column_axis: int = -1, dtype: DType = jnp.float32) -> Initializer:
    r"""Returns an initializer drawing a (scaled) random orthogonal matrix.

    The kernel is viewed as a matrix of shape ``(prod(other axes), shape[column_axis])``
    (a convolution kernel ``(3, 3, 16, 32)`` as ``(144, 32)``); a Gaussian
    matrix is factored :math:`A = QR` and
    :math:`W = \mathrm{scale}\cdot Q\,\mathrm{diag}(\mathrm{sign}(R_{ii}))`,
    so that :math:`W^\top W = \mathrm{scale}^2 I` when the matrix is tall and
    :math:`W W^\top = \mathrm{scale}^2 I` when it is wide.

    Args:
        scale: multiplier, > 0.
        column_axis: the axis that becomes the matrix's columns. Default -1.
        dtype: default output dtype. The QR runs in float32 (float64 for
            float64) and the result is cast.

    Returns:
        ``init(key, shape, dtype=dtype) -> array``.

    Raises:
        ValueError: for ``scale <= 0``; for a shape with fewer than 2
            dimensions, naming the shape.

    Example:
        >>> import jax, jax.numpy as jnp, gradxform as gx
        >>> w = gx.nn.orthogonal()(jax.random.key(0), (4, 4))
        >>> bool(jnp.allclose(w.T @ w, jnp.eye(4), atol=1e-5))
        True
    """
    fn = "orthogonal"
    _checks.check_positive("scale", scale, fn=fn)

    def init(key: jax.Array, shape: Shape, dtype: DType = dtype) -> jax.Array:
        shape_t = _as_shape(shape, fn)
        dt = _check_float_dtype(dtype, fn)
        if len(shape_t) < 2:
            raise ValueError(
                f"{fn}: a kernel of shape {shape_t} cannot be made orthogonal: it needs at "
                f"least 2 dimensions, got {len(shape_t)}."
            )
        (col,) = _normalize_axes(column_axis, len(shape_t), "column_axis", shape_t, fn)
        n_cols = shape_t[col]
        n_rows = math.prod(shape_t) // n_cols if n_cols else 0
        draw_dt = _tree.compute_dtype(dt)  # drawn in at least float32, then cast
        a = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), draw_dt)
        q, r = jnp.linalg.qr(a)
        q = q * jnp.sign(jnp.diagonal(r))[None, :]
        if n_rows < n_cols:
            q = q.T
        other = tuple(d for i, d in enumerate(shape_t) if i != col)
        w = jnp.moveaxis(q.reshape(other + (n_cols,)), -1, col)
        return (w * scale).astype(dt)

    return init
