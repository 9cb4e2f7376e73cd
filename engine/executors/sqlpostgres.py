"""The ``sql`` executor's PostgreSQL session (psycopg 3): connect, cancel, run, explain errors.

psycopg is imported inside functions: ``runproc validate`` must not pay for it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Any

from ..format.expressions import SqlIdent, SqlParam
from .base import StepContext
from .sqlsessions import ROWS_KEPT, Outcome, Session, StatementFailed
from .sqlsplit import Statement

DEFAULT_CONNECT_TIMEOUT = 10.0  # libpq's default is to wait forever
CHANGING_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})


class PgSession(Session):
    """A run's connection to one PostgreSQL ``connection``: opened on first use, reopened if lost."""

    dialect = "postgres"

    def ensure(self, ctx: StepContext) -> Any:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        self.close()
        m = self.model
        dsn = str(ctx.render(m.dsn))  # may hold templates: secrets, vars
        try:
            info = conninfo_to_dict(dsn)
        except psycopg.Error as exc:
            raise StatementFailed(f"postgres connection {self.name!r}: invalid dsn: {exc}") from None
        self.where = _pg_where(info)
        if info.get("password"):  # written in the DSN: masked wherever psycopg or the server repeats it
            ctx.protect(str(info["password"]))
        kwargs: dict[str, Any] = {"autocommit": True}  # transactions are begun explicitly, below
        if m.password is not None:
            kwargs["password"] = str(ctx.render(m.password))
            ctx.protect(kwargs["password"])
        timeout = m.connect_timeout or DEFAULT_CONNECT_TIMEOUT
        remaining = ctx.remaining()
        if remaining is not None:
            timeout = min(timeout, remaining)
        kwargs["connect_timeout"] = max(1, math.ceil(timeout))
        if m.sslmode:
            kwargs["sslmode"] = m.sslmode
        if "application_name" not in info:
            kwargs["application_name"] = "runproc"  # recognisable in pg_stat_activity
        try:
            conn = psycopg.connect(dsn, **kwargs)
        except psycopg.Error as exc:
            detail = " ".join(str(exc).split())
            # libpq gives no SQLSTATE for a refused connection: the server's own words tell an
            # absent database (3D000) from a refused login or an unreachable server
            absent = info.get("dbname") is not None and f'database "{info["dbname"]}" does not exist' in detail
            raise StatementFailed(f"cannot connect to postgres {self.name!r} ({self.where}): {detail}",
                                   broken=True, absent=absent) from None
        if m.statement_timeout:
            # per session, so it holds for every step on this connection
            conn.execute("SELECT set_config('statement_timeout', %s, false)",
                         [f"{max(1, round(m.statement_timeout * 1000))}ms"])
        self.conn = conn
        return conn

    def interrupt(self) -> None:
        conn = self.conn
        if conn is None:
            return
        cancel = getattr(conn, "cancel_safe", None)  # psycopg >= 3.2; cancel() before
        if cancel is not None:
            cancel(timeout=5.0)
        else:
            conn.cancel()

    # ------------------------------------------------------------ running

    def driver_error(self) -> type[Exception]:
        import psycopg

        return psycopg.Error

    def error_text(self, exc: Exception) -> str:
        return pg_error(exc)

    def is_broken(self) -> bool:
        return bool(self.conn is not None and self.conn.broken)

    def _run(self, stmts: list[Statement], *, readonly: bool, autocommit: bool, keep: Callable[[Outcome], bool],
             outcome: Outcome) -> bool:
        conn = self.conn
        if autocommit:
            if readonly:
                conn.execute("SET default_transaction_read_only = on")
            try:
                for i, stmt in enumerate(stmts):
                    self._execute(conn, [stmt], outcome, i, len(stmts))
            finally:
                if readonly and not conn.broken:
                    conn.execute("RESET default_transaction_read_only")
            return True
        conn.execute("BEGIN READ ONLY" if readonly else "BEGIN")
        try:
            if not any(s.has_params for s in stmts):
                # one string: the server splits it, whatever syntax the lexer does not know
                self._execute(conn, stmts, outcome, 0, 1)
            else:
                for i, stmt in enumerate(stmts):
                    self._execute(conn, [stmt], outcome, i, len(stmts))
            commit = keep(outcome)
        except BaseException:
            self._rollback(conn)
            raise
        if commit:
            conn.execute("COMMIT")
        else:
            self._rollback(conn)
        return commit

    @staticmethod
    def _rollback(conn: Any) -> None:
        if not conn.closed and not conn.broken:
            with contextlib.suppress(Exception):  # a lost connection rolls back by itself
                conn.execute("ROLLBACK")

    def _execute(self, conn: Any, stmts: list[Statement], outcome: Outcome, index: int, total: int) -> None:
        import psycopg
        from psycopg import sql

        parts = [p for s in stmts for p in s.parts]
        params = [_pg_param(p.value) for p in parts if isinstance(p, SqlParam)]
        composed: list[Any] = []
        for p in parts:
            if isinstance(p, SqlParam):
                composed.append(sql.Placeholder())
            elif isinstance(p, SqlIdent):
                composed.append(sql.Identifier(p.name))
            else:
                # with parameters psycopg reads % as the start of a placeholder: double it
                composed.append(sql.SQL(p.replace("%", "%%") if params else p))
        texts = [p for p in parts if isinstance(p, str)]
        query: Any = sql.Composed(composed) if len(texts) < len(parts) else "".join(texts)
        cur = conn.cursor()
        try:
            cur.execute(query, params or None)
            while True:
                _collect_pg(cur, outcome)
                if not cur.nextset():
                    break
        except psycopg.Error as exc:
            where = f"statement {index + 1} of {total}: " if total > 1 else ""
            raise StatementFailed(where + pg_error(exc), broken=conn.broken) from None
        finally:
            cur.close()


def _collect_pg(cur: Any, outcome: Outcome) -> None:
    tag = (cur.statusmessage or "").split(" ", 1)[0].upper()
    if cur.description is not None:
        columns = [d.name for d in cur.description]
        outcome.add_rows(columns, cur.fetchmany(ROWS_KEPT), max(cur.rowcount, 0))
    if tag in CHANGING_TAGS:
        outcome.add_changed(cur.rowcount)


def _pg_param(value: Any) -> Any:
    if isinstance(value, dict):
        from psycopg.types.json import Jsonb

        return Jsonb(value)  # a mapping binds as jsonb; a list binds as an array
    return value


def _pg_where(info: dict[str, Any]) -> str:
    """host:port/dbname as user, from a parsed DSN: never the password."""
    host = info.get("host") or info.get("hostaddr") or "local socket"
    port = info.get("port") or "5432"
    where = f"{host}:{port}" if not str(host).startswith("/") else f"socket {host}"
    if info.get("dbname"):
        where += f"/{info['dbname']}"
    if info.get("user"):
        where += f" as {info['user']}"
    return where


def pg_error(exc: Any) -> str:
    """``SQLSTATE 42P01: relation "x" does not exist``, plus the server's detail and hint."""
    state = getattr(exc, "sqlstate", None)
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    message = primary or (" ".join(str(exc).split()) or type(exc).__name__)
    out = f"SQLSTATE {state}: {message}" if state else message
    for label, attr in (("DETAIL", "message_detail"), ("HINT", "message_hint")):
        value = getattr(diag, attr, None) if diag is not None else None
        if value:
            out += f"\n{label}: {value}"
    if state == "25001":  # active_sql_transaction: CREATE DATABASE, VACUUM, ... CONCURRENTLY
        out += "\nHINT: this statement cannot run inside a transaction; set autocommit: true on the step"
    return out
