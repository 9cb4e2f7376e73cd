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


def in_doubt(report: dict[str, Any]) -> list[tuple[str, str | None]]:
    """The steps (step, None) and fanned-out hosts (step, host) whose worker was lost mid-step:
    whether their action ran is unknown, so a person decides (resume: run again or treat as
    done; rollback: undo or leave)."""
    out: list[tuple[str, str | None]] = []
    for e in report.get("steps") or []:
        hosts = e.get("hosts") if isinstance(e.get("hosts"), dict) else None
        if hosts is not None:
            out.extend((str(e["id"]), h) for h, r in hosts.items() if r.get("in_doubt") and r.get("status") != "ok")
        elif e.get("in_doubt") and e.get("status") != "ok":
            out.append((str(e["id"]), None))
    return out


def check_resumable(plan: dict[str, Any], report: dict[str, Any]) -> None:
    """RefusedError when the ended run cannot be resumed (before anyone is asked anything)."""
    old = str(report.get("run_id"))
    _check_ended(report, old, "resume")
    if report.get("status") == "ok":
        raise RefusedError(f"run {old} ended ok: there is nothing to resume")
    undone = [e["id"] for e in report.get("steps") or [] if isinstance(e.get("rollback"), dict)
              or any(isinstance(h.get("rollback"), dict) for h in (e.get("hosts") or {}).values())]
    if report.get("rolled_back") or undone:
        raise RefusedError(f"run {old}'s completed steps were rolled back when it failed: there is nothing to "
                           f"resume from; run it again instead: runproc {plan.get('path')} --engine ...")


def resume_input(plan: dict[str, Any], report: dict[str, Any], *, run_id: str, started_at: str,
                 yes: bool, treat_as_done: set[tuple[str, str | None]] | None = None) -> dict[str, Any]:
    """The input of a workflow that continues the ended run ``report`` describes.
    ``treat_as_done``: in-doubt steps (or hosts) a person said not to run again."""
    from ..execution.results import recorded_result

    old = str(report.get("run_id"))
    check_resumable(plan, report)
    skipped = treat_as_done or set()
    entries = _entries(report)
    main = {s["id"] for s in plan["steps"]}
    note = f"done in run {old}: not run again (resumed)"
    done: dict[str, dict[str, Any]] = {}
    views: dict[str, Any] = {}
    doubted = f"in doubt in run {old}: treated as done (--skip-inflight)"
    for sid in [*completion_order(report), *sorted(s for s, h in skipped if h is None)]:
        entry = entries.get(sid)
        if entry is None or sid not in main or sid in done:
            continue
        if entry.get("status") == "ok":
            done[sid] = {**entry, "notes": [*(entry.get("notes") or []), note]}
        elif (sid, None) in skipped:
            done[sid] = {**entry, "status": "ok", "error": None, "notes": [*(entry.get("notes") or []), doubted]}
        else:
            continue
        views[sid] = recorded_result(done[sid]).as_fields()
    hosts_done: dict[str, dict[str, dict[str, Any]]] = {}
    for sid, entry in entries.items():
        if sid in done or sid not in main or not isinstance(entry.get("hosts"), dict):
            continue
        ok = {h: {**e, "notes": [*(e.get("notes") or []), note]} for h, e in entry["hosts"].items()
              if e.get("status") == "ok"}
        ok.update({h: {**e, "status": "ok", "error": None, "notes": [*(e.get("notes") or []), doubted]}
                   for h, e in entry["hosts"].items() if (sid, h) in skipped})
        if ok:
            hosts_done[sid] = ok
    rest = {k: v for k, v in plan.items() if k not in ("resume", "undo")}  # what the ended run replayed
    return {**rest, "yes": yes or bool(plan.get("yes")),
            "run": {**plan["run"], "id": run_id, "started_at": started_at},
            "resume": {"of_run": old, "done": done, "views": views, "hosts_done": hosts_done}}


def rollback_input(plan: dict[str, Any], report: dict[str, Any], *, run_id: str, started_at: str,
                   undo_in_doubt: set[tuple[str, str | None]] | None = None
                   ) -> tuple[dict[str, Any] | None, list[str], list[str]]:
    """(the input of a workflow that undoes what the ended run left done, or None when there is
    nothing to undo; the steps it will undo, in order; the steps kept: no rollback defined).
    ``undo_in_doubt``: in-doubt steps (or hosts) a person said to undo too."""
    chosen = undo_in_doubt or set()
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
            left = {h: e for h, e in hosts.items() if _undoable(e) or (sid, h) in chosen}
            if not left:
                continue
            # only the hosts still changed are undone: the others are "done", not "ok"
            hosts = {h: ({**e, "status": "ok"} if h in left else {**e, "status": "left"}) for h, e in hosts.items()}
            carried[sid] = {**entry, "status": "ok", "hosts": hosts}
        elif _undoable(entry) or (sid, None) in chosen:
            carried[sid] = {**entry, "status": "ok"}
        else:
            continue
        if step.get("rollback"):
            undo.append(sid)
        elif step.get("writes"):
            kept.append(sid)
    if not undo:
        return None, [], kept
    rest = {k: v for k, v in plan.items() if k not in ("resume", "undo")}  # what the ended run replayed
    return ({**rest, "run": {**plan["run"], "id": run_id, "started_at": started_at}, "dry_run": False,
             "undo": {"of_run": old, "entries": carried, "order": list(reversed(undo))}}, undo, kept)


def _undoable(entry: dict[str, Any]) -> bool:
    """Still changed: it completed (or its action did, before its verify failed) and no undo
    of it succeeded; an undo that failed is tried again."""
    status = entry.get("status")
    return status in ("ok", "rollback_failed") or (bool(entry.get("changed")) and status != "rolled_back")
