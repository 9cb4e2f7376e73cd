"""The state schema, as numbered migrations applied in order on first use.

Version 1 is the schema runproc wrote before the journal existed (locks, runs, run_inputs;
its oldest files lack ``locks.pid_start``). Each later version is a list of statements;
the store applies the missing ones in one transaction under its own lock, so that twenty
runproc processes opening a new PostgreSQL database at once migrate it once. A state whose
version is newer than ``SCHEMA_VERSION`` is refused (exit 2): an older runproc must not
write a schema it does not know.

Statements are written once for both databases: ``{real}`` is a float column, ``{serial}`` an
auto-numbered key. ``user`` and ``procedure`` are quoted where PostgreSQL reserves them.
"""

from __future__ import annotations

SCHEMA_VERSION = 5

# version 1: what runproc 0.1 created (CREATE ... IF NOT EXISTS: a version-1 file keeps its rows)
V1 = [
    'CREATE TABLE IF NOT EXISTS locks (name TEXT PRIMARY KEY, run_id TEXT, "procedure" TEXT, pid INTEGER, '
    'host TEXT, "user" TEXT, acquired_at TEXT, pid_start TEXT)',
    'CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, "procedure" TEXT, status TEXT, exit_code INTEGER, '
    'dry_run INTEGER, started_at TEXT, duration {real}, report TEXT)',
    "CREATE INDEX IF NOT EXISTS runs_started ON runs (started_at)",
    "CREATE TABLE IF NOT EXISTS run_inputs (run_id TEXT PRIMARY KEY, kind TEXT NOT NULL DEFAULT 'run', "
    "of_run TEXT, inputs TEXT)",
    "CREATE INDEX IF NOT EXISTS run_inputs_of ON run_inputs (of_run)",
]

# version 2: the write-ahead journal, leased locks and their audit, who ran what where
V2 = [
    # who and where, for `runproc runs --user` and for telling a crashed run from a live one
    'ALTER TABLE runs ADD COLUMN "user" TEXT',
    "ALTER TABLE runs ADD COLUMN host TEXT",
    "ALTER TABLE runs ADD COLUMN pid INTEGER",
    "ALTER TABLE runs ADD COLUMN pid_start TEXT",
    "ALTER TABLE runs ADD COLUMN heartbeat_at {real}",
    "ALTER TABLE runs ADD COLUMN lease {real}",
    "ALTER TABLE runs ADD COLUMN kind TEXT",
    "ALTER TABLE runs ADD COLUMN of_run TEXT",
    "ALTER TABLE runs ADD COLUMN ended_at TEXT",
    "CREATE INDEX IF NOT EXISTS runs_status ON runs (status)",
    'CREATE INDEX IF NOT EXISTS runs_procedure ON runs ("procedure", started_at)',
    # one row per transition, committed before the next side effect starts
    "CREATE TABLE IF NOT EXISTS journal (run_id TEXT NOT NULL, seq INTEGER NOT NULL, at TEXT NOT NULL, "
    "event TEXT NOT NULL, step TEXT, host TEXT, data TEXT, PRIMARY KEY (run_id, seq))",
    "ALTER TABLE locks ADD COLUMN heartbeat_at {real}",
    "ALTER TABLE locks ADD COLUMN lease {real}",
    # acquired, released, taken over (from a holder that stopped renewing), broken (runproc unlock)
    "CREATE TABLE IF NOT EXISTS lock_events (id {serial}, name TEXT NOT NULL, event TEXT NOT NULL, "
    'run_id TEXT, "user" TEXT, host TEXT, at TEXT NOT NULL, detail TEXT)',
    "CREATE INDEX IF NOT EXISTS lock_events_name ON lock_events (name, at)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)",
]

# version 3: answers to confirm steps given beside the run's terminal (runproc approve, the web
# page). The waiting run polls for the answer to its request (the seq of its journal's `waiting`
# entry); the key lets one answer stand per request, the first.
V3 = [
    "CREATE TABLE IF NOT EXISTS approvals (run_id TEXT NOT NULL, step TEXT NOT NULL, request INTEGER NOT NULL, "
    "approved INTEGER NOT NULL, answered_by TEXT, role TEXT, how TEXT, comment TEXT, at TEXT NOT NULL, "
    "host TEXT, PRIMARY KEY (run_id, step, request))",
]

# version 4: schedules (runproc schedule add; a procedure's schedule: needs no row here), one row
# per slot a scheduler evaluated (the key lets one scheduler fire a slot even when two share the
# state), and Alertmanager's alert groups (one run per group while it fires)
V4 = [
    "CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, file TEXT NOT NULL, cron TEXT NOT NULL, "
    "timezone TEXT NOT NULL, params TEXT, overlap TEXT NOT NULL, catch_up TEXT NOT NULL, created_at TEXT NOT NULL, "
    "created_by TEXT)",
    "CREATE TABLE IF NOT EXISTS schedule_fires (schedule TEXT NOT NULL, slot TEXT NOT NULL, outcome TEXT NOT NULL, "
    "at TEXT NOT NULL, run_id TEXT, pid INTEGER, host TEXT, detail TEXT, PRIMARY KEY (schedule, slot))",
    "CREATE TABLE IF NOT EXISTS alert_groups (group_key TEXT PRIMARY KEY, rule TEXT, status TEXT NOT NULL, "
    "run_id TEXT, started_at TEXT, updated_at TEXT NOT NULL, received_by TEXT, detail TEXT)",
]

# version 5: the audit of what was done through runproc serve (docs/web.md): each action (start,
# answer, resume, retry, rollback, cancel) and each refused attempt, who, when, on which run, and
# what came of it
V5 = [
    'CREATE TABLE IF NOT EXISTS audit (id {serial}, at TEXT NOT NULL, "user" TEXT, role TEXT, action TEXT NOT NULL, '
    "run_id TEXT, step TEXT, result TEXT NOT NULL, detail TEXT, via TEXT, host TEXT, new_run TEXT)",
    "CREATE INDEX IF NOT EXISTS audit_run ON audit (run_id, id)",
]

MIGRATIONS: dict[int, list[str]] = {1: V1, 2: V2, 3: V3, 4: V4, 5: V5}
