"""A recorded run's JSON report as the console shows it (``runproc show``): what it was, who
ran it where with which params, each step with its timings, attempts, hosts and undo, the
approvals, the step in flight when a runner died, and the summary."""

from __future__ import annotations

from typing import IO, Any

from ..execution.results import RunResult, StepResult
from ..format.durations import format_duration
from .cells import ICONS, not_needed, one_line
from .console import ConsoleView

# the report's own status for a step that was running when its runner stopped (recovery.IN_FLIGHT)
IN_FLIGHT = "interrupted"


def show_report(report: dict[str, Any], stream: IO[str] | None = None) -> None:
    """A recorded run's JSON report as text: what it was, each step's line, the summary."""
    import io
    import sys

    out = stream if stream is not None else sys.stdout
    buffer = io.StringIO()
    _draw(report, buffer)
    text = buffer.getvalue()
    if report.get("exit_code") is None:
        # a run that has not ended, or whose runner was killed, has no exit code: the summary's
        # "(exit 0)" would read as success
        status = str(report.get("status") or "?")
        why = "still going" if status == "running" else "no exit code: its runner stopped"
        text = text.replace(f"\n{status} (exit 0) in ", f"\n{status} ({why}) in ", 1)
    try:
        out.write(text)
        out.flush()
    except (OSError, ValueError):
        pass  # the reader went away


def _draw(report: dict[str, Any], stream: IO[str]) -> None:
    view = ConsoleView(stream, force_plain=True)
    result = result_from_json(report)
    view.dry_run = result.dry_run  # a recorded plan reads as the plan did: no timings, undo ready
    line = view._line
    mode = " (dry run)" if result.dry_run else ""
    line(f"procedure: {result.procedure}")
    line(f"run:       {result.run_id}{mode}")
    kind = report.get("kind")
    if kind not in (None, "run"):
        line(f"kind:      {kind}" + (f" of run {report['of_run']}" if report.get("of_run") else ""))
    code = f" (exit {result.exit_code})" if report.get("exit_code") is not None else ""
    line(f"status:    {result.status}{code}")
    who = _who(report)
    if who:
        line(f"by:        {who}")
    line(f"started:   {result.started_at}")
    if report.get("ended_at"):
        line(f"ended:     {report['ended_at']}")
    # a run on the Temporal engine that waits, durably: for its window, for an approval
    if report.get("waiting_for_window"):
        line(f"waiting:   for the maintenance window, until {report['waiting_for_window']}")
    where = f" --engine {report['engine_url']}" if report.get("engine_url") else ""
    for sid, message in (report.get("waiting") or {}).items():
        line(f"waiting:   for an approval of {sid} ({message}): runproc approve {result.run_id} {sid} "
             f"[--reject]{where}")
    line(f"duration:  {format_duration(result.duration)}")
    if "params" in report:
        line(f"params:    {_params(report.get('params'))}")
    flying = [str(s) for s in report.get("in_flight") or []]
    if flying and result.status == "running":
        line(f"running:   {', '.join(flying)}")
    elif flying:
        line(f"in flight: {', '.join(flying)} (running when the runner stopped: its action may or may not "
             "have taken effect; runproc resume asks what to do with it)")
    line("steps:")
    day = (result.started_at or "")[:10]
    for sid, s in result.steps.items():
        if not_needed(s) or (s.status == "cancelled" and not s.started_at):
            continue  # the summary lists them in one line
        row = view._plain_row(sid, {"status": s.status, "result": s})
        if s.status not in ICONS:  # an in-flight step: a sign of its own rather than "?"
            row = row.replace(f"? {s.status}", f"{'⚠' if s.status == IN_FLIGHT else '?'} {s.status}", 1)
        first, *rest = row.split("\n")
        # when it started, its hosts and its undo under its row, before its error's lines
        # (a recorded plan reads as the plan did: no timings)
        details = [] if result.dry_run else _step_details(s, day)
        line("\n".join([first, *(f"      {d}" for d in details), *rest]))
    _approvals(view, report.get("approvals") or [])
    view.summary(result)


def _who(report: dict[str, Any]) -> str:
    user, host, pid = report.get("user"), report.get("host"), report.get("pid")
    if not (user or host):
        return ""
    text = f"{user or '?'} on {host or '?'}"
    return text + (f" (pid {pid})" if pid else "")


def _params(params: Any) -> str:
    """Params as ``name=value`` (a secret one is ``***``: its value was never recorded)."""
    if not isinstance(params, dict):
        return "(not recorded: only a real run records its params)"
    if not params:
        return "(none)"
    shown = []
    for name, value in params.items():
        text = "(not set)" if value is None else value if isinstance(value, str) else _json(value)
        shown.append(f"{name}={one_line(str(text), 80)}")
    return ", ".join(shown)


def _json(value: Any) -> str:
    import json

    return json.dumps(value, default=str)


def _when(at: str | None, day: str) -> str:
    """A time within the run's day as its clock time; another day's in full."""
    if not at:
        return "?"
    return at[11:] if at[:10] == day and len(at) > 11 else at


def _step_details(s: StepResult, day: str) -> list[str]:
    """The lines under a step's row: when it started, its hosts one by one, its undo."""
    out: list[str] = []
    if s.started_at:
        out.append(f"started {_when(s.started_at, day)}" + (f", {s.attempts} attempts" if s.attempts > 1 else ""))
    for host, h in (s.hosts or {}).items():
        took = f" ({format_duration(h.duration)})" if h.duration else ""
        why = f": {one_line(h.error, 160)}" if h.error and h.status != "ok" else ""
        out.append(f"{'iteration' if s.loop else 'host'} {host}: {h.status}{took}{why}")
    if s.rollback is not None:
        u = s.rollback
        took = f" ({format_duration(u.duration)})" if u.duration else ""
        at = f" at {_when(u.started_at, day)}" if u.started_at else ""
        why = f": {one_line(u.error, 160)}" if u.error and u.status != "ok" else ""
        out.append(f"rollback: {u.status}{at}{took}{why}")
    return out


def _approvals(view: ConsoleView, approvals: list[dict[str, Any]]) -> None:
    if not approvals:
        return
    view._line("approvals:")
    for a in approvals:
        verdict = "approved" if a.get("approved") else "denied"
        by = f" by {a['by']}" if a.get("by") else ""
        how = f" ({a['how']})" if a.get("how") else ""
        view._line(f"  {a.get('step') or '?'}: {verdict}{by}{how} at {a.get('at') or '?'}")


def result_from_json(report: dict[str, Any]) -> RunResult:
    steps = {d["id"]: _step_from_json(d) for d in report.get("steps") or []}
    return RunResult(report.get("procedure", "?"), report.get("run_id", "?"), report.get("status", "?"),
                     int(report.get("exit_code") or 0), bool(report.get("dry_run")),
                     report.get("started_at") or "", float(report.get("duration") or 0.0), steps,
                     error=report.get("error"), root_cause=report.get("root_cause"),
                     rolled_back=list(report.get("rolled_back") or []),
                     not_undone=list(report.get("not_undone") or []), kept=list(report.get("kept") or []))


_STEP_KEYS = {"id", "status", "phase", "started_at", "duration", "attempts", "error", "action", "notes",
              "hosts", "rollback", "rollback_action", "error_kind", "not_judged", "loop"}


def _step_from_json(d: dict[str, Any]) -> StepResult:
    s = StepResult(str(d.get("id", "?")), status=d.get("status", "?"), phase=d.get("phase", "step"),
                   started_at=d.get("started_at"), duration=float(d.get("duration") or 0.0),
                   attempts=int(d.get("attempts") or 0), error=d.get("error"), description=d.get("action"),
                   notes=list(d.get("notes") or []), rollback_action=d.get("rollback_action"),
                   error_kind=d.get("error_kind"), unjudged=d.get("not_judged") is True,
                   loop=d.get("loop") is True)
    s.fields = {k: v for k, v in d.items() if k not in _STEP_KEYS}
    if isinstance(d.get("hosts"), dict):
        s.hosts = {h: _step_from_json({"id": h, **v}) for h, v in d["hosts"].items()}
    if isinstance(d.get("rollback"), dict):
        s.rollback = _step_from_json({"id": s.id, **d["rollback"]})
    return s
