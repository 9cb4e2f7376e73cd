"""The ``sql`` executor's SQLite session (stdlib ``sqlite3``): open, interrupt, run, explain errors."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..format.expressions import SqlIdent, SqlParam
from .base import StepContext
from .sqlsessions import ROWS_KEPT, Outcome, Session, StatementFailed
from .sqlsplit import Statement, quote_ident

SQLITE_BUSY_TIMEOUT = 5.0


class SqliteSession(Session):
    """A run's connection to one SQLite ``connection``: the file is opened once and shared by steps."""

    dialect = "sqlite"

    def ensure(self, ctx: StepContext) -> Any:
        import sqlite3

        if self.conn is not None:
            return self.conn
        raw = str(ctx.render(self.model.path))
        if raw == ":memory:" or raw.startswith("file:"):
            target, uri = raw, raw.startswith("file:")
        else:
            path = Path(raw).expanduser()
            target, uri = str(path if path.is_absolute() else ctx.workdir / path), False  # as file: paths are
        self.where = target
        if ctx.dry_run and not uri and target != ":memory:" and not Path(target).exists():
            # A dry run creates nothing, not even the database file (a planned step may be the one
            # that would create it): read an empty stand-in, as the database is before any step.
            ctx.progress(f"{target} does not exist yet; a dry run does not create it, so it reads "
                         "as an empty database")
            target = ":memory:"
        try:
            # isolation_level=None: no implicit BEGIN, the transactions below are explicit;
            # check_same_thread=False: steps run in worker threads, the lock serialises them
            self.conn = sqlite3.connect(target, timeout=self.model.timeout or SQLITE_BUSY_TIMEOUT,
                                        isolation_level=None, check_same_thread=False, uri=uri)
        except sqlite3.Error as exc:
            raise StatementFailed(f"cannot open sqlite {self.name!r} ({target}): {exc}") from None
        return self.conn

    def interrupt(self) -> None:
        if self.conn is not None:
            self.conn.interrupt()

    def driver_error(self) -> type[Exception]:
        import sqlite3

        return sqlite3.Error  # BEGIN IMMEDIATE on a busy database, COMMIT

    def error_text(self, exc: Exception) -> str:
        return sqlite_error(exc)

    def _run(self, stmts: list[Statement], *, readonly: bool, autocommit: bool, keep: Callable[[Outcome], bool],
             outcome: Outcome) -> bool:
        conn = self.conn
        if readonly:
            conn.execute("PRAGMA query_only = ON")  # for this step only: reset below
        try:
            if autocommit:
                for i, stmt in enumerate(stmts):
                    self._execute(conn, stmt, outcome, i, len(stmts))
                return True
            # IMMEDIATE takes the write lock up front, so a writer never fails half-way with BUSY
            conn.execute("BEGIN" if readonly else "BEGIN IMMEDIATE")
            try:
                for i, stmt in enumerate(stmts):
                    self._execute(conn, stmt, outcome, i, len(stmts))
                commit = keep(outcome)
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT" if commit else "ROLLBACK")
            return commit
        finally:
            if readonly:
                conn.execute("PRAGMA query_only = OFF")

    @staticmethod
    def _execute(conn: Any, stmt: Statement, outcome: Outcome, index: int, total: int) -> None:
        import sqlite3

        text = "".join(quote_ident(p.name) if isinstance(p, SqlIdent) else "?" if isinstance(p, SqlParam)
                       else p for p in stmt.parts)
        params = [_sqlite_param(p.value) for p in stmt.parts if isinstance(p, SqlParam)]
        before = conn.total_changes
        try:
            cur = conn.execute(text, params)
            if cur.description is not None:
                rows = cur.fetchmany(ROWS_KEPT)
                total_rows = len(rows) + sum(1 for _ in cur)
                outcome.add_rows([d[0] for d in cur.description], rows, total_rows)
            # rowcount is -1 for statements that change no rows by nature (SELECT, DDL)
            if cur.rowcount >= 0:
                outcome.add_changed(cur.rowcount)
            elif conn.total_changes > before:
                outcome.add_changed(conn.total_changes - before)
            cur.close()
        except sqlite3.Error as exc:
            where = f"statement {index + 1} of {total}: " if total > 1 else ""
            raise StatementFailed(where + sqlite_error(exc)) from None


def _sqlite_param(value: Any) -> Any:
    if isinstance(value, dict | list | tuple):
        import json

        return json.dumps(value, default=str)  # SQLite's JSON functions read text
    if isinstance(value, Decimal):
        return str(value)
    return value


def sqlite_error(exc: Any) -> str:
    name = getattr(exc, "sqlite_errorname", None)
    text = str(exc)
    out = f"{name}: {text}" if name else text
    if "within a transaction" in text:
        out += "\nHINT: this statement cannot run inside a transaction; set autocommit: true on the step"
    return out
