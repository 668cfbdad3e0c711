"""The generic laws of gradient transformations, checked by `check_transformation`.

Every transformation, built in or written by a user, owes its callers the same
contract (see `gradxform._base`): ``init`` and ``update`` are pure, the updates
keep the incoming tree, shapes and dtypes, the state keeps the tree and dtypes
``init`` gave it, and the whole thing runs under ``jax.jit``, ``lax.cond`` and
``lax.scan``. `check_transformation` runs a transformation a few steps on a few
small example trees and checks each law below; when one breaks, it raises
`LawViolation` (an ``AssertionError``) whose report names the law, the example
(params / grads shapes and dtypes), the step and the key path of the leaf.

Laws (``LAWS`` maps each name to its statement; the name appears in the
report as ``law '<name>'``):

=======================  ============================================================
runs                     init and update run on the example without raising
updates_structure        the updates have the tree structure of the incoming updates
updates_shape            ... and their shapes
updates_dtype            ... and their dtypes
finite                   finite gradients (all-zero ones included) give finite
                         updates and a finite state
state_structure          the state keeps the tree structure ``init`` gave it
state_dtype              the state keeps the shapes and dtypes ``init`` gave it
init_pure                two calls of ``init`` on the same params give equal states
init_value_independent   ``init`` reads the params' shapes and dtypes, not their
                         values (turn off with ``init_reads_params=True``)
deterministic            ``update`` twice on the same inputs gives identical results
no_retrace               a jitted ``update`` is not traced again on the next step
                         (catches a state whose dtype or weak type drifts)
jit_consistent           ``jax.jit(update)`` agrees with ``update`` (tight tolerance)
lax_cond                 ``update`` runs as a branch of ``lax.cond`` whose other
                         branch keeps the state, and agrees with ``update``
lax_scan                 ``update`` runs as the body of ``lax.scan`` over the steps
                         and agrees with the Python loop
chain_identity_left      ``chain(identity(), tx)`` behaves like ``tx``, step by step
chain_identity_right     ``chain(tx, identity())`` behaves like ``tx``, step by step
none_leaves (optional)   ``None`` leaves in the updates stay ``None``; the state
                         keeps its tree and dtypes
masked (optional)        under ``masked(tx, mask)`` masked-out leaves pass through
                         unchanged; the updates and state keep their trees
ignores_extra_args       an unknown extra keyword argument to ``update`` changes
(optional)               nothing
=======================  ============================================================

The default examples are hypothesis-free and small (a float32 dict tree, a
bfloat16 tree, a tree with a scalar and an empty axis, a nested
list / tuple / NamedTuple tree). Gradients are deterministic: step 1 is all
zeros and the first entry of every leaf with more than one entry is zero at
every step (a coordinate that never receives gradient), the rest standard
normal. The eager laws run on every example; the laws that compile run on the
first ones only (``no_retrace`` and ``jit_consistent`` on the float32 and
bfloat16 trees, ``lax_cond`` and ``lax_scan`` on the float32 tree), since a
compilation costs far more than the eager steps. ``thorough=True`` adds
float16, bf16 params with f32 grads, a bare array and a larger tree, runs at
least 6 steps (with a huge and a tiny one), and runs every law on every example
and every step.

`check_transformation_property` is the hypothesis-driven variant: it draws the
params, the gradient sequence and (optionally) the hyperparameters, and on a
failure shrinks them to a minimal example that the report shows.

Examples:
    >>> import jax.numpy as jnp, gradxform as gx
    >>> from gradxform.testing import check_transformation
    >>> check_transformation(gx.sgd(0.1, momentum=0.9))  # returns None: all laws hold
    >>> def leaky(): # returns float32 updates for bfloat16 gradients
    ...     return gx.stateless(lambda g, p: {k: v.astype(jnp.float32) for k, v in g.items()})
    >>> check_transformation(leaky(), {'w': jnp.ones(2, jnp.bfloat16)}, laws=['updates_dtype'])
    Traceback (most recent call last):
        ...
    gradxform.testing.laws.LawViolation: check_transformation: 1 of 1 laws broken: updates_dtype
    <BLANKLINE>
    law 'updates_dtype': the updates have the dtypes of the incoming updates
        where:    updates['w'] at step 0
        expected: bf16[2]
        got:      f32[2]
        example:  'given params', 3 steps
                  params {'w': bf16[2]}
                  grads  like params
        hint:     cast each update back to its gradient's dtype (`u.astype(g.dtype)`)
"""

from __future__ import annotations

import contextlib
import dataclasses
import traceback
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
from jax import lax

__all__ = [
    "LAWS",
    "DEFAULT_LAWS",
    "OPTIONAL_LAWS",
    "Example",
    "Layer",
    "LawViolation",
    "Violation",
    "check_transformation",
    "check_transformation_property",
    "default_examples",
    "make_grads",
]

LAWS: dict[str, str] = {
    "runs": "init and update run on the example without raising",
    "updates_structure": "the updates have the tree structure of the incoming updates",
    "updates_shape": "the updates have the shapes of the incoming updates",
    "updates_dtype": "the updates have the dtypes of the incoming updates",
    "finite": "finite gradients (all-zero ones included) give finite updates and a finite state",
    "state_structure": "the state keeps the tree structure init gave it, step after step",
    "state_dtype": "the state keeps the shapes and dtypes init gave it, step after step",
    "init_pure": "two calls of init on the same params give equal states",
    "init_value_independent": "init reads the params' shapes and dtypes, not their values",
    "deterministic": "update called twice on the same inputs gives identical results",
    "no_retrace": "a jitted update is not traced again on the next step",
    "jit_consistent": "jax.jit(update) agrees with update",
    "lax_cond": "update runs as a branch of lax.cond (other branch keeps the state) and agrees",
    "lax_scan": "update runs as the body of lax.scan over the steps and agrees with the loop",
    "chain_identity_left": "chain(identity(), tx) behaves like tx, step by step",
    "chain_identity_right": "chain(tx, identity()) behaves like tx, step by step",
    "none_leaves": "None leaves in the updates stay None, and the state keeps its tree and dtypes",
    "masked": "under masked(tx, mask) the masked-out leaves pass through unchanged",
    "ignores_extra_args": "an unknown extra keyword argument to update changes nothing",
}
OPTIONAL_LAWS = ("none_leaves", "masked", "ignores_extra_args")
DEFAULT_LAWS = tuple(name for name in LAWS if name != "runs" and name not in OPTIONAL_LAWS)

_HINTS = {
    "updates_structure": "return updates with exactly the incoming tree (same keys, same node types)",
    "updates_shape": "return one update per parameter, shaped like its gradient",
    "updates_dtype": "cast each update back to its gradient's dtype (`u.astype(g.dtype)`)",
    "finite": "guard divisions and roots (an `eps`), and compute low-precision leaves in float32",
    "state_structure": "return a state of the same tree as init's (no leaves added or dropped)",
    "state_dtype": "cast each new state leaf back to the dtype init gave it "
    "(`new.astype(old.dtype)`)",
    "init_pure": "build the state from the params' shapes and dtypes only, with no Python-side "
    "state or randomness (take a PRNG key as a hyperparameter)",
    "init_value_independent": "build the state from shapes and dtypes (`jnp.zeros_like(p)`); "
    "if reading the params' values is the contract (lookahead), pass init_reads_params=True",
    "deterministic": "keep every piece of state in the returned state, not in Python globals, "
    "closures or NumPy random generators",
    "jit_consistent": "do not depend on Python-side state or on concrete values; anything that "
    "changes from step to step belongs in the state",
    "no_retrace": "give each state leaf an explicit dtype in init and cast it back in update "
    "(`jnp.zeros([], jnp.int32)`, not `jnp.asarray(0)`)",
    "lax_cond": "update must return the state's exact tree, shapes and dtypes and the updates' "
    "dtypes, and use no Python control flow on array values",
    "lax_scan": "the state must be a fixed-type carry: same tree, shapes and dtypes out as in",
    "chain_identity_left": "the transformation must not depend on where it sits in a chain",
    "chain_identity_right": "the transformation must not depend on where it sits in a chain",
    "none_leaves": "map over leaves with `is_leaf=lambda x: x is None` and return None for them",
    "masked": "the transformation must work on any subtree of the params",
    "ignores_extra_args": "accept `**extra_args` in update and ignore the ones you do not use",
}


class Layer(NamedTuple):
    """A NamedTuple node for the example trees: a layer's kernel and bias."""

    kernel: Any
    bias: Any


# --------------------------------------------------------------------------- reports


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


@dataclasses.dataclass(frozen=True)
class Violation:
    """One broken law: where, what was expected and what was found."""

    law: str
    example: Optional[Example]
    path: Optional[str] = None  # e.g. "updates['w']" or "state.mu['w']"
    step: Optional[int] = None
    expected: Optional[str] = None
    got: Optional[str] = None
    detail: Optional[str] = None

    def report(self) -> str:
        lines = [f"law '{self.law}': {LAWS[self.law]}"]
        if self.path is not None or self.step is not None:
            where = [self.path] if self.path is not None else []
            if self.step is not None:
                where.append(f"step {self.step}")
            lines.append(f"    where:    {' at '.join(where)}")
        if self.expected is not None:
            lines.append(f"    expected: {self.expected}")
        if self.got is not None:
            lines.append(f"    got:      {self.got}")
        if self.detail:
            detail = self.detail.strip().replace("\n", "\n              ")
            lines.append(f"    detail:   {detail}")
        if self.example is not None:
            lines.append(f"    example:  {self.example.describe()}")
        if self.law in _HINTS:
            lines.append(f"    hint:     {_HINTS[self.law]}")
        return "\n".join(lines)


class LawViolation(AssertionError):
    """Raised by `check_transformation`; ``violations`` lists each broken law."""

    def __init__(self, violations: Sequence[Violation], checked: Sequence[str], header: str = ""):
        self.violations = list(violations)
        self.laws = [v.law for v in self.violations]
        head = header or (
            f"check_transformation: {len(self.laws)} of {len(checked)} laws broken: "
            + ", ".join(self.laws)
        )
        super().__init__("\n\n".join([head] + [v.report() for v in self.violations]))


class _Broken(Exception):
    """Internal: a law found a counterexample (turned into a `Violation`)."""

    def __init__(self, **fields: Any):
        super().__init__(fields.get("detail", ""))
        self.fields = fields


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


def _paths(tree: Any) -> list[tuple[str, Any]]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=lambda x: x is None)
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in flat]


def _structure_difference(expected: Any, got: Any) -> Optional[tuple[str, str, str]]:
    """None when the trees match (None counts as a leaf); else (path, expected, got)."""
    is_none = lambda x: x is None  # noqa: E731
    e_def = jax.tree_util.tree_structure(expected, is_leaf=is_none)
    g_def = jax.tree_util.tree_structure(got, is_leaf=is_none)
    if e_def == g_def:
        # None counts as a leaf above: a None where an array was (or back) differs too.
        for (path, e), (_, g) in zip(_paths(expected), _paths(got)):
            if (e is None) != (g is None):
                return path, describe_leaf(e), describe_leaf(g)
        return None
    e_paths, g_paths = dict(_paths(expected)), dict(_paths(got))
    for p, leaf in e_paths.items():
        if p not in g_paths:
            return p, describe_leaf(leaf), "no leaf there (missing)"
    for p, leaf in g_paths.items():
        if p not in e_paths:
            return p, "no leaf there", f"an unexpected leaf {describe_leaf(leaf)}"
    return "", f"the tree {describe_tree(expected)}", f"the tree {describe_tree(got)} (other node types)"


# --------------------------------------------------------------------------- comparisons

_RTOL = {"float64": 1e-12, "float32": 2e-6, "bfloat16": 1.6e-2, "float16": 2e-3}


def _is_inexact(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)


def _to_np(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype in (np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)):
        a = a.astype(np.float32)
    return a


def _leaf_mismatch(
    e: Any, g: Any, rtol: Optional[float], atol: Optional[float], exact: bool
) -> Optional[str]:
    """None when the leaves agree; else a description of the worst entry."""
    if e is None or g is None:
        return None if e is None and g is None else f"{describe_leaf(e)} vs {describe_leaf(g)}"
    if np.shape(e) != np.shape(g):
        return f"shape {np.shape(e)} vs {np.shape(g)}"
    a, b = _to_np(e), _to_np(g)
    if a.size == 0:
        return None
    if exact or not (np.issubdtype(a.dtype, np.inexact) and np.issubdtype(b.dtype, np.inexact)):
        same = (a == b) | (np.isnan(a) & np.isnan(b)) if np.issubdtype(a.dtype, np.inexact) else a == b
        if np.all(same):
            return None
        i = np.unravel_index(int(np.argmin(same)), a.shape)
        return f"entry {tuple(int(j) for j in i)}: {a[i]!r} vs {b[i]!r} (compared exactly)"
    dtype_name = np.dtype(getattr(e, "dtype", a.dtype)).name
    r = rtol if rtol is not None else _RTOL.get(dtype_name, 2e-6)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    finite = np.isfinite(a64) & np.isfinite(b64)
    same_special = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
    scale = np.max(np.abs(a64[finite])) if np.any(finite) else 0.0
    tol = r * (np.abs(a64) + scale) + (atol if atol is not None else 1e-30)
    with np.errstate(invalid="ignore", over="ignore"):
        ok = np.where(finite, np.abs(a64 - b64) <= tol, same_special)
    if np.all(ok):
        return None
    i = np.unravel_index(int(np.argmin(ok)), a.shape)
    return (
        f"entry {tuple(int(j) for j in i)}: {a[i]!r} vs {b[i]!r} "
        f"(|difference| {abs(a64[i] - b64[i]):.3g} > tolerance {tol[i]:.3g}; "
        f"rtol {r:g} of the leaf's scale)"
    )


def _compare(
    expected: Any, got: Any, *, prefix: str, rtol=None, atol=None, exact: bool = False
) -> Optional[tuple[str, str]]:
    """None when the trees agree; else (key path, description) of the first difference."""
    diff = _structure_difference(expected, got)
    if diff is not None:
        path, e, g = diff
        return prefix + path, f"the tree differs: expected {e}, got {g}"
    for (path, e), (_, g) in zip(_paths(expected), _paths(got)):
        msg = _leaf_mismatch(e, g, rtol, atol, exact)
        if msg is not None:
            return prefix + path, msg
    return None


def _aval_key(x: Any) -> tuple:
    """What `jax.jit` sees of a leaf: shape, dtype and weak type."""
    if x is None:
        return (None,)
    if isinstance(x, (bool, int, float, complex)):
        dt = jax.dtypes.canonicalize_dtype(np.result_type(type(x)))
        return ((), np.dtype(dt), not isinstance(x, bool))
    dtype = np.dtype(getattr(x, "dtype", np.float32))
    return (tuple(np.shape(x)), dtype, bool(getattr(x, "weak_type", False)))


def _jit_describe(x: Any) -> str:
    if isinstance(x, (bool, int, float, complex)):
        return f"python {type(x).__name__} (jit sees a weak-typed scalar)"
    return describe_leaf(x, weak=True)


# --------------------------------------------------------------------------- examples


def _cast(values: np.ndarray, dtype: Any) -> jax.Array:
    x = np.asarray(values, np.float32).astype(np.dtype(dtype))
    if np.issubdtype(x.dtype, np.floating) or x.dtype == np.dtype(ml_dtypes.bfloat16):
        tiny = float(ml_dtypes.finfo(x.dtype).tiny)
        x = np.where(np.abs(x.astype(np.float32)) < tiny, np.zeros_like(x), x)
    return jnp.asarray(x)


def _random_like(tree: Any, rng: np.random.Generator, scale: float = 1.0, dtype: Any = None) -> Any:
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
        >>> import jax.numpy as jnp
        >>> g = make_grads({'w': jnp.ones(3)}, 3)
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
    """The hypothesis-free example trees of `check_transformation` (see the module docstring)."""
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


# --------------------------------------------------------------------------- running


def _is_array_like(x: Any) -> bool:
    return isinstance(x, (jax.Array, np.ndarray, np.generic, bool, int, float, complex))


def _split_extra(extra: dict) -> tuple[dict, tuple]:
    """(array-valued extra args, hashable tuple of the others, passed statically to jit)."""
    arrays, static = {}, []
    for k, v in extra.items():
        leaves = jax.tree_util.tree_leaves(v)
        if leaves and all(_is_array_like(x) for x in leaves):
            arrays[k] = v
        else:
            static.append((k, v))
    return arrays, tuple(sorted(static, key=lambda kv: kv[0]))


class _Run:
    """One example: the eager baseline trajectory and what the laws share."""

    def __init__(self, tx, example: Example, extra_args_fn, tol, thorough: bool):
        self.tx, self.example, self.thorough = tx, example, thorough
        self.rtol, self.atol = tol
        self.params = example.params
        self.extra_args_fn = extra_args_fn
        self.extras: list = []
        self.states: list = []
        self.updates: list = []
        self.step: Optional[int] = None
        self._jitted: Optional[tuple[Callable, list]] = None

    def baseline(self) -> None:
        """The eager trajectory every law compares against."""
        fn = self.extra_args_fn
        self.extras = [dict(fn(k, self.params, g)) if fn else {} for k, g in enumerate(self.example.grads)]
        self.states.append(self.tx.init(self.params))
        for k, g in enumerate(self.example.grads):
            self.step = k
            u, s = self.update(g, self.states[-1], k)
            self.updates.append(u)
            self.states.append(s)
        self.step = None

    def update(self, g, s, k, tx=None, **more):
        return (tx or self.tx).update(g, s, self.params, **self.extras[k], **more)

    @property
    def jit_steps(self) -> range:
        return range(self.example.steps if self.thorough else min(2, self.example.steps))

    def jitted_update(self) -> tuple[Callable, list]:
        """One jitted update (with a trace counter) shared by the jit laws of this example."""
        if self._jitted is None:
            self._jitted = _jitted(_call_update(self.tx))
        return self._jitted

    def broken(self, law: str, **fields: Any) -> Violation:
        return Violation(law=law, example=self.example, **fields)


def _law_updates_structure(run: _Run):
    for k, (g, u) in enumerate(zip(run.example.grads, run.updates)):
        diff = _structure_difference(g, u)
        if diff:
            raise _Broken(path="updates" + diff[0], step=k, expected=diff[1], got=diff[2])


def _same_leaves(run: _Run, what: Callable[[Any], Any], show: Callable[[Any], str]):
    for k, (g, u) in enumerate(zip(run.example.grads, run.updates)):
        if _structure_difference(g, u):
            continue  # reported by updates_structure
        for (path, a), (_, b) in zip(_paths(g), _paths(u)):
            if a is not None and what(a) != what(b):
                raise _Broken(path="updates" + path, step=k, expected=show(a), got=show(b))


def _law_updates_shape(run: _Run):
    _same_leaves(run, np.shape, describe_leaf)


def _law_updates_dtype(run: _Run):
    _same_leaves(run, lambda x: np.dtype(getattr(x, "dtype", type(x))), describe_leaf)


def _law_finite(run: _Run):
    for k, (g, u, s) in enumerate(zip(run.example.grads, run.updates, run.states[1:])):
        for prefix, tree in (("updates", u), ("state", s)):
            for path, x in _paths(tree):
                if _is_inexact(x) and not np.all(np.isfinite(_to_np(x))):
                    zero = "" if k != 1 else " (the gradient is all zeros at this step)"
                    raise _Broken(
                        path=prefix + path,
                        step=k,
                        expected="finite values",
                        got=f"{describe_leaf(x)} with {int(np.sum(~np.isfinite(_to_np(x))))} non-finite "
                        f"entries{zero}",
                        detail="every gradient entry was finite; the first entry of each leaf (of "
                        "more than one entry) is 0 at every step",
                    )


def _law_state_structure(run: _Run):
    for k, s in enumerate(run.states[1:]):
        diff = _structure_difference(run.states[0], s)
        if diff:
            raise _Broken(
                path="state" + diff[0], step=k, expected=diff[1] + " (as init gave it)", got=diff[2]
            )


def _law_state_dtype(run: _Run):
    s0 = run.states[0]
    for k, s in enumerate(run.states[1:]):
        if _structure_difference(s0, s):
            return  # reported by state_structure
        for (path, a), (_, b) in zip(_paths(s0), _paths(s)):
            ka, kb = _aval_key(a)[:2], _aval_key(b)[:2]
            if ka != kb:
                raise _Broken(
                    path="state" + path,
                    step=k,
                    expected=describe_leaf(a) + " (as init gave it)",
                    got=describe_leaf(b),
                )


def _law_init_pure(run: _Run):
    again = run.tx.init(run.params)
    bad = _compare(run.states[0], again, prefix="state", exact=True)
    if bad:
        raise _Broken(path=bad[0], detail=f"a second init(params) differs: {bad[1]}")


def _law_init_value_independent(run: _Run):
    other = _random_like(run.params, np.random.default_rng(12345), 2.0)
    bad = _compare(run.states[0], run.tx.init(other), prefix="state", exact=True)
    if bad:
        raise _Broken(path=bad[0], detail=f"init(other params of the same shapes) differs: {bad[1]}")


def _law_deterministic(run: _Run):
    for k, g in enumerate(run.example.grads):
        u, s = run.update(g, run.states[k], k)
        for prefix, e, got in (("updates", run.updates[k], u), ("state", run.states[k + 1], s)):
            bad = _compare(e, got, prefix=prefix, exact=True)
            if bad:
                raise _Broken(path=bad[0], step=k, detail=f"a second call of update differs: {bad[1]}")


def _jitted(fn: Callable) -> tuple[Callable, list]:
    """jax.jit of `fn(g, s, extra)` with a trace counter; static extras are static args."""
    traces = [0]

    def counted(g, s, p, arrays, static):
        traces[0] += 1
        return fn(g, s, p, {**arrays, **dict(static)})

    return jax.jit(counted, static_argnums=(4,)), traces


def _call_update(tx):
    return lambda g, s, p, extra: tx.update(g, s, p, **extra)


def _law_no_retrace(run: _Run):
    if run.example.steps < 2:
        return
    f, traces = run.jitted_update()
    s = run.states[0]
    seen = []
    for k in range(min(3, run.example.steps)):
        g = run.example.grads[k]
        arrays, static = _split_extra(run.extras[k])
        before = traces[0]
        _, s_next = f(g, s, run.params, arrays, static)
        if k > 0 and traces[0] > before:
            # Find what jit saw differently from the previous call.
            prev_g, prev_s, prev_e = seen[-1]
            inputs = (("state", prev_s, s), ("updates", prev_g, g), ("extra_args", prev_e, arrays))
            for prefix, old, new in inputs:
                if _structure_difference(old, new):
                    raise _Broken(path=prefix, step=k, detail="the tree changed between steps")
                for (path, a), (_, b) in zip(_paths(old), _paths(new)):
                    if _aval_key(a) != _aval_key(b):
                        raise _Broken(
                            path=prefix + path,
                            step=k,
                            expected=_jit_describe(a) + f" (as at step {k - 1})",
                            got=_jit_describe(b),
                            detail="jax.jit traced update again: the input's type differs from the "
                            "previous step's",
                        )
            raise _Broken(
                step=k,
                detail="jax.jit traced update again with inputs of the same types; does update read "
                "Python-side state, or a static argument that changes?",
            )
        seen.append((g, s, arrays))
        s = s_next


def _law_jit_consistent(run: _Run):
    f, _ = run.jitted_update()
    for k in run.jit_steps:
        arrays, static = _split_extra(run.extras[k])
        u, s = f(run.example.grads[k], run.states[k], run.params, arrays, static)
        for prefix, e, got in (("updates", run.updates[k], u), ("state", run.states[k + 1], s)):
            bad = _compare(e, got, prefix=prefix, rtol=run.rtol, atol=run.atol)
            if bad:
                raise _Broken(path=bad[0], step=k, detail=f"jit vs no jit: {bad[1]}")


def _carry_mismatch(run: _Run, g, s, k, updates_too: bool = True) -> Optional[_Broken]:
    """Compares the types update returns with the ones it was given (what cond / scan need).

    lax.cond needs both the updates and the state to keep their types (the other
    branch returns them unchanged); lax.scan only the state (its carry).
    """
    arrays, static = _split_extra(run.extras[k])
    out_u, out_s = jax.eval_shape(
        lambda g, s, p, a: run.tx.update(g, s, p, **a, **dict(static)), g, s, run.params, arrays
    )
    pairs = (("updates", g, out_u), ("state", s, out_s)) if updates_too else (("state", s, out_s),)
    for prefix, given, out in pairs:
        diff = _structure_difference(given, out)
        if diff:
            return _Broken(path=prefix + diff[0], step=k, expected=diff[1] + " (as given)", got=diff[2])
        for (path, a), (_, b) in zip(_paths(given), _paths(out)):
            if a is not None and _aval_key(a)[:2] != _aval_key(b)[:2]:
                return _Broken(
                    path=prefix + path,
                    step=k,
                    expected=describe_leaf(a) + " (as given)",
                    got=describe_leaf(b),
                )
    return None


def _law_lax_cond(run: _Run):
    def branches(pred, g, s, p, a, static):
        return lax.cond(pred, lambda: run.tx.update(g, s, p, **a, **dict(static)), lambda: (g, s))

    f = jax.jit(branches, static_argnums=(5,))
    for k in run.jit_steps:
        g, s = run.example.grads[k], run.states[k]
        bad = _carry_mismatch(run, g, s, k)
        if bad is not None:
            bad.fields["detail"] = "the update branch returns other types than the branch keeping the state"
            bad.fields["secondary"] = True
            raise bad
        arrays, static = _split_extra(run.extras[k])
        u, s_new = f(True, g, s, run.params, arrays, static)
        for prefix, e, got in (("updates", run.updates[k], u), ("state", run.states[k + 1], s_new)):
            bad_ = _compare(e, got, prefix=prefix, rtol=run.rtol, atol=run.atol)
            if bad_:
                detail = f"lax.cond(True, update, keep) vs update: {bad_[1]}"
                raise _Broken(path=bad_[0], step=k, detail=detail)
        u, s_kept = f(False, g, s, run.params, arrays, static)
        bad_ = _compare(s, s_kept, prefix="state", exact=True)
        if bad_:
            detail = f"lax.cond(False, update, keep) changed the state: {bad_[1]}"
            raise _Broken(path=bad_[0], step=k, detail=detail)


def _law_lax_scan(run: _Run):
    steps = run.example.steps
    bad = _carry_mismatch(run, run.example.grads[0], run.states[0], 0, updates_too=False)
    if bad is not None:
        bad.fields["detail"] = "the scan carry (the state) must keep its tree, shapes and dtypes"
        bad.fields["secondary"] = True
        raise bad
    split = [_split_extra(e) for e in run.extras]
    static = split[0][1]
    if any(st_ != static for _, st_ in split):
        return  # extra arguments that are not arrays change per step: nothing to scan over
    arrays = [a for a, _ in split]
    stack = lambda *xs: jnp.stack([jnp.asarray(x) for x in xs])  # noqa: E731
    gs = jax.tree_util.tree_map(stack, *run.example.grads)
    es = jax.tree_util.tree_map(stack, *arrays) if arrays[0] else {}

    def body(s, x):
        g, e = x
        u, s = run.tx.update(g, s, run.params, **e, **dict(static))
        return s, u

    final, us = jax.jit(lambda s0, xs: lax.scan(body, s0, xs))(run.states[0], (gs, es))
    # Differences may compound over the steps: 4 times the jit tolerance per step.
    scale = 4 * steps

    def loose(tree_e, tree_g, prefix, k):
        for (path, e), (_, got) in zip(_paths(tree_e), _paths(tree_g)):
            if e is None:
                continue
            name = np.dtype(getattr(e, "dtype", np.float32)).name
            r = (run.rtol if run.rtol is not None else _RTOL.get(name, 2e-6)) * scale
            msg = _leaf_mismatch(e, got, r, run.atol, False)
            if msg:
                raise _Broken(path=prefix + path, step=k, detail=f"lax.scan vs the Python loop: {msg}")

    for k in range(steps):
        u_k = jax.tree_util.tree_map(lambda x, k=k: x[k], us)
        if _structure_difference(run.updates[k], u_k):
            raise _Broken(path="updates", step=k, detail="lax.scan's updates have another tree")
        loose(run.updates[k], u_k, "updates", k)
    if _structure_difference(run.states[-1], final):
        raise _Broken(path="state", step=steps - 1, detail="lax.scan's final state has another tree")
    loose(run.states[-1], final, "state", steps - 1)


def _gx():
    import gradxform

    return gradxform


def _chain_law(run: _Run, left: bool):
    gx = _gx()
    chained = gx.chain(gx.identity(), run.tx) if left else gx.chain(run.tx, gx.identity())
    inner = 1 if left else 0
    s = chained.init(run.params)
    bad = _compare(run.states[0], s[inner], prefix="state", rtol=run.rtol, atol=run.atol)
    if bad:
        raise _Broken(path=bad[0], detail=f"init: {bad[1]}")
    for k, g in enumerate(run.example.grads):
        u, s = run.update(g, s, k, tx=chained)
        for prefix, e, got in (("updates", run.updates[k], u), ("state", run.states[k + 1], s[inner])):
            bad = _compare(e, got, prefix=prefix, rtol=run.rtol, atol=run.atol)
            if bad:
                raise _Broken(path=bad[0], step=k, detail=bad[1])


def _law_chain_identity_left(run: _Run):
    _chain_law(run, left=True)


def _law_chain_identity_right(run: _Run):
    _chain_law(run, left=False)


def _first_leaf_replaced(tree: Any, value: Any) -> Any:
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return jax.tree_util.tree_unflatten(treedef, [value] + leaves[1:])


def _law_none_leaves(run: _Run):
    if len(jax.tree_util.tree_leaves(run.params)) < 2:
        return
    g = _first_leaf_replaced(run.example.grads[0], None)
    u, s = run.update(g, run.states[0], 0)
    diff = _structure_difference(g, u)
    if diff:
        raise _Broken(path="updates" + diff[0], step=0, expected=diff[1], got=diff[2])
    diff = _structure_difference(run.states[0], s)
    if diff:
        raise _Broken(path="state" + diff[0], step=0, expected=diff[1], got=diff[2])
    for (path, a), (_, b) in zip(_paths(run.states[0]), _paths(s)):
        if _aval_key(a)[:2] != _aval_key(b)[:2]:
            raise _Broken(path="state" + path, step=0, expected=describe_leaf(a), got=describe_leaf(b))


def _law_masked(run: _Run):
    gx = _gx()
    leaves, treedef = jax.tree_util.tree_flatten(run.params)
    if len(leaves) < 2:
        return
    mask = jax.tree_util.tree_unflatten(treedef, [False] + [True] * (len(leaves) - 1))
    tx = gx.masked(run.tx, mask)
    s = tx.init(run.params)
    s0 = s
    for k, g in enumerate(run.example.grads):
        u, s = run.update(g, s, k, tx=tx)
        diff = _structure_difference(g, u)
        if diff:
            raise _Broken(path="updates" + diff[0], step=k, expected=diff[1], got=diff[2])
        (path, g0), (_, u0) = _paths(g)[0], _paths(u)[0]
        msg = _leaf_mismatch(g0, u0, None, None, exact=True)
        if msg or describe_leaf(g0) != describe_leaf(u0):
            raise _Broken(
                path="updates" + path,
                step=k,
                detail=f"the masked-out leaf changed: {msg or describe_leaf(u0)}",
            )
        for (path, a), (_, b) in zip(_paths(g), _paths(u)):
            if describe_leaf(a) != describe_leaf(b):
                raise _Broken(
                    path="updates" + path, step=k, expected=describe_leaf(a), got=describe_leaf(b)
                )
        diff = _structure_difference(s0, s)
        if diff:
            raise _Broken(path="state" + diff[0], step=k, expected=diff[1], got=diff[2])


def _law_ignores_extra_args(run: _Run):
    unknown = {"gx_unused_extra_arg": jnp.ones((), jnp.float32)}
    u, s = run.update(run.example.grads[0], run.states[0], 0, **unknown)
    for prefix, e, got in (("updates", run.updates[0], u), ("state", run.states[1], s)):
        bad = _compare(e, got, prefix=prefix, exact=True)
        if bad:
            raise _Broken(path=bad[0], step=0, detail=f"with an unknown extra argument: {bad[1]}")


_LAW_FUNCTIONS: dict[str, Callable[[_Run], None]] = {
    name: globals()[f"_law_{name}"] for name in LAWS if name != "runs"
}
_TYPE_LAWS = ("updates_structure", "updates_shape", "updates_dtype", "state_structure", "state_dtype")
# Laws that compile (each example costs an XLA compilation): by default they run on the
# first examples only (the float32 and the bfloat16 tree); ``thorough`` runs them on all.
_COMPILED_EXAMPLES = {"no_retrace": 2, "jit_consistent": 2, "lax_cond": 1, "lax_scan": 1}


def _eager():
    """Eager execution for the baseline and the eager laws: ``jax.disable_jit()``.

    Plain jax would compile each ``lax.cond`` / ``while_loop`` a wrapper calls eagerly,
    every call (their branches are new closures); with jit disabled they run as
    Python control flow, which is what "no jit" means and an order of magnitude faster.
    """
    return jax.disable_jit()


def _summarize_exception(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    where = ""
    if frames:
        f = frames[-1]
        where = f" (in {f.name}, {f.filename.rsplit('/', 1)[-1]}:{f.lineno})"
    text = str(err).strip().splitlines()
    first = " ".join(text[:3]) if text else ""
    if len(first) > 400:
        first = first[:400] + " ..."
    return f"raised {type(err).__name__}{where}: {first}"


def check_transformation(
    tx: Any,
    params: Any = None,
    *,
    steps: int = 3,
    extra_args_fn: Optional[Callable[[int, Any, Any], dict]] = None,
    thorough: bool = False,
    grads: Optional[Sequence[Any]] = None,
    laws: Optional[Sequence[str]] = None,
    skip: Sequence[str] = (),
    include: Sequence[str] = (),
    init_reads_params: bool = False,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    examples: Optional[Sequence[Example]] = None,
    fail_fast: bool = False,
    seed: int = 0,
) -> None:
    """Checks the generic laws on `tx`; returns None, or raises `LawViolation`.

    Args:
        tx: any object with ``init(params)`` and ``update(updates, state, params, **extra)``.
        params: one params tree to run on; None runs the default examples
            (`default_examples`).
        steps: update steps per example (``thorough`` raises it to at least 6).
        extra_args_fn: ``(step, params, grads) -> dict`` of extra keyword
            arguments for each update call (``value=``, ``hessian_diag=``, ...).
            Values that are not arrays are passed to jitted code as static
            arguments, so they must be hashable and the same object every step.
        thorough: more example trees (float16, bf16 params with f32 grads, a bare
            array, a larger tree), more steps with huge and tiny gradients, jit
            and lax.cond on every step, lax.cond / lax.scan on every example.
        grads: the gradient trees, one per step (then ``steps = len(grads)``);
            default `make_grads(params, steps)`.
        laws: the laws to check (default ``DEFAULT_LAWS``); see ``LAWS``.
        skip: laws to leave out.
        include: optional laws to add (``OPTIONAL_LAWS``: ``'none_leaves'``,
            ``'masked'``, ``'ignores_extra_args'``).
        init_reads_params: ``init`` legitimately reads the params' values (a
            lookahead keeps a copy of them): skips ``init_value_independent``.
        rtol, atol: tolerance of the agreement laws (jit, cond, chain; scan allows
            ``4 * steps`` times more): ``|a - b| <= rtol * (|a| + max|a|) + atol``
            per leaf. Default rtol: 2e-6 for float32, 1.6e-2 for bfloat16, 2e-3
            for float16 (about 16 ulps of float32, 2 of bfloat16 and float16).
        examples: explicit `Example`s to run instead of the default ones.
        fail_fast: stop at the first broken law (used while hypothesis shrinks).
        seed: seed of the example trees and gradients.

    Raises:
        LawViolation: an ``AssertionError`` listing every broken law with the
            example, the step and the key path where it broke.
        ValueError: an unknown law name.
    """
    chosen = list(DEFAULT_LAWS if laws is None else laws) + [n for n in include if n not in (laws or ())]
    unknown = [n for n in list(chosen) + list(skip) if n not in LAWS]
    if unknown:
        raise ValueError(f"check_transformation: unknown law(s) {unknown}; the laws are {list(LAWS)}")
    chosen = [n for n in LAWS if n in chosen and n not in skip and n != "runs"]  # canonical order
    if init_reads_params and "init_value_independent" in chosen:
        chosen.remove("init_value_independent")
    if thorough:
        steps = max(steps, 6)
    if examples is None:
        if params is None:
            if grads is not None:
                raise ValueError("check_transformation: grads= needs the params= they belong to")
            examples = default_examples(steps=steps, thorough=thorough, seed=seed)
        else:
            if grads is None:
                grads = make_grads(params, steps, seed=seed, thorough=thorough)
            examples = [Example("given params", params, tuple(grads))]
    violations: dict[str, Violation] = {}
    for i, example in enumerate(examples):
        run = _Run(tx, example, extra_args_fn, (rtol, atol), thorough)
        try:
            with _eager():
                run.baseline()
        except Exception as err:  # noqa: BLE001 - reported as the law 'runs'
            what = "init" if not run.states else "update"
            violations.setdefault(
                "runs",
                run.broken("runs", step=run.step, detail=f"{what} {_summarize_exception(err)}"),
            )
            if fail_fast:
                break
            continue
        for name in chosen:
            if name in violations or (not thorough and i >= _COMPILED_EXAMPLES.get(name, len(examples))):
                continue
            try:
                with contextlib.nullcontext() if name in _COMPILED_EXAMPLES else _eager():
                    _LAW_FUNCTIONS[name](run)
            except _Broken as broken:
                fields = dict(broken.fields)
                # A type mismatch under lax.cond / lax.scan that an eager law already
                # reported for this example adds nothing: leave it out of the report.
                if fields.pop("secondary", False) and any(n in violations for n in _TYPE_LAWS):
                    continue
                violations[name] = run.broken(name, **fields)
            except Exception as err:  # noqa: BLE001 - a law that cannot even run is broken
                violations[name] = run.broken(name, detail=_summarize_exception(err))
            if fail_fast and violations:
                break
        if fail_fast and violations:
            break
    if violations:
        order = ["runs"] + chosen
        ordered = sorted(violations.values(), key=lambda v: order.index(v.law))
        raise LawViolation(ordered, ["runs"] * ("runs" in violations) + chosen)
    return None


def check_transformation_property(
    tx_factory: Callable[..., Any],
    *,
    hyperparameters: Any = None,
    params: Any = None,
    steps: int = 3,
    max_examples: Optional[int] = None,
    settings: Any = None,
    **check_kwargs: Any,
) -> None:
    """Hypothesis-driven `check_transformation`: draws examples, shrinks a failure.

    Draws the params (default ``strategies.pytrees(max_leaves=4)``), a gradient
    sequence for them (`strategies.gradient_sequences`, with zeros, huge and tiny
    entries) and, if `hyperparameters` is given, keyword arguments for
    `tx_factory`; builds ``tx_factory(**kwargs)`` and checks the laws. A failure
    is shrunk to a minimal example; the raised `LawViolation` reports it, and
    hypothesis adds the drawn values as notes ("Draw 1 (params): ...").

    Args:
        tx_factory: ``(**hyperparameters) -> transformation``, or a transformation.
        hyperparameters: a name in ``strategies.HYPERPARAMETERS`` (``'adam'``), a
            dict of argument -> strategy, or a strategy of kwargs dicts.
        params: a strategy of params trees.
        steps: update steps per example.
        max_examples: overrides the active hypothesis profile's.
        settings: a ``hypothesis.settings`` to use as is.
        **check_kwargs: passed to `check_transformation` (``laws``, ``skip``,
            ``extra_args_fn``, ...); ``fail_fast`` defaults to True so shrinking
            is quick.

    Examples:
        >>> import gradxform as gx
        >>> check_transformation_property(
        ...     lambda decay, nesterov: gx.trace(decay, nesterov),
        ...     hyperparameters='trace', max_examples=2, laws=['updates_dtype', 'state_dtype'])
    """
    import hypothesis
    from hypothesis import HealthCheck
    from hypothesis import strategies as st

    from gradxform.testing import strategies as gst

    if hasattr(tx_factory, "init") and hasattr(tx_factory, "update"):
        tx_object = tx_factory
        tx_factory = lambda: tx_object  # noqa: E731
    if hyperparameters is None:
        hp = st.just({})
    elif isinstance(hyperparameters, str):
        hp = gst.hyperparameters(hyperparameters)
    elif isinstance(hyperparameters, dict):
        hp = st.fixed_dictionaries(hyperparameters)
    else:
        hp = hyperparameters
    params_strategy = params if params is not None else gst.pytrees(max_leaves=4)
    check_kwargs.setdefault("fail_fast", True)
    if "examples" in check_kwargs or "grads" in check_kwargs:
        raise ValueError(
            "check_transformation_property draws the examples: pass neither examples= nor grads="
        )

    def run(data):
        kwargs = data.draw(hp, label="hyperparameters")
        p = data.draw(params_strategy, label="params")
        g = data.draw(gst.gradient_sequences(p, steps), label="grads")
        tx = tx_factory(**kwargs)
        try:
            example = Example("drawn by hypothesis", p, tuple(g))
            check_transformation(tx, examples=[example], **check_kwargs)
        except LawViolation as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
            raise LawViolation(
                err.violations,
                err.laws,
                header=f"check_transformation_property: law(s) {', '.join(err.laws)} broken"
                + (f" with hyperparameters {shown}" if kwargs else ""),
            ) from None

    if settings is None:
        extra = {"max_examples": max_examples} if max_examples is not None else {}
        # No "explain" phase: it reruns many examples (each compiles) to list covered lines.
        phases = [p for p in hypothesis.settings.default.phases if p != hypothesis.Phase.explain]
        settings = hypothesis.settings(
            deadline=None,
            phases=phases,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
            **extra,
        )
    test = settings(hypothesis.given(data=st.data())(run))
    test()
