"""The documentation site covers every public name, and the migration table every optax name.

The site is generated (docs/_generate.py); these checks need neither Sphinx nor a build.
"""

from __future__ import annotations

import importlib
import os
import sys
import types

import pytest

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
sys.path.insert(0, DOCS)
import _generate  # noqa: E402

sys.path.remove(DOCS)


def _public_namespaces(module, seen):
    """gradxform and every public sub-module reachable from it by its public names."""
    if module.__name__ in seen:
        return
    seen.add(module.__name__)
    for name in dir(module):
        value = getattr(module, name)
        if (not name.startswith("_") and isinstance(value, types.ModuleType)
                and value.__name__.startswith(module.__name__ + ".")):
            _public_namespaces(value, seen)


def test_every_public_namespace_has_a_page():
    seen: set = set()
    _public_namespaces(importlib.import_module("gradxform"), seen)
    areas = {a[0] for a in _generate.AREAS}
    # The registry is test data, not an API page; gx.experimental only holds sub-modules.
    assert seen - areas <= {"gradxform.testing.registry", "gradxform.experimental"}, sorted(seen - areas)


def test_every_public_name_has_an_entry():
    home, pages = _generate.homes()
    documented = {(ns, name) for entries in pages.values() for ns, name in entries}
    for namespace, *_ in _generate.AREAS:
        module = importlib.import_module(namespace)
        for name in _generate.public_names(module):
            obj = getattr(module, name)
            assert _generate._documentable(obj), f"{namespace}.{name} would get no entry"
            assert home[id(obj)] in documented, f"{namespace}.{name}"


def test_each_object_is_documented_once():
    _, pages = _generate.homes()
    entries = [(ns, name) for page in pages.values() for ns, name in page]
    objects = [id(getattr(importlib.import_module(ns), name)) for ns, name in entries]
    assert len(objects) == len(set(objects))


def test_migration_table_has_a_row_for_every_public_optax_name():
    pytest.importorskip("optax")
    table = _generate.migration_table(os.path.join(os.path.dirname(DOCS), "README.md"))
    rows = [line for line in table.splitlines() if line.startswith("| `optax")]
    expected = 0
    for optax_ns, _ in _generate.OPTAX_NAMESPACES:
        module = _generate._import(optax_ns)
        expected += len([n for n in dir(module) if not n.startswith("_")
                         and n not in _generate.NOT_PROMISED.get(optax_ns, set())
                         and not _generate._foreign(getattr(module, n))])
    assert len(rows) == expected
    # A README "Differences from optax" row reaches the names it lists.
    assert any("`optax.rprop`" in r and "iRprop-" in r for r in rows)
    assert any("`optax.tree.set`" in r and "every match" in r for r in rows)


def test_readme_differences_parse():
    rows = _generate.readme_differences(os.path.join(os.path.dirname(DOCS), "README.md"))
    assert len(rows) > 20
    assert all(len(r) == 3 for r in rows)
