"""A dry run does not call a broken environment "planned".

A readonly step downstream of a planned write may fail because the write has not happened
(an assertion about data: honest to show as planned, counted as not judged), or because the
environment itself is broken (refused, unreachable, no such program, authentication): a real
run would fail the same way, so the plan fails (exit 1) and the root cause names it.
"""

from __future__ import annotations

import socket
from pathlib import Path

from tests.helpers.cli import run_json, runproc, write
from tests.servers.http import HttpServer
from tests.servers.postgres import PostgresServer


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _after_a_planned_write(check: str) -> str:
    return f"""
        procedure: env
        steps:
          - id: write
            shell: echo changed > changed
          - id: probe
            needs: [write]
            readonly: true
{check}
    """


def test_a_refused_connection_fails_the_plan(tmp_path: Path) -> None:
    port = _closed_port()
    done = run_json(tmp_path, _after_a_planned_write(f"            http: http://127.0.0.1:{port}/health"),
                    "--dry-run")
    assert done.rc == 1
    assert done.json["status"] == "failed" and done.json["root_cause"] == "probe"
    probe = done.step("probe")
    assert probe["status"] == "failed" and probe["error_kind"] == "environment"
    assert done.json["counts"]["not_judged"] == 0
    text = runproc(tmp_path, "proc.yml", "--dry-run")
    assert text.rc == 1
    assert "--- root cause" in text.stdout and "step: probe (failed)" in text.stdout


def test_an_answer_that_depends_on_the_planned_write_is_planned_and_counted(tmp_path: Path,
                                                                            http: HttpServer) -> None:
    http.set_route("GET", "/migrated", status=503, body="not yet")
    done = run_json(tmp_path, _after_a_planned_write(f"            http: {http.url_for('/migrated')}"),
                    "--dry-run")
    assert done.rc == 0, done.stderr
    probe = done.step("probe")
    assert probe["status"] == "planned" and probe["not_judged"] is True
    assert done.json["counts"] == {"planned": 2, "not_judged": 1}
    text = runproc(tmp_path, "proc.yml", "--dry-run")
    assert text.rc == 0
    assert text.stdout.splitlines()[-1].endswith(
        ": 2 planned, 1 check could not be judged against today's state")


def test_a_missing_program_fails_the_plan(tmp_path: Path) -> None:
    done = run_json(tmp_path, _after_a_planned_write("            shell: no-such-program-runproc-test --version"),
                    "--dry-run")
    assert done.rc == 1
    probe = done.step("probe")
    assert probe["rc"] == 127 and probe["error_kind"] == "environment"


def test_a_database_that_refuses_the_login_fails_the_plan(tmp_path: Path, postgres_server: PostgresServer) -> None:
    dsn = f"postgresql://no_such_role_runproc@{postgres_server.host}:{postgres_server.port}/postgres"
    write(tmp_path, f"""
        procedure: env
        connections:
          db: {{postgres: "{dsn}"}}
        steps:
          - id: write
            shell: echo changed > changed
          - id: probe
            needs: [write]
            readonly: true
            sql: SELECT 1
            connection: db
    """)
    done = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json")
    assert done.rc == 1
    assert done.step("probe")["error_kind"] == "environment"


def test_a_fan_out_with_no_reachable_host_is_a_failure_not_a_plan(tmp_path: Path) -> None:
    ports = [_closed_port() for _ in range(3)]
    (tmp_path / "inv.ini").write_text("[web]\n" + "".join(
        f"web-{i} ansible_host=127.0.0.1 ansible_port={p}\n" for i, p in enumerate(ports)))
    write(tmp_path, """
        procedure: fan
        inventory: inv.ini
        steps:
          - id: restart
            on: web
            shell: systemctl restart app
    """)
    done = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json")
    assert done.rc == 1
    step = done.step("restart")
    assert step["status"] == "failed" and step["error_kind"] == "environment"
    assert {h["status"] for h in step["hosts"].values()} == {"failed"}
