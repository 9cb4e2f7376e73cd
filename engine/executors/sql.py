"""``sql``: statements on a ``postgres`` (psycopg 3) or ``sqlite`` (stdlib) connection.

Values never become SQL text. The query is rendered by ``ctx.render_sql`` into literal text,
bind parameters (every ``{{ }}`` value) and identifiers (``| ident``); the statement is then
composed from those parts: ``psycopg.sql.Placeholder``/``Identifier`` for PostgreSQL, ``?`` and
double-quoted identifiers for SQLite.

One step is one transaction (``BEGIN`` ... ``COMMIT``, ``ROLLBACK`` on any error), run on a
connection opened once per run and shared by the steps that name it; a lock makes steps on the
same connection take turns. ``autocommit: true`` runs each statement on its own, outside a
transaction, for ``CREATE DATABASE`` and friends.

Several statements in one ``query`` are split by a small lexer that knows quotes, dollar
quotes, comments, ``BEGIN ATOMIC`` bodies (PostgreSQL) and trigger bodies (SQLite, through
``sqlite3.complete_statement``). PostgreSQL receives a query without values as one string (the
server splits it, so the lexer only has to be right about the checks below); with values each
statement is sent on its own, because server-side binding takes one statement at a time.

psycopg is imported inside functions: ``runproc validate`` must not pay for it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from ..expressions import SqlIdent, SqlParam
from .base import Executor, Options, Result, StepContext

Part = str | SqlParam | SqlIdent

# ``rows`` keeps at most this many rows (``rowcount`` still counts them all): a result lands
# in the run journal and the JSON report, which are not the place for a table dump.
ROWS_KEPT = 10_000
DEFAULT_CONNECT_TIMEOUT = 10.0  # libpq's default is to wait forever
SQLITE_BUSY_TIMEOUT = 5.0
WATCH_INTERVAL = 0.05

# first words of statements that end or start transactions: a step is already one transaction,
# so a COMMIT inside it would defeat max_rows, dry_run: transaction and the rollback on error
TRANSACTION_WORDS = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})
CHANGING_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})


class SqlOptions(Options):
    query: str
    connection: str | None = None
    autocommit: bool = False
    max_rows: int | None = Field(None, ge=0)
    dry_run: Literal["transaction"] | None = None

    @model_validator(mode="after")
    def _needs_transaction(self) -> SqlOptions:
        # both work by rolling back, which autocommit makes impossible
        if self.autocommit and self.max_rows is not None:
            raise ValueError("max_rows rolls back when too many rows would change, which "
                             "autocommit: true cannot do; use one or the other")
        if self.autocommit and self.dry_run is not None:
            raise ValueError("dry_run: transaction rolls the statement back, which autocommit: true "
                             "cannot do; use one or the other")
        return self


class SqlError(Exception):
    """A query that cannot be sent as written (a value inside quotes, a COMMIT in a step)."""


# ---------------------------------------------------------------- splitting statements


@dataclass
class Statement:
    parts: list[Part]
    words: list[str]  # the first few keywords, upper-cased, for the transaction check

    @property
    def has_params(self) -> bool:
        return any(isinstance(p, SqlParam) for p in self.parts)


_WORD = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_DOLLAR = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_STATE_NAMES = {"squote": "a quoted string", "estring": "a quoted string", "dquote": "a quoted identifier",
                "dollar": "a dollar-quoted string", "line": "a comment", "block": "a comment",
                "backtick": "a quoted identifier", "bracket": "a quoted identifier"}


class _Lexer:
    """Just enough of the SQL lexical grammar to find the ``;`` that end statements."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgres"
        self.mode = "code"
        self.tag = ""  # the current dollar quote's delimiter
        self.depth = 0  # nested block comments (PostgreSQL nests them, SQLite does not)
        self.atomic = 0  # inside BEGIN ATOMIC ... END: its ``;`` do not end the statement
        self.last_word = ""
        self.words: list[str] = []  # the current statement's first keywords
        self.code_seen = False  # the current statement holds more than blanks and comments

    def take(self) -> tuple[list[str], bool]:
        """The current statement's keywords and whether it has code; starts the next one."""
        out = (self.words, self.code_seen)
        self.words, self.code_seen = [], False
        return out

    def scan(self, text: str) -> Iterator[int]:
        """Yield the offsets of the ``;`` in ``text`` that may end a statement."""
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            mode = self.mode
            if mode == "code" and not c.isspace() and c != ";" and not text.startswith(("--", "/*"), i):
                self.code_seen = True
            if mode == "code":
                if c == ";":
                    if self.atomic:
                        i += 1
                        continue
                    self.last_word = ""
                    yield i
                    i += 1
                elif text.startswith("--", i):
                    self.mode = "line"
                    i += 2
                elif text.startswith("/*", i):
                    self.mode, self.depth = "block", 1
                    i += 2
                elif c == "'":
                    self.mode = "squote"
                    i += 1
                elif c == '"':
                    self.mode = "dquote"
                    i += 1
                elif c == "`" and not self.pg:
                    self.mode = "backtick"
                    i += 1
                elif c == "[" and not self.pg:
                    self.mode = "bracket"
                    i += 1
                elif c == "$" and self.pg and (m := _DOLLAR.match(text, i)):
                    self.mode, self.tag = "dollar", m.group(0)
                    i = m.end()
                elif m := _WORD.match(text, i):
                    word = m.group(0)
                    i = m.end()
                    if self.pg and word in ("E", "e") and text.startswith("'", i):
                        self.mode = "estring"  # E'...': backslash escapes
                        i += 1
                        continue
                    self._word(word.upper())
                else:
                    i += 1
            elif mode in ("squote", "estring"):
                j = text.find("'", i) if mode == "squote" else self._estring_end(text, i)
                if j < 0:
                    return
                if text.startswith("''", j):
                    i = j + 2
                else:
                    self.mode, i = "code", j + 1
            elif mode in ("dquote", "backtick", "bracket"):
                j = text.find({"dquote": '"', "backtick": "`", "bracket": "]"}[mode], i)
                if j < 0:
                    return
                self.mode, i = "code", j + 1
            elif mode == "dollar":
                j = text.find(self.tag, i)
                if j < 0:
                    return
                self.mode, i = "code", j + len(self.tag)
            elif mode == "line":
                j = text.find("\n", i)
                if j < 0:
                    return
                self.mode, i = "code", j + 1
            else:  # block comment
                if text.startswith("*/", i):
                    self.depth -= 1
                    i += 2
                    if self.depth == 0 or not self.pg:
                        self.mode = "code"
                elif self.pg and text.startswith("/*", i):
                    self.depth += 1
                    i += 2
                else:
                    i += 1

    @staticmethod
    def _estring_end(text: str, i: int) -> int:
        while i < len(text):
            if text[i] == "\\":
                i += 2
            elif text[i] == "'":
                return i
            else:
                i += 1
        return -1

    def _word(self, word: str) -> None:
        if len(self.words) < 3:
            self.words.append(word)
        if self.pg:
            # as psql does: BEGIN ATOMIC opens a body closed by END; CASE ... END nests inside it
            if (word == "ATOMIC" and self.last_word == "BEGIN") or (self.atomic and word == "CASE"):
                self.atomic += 1
            elif self.atomic and word == "END":
                self.atomic -= 1
        self.last_word = word

    def value(self) -> None:
        if self.mode != "code":
            what = _STATE_NAMES.get(self.mode, "a quoted string")
            raise SqlError(f"a {{{{ }}}} value is inside {what}; values are sent as bind parameters, "
                           "so write them without quotes: WHERE name = {{ params.name }}")
        self.last_word = ""
        self.code_seen = True


def render_parts(ctx: StepContext, text: str) -> list[Part]:
    """The query as literal text, bind parameters and identifiers (``expressions.render_sql``)."""
    # StepContext declares render_sql as (text, style) -> (text, params), but the engine passes
    # expressions.render_sql, which takes the text and returns the parts: call what is passed
    render: Any = ctx.render_sql
    return list(render(text))


def split_statements(parts: list[Part], dialect: str) -> list[Statement]:
    """Split rendered parts into statements; blank or comment-only statements are dropped."""
    import sqlite3

    lexer = _Lexer(dialect)
    out: list[Statement] = []
    current: list[Part] = []

    def flush() -> None:
        nonlocal current
        words, code = lexer.take()
        if code:
            out.append(Statement(current, words))
        current = []

    for part in parts:
        if not isinstance(part, str):
            lexer.value()
            current.append(part)
            continue
        start = 0
        for cut in lexer.scan(part):
            piece = part[start:cut + 1]
            if dialect == "sqlite":
                # a trigger body holds ``;``: SQLite itself says when a statement is complete
                so_far = "".join(p if isinstance(p, str) else "?" for p in current) + piece
                if not sqlite3.complete_statement(so_far):
                    continue
            current.append(piece)
            start = cut + 1
            flush()
        if part[start:]:
            current.append(part[start:])
    flush()
    return out


def transaction_control(stmt: Statement) -> str | None:
    """The keyword when a statement begins or ends a transaction (SAVEPOINTs are fine)."""
    w = stmt.words
    if not w or w[0] not in TRANSACTION_WORDS:
        return None
    if w[0] == "ROLLBACK" and "TO" in w[1:]:
        return None  # ROLLBACK [TRANSACTION] TO SAVEPOINT stays inside the transaction
    return " ".join(w[:2]) if w[0] == "START" else w[0]


# ---------------------------------------------------------------- values


def json_safe(value: Any) -> Any:
    """A database value as JSON can carry it, so results survive the journal and --output json."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            return str(value)
        # integral numerics (sum(), count on numeric columns) compare as numbers in expressions
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode()
        except UnicodeDecodeError:
            return "\\x" + raw.hex()  # as psql shows bytea
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)  # inet, ranges, enums of extensions...


def display_value(value: Any) -> str:
    """A bound value as a SQL literal, for showing a statement (never for running one)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    from ..expressions import to_text

    return "'" + to_text(value).replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def display_sql(parts: list[Part]) -> str:
    out = []
    for p in parts:
        if isinstance(p, SqlParam):
            out.append(display_value(p.value))
        elif isinstance(p, SqlIdent):
            out.append(p.name if re.fullmatch(r"[a-z_][a-z0-9_]*", p.name) else quote_ident(p.name))
        else:
            out.append(p)
    return "".join(out)


# ---------------------------------------------------------------- deadline and cancel


class _Watch:
    """Interrupts the running statement when the step's deadline passes or the run is cancelled.

    Runs beside the statement in a thread, because the call running the statement blocks;
    ``interrupt`` is the engine's own cancel (a server-side cancel request for PostgreSQL,
    ``sqlite3.Connection.interrupt`` for SQLite), so the database stops working too.
    """

    def __init__(self, ctx: StepContext, interrupt: Callable[[], None]) -> None:
        self.ctx = ctx
        self.interrupt = interrupt
        self.fired: str | None = None  # "timeout" or "cancel"
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sql-watch-{ctx.step_id}", daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.is_set():
            if self.ctx.cancel.is_set():
                self.fired = "cancel"
            else:
                remaining = self.ctx.remaining()
                if remaining is not None and remaining <= 0:
                    self.fired = "timeout"
            if self.fired:
                # a failed cancel leaves the statement to its own error or statement_timeout
                with contextlib.suppress(Exception):
                    self.interrupt()
                return
            self._done.wait(WATCH_INTERVAL)


def _acquire(lock: threading.Lock, ctx: StepContext) -> str | None:
    """Wait for the connection's turn, within the deadline; the reason when it did not come."""
    while not lock.acquire(timeout=WATCH_INTERVAL):
        if ctx.cancel.is_set():
            return "cancel"
        remaining = ctx.remaining()
        if remaining is not None and remaining <= 0:
            return "timeout"
    return None


# ---------------------------------------------------------------- outcome of a step


@dataclass
class _Outcome:
    columns: list[str] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    returned: int = 0  # rows the last row-returning statement returned
    changed: int | None = None  # rows changed by INSERT/UPDATE/DELETE/MERGE/COPY, None if none ran

    def add_rows(self, columns: list[str], rows: list[tuple[Any, ...]], total: int) -> None:
        self.columns = columns
        self.rows = [{c: json_safe(v) for c, v in zip(columns, row, strict=False)} for row in rows]
        self.returned = total

    def add_changed(self, n: int) -> None:
        self.changed = (self.changed or 0) + max(n, 0)

    @property
    def rowcount(self) -> int:
        return self.changed if self.changed is not None else self.returned

    def fields(self) -> dict[str, Any]:
        scalar = None
        if self.rows and self.columns:
            scalar = self.rows[0].get(self.columns[0])
        return {"rows": self.rows, "columns": self.columns, "rowcount": self.rowcount, "scalar": scalar}


class _StatementFailed(Exception):
    def __init__(self, message: str, broken: bool = False) -> None:
        super().__init__(message)
        self.broken = broken


# ---------------------------------------------------------------- PostgreSQL


class _PgSession:
    """A run's connection to one PostgreSQL ``connection``: opened on first use, reopened if lost."""

    dialect = "postgres"

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model
        self.conn: Any = None
        self.where = ""

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
            raise _StatementFailed(f"postgres connection {self.name!r}: invalid dsn: {exc}") from None
        self.where = _pg_where(info)
        kwargs: dict[str, Any] = {"autocommit": True}  # transactions are begun explicitly, below
        if m.password is not None:
            kwargs["password"] = str(ctx.render(m.password))
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
            raise _StatementFailed(f"cannot connect to postgres {self.name!r} ({self.where}): {detail}",
                                   broken=True) from None
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

    def close(self, _: Any = None) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    # ------------------------------------------------------------ running

    def run(self, stmts: list[Statement], *, readonly: bool, autocommit: bool, keep: Callable[[_Outcome], bool],
            outcome: _Outcome) -> bool:
        """Run the statements; commit when ``keep(outcome)`` says so. True when committed."""
        import psycopg

        try:
            return self._run(stmts, readonly=readonly, autocommit=autocommit, keep=keep, outcome=outcome)
        except psycopg.Error as exc:  # BEGIN, COMMIT (deferred constraints), a lost connection
            raise _StatementFailed(pg_error(exc), broken=self.conn.broken) from None

    def _run(self, stmts: list[Statement], *, readonly: bool, autocommit: bool, keep: Callable[[_Outcome], bool],
             outcome: _Outcome) -> bool:
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

    def _execute(self, conn: Any, stmts: list[Statement], outcome: _Outcome, index: int, total: int) -> None:
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
            raise _StatementFailed(where + pg_error(exc), broken=conn.broken) from None
        finally:
            cur.close()


def _collect_pg(cur: Any, outcome: _Outcome) -> None:
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


# ---------------------------------------------------------------- SQLite


class _SqliteSession:
    dialect = "sqlite"

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model
        self.conn: Any = None
        self.where = ""

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
            raise _StatementFailed(f"cannot open sqlite {self.name!r} ({target}): {exc}") from None
        return self.conn

    def interrupt(self) -> None:
        if self.conn is not None:
            self.conn.interrupt()

    def close(self, _: Any = None) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def run(self, stmts: list[Statement], *, readonly: bool, autocommit: bool, keep: Callable[[_Outcome], bool],
            outcome: _Outcome) -> bool:
        import sqlite3

        try:
            return self._run(stmts, readonly=readonly, autocommit=autocommit, keep=keep, outcome=outcome)
        except sqlite3.Error as exc:  # BEGIN IMMEDIATE on a busy database, COMMIT
            raise _StatementFailed(sqlite_error(exc)) from None

    def _run(self, stmts: list[Statement], *, readonly: bool, autocommit: bool, keep: Callable[[_Outcome], bool],
             outcome: _Outcome) -> bool:
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
    def _execute(conn: Any, stmt: Statement, outcome: _Outcome, index: int, total: int) -> None:
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
            raise _StatementFailed(where + sqlite_error(exc)) from None


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


# ---------------------------------------------------------------- the executor


class SqlExecutor(Executor):
    name = "sql"
    main_option = "query"
    Options = SqlOptions
    connection_kinds = ("postgres", "sqlite")
    result_fields = ("rows", "columns", "rowcount", "scalar")

    # effect(): always WRITE (the base class default). The executor does not parse SQL to guess
    # whether a statement writes; a step says so with ``readonly: true``, which the runner runs in
    # a dry run and this executor enforces with a read-only transaction.

    def describe(self, options: SqlOptions, ctx: StepContext) -> str:
        try:
            name, _ = ctx.connection(options.connection, self.connection_kinds)
        except (ValueError, KeyError):
            name = options.connection or "?"
        flags = ", autocommit" if options.autocommit else ""
        return f"sql[{name}{flags}]: {display_sql(render_parts(ctx, options.query)).strip()}"

    def execute(self, options: SqlOptions, ctx: StepContext) -> Result:
        return self._run(options, ctx, rehearse=False)

    def rehearse(self, options: SqlOptions, ctx: StepContext) -> Result | None:
        if options.dry_run != "transaction":
            return None
        res = self._run(options, ctx, rehearse=True)
        if res.ok:
            res.note = (f"rehearsed in a transaction that was rolled back: {res.fields.get('rowcount')} "
                        "row(s) would change")
        return res

    def _run(self, options: SqlOptions, ctx: StepContext, *, rehearse: bool) -> Result:
        try:
            name, model = ctx.connection(options.connection, self.connection_kinds)
        except (ValueError, KeyError) as exc:
            return Result(False, {}, str(exc).strip("'\""))
        dialect = model.kind
        try:
            parts = render_parts(ctx, options.query)
            stmts = split_statements(parts, dialect)
            if not options.autocommit:
                for stmt in stmts:
                    word = transaction_control(stmt)
                    if word:
                        raise SqlError(f"{word} inside a sql step: each step already runs in one "
                                       "transaction (committed when it succeeds, rolled back when it "
                                       "fails); use autocommit: true to manage transactions yourself")
        except SqlError as exc:
            return Result(False, {}, str(exc))
        if not stmts:
            return Result(True, _Outcome().fields())
        key = f"sql:{name}:{_identity(model, ctx.workdir, ctx)}"
        session_cls = _PgSession if dialect == "postgres" else _SqliteSession
        session = ctx.resources.get(key, lambda: session_cls(name, model), lambda s: s.close())
        lock = ctx.resources.lock_for(key)
        waited = _acquire(lock, ctx)
        if waited:
            return _stopped(waited, "waiting for the connection (another step was using it)")
        try:
            return self._on_session(session, stmts, options, ctx, rehearse)
        finally:
            lock.release()

    def _on_session(self, session: Any, stmts: list[Statement], options: SqlOptions, ctx: StepContext,
                    rehearse: bool) -> Result:
        remaining = ctx.remaining()
        if remaining is not None and remaining <= 0:
            return _stopped("timeout", "before the statement started")
        try:
            session.ensure(ctx)
        except _StatementFailed as exc:
            return Result(False, {}, ctx.redact(str(exc)))
        outcome = _Outcome()
        too_many: list[str] = []
        watch = _Watch(ctx, session.interrupt)

        def keep(out: _Outcome) -> bool:
            # decides commit or rollback once every statement has run
            if watch.fired:
                return False  # the deadline passed or the run was interrupted just as it finished
            if options.max_rows is not None and out.changed is not None and out.changed > options.max_rows:
                too_many.append(f"{out.changed} rows would change, more than max_rows {options.max_rows}; "
                                "rolled back, nothing changed")
                return False
            return not rehearse

        error: str | None = None
        committed = False
        with watch:
            try:
                committed = session.run(stmts, readonly=ctx.readonly, autocommit=options.autocommit,
                                        keep=keep, outcome=outcome)
            except _StatementFailed as exc:
                error = str(exc)
                if exc.broken:
                    session.close()  # the next step reconnects
        fields = outcome.fields()
        if not committed and watch.fired == "timeout":
            done = ("; statements before it were committed (autocommit)" if options.autocommit and len(stmts) > 1
                    else "; its transaction was rolled back" if not options.autocommit else "")
            return Result(False, fields, f"timed out; the statement was cancelled on the server{done}",
                          timed_out=True)
        if not committed and watch.fired == "cancel":
            return Result(False, fields, "interrupted; the statement was cancelled on the server",
                          cancelled=True)
        if error is not None:
            if ctx.readonly and _is_readonly_violation(error):
                error += "\n(the step is readonly: true, so it runs in a read-only transaction)"
            return Result(False, fields, ctx.redact(error))
        if too_many:
            return Result(False, fields, too_many[0])
        return Result(True, fields)


def _is_readonly_violation(error: str) -> bool:
    return "SQLSTATE 25006" in error or "SQLITE_READONLY" in error


def _stopped(reason: str, when: str) -> Result:
    if reason == "timeout":
        return Result(False, {}, f"timed out {when}", timed_out=True)
    return Result(False, {}, f"interrupted {when}", cancelled=True)


def _identity(model: Any, workdir: Path, ctx: StepContext) -> str:
    """Tells connections apart that share a name: a child procedure shares its parent's resources,
    and the same template text may render to another server there, so the rendered settings count."""
    text = f"{model.kind}|{json.dumps(ctx.render(model.model_dump()), sort_keys=True, default=str)}|{workdir}"
    return hashlib.sha1(text.encode()).hexdigest()[:12]
