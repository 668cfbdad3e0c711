"""Writes the API reference pages and the optax migration table from the code.

Run by ``docs/conf.py`` at every build (and by ``tests/test_docs.py``, which checks that
every public name has an entry and every public optax name a row). Each public object
is documented once, on the page of the first namespace below that exports it (its
"home"); every other name it has (``gx.adam`` beside ``gx.transforms.adam``,
``gx.tree_utils.tree_get`` beside ``gx.tree.get``) is listed there as an alias.
"""

from __future__ import annotations

import enum
import importlib
import inspect
import os
import re
import types
from typing import Any, NamedTuple

# (namespace, page file, title, one-line description), in the order a name finds its home.
AREAS = [
    ("gradxform.transforms", "transforms", "Optimizers and transformations",
     "Every optimizer alias and ``scale_by_*`` rule, clipping, constraints and weight decay."),
    ("gradxform.wrappers", "wrappers", "Wrappers",
     "Transformations of transformations: gradient accumulation, finiteness guards, "
     "hyperparameter injection, flattening, partitions, lookahead, averaging."),
    ("gradxform.schedules", "schedules", "Schedules", "Learning-rate and hyperparameter schedules."),
    ("gradxform.contrib", "contrib", "Contributed optimizers (``gx.contrib``)",
     "The optimizers optax keeps in ``optax.contrib``, each checked against its paper."),
    ("gradxform.losses", "losses", "Losses", "Loss functions, as ``optax.losses``."),
    ("gradxform.tree", "tree", "Tree utilities (``gx.tree``)", "Arithmetic and queries over pytrees."),
    ("gradxform.tree_utils", "tree_utils", "Tree utilities (``gx.tree_utils``)",
     "optax's older spellings of ``gx.tree`` (``tree_get`` for ``get``)."),
    ("gradxform.projections", "projections", "Projections", "Euclidean projections onto convex sets."),
    ("gradxform.microbatching", "microbatching", "Microbatching",
     "Split a batch into microbatches and accumulate."),
    ("gradxform.experimental.aggregating", "aggregating", "Aggregating (experimental)",
     "Per-example update aggregation, as ``optax.experimental.aggregating``."),
    ("gradxform.second_order", "second_order", "Second-order methods",
     "Hessian-vector products, Newton's method, AdaHessian, L-BFGS and its line search."),
    ("gradxform.nn", "nn", "Model-side functions (``gx.nn``)",
     "Initializers, batch norm, dropout, penalties, label smoothing, FGSM."),
    ("gradxform.training", "training", "Training utilities", "Early stopping as a pure state machine."),
    ("gradxform.testing", "testing", "Testing toolkit (``gx.testing``)",
     "Check any transformation: laws, references, accuracy, hypothesis strategies."),
    ("gradxform.testing.strategies", "strategies", "Hypothesis strategies",
     "``gx.testing.strategies``: trees, gradients and hyperparameters for property tests."),
    ("gradxform.testing.laws", "laws", "Laws", "``gx.testing.laws``: the laws every transformation obeys."),
    ("gradxform.testing.reference", "reference", "NumPy references",
     "``gx.testing.reference``: each rule in float64 NumPy, from its paper."),
    ("gradxform.sharding", "sharding", "Sharded optimizer state (``gx.sharding``)",
     "ZeRO-1: optimizer state split over a device mesh, in one process or many; its shardings for jit and checkpoints."),
    ("gradxform", "core", "Core", "Transformations, chains, states, updates and typing names."),
]

# optax namespace -> gradxform namespace, for the migration table.
OPTAX_NAMESPACES = [
    ("optax", "gradxform"),
    ("optax.transforms", "gradxform.transforms"),
    ("optax.schedules", "gradxform.schedules"),
    ("optax.losses", "gradxform.losses"),
    ("optax.tree", "gradxform.tree"),
    ("optax.tree_utils", "gradxform.tree_utils"),
    ("optax.projections", "gradxform.projections"),
    ("optax.contrib", "gradxform.contrib"),
    ("optax.microbatching", "gradxform.microbatching"),
    ("optax.experimental.aggregating", "gradxform.experimental.aggregating"),
]
# API.md, "The rest of optax's surface": not promised.
NOT_PROMISED = {"optax": {"second_order", "perturbations", "assignment"}}


class Home(NamedTuple):
    namespace: str
    name: str


def public_names(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    if names is None:
        names = [n for n in dir(module) if not n.startswith("_")]
    return [n for n in names if not isinstance(getattr(module, n, None), types.ModuleType)]


def _import(name: str):
    """The module `name`, or None; also a sub-module only reachable as an attribute
    (``optax.experimental.aggregating`` is ``optax.experimental._aggregating``)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        parent, _, child = name.rpartition(".")
        module = _import(parent) if parent else None
        found = getattr(module, child, None)
        return found if isinstance(found, types.ModuleType) else None


def homes() -> tuple[dict[int, Home], dict[str, list[tuple[str, str]]]]:
    """The home of each public object (by identity) and, per page, the names to document."""
    home: dict[int, Home] = {}
    # First choice: where the object is exported under its own ``__name__`` (optax's
    # state aliases such as ``ClipState = EmptyState`` then point at ``EmptyState``).
    for own_name_only in (True, False):
        for namespace, _, *_ in AREAS:
            module = _import(namespace)
            for name in public_names(module) if module is not None else ():
                obj = getattr(module, name)
                if not _documentable(obj) or id(obj) in home:
                    continue
                if own_name_only and getattr(obj, "__name__", None) != name:
                    continue
                home[id(obj)] = Home(namespace, name)
    pages: dict[str, list[tuple[str, str]]] = {}
    for namespace, page, *_ in AREAS:
        module = _import(namespace)
        if module is None:
            continue
        entries = pages.setdefault(page, [])
        for name in public_names(module):
            obj = getattr(module, name)
            if _documentable(obj) and home[id(obj)] == (namespace, name):
                entries.append((namespace, name))
    return home, pages


def _documentable(obj: Any) -> bool:
    """Everything public but a module (constants and tables get an ``autodata`` entry)."""
    return not isinstance(obj, types.ModuleType)


def _directive(namespace: str, name: str, obj: Any) -> str:
    target = f"{namespace}.{name}"
    if isinstance(obj, type) and issubclass(obj, enum.Enum):
        return f".. autoclass:: {target}\n   :members:\n   :undoc-members:\n"
    if isinstance(obj, type) and issubclass(obj, tuple) and hasattr(obj, "_fields"):
        fields = ", ".join(f"``{f}``" for f in obj._fields)
        return f".. autoclass:: {target}\n   :no-members:\n\n   Fields: {fields or '(none)'}.\n"
    if isinstance(obj, type):
        return f".. autoclass:: {target}\n   :members:\n"
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        return f".. autofunction:: {target}\n"
    if callable(obj) or type(obj).__module__ in ("typing", "types"):
        return f".. autodata:: {target}\n   :no-value:\n"
    # A table or constant: its type's docstring (``dict``'s) says nothing about it.
    return (f".. py:data:: {target}\n   :type: {type(obj).__name__}\n\n"
            f"   A {type(obj).__name__} of ``{namespace}``; the module's documentation describes it.\n")


def _aliases(home: dict[int, Home]) -> dict[int, list[str]]:
    """Every other public spelling of each documented object."""
    out: dict[int, list[str]] = {}
    namespaces = [a[0] for a in AREAS]
    for namespace in namespaces:
        module = _import(namespace)
        if module is None:
            continue
        for name in public_names(module):
            obj = getattr(module, name)
            h = home.get(id(obj))
            if h and (h.namespace, h.name) != (namespace, name):
                out.setdefault(id(obj), []).append(f"{namespace}.{name}")
    return out


def api_pages() -> dict[str, str]:
    """``page -> reStructuredText`` for every area."""
    home, pages = homes()
    aliases = _aliases(home)
    out = {}
    for namespace, page, title, description in AREAS:
        if page not in pages:
            continue
        lines = [title, "=" * len(title), "", description, ""]
        if not pages[page]:
            lines += ["Everything here is documented on the page of the namespace it comes from.", ""]
        for ns, name in pages[page]:
            obj = getattr(_import(ns), name)
            lines.append(_directive(ns, name, obj))
            also = aliases.get(id(obj))
            if also:
                lines.append("   Also: " + ", ".join(f"``{a}``" for a in sorted(also)) + ".\n")
        out[page] = "\n".join(lines)
    out["index"] = _api_index(pages)
    return out


def _api_index(pages: dict[str, list]) -> str:
    lines = ["API reference", "=============", "",
             "One page per area; each public object is documented once, on the page of the",
             "namespace it comes from, and lists its other names (``gx.adam`` is",
             "``gx.transforms.adam``).", "", ".. toctree::", "   :maxdepth: 1", ""]
    lines += [f"   {page}" for _, page, *_ in AREAS if page in pages]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- migration


def readme_differences(readme_path: str) -> list[tuple[list[str], str, str]]:
    """The rows of README's "Differences from optax" table: (names, optax's, ours)."""
    with open(readme_path, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Differences from optax", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("name", "---") or set(cells[0]) <= {"-"}:
            continue
        quoted = re.findall(r"`([^`]+)`", cells[0])
        # `name(...)` rows name a function; a bare word (``projections``) a whole namespace;
        # "every factory" applies to every name.
        names = [re.match(r"[\w.]+", n).group(0) for n in quoted] or (
            [] if cells[0] == "every factory" else [cells[0]])
        rows.append((names, cells[1], cells[2]))
    return rows


def migration_table(readme_path: str) -> str:
    """Markdown: every public optax name, its gradxform name and README's differences."""
    optax = _import("optax")
    if optax is None:
        raise RuntimeError("the migration table reads optax's names: pip install -e '.[docs]'")
    differences = readme_differences(readme_path)
    general = [r for r in differences if not r[0]]
    lines = [f"Generated from optax {optax.__version__} and this build of gradxform.", ""]
    for names, theirs, ours in general:
        lines.append(f"For every factory: optax {theirs}; gradxform: {ours}.")
    lines.append("")
    total = present = 0
    for optax_ns, gx_ns in OPTAX_NAMESPACES:
        theirs_module = _import(optax_ns)
        ours_module = _import(gx_ns)
        if theirs_module is None:
            continue
        names = sorted(
            n for n in dir(theirs_module)
            if not n.startswith("_") and n not in NOT_PROMISED.get(optax_ns, set())
            and not _foreign(getattr(theirs_module, n))
        )
        lines += [f"## `{optax_ns}`", "", "| optax | gradxform | difference |", "|---|---|---|"]
        for n in names:
            total += 1
            ours = ours_module is not None and hasattr(ours_module, n)
            present += ours
            gx_name = f"`{gx_ns.replace('gradxform', 'gx', 1)}.{n}`" if ours else "missing"
            short = optax_ns.split(".")[-1]
            notes = [f"optax: {t}; gradxform: {o}" for row_names, t, o in differences
                     if n in row_names or f"{short}.{n}" in row_names
                     or any(optax_ns.endswith("." + r) for r in row_names)]
            lines.append(f"| `{optax_ns}.{n}` | {gx_name} | {' / '.join(notes) or 'none'} |")
        lines.append("")
    lines.insert(1, f"\n{present} of {total} public optax names are present.\n")
    return "\n".join(lines)


def _foreign(value: Any) -> bool:
    """A module or typing helper optax merely imports (``optax.tree_utils.functools``)."""
    if isinstance(value, types.ModuleType):
        return not value.__name__.startswith("optax")
    module = getattr(value, "__module__", "") or ""
    return module in ("typing", "collections.abc", "abc", "builtins", "math", "functools")


def write_all(srcdir: str) -> None:
    api_dir = os.path.join(srcdir, "api")
    os.makedirs(api_dir, exist_ok=True)
    for page, text in api_pages().items():
        _write(os.path.join(api_dir, f"{page}.rst"), text)
    readme = os.path.join(os.path.dirname(os.path.abspath(srcdir)), "README.md")
    _write(os.path.join(srcdir, "migration_table.md"), migration_table(readme))


def _write(path: str, text: str) -> None:
    """Write only when changed (Sphinx rebuilds what changed)."""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
