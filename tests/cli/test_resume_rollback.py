"""`runproc rollback RUN` and `runproc resume RUN`: replaying a recorded run from the journal."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.helpers.cli import runproc, write

# three steps that each leave a trace and an undo that leaves another; `gate` fails until the
# file `fixed` exists, so a --no-rollback run stops there with a and b done
STEPS = """
procedure: replay
params:
  tag: {type: str, default: t1}
steps:
  - id: a
    shell: echo run >> count-a; echo {{ params.tag }}-out
    rollback:
      shell: echo a >> undo-order
  - id: b
    shell: echo run >> count-b
    rollback:
      shell: echo b >> undo-order
  - id: keep
    shell: echo kept > kept-file
  - id: gate
    shell: test -e fixed
  - id: c
    shell: echo "{{ steps.a.stdout | trim }}" > c-saw
    rollback:
      shell: echo c >> undo-order
"""


def _failed_run(tmp: Path, text: str = STEPS) -> tuple[Path, str]:
    path = write(tmp, text)
    done = runproc(tmp, str(path), "--no-rollback", "--output", "json", "-p", "tag=v7")
    assert done.rc == 1, done.stderr
    assert done.step("gate")["status"] == "failed"
    return path, done.json["run_id"]


def test_rollback_undoes_completed_steps_in_reverse_order(tmp_path: Path) -> None:
    _, run_id = _failed_run(tmp_path)
    assert not (tmp_path / "undo-order").exists()  # --no-rollback left everything in place
    done = runproc(tmp_path, "rollback", run_id, "--yes", "--output", "json")
    assert done.rc == 0, done.stderr
    assert (tmp_path / "undo-order").read_text() == "b\na\n"
    assert done.json["status"] == "ok" and done.json["of_run"] == run_id
    assert done.json["rolled_back"] == ["b", "a"] and done.json["kept"] == ["keep"]
    assert done.step("a")["status"] == "rolled_back"
    # recorded as a run of its own; a second rollback finds nothing left to undo
    listed = runproc(tmp_path, "runs", "--output", "json", "--state", f"sqlite:///{tmp_path}/state.db")
    assert done.json["run_id"] in [r["id"] for r in json.loads(listed.stdout)]
    again = runproc(tmp_path, "rollback", run_id, "--yes")
    assert again.rc == 0 and "nothing to undo" in again.stderr
    assert (tmp_path / "undo-order").read_text() == "b\na\n"
    # and the run cannot be resumed any more
    resumed = runproc(tmp_path, "resume", run_id)
    assert resumed.rc == 3 and "run it again instead" in resumed.stderr


def test_rollback_renders_templates_with_recorded_results(tmp_path: Path) -> None:
    text = STEPS.replace("shell: echo a >> undo-order", 'shell: echo "a {{ steps.a.stdout | trim }}" >> undo-order')
    _, run_id = _failed_run(tmp_path, text)
    done = runproc(tmp_path, "rollback", run_id[:8], "--yes")
    assert done.rc == 0, done.stderr
    assert (tmp_path / "undo-order").read_text() == "b\na v7-out\n"
    assert "rollback of run" in done.stdout and "kept (no rollback defined): keep" in done.stdout


def test_a_failing_undo_exits_4_and_a_retry_finishes_it(tmp_path: Path) -> None:
    text = STEPS.replace("shell: echo b >> undo-order", "shell: test -e undo-ok && echo b >> undo-order")
    _, run_id = _failed_run(tmp_path, text)
    done = runproc(tmp_path, "rollback", run_id, "--yes", "--output", "json")
    assert done.rc == 4, done.stderr
    assert done.json["status"] == "rollback_incomplete" and done.json["not_undone"] == ["b"]
    assert (tmp_path / "undo-order").read_text() == "a\n"  # the others still ran
    (tmp_path / "undo-ok").touch()
    retry = runproc(tmp_path, "rollback", run_id, "--yes", "--output", "json")
    assert retry.rc == 0, retry.stderr
    assert retry.json["rolled_back"] == ["b"]  # a was undone already: not again
    assert (tmp_path / "undo-order").read_text() == "a\nb\n"


def test_rollback_refuses_after_the_procedure_changed(tmp_path: Path) -> None:
    path, run_id = _failed_run(tmp_path)
    path.write_text(path.read_text() + "\n# edited\n")
    done = runproc(tmp_path, "rollback", run_id, "--yes")
    assert done.rc == 3
    assert str(path) in done.stderr and "changed (sha256" in done.stderr
    assert not (tmp_path / "undo-order").exists()


def test_rollback_needs_yes_without_a_terminal(tmp_path: Path) -> None:
    _, run_id = _failed_run(tmp_path)
    done = runproc(tmp_path, "rollback", run_id)
    assert done.rc == 3 and "--yes" in done.stderr
    assert not (tmp_path / "undo-order").exists()


def test_resume_continues_after_the_cause_is_fixed(tmp_path: Path) -> None:
    _, run_id = _failed_run(tmp_path)
    (tmp_path / "fixed").touch()
    done = runproc(tmp_path, "resume", run_id, "--output", "json")
    assert done.rc == 0, done.stderr
    assert done.json["status"] == "ok"
    # a and b were not run again; c saw a's recorded output (and the recorded param)
    assert (tmp_path / "count-a").read_text() == "run\n"
    assert (tmp_path / "count-b").read_text() == "run\n"
    assert (tmp_path / "c-saw").read_text() == "v7-out\n"
    assert any("not run again" in n for n in done.step("a")["notes"])
    # the original now belongs to its resume: acting on it again is refused, naming the resume
    again = runproc(tmp_path, "resume", run_id)
    assert again.rc == 3 and done.json["run_id"] in again.stderr
    # rolling back the resumed run undoes everything, the resumed steps last
    undo = runproc(tmp_path, "rollback", done.json["run_id"], "--yes")
    assert undo.rc == 0, undo.stderr
    assert (tmp_path / "undo-order").read_text() == "c\nb\na\n"


def test_resume_refuses_after_the_procedure_changed(tmp_path: Path) -> None:
    path, run_id = _failed_run(tmp_path)
    path.write_text(path.read_text().replace("test -e fixed", "true"))
    done = runproc(tmp_path, "resume", run_id)
    assert done.rc == 3 and "changed (sha256" in done.stderr
    assert (tmp_path / "count-a").read_text() == "run\n"


def test_resume_refuses_a_run_that_ended_ok(tmp_path: Path) -> None:
    (tmp_path / "fixed").touch()
    path = write(tmp_path, STEPS)
    first = runproc(tmp_path, str(path), "--output", "json")
    assert first.rc == 0, first.stderr
    done = runproc(tmp_path, "resume", first.json["run_id"])
    assert done.rc == 3 and "nothing to resume" in done.stderr


def test_unknown_run_is_invalid_input(tmp_path: Path) -> None:
    for verb in ("resume", "rollback"):
        done = runproc(tmp_path, verb, "nosuchrun", "--yes")
        assert done.rc == 2 and "no run 'nosuchrun'" in done.stderr


SECRET = """
procedure: secretive
params:
  token: {type: str, secret: true}
steps:
  - id: a
    shell: echo run >> count-a
    rollback:
      shell: echo "{{ params.token }}" > undo-token
  - id: gate
    shell: test -e fixed
"""


def test_secret_params_are_never_stored_and_must_be_given_again(tmp_path: Path) -> None:
    path = write(tmp_path, SECRET)
    done = runproc(tmp_path, str(path), "--no-rollback", "--output", "json", "-p", "token=hunter2xyz")
    assert done.rc == 1, done.stderr
    run_id = done.json["run_id"]
    db = sqlite3.connect(tmp_path / "state.db")
    assert not any("hunter2xyz" in str(row) for row in db.execute("SELECT * FROM run_inputs"))
    missing = runproc(tmp_path, "rollback", run_id, "--yes")
    assert missing.rc == 2 and "-p token=" in missing.stderr
    wrong = runproc(tmp_path, "rollback", run_id, "--yes", "-p", "token=other")
    assert wrong.rc == 3 and "not the value" in wrong.stderr
    ok = runproc(tmp_path, "rollback", run_id, "--yes", "-p", "token=hunter2xyz")
    assert ok.rc == 0, ok.stderr
    assert (tmp_path / "undo-token").read_text() == "hunter2xyz\n"


def test_a_state_file_from_before_keeps_working(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "state.db")
    db.executescript("""
        CREATE TABLE locks (name TEXT PRIMARY KEY, run_id TEXT, procedure TEXT, pid INTEGER,
                            host TEXT, user TEXT, acquired_at TEXT, pid_start TEXT);
        CREATE TABLE runs (id TEXT PRIMARY KEY, procedure TEXT, status TEXT, exit_code INTEGER,
                           dry_run INTEGER, started_at TEXT, duration REAL, report TEXT);
    """)
    report = {"run_id": "oldrun000001", "procedure": "x", "status": "failed", "exit_code": 1, "dry_run": False,
              "started_at": "2024-01-01T00:00:00.000Z", "duration": 1.0, "steps": []}
    db.execute("INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
               ("oldrun000001", "x", "failed", 1, 0, report["started_at"], 1.0, json.dumps(report)))
    db.commit()
    db.close()
    done = runproc(tmp_path, "resume", "oldrun000001")
    assert done.rc == 3 and "no recorded inputs" in done.stderr
    _, run_id = _failed_run(tmp_path)  # and a new run records its inputs in the old file
    assert runproc(tmp_path, "rollback", run_id, "--yes").rc == 0
