"""What a pipe, a log file or CI gets from the console and the listing commands."""

from __future__ import annotations

import io
import re
import subprocess
from pathlib import Path

from engine.execution import events as ev
from engine.execution.results import RunResult, StepResult
from engine.ui.console import ConsoleView
from tests.helpers.cli import RUNPROC, child_env, runproc, state_args, write

ADVICE = ("the replica lag is above the threshold; wait for the replica to catch up, or run with "
          "-p force=true after checking the dashboard at https://grafana.example.com/d/replication")


def _put(tmp: Path, text: str, name: str) -> Path:
    (tmp / name).parent.mkdir(parents=True, exist_ok=True)
    return write(tmp, text, name)


def _shell(tmp_path: Path, pipeline: str) -> subprocess.CompletedProcess[str]:
    """``runproc ... | reader`` in bash, with runproc's own exit status on the last line."""
    cmd = f"{pipeline}; echo \"rc=${{PIPESTATUS[0]}}\""
    return subprocess.run(["bash", "-c", cmd], cwd=tmp_path, env=child_env(), capture_output=True, text=True,
                          timeout=60)


def test_listing_commands_end_quietly_when_the_reader_goes(tmp_path: Path) -> None:
    _put(tmp_path, "procedure: p\nsteps:\n  - id: a\n    shell: 'true'\n", "procs/p.yml")
    assert runproc(tmp_path, str(tmp_path / "procs/p.yml")).rc == 0  # one run in the history
    rp = " ".join(RUNPROC)
    state = " ".join(state_args(tmp_path))
    # `true` exits at once: whatever runproc writes meets a closed pipe (as `git log | true`)
    for pipeline in (f"{rp} schema | head -1", f"{rp} list procs | true", f"{rp} runs {state} | true",
                     f"{rp} schema | true"):
        done = _shell(tmp_path, pipeline)
        assert "Traceback" not in done.stderr and "Error" not in done.stderr, (pipeline, done.stderr)
        assert done.stdout.strip().endswith("rc=141"), (pipeline, done.stdout)


def test_list_piped_is_one_plain_line_a_procedure_with_its_file(tmp_path: Path) -> None:
    _put(tmp_path, """
        procedure: local-blue-green
        description: Blue-green deploy on the local platform - start the idle colour, health-check it, switch the router, verify
        owner: platform team
        params:
          version: {type: str, required: true}
        steps:
          - id: a
            shell: "true"
    """, "examples/local/blue-green.yml")
    _put(tmp_path, "procedure: quick\nsteps:\n  - id: a\n    shell: 'true'\n", "examples/quickstart.yml")
    _put(tmp_path, "procedure: hidden\nsteps:\n  - id: a\n    shell: 'true'\n", "examples/.state/x.yml")
    done = runproc(tmp_path, "list", "examples")
    assert done.rc == 0, done.stderr
    lines = done.stdout.splitlines()
    # the folder's own files, then its subfolders' (one level), never a hidden folder's
    assert re.fullmatch(r"examples/quickstart\.yml\s+quick", lines[0])
    assert re.fullmatch(r"examples/local/blue-green\.yml\s+local-blue-green\s+owner: platform team"
                        r"\s+params: version\*:str", lines[1])
    # the description whole, on its own indented line: no word cut at 80 columns
    assert lines[2] == ("    Blue-green deploy on the local platform - start the idle colour, health-check it, "
                        "switch the router, verify")
    assert len(lines) == 3 and "hidden" not in done.stdout


def test_run_is_an_alias_and_a_mistyped_command_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "procedure: p\nsteps:\n  - id: a\n    shell: 'true'\n")
    done = runproc(tmp_path, "run", str(path), "--dry-run")
    assert done.rc == 0, done.stderr
    assert "p (dry run)" in done.stdout
    typo = runproc(tmp_path, "lsit", state=False)
    assert typo.rc == 2
    assert "'lsit' is not a command or a file (did you mean 'list'?)" in typo.stderr
    assert "commands: run, validate, graph, schema, list, inventory, runs, show" in typo.stderr
    # a missing file keeps its own message
    assert "is not a command" not in runproc(tmp_path, "missing.yml", state=False).stderr


def test_show_prints_a_summary_and_keeps_json(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: shown
        steps:
          - id: prepare
            shell: echo prepared
          - id: undoable
            shell: "true"
            rollback:
              shell: "true"
          - id: broken
            shell: echo "disk full" >&2; exit 1
          - id: later
            shell: "true"
    """)
    run = runproc(tmp_path, str(path), "--output", "json")
    assert run.rc == 1
    run_id = run.json["run_id"]
    state = state_args(tmp_path)
    text = runproc(tmp_path, "show", run_id[:6], *state, "--output", "text")
    assert text.rc == 0, text.stderr
    out = text.stdout
    for expected in ("procedure: shown", f"run:       {run_id}", "status:    failed (exit 1)", "started:   ",
                     "duration:  "):
        assert expected in out, out
    assert re.search(r"↺ rolled_back\s+undoable", out) and re.search(r"✖ failed\s+broken", out)
    assert "--- root cause" in out and "disk full" in out
    assert "not run: later" in out and "rolled back: undoable" in out and "kept (no rollback ran): prepare" in out
    as_json = runproc(tmp_path, "show", run_id, *state, "--output", "json")
    assert as_json.json["run_id"] == run_id
    for command, flag in (("runs", "-n N"), ("runs", "--state"), ("show", "--state")):
        helped = runproc(tmp_path, command, "--help")
        line = next(ln for ln in helped.stdout.splitlines() if ln.strip().startswith(flag))
        assert len(line.strip()) > len(flag) + 5, helped.stdout  # the option says what it does


def test_a_failed_row_separates_error_and_output_and_keeps_the_advice_whole(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        procedure: failing
        steps:
          - id: migrate
            shell: echo "relation orders missing" >&2; exit 4
            continue_on_error: true
          - id: lag
            assert:
              that: "false"
              message: "{ADVICE}"
    """)
    done = runproc(tmp_path, str(path))
    assert done.rc == 1
    rows = done.stdout.split("--- root cause")[0].splitlines()
    at = next(i for i, ln in enumerate(rows) if re.search(r"failed\s+migrate", ln))
    assert "relation" not in rows[at]
    assert rows[at + 1:at + 4] == ["      error: command exited with 4", "      last output (stderr):",
                                   "        relation orders missing"]
    assert f"      error: {ADVICE} (assertion failed: false)" in rows  # not cut at 100 characters


def test_on_failure_steps_not_needed_are_counted_apart(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: tally
        steps:
          - id: a
            shell: "true"
          - id: b
            when: "false"
            shell: "true"
        on_failure:
          - id: alert
            shell: "true"
          - id: page
            shell: "true"
    """)
    done = runproc(tmp_path, str(path))
    assert done.rc == 0
    # the rows show one skipped step; the tally says so, and the on_failure steps apart
    assert len(re.findall(r"skipped", done.stdout.split("ok (exit 0)")[0])) == 1
    assert re.search(r"ok \(exit 0\) in \S+: 1 ok, 1 skipped; 2 on_failure steps not needed$", done.stdout,
                     re.M), done.stdout


CHILD = """
    procedure: db-migrate
    steps:
      - id: backup
        shell: echo backup
      - id: apply
        shell: echo apply
"""
PARENT = """
    procedure: release
    steps:
      - id: prepare
        shell: "true"
      - id: migrate
        procedure: child.yml
      - id: deploy
        shell: "true"
"""


def test_child_procedure_steps_are_indented_under_their_parent(tmp_path: Path) -> None:
    write(tmp_path, CHILD, "child.yml")
    path = write(tmp_path, PARENT)
    done = runproc(tmp_path, str(path), "--dry-run")
    assert done.rc == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # in a plan the child procedure appears once: its step's row, then the child's rows under it
    rows = [ln for ln in lines if "migrate" in ln]
    assert rows == [
        "  ○ planned         migrate would run: runproc child.yml",
        "    └ ○ planned         db-migrate/backup would run: echo backup",
        "    └ ○ planned         db-migrate/apply would run: echo apply",
    ]
    assert lines[-1].startswith("planned (exit 0) in ") and lines[-1].endswith(": 3 planned")


def test_child_steps_as_notes_from_an_older_runner() -> None:
    # before StepFinished events were forwarded, a child's step came as Note("child", "name/step: status")
    out = io.StringIO()
    view = ConsoleView(out, force_plain=True)
    view(ev.RunStarted("r1", "release", False, False, [("migrate", "migrate")], "2024-01-01T00:00:00.000Z"))
    view(ev.StepStarted("migrate", "step"))
    view(ev.Note("child", "db-migrate/backup: ok"))
    sr = StepResult("migrate", status="ok", attempts=1)
    view(ev.StepFinished("migrate", "step", sr))
    view(ev.RunFinished(RunResult("release", "r1", "ok", 0, False, "", 0.1, {"migrate": sr})))
    lines = out.getvalue().splitlines()
    assert lines[1:4] == ["  … running         migrate (child procedure db-migrate)",
                          "    └ ✔ ok              db-migrate/backup",
                          "  ✔ ok              migrate (0ms)"]


def test_child_steps_name_their_parent_when_the_runner_says_it() -> None:
    # two steps running at once: the phase "child:<step>" says which one runs the child
    out = io.StringIO()
    view = ConsoleView(out, force_plain=True)
    view(ev.RunStarted("r1", "release", False, False, [("migrate", "migrate"), ("probe", "probe")], ""))
    view(ev.StepStarted("migrate", "step"))
    view(ev.StepStarted("probe", "step"))
    view(ev.StepFinished("db-migrate/backup", "child:migrate", StepResult("backup", status="ok", attempts=1)))
    assert out.getvalue().splitlines()[1:] == ["  … running         migrate (child procedure db-migrate)",
                                               "    └ ✔ ok              db-migrate/backup (0ms)"]
