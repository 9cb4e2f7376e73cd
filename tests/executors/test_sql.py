"""The sql executor against a real PostgreSQL server (tests/servers/postgres.py) and SQLite files.

Procedures are written to ``tmp_path`` and run through ``engine.run``; the assertions read the
database afterwards (psql, sqlite3) and the RunResult as a user sees it.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.api import prepare
from engine.executors.base import Effect
from engine.executors.sql import SqlExecutor, SqlOptions, split_statements
from engine.format.expressions import SqlParam, render_sql
from tests.servers._common import free_port
from tests.servers.postgres import PostgresServer

INJECTION = "'); DROP TABLE t; --"


def run(tmp_path: Path, text: str, **options: Any) -> engine.RunResult:
    path = tmp_path / "proc.yml"
    path.write_text(textwrap.dedent(text))
    return engine.run(path, state=f"sqlite:///{tmp_path}/state.db", **options)


@dataclass
class Db:
    dsn: str
    name: str
    psql: Callable[[str], str]


@pytest.fixture
def db(pg_db: str, postgres_server: PostgresServer) -> Db:
    name = pg_db.rsplit("/", 1)[1]
    return Db(pg_db, name, lambda sql: postgres_server.psql(sql, dbname=name))


def pg_proc(db: Db, steps: str, *, extra: str = "", conn_extra: str = "") -> str:
    """A procedure with one postgres connection ``db``; ``steps`` is the YAML of the steps list."""
    return (f"procedure: pg-test\n{extra}connections:\n  db: {{postgres: \"{db.dsn}\"{conn_extra}}}\n"
            + "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  "))


# ---------------------------------------------------------------- PostgreSQL: values stay data


def test_pg_injection_through_a_param_is_inserted_literally(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (name text)")
    text = pg_proc(db, """
        - id: insert
          sql: INSERT INTO t (name) VALUES ({{ params.name }})
        """, extra="params:\n  name: {type: str, required: true}\n")
    result = run(tmp_path, text, params={"name": INJECTION})
    assert result.status == "ok", result.error
    assert db.psql("SELECT name FROM t") == INJECTION
    assert db.psql("SELECT count(*) FROM t") == "1"  # the table is intact
    # the plan shows the value as a quoted literal, not as SQL
    assert result.steps["insert"].description == "sql[db]: INSERT INTO t (name) VALUES ('''); DROP TABLE t; --')"


def test_pg_ident_quotes_identifiers(tmp_path: Path, db: Db) -> None:
    text = pg_proc(db, """
        - id: create
          sql: |
            CREATE TABLE {{ params.table | ident }} (id int);
            INSERT INTO {{ params.table | ident }} VALUES ({{ params.n }}), ({{ params.n + 1 }});
        - id: count
          sql: SELECT count(*) FROM {{ params.table | ident }} WHERE id >= {{ params.n }}
          readonly: true
        """, extra="params:\n  table: {type: str}\n  n: {type: int}\n")
    result = run(tmp_path, text, params={"table": 'odd "name"; DROP', "n": 7})
    assert result.status == "ok", result.error
    assert result.steps["create"].fields["rowcount"] == 2
    assert result.steps["count"].fields["scalar"] == 2
    assert db.psql('SELECT count(*) FROM "odd ""name""; DROP"') == "2"


def test_pg_value_inside_quotes_is_refused_with_advice(tmp_path: Path, db: Db) -> None:
    text = pg_proc(db, """
        - id: q
          sql: SELECT '{{ params.x }}'
        """, extra="params:\n  x: {type: str, default: a}\n")
    result = run(tmp_path, text)
    assert result.steps["q"].status == "failed"
    assert "inside a quoted string" in result.steps["q"].error
    assert "without quotes" in result.steps["q"].error


# ---------------------------------------------------------------- PostgreSQL: safety


def test_pg_readonly_step_that_writes_fails_and_writes_nothing(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (name text)")
    text = pg_proc(db, """
        - id: sneaky
          sql: INSERT INTO t VALUES ('x')
          readonly: true
        """)
    result = run(tmp_path, text)
    step = result.steps["sneaky"]
    assert step.status == "failed"
    assert "SQLSTATE 25006" in step.error and "read-only transaction" in step.error
    assert result.exit_code == 1
    assert db.psql("SELECT count(*) FROM t") == "0"


def test_pg_max_rows_rolls_back_and_fails(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 5)")
    text = pg_proc(db, """
        - id: bump
          sql: UPDATE t SET v = v + 100
          max_rows: 2
        """)
    result = run(tmp_path, text)
    step = result.steps["bump"]
    assert step.status == "failed"
    assert step.error == "5 rows would change, more than max_rows 2; rolled back, nothing changed"
    assert db.psql("SELECT sum(v) FROM t") == "15"


def test_pg_max_rows_within_limit_commits(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 5)")
    text = pg_proc(db, """
        - id: bump
          sql: UPDATE t SET v = v + 100 WHERE v <= 2
          max_rows: 2
        """)
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    assert result.steps["bump"].fields["rowcount"] == 2
    assert db.psql("SELECT sum(v) FROM t") == "215"


def test_pg_dry_run_transaction_reports_rowcount_and_changes_nothing(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (v int); INSERT INTO t SELECT generate_series(1, 5)")
    text = pg_proc(db, """
        - id: purge
          sql: DELETE FROM t WHERE v > 2
          dry_run: transaction
        """)
    result = run(tmp_path, text, dry_run=True)
    step = result.steps["purge"]
    assert result.status == "planned"
    assert step.status == "planned"
    assert step.fields["rowcount"] == 3
    assert any("rehearsed" in n for n in step.notes)
    assert db.psql("SELECT count(*) FROM t") == "5"


def test_pg_dry_run_plans_writes_and_runs_readonly_steps(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
    text = pg_proc(db, """
        - id: current
          sql: SELECT max(v) AS v FROM t
          readonly: true
        - id: write
          sql: INSERT INTO t VALUES (2)
        """)
    result = run(tmp_path, text, dry_run=True)
    assert result.status == "planned", result.error
    assert result.steps["current"].status == "ok"
    assert result.steps["current"].fields["scalar"] == 1
    write = result.steps["write"]
    assert write.status == "planned"
    assert write.fields == {}
    assert write.description == "sql[db]: INSERT INTO t VALUES (2)"
    assert db.psql("SELECT count(*) FROM t") == "1"


def test_pg_rollback_of_a_failed_run_runs_the_sql_rollback(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (name text)")
    text = pg_proc(db, """
        - id: insert
          sql: INSERT INTO t VALUES ('one')
          rollback:
            sql: DELETE FROM t WHERE name = 'one'
        - id: broken
          sql: SELECT * FROM missing_table
        """)
    result = run(tmp_path, text)
    assert result.status == "failed"
    assert result.exit_code == 1
    assert result.steps["insert"].status == "rolled_back"
    assert result.steps["broken"].status == "failed"
    assert result.steps["broken"].error.startswith('SQLSTATE 42P01: relation "missing_table" does not exist')
    assert db.psql("SELECT count(*) FROM t") == "0"


def test_pg_failed_step_rolls_back_its_own_transaction(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (v int PRIMARY KEY)")
    text = pg_proc(db, """
        - id: two
          sql: INSERT INTO t VALUES (1); INSERT INTO t VALUES (1)
        """)
    result = run(tmp_path, text)
    assert result.steps["two"].status == "failed"
    assert "SQLSTATE 23505" in result.steps["two"].error
    assert "DETAIL: Key (v)=(1) already exists." in result.steps["two"].error
    assert db.psql("SELECT count(*) FROM t") == "0"  # the first INSERT went with the transaction


def test_pg_commit_inside_a_step_is_refused(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (v int)")
    text = pg_proc(db, """
        - id: manual
          sql: BEGIN; INSERT INTO t VALUES (1); COMMIT;
        """)
    result = run(tmp_path, text)
    assert result.steps["manual"].status == "failed"
    assert "BEGIN inside a sql step" in result.steps["manual"].error
    assert db.psql("SELECT count(*) FROM t") == "0"


# ---------------------------------------------------------------- PostgreSQL: timeouts


def test_pg_statement_timeout_of_the_connection(tmp_path: Path, db: Db) -> None:
    text = pg_proc(db, """
        - id: slow
          sql: SELECT pg_sleep(5)
        """, conn_extra=", statement_timeout: 1s")
    t0 = time.monotonic()
    result = run(tmp_path, text)
    assert time.monotonic() - t0 < 4
    step = result.steps["slow"]
    assert step.status == "failed"
    assert step.error.startswith("SQLSTATE 57014: canceling statement due to statement timeout")


def test_pg_step_timeout_cancels_the_query_on_the_server(tmp_path: Path, db: Db, postgres_server: PostgresServer) -> None:
    text = pg_proc(db, """
        - id: slow
          sql: SELECT pg_sleep(30) AS runproc_marker
          timeout: 1s
        - id: after
          needs: []
          sql: SELECT 1
        """)
    t0 = time.monotonic()
    result = run(tmp_path, text)
    assert time.monotonic() - t0 < 6
    step = result.steps["slow"]
    assert step.status == "timed_out"
    assert "cancelled on the server" in step.error
    lingering = postgres_server.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%runproc_marker%' "
        "AND pid <> pg_backend_pid()")
    assert lingering == "0"


def test_pg_interrupt_cancels_the_query_on_the_server(tmp_path: Path, db: Db,
                                                      postgres_server: PostgresServer) -> None:
    path = tmp_path / "proc.yml"
    path.write_text(pg_proc(db, """
        - id: slow
          sql: SELECT pg_sleep(30) AS runproc_interrupt_marker
        """))
    the_run = prepare(engine.load(path), state=f"sqlite:///{tmp_path}/state.db")
    threading.Timer(0.7, the_run.interrupt).start()  # as the first SIGINT does
    t0 = time.monotonic()
    result = the_run.execute()
    assert time.monotonic() - t0 < 6
    assert result.status == "interrupted"
    assert result.steps["slow"].status == "cancelled"
    lingering = postgres_server.psql(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%runproc_interrupt_marker%' "
        "AND pid <> pg_backend_pid()")
    assert lingering == "0"


# ---------------------------------------------------------------- PostgreSQL: connections


def test_pg_unreachable_server_in_a_precondition_refuses_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPROC_TEST_PG_PASSWORD", "hunter2-secret")
    port = free_port()
    text = f"""
        procedure: unreachable
        secrets:
          pw: {{env: RUNPROC_TEST_PG_PASSWORD}}
        connections:
          db: {{postgres: "postgresql://monitor@127.0.0.1:{port}/app", password: "{{{{ secrets.pw }}}}", connect_timeout: 2s}}
        preconditions:
          - name: primary is reachable
            sql: SELECT 1
        steps:
          - id: write
            sql: INSERT INTO t VALUES (1)
        """
    result = run(tmp_path, text)
    assert result.status == "refused"
    assert result.exit_code == 3
    assert result.steps["write"].status == "cancelled"
    assert "precondition failed: primary is reachable" in result.error
    assert f"cannot connect to postgres 'db' (127.0.0.1:{port}/app as monitor)" in result.error
    assert "hunter2" not in json.dumps(result.to_json())


def test_pg_connection_is_reused_across_steps(tmp_path: Path, db: Db) -> None:
    text = pg_proc(db, """
        - id: a
          sql: SELECT pg_backend_pid()
          readonly: true
        - id: b
          sql: SELECT pg_backend_pid()
        - id: same
          assert: steps.a.scalar == steps.b.scalar
        """)
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    assert isinstance(result.steps["a"].fields["scalar"], int)
    assert result.steps["a"].fields["scalar"] == result.steps["b"].fields["scalar"]


def test_pg_password_from_a_secret_is_used(tmp_path: Path, postgres_server: PostgresServer,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # the test server trusts everyone, so check that the password reached libpq's conninfo
    monkeypatch.setenv("RUNPROC_TEST_PG_PASSWORD", "s3cret-value")
    text = f"""
        procedure: pw
        secrets:
          pw: {{env: RUNPROC_TEST_PG_PASSWORD}}
        connections:
          db: {{postgres: "{postgres_server.dsn}", password: "{{{{ secrets.pw }}}}"}}
        steps:
          - id: who
            sql: SELECT current_user, {{{{ secrets.pw }}}} AS echoed
            readonly: true
        """
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    assert result.steps["who"].fields["rows"] == [{"current_user": "postgres", "echoed": "***"}]
    assert "s3cret-value" not in json.dumps(result.to_json())
    assert "s3cret-value" not in (result.steps["who"].description or "")


# ---------------------------------------------------------------- PostgreSQL: results


def test_pg_result_fields(tmp_path: Path, db: Db) -> None:
    db.psql("""
        CREATE TABLE item (id int, name text, price numeric(8,2), qty numeric, created timestamptz,
                           uid uuid, raw bytea, doc jsonb, tags text[]);
        INSERT INTO item VALUES
          (1, 'a', 9.50, 3, '2024-01-02 03:04:05+00', '8f2b1f5e-3c1a-4d2e-9b0a-1c2d3e4f5a6b', '\\x00ff',
           '{"k": [1, 2]}', '{x,y}'),
          (2, 'b', NULL, NULL, NULL, NULL, NULL, NULL, NULL)
    """)
    text = pg_proc(db, """
        - id: q
          sql: SELECT id, name, price, qty, created, uid, raw, doc, tags FROM item ORDER BY id
          readonly: true
          verify:
            - sql: SELECT count(*) FROM item
              expect: result.scalar == 2 and result.rows[0].count == 2
        """)
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    fields = result.steps["q"].fields
    assert fields["columns"] == ["id", "name", "price", "qty", "created", "uid", "raw", "doc", "tags"]
    assert fields["rowcount"] == 2
    assert fields["scalar"] == 1
    assert fields["rows"][0] == {
        "id": 1, "name": "a", "price": 9.5, "qty": 3, "created": "2024-01-02T03:04:05+00:00",
        "uid": "8f2b1f5e-3c1a-4d2e-9b0a-1c2d3e4f5a6b", "raw": "\\x00ff", "doc": {"k": [1, 2]},
        "tags": ["x", "y"]}
    assert fields["rows"][1]["price"] is None
    json.dumps(result.to_json())  # JSON-safe all the way down


def test_pg_multiple_statements_with_and_without_values(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (v int, note text)")
    text = pg_proc(db, """
        - id: plain
          sql: |
            INSERT INTO t VALUES (1, '50% off; really');
            INSERT INTO t VALUES (2, $$a ; b$$);
            SELECT count(*) FROM t;
        - id: bound
          sql: |
            -- a comment; with a semicolon
            INSERT INTO t VALUES ({{ params.v }}, '100%');
            UPDATE t SET note = {{ params.note }} WHERE v = {{ params.v }};
            SELECT v, note FROM t WHERE note LIKE '%;%' ORDER BY v;
        """, extra="params:\n  v: {type: int, default: 3}\n  note: {type: str, default: 'x;y'}\n")
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    plain = result.steps["plain"].fields
    assert plain["rowcount"] == 2  # rows changed by the INSERTs
    assert plain["scalar"] == 2
    bound = result.steps["bound"].fields
    assert bound["rowcount"] == 2  # one INSERT + one UPDATE
    assert bound["rows"] == [{"v": 1, "note": "50% off; really"}, {"v": 2, "note": "a ; b"},
                             {"v": 3, "note": "x;y"}]


def test_pg_autocommit_create_and_drop_database(tmp_path: Path, postgres_server: PostgresServer) -> None:
    name = f"scratch_{int(time.time() * 1000) % 10**9}"
    text = f"""
        procedure: scratch-db
        params:
          name: {{type: str, default: {name}}}
        connections:
          admin: {{postgres: "{postgres_server.dsn}"}}
        steps:
          - id: create
            sql: CREATE DATABASE {{{{ params.name | ident }}}}
            autocommit: true
          - id: exists
            sql: SELECT count(*) FROM pg_database WHERE datname = {{{{ params.name }}}}
            readonly: true
        finally:
          - id: drop
            sql: DROP DATABASE IF EXISTS {{{{ params.name | ident }}}}
            autocommit: true
        """
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    assert result.steps["exists"].fields["scalar"] == 1
    assert result.steps["drop"].status == "ok"
    assert postgres_server.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{name}'") == "0"


def test_pg_create_database_without_autocommit_says_what_to_do(tmp_path: Path, postgres_server: PostgresServer) -> None:
    text = f"""
        procedure: scratch-db
        connections:
          admin: {{postgres: "{postgres_server.dsn}"}}
        steps:
          - id: create
            sql: CREATE DATABASE never_created
        """
    result = run(tmp_path, text)
    error = result.steps["create"].error
    assert error.startswith("SQLSTATE 25001: CREATE DATABASE cannot run inside a transaction block")
    assert "set autocommit: true" in error


def test_pg_steps_on_one_connection_take_turns(tmp_path: Path, db: Db) -> None:
    db.psql("CREATE TABLE t (v int)")
    steps = "".join(f"""
        - id: s{i}
          needs: []
          sql: INSERT INTO t SELECT {i} FROM pg_sleep(0.2)
        """ for i in range(3))
    result = run(tmp_path, pg_proc(db, steps))
    assert result.status == "ok", result.error
    assert db.psql("SELECT count(*) FROM t") == "3"


# ---------------------------------------------------------------- SQLite


def sqlite_proc(steps: str, *, path: str = "./data/app.db", extra: str = "") -> str:
    return (f"procedure: lite-test\n{extra}connections:\n  local: {{sqlite: {path}}}\n"
            + "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  "))


@pytest.fixture
def lite(tmp_path: Path) -> sqlite3.Connection:
    """The SQLite file the procedures use (./data/app.db next to the procedure), with table t."""
    (tmp_path / "data").mkdir()
    conn = sqlite3.connect(tmp_path / "data" / "app.db", isolation_level=None)
    conn.execute("CREATE TABLE t (v INTEGER, name TEXT)")
    conn.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')")
    return conn


def count(conn: sqlite3.Connection, where: str = "1") -> int:
    return conn.execute(f"SELECT count(*) FROM t WHERE {where}").fetchone()[0]


def test_sqlite_injection_through_a_param_is_inserted_literally(tmp_path: Path, lite: sqlite3.Connection) -> None:
    text = sqlite_proc("""
        - id: insert
          sql: INSERT INTO t (v, name) VALUES (9, {{ params.name }})
        - id: read
          sql: SELECT name FROM {{ params.table | ident }} WHERE v = {{ params.v }}
          readonly: true
        """, extra="params:\n  name: {type: str}\n  table: {type: str, default: t}\n  v: {type: int, default: 9}\n")
    result = run(tmp_path, text, params={"name": INJECTION})
    assert result.status == "ok", result.error
    assert result.steps["read"].fields["scalar"] == INJECTION
    assert lite.execute("SELECT name FROM t WHERE v = 9").fetchone()[0] == INJECTION
    assert count(lite) == 4


def test_sqlite_readonly_step_that_writes_fails(tmp_path: Path, lite: sqlite3.Connection) -> None:
    text = sqlite_proc("""
        - id: sneaky
          sql: DELETE FROM t
          readonly: true
        - id: later
          needs: []
          sql: SELECT count(*) FROM t
          readonly: true
        """)
    result = run(tmp_path, text)
    step = result.steps["sneaky"]
    assert step.status == "failed"
    assert step.error.startswith("SQLITE_READONLY: attempt to write a readonly database")
    assert count(lite) == 3


def test_sqlite_readonly_is_only_for_that_step(tmp_path: Path, lite: sqlite3.Connection) -> None:
    text = sqlite_proc("""
        - id: look
          sql: SELECT count(*) FROM t
          readonly: true
        - id: write
          sql: INSERT INTO t VALUES (4, 'd')
        """)
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    assert count(lite) == 4


def test_sqlite_max_rows_rolls_back(tmp_path: Path, lite: sqlite3.Connection) -> None:
    text = sqlite_proc("""
        - id: wipe
          sql: DELETE FROM t
          max_rows: 1
        """)
    result = run(tmp_path, text)
    assert result.steps["wipe"].status == "failed"
    assert result.steps["wipe"].error.startswith("3 rows would change, more than max_rows 1")
    assert count(lite) == 3


def test_sqlite_dry_run_transaction(tmp_path: Path, lite: sqlite3.Connection) -> None:
    text = sqlite_proc("""
        - id: rename
          sql: UPDATE t SET name = upper(name) WHERE v >= 2
          dry_run: transaction
        - id: plain
          sql: DELETE FROM t
        """)
    result = run(tmp_path, text, dry_run=True)
    assert result.status == "planned", result.error
    assert result.steps["rename"].status == "planned"
    assert result.steps["rename"].fields["rowcount"] == 2
    assert result.steps["plain"].status == "planned"
    assert result.steps["plain"].fields == {}
    assert count(lite, "name = lower(name)") == 3


def test_sqlite_rollback_of_a_failed_run(tmp_path: Path, lite: sqlite3.Connection) -> None:
    text = sqlite_proc("""
        - id: insert
          sql: INSERT INTO t VALUES (10, 'ten')
          rollback:
            sql: DELETE FROM t WHERE v = 10
        - id: broken
          sql: INSERT INTO nowhere VALUES (1)
        """)
    result = run(tmp_path, text)
    assert result.status == "failed"
    assert result.steps["insert"].status == "rolled_back"
    assert result.steps["broken"].error == "SQLITE_ERROR: no such table: nowhere"
    assert count(lite) == 3


def test_sqlite_statements_triggers_and_results(tmp_path: Path, lite: sqlite3.Connection) -> None:
    text = sqlite_proc("""
        - id: setup
          sql: |
            CREATE TABLE audit (v INTEGER);
            CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN
              INSERT INTO audit VALUES (new.v);  -- a ; inside the trigger body
            END;
            INSERT INTO t VALUES ({{ params.v }}, 'x;y');
            SELECT v, name FROM t WHERE v >= 3 ORDER BY v;
        """, extra="params:\n  v: {type: int, default: 42}\n")
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    fields = result.steps["setup"].fields
    assert fields["columns"] == ["v", "name"]
    assert fields["rows"] == [{"v": 3, "name": "c"}, {"v": 42, "name": "x;y"}]
    assert fields["rowcount"] == 1  # rows the INSERT changed; as in PostgreSQL, not its trigger's
    assert fields["scalar"] == 3
    assert lite.execute("SELECT v FROM audit").fetchall() == [(42,)]


def test_sqlite_dry_run_does_not_create_the_database(tmp_path: Path) -> None:
    text = sqlite_proc("""
        - id: create
          sql: CREATE TABLE t (v INTEGER); PRAGMA user_version = 1;
        - id: version
          sql: PRAGMA user_version
          readonly: true
        """, path="./state/new.db")
    result = run(tmp_path, text, dry_run=True)
    assert result.status == "planned", result.error
    assert result.steps["create"].status == "planned"
    assert result.steps["version"].status == "ok"
    assert result.steps["version"].fields["scalar"] == 0  # as the database is before any step
    assert not (tmp_path / "state").exists()
    result = run(tmp_path, text.replace("./state/new.db", "./new.db"))  # a real run creates it
    assert result.status == "ok", result.error
    assert result.steps["version"].fields["scalar"] == 1


def test_sqlite_step_timeout_interrupts_the_query(tmp_path: Path, lite: sqlite3.Connection) -> None:
    text = sqlite_proc("""
        - id: forever
          sql: WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c
          readonly: true
          timeout: 500ms
        """)
    t0 = time.monotonic()
    result = run(tmp_path, text)
    assert time.monotonic() - t0 < 5
    assert result.steps["forever"].status == "timed_out"


# ---------------------------------------------------------------- the executor's declarations


def test_loading_the_executor_does_not_import_psycopg() -> None:
    code = ("import sys, engine.executors.sql as m; m.SqlExecutor(); "
            "assert 'psycopg' not in sys.modules, 'psycopg imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_effect_is_always_write_and_options_are_checked() -> None:
    ex = SqlExecutor()
    assert ex.effect(SqlOptions(query="SELECT 1")) == Effect.WRITE  # readonly: true says otherwise
    with pytest.raises(ValueError, match="max_rows rolls back"):
        SqlOptions(query="DROP DATABASE x", autocommit=True, max_rows=1)
    with pytest.raises(ValueError, match="dry_run: transaction rolls the statement back"):
        SqlOptions(query="DROP DATABASE x", autocommit=True, dry_run="transaction")


def test_conflicting_options_are_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "proc.yml"
    path.write_text(textwrap.dedent("""\
        procedure: bad
        connections:
          local: {sqlite: ./x.db}
        steps:
          - id: drop
            sql: DELETE FROM t
            autocommit: true
            max_rows: 3
        """))
    with pytest.raises(engine.ProcedureError, match="max_rows rolls back"):
        engine.load(path)


def test_constant_values_in_a_sql_template_stay_bound_on_every_render() -> None:
    query = "SELECT {{ params.t | ident }} WHERE v = {{ 9 }}"
    ns = {"params": {"t": "tbl"}}
    first, second = render_sql(query, ns), render_sql(query, ns)
    assert first == second
    assert second[-1] == SqlParam(9)


@pytest.mark.parametrize(("query", "dialect", "expected"), [
    ("SELECT 1; SELECT 2;", "postgres", ["SELECT 1;", " SELECT 2;"]),
    ("SELECT ';'; -- ; \n SELECT 2", "postgres", ["SELECT ';';", " -- ; \n SELECT 2"]),
    ("SELECT $f$ ; $f$; SELECT E'\\';' ", "postgres", ["SELECT $f$ ; $f$;", " SELECT E'\\';' "]),
    ("/* a /* ; */ ; */ SELECT 1", "postgres", ["/* a /* ; */ ; */ SELECT 1"]),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END; "
     "SELECT 1", "postgres",
     ["CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN true THEN 1 END; END;",
      " SELECT 1"]),
    ("CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END; SELECT [a;b] FROM t", "sqlite",
     ["CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END;", " SELECT [a;b] FROM t"]),
    ("  ; -- nothing\n", "postgres", []),
])
def test_statement_splitting(query: str, dialect: str, expected: list[str]) -> None:
    stmts = split_statements(render_sql(query, {}), dialect)
    assert ["".join(p for p in s.parts if isinstance(p, str)) for s in stmts] == expected
