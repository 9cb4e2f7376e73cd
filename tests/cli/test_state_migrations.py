"""The state schema migrates on first use: a state written by runproc 0.1 (schema version 1)
upgrades in place, its runs kept, in SQLite and in PostgreSQL; twenty processes opening a new
PostgreSQL database at once migrate it once. A state newer than this runproc, or a file that
is not a database, is one line naming it, exit 2, nothing run."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

from engine.state.migrations import SCHEMA_VERSION
from tests.helpers.cli import RUNPROC, Done, child_env, runproc, write

TOUCH = """
procedure: touches
lock: db-primary
steps:
  - id: touch
    shell: touch touched
"""

OLD_ID = "0ld0ld0ld0ld"
# a run as runproc 0.1 recorded it: RunResult.to_json() of the time, in runs.report
OLD_REPORT = {
    "procedure": "old-deploy", "run_id": OLD_ID, "status": "ok", "exit_code": 0, "dry_run": False,
    "started_at": "2025-06-01T10:00:00.000Z", "duration": 1.25, "error": None, "root_cause": None,
    "rolled_back": [], "not_undone": [], "kept": ["migrate"],
    "steps": [{"id": "migrate", "status": "ok", "phase": "step", "started_at": "2025-06-01T10:00:00.100Z",
               "duration": 1.1, "attempts": 1, "error": None, "action": "echo migrate", "rc": 0,
               "stdout": "migrate\n", "stderr": ""}],
}

# runproc 0.1's schema: locks without pid_start (its oldest form), runs; no run_inputs, no meta
V1_SQLITE = """
CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, run_id TEXT, procedure TEXT, pid INTEGER,
                                  host TEXT, user TEXT, acquired_at TEXT);
CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, procedure TEXT, status TEXT, exit_code INTEGER,
                                 dry_run INTEGER, started_at TEXT, duration REAL, report TEXT);
"""
V1_POSTGRES = """
CREATE TABLE locks (name TEXT PRIMARY KEY, run_id TEXT, "procedure" TEXT, pid INTEGER,
                    host TEXT, "user" TEXT, acquired_at TEXT);
CREATE TABLE runs (id TEXT PRIMARY KEY, "procedure" TEXT, status TEXT, exit_code INTEGER,
                   dry_run INTEGER, started_at TEXT, duration DOUBLE PRECISION, report TEXT);
"""


def _dead_pid() -> int:
    """The pid of a process that has ended (its lock is stale)."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _env(tmp: Path) -> dict[str, str]:
    return {"XDG_STATE_HOME": str(tmp / "xdg")}


def _with(tmp: Path, url: str, *args: str) -> Done:
    return runproc(tmp, *args, "--state", url, state=False, env=_env(tmp))


def _one_line(done: Done) -> str:
    output = done.stdout + done.stderr
    assert done.rc == 2, output
    assert "Traceback" not in output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


def _upgraded_in_place(tmp: Path, url: str) -> None:
    """The old run is listed and shown; a new run (taking over the old stale lock) is recorded."""
    listed = _with(tmp, url, "runs", "--output", "json")
    assert listed.rc == 0, listed.stderr
    assert [(r["id"], r["status"], r["procedure"]) for r in json.loads(listed.stdout)] == [(OLD_ID, "ok", "old-deploy")]
    text = _with(tmp, url, "runs")
    assert text.rc == 0 and OLD_ID in text.stdout
    shown = _with(tmp, url, "show", OLD_ID, "--output", "json")
    assert shown.rc == 0, shown.stderr
    assert shown.json["run_id"] == OLD_ID and shown.json["steps"][0]["id"] == "migrate"
    shown_text = _with(tmp, url, "show", OLD_ID[:6], "--output", "text")
    assert shown_text.rc == 0, shown_text.stderr
    assert OLD_ID in shown_text.stdout and "migrate" in shown_text.stdout
    path = write(tmp, TOUCH)
    done = _with(tmp, url, str(path), "--output", "json")
    assert done.rc == 0, done.stdout + done.stderr  # the old lock's holder is gone: taken over
    assert (tmp / "touched").exists()
    ids = [r["id"] for r in json.loads(_with(tmp, url, "runs", "--output", "json").stdout)]
    assert ids == [done.json["run_id"], OLD_ID]
    journal = _with(tmp, url, "show", done.json["run_id"], "--output", "json")
    assert journal.json["status"] == "ok"


# ---------------------------------------------------------------- SQLite


def test_a_version_1_sqlite_state_upgrades_in_place(tmp_path: Path) -> None:
    db_path = tmp_path / "state.db"
    db = sqlite3.connect(db_path)
    with db:
        db.executescript(V1_SQLITE)
        db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (OLD_ID, "old-deploy", "ok", 0, 0, OLD_REPORT["started_at"], 1.25, json.dumps(OLD_REPORT)))
        db.execute("INSERT INTO locks VALUES (?, ?, ?, ?, ?, ?, ?)",
                   ("db-primary", "deadbeef0000", "old-deploy", _dead_pid(), socket.gethostname(), "ghost",
                    "2025-06-01T10:00:00Z"))
    db.close()
    _upgraded_in_place(tmp_path, f"sqlite:///{db_path}")
    db = sqlite3.connect(db_path)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall() == [(str(SCHEMA_VERSION),)]
        lock_columns = {r[1] for r in db.execute("PRAGMA table_info(locks)")}
        assert {"pid_start", "heartbeat_at", "lease"} <= lock_columns
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"journal", "run_inputs", "lock_events", "meta"} <= tables
        events = [r[0] for r in db.execute("SELECT event FROM lock_events ORDER BY id")]
        assert events == ["taken_over", "acquired", "released"]
    finally:
        db.close()


def test_a_sqlite_state_newer_than_this_runproc_is_refused_naming_the_file(tmp_path: Path) -> None:
    db_path = tmp_path / "state.db"
    url = f"sqlite:///{db_path}"
    assert _with(tmp_path, url, "runs").rc == 0  # a state of the current schema
    db = sqlite3.connect(db_path)
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    path = write(tmp_path, TOUCH)
    line = _one_line(_with(tmp_path, url, str(path)))
    assert str(db_path) in line and "99" in line and "upgrade runproc" in line
    assert not (tmp_path / "touched").exists()
    assert _one_line(_with(tmp_path, url, "runs")) == line
    db = sqlite3.connect(db_path)
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("99",)  # untouched
    db.close()


def test_a_corrupt_sqlite_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    db_path = tmp_path / "state.db"
    garbage = b"\x00\xffnot sqlite" + os.urandom(8192)
    db_path.write_bytes(garbage)
    path = write(tmp_path, TOUCH)
    for args in ([str(path)], ["runs"], ["show", OLD_ID]):
        line = _one_line(_with(tmp_path, f"sqlite:///{db_path}", *args))
        assert line.startswith("--state: ") and str(db_path) in line
    assert not (tmp_path / "touched").exists()
    assert db_path.read_bytes() == garbage  # left as it was, for a person to look at


# ---------------------------------------------------------------- PostgreSQL


def _psql(dsn: str, sql: str) -> str:
    from tests.servers.postgres import find_pg_bin_dir

    out = subprocess.run([str(find_pg_bin_dir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          "-d", dsn, "-c", sql], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in child_env().items() if not k.startswith("PG")})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_version_1_postgresql_state_upgrades_in_place(tmp_path: Path, pg_db: str) -> None:
    report = json.dumps(OLD_REPORT).replace("'", "''")
    _psql(pg_db, V1_POSTGRES
          + f"INSERT INTO runs VALUES ('{OLD_ID}', 'old-deploy', 'ok', 0, 0, '{OLD_REPORT['started_at']}', 1.25, "
            f"'{report}');"
          + f"INSERT INTO locks VALUES ('db-primary', 'deadbeef0000', 'old-deploy', {_dead_pid()}, "
            f"'{socket.gethostname()}', 'ghost', '2025-06-01T10:00:00Z');")
    _upgraded_in_place(tmp_path, pg_db)
    assert _psql(pg_db, "SELECT value FROM meta WHERE key = 'schema_version'") == str(SCHEMA_VERSION)
    columns = set(_psql(pg_db, "SELECT column_name FROM information_schema.columns "
                               "WHERE table_name = 'locks'").split())
    assert {"pid_start", "heartbeat_at", "lease"} <= columns
    assert _psql(pg_db, "SELECT string_agg(event, ',' ORDER BY id) FROM lock_events") == "taken_over,acquired,released"


def test_twenty_processes_opening_a_new_postgresql_state_at_once_migrate_it_once(tmp_path: Path,
                                                                                  pg_db: str) -> None:
    procs = [subprocess.Popen([*RUNPROC, "runs", "--output", "json", "--state", pg_db], cwd=tmp_path,
                              env=child_env(_env(tmp_path)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, text=True) for _ in range(20)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    for rc, out, err in results:
        assert rc == 0, err
        assert json.loads(out) == [] and err == ""
    assert _psql(pg_db, "SELECT count(*), min(value) FROM meta WHERE key = 'schema_version'") == f"1|{SCHEMA_VERSION}"
    tables = set(_psql(pg_db, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'").split())
    assert tables == {"locks", "runs", "run_inputs", "journal", "lock_events", "meta", "approvals", "schedules", "audit",
                      "schedule_fires", "alert_groups"}
