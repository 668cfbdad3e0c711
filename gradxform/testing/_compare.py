"""The one comparator of `gradxform.testing`, and its one tolerance table.

`compare(expected, got, purpose=...)` walks two trees and returns the first
`Mismatch` (None when they agree): a tree difference, a shape difference, or
entries outside the tolerance. The laws of `check_transformation` (jit, lax.cond,
lax.scan and chain agreement, and the exact ones) and `check_against_reference`
both call it; each formats the `Mismatch` its own way.

An entry agrees when both values are finite and

.. math:: |e - g| \\le atol + rtol\\,(|e| + s)

with :math:`s` the largest finite :math:`|e|` of the leaf when the tolerance is
``leaf_scale`` (else 0), or when both are the same non-finite value (inf and inf,
NaN and NaN). Leaves that are not floating point are compared exactly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

import ml_dtypes
import numpy as np

from gradxform.testing._examples import describe_leaf, paths, structure_difference


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """``|e - g| <= atol + rtol * (|e| + s)``, ``s`` the leaf's largest ``|e|`` if ``leaf_scale``."""

    rtol: float
    atol: float
    leaf_scale: bool

    @property
    def exact(self) -> bool:
        return self.rtol == 0 and self.atol == 0

    def describe(self) -> str:
        if self.exact:
            return "compared exactly"
        if self.leaf_scale:
            return f"rtol {self.rtol:g} of the leaf's scale"
        return f"rtol={self.rtol:g}, atol={self.atol:g}"


EXACT = Tolerance(0.0, 0.0, leaf_scale=False)

# (purpose, dtype name) -> Tolerance; a dtype not listed takes float32's row.
#
# "agreement": the same JAX code run two ways (jax.jit vs eager, inside lax.cond or
#   lax.scan, inside a chain): about 16 ulps of float32, 2 of bfloat16 and float16,
#   relative to the leaf's scale. The lax.scan law multiplies rtol by SCAN_FACTOR per step.
# "reference": a JAX transformation against its float64 NumPy reference, entry by entry.
#   float32: a faithful float32 Adam computes 1 - 0.999**t from the float32 value of b2
#   (relative error 1.3e-5 at t = 1), about 7e-6 in the update, so 1e-5 would be too
#   tight. float64 as float32: jax computes in float32 unless jax_enable_x64 is set.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("agreement", "float64"): Tolerance(1e-12, 1e-30, leaf_scale=True),
    ("agreement", "float32"): Tolerance(2e-6, 1e-30, leaf_scale=True),
    ("agreement", "bfloat16"): Tolerance(1.6e-2, 1e-30, leaf_scale=True),
    ("agreement", "float16"): Tolerance(2e-3, 1e-30, leaf_scale=True),
    ("reference", "float64"): Tolerance(2e-5, 1e-6, leaf_scale=False),
    ("reference", "float32"): Tolerance(2e-5, 1e-6, leaf_scale=False),
    ("reference", "bfloat16"): Tolerance(2e-2, 1e-2, leaf_scale=False),
    ("reference", "float16"): Tolerance(2e-2, 1e-2, leaf_scale=False),
}
# Differences may compound over the steps of lax.scan: its rtol is SCAN_FACTOR * steps
# times the agreement one.
SCAN_FACTOR = 4


def tolerance(
    purpose: str, dtype: Any, *, rtol: Optional[float] = None, atol: Optional[float] = None, factor: float = 1.0
) -> Tolerance:
    """The table's tolerance for ``purpose`` and ``dtype``; ``rtol`` / ``atol`` override it.

    ``factor`` multiplies the rtol (the table's or the given one). ``purpose='exact'``
    is `EXACT` whatever the dtype.
    """
    if purpose == "exact":
        return EXACT
    name = np.dtype(dtype).name
    row = TOLERANCES.get((purpose, name)) or TOLERANCES[(purpose, "float32")]
    return Tolerance(
        (row.rtol if rtol is None else rtol) * factor,
        row.atol if atol is None else atol,
        row.leaf_scale,
    )


def to_numpy(x: Any) -> np.ndarray:
    """A NumPy array; bfloat16 and float16 become float32 (NumPy's reductions need it)."""
    a = np.asarray(x)
    if a.dtype in (np.dtype(ml_dtypes.bfloat16), np.dtype(np.float16)):
        a = a.astype(np.float32)
    return a


def _nanmax(x: np.ndarray) -> float:
    """The largest entry that is not NaN (NaN when all are)."""
    x = x[~np.isnan(x)]
    return float(np.max(x)) if x.size else float("nan")


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """Where and how two trees differ.

    ``kind`` is ``'tree'`` (``expected`` / ``got`` describe the two sides),
    ``'shape'`` or ``'values'`` (``expected`` / ``got`` are the leaves as NumPy
    arrays, ``bad`` the indices of the entries outside ``tol``, ``bound`` the
    per-entry bound).
    """

    path: str
    kind: str
    expected: Any
    got: Any
    tol: Tolerance = EXACT
    bad: tuple = ()
    bound: Any = None

    def summary(self) -> str:
        """One line: the tree or shape difference, or the first entry outside the tolerance."""
        if self.kind == "tree":
            return f"the tree differs: expected {self.expected}, got {self.got}"
        if self.kind == "shape":
            return f"shape {np.shape(self.expected)} vs {np.shape(self.got)}"
        i = self.bad[0]
        e, g = self.expected[i], self.got[i]
        where = f"entry {i}: {e!r} vs {g!r}"
        if self.tol.exact or self.bound is None:
            return f"{where} (compared exactly)"
        diff = abs(np.float64(e) - np.float64(g))
        return f"{where} (|difference| {diff:.3g} > tolerance {self.bound[i]:.3g}; {self.tol.describe()})"

    def details(self, shown: int = 4) -> list[str]:
        """Lines under a ``values`` mismatch: the largest errors and the first ``shown`` entries."""
        e = self.expected.astype(np.float64)
        g = self.got.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            err = np.abs(g - e)
            rel = np.where(e != 0, err / np.abs(e), np.where(err > 0, np.inf, 0.0))
        lines = [
            f"  max abs error {_nanmax(err):.3g}, max rel error {_nanmax(rel):.3g} ({self.tol.describe()})",
            "  index: expected (reference) vs got (transformation)",
        ]
        for i in self.bad[:shown]:
            lines.append(f"    {i}: {e[i]:.9g} vs {g[i]:.9g}")
        return lines


def compare_leaf(expected: Any, got: Any, tol: Tolerance, path: str = "") -> Optional[Mismatch]:
    """None when the two leaves agree within ``tol``; else the `Mismatch`."""
    if expected is None or got is None:
        if expected is None and got is None:
            return None
        return Mismatch(path, "tree", describe_leaf(expected), describe_leaf(got))
    if np.shape(expected) != np.shape(got):
        return Mismatch(path, "shape", expected, got)
    a, b = to_numpy(expected), to_numpy(got)
    if a.size == 0:
        return None
    inexact = np.issubdtype(a.dtype, np.inexact) and np.issubdtype(b.dtype, np.inexact)
    bound = None
    if tol.exact or not inexact:
        same = (a == b) | (np.isnan(a) & np.isnan(b)) if np.issubdtype(a.dtype, np.inexact) else a == b
        ok = np.asarray(same)
    else:
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        finite = np.isfinite(a64) & np.isfinite(b64)
        same_special = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        scale = np.max(np.abs(a64[finite])) if tol.leaf_scale and np.any(finite) else 0.0
        bound = tol.rtol * (np.abs(a64) + scale) + tol.atol
        with np.errstate(invalid="ignore", over="ignore"):
            ok = np.where(finite, np.abs(a64 - b64) <= bound, same_special)
    if np.all(ok):
        return None
    bad = tuple(tuple(int(j) for j in i) for i in np.argwhere(~ok))
    return Mismatch(path, "values", a, b, tol if inexact else EXACT, bad, bound)


def compare(
    expected: Any,
    got: Any,
    *,
    purpose: str = "agreement",
    dtype: Any = None,
    rtol: Optional[float] = None,
    atol: Optional[float] = None,
    factor: float = 1.0,
    prefix: str = "",
) -> Optional[Mismatch]:
    """None when the trees agree; else the `Mismatch` of the first leaf (in flattening order) that differs.

    ``purpose`` picks the row of `TOLERANCES` (``'agreement'``, ``'reference'``) or
    ``'exact'``; the dtype is ``dtype`` when given, else each expected leaf's own.
    ``rtol``, ``atol`` and ``factor`` as in `tolerance`. ``prefix`` starts each key
    path (``'updates'``, ``'state'``).

    Examples:
        >>> import numpy as np
        >>> from gradxform.testing._compare import compare
        >>> compare({'w': np.float32([1, 2])}, {'w': np.float32([1, 2.000001])}) is None
        True
        >>> compare({'w': np.float32([1, 2])}, {'w': np.float32([1, 2.1])}, prefix='updates').path
        "updates['w']"
    """
    diff = structure_difference(expected, got)
    if diff is not None:
        path, e, g = diff
        return Mismatch(prefix + path, "tree", e, g)
    for (path, e), (_, g) in zip(paths(expected), paths(got)):
        if e is None:
            continue
        if dtype is not None:
            leaf_dtype = dtype
        else:
            leaf_dtype = e.dtype if hasattr(e, "dtype") else np.asarray(e).dtype
        tol = tolerance(purpose, leaf_dtype, rtol=rtol, atol=atol, factor=factor)
        bad = compare_leaf(e, g, tol, prefix + path)
        if bad is not None:
            return bad
    return None


def max_abs_error(expected: Any, got: Any) -> float:
    """The largest ``|e - g|`` over all (non-NaN) entries of two trees of the same structure."""
    worst = 0.0
    for (_, e), (_, g) in zip(paths(expected), paths(got)):
        if e is not None and np.size(e):
            diff = np.abs(to_numpy(g).astype(np.float64) - to_numpy(e).astype(np.float64))
            worst = max(worst, float(np.nanmax(diff, initial=0.0)))
    return worst
