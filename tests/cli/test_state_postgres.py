"""The state in PostgreSQL (`--state postgresql://...`, `RUNPROC_STATE`): runs recorded, listed,
shown, resumed and rolled back; locks refuse a second run; every URL that cannot be used is
one line and exit 2 with nothing run, never with its password. Against the real server of
tests/servers/postgres.py."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.cli import RUNPROC, Done, child_env, runproc, wait_until, write
from tests.servers._common import free_port
from tests.servers.postgres import PostgresServer

PASSWORD = f"pw-{uuid.uuid4().hex[:10]}"  # what must never be shown, journaled or reported

STEPS = """
procedure: replay
steps:
  - id: a
    shell: echo run >> count-a; echo a-out
    rollback:
      shell: echo a >> undo-order
  - id: b
    shell: echo run >> count-b
    rollback:
      shell: echo b >> undo-order
  - id: gate
    shell: test -e fixed
  - id: c
    shell: echo "{{ steps.a.stdout | trim }}" > c-saw
    rollback:
      shell: echo c >> undo-order
"""

LOCKED = """
procedure: locked
lock: db-primary
params:
  nap: {type: float, default: 0}
steps:
  - id: work
    shell: touch started-$$; sleep {{ params.nap }}; echo done >> finished
"""

TOUCH = """
procedure: touches
steps:
  - id: touch
    shell: touch touched
"""


def _env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    # step logs and spool files of a PostgreSQL state go to the XDG state dir: keep them here;
    # no password from this machine's environment or ~/.pgpass: only the URL's counts
    return {"XDG_STATE_HOME": str(tmp / "xdg"), "PGPASSWORD": "", "PGPASSFILE": str(tmp / "no-pgpass"),
            **(extra or {})}


def pg(tmp: Path, dsn: str, *args: str, env: dict[str, str] | None = None) -> Done:
    """``runproc ARGS --state DSN`` in ``tmp``."""
    return runproc(tmp, *args, "--state", dsn, state=False, env=_env(tmp, env))


def _one_line(done: Done, *secrets: str) -> str:
    """The single stderr line of an exit-2 refusal; asserts nothing else was said."""
    output = done.stdout + done.stderr
    assert done.rc == 2, output
    assert "Traceback" not in output
    for secret in secrets:
        assert secret not in output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


# ---------------------------------------------------------------- a role that needs a password


@dataclass
class PasswordRole:
    """A login role that must give its password (a pg_hba line of its own; every other role
    of the shared server keeps trust), and a URL maker."""

    server: PostgresServer
    name: str
    password: str

    def url(self, db: str, password: str | None = None) -> str:
        secret = f":{password}" if password is not None else ""
        return f"postgresql://{self.name}{secret}@{self.server.host}:{self.server.port}/{db}"

    def own(self, dsn: str) -> str:
        """Give it the database of ``dsn`` (its public schema with it); the database's name."""
        db = dsn.rsplit("/", 1)[1]
        self.server.psql(f'ALTER DATABASE "{db}" OWNER TO "{self.name}"')
        return db


def _hba_applies(server: PostgresServer, role: str) -> bool:
    """Whether the server asks this role for a password now (a reload is not instant)."""
    import psycopg

    try:
        psycopg.connect(host=server.host, port=server.port, user=role, dbname="postgres", password="wrong",
                        connect_timeout=5).close()
    except psycopg.OperationalError:
        return True
    return False


@pytest.fixture(scope="module")
def password_role(postgres_server: PostgresServer) -> Iterator[PasswordRole]:
    name = f"runproc_pw_{uuid.uuid4().hex[:8]}"
    postgres_server.psql(f"CREATE ROLE \"{name}\" LOGIN PASSWORD '{PASSWORD}'")
    hba = postgres_server.data_dir / "pg_hba.conf"
    original = hba.read_text()
    # first match wins: this role alone must authenticate, on TCP and on the socket
    hba.write_text(f"host all {name} 127.0.0.1/32 scram-sha-256\nlocal all {name} scram-sha-256\n" + original)
    try:
        postgres_server.psql("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 15
        while not _hba_applies(postgres_server, name):
            assert time.monotonic() < deadline, "pg_hba.conf reload did not apply"
            time.sleep(0.1)
        yield PasswordRole(postgres_server, name, PASSWORD)
    finally:
        hba.write_text(original)
        postgres_server.psql("SELECT pg_reload_conf()")
        # it may still own a database another test has not dropped yet: the server goes anyway
        with contextlib.suppress(RuntimeError):
            postgres_server.psql(f'DROP ROLE IF EXISTS "{name}"')


# ---------------------------------------------------------------- runs end to end


def test_a_run_is_recorded_listed_and_shown(tmp_path: Path, pg_db: str) -> None:
    path = write(tmp_path, STEPS)
    (tmp_path / "fixed").touch()
    done = pg(tmp_path, pg_db, str(path), "--output", "json")
    assert done.rc == 0, done.stderr
    run_id = done.json["run_id"]
    listed = pg(tmp_path, pg_db, "runs", "--output", "json")
    assert listed.rc == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [(r["id"], r["status"], r["procedure"]) for r in runs] == [(run_id, "ok", "replay")]
    shown = pg(tmp_path, pg_db, "show", run_id[:8], "--output", "json")
    assert shown.rc == 0, shown.stderr
    assert shown.json["run_id"] == run_id and shown.json["status"] == "ok"
    assert [s["id"] for s in shown.json["steps"]] == ["a", "b", "gate", "c"]
    text = pg(tmp_path, pg_db, "show", run_id, "--output", "text")
    assert text.rc == 0 and run_id in text.stdout and "replay" in text.stdout
    # the journal is in the database: each step started and finished, in order
    server_rows = _psql(pg_db, f"SELECT event || ':' || step FROM journal WHERE run_id = '{run_id}' ORDER BY seq")
    assert server_rows.splitlines() == [f"{e}:{s}" for s in ("a", "b", "gate", "c")
                                        for e in ("step_started", "step_finished")]


def test_runproc_state_in_the_environment_is_the_same(tmp_path: Path, pg_db: str) -> None:
    path = write(tmp_path, TOUCH)
    done = runproc(tmp_path, str(path), "--output", "json", state=False, env=_env(tmp_path, {"RUNPROC_STATE": pg_db}))
    assert done.rc == 0, done.stderr
    listed = runproc(tmp_path, "runs", "--output", "json", state=False,
                     env=_env(tmp_path, {"RUNPROC_STATE": pg_db}))
    assert [r["id"] for r in json.loads(listed.stdout)] == [done.json["run_id"]]
    # and no SQLite file was made anywhere for it
    assert not list((tmp_path / "xdg").rglob("*.db"))


def test_a_failed_run_is_resumed(tmp_path: Path, pg_db: str) -> None:
    path = write(tmp_path, STEPS)
    failed = pg(tmp_path, pg_db, str(path), "--no-rollback", "--output", "json")
    assert failed.rc == 1, failed.stderr
    assert failed.step("gate")["status"] == "failed"
    (tmp_path / "fixed").touch()
    done = pg(tmp_path, pg_db, "resume", failed.json["run_id"], "--output", "json")
    assert done.rc == 0, done.stderr
    assert done.json["status"] == "ok"
    # a and b were not run again; c saw a's recorded output
    assert (tmp_path / "count-a").read_text() == "run\n"
    assert (tmp_path / "count-b").read_text() == "run\n"
    assert (tmp_path / "c-saw").read_text() == "a-out\n"
    runs = json.loads(pg(tmp_path, pg_db, "runs", "--output", "json").stdout)
    assert {r["id"] for r in runs} == {failed.json["run_id"], done.json["run_id"]}


def test_a_failed_run_is_rolled_back(tmp_path: Path, pg_db: str) -> None:
    path = write(tmp_path, STEPS)
    failed = pg(tmp_path, pg_db, str(path), "--no-rollback", "--output", "json")
    assert failed.rc == 1, failed.stderr
    assert not (tmp_path / "undo-order").exists()
    done = pg(tmp_path, pg_db, "rollback", failed.json["run_id"], "--yes", "--output", "json")
    assert done.rc == 0, done.stderr
    assert (tmp_path / "undo-order").read_text() == "b\na\n"
    assert done.json["rolled_back"] == ["b", "a"]
    again = pg(tmp_path, pg_db, "rollback", failed.json["run_id"], "--yes")
    assert again.rc == 0 and "nothing to undo" in again.stderr
    assert (tmp_path / "undo-order").read_text() == "b\na\n"




def test_a_lock_held_refuses_a_second_run_naming_the_holder(tmp_path: Path, pg_db: str) -> None:
    path = write(tmp_path, LOCKED)
    first = subprocess.Popen([*RUNPROC, str(path), "-p", "nap=30", "--output", "json", "--state", pg_db],
                             cwd=tmp_path, env=child_env(_env(tmp_path)), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        wait_until(lambda: list(tmp_path.glob("started-*")), timeout=20)
        second = pg(tmp_path, pg_db, str(path), "--output", "json")
        assert second.rc == 3, second.stderr
        assert second.json["status"] == "refused"
        error = second.json["error"]
        assert "db-primary" in error and f"pid {first.pid}" in error and "locked" in error
        assert second.step("work")["status"] == "cancelled"
    finally:
        first.terminate()
        first.communicate(timeout=30)
    assert not (tmp_path / "finished").exists()
    # the interrupted holder released its lock: the next run goes through
    third = pg(tmp_path, pg_db, str(path), "--output", "json")
    assert third.rc == 0, third.stderr
    assert (tmp_path / "finished").read_text() == "done\n"


def test_a_password_is_never_shown_journaled_or_reported(tmp_path: Path, pg_db: str,
                                                         password_role: PasswordRole) -> None:
    db = password_role.own(pg_db)
    url = password_role.url(db, PASSWORD)
    path = write(tmp_path, LOCKED)
    done = pg(tmp_path, url, str(path), "--output", "json")
    assert done.rc == 0, done.stderr
    run_id = done.json["run_id"]
    outputs = [done, pg(tmp_path, url, "runs"), pg(tmp_path, url, "show", run_id, "--output", "json"),
               pg(tmp_path, url, "show", run_id, "--output", "text")]
    for out in outputs:
        assert out.rc == 0, out.stderr
        assert PASSWORD not in out.stdout + out.stderr
    stored = " ".join(_psql(pg_db, f"SELECT string_agg(t::text, ' ') FROM {table} t")
                      for table in ("runs", "journal", "run_inputs", "lock_events", "locks", "meta"))
    assert run_id in stored and PASSWORD not in stored
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files and not any(PASSWORD.encode() in p.read_bytes() for p in files)  # logs, spool: none


# ---------------------------------------------------------------- bad input: one line, exit 2


def _psql(dsn: str, sql: str) -> str:
    """psql on the database of ``dsn`` (the fixture's superuser, no password)."""
    from tests.servers.postgres import find_pg_bin_dir

    out = subprocess.run([str(find_pg_bin_dir() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                          "-d", dsn, "-c", sql], capture_output=True, text=True, timeout=60,
                         env={k: v for k, v in child_env().items() if not k.startswith("PG")})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


BAD = ["no-database", "bad-port", "junk-query", "unreachable", "wrong-password", "no-password",
       "no-such-database"]


def _bad_url(case: str, server: PostgresServer, role: PasswordRole, db: str) -> str:
    where = f"{server.host}:{server.port}"
    return {
        "no-database": f"postgresql://{role.name}:{PASSWORD}@{where}",
        "bad-port": f"postgresql://{role.name}:{PASSWORD}@{server.host}:5x32/{db}",
        "junk-query": f"postgresql://{role.name}:{PASSWORD}@{where}/{db}?connect_timeout",
        # nothing listens there: refused at once, never a hang
        "unreachable": f"postgresql://{role.name}:{PASSWORD}@127.0.0.1:{free_port()}/{db}",
        "wrong-password": role.url(db, "not-" + PASSWORD),
        "no-password": role.url(db),
        "no-such-database": role.url(f"missing_{uuid.uuid4().hex[:8]}", PASSWORD),
    }[case]


@pytest.mark.parametrize("how", ["flag", "env"])
@pytest.mark.parametrize("case", BAD)
def test_a_state_url_that_cannot_be_used_is_one_line_and_exit_2(
        tmp_path: Path, pg_db: str, postgres_server: PostgresServer, password_role: PasswordRole,
        case: str, how: str) -> None:
    db = password_role.own(pg_db)
    url = _bad_url(case, postgres_server, password_role, db)
    path = write(tmp_path, TOUCH)
    if how == "flag":
        done = pg(tmp_path, url, str(path))
    else:
        done = runproc(tmp_path, str(path), state=False, env=_env(tmp_path, {"RUNPROC_STATE": url}))
    line = _one_line(done, PASSWORD)
    assert line.startswith("--state: state 'postgresql://"), line
    assert not (tmp_path / "touched").exists()  # nothing ran
    # the listing says the same, in one line
    listed = runproc(tmp_path, "runs", "--state", url, state=False, env=_env(tmp_path))
    assert _one_line(listed, PASSWORD) == line


def test_what_each_refusal_says(tmp_path: Path, pg_db: str, postgres_server: PostgresServer,
                                password_role: PasswordRole) -> None:
    """The cases are told apart: which part of the URL to fix, or what to do about the server."""
    db = password_role.own(pg_db)
    urls = {case: _bad_url(case, postgres_server, password_role, db) for case in BAD}
    said = {case: _one_line(pg(tmp_path, url, "runs"), PASSWORD) for case, url in urls.items()}
    assert "no database name" in said["no-database"]
    assert "port '5x32'" in said["bad-port"]
    assert "malformed query" in said["junk-query"]
    assert "cannot reach" in said["unreachable"]
    assert f"user {password_role.name}" in said["wrong-password"] and "password" in said["wrong-password"]
    assert f"user {password_role.name}" in said["no-password"]
    missing = urls["no-such-database"].rsplit("/", 1)[1]
    assert f"database {missing!r} does not exist" in said["no-such-database"]
    assert all(":***@" in line for case, line in said.items() if case != "no-password")


def test_a_schema_newer_than_this_runproc_is_refused(tmp_path: Path, pg_db: str) -> None:
    path = write(tmp_path, TOUCH)
    assert pg(tmp_path, pg_db, "runs").rc == 0  # creates the schema
    _psql(pg_db, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    done = pg(tmp_path, pg_db, str(path))
    line = _one_line(done)
    assert "99" in line and pg_db.rsplit("/", 1)[1] in line and "upgrade runproc" in line
    assert not (tmp_path / "touched").exists()
    assert _psql(pg_db, "SELECT value FROM meta WHERE key = 'schema_version'") == "99"  # left as it was
    assert _one_line(pg(tmp_path, pg_db, "runs")) == line


def test_a_user_without_the_rights_it_needs_is_one_line_without_its_password(
        tmp_path: Path, pg_db: str, password_role: PasswordRole) -> None:
    db = pg_db.rsplit("/", 1)[1]
    url = password_role.url(db, PASSWORD)
    path = write(tmp_path, TOUCH)
    # it may connect, but not create the state's tables
    _psql(pg_db, f'REVOKE CREATE ON SCHEMA public FROM PUBLIC; GRANT CONNECT ON DATABASE "{db}" TO "{password_role.name}"')
    line = _one_line(pg(tmp_path, url, str(path)), PASSWORD)
    assert line.startswith("--state: state 'postgresql://") and "cannot set up the state schema" in line
    # the tables exist (made by their owner), it may read them but not record a run
    assert pg(tmp_path, pg_db, "runs").rc == 0
    _psql(pg_db, f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{password_role.name}"')
    line = _one_line(pg(tmp_path, url, str(path)), PASSWORD)
    assert line.startswith("--state: ") and "runs" in line
    assert not (tmp_path / "touched").exists()
    assert pg(tmp_path, url, "runs").rc == 0  # reading is all it may do, and it does
