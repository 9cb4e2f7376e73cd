"""What a run's journal says when the run did not reach its end: its report, rebuilt, and
the order its steps completed in (for ``runproc resume`` and ``runproc rollback``).

Journal events (engine/execution/journal.py writes them):

- ``step_started`` {phase, action?}: the step's action is about to run (a fanned-out step:
  its hosts are about to start);
- ``host_started`` {action} / ``host_finished`` {entry}: one host of a fanned-out step;
- ``step_finished`` {entry, completed, changed}: the step's result, as the report has it;
- ``rollback_started`` / ``rollback_finished`` {ok, error, entry}: an undo (per step);
- ``approval`` {approved, by, how}: a person (or ``--yes``) answered a confirm step.

A step started and not finished was *in flight*: its action may or may not have happened.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

IN_FLIGHT = "interrupted"  # the status of a step that was running when the runner stopped
IN_FLIGHT_NOTE = "in flight when the runner stopped: its action may or may not have taken effect"


def completion(entries: list[dict[str, Any]]) -> dict[str, list[str]]:
    """{completed: step ids in the order they completed, changed: failed steps that changed
    things}, as a run that ends records them."""
    completed: list[str] = []
    changed: list[str] = []
    for e in entries:
        if e["event"] != "step_finished" or not e.get("data"):
            continue
        data = e["data"]
        if (data.get("entry") or {}).get("phase", "step") != "step":
            continue
        if data.get("completed"):
            completed.append(e["step"])
        if data.get("changed"):
            changed.append(e["step"])
    return {"completed": completed, "changed": changed}


def in_flight(entries: list[dict[str, Any]]) -> dict[str, set[str] | None]:
    """Steps started and not finished: step id -> the hosts in flight (None: not fanned out)."""
    out: dict[str, set[str] | None] = {}
    hosts: dict[str, set[str]] = {}
    for e in entries:
        event, step, host = e["event"], e.get("step"), e.get("host")
        if step is None:
            continue
        if event == "step_started":
            out[step] = None
        elif event == "host_started":
            hosts.setdefault(step, set()).add(host or "")
            out.setdefault(step, None)
        elif event == "host_finished":
            hosts.get(step, set()).discard(host or "")
        elif event == "step_finished":
            out.pop(step, None)
            hosts.pop(step, None)
    return {sid: hosts.get(sid) for sid in out}


def rebuild_report(header: dict[str, Any], entries: list[dict[str, Any]], *, host: str | None,
                   pid: int | None, running: bool = False) -> dict[str, Any]:
    """The report of a run that has no end (yet): what its journal says, step by step."""
    finished: dict[str, dict[str, Any]] = {}
    started: dict[str, dict[str, Any]] = {}
    host_entries: dict[str, dict[str, dict[str, Any]]] = {}
    rolled_back: list[str] = []
    rollbacks: dict[str, dict[str, Any]] = {}
    undo_started: set[str] = set()
    approvals: list[dict[str, Any]] = []
    for e in entries:
        event, sid, data = e["event"], e.get("step"), e.get("data") or {}
        if sid is None:
            continue
        if event == "step_started":
            started[sid] = {"at": e["at"], **data}
        elif event == "host_started":
            started.setdefault(sid, {"at": e["at"]})
            host_entries.setdefault(sid, {}).setdefault(e.get("host") or "", {
                "status": IN_FLIGHT, "started_at": e["at"], "action": data.get("action"), "notes": [IN_FLIGHT_NOTE]})
        elif event == "host_finished":
            host_entries.setdefault(sid, {})[e.get("host") or ""] = data.get("entry") or {}
        elif event == "step_finished":
            finished[sid] = dict(data.get("entry") or {"id": sid, "status": "failed"})
        elif event == "rollback_started":
            undo_started.add(sid)
        elif event == "rollback_finished":
            undo_started.discard(sid)
            rollbacks[sid] = data
            if data.get("ok"):
                rolled_back.append(sid)
        elif event == "approval":
            approvals.append({"step": sid, "at": e["at"], **data})
    flying = in_flight(entries)
    steps: list[dict[str, Any]] = []
    for sid, phase in header.get("steps") or []:
        if sid in finished:
            entry = finished[sid]
        elif sid in flying:
            s = started.get(sid, {})
            entry = {"id": sid, "status": IN_FLIGHT, "phase": phase, "started_at": s.get("at"), "duration": 0.0,
                     "attempts": 1, "error": None, "notes": [IN_FLIGHT_NOTE if not running else "running"]}
            if s.get("action"):
                entry["action"] = s["action"]
            if sid in host_entries:
                entry["hosts"] = host_entries[sid]
        else:
            entry = {"id": sid, "status": "pending" if running else "cancelled", "phase": phase,
                     "started_at": None, "duration": 0.0, "attempts": 0,
                     "error": None if running else "not started: the run was interrupted"}
        if sid in rollbacks:
            undo = rollbacks[sid]
            entry = {**entry, "rollback": undo.get("entry") or {"status": "ok" if undo.get("ok") else "failed",
                                                               "error": undo.get("error")}}
            entry["status"] = "rolled_back" if undo.get("ok") and entry["status"] == "ok" else (
                entry["status"] if undo.get("ok") else "rollback_failed")
        elif sid in undo_started:
            entry = {**entry, "notes": [*(entry.get("notes") or []),
                                        "its rollback was in flight when the runner stopped"]}
        steps.append(entry)
    last = entries[-1]["at"] if entries else header.get("started_at")
    where = f"pid {pid} on {host}" if pid else f"on {host}"
    flying_ids = [sid for sid in flying if any(s == sid for s, _ in header.get("steps") or [])]
    if running:
        error = None
    elif flying_ids:
        error = f"the runner ({where}) stopped while {', '.join(flying_ids)} was in flight"
    else:
        error = f"the runner ({where}) stopped between steps"
    report: dict[str, Any] = {
        "procedure": header.get("procedure"), "run_id": header.get("run_id"),
        "status": "running" if running else "interrupted", "exit_code": None, "dry_run": False,
        "started_at": header.get("started_at"), "duration": _seconds_between(header.get("started_at"), last),
        "error": error, "root_cause": None, "rolled_back": rolled_back,
        "not_undone": [], "kept": [], "steps": steps, "in_flight": flying_ids,
        "kind": header.get("kind") or "run", "of_run": header.get("of_run"),
        "user": header.get("user"), "host": host, "pid": pid, "params": header.get("params"),
    }
    if approvals:
        report["approvals"] = approvals
    return report


def _seconds_between(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return round(max(0.0, (b - a).total_seconds()), 4)
