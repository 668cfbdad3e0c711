"""Sphinx configuration for gradxform's documentation site.

Build (BUILD.md, "Documentation"): ``pip install -e ".[docs]"`` then
``python -m sphinx -W --keep-going -b html docs docs/_build/html``. The API reference
pages (``docs/api/``) and the migration table (``docs/migration_table.md``) are written
by ``docs/_generate.py`` each time the site is built, from the code and from optax's
own namespaces, so they cannot go stale.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import _generate  # noqa: E402

project = "gradxform"
author = "the gradxform developers"
copyright = "2026, the gradxform developers"  # noqa: A001

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "migration_table.md"]  # included by migration.md
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = "gradxform"
html_static_path: list = []

suppress_warnings = ["myst.header"]


def setup(app):
    app.connect("builder-inited", lambda app: _generate.write_all(app.srcdir))
