"""The library API: ``engine.run`` gives what the CLI gives, prints nothing, reports by events."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.execution import events as ev
from tests.cli.test_run_rollback import SAGA
from tests.helpers.cli import runproc, write


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPROC_STATE", f"sqlite:///{tmp_path}/state.db")
    monkeypatch.chdir(tmp_path)


def test_same_statuses_as_the_cli_and_silent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, SAGA)
    seen: list[Any] = []
    result = engine.run(path, on_event=seen.append)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    assert not result.ok and result.exit_code == 1 and result.status == "failed"
    lib = {sid: s.status for sid, s in result.steps.items()}
    for f in ("done", "undone", "finally", "alerts"):
        (tmp_path / f).unlink(missing_ok=True)
    cli = runproc(tmp_path, str(path), "--output", "json")
    assert lib == cli.statuses()
    assert result.exit_code == cli.rc
    assert result.steps["d"].rc == 5 and result.steps["d"].fields["rc"] == 5
    kinds = {type(e) for e in seen}
    assert {ev.RunStarted, ev.StepStarted, ev.StepFinished, ev.RollbackStarted, ev.RollbackFinished,
            ev.RunFinished} <= kinds
    assert isinstance(seen[-1], ev.RunFinished) and seen[-1].result is result


def test_load_then_run_with_params_dry_run_and_yes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, """
        procedure: lib
        params:
          n: {type: int, default: 1}
        steps:
          - id: probe
            readonly: true
            shell: echo {{ params.n }}
          - id: approve
            confirm: sure?
          - id: write
            shell: touch written
    """)
    proc = engine.load(path)
    planned = engine.run(proc, params={"n": 5}, dry_run=True)
    assert planned.ok and planned.status == "planned"
    assert planned.steps["probe"].status == "ok" and planned.steps["probe"].stdout == "5\n"
    assert planned.steps["write"].status == "planned" and not (tmp_path / "written").exists()
    refused = engine.run(proc)
    assert refused.exit_code == 3 and refused.status == "refused"
    approved = engine.run(proc, yes=True)
    assert approved.ok and approved.steps["approve"].approved is True
    assert (tmp_path / "written").exists()
    assert capsys.readouterr() == ("", "")


def test_bad_params_raise_procedure_error(tmp_path: Path) -> None:
    path = write(tmp_path, "procedure: p\nparams:\n  n: {type: int}\nsteps:\n  - id: a\n    shell: 'true'\n")
    with pytest.raises(engine.ProcedureError, match="param 'n'"):
        engine.run(path, params={"n": "x"})


def test_child_procedure_with_params(tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "child.yml").write_text(textwrap.dedent("""
        procedure: child
        params:
          name: {type: str, required: true}
        steps:
          - id: greet
            shell: |
              echo "hello {{ params.name }}" > greeting; echo '{"greeted": true}'
            rollback: {shell: rm greeting}
    """).lstrip())
    path = write(tmp_path, """
        procedure: parent
        params:
          who: {type: str, default: world}
        steps:
          - id: sub
            procedure: {file: lib/child.yml, params: {name: "{{ params.who }}"}}
          - id: use
            assert: steps.sub.steps.greet.json.greeted
    """)
    result = engine.run(path, params={"who": "ops"})
    assert result.ok, result.error
    assert (tmp_path / "lib" / "greeting").read_text() == "hello ops\n"
    assert result.steps["sub"].run_status == "ok"
    cli = runproc(tmp_path, str(path), "--output", "json", "-p", "who=cli")
    assert cli.rc == 0, cli.stderr
    assert cli.step("sub")["steps"]["greet"]["status"] == "ok"
    planned = runproc(tmp_path, str(path), "--output", "json", "--dry-run")
    assert planned.rc == 0, planned.stderr
    assert planned.step("sub")["status"] == "planned"


def test_failing_child_fails_the_parent_and_rolls_back(tmp_path: Path) -> None:
    (tmp_path / "child.yml").write_text(textwrap.dedent("""
        procedure: child
        steps:
          - id: one
            shell: touch child-one
            rollback: {shell: rm child-one}
          - id: two
            shell: exit 3
    """).lstrip())
    path = write(tmp_path, """
        procedure: parent
        steps:
          - id: before
            shell: touch before
            rollback: {shell: rm before}
          - id: sub
            procedure: child.yml
    """)
    result = engine.run(path)
    assert result.exit_code == 1
    assert result.steps["sub"].status == "failed"
    assert "child" in (result.steps["sub"].error or "")
    assert not (tmp_path / "child-one").exists() and not (tmp_path / "before").exists()


def test_a_failing_event_consumer_does_not_stop_the_rollback(tmp_path: Path) -> None:
    path = write(tmp_path, SAGA)

    def broken(event: Any) -> None:
        if isinstance(event, ev.StepFinished):
            raise ValueError("consumer bug")

    with pytest.raises(RuntimeError, match="consumer bug"):
        engine.run(path, on_event=broken)
    assert (tmp_path / "undone").read_text().split() == ["c", "b", "a"]
    assert (tmp_path / "finally").exists()


def test_ctrl_c_in_a_library_caller_interrupts_like_the_cli(tmp_path: Path) -> None:
    import os
    import signal
    import threading
    import time

    path = write(tmp_path, """
        procedure: lib
        steps:
          - id: a
            shell: "true"
            rollback: {shell: touch undone}
          - id: b
            shell: touch running; sleep 30
    """)

    def interrupt_when_running() -> None:
        end = time.monotonic() + 60
        while not (tmp_path / "running").exists() and time.monotonic() < end:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt in the waiting main thread

    threading.Thread(target=interrupt_when_running, daemon=True).start()
    result = engine.run(path)
    # b (a 30 s sleep) was cancelled, not left to finish: what proves the interrupt, with no clock
    assert result.status == "interrupted" and result.exit_code == 130
    assert result.steps["b"].status == "cancelled" and result.steps["a"].status == "rolled_back"
    assert (tmp_path / "undone").exists()
