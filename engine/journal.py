"""Run state: locks and run history, in SQLite (the default) at ``--state``/``RUNPROC_STATE``.

Default location: ``$XDG_STATE_HOME/runproc/state.db`` (``~/.local/state/runproc``).
A lock records the holder's pid and host; a lock whose process is gone is reclaimed.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ProcedureError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, run_id TEXT, procedure TEXT, pid INTEGER,
                                  host TEXT, user TEXT, acquired_at TEXT);
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, procedure TEXT, status TEXT, exit_code INTEGER,
                                 dry_run INTEGER, started_at TEXT, duration REAL, report TEXT);
"""


def default_state_url() -> str:
    env = os.environ.get("RUNPROC_STATE")
    if env:
        return env
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(base) / 'runproc' / 'state.db'}"


def state_path(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])  # sqlite:////abs/path keeps its leading slash
    if url.startswith("sqlite://"):
        raise ProcedureError(f"state URL {url!r}: write sqlite:///relative/path or sqlite:////absolute/path")
    if "://" not in url:
        return Path(url)
    raise ProcedureError(f"state URL {url!r}: only sqlite:/// is supported")


@dataclass
class LockHolder:
    name: str
    run_id: str
    procedure: str
    pid: int
    host: str
    user: str
    acquired_at: str

    def __str__(self) -> str:
        return (f"run {self.run_id} of {self.procedure} (pid {self.pid} on {self.host}, "
                f"by {self.user}, since {self.acquired_at})")


class Journal:
    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_state_url()
        self.path = state_path(self.url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(_SCHEMA)

    def close(self) -> None:
        self.db.close()

    def acquire(self, name: str, run_id: str, procedure: str, user: str, acquired_at: str) -> LockHolder | None:
        """Take the lock; return the live holder instead when another process has it."""
        host = socket.gethostname()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT name, run_id, procedure, pid, host, user, acquired_at FROM locks "
                                  "WHERE name = ?", (name,)).fetchone()
            if row is not None:
                holder = LockHolder(*row)
                if holder.pid != os.getpid() and _alive(holder, host):
                    self.db.execute("ROLLBACK")
                    return holder
            self.db.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?, ?, ?)",
                            (name, run_id, procedure, os.getpid(), host, user, acquired_at))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return None

    def release(self, name: str, run_id: str) -> None:
        self.db.execute("DELETE FROM locks WHERE name = ? AND run_id = ?", (name, run_id))

    def record(self, report: dict[str, Any]) -> None:
        self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        (report["run_id"], report["procedure"], report["status"], report["exit_code"],
                         int(report["dry_run"]), report["started_at"], report["duration"], json.dumps(report)))

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT id, procedure, status, started_at, exit_code, dry_run, duration FROM runs "
                               "ORDER BY started_at DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "procedure": r[1], "status": r[2], "started_at": r[3], "exit_code": r[4],
                 "dry_run": bool(r[5]), "duration": r[6]} for r in rows]

    def show(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT report FROM runs WHERE id = ? OR id LIKE ?", (run_id, run_id + "%")).fetchone()
        return json.loads(row[0]) if row else None


def _alive(holder: LockHolder, host: str) -> bool:
    if holder.host != host:
        return True  # another machine's lock: we cannot tell, so it holds
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
