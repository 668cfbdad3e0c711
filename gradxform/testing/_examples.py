"""Example trees and the helpers that describe, walk and compare their structure.

* `describe_leaf` / `describe_tree`: a leaf as ``f32[3,4]``, a tree as
  ``{'w': f32[3,4]}`` (what the reports show);
* `paths`, `structure_difference`, `aval_key`: key paths, the first place where
  two trees differ, and what ``jax.jit`` sees of a leaf;
* `Layer`, `Example`, `make_grads`, `default_examples`, `random_like`: the
  hypothesis-free examples `check_transformation` runs on.

Nothing here imports hypothesis or the rest of `gradxform.testing`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

__all__ = ["Example", "Layer", "default_examples", "make_grads"]


class Layer(NamedTuple):
    """A NamedTuple node for the example trees: a layer's kernel and bias."""

    kernel: Any
    bias: Any


# --------------------------------------------------------------------------- describing


def _short_dtype(dtype: Any) -> str:
    name = np.dtype(dtype).name
    for long, short in (("bfloat", "bf"), ("complex", "c"), ("float", "f"), ("uint", "u"), ("int", "i")):
        if name.startswith(long):
            return short + name[len(long):]
    return name


class _Aval:
    """Prints as `f32[3,4]` inside a repr of the tree."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, _Aval) and other.text == self.text

    __hash__ = None  # type: ignore[assignment]


def describe_leaf(x: Any, weak: bool = False) -> str:
    """``f32[3,4]`` for an array (``weak`` adds its weak type), the type name otherwise."""
    if x is None:
        return "None"
    if isinstance(x, (bool, int, float, complex)):
        return f"python {type(x).__name__}"
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        return type(x).__name__
    text = f"{_short_dtype(dtype)}[{','.join(str(d) for d in np.shape(x))}]"
    if weak:
        text += " weak_type" if getattr(x, "weak_type", False) else " (not weak)"
    return text


def describe_tree(tree: Any) -> str:
    """The tree with each leaf shown as ``dtype[shape]``: ``{'w': f32[3,4]}``."""
    return repr(
        jax.tree_util.tree_map(lambda x: _Aval(describe_leaf(x)), tree, is_leaf=lambda x: x is None)
    )


def jit_describe(x: Any) -> str:
    """`describe_leaf` with the weak type, as ``jax.jit`` sees the leaf."""
    if isinstance(x, (bool, int, float, complex)):
        return f"python {type(x).__name__} (jit sees a weak-typed scalar)"
    return describe_leaf(x, weak=True)


# --------------------------------------------------------------------------- walking


def paths(tree: Any) -> list[tuple[str, Any]]:
    """``[(key path, leaf)]`` in flattening order; a None counts as a leaf."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in flat]


def structure_difference(expected: Any, got: Any) -> Optional[tuple[str, str, str]]:
    """None when the trees match (None counts as a leaf); else (path, expected, got)."""
    is_none = lambda x: x is None  # noqa: E731
    e_def = jax.tree_util.tree_structure(expected, is_leaf=is_none)
    g_def = jax.tree_util.tree_structure(got, is_leaf=is_none)
    if e_def == g_def:
        # None counts as a leaf above: a None where an array was (or back) differs too.
        for (path, e), (_, g) in zip(paths(expected), paths(got)):
            if (e is None) != (g is None):
                return path, describe_leaf(e), describe_leaf(g)
        return None
    e_paths, g_paths = dict(paths(expected)), dict(paths(got))
    for p, leaf in e_paths.items():
        if p not in g_paths:
            return p, describe_leaf(leaf), "no leaf there (missing)"
    for p, leaf in g_paths.items():
        if p not in e_paths:
            return p, "no leaf there", f"an unexpected leaf {describe_leaf(leaf)}"
    return "", f"the tree {describe_tree(expected)}", f"the tree {describe_tree(got)} (other node types)"


def aval_key(x: Any) -> tuple:
    """What `jax.jit` sees of a leaf: shape, dtype and weak type."""
    if x is None:
        return (None,)
    if isinstance(x, (bool, int, float, complex)):
        dt = jax.dtypes.canonicalize_dtype(np.result_type(type(x)))
        return ((), np.dtype(dt), not isinstance(x, bool))
    dtype = np.dtype(getattr(x, "dtype", np.float32))
    return (tuple(np.shape(x)), dtype, bool(getattr(x, "weak_type", False)))


# --------------------------------------------------------------------------- examples


@dataclasses.dataclass(frozen=True)
class Example:
    """Params and one gradient tree per step, with a name for the report."""

    name: str
    params: Any
    grads: tuple

    @property
    def steps(self) -> int:
        return len(self.grads)

    def describe(self) -> str:
        params = describe_tree(self.params)
        grads = [describe_tree(g) for g in self.grads]
        g = "like params" if all(x == params for x in grads) else grads[0]
        return (
            f"'{self.name}', {self.steps} steps\n"
            f"              params {params}\n"
            f"              grads  {g}"
        )


def _cast(values: np.ndarray, dtype: Any) -> jax.Array:
    """``values`` in ``dtype``, with what would be a subnormal there flushed to zero."""
    x = np.asarray(values, np.float32).astype(np.dtype(dtype))
    if np.issubdtype(x.dtype, np.floating) or x.dtype == np.dtype(ml_dtypes.bfloat16):
        tiny = float(ml_dtypes.finfo(x.dtype).tiny)
        x = np.where(np.abs(x.astype(np.float32)) < tiny, np.zeros_like(x), x)
    return jnp.asarray(x)


def random_like(tree: Any, rng: np.random.Generator, scale: float = 1.0, dtype: Any = None) -> Any:
    """A tree like ``tree`` of ``scale`` times standard normals, in each leaf's dtype (or ``dtype``)."""
    return jax.tree_util.tree_map(
        lambda p: _cast(scale * rng.standard_normal(np.shape(p)), dtype or p.dtype), tree
    )


def make_grads(
    params: Any, steps: int, *, seed: int = 0, dtype: Any = None, thorough: bool = False
) -> tuple:
    """The deterministic gradient sequence `check_transformation` uses for `params`.

    Step 1 is all zeros; at every step the first entry of each leaf with more
    than one entry is zero (a coordinate that never receives gradient); the
    other entries are standard normal. With `thorough`, step 3 is scaled by 1e3 and step 4 by 1e-3 (both
    float16-safe). Each leaf has its params leaf's dtype unless `dtype` is given.

    Examples:
        >>> import jax.numpy as jnp, gradxform as gx
        >>> g = gx.testing.make_grads({'w': jnp.ones(3)}, 3)
        >>> [float(x['w'][0]) for x in g], g[1]['w'].tolist()
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
    """
    rng = np.random.default_rng(seed + 1)
    scales = {1: 0.0}
    if thorough:
        scales.update({3: 1e3, 4: 1e-3})

    def leaf(p, scale):
        values = scale * rng.standard_normal(np.shape(p))
        if values.size > 1:
            values.reshape(-1)[0] = 0.0  # the coordinate that never receives gradient
        return _cast(values, dtype or p.dtype)

    return tuple(
        jax.tree_util.tree_map(lambda p, k=k: leaf(p, scales.get(k, 1.0)), params) for k in range(steps)
    )


def default_examples(*, steps: int = 3, thorough: bool = False, seed: int = 0) -> list[Example]:
    """The hypothesis-free example trees of `check_transformation` (see `gradxform.testing.laws`)."""
    rng = np.random.default_rng(seed)
    f32, bf16, f16 = jnp.float32, jnp.bfloat16, jnp.float16

    def arr(shape, dtype=f32):
        return _cast(rng.standard_normal(shape), dtype)

    trees = [
        # Few distinct shapes across the examples: eager dispatch compiles each op per shape.
        ("f32 dict", {"dense": {"kernel": arr((2, 3)), "bias": arr((3,))}, "scale": arr((3,))}, None),
        ("bf16 dict", {"kernel": arr((2, 3), bf16), "bias": arr((3,), bf16)}, None),
        ("scalar and empty axis", {"s": arr(()), "e": arr((0, 3)), "v": arr((3,))}, None),
        (
            "nested list/tuple/NamedTuple",
            [(arr((3,)), arr((2, 3))), Layer(kernel={"w": arr((2, 3))}, bias=arr((3,)))],
            None,
        ),
    ]
    if thorough:
        trees += [
            ("f16 dict", {"kernel": arr((3, 3), f16), "bias": arr((3,), f16)}, None),
            ("bf16 params, f32 grads", {"kernel": arr((2, 3), bf16), "bias": arr((3,), bf16)}, f32),
            ("bare array", arr((4,)), None),
            ("larger", {"w": arr((16, 32)), "b": arr((32,))}, None),
        ]
    return [
        Example(name, params, make_grads(params, steps, seed=seed + i, dtype=gdt, thorough=thorough))
        for i, (name, params, gdt) in enumerate(trees)
    ]
