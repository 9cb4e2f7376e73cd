"""Fixes from trying runproc as a new user: typos in --only, dry runs without secrets,
assert messages that hide the failing check, child procedures that cannot load, plans that
show the undo standing ready, and hints for common YAML and key mistakes."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.cli import run_json, runproc, write


def test_only_with_an_unknown_step_is_invalid_input(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: only
        steps:
          - id: deploy
            shell: touch deployed
    """)
    done = runproc(tmp_path, str(path), "--only", "deploi")
    assert done.rc == 2
    assert "--only: unknown step 'deploi' (did you mean 'deploy'?)" in done.stderr
    assert not (tmp_path / "deployed").exists()


def test_dry_run_plans_without_secrets_and_a_real_run_refuses(tmp_path: Path) -> None:
    text = """
        procedure: secretive
        secrets:
          token: {env: RUNPROC_TEST_ABSENT_TOKEN}
        preconditions:
          - name: token accepted
            shell: test -n {{ secrets.token }}
        steps:
          - id: probe
            readonly: true
            shell: touch probed-{{ secrets.token }}
          - id: plain
            readonly: true
            shell: touch plain
    """
    done = run_json(tmp_path, text, "--dry-run")
    assert done.rc == 0, done.stderr
    assert "secret(s) not set: token" in done.stderr
    assert "check 'token accepted' not run: it needs secrets.token" in done.stderr
    probe = done.step("probe")
    assert probe["status"] == "planned"
    assert probe["action"] == "touch probed-<unknown: secrets.token>"
    assert not list(tmp_path.glob("probed-*"))  # never run with a placeholder for the secret
    assert done.step("plain")["status"] == "ok"
    real = runproc(tmp_path, "proc.yml")
    assert real.rc == 2
    assert "secret 'token': environment variable RUNPROC_TEST_ABSENT_TOKEN is not set" in real.stderr


def test_assert_message_keeps_the_failing_expression(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: asserting
        params:
          n: {type: int, default: 2}
        steps:
          - id: check
            assert:
              that: [params.n > 1, params.n > 5]
              message: not enough replicas
    """)
    assert done.rc == 1
    assert done.step("check")["error"] == "not enough replicas (assertion failed: params.n > 5)"


def test_child_procedure_that_cannot_load_fails_plainly(tmp_path: Path) -> None:
    write(tmp_path, "procedure: child\nsteps:\n  - id: x\n    shel: echo\n", name="child.yml")
    done = run_json(tmp_path, """
        procedure: parent
        steps:
          - id: call
            procedure: child.yml
    """)
    assert done.rc == 1
    error = done.step("call")["error"]
    assert error.startswith("child procedure child.yml: ")
    assert "unknown key 'shel' (did you mean 'shell'?)" in error
    assert "ProcedureError" not in error


def test_plan_shows_the_undo_that_stands_ready(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: undo
        params:
          version: {type: str, default: "2.0"}
        steps:
          - id: release
            shell: ln -sfn releases/{{ params.version }} current
            rollback: {shell: ln -sfn releases/previous current}
    """, "--dry-run")
    release = done.step("release")
    assert release["status"] == "planned"
    assert release["rollback_action"] == "ln -sfn releases/previous current"


def test_hints_for_common_mistakes(tmp_path: Path) -> None:
    colon = write(tmp_path, "procedure: h\nsteps:\n  - id: a\n    shell: echo a: b\n", name="colon.yml")
    done = runproc(tmp_path, "validate", str(colon))
    assert done.rc == 2 and "must be quoted: shell: 'echo a: b'" in done.stderr
    misplaced = write(tmp_path, """
        procedure: h
        steps:
          - id: a
            shell: "true"
            expect: result.rc == 0
            retry: {attempts: "lots"}
    """, name="misplaced.yml")
    done = runproc(tmp_path, "validate", str(misplaced))
    assert done.rc == 2
    assert "a step has no 'expect': put the check under 'verify:'" in done.stderr
    assert "expected an integer, got the string 'lots'" in done.stderr
    assert "remove the quotes" not in done.stderr


def test_timing_error_explains_a_branch_started_by_empty_needs(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: branches
        steps:
          - id: current
            needs: []
            shell: echo 1
          - id: other
            needs: []
            shell: echo 2
          - id: migrate
            shell: echo {{ steps.current.stdout }}
    """)
    done = runproc(tmp_path, "validate", str(path))
    assert done.rc == 2
    assert "(migrate -> other: each waits only for the step above it, and 'other' has needs: []" in done.stderr


def test_a_rollback_reference_does_not_make_the_action_unknown(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: undo-refs
        steps:
          - id: previous
            shell: cat current-version
          - id: deploy
            readonly: true
            shell: echo deploying 2.0
            rollback: {shell: "echo back to {{ steps.previous.stdout }}"}
    """, "--dry-run")
    deploy = done.step("deploy")
    assert deploy["status"] == "ok" and deploy["stdout"] == "deploying 2.0\n"
    assert deploy["rollback_action"] == "echo back to <unknown: steps.previous.stdout>"
