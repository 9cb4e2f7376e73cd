"""Run state: locks and run history, in SQLite (the default) at ``--state``/``RUNPROC_STATE``.

Default location: ``$XDG_STATE_HOME/runproc/state.db`` (``~/.local/state/runproc``).
A lock records the holder's pid, the pid's start time and the host; a lock whose process is
gone (or whose pid now belongs to another process) is reclaimed.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
from pathlib import Path
from typing import Any

from ..errors import Problem, ProcedureError
from ..execution.store import LockHolder, StateStore, StoreOpener

_SCHEMA = """
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, run_id TEXT, procedure TEXT, pid INTEGER,
                                  host TEXT, user TEXT, acquired_at TEXT, pid_start TEXT);
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, procedure TEXT, status TEXT, exit_code INTEGER,
                                 dry_run INTEGER, started_at TEXT, duration REAL, report TEXT);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at);
CREATE TABLE IF NOT EXISTS run_inputs (run_id TEXT PRIMARY KEY, kind TEXT NOT NULL DEFAULT 'run',
                                       of_run TEXT, inputs TEXT);
CREATE INDEX IF NOT EXISTS run_inputs_of ON run_inputs (of_run);
"""
# run_inputs is a side table rather than new columns of ``runs``: a state file written by an
# older runproc gains it through CREATE TABLE IF NOT EXISTS, and its runs simply have no row
# there (resume/rollback then say the run cannot be replayed). ``inputs`` is what a later
# ``runproc resume/rollback RUN`` needs (engine/replay.py writes and reads it); ``kind`` is
# run, resume or rollback; ``of_run`` the run a resume or rollback was made from.

# runs of this process that hold locks: a lock held by our own pid is live only if its run is
_LIVE: set[str] = set()
_LIVE_LOCK = threading.Lock()


def default_state_url() -> str:
    env = os.environ.get("RUNPROC_STATE")
    if env:
        return env
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return f"sqlite:///{Path(base) / 'runproc' / 'state.db'}"


def _state_problem(url: str, message: str, hint: str | None = None) -> ProcedureError:
    """A state URL that cannot be used: invalid input (exit 2), said in one line."""
    return ProcedureError(Problem("--state", 0, 0, f"state {url!r}: {message}", hint))


def state_path(url: str) -> Path:
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])  # sqlite:////abs/path keeps its leading slash
    if url.startswith("sqlite://"):
        raise _state_problem(url, "write sqlite:///relative/path or sqlite:////absolute/path")
    if "://" not in url:
        return Path(url)
    scheme = url.split("://", 1)[0]
    if scheme in ("postgresql", "postgres"):
        raise _state_problem(url, "PostgreSQL state is not supported by this runproc",
                             "use sqlite:///PATH (the default is $RUNPROC_STATE or the XDG state dir)")
    raise _state_problem(url, f"unsupported scheme {scheme + '://'!r}", "use sqlite:///PATH")


class _Opener:
    """Opens the SQLite store at ``url`` on first need; knows its logs folder without opening it."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.path = state_path(url or default_state_url())  # malformed: invalid input, now

    def __call__(self) -> SqliteStore:
        return open_store(self.url)

    def logs_dir(self) -> Path:
        return self.path.parent / "logs"


def store_opener(url: str | None = None) -> StoreOpener:
    """What opens the store at ``url`` when a run first needs it; a malformed URL is invalid
    input now (exit 2), before anything runs."""
    return _Opener(url)


def open_store(url: str | None = None) -> SqliteStore:
    """The state store at ``url``; an unusable one is invalid input (exit 2) before anything runs."""
    url = url or default_state_url()
    path = state_path(url)
    try:
        return SqliteStore(url)
    except (OSError, sqlite3.OperationalError) as exc:  # a folder it cannot create, a file it cannot open
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            reason = f"{exc.filename}: {exc.strerror}"  # the folder that could not be made, say
        else:
            reason = str(exc)
        raise _state_problem(url, f"cannot open {path}: {reason}") from None
    except sqlite3.DatabaseError as exc:  # not a database, or a corrupt one
        raise _state_problem(url, f"{path} is not a usable runproc state database ({exc})",
                             "move the file aside to start a new state") from None


class SqliteStore(StateStore):
    """The state store in one SQLite file (WAL): the default, for one machine."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_state_url()
        self.path = state_path(self.url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
        try:
            # WAL: readers never block the writer; NORMAL: no fsync per commit (WAL keeps it safe
            # against a crash of runproc, which is what a lock must survive)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(locks)")}
            if "pid_start" not in columns:  # a state file from before pid start times were kept
                self.db.execute("ALTER TABLE locks ADD COLUMN pid_start TEXT")
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def logs_dir(self) -> Path:
        return self.path.parent / "logs"

    def holder(self, name: str) -> LockHolder | None:
        """The live holder of a lock, or None."""
        row = self.db.execute("SELECT name, run_id, procedure, pid, host, user, acquired_at, pid_start "
                              "FROM locks WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        holder = LockHolder(*row)
        return holder if _alive(holder, socket.gethostname()) else None

    def acquire(self, name: str, run_id: str, procedure: str, user: str, acquired_at: str) -> LockHolder | None:
        """Take the lock; return the live holder instead when another run has it."""
        host = socket.gethostname()
        self.db.execute("BEGIN IMMEDIATE")
        try:
            row = self.db.execute("SELECT name, run_id, procedure, pid, host, user, acquired_at, pid_start "
                                  "FROM locks WHERE name = ?", (name,)).fetchone()
            if row is not None:
                holder = LockHolder(*row)
                if _alive(holder, host):
                    self.db.execute("ROLLBACK")
                    return holder
            self.db.execute("INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (name, run_id, procedure, os.getpid(), host, user, acquired_at,
                             _start_time(os.getpid())))
            with _LIVE_LOCK:
                _LIVE.add(run_id)
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return None

    def release(self, name: str, run_id: str) -> None:
        with _LIVE_LOCK:
            _LIVE.discard(run_id)
        self.db.execute("DELETE FROM locks WHERE name = ? AND run_id = ?", (name, run_id))

    def record(self, report: dict[str, Any], inputs: dict[str, Any] | None = None) -> None:
        """Record a finished run; ``inputs`` (engine/replay.py) makes it resumable and undoable."""
        self.db.execute("BEGIN IMMEDIATE")  # the report and its inputs together, or neither
        try:
            self.db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (report["run_id"], report["procedure"], report["status"], report["exit_code"],
                             int(report["dry_run"]), report["started_at"], report["duration"],
                             json.dumps(report, default=str)))
            if inputs is not None:
                self.db.execute("INSERT OR REPLACE INTO run_inputs VALUES (?, ?, ?, ?)",
                                (report["run_id"], inputs.get("kind") or "run", inputs.get("of_run"),
                                 json.dumps(inputs, default=str)))
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise

    def inputs(self, run_id: str) -> dict[str, Any] | None:
        """What was recorded to resume or roll back a run (its full id); None for runs without."""
        row = self.db.execute("SELECT inputs FROM run_inputs WHERE run_id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def replays_of(self, run_id: str) -> list[dict[str, Any]]:
        """The resumes and rollbacks made from a run, oldest first: {id, kind, report}."""
        rows = self.db.execute("SELECT i.run_id, i.kind, r.report FROM run_inputs i JOIN runs r ON r.id = i.run_id "
                               "WHERE i.of_run = ? ORDER BY r.started_at, r.rowid", (run_id,)).fetchall()
        return [{"id": r[0], "kind": r[1], "report": json.loads(r[2])} for r in rows]

    def lock_of(self, run_id: str) -> LockHolder | None:
        """The live lock a run holds, if any: a run holding its lock has not ended."""
        row = self.db.execute("SELECT name, run_id, procedure, pid, host, user, acquired_at, pid_start "
                              "FROM locks WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        holder = LockHolder(*row)
        return holder if _alive(holder, socket.gethostname()) else None

    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        # started_at has millisecond resolution; rowid orders two runs started in the same one
        rows = self.db.execute("SELECT id, procedure, status, started_at, exit_code, dry_run, duration FROM runs "
                               "ORDER BY started_at DESC, rowid DESC LIMIT ?", (limit,)).fetchall()
        return [{"id": r[0], "procedure": r[1], "status": r[2], "started_at": r[3], "exit_code": r[4],
                 "dry_run": bool(r[5]), "duration": r[6]} for r in rows]

    def show(self, run_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT report FROM runs WHERE id = ? OR id LIKE ? ORDER BY id = ? DESC",
                              (run_id, run_id.replace("%", "") + "%", run_id)).fetchone()
        return json.loads(row[0]) if row else None


def _start_time(pid: int) -> str | None:
    """The process's start time (Linux clock ticks since boot): a reused pid has another one."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _alive(holder: LockHolder, host: str) -> bool:
    if holder.host != host:
        return True  # another machine's lock: we cannot tell, so it holds
    if holder.pid == os.getpid():
        with _LIVE_LOCK:
            return holder.run_id in _LIVE  # this process: live only while that run is
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if holder.pid_start is not None:
        now = _start_time(holder.pid)
        if now is not None and now != holder.pid_start:
            return False  # the pid was reused by a process that is not the holder
    return True
