"""A dry run does not call a broken environment "planned".

A readonly step downstream of a planned write may fail because the write has not happened
(an assertion about data: honest to show as planned, counted as not judged), or because the
environment itself is broken (refused, unreachable, no such program, authentication): a real
run would fail the same way, so the plan fails (exit 1) and the root cause names it.
"""

from __future__ import annotations

import socket
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.cli import run_json, runproc, write
from tests.servers.http import HttpServer
from tests.servers.kube import KubeApi
from tests.servers.postgres import PostgresServer
from tests.servers.s3 import S3Server
from tests.servers.sshd import SshHost, write_inventory


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


def test_a_name_that_does_not_resolve_fails_the_plan(tmp_path: Path) -> None:
    # .invalid never resolves (RFC 6761): the lookup fails without a packet leaving the machine
    done = run_json(tmp_path, _after_a_planned_write("            http: http://no-such-host.invalid/health"),
                    "--dry-run")
    assert done.rc == 1
    assert done.json["root_cause"] == "probe"
    assert done.step("probe")["error_kind"] == "environment"


def test_a_tls_handshake_that_fails_fails_the_plan(tmp_path: Path, http: HttpServer) -> None:
    # https to a server that speaks plain HTTP: the handshake fails before any request is sent
    url = http.url_for("/health").replace("http://", "https://", 1)
    done = run_json(tmp_path, _after_a_planned_write(f"            http: {url}"), "--dry-run")
    assert done.rc == 1
    assert done.step("probe")["error_kind"] == "environment"


def test_a_broken_precondition_of_a_later_write_fails_the_plan(tmp_path: Path) -> None:
    port = _closed_port()
    done = run_json(tmp_path, f"""
        procedure: env
        steps:
          - id: write
            shell: echo changed > changed
          - id: deploy
            needs: [write]
            shell: echo deploy
            preconditions:
              - http: http://127.0.0.1:{port}/ready
    """, "--dry-run")
    assert done.rc == 1
    deploy = done.step("deploy")
    assert deploy["status"] == "failed" and deploy["error_kind"] == "environment"


def test_a_kubectl_context_that_does_not_exist_fails_the_plan(tmp_path: Path, kube: KubeApi) -> None:
    write(tmp_path, f"""
        procedure: env
        connections:
          cluster: {{kubernetes: {{context: no-such-context, kubeconfig: {kube.kubeconfig_path}}}}}
        steps:
          - id: write
            shell: echo changed > changed
          - id: probe
            needs: [write]
            kubectl: get deployments
    """)
    done = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json", env=kube.env())
    assert done.rc == 1
    assert done.step("probe")["error_kind"] == "environment"


def test_a_database_port_that_refuses_fails_the_plan(tmp_path: Path) -> None:
    write(tmp_path, f"""
        procedure: env
        connections:
          db: {{postgres: "postgresql://monitor@127.0.0.1:{_closed_port()}/postgres"}}
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


def _ssh_plan(tmp: Path, hosts: list[SshHost], **inventory: Any) -> Path:
    write_inventory(tmp / "inv.ini", hosts, group="web", **inventory)
    return write(tmp, """
        procedure: fan
        inventory: inv.ini
        steps:
          - id: restart
            on: web
            shell: systemctl restart app
    """)


def test_an_unknown_ssh_host_key_fails_a_planned_write(tmp_path: Path, sshd_hosts: list[SshHost]) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    _ssh_plan(tmp_path, sshd_hosts[:2], known_hosts=empty)
    done = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json")
    assert done.rc == 1
    step = done.step("restart")
    assert step["status"] == "failed" and step["error_kind"] == "environment"
    assert {h["error_kind"] for h in step["hosts"].values()} == {"environment"}


def test_an_ssh_login_that_is_refused_fails_a_planned_write(tmp_path: Path, sshd_hosts: list[SshHost],
                                                            known_hosts_file: Path) -> None:
    stranger = replace(sshd_hosts[0], user="no_such_user_runproc")  # no account, no authorized key
    _ssh_plan(tmp_path, [stranger], known_hosts=known_hosts_file)
    done = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json")
    assert done.rc == 1
    assert done.step("restart")["error_kind"] == "environment"


def test_reachable_ssh_hosts_are_planned(tmp_path: Path, sshd_hosts: list[SshHost], known_hosts_file: Path) -> None:
    _ssh_plan(tmp_path, sshd_hosts[:2], known_hosts=known_hosts_file)
    done = runproc(tmp_path, "proc.yml", "--dry-run")
    assert done.rc == 0, done.stdout + done.stderr
    assert "restart 2 hosts planned" in done.stdout


CHILD_WRITES_THEN_READS = """
    procedure: child
    steps:
      - id: inner_write
        shell: echo inner > marker
      - id: inner_read
        readonly: true
        shell: test -f marker
"""


def test_a_child_procedure_that_cannot_run_a_program_fails_the_plan(tmp_path: Path) -> None:
    # the child's failure is the environment's, though the parent's step follows a planned write
    write(tmp_path, """
        procedure: child
        steps:
          - id: inner_read
            readonly: true
            shell: no-such-program-runproc-test --version
    """, "child.yml")
    done = run_json(tmp_path, """
        procedure: parent
        steps:
          - id: write
            shell: echo changed > changed
          - id: sub
            procedure: child.yml
    """, "--dry-run")
    assert done.rc == 1
    sub = done.step("sub")
    assert sub["status"] == "failed" and sub["error_kind"] == "environment"
    assert done.json["root_cause"] == "sub"


def test_what_a_child_procedure_could_not_judge_is_counted(tmp_path: Path) -> None:
    write(tmp_path, CHILD_WRITES_THEN_READS, "child.yml")
    done = run_json(tmp_path, """
        procedure: parent
        steps:
          - id: sub
            procedure: child.yml
    """, "--dry-run")
    assert done.rc == 0, done.stderr
    assert done.json["counts"] == {"planned": 1, "not_judged": 1}
    assert done.step("sub")["steps"]["inner_read"]["not_judged"] is True
    text = runproc(tmp_path, "proc.yml", "--dry-run")
    assert text.stdout.splitlines()[-1].endswith(
        ": 1 planned, 1 check could not be judged against today's state")



@pytest.mark.parametrize("profile", [None, "no-such-profile-runproc"])
def test_s3_credentials_that_cannot_be_found_fail_the_plan(tmp_path: Path, s3_server: S3Server, s3_bucket: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           profile: str | None) -> None:
    chosen = f", profile: {profile}" if profile else ""
    write(tmp_path, f"""
        procedure: env
        connections:
          backups: {{s3: {{bucket: {s3_bucket}, region: us-east-1, endpoint_url: "{s3_server.endpoint_url}"{chosen}}}}}
        steps:
          - id: write
            shell: echo changed > changed
          - id: probe
            needs: [write]
            s3: {{op: list}}
    """)
    # no credentials anywhere (empty variables count as unset), no file that names a profile
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    none = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "", "AWS_SECURITY_TOKEN": "",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"), "AWS_CONFIG_FILE": str(tmp_path / "none"),
            "AWS_EC2_METADATA_DISABLED": "true"}
    done = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json", env=none)
    assert done.rc == 1, done.stdout + done.stderr
    assert done.step("probe")["error_kind"] == "environment"


def test_an_s3_list_with_credentials_is_planned_after_a_write(tmp_path: Path, s3_server: S3Server,
                                                               s3_bucket: str) -> None:
    write(tmp_path, f"""
        procedure: env
        connections:
          backups: {{s3: {{bucket: {s3_bucket}, region: us-east-1, endpoint_url: "{s3_server.endpoint_url}"}}}}
        steps:
          - id: write
            shell: echo changed > changed
          - id: probe
            needs: [write]
            s3: {{op: list}}
    """)
    done = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json", env=s3_server.env())
    assert done.rc == 0, done.stdout + done.stderr
    assert done.step("probe")["status"] == "ok"


def test_a_database_a_planned_write_would_create_is_not_a_broken_environment(
        tmp_path: Path, postgres_server: PostgresServer) -> None:
    # the server answers "no such database": data the planned CREATE DATABASE would make
    name = f"scratch_{uuid.uuid4().hex[:12]}"
    write(tmp_path, f"""
        procedure: env
        connections:
          server: {{postgres: "{postgres_server.dsn_for('postgres')}"}}
          scratch: {{postgres: "{postgres_server.dsn_for(name)}"}}
        steps:
          - id: create
            sql: CREATE DATABASE {name}
            connection: server
            autocommit: true
          - id: count
            readonly: true
            sql: SELECT count(*) FROM pg_tables
            connection: scratch
    """)
    done = runproc(tmp_path, "proc.yml", "--dry-run", "--output", "json")
    assert done.rc == 0, done.stdout + done.stderr
    count = done.step("count")
    assert count["status"] == "planned" and count["not_judged"] is True
    assert done.json["counts"]["not_judged"] == 1
