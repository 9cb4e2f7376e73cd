"""kill -9 at every step boundary and inside a step: the run is `interrupted`, resume and
rollback act on each non-idempotent side effect exactly once (issue 12.2).

The runner is killed for real (SIGKILL): at a journal boundary by RUNPROC_TEST_KILL_AFTER
(the journal kills its own process right after committing that entry), inside a step by the
step itself (`kill -9 $PPID` after its side effect, before the runner can journal its end).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.cli import Done, runproc, write

STEPS = ["s1", "s2", "s3", "s4", "s5"]


def _procedure(tmp: Path, *, kill_inside: str | None = None, fail: str | None = None) -> Path:
    lines = ["procedure: five", "steps:"]
    for i, sid in enumerate(STEPS):
        action = f"echo {sid} >> effects"
        if sid == kill_inside:
            action += "; kill -9 $PPID"  # the runner dies after the side effect
        if sid == fail:
            action += "; exit 1"
        lines += [f"  - id: {sid}", f"    shell: {json.dumps(action)}",
                  f"    rollback: {{shell: \"echo undo-{sid} >> effects\"}}"]
        if i:
            lines.append(f"    needs: [{STEPS[i - 1]}]")
    return write(tmp, "\n".join(lines) + "\n")


def _effects(tmp: Path) -> list[str]:
    path = tmp / "effects"
    return path.read_text().split() if path.exists() else []


def _runs(tmp: Path) -> list[dict[str, object]]:
    done = runproc(tmp, "runs", "--output", "json", "--state", f"sqlite:///{tmp}/state.db")
    assert done.rc == 0, done.stderr
    return list(json.loads(done.stdout))


def _crash(tmp: Path, path: Path, kill_after: str | None) -> str:
    """Run until the runner is SIGKILLed; the id of the run, which `runproc runs` shows interrupted."""
    env = {"RUNPROC_TEST_KILL_AFTER": kill_after} if kill_after else None
    done = runproc(tmp, str(path), env=env)
    assert done.rc == -9, (done.rc, done.stderr)
    runs = _runs(tmp)
    assert runs[0]["status"] == "interrupted", runs
    return str(runs[0]["id"])


# (kill point, what the test knows about the step in flight, as an operator would see it)
BOUNDARIES = [(f"step_finished:{s}", None) for s in STEPS[:-1]]
BEFORE_EFFECT = [(f"step_started:{s}", s) for s in STEPS]  # in flight, its action not run
INSIDE = [(None, s) for s in STEPS]  # in flight, its action done, the runner killed by it


@pytest.mark.parametrize(("kill_after", "inflight"), BOUNDARIES + BEFORE_EFFECT + INSIDE,
                         ids=[k or f"inside:{s}" for k, s in BOUNDARIES + BEFORE_EFFECT + INSIDE])
def test_resume_after_sigkill_runs_each_side_effect_exactly_once(tmp_path: Path, kill_after: str | None,
                                                                 inflight: str | None) -> None:
    inside = inflight if kill_after is None else None
    run_id = _crash(tmp_path, _procedure(tmp_path, kill_inside=inside), kill_after)
    shown = json.loads(runproc(tmp_path, "show", run_id, "--output", "json", "--state",
                               f"sqlite:///{tmp_path}/state.db").stdout)
    assert shown["status"] == "interrupted"
    assert shown["in_flight"] == ([inflight] if inflight else [])
    if inflight is not None:
        # the runner died with a step in flight: without a decision, resume asks (no terminal: refuses)
        asked = runproc(tmp_path, "resume", run_id)
        assert asked.rc == 3 and f"{inflight} was in flight" in asked.stderr, asked.stderr
        assert "--skip-inflight" in asked.stderr and "--yes" in asked.stderr
        # the operator looks: its line is there (killed inside) or not (killed before it ran)
        choice = "--skip-inflight" if inflight in _effects(tmp_path) else "--yes"
        resumed = runproc(tmp_path, "resume", run_id, choice, "--output", "json")
    else:
        resumed = runproc(tmp_path, "resume", run_id, "--output", "json")
    assert resumed.rc == 0, resumed.stderr
    assert _effects(tmp_path) == STEPS  # each once, in order
    assert _runs(tmp_path)[0]["status"] == "ok"


@pytest.mark.parametrize(("kill_after", "inflight"), BOUNDARIES + BEFORE_EFFECT + INSIDE,
                         ids=[k or f"inside:{s}" for k, s in BOUNDARIES + BEFORE_EFFECT + INSIDE])
def test_rollback_after_sigkill_undoes_each_side_effect_exactly_once(tmp_path: Path, kill_after: str | None,
                                                                     inflight: str | None) -> None:
    inside = inflight if kill_after is None else None
    run_id = _crash(tmp_path, _procedure(tmp_path, kill_inside=inside), kill_after)
    done_before = _effects(tmp_path)
    if inflight is not None:
        asked = runproc(tmp_path, "rollback", run_id)
        assert asked.rc == 3 and _effects(tmp_path) == done_before, asked.stderr
    # the in-flight step changed things (its line is there) or not: undo it, or leave it
    choice = ["--yes"] if inflight is None or inflight in done_before else ["--yes", "--skip-inflight"]
    undone = runproc(tmp_path, "rollback", run_id, *choice, "--output", "json")
    assert undone.rc == 0, undone.stderr
    assert _effects(tmp_path) == done_before + [f"undo-{s}" for s in reversed(done_before)]
    again = runproc(tmp_path, "rollback", run_id, *choice)  # the same decision: nothing left to undo
    assert again.rc == 0 and "nothing to undo" in again.stderr, again.stderr
    assert _effects(tmp_path) == done_before + [f"undo-{s}" for s in reversed(done_before)]


@pytest.mark.parametrize("kill_after", ["rollback_finished:s3", "rollback_started:s2", None],
                         ids=["after-undo-s3", "undo-s2-started", "inside-undo-s3"])
def test_a_rollback_killed_half_way_is_finished_exactly_once(tmp_path: Path, kill_after: str | None) -> None:
    """s5 fails, the run undoes s4, s3, ... and is killed on the way; `runproc rollback` finishes."""
    path = _procedure(tmp_path, fail="s5")
    text = path.read_text()
    if kill_after is None:  # killed by undo-s3 itself, after its side effect
        text = text.replace('echo undo-s3 >> effects"', 'echo undo-s3 >> effects; kill -9 $PPID"')
        path.write_text(text)
    run_id = _crash(tmp_path, path, kill_after)
    before = _effects(tmp_path)
    assert before[:5] == STEPS and before[5] == "undo-s4"
    # an undo in flight (s2's started, or s3's killed inside): its line says whether it ran
    flying = "s2" if kill_after == "rollback_started:s2" else "s3" if kill_after is None else None
    choice = ["--yes"]
    if flying is not None and f"undo-{flying}" in before:
        choice.append("--skip-inflight")
    undone = runproc(tmp_path, "rollback", run_id, *choice)
    assert undone.rc == 0, undone.stderr
    assert _effects(tmp_path) == STEPS + ["undo-s4", "undo-s3", "undo-s2", "undo-s1"]
    resume = runproc(tmp_path, "resume", run_id)
    assert resume.rc == 3 and "rolled back" in resume.stderr


def test_an_idempotent_or_readonly_step_in_flight_is_run_again_without_asking(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: gentle
        steps:
          - id: first
            shell: echo first >> effects
          - id: sync
            idempotent: true
            shell: echo sync >> effects
            needs: [first]
          - id: look
            readonly: true
            shell: echo look >> effects
            needs: [sync]
    """)
    run_id = _crash(tmp_path, path, "step_started:sync")
    done = runproc(tmp_path, "resume", run_id)
    assert done.rc == 0, done.stderr
    assert "readonly or idempotent" in done.stderr
    assert _effects(tmp_path) == ["first", "sync", "look"]
    run2 = _crash(tmp_path, path, "step_started:look")
    assert runproc(tmp_path, "resume", run2).rc == 0
    assert _effects(tmp_path)[3:] == ["first", "sync", "look"]


def test_a_resumed_run_that_is_killed_resumes_again(tmp_path: Path) -> None:
    """The steps the first run completed are journaled by the resume too: not run a third time."""
    path = _procedure(tmp_path)
    first = _crash(tmp_path, path, "step_finished:s2")
    second_env = {"RUNPROC_TEST_KILL_AFTER": "step_finished:s4"}
    killed: Done = runproc(tmp_path, "resume", first, env=second_env)
    assert killed.rc == -9
    second = str(_runs(tmp_path)[0]["id"])
    assert second != first and _runs(tmp_path)[0]["status"] == "interrupted"
    done = runproc(tmp_path, "resume", second)
    assert done.rc == 0, done.stderr
    assert _effects(tmp_path) == STEPS
    # and the whole chain rolls back from its last run, each undo once
    undone = runproc(tmp_path, "rollback", str(_runs(tmp_path)[0]["id"]), "--yes")
    assert undone.rc == 0, undone.stderr
    assert _effects(tmp_path) == STEPS + [f"undo-{s}" for s in reversed(STEPS)]


def test_the_journal_is_written_before_each_side_effect(tmp_path: Path) -> None:
    """Killed right after s3's start is journaled: the rendered action is there, s3's line is not."""
    run_id = _crash(tmp_path, _procedure(tmp_path), "step_started:s3")
    assert _effects(tmp_path) == ["s1", "s2"]
    shown = json.loads(runproc(tmp_path, "show", run_id, "--output", "json", "--state",
                               f"sqlite:///{tmp_path}/state.db").stdout)
    steps = {s["id"]: s for s in shown["steps"]}
    assert steps["s3"]["status"] == "interrupted" and steps["s3"]["action"] == "echo s3 >> effects"
    assert [steps[s]["status"] for s in STEPS] == ["ok", "ok", "interrupted", "cancelled", "cancelled"]
    assert shown["user"] and shown["host"] and shown["pid"]


def test_a_step_end_is_on_disk_before_the_next_step_checks_anything(tmp_path: Path) -> None:
    """A step's end is committed with the next step's start (one commit a step); a precondition
    runs before that start, so the end is flushed first: the runner killed inside s3's check
    leaves s2 finished and nothing in flight."""
    path = write(tmp_path, """\
        procedure: checked
        steps:
          - id: s1
            shell: echo s1 >> effects
          - id: s2
            shell: echo s2 >> effects
            needs: [s1]
          - id: s3
            needs: [s2]
            preconditions:
              - shell: kill -9 $PPID
            shell: echo s3 >> effects
    """)
    run_id = _crash(tmp_path, path, None)
    shown = json.loads(runproc(tmp_path, "show", run_id, "--output", "json", "--state",
                               f"sqlite:///{tmp_path}/state.db").stdout)
    assert shown["in_flight"] == []
    assert [s["status"] for s in shown["steps"]] == ["ok", "ok", "cancelled"]
    assert _effects(tmp_path) == ["s1", "s2"]


def test_runs_lists_a_resume_and_a_rollback_by_their_kind(tmp_path: Path) -> None:
    run_id = _crash(tmp_path, _procedure(tmp_path), "step_finished:s2")
    assert runproc(tmp_path, "resume", run_id).rc == 0
    resumed = _runs(tmp_path)[0]
    assert resumed["kind"] == "resume"
    assert runproc(tmp_path, "rollback", str(resumed["id"]), "--yes").rc == 0
    assert [r["kind"] for r in _runs(tmp_path)] == ["rollback", "resume", "run"]


def test_on_a_terminal_resume_asks_about_the_step_in_flight(tmp_path: Path) -> None:
    from tests.helpers.cli import state_args
    from tests.helpers.terminal import Terminal

    run_id = _crash(tmp_path, _procedure(tmp_path), "step_started:s3")
    term = Terminal(tmp_path, ["resume", run_id, *state_args(tmp_path)], cols=200)
    term.read_until(lambda: term.shows(r"Run it again\? \[y/N\]"))
    assert term.shows(r"Run it again\? \[y/N\]"), "\n".join(term.screen.text())
    term.type("y\n")
    final = term.wait()
    assert term.code == 0, "\n".join(final)
    assert _effects(tmp_path) == STEPS


def test_on_a_terminal_rollback_asks_whether_to_undo_the_step_in_flight(tmp_path: Path) -> None:
    from tests.helpers.cli import state_args
    from tests.helpers.terminal import Terminal

    run_id = _crash(tmp_path, _procedure(tmp_path, kill_inside="s3"), None)
    term = Terminal(tmp_path, ["rollback", run_id, *state_args(tmp_path)], cols=200)
    term.read_until(lambda: term.shows(r"Undo it too\? \[y/N\]"))
    assert term.shows(r"Undo it too\? \[y/N\]"), "\n".join(term.screen.text())
    term.type("y\n")
    term.read_until(lambda: term.shows(r"Roll back\? \[y/N\]"))
    assert term.shows(r"Roll back\? \[y/N\]"), "\n".join(term.screen.text())
    term.type("y\n")
    final = term.wait()
    assert term.code == 0, "\n".join(final)
    assert _effects(tmp_path) == ["s1", "s2", "s3", "undo-s3", "undo-s2", "undo-s1"]
