"""The state store in one SQLite file (WAL): the default, for one machine.

Default location: ``$XDG_STATE_HOME/runproc/state.db`` (``~/.local/state/runproc``). Step
logs go to ``logs/`` beside the file. Journal commits use ``synchronous=NORMAL``: in WAL mode
a commit survives the runner being killed (the OS has the write); only a power cut may lose
the last commits, never corrupt the file (docs/state.md measures FULL too).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .opening import state_path
from .sqlstore import Exec, SqlStore


class SqliteStore(SqlStore):
    """Runs, journal and locks in one SQLite file."""

    CLOCK = "((julianday('now') - 2440587.5) * 86400.0)"
    REAL = "REAL"
    SERIAL = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, url: str, *, host: str | None = None, lease: float | None = None) -> None:
        super().__init__(url, host=host, lease=lease)
        self.path = state_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        try:
            # WAL: readers never block the writer; NORMAL: no fsync per commit (WAL keeps it safe
            # against a crash of runproc, which is what the journal and a lock must survive)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=30000")
            self.migrate()
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def logs_dir(self) -> Path:
        return self.path.parent / "logs"

    @contextmanager
    def _tx(self) -> Iterator[Exec]:
        with self._mutex:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db.execute
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._mutex:
            return self.db.execute(sql, params).fetchall()

    def _statement(self, sql: str, params: Sequence[Any]) -> None:
        # isolation_level=None: the statement is its own transaction. It takes the write lock
        # before it reads a page (no stale snapshot to upgrade) and waits busy_timeout for it
        with self._mutex:
            self.db.execute(sql, params)

    def _serialise_migrations(self, run: Exec) -> None:
        pass  # BEGIN IMMEDIATE already holds the file's write lock

    def _has_table(self, run: Exec, name: str) -> bool:
        return run("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone() is not None

    def _before_v2(self, run: Exec) -> None:
        columns = {row[1] for row in run("PRAGMA table_info(locks)", ()).fetchall()}
        if "pid_start" not in columns:  # a state file from before pid start times were kept
            run("ALTER TABLE locks ADD COLUMN pid_start TEXT", ())
