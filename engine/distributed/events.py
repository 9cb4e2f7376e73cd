"""A workflow's progress, as the local run's events: the same console and JSON follow both."""

from __future__ import annotations

from typing import Any

from ..execution import events as ev
from ..execution.results import RunResult, StepResult, recorded_result


def step_result(entry: dict[str, Any]) -> StepResult:
    sr = recorded_result(entry)
    undo = entry.get("rollback")
    if isinstance(undo, dict):
        sr.rollback = StepResult(sr.id, phase="rollback", status=str(undo.get("status")), error=undo.get("error"),
                                 description=undo.get("action"), duration=float(undo.get("duration") or 0.0))
    return sr


def run_result(report: dict[str, Any]) -> RunResult:
    """A workflow's report as the RunResult a local run returns (its JSON is the same shape)."""
    steps = {str(e["id"]): step_result(e) for e in report.get("steps") or []}
    return RunResult(str(report.get("procedure")), str(report.get("run_id")), str(report.get("status")),
                     int(report.get("exit_code") or 0), bool(report.get("dry_run")), str(report.get("started_at")),
                     float(report.get("duration") or 0.0), steps, report.get("error"), report.get("root_cause"),
                     list(report.get("rolled_back") or []), list(report.get("not_undone") or []),
                     list(report.get("kept") or []))


class Translator:
    """Turns the workflow's numbered events into engine events for ``on_event``."""

    def __init__(self, on_event: Any, engine: str | None = None) -> None:
        self.on_event = on_event
        self.engine = engine  # said in the hints a person copies (runproc approve ... --engine ...)
        self.run_id = "RUN"

    def __call__(self, event: dict[str, Any]) -> None:
        if self.on_event is None:
            return
        kind, sid = event["kind"], event.get("step")
        out: ev.Event | None = None
        if kind == "run_started":
            self.run_id = str(event["run_id"])
            out = ev.RunStarted(str(event["run_id"]), str(event["procedure"]), bool(event["dry_run"]), False,
                                [(a, b) for a, b in event["steps"]], str(event["started_at"]))
        elif kind == "step_started":
            out = ev.StepStarted(str(sid), str(event.get("phase") or "step"))
        elif kind == "step_finished":
            entry = event["entry"]
            out = ev.StepFinished(str(sid), str(entry.get("phase") or "step"), step_result(entry))
        elif kind == "step_progress":
            out = ev.StepProgress(str(sid), str(event.get("message") or ""))
        elif kind == "rollback_started":
            out = ev.RollbackStarted(str(sid))
        elif kind == "rollback_finished":
            out = ev.RollbackFinished(str(sid), bool(event.get("ok")), event.get("error"))
        elif kind == "waiting":
            where = f" --engine {self.engine}" if self.engine else ""
            out = ev.Note("warning", f"{sid}: waiting for an approval ({event.get('message')}): "
                                     f"runproc approve {self.run_id} {sid} [--reject]{where}")
        elif kind == "approval":
            verdict = "approved" if event.get("approved") else "rejected"
            comment = f": {event.get('comment')}" if event.get("comment") else ""
            out = ev.Note("info", f"{sid}: {verdict} by {event.get('by')}{comment}")
        elif kind == "window_waiting":
            out = ev.Note("info", f"outside the window {event.get('times')!r}: waiting until {event.get('opens_at')} "
                                  "(window.wait; a durable timer: the controller may go)")
        elif kind == "precondition":
            out = ev.PreconditionChecked("preconditions", bool(event.get("ok")), event.get("error"))
        elif kind == "note":
            out = ev.Note(str(event.get("level") or "info"), str(event.get("text") or ""))
        elif kind == "run_finished":
            out = ev.RunFinished(run_result(event["report"]))
        if out is not None:
            self.on_event(out)
