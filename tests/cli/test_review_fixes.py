"""Defects a review found: each test failed before its fix."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.helpers.cli import run_json, write


def test_fanned_out_step_whose_verify_failed_is_rolled_back_on_that_host(tmp_path: Path) -> None:
    (tmp_path / "inv.ini").write_text("[web]\nh1 ansible_connection=local\nh2 ansible_connection=local\n")
    done = run_json(tmp_path, """
        procedure: fanverify
        inventory: inv.ini
        steps:
          - id: change
            on: web
            shell: echo changed > fan_{{ host.name }}
            verify:
              - shell: test {{ host.name }} != h2
            rollback:
              shell: rm fan_{{ host.name }}
    """)
    assert done.rc == 1
    assert not list(tmp_path.glob("fan_*"))  # h2's change was undone too
    assert done.json["rolled_back"] == ["change"]


def test_kubectl_rehearsal_puts_dry_run_before_the_container_command(tmp_path: Path) -> None:
    fake = tmp_path / "kubectl"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" >> {tmp_path}/argv\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    done = run_json(tmp_path, f"""
        procedure: job
        steps:
          - id: migrate
            kubectl: {{args: [create, job, migrate, --image=busybox, --, sh, -c, echo hi], kubectl: {fake}}}
    """, "--dry-run")
    assert done.rc == 0, done.stderr
    argv = (tmp_path / "argv").read_text().split("\n")
    assert argv.index("--dry-run=server") < argv.index("--")


def test_a_child_rollback_that_failed_makes_the_parent_incomplete(tmp_path: Path) -> None:
    write(tmp_path, """
        procedure: child
        steps:
          - id: a
            shell: "true"
            rollback: {shell: exit 3}
          - id: b
            shell: "false"
    """, name="child.yml")
    done = run_json(tmp_path, """
        procedure: parent
        steps:
          - id: call
            procedure: child.yml
    """)
    assert done.rc == 4
    assert done.json["status"] == "rollback_incomplete"
    assert "call/child/a" in done.json["not_undone"]


def test_console_names_a_child_step_that_was_not_undone(tmp_path: Path) -> None:
    from tests.helpers.cli import runproc

    write(tmp_path, "procedure: child\nsteps:\n  - id: a\n    shell: 'true'\n    rollback: {shell: exit 3}\n"
                    "  - id: b\n    shell: 'false'\n", name="child.yml")
    path = write(tmp_path, "procedure: parent\nsteps:\n  - id: call\n    procedure: child.yml\n")
    done = runproc(tmp_path, str(path))
    assert done.rc == 4, done.stderr
    assert "call/child/a: its rollback did not complete in the child procedure" in done.stdout



def test_a_url_value_cannot_change_the_host(tmp_path: Path, http) -> None:
    done = run_json(tmp_path, f"""
        procedure: hostpart
        params:
          region: {{type: str}}
          user: {{type: str, default: ".."}}
        steps:
          - id: call
            http: "http://{{{{ params.region }}}}.localhost:{http.port}/users/{{{{ params.user }}}}/sessions"
    """, "-p", "region=127.0.0.1:9/steal#")
    assert done.rc == 1
    assert "must be a host name or port" in done.step("call")["error"]
    assert http.requests == []


def test_invalid_run_options_are_refused_before_anything_runs(tmp_path: Path) -> None:
    from tests.helpers.cli import runproc

    path = write(tmp_path, "procedure: opts\nsteps:\n  - id: a\n    shell: touch ran\n")
    for args, message in ((["--forks", "0"], "--forks: must be at least 1"),
                          (["--limit", "~["], "--limit: malformed host pattern"),
                          (["--report-dir", "/proc/nope/x"], "--report-dir: cannot create")):
        done = runproc(tmp_path, str(path), *args)
        assert done.rc == 2, (args, done.stderr)
        assert message in done.stderr
        assert not (tmp_path / "ran").exists()


def test_listing_with_a_state_that_cannot_be_opened_is_a_clear_error(tmp_path: Path) -> None:
    from tests.helpers.cli import runproc

    done = runproc(tmp_path, "runs", "--state", "sqlite:////proc/nope/state.db", state=False)
    assert done.rc == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("--state: ") and done.stderr.count("\n") == 1


def test_secret_file_that_is_not_text_is_a_located_error(tmp_path: Path) -> None:
    from tests.helpers.cli import runproc

    (tmp_path / "bad").write_bytes(b"\xff\xfe\xfa")
    path = write(tmp_path, "procedure: s\nsecrets:\n  x: {file: bad}\nsteps:\n  - id: a\n    shell: 'true'\n")
    done = runproc(tmp_path, str(path))
    assert done.rc == 2
    assert "secret 'x': file" in done.stderr and "(not UTF-8 text)" in done.stderr


def test_a_procedure_that_calls_itself_fails_plainly(tmp_path: Path) -> None:
    done = run_json(tmp_path, "procedure: selfie\nsteps:\n  - id: again\n    procedure: proc.yml\n")
    assert done.rc == 1
    assert "child procedures call each other in a loop: proc.yml -> proc.yml" in done.step("again")["error"]


def test_spooled_output_logs_are_redacted(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: spool
        secrets:
          token: {env: RUNPROC_TEST_SPOOL_TOKEN}
        steps:
          - id: loud
            shell: echo "first {{ secrets.token }}"; head -c 2000000 /dev/zero | tr '\\0' 'x'; echo; echo "last {{ secrets.token }}"
    """, env={"RUNPROC_TEST_SPOOL_TOKEN": "tok-spool-1234"})
    assert done.rc == 0, done.stderr
    log = Path(done.step("loud")["stdout_log"])
    text = log.read_text()
    assert "tok-spool-1234" not in text
    assert "first ***" in text and "last ***" in text
    assert len(text) > 2_000_000
