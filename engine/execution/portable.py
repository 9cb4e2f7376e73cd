"""One step from plain inputs: the seam a remote worker calls.

``StepInputs`` holds only values that survive ``pickle`` and JSON: the step as written, the
connections it may use, the template values it reads (params, vars, upstream results, run
fields) and the caller's choices. ``run_step`` validates the step again where it runs, then
executes it with the same code as the scheduler (``StepRunner.execute``) and returns its
``StepResult``. Secrets are not inputs: where the step runs, they come from that machine's
own environment (``secrets`` names the ones to read).
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import Problem, ProcedureError
from ..format import expressions as ex
from ..format.redaction import Redactor
from . import events as ev
from .journal import NullJournal
from .resources import Resources
from .results import RunResult, StepResult
from .step import StepRunner
from .taint import Taint


@dataclass(frozen=True)
class StepInputs:
    """Everything one step needs, as plain values."""

    step: dict[str, Any]  # the step as the procedure file gives it (its id, executor key, checks...)
    values: dict[str, Any] = field(default_factory=dict)  # params, vars, steps (upstream results), run
    connections: dict[str, Any] = field(default_factory=dict)  # as written in the procedure
    params: dict[str, Any] = field(default_factory=dict)  # the params' declarations, as written
    # secret name -> where it is read, here: an environment variable, or {"env"|"file": ..., "optional": ...}
    # as the procedure declares it (a relative file is relative to workdir)
    secrets: dict[str, Any] = field(default_factory=dict)
    workdir: str = "."
    dry_run: bool = False
    offline: bool = False
    yes: bool = False
    log_dir: str | None = None
    # a dry run: upstream steps that were only planned, whose results are unknown until the run
    unknown: list[str] = field(default_factory=list)
    # a fanned-out step: the one inventory host it runs on (name, address, port, user, vars,
    # groups, as ``host`` in templates), reached from here by its own ansible_connection
    host: dict[str, Any] | None = None
    accept_new_hosts: bool = False
    known_hosts: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepInputs:
        return cls(**data)


def _procedure_of(inputs: StepInputs) -> Any:
    """The step validated as the loader validates a file: the step, the connections it names,
    and a stand-in for each upstream step its templates read (so that references check)."""
    from ..format.loader import from_source
    from ..format.yamlsrc import parse_text

    upstream = sorted(set(inputs.values.get("steps") or {}))
    step = {k: v for k, v in inputs.step.items() if k != "needs"}
    if inputs.host is not None:
        step["on"] = str(inputs.host["name"])  # its templates may read host.*; the host is given, not chosen here
    if upstream:
        step["needs"] = upstream
    # vars arrive rendered: they stand in the document as their values, without templates
    plain_vars = {k: v for k, v in (inputs.values.get("vars") or {}).items()
                  if not (isinstance(v, str) and ex.is_template(v))}
    doc = {"procedure": "portable-step", "connections": inputs.connections, "params": inputs.params,
           "vars": plain_vars,
           "secrets": {name: {"env": how} if isinstance(how, str) else dict(how)
                       for name, how in inputs.secrets.items()},
           "steps": [*({"id": sid, "assert": "true"} for sid in upstream), step]}
    import json

    return from_source(parse_text(json.dumps(doc), f"<step {inputs.step.get('id')}>"))


class _PortableRun:
    """A RunContext made of plain values: what one step needs of a run, without the scheduler."""

    def __init__(self, inputs: StepInputs, proc: Any, on_event: Any = None) -> None:
        self.proc = proc
        self.references: dict[str, set[str]] = proc._references
        self.workdir = Path(inputs.workdir).resolve()
        self.dry_run = inputs.dry_run or inputs.offline
        self.offline = inputs.offline
        self.yes = inputs.yes
        self.ask = None
        self.expected_actions = None
        self.limit = self.inventory_path = None
        self.known_hosts = inputs.known_hosts
        self.forks = None
        self.accept_new_hosts = inputs.accept_new_hosts
        self.on_event = on_event
        self.wants_output = on_event is not None
        self.redactor = Redactor()
        self.taint = Taint(self.redactor)
        self.resources = Resources()
        self.results: dict[str, StepResult] = {}
        self.unknown: set[str] = set()
        self.undo_order: list[str] = []
        self.not_undone: list[str] = []
        self.stop = threading.Event()
        self.rollback_cancel = threading.Event()
        self._phase_cancel = self.stop
        self._needs = None
        self.journal = NullJournal()  # the caller (a workflow) keeps its own history
        self.completed_hosts: dict[str, dict[str, dict[str, Any]]] = {}
        self._log_dir = Path(inputs.log_dir) if inputs.log_dir else None
        self.ns: dict[str, Any] = {}  # the template values: the inputs', and secrets read here

    @property
    def cancel(self) -> threading.Event:
        return self._phase_cancel

    @property
    def log_dir(self) -> Path:
        if self._log_dir is None:
            import tempfile

            self._log_dir = Path(tempfile.mkdtemp(prefix="runproc-step-"))
        return self._log_dir

    def emit(self, event: ev.Event) -> None:
        if self.on_event is not None:
            self.on_event(event)

    def output(self, step_id: str, stream: str, text: str, host: str | None) -> None:
        self.emit(ev.StepOutput(step_id, stream, text, host))

    def progress(self, step_id: str, message: str, host: str | None) -> None:
        self.emit(ev.StepProgress(step_id, message, host))

    def retrying(self, step_id: str, attempt: int, delay: float, error: str | None,
                 host: str | None = None) -> None:
        self.emit(ev.StepRetrying(step_id, attempt, delay, error, host))

    def namespace(self, **extra: Any) -> dict[str, Any]:
        return {**self.ns, **extra}

    def run_child(self, file: str, params: dict[str, Any], **_: Any) -> RunResult:
        raise ProcedureError(Problem(file, 0, 0, "a child procedure runs where its parent runs, not in a "
                                                 "portable step"))


def run_step(inputs: StepInputs, *, on_event: Any = None, stop: threading.Event | None = None) -> StepResult:
    """Execute one step from plain inputs with the scheduler's own step code. ``stop``, once
    set, interrupts it as a local run's Ctrl-C does (its processes are killed)."""
    from ..executors import secretstores

    proc = _procedure_of(inputs)
    step = proc.step(str(inputs.step["id"]))
    run = _PortableRun(inputs, proc, on_event)
    if stop is not None:
        run.stop = run._phase_cancel = stop
    # a store's secrets are read once per run on this machine (the run's id keeps them)
    secrets = secretstores.resolve(proc, allow_missing=run.dry_run, offline=run.offline,
                                   run_id=str((inputs.values.get("run") or {}).get("id") or "") or None)
    for value in secrets.values():
        run.taint.protect(value)
    ns = {**inputs.values, "secrets": {k: v if v is not None else ex.Unknown(f"secrets.{k}")
                                       for k, v in secrets.items()},
          "env": dict(os.environ)}
    ns.setdefault("steps", {})
    ns.setdefault("params", {})
    ns.setdefault("vars", {})
    ns["steps"] = {**ns["steps"], **{sid: ex.Unknown(f"steps.{sid}") for sid in inputs.unknown}}
    run.ns = ns
    sr = StepResult(step.id)
    stepper = StepRunner(run)
    try:
        if step.action is None:
            raise ProcedureError(Problem(f"<step {step.id}>", 0, 0, "a step needs an executor"))
        try:
            target = _target(run, inputs.host) if inputs.host is not None else None
        except Exception as exc:  # noqa: BLE001 - a bad host var (port, become method) fails the step
            sr.status, sr.error = "failed", run.redactor(str(exc))
            return sr
        if target is not None:
            ns["host"] = target.view()
        try:
            stepper.execute(step, ns, sr, host=target)
        except ex.UnknownValueError as exc:  # as the scheduler plans it: the step depends on a planned one
            from ..executors import get_executor

            sr.status = "planned"
            sr.notes.append(f"unknown until the run: {exc.unknown.label}")
            executor = get_executor(step.action.kind)()
            sr.description = stepper.describe(executor, step.action.options,
                                              stepper.context(step.id, step, ns, host=target))
    finally:
        run.resources.close_all()
    return sr


def _target(run: _PortableRun, host: dict[str, Any]) -> Any:
    """The inventory host a fanned-out step runs on, with a transport opened from here."""
    from ..transports.ssh import SECRET_VARS, host_transport
    from .fanout import Target

    vars_ = dict(host.get("vars") or {})
    for name in SECRET_VARS:  # a password that reached here is still never shown
        if vars_.get(name) is not None:
            run.taint.protect(str(vars_[name]))
    transport = host_transport(str(host["name"]), vars_, workdir=run.workdir, resources=run.resources,
                               accept_new=run.accept_new_hosts, known_hosts=run.known_hosts,
                               notify=lambda text: run.emit(ev.Note("warning", run.redactor(text))))
    return Target(str(host["name"]), str(host.get("address") or host["name"]), int(host.get("port") or 22),
                  host.get("user"), vars_, list(host.get("groups") or []), transport)
