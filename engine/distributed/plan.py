"""What the controller sends to Temporal: a validated procedure as plain values.

The controller validates the file locally (exit 2 before anything starts), resolves the
params that are not secret, and decides for each step the task queue that runs it: the
step's ``queue:``, else the queue of the connection it uses, else the default (``runproc``,
``--queue`` or ``RUNPROC_QUEUE``). Secrets are named, never read: each worker reads them from
its own environment. What cannot run on Temporal yet is refused here, in one line each.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError, Problem, ProcedureError
from ..format.model import Procedure, Step

DEFAULT_QUEUE = "runproc"


def build(proc: Procedure, params: dict[str, Any], *, run_id: str, started_at: str, dry_run: bool, yes: bool,
          no_rollback: bool, default_queue: str, schedule_to_start: float) -> dict[str, Any]:
    """The workflow's input; ProcedureError (exit 2) for what the Temporal engine cannot run."""
    from ..execution.dryrun import changes_things
    from ..format.graph import declared_needs

    src = proc._source
    data: dict[str, Any] = src.data if src is not None else {}
    file = src.file if src is not None else str(proc.path)
    problems: list[Problem] = []

    def problem(path: tuple[Any, ...], message: str) -> None:
        line, col = src.where(path) if src is not None else (0, 0)
        problems.append(Problem(file, line, col, message))

    for name, spec in proc.params.items():
        if spec.secret:
            problem(("params", name), f"params.{name}: a secret param would travel in the workflow's history; "
                                      "with --engine temporal declare it under secrets: (read on the worker)")
    if proc.lock:
        problem(("lock",), f"lock: {proc.lock!r} is not taken by the Temporal engine yet: run this procedure "
                           "locally, where the lock is held for the run")
    secrets: dict[str, str] = {}
    for name, secret in proc.secrets.items():
        if secret.env is None:
            problem(("secrets", name), f"secrets.{name}: only env secrets are read on a worker (file: is not yet)")
        else:
            secrets[name] = secret.env
    connections = data.get("connections") or {}
    raw_steps: dict[str, dict[str, Any]] = {}
    for section in ("steps", "finally", "on_failure"):
        for raw in data.get(section) or []:
            if isinstance(raw, dict) and "id" in raw:
                raw_steps[str(raw["id"])] = raw
    steps: dict[str, list[dict[str, Any]]] = {"steps": [], "finally": [], "on_failure": []}
    by_id: dict[str, dict[str, Any]] = {}
    references: dict[str, Any] = getattr(proc, "_references", {}) or {}
    # a main step without needs: waits for the step before it (the file reads top to bottom)
    needs_of = declared_needs(proc.steps)
    for section, phase, group in (("steps", "step", proc.steps), ("finally", "finally", proc.finally_),
                                  ("on_failure", "on_failure", proc.on_failure)):
        for i, step in enumerate(group):
            if step.on:
                problem((section, i, "on"), f"step {step.id}: fan-out (on:) does not run on the Temporal engine "
                                            "yet: run this procedure locally")
            if step.action is not None and step.action.kind == "procedure":
                problem((section, i), f"step {step.id}: child procedures do not run on the Temporal engine yet")
            needs = needs_of[step.id] if phase == "step" else list(step.needs or [])
            entry = {"id": step.id, "name": step.name, "phase": phase, "raw": raw_steps.get(step.id, {}),
                     "needs": needs, "queue": _queue(step, proc, connections, default_queue),
                     "idempotent": step.idempotent, "writes": changes_things(step),
                     "rollback": step.rollback is not None, "timeout": step.timeout,
                     "continue_on_error": step.continue_on_error, "when": step.when,
                     "reads": sorted(set(references.get(step.id, ())) | set(step.needs or [])),
                     "confirm": _confirm_message(step)}
            steps[section].append(entry)
            by_id[step.id] = entry
    if problems:
        raise ProcedureError(problems)
    return {"procedure": proc.procedure, "path": str(proc.path), "workdir": str(proc.workdir),
            "params": params, "param_decls": data.get("params") or {}, "secrets": secrets,
            "connections": connections, "vars": data.get("vars") or {}, "dry_run": dry_run, "yes": yes,
            "no_rollback": no_rollback, "concurrency": proc.concurrency or 16, "default_queue": default_queue,
            "schedule_to_start": schedule_to_start, "heartbeat": heartbeat_timeout(),
            "run": {"id": run_id, "dry_run": dry_run, "started_at": started_at, "error": None,
                    "procedure": proc.procedure, "dir": str(proc.workdir), "offline": False},
            "steps": steps["steps"], "finally": steps["finally"], "on_failure": steps["on_failure"],
            "by_id": by_id}


def heartbeat_timeout() -> float | None:
    """How long a step's worker may go silent before the step counts as lost (its worker died):
    ``RUNPROC_HEARTBEAT_TIMEOUT`` seconds; None: the workflow's default (10 s). Workers beat
    every 2 s, or a third of a shorter timeout."""
    import os

    text = os.environ.get("RUNPROC_HEARTBEAT_TIMEOUT", "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds < float("inf"):
        raise InvalidInputError(f"RUNPROC_HEARTBEAT_TIMEOUT={text!r}: expected a number of seconds above 0, e.g. 10")
    return seconds


def _queue(step: Step, proc: Procedure, connections: dict[str, Any], default: str) -> str:
    if step.queue:
        return step.queue
    options = step.action.options if step.action is not None else None
    name = getattr(options, "connection", None)
    if isinstance(name, str) and name in proc.connections:
        queue = getattr(proc.connections[name], "queue", None)
        if queue:
            return str(queue)
    return default


def _confirm_message(step: Step) -> str | None:
    if step.action is None or step.action.kind != "confirm":
        return None
    return str(getattr(step.action.options, "message", "") or "")
