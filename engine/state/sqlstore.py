"""The state store in SQL, once for SQLite and PostgreSQL: runs, their write-ahead journal,
leased locks and the lock audit.

A subclass gives a connection (``_tx`` for a transaction, ``_read`` for a query), its clock
as SQL (``CLOCK``: seconds since the epoch; PostgreSQL's is the server's, so that machines
with skewed clocks agree on a lease) and the types of its columns. SQL is written with ``?``
placeholders, which the PostgreSQL store turns into ``%s``.

Whether a holder (of a lock, or of a run that has not ended) is alive:

- this process: while the run is in ``LIVE``;
- the same host: its pid exists with the same start time (a reused pid is another process)
  and its heartbeat is within its lease;
- another host: its heartbeat is within its lease (the holder renews every lease/4).
"""

from __future__ import annotations

import functools
import json
import os
import socket
import threading
from abc import abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import process
from ..errors import InvalidInputError
from ..execution.store import LockHolder, RunFilter, StateStore
from . import migrations
from .schedules import ScheduleRows

DEFAULT_LEASE = 60.0
# runs and locks of this process: a row holding our own pid is live only if its run is here
LIVE: set[str] = set()
LIVE_LOCK = threading.Lock()

Exec = Callable[[str, Sequence[Any]], Any]  # runs one statement in the open transaction; a cursor


class SchemaTooNew(InvalidInputError):
    """The state was written by a newer runproc (its schema version is above ours)."""

    def __init__(self, found: int) -> None:
        super().__init__(f"its schema is version {found}, newer than this runproc knows "
                         f"({migrations.SCHEMA_VERSION})")
        self.found = found


def lease_from_env() -> float:
    """The lock lease: ``RUNPROC_LOCK_LEASE`` (``60``, ``90s``, ``2m``), default 60 s."""
    text = os.environ.get("RUNPROC_LOCK_LEASE")
    if not text:
        return DEFAULT_LEASE
    from ..format.durations import parse_duration

    try:
        return max(1.0, float(parse_duration(text)))
    except Exception:  # noqa: BLE001 - a bad value must not stop a run; the default holds
        return DEFAULT_LEASE


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_LOCK_COLUMNS = 'name, run_id, "procedure", pid, host, "user", acquired_at, pid_start, heartbeat_at, lease'

# journal rows in one INSERT: 7 parameters a row stays far below SQLite's 32,766 and
# PostgreSQL's 65,535 parameters a statement
JOURNAL_ROWS_A_STATEMENT = 200


class SqlStore(ScheduleRows, StateStore):
    """Runs, journal and locks in a SQL database; see the module docstring."""

    CLOCK = "0"  # SQL for the database's clock, seconds since the epoch
    REAL = "REAL"
    SERIAL = "INTEGER PRIMARY KEY AUTOINCREMENT"

    def __init__(self, url: str, *, host: str | None = None, lease: float | None = None) -> None:
        self.url = url
        # who we are to other holders; a test may stand in for another machine
        self.host = host or socket.gethostname()
        self.lease = lease if lease is not None else lease_from_env()
        self._mutex = threading.RLock()  # one statement at a time on a shared connection

    # ------------------------------------------------------------ the connection

    @abstractmethod
    def _tx(self) -> AbstractContextManager[Exec]:
        """A transaction that other writers wait for (SQLite: BEGIN IMMEDIATE)."""

    @abstractmethod
    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """The rows of one query, outside any transaction."""

    @abstractmethod
    def _statement(self, sql: str, params: Sequence[Any]) -> None:
        """Run one writing statement as a transaction of its own (autocommit), committed
        when this returns; other writers are waited for as ``_tx`` waits for them."""

    @abstractmethod
    def _serialise_migrations(self, run: Exec) -> None:
        """Make concurrent first uses migrate one at a time (inside the transaction)."""

    @abstractmethod
    def _has_table(self, run: Exec, name: str) -> bool: ...

    def _sql(self, statement: str) -> str:
        return statement.format(real=self.REAL, serial=self.SERIAL, now=self.CLOCK)

    # ------------------------------------------------------------ schema

    def schema_version(self, run: Exec) -> int:
        if self._has_table(run, "meta"):
            row = run("SELECT value FROM meta WHERE key = 'schema_version'", ()).fetchone()
            if row is not None:
                return int(row[0])
        return 1 if self._has_table(run, "runs") else 0

    def migrate(self) -> int:
        """Bring the schema to ``SCHEMA_VERSION``; the version found before (0: a new state)."""
        with self._tx() as run:
            self._serialise_migrations(run)
            found = self.schema_version(run)
            if found > migrations.SCHEMA_VERSION:
                raise SchemaTooNew(found)
            if found == 1:
                self._before_v2(run)
            # version 1 again too: its CREATE ... IF NOT EXISTS adds what its oldest files lack
            for version in range(1 if found <= 1 else found + 1, migrations.SCHEMA_VERSION + 1):
                for statement in migrations.MIGRATIONS[version]:
                    run(self._sql(statement), ())
            if found < migrations.SCHEMA_VERSION:
                run("DELETE FROM meta WHERE key = 'schema_version'", ())
                run("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(migrations.SCHEMA_VERSION),))
        return found

    def _before_v2(self, run: Exec) -> None:
        """What a version-1 state of this database needs before version 2 (an old column)."""

    # ------------------------------------------------------------ liveness

    def _alive(self, host: str, pid: int | None, pid_start: str | None, run_id: str,
               heartbeat_at: float | None, lease: float | None, now: float) -> bool:
        if host == self.host:
            if pid == process.pid():
                with LIVE_LOCK:
                    return run_id in LIVE  # this process: live only while that run is
            if pid is not None and not pid_alive(pid, pid_start):
                return False
        if heartbeat_at is None:
            # a row from before leases: another machine's cannot be judged, so it holds
            return True
        return now <= heartbeat_at + (lease or DEFAULT_LEASE)

    def _holder(self, row: Sequence[Any], now: float) -> LockHolder:
        holder = LockHolder(*row)
        holder.alive = self._alive(holder.host, holder.pid, holder.pid_start, holder.run_id,
                                   holder.heartbeat_at, holder.lease, now)
        return holder

    def _now(self) -> float:
        return float(self._read(f"SELECT {self.CLOCK}")[0][0])

    # ------------------------------------------------------------ locks

    def holder(self, name: str) -> LockHolder | None:
        rows = self._read(f"SELECT {_LOCK_COLUMNS}, {self.CLOCK} FROM locks WHERE name = ?", (name,))
        if not rows:
            return None
        holder = self._holder(rows[0][:-1], float(rows[0][-1]))
        return holder if holder.alive else None

    def acquire(self, name: str, run_id: str, procedure: str, user: str, acquired_at: str) -> LockHolder | None:
        with LIVE_LOCK:
            ours = run_id not in LIVE  # begin() may have made it live already: leave that as it is
            LIVE.add(run_id)  # before the row exists: another thread of ours must see it live
        try:
            with self._mutex, self._tx() as run:
                holder = self._take(run, name, run_id, procedure, user, acquired_at)
        except BaseException:
            if ours:
                with LIVE_LOCK:
                    LIVE.discard(run_id)
            raise
        if holder is not None and ours:
            with LIVE_LOCK:
                LIVE.discard(run_id)
        return holder

    def _take(self, run: Exec, name: str, run_id: str, procedure: str, user: str,
              acquired_at: str) -> LockHolder | None:
        """The lock in one transaction; the live holder instead if there is one.

        SQLite's BEGIN IMMEDIATE serialises acquirers, but PostgreSQL's transactions run side by
        side (READ COMMITTED): two may both see no row, or the same dead holder. So the dead
        holder's row is deleted only if it is still that holder's (compare and delete), the new
        row is inserted only if none is there (ON CONFLICT DO NOTHING waits for a concurrent
        inserter and then yields to it), and whoever lost either race looks again: the next
        statement sees what the winner committed, so the loser is refused naming the winner.
        """
        for _ in range(10):
            row = run(f"SELECT {_LOCK_COLUMNS}, {self.CLOCK} FROM locks WHERE name = ?", (name,)).fetchone()
            gone: LockHolder | None = None
            if row is not None:
                gone = self._holder(row[:-1], float(row[-1]))
                if gone.alive:
                    return gone
                # still the row judged gone: neither taken over by another acquirer nor renewed
                # meanwhile by a holder that came back (its heartbeat would have moved)
                same = ("heartbeat_at IS NULL", ()) if gone.heartbeat_at is None else ("heartbeat_at = ?",
                                                                                       (gone.heartbeat_at,))
                if not run(f"DELETE FROM locks WHERE name = ? AND run_id = ? AND {same[0]}",
                           (name, gone.run_id, *same[1])).rowcount:
                    continue  # look again
            inserted = run(f"INSERT INTO locks ({_LOCK_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {self.CLOCK}, ?) "
                           "ON CONFLICT (name) DO NOTHING",
                           (name, run_id, procedure, process.pid(), self.host, user, acquired_at,
                            _start_time(process.pid()), self.lease)).rowcount
            if not inserted:
                continue  # another acquirer inserted first: look again, it is the holder now
            if gone is not None:
                self._lock_event(run, name, "taken_over", run_id, user, acquired_at,
                                 f"from run {gone.run_id} (pid {gone.pid} on {gone.host}, by "
                                 f"{gone.user}): {_why_gone(gone, self.host)}")
            self._lock_event(run, name, "acquired", run_id, user, acquired_at, None)
            return None
        raise RuntimeError(f"lock {name!r} changed hands too often to take it; try again")

    def release(self, name: str, run_id: str) -> None:
        with self._mutex, self._tx() as run:
            gone = run("DELETE FROM locks WHERE name = ? AND run_id = ?", (name, run_id)).rowcount
            if gone:
                self._lock_event(run, name, "released", run_id, None, now_iso(), None)

    def renew(self, run_id: str, locks: list[str]) -> list[str]:
        lost: list[str] = []
        with self._mutex, self._tx() as run:
            run(f"UPDATE runs SET heartbeat_at = {self.CLOCK} WHERE id = ? AND status = 'running'", (run_id,))
            for name in locks:
                renewed = run(f"UPDATE locks SET heartbeat_at = {self.CLOCK} WHERE name = ? AND run_id = ?",
                              (name, run_id)).rowcount
                if not renewed:
                    lost.append(name)  # taken over or broken: its holder must stop
        return lost

    def locks(self) -> list[LockHolder]:
        rows = self._read(f"SELECT {_LOCK_COLUMNS}, {self.CLOCK} FROM locks ORDER BY name")
        return [self._holder(r[:-1], float(r[-1])) for r in rows]

    def break_lock(self, name: str, by: str) -> LockHolder | None:
        with self._mutex, self._tx() as run:
            row = run(f"SELECT {_LOCK_COLUMNS}, {self.CLOCK} FROM locks WHERE name = ?", (name,)).fetchone()
            if row is None:
                return None
            holder = self._holder(row[:-1], float(row[-1]))
            run("DELETE FROM locks WHERE name = ?", (name,))
            self._lock_event(run, name, "broken", holder.run_id, by, now_iso(),
                             f"held by run {holder.run_id} (pid {holder.pid} on {holder.host}, by {holder.user}, "
                             f"{'alive' if holder.alive else 'gone'}); broken on {self.host}")
        return holder

    def lock_events(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        where, params = ("WHERE name = ?", [name]) if name else ("", [])
        rows = self._read(f'SELECT name, event, run_id, "user", host, at, detail FROM lock_events {where} '
                          "ORDER BY id DESC LIMIT ?", (*params, limit))
        return [{"name": r[0], "event": r[1], "run_id": r[2], "user": r[3], "host": r[4], "at": r[5],
                 "detail": r[6]} for r in rows]

    def _lock_event(self, run: Exec, name: str, event: str, run_id: str | None, user: str | None, at: str,
                    detail: str | None) -> None:
        run('INSERT INTO lock_events (name, event, run_id, "user", host, at, detail) VALUES (?, ?, ?, ?, ?, ?, ?)',
            (name, event, run_id, user or _user(), self.host, at, detail))

    def lock_of(self, run_id: str) -> LockHolder | None:
        rows = self._read(f"SELECT {_LOCK_COLUMNS}, {self.CLOCK} FROM locks WHERE run_id = ?", (run_id,))
        if not rows:
            return None
        holder = self._holder(rows[0][:-1], float(rows[0][-1]))
        return holder if holder.alive else None

    # ------------------------------------------------------------ the journal

    def begin(self, header: dict[str, Any], inputs: dict[str, Any] | None) -> None:
        with LIVE_LOCK:
            LIVE.add(header["run_id"])
        with self._mutex, self._tx() as run:
            run('INSERT INTO runs (id, "procedure", status, exit_code, dry_run, started_at, duration, report, '
                f'"user", host, pid, pid_start, heartbeat_at, lease, kind, of_run) VALUES '
                f"(?, ?, 'running', NULL, 0, ?, NULL, ?, ?, ?, ?, ?, {self.CLOCK}, ?, ?, ?)",
                (header["run_id"], header["procedure"], header["started_at"], json.dumps(header, default=str),
                 header.get("user"), self.host, process.pid(), _start_time(process.pid()), self.lease,
                 header.get("kind") or "run", header.get("of_run")))
            if inputs is not None:
                self._put_inputs(run, header["run_id"], inputs)

    def append(self, run_id: str, entries: list[dict[str, Any]]) -> None:
        """Commit journal entries, all or none. Up to JOURNAL_ROWS_A_STATEMENT of them (a step's
        start with the previous step's end: the hot path) are one multi-row INSERT sent on its
        own: in autocommit a statement is a transaction by itself, committed when it returns
        (before the run's next side effect), without BEGIN and COMMIT around it (SQLite: one
        statement instead of four, ~40 us a step; PostgreSQL: one round trip instead of three)."""
        from .retention import stored_entries

        entries = stored_entries(entries)  # a step's output as the state keeps it: capped
        rows = [(run_id, e["seq"], e["at"], e["event"], e.get("step"), e.get("host"),
                 json.dumps(e.get("data"), default=str) if e.get("data") is not None else None)
                for e in entries]
        if not rows:
            return
        if len(rows) <= JOURNAL_ROWS_A_STATEMENT:
            with self._mutex:
                self._statement(_journal_insert(len(rows)), [value for row in rows for value in row])
            return
        with self._mutex, self._tx() as run:
            for start in range(0, len(rows), JOURNAL_ROWS_A_STATEMENT):
                chunk = rows[start:start + JOURNAL_ROWS_A_STATEMENT]
                run(_journal_insert(len(chunk)), [value for row in chunk for value in row])

    def journal(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT seq, at, event, step, host, data FROM journal WHERE run_id = ? ORDER BY seq",
                          (run_id,))
        return [{"seq": r[0], "at": r[1], "event": r[2], "step": r[3], "host": r[4],
                 "data": json.loads(r[5]) if r[5] else None} for r in rows]

    def journal_after(self, run_id: str, after: int) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """What a live view polls (``runproc serve``): the run's status and its journal entries
        after ``after``, in one query (the journal's key is (run_id, seq)). (None, []) for no run."""
        rows = self._read("SELECT r.status, r.exit_code, r.ended_at, j.seq, j.at, j.event, j.step, j.host, j.data "
                          "FROM runs r LEFT JOIN journal j ON j.run_id = r.id AND j.seq > ? WHERE r.id = ? "
                          "ORDER BY j.seq", (after, run_id))
        if not rows:
            return None, []
        run = {"status": rows[0][0], "exit_code": rows[0][1], "ended_at": rows[0][2]}
        return run, [{"seq": r[3], "at": r[4], "event": r[5], "step": r[6], "host": r[7],
                      "data": json.loads(r[8]) if r[8] else None} for r in rows if r[3] is not None]

    def runs_changed(self, since: str, ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """What the live runs list polls: runs still going, started at or after ``since``, or
        among ``ids`` (those that were going at the last look), as ``runs`` lists them."""
        ids = list(ids)[:500]
        among = f" OR id IN ({', '.join('?' * len(ids))})" if ids else ""
        rows = self._read('SELECT id, "procedure", status, started_at, exit_code, dry_run, duration, "user", host, '
                          f"kind FROM runs WHERE status = 'running' OR started_at >= ?{among} "
                          "ORDER BY started_at DESC, id DESC LIMIT 500", (since, *ids))
        return [{"id": r[0], "procedure": r[1], "status": r[2], "started_at": r[3], "exit_code": r[4],
                 "dry_run": bool(r[5]), "duration": r[6], "user": r[7], "host": r[8], "kind": r[9] or "run"}
                for r in rows]

    def run_of_process(self, pid: int, since: str) -> str | None:
        """The run a process of this host recorded at or after ``since`` (runproc serve finds the
        run it started this way: a real run is recorded as it starts, a dry run as it ends)."""
        rows = self._read("SELECT id FROM runs WHERE pid = ? AND host = ? AND started_at >= ? "
                          "ORDER BY started_at DESC LIMIT 1", (pid, self.host, since))
        return str(rows[0][0]) if rows else None

    # ------------------------------------------------------------ answers to confirm steps

    def answer(self, run_id: str, step: str, request: int, answer: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Record ``answer`` ({approved, by, role, how, comment}) to a confirm step's request
        unless one is there already: (whether this one stands, the answer that stands)."""
        with self._mutex, self._tx() as run:
            stood = run("INSERT INTO approvals (run_id, step, request, approved, answered_by, role, how, comment, at, "
                        "host) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step, request) DO NOTHING",
                        (run_id, step, request, int(bool(answer.get("approved"))), answer.get("by"),
                         answer.get("role"), answer.get("how"), answer.get("comment"), now_iso(),
                         answer.get("host") or self.host)).rowcount
            standing = self._answer_row(run, run_id, step, request)
        assert standing is not None
        return bool(stood), standing

    def answer_of(self, run_id: str, step: str, request: int) -> dict[str, Any] | None:
        """The answer given to a confirm step's request, or None (what a waiting run polls)."""
        return self._answer_row(lambda sql, params: _Rows(self._read(sql, params)), run_id, step, request)

    def _answer_row(self, run: Exec, run_id: str, step: str, request: int) -> dict[str, Any] | None:
        row = run("SELECT approved, answered_by, role, how, comment, at, host FROM approvals "
                  "WHERE run_id = ? AND step = ? AND request = ?", (run_id, step, request)).fetchone()
        if row is None:
            return None
        return {"approved": bool(row[0]), "by": row[1], "role": row[2], "how": row[3], "comment": row[4],
                "at": row[5], "host": row[6]}

    # ------------------------------------------------------------ the audit of runproc serve

    AUDIT_KEYS = ("user", "role", "action", "run_id", "step", "result", "detail", "via", "host", "new_run")

    def audit(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Record one action done (or refused) through runproc serve: {user, role, action,
        run_id, step, result, detail, via, host, new_run}; the entry as stored, with its id
        and time. Bound parameters only: every value is data."""
        row = {k: (None if entry.get(k) is None else str(entry[k])[:2000]) for k in self.AUDIT_KEYS}
        row["result"] = row["result"] or "?"
        row["host"] = row["host"] or self.host
        at = now_iso()
        with self._mutex, self._tx() as run:
            got = run('INSERT INTO audit (at, "user", role, action, run_id, step, result, detail, via, host, new_run) '
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                      (at, *(row[k] for k in self.AUDIT_KEYS))).fetchone()
        return {"id": int(got[0]) if got and got[0] is not None else None, "at": at, **row}

    def audit_log(self, run_id: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """The audit, newest first (of one run when ``run_id`` is given: acted on, or started)."""
        where, params = ("WHERE run_id = ? OR new_run = ?", [run_id, run_id]) if run_id else ("", [])
        rows = self._read('SELECT id, at, "user", role, action, run_id, step, result, detail, via, host, new_run '
                          f"FROM audit {where} ORDER BY id DESC LIMIT ?", (*params, limit))
        keys = ("id", "at", *self.AUDIT_KEYS)
        return [dict(zip(keys, (r[0], r[1], *r[2:]), strict=True)) for r in rows]

    def process_of(self, run_id: str) -> dict[str, Any] | None:
        """Where a run's runner is: {status, host, pid, pid_start, alive} (alive: its process, on
        this host, is still the one that began the run), or None for no run. ``runproc serve``
        signals it to cancel the run."""
        rows = self._read(f"SELECT status, host, pid, pid_start, heartbeat_at, lease, {self.CLOCK} FROM runs "
                          "WHERE id = ?", (run_id,))
        if not rows:
            return None
        status, host, pid, pid_start, beat, lease, now = rows[0]
        here = host == self.host and pid is not None and pid != process.pid()
        return {"status": status, "host": host, "pid": pid, "pid_start": pid_start, "here": host == self.host,
                "alive": status == "running" and here and pid_alive(int(pid), pid_start)
                and self._alive(host, pid, pid_start, run_id, beat, lease, float(now))}

    def record(self, report: dict[str, Any], inputs: dict[str, Any] | None = None) -> None:
        """Record a run's report (at its end; a dry run's only then)."""
        from . import retention

        report = retention.stored_report(report)  # each step's output as the state keeps it: capped
        with self._mutex, self._tx() as run:
            values = (report["procedure"], report["status"], report["exit_code"], int(report["dry_run"]),
                      report["started_at"], report["duration"], json.dumps(report, default=str), now_iso(),
                      # a resume's report does not say its kind; its inputs do
                      report.get("kind") or (inputs or {}).get("kind") or "run",
                      report.get("of_run") or (inputs or {}).get("of_run"))
            updated = run('UPDATE runs SET "procedure" = ?, status = ?, exit_code = ?, dry_run = ?, started_at = ?, '
                          "duration = ?, report = ?, ended_at = ?, kind = ?, of_run = ? WHERE id = ?",
                          (*values, report["run_id"])).rowcount
            if not updated:
                run('INSERT INTO runs (id, "procedure", status, exit_code, dry_run, started_at, duration, report, '
                    'ended_at, kind, of_run, "user", host, pid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                    (report["run_id"], *values, report.get("user") or _user(), self.host, process.pid()))
            if inputs is not None:
                self._put_inputs(run, report["run_id"], inputs)
        with LIVE_LOCK:
            LIVE.discard(report["run_id"])
        retention.after_run(self, report["run_id"])  # the log limits, now the run is over

    def _put_inputs(self, run: Exec, run_id: str, inputs: dict[str, Any]) -> None:
        run("DELETE FROM run_inputs WHERE run_id = ?", (run_id,))
        run("INSERT INTO run_inputs (run_id, kind, of_run, inputs) VALUES (?, ?, ?, ?)",
            (run_id, inputs.get("kind") or "run", inputs.get("of_run"), json.dumps(inputs, default=str)))

    def inputs(self, run_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT inputs FROM run_inputs WHERE run_id = ?", (run_id,))
        if not rows or not rows[0][0]:
            return None
        inputs: dict[str, Any] = json.loads(rows[0][0])
        if "completed" not in inputs:
            # a run that never reached its end: the journal says what completed, in order
            from .recovery import completion

            inputs.update(completion(self.journal(run_id)))
        return inputs

    def replays_of(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._read("SELECT i.run_id, i.kind FROM run_inputs i JOIN runs r ON r.id = i.run_id "
                          "WHERE i.of_run = ? ORDER BY r.started_at", (run_id,))
        out = []
        for rid, kind in rows:
            report = self.show(rid)
            if report is not None:
                out.append({"id": rid, "kind": kind, "report": report})
        return out

    # ------------------------------------------------------------ history

    def runs(self, limit: int = 50, where: RunFilter | None = None) -> list[dict[str, Any]]:
        self.settle()
        f = where or RunFilter(limit=limit)
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (('"procedure"', f.procedure), ("status", f.status), ('"user"', f.user)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if f.since is not None:
            clauses.append("started_at >= ?")
            params.append(f.since)
        cond = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._read('SELECT id, "procedure", status, started_at, exit_code, dry_run, duration, "user", host, '
                          f"kind FROM runs {cond} ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
                          (*params, f.limit, f.offset))
        return [{"id": r[0], "procedure": r[1], "status": r[2], "started_at": r[3], "exit_code": r[4],
                 "dry_run": bool(r[5]), "duration": r[6], "user": r[7], "host": r[8], "kind": r[9] or "run"}
                for r in rows]

    def settle(self) -> list[str]:
        """Mark runs whose holder is gone ``interrupted``, their report rebuilt from the journal;
        their ids. A run still going stays ``running``."""
        rows = self._read(f"SELECT id, host, pid, pid_start, heartbeat_at, lease, {self.CLOCK} FROM runs "
                          "WHERE status = 'running'")
        gone = [r[0] for r in rows if not self._alive(r[1], r[2], r[3], r[0], r[4], r[5], float(r[6]))]
        for run_id in gone:
            self._mark_interrupted(run_id)
        return gone

    def _mark_interrupted(self, run_id: str) -> None:
        from .recovery import rebuild_report

        with self._mutex, self._tx() as run:
            row = run('SELECT report, host, pid, "user", status FROM runs WHERE id = ?', (run_id,)).fetchone()
            if row is None or row[4] != "running":
                return  # it ended meanwhile
            header = json.loads(row[0]) if row[0] else {}
            entries = [{"seq": r[0], "at": r[1], "event": r[2], "step": r[3], "host": r[4],
                        "data": json.loads(r[5]) if r[5] else None}
                       for r in run("SELECT seq, at, event, step, host, data FROM journal WHERE run_id = ? "
                                    "ORDER BY seq", (run_id,)).fetchall()]
            report = rebuild_report(header, entries, host=row[1], pid=row[2])
            run("UPDATE runs SET status = 'interrupted', report = ?, duration = ?, ended_at = ? WHERE id = ?",
                (json.dumps(report, default=str), report["duration"], entries[-1]["at"] if entries else None,
                 run_id))

    def show(self, run_id: str) -> dict[str, Any] | None:
        rows = self._read("SELECT id, status FROM runs WHERE id = ?", (run_id,))
        if not rows:
            pattern = run_id.replace("%", "").replace("_", "") + "%"
            rows = self._read("SELECT id, status FROM runs WHERE id LIKE ? ORDER BY started_at DESC", (pattern,))
        if not rows:
            return None
        rid, status = rows[0]
        if status == "running" and rid in self.settle():
            status = "interrupted"
        got = self._read('SELECT report, "user", host, pid FROM runs WHERE id = ?', (rid,))
        report: dict[str, Any] = json.loads(got[0][0]) if got and got[0][0] else {}
        if status == "running":
            from .recovery import rebuild_report

            report = rebuild_report(report, self.journal(rid), host=got[0][2], pid=got[0][3], running=True)
        report.setdefault("user", got[0][1])
        report.setdefault("host", got[0][2])
        return report

    def logs_dir(self) -> Path:
        return default_logs_dir()

    # ------------------------------------------------------------ retention
    # runproc prune, runproc state info and the log limits after each run (engine/state/retention.py).
    # Plain SQL with ? placeholders: the PostgreSQL store runs it as it is.

    def clock(self) -> float:
        """The store's clock (seconds since the epoch) that heartbeats are stamped with."""
        return self._now()

    def running_ids(self) -> set[str]:
        """Runs recorded as still going (their logs are never touched)."""
        return {r[0] for r in self._read("SELECT id FROM runs WHERE status = 'running'")}

    def prune(self, before: str, *, dry_run: bool = False) -> dict[str, Any]:
        """Delete the runs started before ``before`` (an ISO time, UTC) with their journal and
        inputs; never a run still going (one whose runner is gone is ``interrupted`` first, and
        goes). With ``dry_run``, only count. {run_ids, listed (id, procedure, started_at,
        status), runs, journal_entries, run_inputs, db_bytes (their reports, journal and
        inputs), running_kept}."""
        self.settle()
        old = "started_at < ? AND status <> 'running'"
        with self._mutex, self._tx() as run:
            listed = [{"id": r[0], "procedure": r[1], "started_at": r[2], "status": r[3]}
                      for r in run(f'SELECT id, "procedure", started_at, status FROM runs WHERE {old} '
                                   "ORDER BY started_at", (before,)).fetchall()]
            ids = [r["id"] for r in listed]
            kept = run("SELECT COUNT(*) FROM runs WHERE started_at < ? AND status = 'running'", (before,)).fetchone()[0]
            counts = {"runs": 0, "journal_entries": 0, "run_inputs": 0, "db_bytes": 0}
            # by id, in chunks: exactly the runs listed, within what one statement may bind
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ", ".join("?" * len(chunk))
                for table, key, column, name in (("journal", "run_id", "data", "journal_entries"),
                                                 ("run_inputs", "run_id", "inputs", "run_inputs"),
                                                 ("runs", "id", "report", "runs")):
                    n, size = run(f"SELECT COUNT(*), COALESCE(SUM(LENGTH({column})), 0) FROM {table} "
                                  f"WHERE {key} IN ({marks})", chunk).fetchone()
                    counts[name] += int(n)
                    counts["db_bytes"] += int(size)
                    if not dry_run:
                        run(f"DELETE FROM {table} WHERE {key} IN ({marks})", chunk)
                if not dry_run:  # the answers to their confirm steps (each is in its run's journal too)
                    run(f"DELETE FROM approvals WHERE run_id IN ({marks})", chunk)
        return {"run_ids": ids, "listed": listed, **counts, "running_kept": int(kept)}

    def info(self) -> dict[str, Any]:
        """What the state holds: schema version, runs by status, journal entries, locks, size."""
        self.settle()  # a run whose runner is gone counts as interrupted, as runproc runs shows it
        version = self._read("SELECT value FROM meta WHERE key = 'schema_version'")
        by_status = {r[0]: int(r[1]) for r in self._read("SELECT status, COUNT(*) FROM runs GROUP BY status "
                                                         "ORDER BY status")}
        span = self._read("SELECT MIN(started_at), MAX(started_at) FROM runs")[0]
        return {"schema_version": int(version[0][0]) if version else None,
                "runs": by_status, "runs_total": sum(by_status.values()),
                "oldest_run": span[0], "newest_run": span[1],
                "journal_entries": int(self._read("SELECT COUNT(*) FROM journal")[0][0]),
                "locks_held": int(self._read("SELECT COUNT(*) FROM locks")[0][0]),
                "lock_events": int(self._read("SELECT COUNT(*) FROM lock_events")[0][0]),
                "database": self.storage_size()}

    def storage_size(self) -> dict[str, Any]:
        """The database's size on disk: a SQLite file with its WAL, else the server's count
        (PostgreSQL: pg_database_size). {bytes, files?}"""
        path = getattr(self, "path", None)
        if isinstance(path, Path):
            files = {str(p): p.stat().st_size for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                     if p.exists()}
            return {"bytes": sum(files.values()), "files": files}
        try:
            return {"bytes": int(self._read("SELECT pg_database_size(current_database())")[0][0])}
        except Exception:  # noqa: BLE001 - a database that cannot say: the size is unknown
            return {"bytes": None}

    def run_meta(self, run_id: str) -> dict[str, Any] | None:
        """Who ran a run, where, and what it was (``runproc show``): the columns, not the report."""
        rows = self._read('SELECT id, "user", host, pid, kind, of_run, started_at, ended_at, status FROM runs '
                          "WHERE id = ?", (run_id,))
        if not rows:
            return None
        keys = ("id", "user", "host", "pid", "kind", "of_run", "started_at", "ended_at", "status")
        return dict(zip(keys, rows[0], strict=True))


class _Rows:
    """Rows already read, shaped as a cursor's ``fetchone`` (one query, inside or outside a transaction)."""

    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self.rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self.rows[0] if self.rows else None


def default_logs_dir() -> Path:
    from ..execution.store import state_home

    return state_home() / "logs"


def _user() -> str:
    from ..execution.store import user_name

    return user_name()


def _why_gone(holder: LockHolder, host: str) -> str:
    if holder.host == host and holder.pid is not None and not pid_alive(holder.pid, holder.pid_start):
        return "its process is gone"
    return f"its lease expired (no heartbeat for over {holder.lease or DEFAULT_LEASE:g}s)"


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (state first), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return stat[stat.rindex(")") + 2:].split()


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux clock ticks since boot): a reused pid has another one."""
    fields = _stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else None


def pid_alive(pid: int, pid_start: str | None = None) -> bool:
    """Whether ``pid`` is a live process of this machine (not a zombie), and the one that started at
    ``pid_start`` when that is given (a reused pid is another process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _stat(pid)
    if fields is not None and fields[0] in ("Z", "X"):
        return False  # killed, not yet reaped by its parent: it will never renew anything
    # a different start time: the pid was reused by a process that is not the holder
    return pid_start is None or fields is None or len(fields) <= 19 or fields[19] == pid_start


@functools.lru_cache(maxsize=16)
def _journal_insert(rows: int) -> str:
    """The INSERT of ``rows`` journal entries (the same text each time: the driver's cached
    statement)."""
    values = ", ".join(["(?, ?, ?, ?, ?, ?, ?)"] * rows)
    return f"INSERT INTO journal (run_id, seq, at, event, step, host, data) VALUES {values}"
