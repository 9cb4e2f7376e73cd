"""Journals spooled while the state store was unreachable (engine/execution/journal.py writes
them, one JSON object a line: header, entries, report) and their upload to the store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .sqlstore import SqlStore


def upload(store: SqlStore, path: Path) -> dict[str, Any]:
    """Upload one spool file into ``store`` (idempotent: entries already there are skipped);
    remove the file once uploaded. A summary: {run_id, entries, report: bool}."""
    raise NotImplementedError("spool upload: being written")
