"""Registry entries (in progress, issue 19)."""

from __future__ import annotations

ENTRIES: list = []
