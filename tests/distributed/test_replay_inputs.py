"""What `runproc resume|rollback RUN --engine` make of an ended run's input and report
(engine/distributed/replay.py): plain values in, plain values out, no server."""

from __future__ import annotations

from typing import Any

import pytest

from engine.distributed.replay import check_resumable, in_doubt, resume_input, rollback_input
from engine.errors import RefusedError


def _plan() -> dict[str, Any]:
    steps = [{"id": sid, "phase": "step", "rollback": True, "writes": True} for sid in ("a", "b", "c")]
    return {"procedure": "p", "path": "p.yml", "run": {"id": "r1", "started_at": "t"}, "steps": steps,
            "by_id": {s["id"]: s for s in steps}}


def _report(**b: Any) -> dict[str, Any]:
    return {"run_id": "r1", "status": "rollback_incomplete", "dry_run": False, "rolled_back": [],
            "completed": ["a", "b"],
            "steps": [{"id": "a", "status": "ok", "phase": "step", "rc": 0},
                      {"id": "b", "status": "failed", "phase": "step", "in_doubt": True, **b},
                      {"id": "c", "status": "cancelled", "phase": "step"}]}


def test_a_step_in_doubt_is_named_and_run_again_unless_a_person_says_it_is_done() -> None:
    report = _report()
    assert in_doubt(report) == [("b", None)]
    again = resume_input(_plan(), report, run_id="r1.resume", started_at="t2", yes=False)
    assert list(again["resume"]["done"]) == ["a"] and again["run"]["id"] == "r1.resume"
    assert again["resume"]["views"]["a"]["rc"] == 0  # steps.a as later templates read it
    done = resume_input(_plan(), report, run_id="r1.resume", started_at="t2", yes=False, treat_as_done={("b", None)})
    assert list(done["resume"]["done"]) == ["a", "b"] and done["resume"]["done"]["b"]["status"] == "ok"
    assert "in doubt in run r1" in done["resume"]["done"]["b"]["notes"][-1]


def test_a_rollback_undoes_a_step_in_doubt_only_when_told_to() -> None:
    plan, report = _plan(), _report()
    _, undo, _ = rollback_input(plan, report, run_id="r1.rollback", started_at="t")
    assert undo == ["a"]
    new, undo, _ = rollback_input(plan, report, run_id="r1.rollback", started_at="t", undo_in_doubt={("b", None)})
    assert undo == ["b", "a"] and new is not None and new["undo"]["order"] == ["a", "b"]
    assert "resume" not in new  # a rollback of a resumed run is a rollback, not a resume


def test_what_cannot_be_resumed_is_refused_in_words() -> None:
    with pytest.raises(RefusedError, match="ended ok"):
        check_resumable(_plan(), {**_report(), "status": "ok"})
    with pytest.raises(RefusedError, match="rolled back"):
        check_resumable(_plan(), {**_report(), "rolled_back": ["a"]})
    with pytest.raises(RefusedError, match="dry run"):
        check_resumable(_plan(), {**_report(), "dry_run": True})
    with pytest.raises(RefusedError, match="itself a rollback"):
        check_resumable(_plan(), {**_report(), "kind": "rollback", "of_run": "r0"})
