"""`runproc resume RUN --from STEP`: retry from a step (it and every step that needs it run
again, even recorded ok); what the web page's "Retry from a step" runs (docs/web.md)."""

from __future__ import annotations

from pathlib import Path

from tests.cli.test_resume_rollback import STEPS, _failed_run
from tests.helpers.cli import runproc, write


def test_resume_from_a_step_runs_it_and_its_dependents_again(tmp_path: Path) -> None:
    _, run_id = _failed_run(tmp_path)
    (tmp_path / "fixed").touch()
    done = runproc(tmp_path, "resume", run_id, "--from", "b", "--output", "json")
    assert done.rc == 0, done.stderr
    assert (tmp_path / "count-a").read_text() == "run\n"  # before b: its recorded result stands
    assert (tmp_path / "count-b").read_text() == "run\nrun\n"  # b again, though recorded ok
    assert (tmp_path / "c-saw").read_text() == "v7-out\n"  # a's recorded output still reaches c
    assert any("not run again" in n for n in done.step("a")["notes"])
    assert not any("not run again" in n for n in done.step("b").get("notes", []))


def test_resume_from_retries_a_run_that_ended_ok_and_names_an_unknown_step(tmp_path: Path) -> None:
    (tmp_path / "fixed").touch()
    path = write(tmp_path, STEPS)
    first = runproc(tmp_path, str(path), "--output", "json")
    assert first.rc == 0, first.stderr
    wrong = runproc(tmp_path, "resume", first.json["run_id"], "--from", "gaet")
    assert wrong.rc == 2 and "--from gaet" in wrong.stderr and "did you mean 'gate'" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    done = runproc(tmp_path, "resume", first.json["run_id"], "--from", "gate", "--output", "json")
    assert done.rc == 0, done.stderr
    assert (tmp_path / "count-b").read_text() == "run\n"
    assert done.step("c")["status"] == "ok" and not any("not run again" in n for n in done.step("c").get("notes", []))
