"""Dry-run and offline: what executes, what is shown, what is unknown."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import run_json, runproc, write

PLAN = """
procedure: plan
params:
  target: {type: str, default: blue}
preconditions:
  - name: probe ran
    shell: touch precondition-ran
steps:
  - id: probe
    readonly: true
    shell: |
      touch probe-ran; echo '{"count": 2}'
  - id: uses_probe
    readonly: true
    shell: echo {{ steps.probe.json.count }} > uses-probe
  - id: write
    shell: |
      touch written; echo '{"id": 7}'
    rollback: {shell: touch rolled}
  - id: uses_write
    shell: echo deploying {{ steps.write.json.id }} to {{ params.target }}
  - id: maybe
    when: steps.write.json.id > 3
    shell: touch maybe
  - id: check
    assert: steps.probe.json.count == 2
  - id: wait_a_bit
    wait: 10s
  - id: ask
    confirm: go?
finally:
  - id: tidy
    shell: touch tidied
"""


def test_dry_run_executes_only_checks_and_readonly_steps(tmp_path: Path) -> None:
    done = run_json(tmp_path, PLAN, "--dry-run")
    assert done.rc == 0, done.stderr
    report = done.json
    assert report["status"] == "planned" and report["dry_run"] is True
    s = done.statuses()
    assert s == {"probe": "ok", "uses_probe": "ok", "write": "planned", "uses_write": "planned",
                 "maybe": "planned", "check": "ok", "wait_a_bit": "planned", "ask": "planned", "tidy": "planned"}
    assert (tmp_path / "precondition-ran").exists() and (tmp_path / "probe-ran").exists()
    assert (tmp_path / "uses-probe").read_text() == "2\n"
    for f in ("written", "maybe", "tidied", "rolled"):
        assert not (tmp_path / f).exists(), f
    assert done.step("write")["action"] == "touch written; echo '{\"id\": 7}'\n"
    uses = done.step("uses_write")
    assert "unknown" in uses["action"] and "steps.write" in uses["action"]
    assert "blue" in uses["action"]
    assert any("unknown" in n and "write" in n for n in uses["notes"])
    maybe = done.step("maybe")
    assert any("may run or be skipped" in n for n in maybe["notes"])
    assert done.json["duration"] < 5  # the 10 s wait was shown, not waited


def test_dry_run_with_a_failing_readonly_check_fails(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: plan
        steps:
          - id: probe
            readonly: true
            shell: exit 4
          - id: write
            shell: touch written
    """, "--dry-run")
    assert done.rc == 1
    assert done.step("probe")["status"] == "failed"
    assert done.step("write")["status"] == "cancelled"


def test_dry_run_failing_precondition_is_refused(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: plan
        preconditions:
          - shell: exit 1
        steps:
          - id: write
            shell: touch written
    """, "--dry-run")
    assert done.rc == 3
    assert done.json["status"] == "refused"


def test_offline_runs_nothing(tmp_path: Path) -> None:
    done = run_json(tmp_path, PLAN, "--dry-run", "--offline")
    assert done.rc == 0, done.stderr
    for f in ("precondition-ran", "probe-ran", "uses-probe", "written", "maybe", "tidied"):
        assert not (tmp_path / f).exists(), f
    s = done.statuses()
    assert s["probe"] == "planned" and s["uses_probe"] == "planned" and s["write"] == "planned"
    assert s["check"] == "planned"  # its inputs are unknown offline
    assert "unknown" in done.step("uses_probe")["action"]


def test_offline_implies_dry_run_and_needs_no_secret(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: plan
        secrets:
          token: {env: NOT_SET_ANYWHERE_XYZ}
        steps:
          - id: write
            shell: echo {{ secrets.token }} > out
    """)
    done = runproc(tmp_path, str(path), "--offline", "--output", "json")
    assert done.rc == 0, done.stderr
    assert done.json["dry_run"] is True
    assert not (tmp_path / "out").exists()
    real = runproc(tmp_path, str(path), "--output", "json")
    assert real.rc == 2 and "NOT_SET_ANYWHERE_XYZ" in real.stderr


def test_dry_run_plain_output_shows_the_plan(tmp_path: Path) -> None:
    path = write(tmp_path, PLAN)
    done = runproc(tmp_path, str(path), "--dry-run")
    assert done.rc == 0, done.stderr
    assert "touch written" in done.stdout
    assert "planned" in done.stdout and "dry run" in done.stdout
