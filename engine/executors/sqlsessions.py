"""What the ``sql`` sessions share: a step's outcome, its failure, and its deadline watch.

A session (``sqlpostgres.PgSession``, ``sqlsqlite.SqliteSession``) runs a step's statements on
its connection and fills an ``Outcome``; it raises ``StatementFailed`` with a message ready for
the user. ``Watch`` and ``acquire`` keep a step within its deadline and cancel while the
blocking database call runs or while another step holds the connection.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import FailedError
from .base import StepContext

# ``rows`` keeps at most this many rows (``rowcount`` still counts them all): a result lands
# in the run journal and the JSON report, which are not the place for a table dump.
ROWS_KEPT = 10_000
WATCH_INTERVAL = 0.05


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


# ---------------------------------------------------------------- deadline and cancel


class Watch:
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

    def __enter__(self) -> Watch:
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


def acquire(lock: threading.Lock, ctx: StepContext) -> str | None:
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
class Outcome:
    """What a step's statements returned and changed, gathered across statements into its result."""

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


class StatementFailed(FailedError):
    """A statement, connect or commit that failed, with the message to show; ``broken`` when the
    connection is lost too, so the executor closes it and the next step reconnects."""

    def __init__(self, message: str, broken: bool = False, absent: bool = False) -> None:
        super().__init__(message)
        self.broken = broken
        # the server answered that the database does not exist: data a planned CREATE DATABASE
        # may make, not a broken environment (executors/base.py error kinds)
        self.absent = absent


class Session(ABC):
    """What a run's connection to one database does whatever the driver: opened on first use
    (``ensure``), closed at the end of the run, and a statement batch whose driver error
    becomes a StatementFailed with the driver's own wording."""

    dialect = ""

    def __init__(self, name: str, model: Any) -> None:
        self.name = name
        self.model = model
        self.conn: Any = None
        self.where = ""

    def close(self, _: Any = None) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def run(self, stmts: list[Any], *, readonly: bool, autocommit: bool, keep: Callable[[Outcome], bool],
            outcome: Outcome) -> bool:
        """Run the statements; commit when ``keep(outcome)`` says so. True when committed."""
        try:
            return self._run(stmts, readonly=readonly, autocommit=autocommit, keep=keep, outcome=outcome)
        except self.driver_error() as exc:  # BEGIN, COMMIT (deferred constraints), a lost connection
            raise StatementFailed(self.error_text(exc), broken=self.is_broken()) from None

    @abstractmethod
    def _run(self, stmts: list[Any], *, readonly: bool, autocommit: bool, keep: Callable[[Outcome], bool],
             outcome: Outcome) -> bool:
        """Run the batch in the driver's own way (each driver's session)."""

    @abstractmethod
    def driver_error(self) -> type[Exception]:
        """The driver's base exception class, imported when first needed."""

    @abstractmethod
    def error_text(self, exc: Exception) -> str:
        """The driver's error as an operator reads it (SQLSTATE and message)."""

    def is_broken(self) -> bool:
        return False
