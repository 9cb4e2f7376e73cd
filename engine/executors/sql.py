"""``sql``: statements on a ``postgres`` (psycopg 3) or ``sqlite`` (stdlib) connection.

Values never become SQL text. The query is rendered by ``ctx.render_sql`` into literal text,
bind parameters (every ``{{ }}`` value) and identifiers (``| ident``); the statement is then
composed from those parts: ``psycopg.sql.Placeholder``/``Identifier`` for PostgreSQL, ``?`` and
double-quoted identifiers for SQLite.

One step is one transaction (``BEGIN`` ... ``COMMIT``, ``ROLLBACK`` on any error), run on a
connection opened once per run and shared by the steps that name it; a lock makes steps on the
same connection take turns. ``autocommit: true`` runs each statement on its own, outside a
transaction, for ``CREATE DATABASE`` and friends.

The query is split into statements by ``sqlsplit``; ``sqlpostgres`` and ``sqlsqlite`` hold the
sessions that run them, ``sqlsessions`` what both share. This module is the executor: options,
checks before anything is sent, one connection per name and run, and the step's result.

psycopg is imported inside functions (``sqlpostgres``): ``runproc validate`` must not pay for it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from .base import ASSERTION, ENVIRONMENT, Executor, Options, Result, StepContext
from .sqlpostgres import PgSession
from .sqlsessions import Outcome, StatementFailed, Watch, acquire
from .sqlsplit import SqlError, Statement, display_sql, render_parts, split_statements, transaction_control
from .sqlsqlite import SqliteSession

# names other modules import from here: http.py renders its parts with render_parts, and the
# tests split statements through this module
__all__ = ["SqlError", "SqlExecutor", "SqlOptions", "Statement", "render_parts", "split_statements"]


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
            return Result(True, Outcome().fields())
        key = f"sql:{name}:{_identity(model, ctx.workdir, ctx)}"
        session_cls = PgSession if dialect == "postgres" else SqliteSession
        session = ctx.resources.get(key, lambda: session_cls(name, model), lambda s: s.close())
        lock = ctx.resources.lock_for(key)
        waited = acquire(lock, ctx)
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
        except StatementFailed as exc:  # no server, refused, authentication, an unopenable file
            return Result(False, {}, ctx.redact(str(exc)), error_kind=ASSERTION if exc.absent else ENVIRONMENT)
        outcome = Outcome()
        too_many: list[str] = []
        watch = Watch(ctx, session.interrupt)

        def keep(out: Outcome) -> bool:
            # decides commit or rollback once every statement has run
            if watch.fired:
                return False  # the deadline passed or the run was interrupted just as it finished
            if options.max_rows is not None and out.changed is not None and out.changed > options.max_rows:
                too_many.append(f"{out.changed} rows would change, more than max_rows {options.max_rows}; "
                                "rolled back, nothing changed")
                return False
            return not rehearse

        error: str | None = None
        broken = False
        committed = False
        with watch:
            try:
                committed = session.run(stmts, readonly=ctx.readonly, autocommit=options.autocommit,
                                        keep=keep, outcome=outcome)
            except StatementFailed as exc:
                error = str(exc)
                broken = exc.broken
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
            # the server answered (a constraint, a missing table) unless the connection broke
            return Result(False, fields, ctx.redact(error), error_kind=ENVIRONMENT if broken else ASSERTION)
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
