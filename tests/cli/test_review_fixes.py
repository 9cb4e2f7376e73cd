"""Defects a review found: each test failed before its fix."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.cli.test_run_helpers import run_json, write


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
    from tests.cli.test_run_helpers import runproc

    write(tmp_path, "procedure: child\nsteps:\n  - id: a\n    shell: 'true'\n    rollback: {shell: exit 3}\n"
                    "  - id: b\n    shell: 'false'\n", name="child.yml")
    path = write(tmp_path, "procedure: parent\nsteps:\n  - id: call\n    procedure: child.yml\n")
    done = runproc(tmp_path, str(path))
    assert done.rc == 4, done.stderr
    assert "call/child/a: its rollback did not complete in the child procedure" in done.stdout

