"""Every public name of optax's namespaces that API.md promises exists in gradxform.

optax's names are read at run time (the test extra pins optax 0.2.8), so a name a newer
optax adds is noticed when the pin moves. `NOT_YET` lists what is still missing, with the
issue that adds it; it must stay exact: a listed name that now exists fails the test too.
"""

from __future__ import annotations

import importlib
import types

import pytest

optax = pytest.importorskip("optax")

NAMESPACES = {
    "optax": "gradxform",
    "optax.transforms": "gradxform.transforms",
    "optax.schedules": "gradxform.schedules",
    "optax.losses": "gradxform.losses",
    "optax.tree": "gradxform.tree",
    "optax.tree_utils": "gradxform.tree_utils",
    "optax.projections": "gradxform.projections",
    "optax.contrib": "gradxform.contrib",
    "optax.microbatching": "gradxform.microbatching",
    "optax.experimental": "gradxform.experimental",
}

# API.md, "The rest of optax's surface": not promised.
NOT_PROMISED = {"optax": {"second_order", "perturbations", "assignment"}}

# Still missing, by namespace, with the issue that adds them ("*": the whole namespace).
# Empty: every public name of optax 0.2.8's namespaces above is present.
NOT_YET: dict[str, set[str]] = {}


def public_names(module: types.ModuleType) -> set[str]:
    """Public names, without modules optax merely imports (``optax.tree_utils.functools``)."""
    def foreign_module(value):
        return isinstance(value, types.ModuleType) and not value.__name__.startswith("optax")

    return {n for n in dir(module) if not n.startswith("_") and not foreign_module(getattr(module, n))}


def missing_names(optax_name: str, gx_name: str) -> set[str]:
    theirs = importlib.import_module(optax_name)
    try:
        ours = importlib.import_module(gx_name)
    except ImportError:
        return {"*"}
    return {
        n for n in public_names(theirs) - NOT_PROMISED.get(optax_name, set())
        if not hasattr(ours, n)
    }


@pytest.mark.parametrize("optax_name", sorted(NAMESPACES))
def test_every_public_optax_name_is_present(optax_name):
    missing = missing_names(optax_name, NAMESPACES[optax_name])
    expected = NOT_YET.get(optax_name, set())
    assert missing <= expected, f"{NAMESPACES[optax_name]} lacks {sorted(missing - expected)}"
    assert missing == expected, f"now present, remove from NOT_YET: {sorted(expected - missing)}"


@pytest.mark.parametrize("optax_name", sorted(n for n in NAMESPACES if n not in NOT_YET))
def test_submodules_are_reachable_like_optax(optax_name):
    """``import gradxform.losses`` and ``from gradxform import losses`` work as optax's do."""
    gx_module = importlib.import_module(NAMESPACES[optax_name])
    parent, _, child = NAMESPACES[optax_name].rpartition(".")
    if parent:
        assert getattr(importlib.import_module(parent), child) is gx_module
