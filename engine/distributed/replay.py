"""``runproc resume|rollback RUN --engine …``: a new workflow run made from an ended one.

Both start from what Temporal kept of the ended run: its input (the validated procedure as it
was submitted, with its params and queues: the file is not read again) and its report. A
workflow never dies with a process, so there is no step "in flight" to decide about: each
step either completed, failed, or never started.

- resume: the steps that ended ``ok`` are not run again (their report entries, and their
  results as ``steps.<id>``, are carried over; a fanned-out step's finished hosts likewise);
  the rest run as in a new run. Refused when the run ended ok, was a dry run, or had its
  steps rolled back (there is nothing to resume from: run it again).
- rollback: the rollback of every step the run completed and did not undo (``ok``, a
  host's ``ok``, or an undo that failed), most recent first.

Pure functions over plain values: the client fetches, the workflow acts.
"""

from __future__ import annotations

from typing import Any

from ..errors import RefusedError


def _entries(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(e["id"]): e for e in report.get("steps") or []}


def completion_order(report: dict[str, Any]) -> list[str]:
    """The steps in the order they ended (the report's ``completed``; for a report without it,
    by when each ended)."""
    if isinstance(report.get("completed"), list):
        return [str(s) for s in report["completed"]]
    from datetime import datetime, timedelta

    ended = []
    for e in report.get("steps") or []:
        if e.get("started_at") and e.get("phase", "step") == "step":
            start = datetime.fromisoformat(str(e["started_at"]).replace("Z", "+00:00"))
            ended.append((start + timedelta(seconds=float(e.get("duration") or 0)), str(e["id"])))
    return [sid for _, sid in sorted(ended)]


def _check_ended(report: dict[str, Any], run_id: str, verb: str) -> None:
    if report.get("dry_run"):
        raise RefusedError(f"run {run_id} was a dry run: there is nothing to {verb}")
    if report.get("kind") == "rollback":
        raise RefusedError(f"run {run_id} is itself a rollback (of run {report.get('of_run')}): {verb} that run")


def resume_input(plan: dict[str, Any], report: dict[str, Any], *, run_id: str, started_at: str,
                 yes: bool) -> dict[str, Any]:
    """The input of a workflow that continues the ended run ``report`` describes."""
    from ..execution.results import recorded_result

    old = str(report.get("run_id"))
    _check_ended(report, old, "resume")
    if report.get("status") == "ok":
        raise RefusedError(f"run {old} ended ok: there is nothing to resume")
    entries = _entries(report)
    undone = [sid for sid, e in entries.items() if isinstance(e.get("rollback"), dict)
              or any(isinstance(h.get("rollback"), dict) for h in (e.get("hosts") or {}).values())]
    if report.get("rolled_back") or undone:
        raise RefusedError(f"run {old}'s completed steps were rolled back when it failed: there is nothing to "
                           f"resume from; run it again instead: runproc {plan.get('path')} --engine ...")
    main = {s["id"] for s in plan["steps"]}
    note = f"done in run {old}: not run again (resumed)"
    done: dict[str, dict[str, Any]] = {}
    views: dict[str, Any] = {}
    for sid in completion_order(report):
        entry = entries.get(sid)
        if entry is not None and sid in main and entry.get("status") == "ok":
            done[sid] = {**entry, "notes": [*(entry.get("notes") or []), note]}
            views[sid] = recorded_result(entry).as_fields()
    hosts_done: dict[str, dict[str, dict[str, Any]]] = {}
    for sid, entry in entries.items():
        if sid in done or sid not in main or not isinstance(entry.get("hosts"), dict):
            continue
        ok = {h: {**e, "notes": [*(e.get("notes") or []), note]} for h, e in entry["hosts"].items()
              if e.get("status") == "ok"}
        if ok:
            hosts_done[sid] = ok
    return {**plan, "yes": yes or bool(plan.get("yes")),
            "run": {**plan["run"], "id": run_id, "started_at": started_at},
            "resume": {"of_run": old, "done": done, "views": views, "hosts_done": hosts_done}}


def rollback_input(plan: dict[str, Any], report: dict[str, Any], *, run_id: str,
                   started_at: str) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """(the input of a workflow that undoes what the ended run left done, or None when there is
    nothing to undo; the steps it will undo, in order; the steps kept: no rollback defined)."""
    old = str(report.get("run_id"))
    _check_ended(report, old, "roll back")
    entries = _entries(report)
    by_id = plan["by_id"]
    order = completion_order(report)
    undo: list[str] = []
    kept: list[str] = []
    carried: dict[str, dict[str, Any]] = {}
    for sid in reversed(order):
        entry, step = entries.get(sid), by_id.get(sid)
        if entry is None or step is None or step.get("phase") != "step":
            continue
        hosts = entry.get("hosts") if isinstance(entry.get("hosts"), dict) else None
        if hosts is not None:
            left = {h: e for h, e in hosts.items() if _undoable(e)}
            if not left:
                continue
            # only the hosts still changed are undone: the others are "done", not "ok"
            hosts = {h: ({**e, "status": "ok"} if h in left else {**e, "status": "left"}) for h, e in hosts.items()}
            carried[sid] = {**entry, "status": "ok", "hosts": hosts}
        elif _undoable(entry):
            carried[sid] = {**entry, "status": "ok"}
        else:
            continue
        if step.get("rollback"):
            undo.append(sid)
        elif step.get("writes"):
            kept.append(sid)
    if not undo:
        return None, [], kept
    return ({**plan, "run": {**plan["run"], "id": run_id, "started_at": started_at}, "dry_run": False,
             "undo": {"of_run": old, "entries": carried, "order": list(reversed(undo))}}, undo, kept)


def _undoable(entry: dict[str, Any]) -> bool:
    """Still changed: it completed (or its action did, before its verify failed) and no undo
    of it succeeded; an undo that failed is tried again."""
    status = entry.get("status")
    return status in ("ok", "rollback_failed") or (bool(entry.get("changed")) and status != "rolled_back")
