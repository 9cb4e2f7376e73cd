"""What the controller sends to Temporal: a validated procedure as plain values.

The controller validates the file locally (exit 2 before anything starts), resolves the
params that are not secret, and decides for each step the task queue that runs it: the
step's ``queue:``, else (a fanned-out step, per host) the host's ``runproc_queue`` inventory
var, else the queue of the connection it uses, else the default (``runproc``, ``--queue``
or ``RUNPROC_QUEUE``). Secrets are named, never read: each worker reads them from
its own environment. What cannot run on Temporal yet is refused here, in one line each.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidInputError, Problem, ProcedureError
from ..format.model import Procedure, Step

DEFAULT_QUEUE = "runproc"


def build(proc: Procedure, params: dict[str, Any], *, run_id: str, started_at: str, dry_run: bool, yes: bool,
          no_rollback: bool, default_queue: str, schedule_to_start: float, inventory: str | None = None,
          limit: str | None = None, forks: int | None = None, accept_new_hosts: bool = False,
          known_hosts: str | None = None) -> dict[str, Any]:
    """The workflow's input; ProcedureError (exit 2) for what the Temporal engine cannot run."""
    from ..execution.dryrun import changes_things
    from ..format.graph import build as build_graph
    from ..format.graph import declared_needs

    if forks is not None and (isinstance(forks, bool) or not isinstance(forks, int) or forks < 1):
        raise ProcedureError(Problem("--forks", 0, 0, f"must be at least 1, got {forks}"))
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
    # named, never read here: each worker reads them from its own environment, files or stores
    # ({"env": ...}, {"file": ...}, {"vault": {path, key, ...}}: declarations, never values)
    secrets: dict[str, dict[str, Any]] = {name: secret.model_dump(exclude_none=True)
                                          for name, secret in proc.secrets.items()}
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
    fanned = [step.id for step in proc.steps if step.on]
    dag = build_graph(proc.steps, needs_of) if fanned else None
    hosts_of = _Hosts(proc, params, data, inventory, limit, problem)
    for section, phase, group in (("steps", "step", proc.steps), ("finally", "finally", proc.finally_),
                                  ("on_failure", "on_failure", proc.on_failure)):
        for i, step in enumerate(group):
            if step.loops:
                problem((section, i), f"step {step.id}: foreach and matrix loops do not run on the Temporal "
                                      "engine yet: run this procedure locally")
            if step.action is not None and step.action.kind == "procedure":
                problem((section, i), f"step {step.id}: child procedures do not run on the Temporal engine yet")
            options = step.action.options if step.action is not None and step.action.kind == "confirm" else None
            if options is not None and (getattr(options, "four_eyes", False) or getattr(options, "approvers", None)):
                # refused, not ignored: runproc approve --engine does not check who answers yet
                problem((section, i), f"step {step.id}: approvers and four_eyes are not checked by the Temporal "
                                      "engine yet: run this procedure locally")
            needs = needs_of[step.id] if phase == "step" else list(step.needs or [])
            entry = {"id": step.id, "name": step.name, "phase": phase, "raw": raw_steps.get(step.id, {}),
                     "needs": needs, "queue": _queue(step, proc, connections, default_queue),
                     "idempotent": step.idempotent, "writes": changes_things(step),
                     "rollback": step.rollback is not None, "timeout": step.timeout,
                     "continue_on_error": step.continue_on_error, "when": step.when,
                     "reads": sorted(set(references.get(step.id, ())) | set(step.needs or [])),
                     "confirm": _confirm_message(step),
                     "executor": step.action.kind if step.action is not None else None}
            if step.on:
                entry.update(hosts_of.select(step, (section, i, "on"), entry["queue"]), serial=step.serial,
                             max_fail=step.max_fail,
                             # a host that failed in one of these (within its max_fail) is left out
                             upstream_fanouts=[f for f in fanned if dag is not None and phase == "step"
                                               and f != step.id and dag.is_upstream(f, step.id)])
            steps[section].append(entry)
            by_id[step.id] = entry
    if problems:
        raise ProcedureError(problems)
    return {"procedure": proc.procedure, "path": str(proc.path), "workdir": str(proc.workdir),
            "params": params, "param_decls": data.get("params") or {}, "secrets": secrets,
            "connections": connections, "vars": data.get("vars") or {}, "dry_run": dry_run, "yes": yes,
            "preconditions": data.get("preconditions") or [],
            "no_rollback": no_rollback, "concurrency": proc.concurrency or 16, "default_queue": default_queue,
            "schedule_to_start": schedule_to_start, "heartbeat": heartbeat_timeout(),
            "forks": forks or 20, "accept_new_hosts": accept_new_hosts, "known_hosts": known_hosts,
            "run": {"id": run_id, "dry_run": dry_run, "started_at": started_at, "error": None,
                    "procedure": proc.procedure, "dir": str(proc.workdir), "offline": False},
            "steps": steps["steps"], "finally": steps["finally"], "on_failure": steps["on_failure"],
            "by_id": by_id}


class _Hosts:
    """The inventory hosts of fanned-out steps, chosen here as a local run chooses them (the
    pattern, ``--limit``, an optional ``?pattern``), so that each host's queue is known when the
    run starts: ``runproc_queue`` as a host or group var routes a host to the workers of its
    zone. The host's vars travel in the workflow's history: a password among them is refused."""

    def __init__(self, proc: Procedure, params: dict[str, Any], data: dict[str, Any], inventory: str | None,
                 limit: str | None, problem: Any) -> None:
        self.proc, self.params, self.data, self.limit, self.problem = proc, params, data, limit, problem
        self.given = inventory
        self.loaded: Any = None

    def _namespace(self) -> dict[str, Any]:
        from ..format import expressions as ex

        ns: dict[str, Any] = {"params": dict(self.params), "vars": {}, "steps": {}, "secrets": {}}
        for name, value in (self.data.get("vars") or {}).items():
            try:
                ns["vars"][name] = ex.render_value(value, ns)
            except ex.ExpressionError:
                ns["vars"][name] = ex.Unknown(f"vars.{name}")  # reads a secret or a step: not known here
        return ns

    def _inventory(self, where: tuple[Any, ...], step_id: str) -> Any:
        from pathlib import Path

        from ..format import expressions as ex
        from ..inventory import InventoryError, load_inventory

        if self.loaded is not None:
            return self.loaded
        if self.given:
            path = Path(self.given)
        elif self.proc.inventory:
            try:
                path = Path(str(ex.render_value(self.proc.inventory, self._namespace()))).expanduser()
            except ex.ExpressionError as exc:
                self.problem(("inventory",), f"inventory: {exc} (with --engine it is read when the run is submitted)")
                return None
            path = path if path.is_absolute() else Path(self.proc.workdir) / path
        else:
            self.problem(where, f"step {step_id}: runs 'on' inventory hosts, but no inventory was given: pass "
                                "-i INVENTORY or set 'inventory:' in the procedure")
            return None
        try:
            self.loaded = load_inventory(path.resolve())
        except InventoryError as exc:
            self.problem(where, f"inventory {path}: {exc}")
            return None
        return self.loaded

    def select(self, step: Step, where: tuple[Any, ...], queue: str) -> dict[str, Any]:
        import json

        from ..format import expressions as ex
        from ..inventory import InventoryError
        from ..transports.ssh import SECRET_VARS

        assert step.on is not None
        inventory = self._inventory(where, step.id)
        if inventory is None:
            return {"hosts": []}
        try:
            pattern = str(ex.render_value(step.on, self._namespace()))
        except ex.ExpressionError as exc:
            self.problem(where, f"step {step.id}: on: {exc} (with --engine the hosts are chosen when the run is "
                                "submitted: from params and vars only)")
            return {"hosts": []}
        try:
            selected, note = inventory.targets(pattern, self.limit)  # as a run here chooses them
        except InventoryError as exc:
            self.problem(where, f"step {step.id}: {exc}")
            return {"hosts": []}
        hosts = []
        for h in selected:
            secret = sorted(name for name in SECRET_VARS if h.vars.get(name) is not None)
            if secret:
                self.problem(where, f"step {step.id}: host {h.name} has {secret[0]} in the inventory: it would "
                                    "travel in the workflow's history; with --engine a worker logs in with its "
                                    "own key or agent (ansible_ssh_private_key_file on the worker)")
                continue
            routed = str(h.vars.get("runproc_queue") or "") if not step.queue else ""
            try:
                port = h.port
            except InventoryError as exc:
                self.problem(where, f"step {step.id}: {exc}")
                continue
            # as JSON sees them: a YAML date in a var must not stop the run being sent
            hosts.append(json.loads(json.dumps({"name": h.name, "address": h.address, "port": port, "user": h.user,
                                                "vars": dict(h.vars), "groups": list(h.groups),
                                                "queue": routed or queue}, default=str)))
        return {"hosts": hosts, "hosts_note": note}


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
