"""A recorded run's JSON report as the console shows it (``runproc show``)."""

from __future__ import annotations

from typing import IO, Any

from ..execution.results import RunResult, StepResult
from ..format.durations import format_duration
from .cells import not_needed
from .console import ConsoleView


def show_report(report: dict[str, Any], stream: IO[str] | None = None) -> None:
    """A recorded run's JSON report as text: what it was, each step's line, the summary."""
    view = ConsoleView(stream, force_plain=True)
    result = result_from_json(report)
    view.dry_run = result.dry_run  # a recorded plan reads as the plan did: no timings, undo ready
    mode = " (dry run)" if result.dry_run else ""
    view._line(f"procedure: {result.procedure}")
    view._line(f"run:       {result.run_id}{mode}")
    view._line(f"status:    {result.status} (exit {result.exit_code})")
    view._line(f"started:   {result.started_at}")
    view._line(f"duration:  {format_duration(result.duration)}")
    view._line("steps:")
    for sid, s in result.steps.items():
        if not_needed(s) or (s.status == "cancelled" and not s.started_at):
            continue  # the summary lists them in one line
        view._line(view._plain_row(sid, {"status": s.status, "result": s}))
    view.summary(result)


def result_from_json(report: dict[str, Any]) -> RunResult:
    steps = {d["id"]: _step_from_json(d) for d in report.get("steps") or []}
    return RunResult(report.get("procedure", "?"), report.get("run_id", "?"), report.get("status", "?"),
                     int(report.get("exit_code") or 0), bool(report.get("dry_run")),
                     report.get("started_at") or "", float(report.get("duration") or 0.0), steps,
                     error=report.get("error"), root_cause=report.get("root_cause"),
                     rolled_back=list(report.get("rolled_back") or []),
                     not_undone=list(report.get("not_undone") or []), kept=list(report.get("kept") or []))


_STEP_KEYS = {"id", "status", "phase", "started_at", "duration", "attempts", "error", "action", "notes",
              "hosts", "rollback", "rollback_action", "error_kind", "not_judged"}


def _step_from_json(d: dict[str, Any]) -> StepResult:
    s = StepResult(str(d.get("id", "?")), status=d.get("status", "?"), phase=d.get("phase", "step"),
                   started_at=d.get("started_at"), duration=float(d.get("duration") or 0.0),
                   attempts=int(d.get("attempts") or 0), error=d.get("error"), description=d.get("action"),
                   notes=list(d.get("notes") or []), rollback_action=d.get("rollback_action"),
                   error_kind=d.get("error_kind"), unjudged=d.get("not_judged") is True)
    s.fields = {k: v for k, v in d.items() if k not in _STEP_KEYS}
    if isinstance(d.get("hosts"), dict):
        s.hosts = {h: _step_from_json({"id": h, **v}) for h, v in d["hosts"].items()}
    if isinstance(d.get("rollback"), dict):
        s.rollback = _step_from_json({"id": s.id, **d["rollback"]})
    return s


