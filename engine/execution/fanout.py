"""Fan-out: a step with ``on:`` runs once per inventory host, in batches, as an Ansible play does.

The runner asks three things of this module:

- ``select_hosts(run, step)``: the hosts a step targets (inventory, pattern, ``--limit``);
- ``run_fanout(...)``: run the step on them, ``forks`` at a time, in ``serial`` batches,
  stopping later batches when a batch has more failures than ``max_fail`` tolerates;
- ``rollback_fanout(...)``: undo the step on exactly the hosts where it succeeded.

Decisions (docs/fanout.md says why):

- A pattern that matches no host of the inventory is an error (a typo must not turn a
  change into a silent no-op), unless the pattern starts with ``?`` ("optional":
  ``on: "?canaries"``), which makes an empty match a skipped step. A pattern whose hosts
  ``--limit`` leaves out entirely skips the step, as ``ansible-playbook --limit`` skips a
  play; a ``--limit`` that matches nothing in the whole inventory is an error.
- ``serial`` and ``max_fail`` follow Ansible (``serial`` percent rounds down, at least one
  host; ``max_fail`` is a number or a percent of the batch, "more than" stops). Failures
  within ``max_fail`` are tolerated: the step is ok (the failed hosts keep their status and
  a note says so). Like Ansible, a batch in which every host failed always stops the step.
- Hosts of batches that never started are ``cancelled``.
"""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import Problem, ProcedureError
from ..executors.base import environment_error
from ..format import expressions as ex
from . import events as ev
from .batches import batch_sizes, stop_reason, summarise, too_many_failures
from .journal import now_iso
from .results import FAILED, StepResult, recorded_result
from .step import error_text

if TYPE_CHECKING:
    from ..format.model import Step
    from ..inventory import Host, Inventory
    from .context import RunContext as Run
    from .step import StepRunner

DEFAULT_FORKS = 20

# hosts each fanned-out step ran on, per run, so that rollback reaches exactly those hosts
_TARGETS: weakref.WeakKeyDictionary[Any, dict[str, dict[str, Target]]] = weakref.WeakKeyDictionary()
_TARGETS_LOCK = threading.Lock()


class HostList(list["Host"]):
    """The selected hosts; ``note`` says why the list is empty when that is not an error."""

    note: str | None = None
    inventory: Inventory | None = None


@dataclass
class Target:
    """A host as the shell executor and templates see it: its identity plus a transport."""

    name: str
    address: str
    port: int
    user: str | None
    vars: dict[str, Any]
    groups: list[str]
    transport: Any = field(default=None, repr=False)

    def view(self) -> dict[str, Any]:
        """``host`` in templates: ``host.name``, ``host.address``, ``host.vars.role``..."""
        return {"name": self.name, "address": self.address, "port": self.port, "user": self.user,
                "vars": self.vars, "groups": self.groups}


# ---------------------------------------------------------------- selecting hosts


def _problem(run: Run, step: Step, key: str, message: str) -> ProcedureError:
    src = run.proc._source
    if src is None:
        return ProcedureError(f"step {step.id}: {message}")
    path: tuple[Any, ...] = (key,)
    for section, steps in (("steps", run.proc.steps), ("finally", run.proc.finally_),
                           ("on_failure", run.proc.on_failure)):
        if step in steps:
            path = (section, steps.index(step), key)
    line, col = src.where(path)
    return ProcedureError(Problem(src.file, line, col, f"step {step.id}: {message}"))


def load_run_inventory(run: Run, step: Step) -> Inventory:
    """``-i`` (relative to the current directory), else the procedure's ``inventory:`` (to its file)."""
    from ..inventory import InventoryError, load_inventory

    if run.inventory_path:
        path = Path(run.inventory_path)
    elif run.proc.inventory:
        try:
            rendered = ex.render_value(run.proc.inventory, run.namespace())
        except ex.ExpressionError as exc:
            raise _problem(run, step, "on", f"inventory: {exc}") from None
        path = Path(str(rendered)).expanduser()
        path = path if path.is_absolute() else run.workdir / path
    else:
        raise _problem(run, step, "on", "runs 'on' inventory hosts, but no inventory was given: "
                                        "pass -i INVENTORY or set 'inventory:' in the procedure")
    path = path.resolve()
    try:
        # one parse per run (and per child procedure using the same file)
        return run.resources.get(f"inventory:{path}", lambda: load_inventory(path))
    except InventoryError as exc:
        raise _problem(run, step, "on", f"inventory {path}: {exc}") from None


def select_hosts(run: Run, step: Step) -> list[Host]:
    """The hosts ``step.on`` targets, narrowed by ``--limit``; see the module docstring for empties."""
    from ..inventory import InventoryError

    assert step.on is not None
    inventory = load_run_inventory(run, step)
    try:
        pattern = str(ex.render_value(step.on, run.namespace()))
    except ex.ExpressionError as exc:
        raise _problem(run, step, "on", f"on: {exc}") from None
    try:
        selected, note = inventory.targets(pattern, run.limit)
    except InventoryError as exc:
        raise _problem(run, step, "on", str(exc)) from None
    hosts = HostList(selected)
    hosts.inventory = inventory
    hosts.note = note
    from ..transports.ssh import SECRET_VARS

    for host in hosts:  # an inventory password must never appear in output or the journal
        for name in SECRET_VARS:
            if host.vars.get(name) is not None:
                run.taint.protect(str(host.vars[name]))
    return hosts


def _targets(run: Run, hosts: list[Host]) -> list[Target]:
    from ..transports.ssh import host_transport

    def notify(text: str) -> None:
        run.emit(ev.Note("warning", run.redactor(text)))

    inventory = getattr(hosts, "inventory", None)
    known = inventory.hosts if inventory is not None else {h.name: h for h in hosts}

    def resolve(name: str) -> dict[str, Any] | None:
        # a ProxyJump naming an inventory host connects to it with its inventory vars
        host = known.get(name)
        return host.vars if host is not None else None

    out = []
    for h in hosts:
        transport = host_transport(h.name, h.vars, workdir=run.workdir, resources=run.resources,
                                   accept_new=bool(run.accept_new_hosts),
                                   known_hosts=run.known_hosts, notify=notify,
                                   resolve=resolve)
        out.append(Target(h.name, h.address, h.port, h.user, h.vars, list(h.groups), transport))
    return out


# ---------------------------------------------------------------- running


def run_fanout(run: Run, stepper: StepRunner, step: Step, ns: dict[str, Any], sr: StepResult,
               hosts: list[Host]) -> None:
    """Run ``step`` on every host (``forks`` at a time, ``serial`` batches); fill ``sr.hosts``."""
    sr.hosts = {}
    if not hosts:
        sr.status = "skipped"
        sr.notes.append(getattr(hosts, "note", None) or "no hosts to run on")
        return
    try:
        targets = _targets(run, hosts)
    except Exception as exc:  # noqa: BLE001 - a bad host var (port, become method) fails the step
        sr.status, sr.error = "failed", str(exc)
        return
    with _TARGETS_LOCK:
        _TARGETS.setdefault(run, {})[step.id] = {t.name: t for t in targets}
    # in inventory order, whatever order the hosts finish in
    sr.hosts = {t.name: StepResult(step.id, status="pending", phase=sr.phase) for t in targets}
    left_out = _failed_upstream(run, step)
    for name, upstream in left_out.items():
        if name in sr.hosts:
            sr.hosts[name].status = "skipped"
            sr.hosts[name].notes.append(f"left out: it failed in step {upstream} (within that step's max_fail)")
    targets = [t for t in targets if t.name not in left_out]
    if not targets:
        sr.status = "skipped"
        sr.notes.append("every host was left out: each failed in a step this one needs")
        return
    # `runproc resume`: hosts where an earlier run finished this step are not run again
    done_before = (getattr(run, "completed_hosts", None) or {}).get(step.id) or {}
    for t in targets:
        if t.name in done_before:
            hsr = recorded_result(done_before[t.name], time.monotonic(), step.id)
            sr.hosts[t.name] = hsr
            run.journal.host_finished(step.id, t.name, hsr)
    targets = [t for t in targets if t.name not in done_before]
    progress = _Progress(run, step.id, len(targets))
    stopped: str | None = None
    tolerated = start = 0
    for number, size in enumerate(batch_sizes(len(targets), step.serial), start=1):
        batch = targets[start:start + size]
        start += size
        if stopped is not None or run.cancel.is_set():
            for t in batch:
                sr.hosts[t.name].status = "cancelled"
                sr.hosts[t.name].error = f"not started: {stopped or 'the run was interrupted'}"
            continue
        _run_batch(run, stepper, step, ns, sr, batch, progress)
        failed = sum(1 for t in batch if sr.hosts[t.name].status in FAILED)
        if too_many_failures(failed, len(batch), step.max_fail):
            stopped = stop_reason(number, failed, len(batch), step.max_fail)
        else:
            tolerated += failed
    _summarise(sr, step, stopped, tolerated)


class _Progress:
    """``3/5 hosts ok, 1 failed`` after each host, as a StepProgress event."""

    def __init__(self, run: Run, step_id: str, total: int) -> None:
        self.run, self.step_id, self.total = run, step_id, total
        self.ok = self.failed = 0

    def done(self, status: str) -> None:
        self.ok += status in ("ok", "planned")
        self.failed += status in FAILED
        message = f"{self.ok}/{self.total} hosts ok" + (f", {self.failed} failed" if self.failed else "")
        self.run.progress(self.step_id, message, None)


def _run_batch(run: Run, stepper: StepRunner, step: Step, ns: dict[str, Any], sr: StepResult,
               batch: list[Target], progress: _Progress) -> None:
    """Every host of the batch, ``forks`` at a time; the batch always completes (or is interrupted)."""
    assert sr.hosts is not None
    results = sr.hosts

    def one(t: Target) -> StepResult:
        hsr = results[t.name]
        if run.cancel.is_set():
            hsr.status, hsr.error = "cancelled", "not started: the run was interrupted"
        else:
            _execute(stepper, step, {**ns, "host": t.view()}, hsr, t)
        return hsr

    workers = min(max(1, run.forks or DEFAULT_FORKS), len(batch))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{step.id}-host") as pool:
        for future in as_completed([pool.submit(one, t) for t in batch]):
            progress.done(future.result().status)


def _failed_upstream(run: Run, step: Step) -> dict[str, str]:
    """Hosts that failed in a fan-out step this step needs (host -> that step's id).

    As Ansible drops a failed host from the rest of its play, a host whose failure an
    upstream step tolerated (max_fail) is left out of the steps that follow from it:
    a rolling change must not go on to "enable" a host it could not "drain".
    """
    failed = {sid: [n for n, r in res.hosts.items() if r.status in FAILED]
              for sid, res in run.results.items() if res.hosts and sid != step.id and not res.loop}
    if not any(failed.values()) or step not in run.proc.steps:
        return {}  # finally/on_failure cleanups still reach every host
    from ..format import graph

    dag = graph.build(run.proc.steps)
    out: dict[str, str] = {}
    for sid, names in failed.items():
        if names and dag.is_upstream(sid, step.id):
            for name in names:
                out.setdefault(name, sid)
    return out


def _execute(stepper: StepRunner, step: Step, ns: dict[str, Any], hsr: StepResult, target: Target) -> None:
    t0 = time.monotonic()
    hsr.started_at = now_iso()
    try:
        stepper.execute(step, ns, hsr, host=target)
    except ex.UnknownValueError as exc:
        hsr.status = "planned"
        hsr.notes.append(f"unknown until the run: {exc.unknown.label}")
    except Exception as exc:  # noqa: BLE001 - one host's surprise must not sink the others
        hsr.status, hsr.error = "failed", stepper.run.redactor(error_text(exc))
        hsr.error_kind = "environment" if environment_error(exc) else None
    finally:
        hsr.duration = time.monotonic() - t0
        hsr.completed_at = time.monotonic()
        stepper.run.journal.host_finished(step.id, target.name, hsr)


def _summarise(sr: StepResult, step: Step, stopped: str | None, tolerated: int) -> None:
    assert sr.hosts is not None
    results = sr.hosts
    sr.attempts = max((r.attempts for r in results.values()), default=0)
    sr.description = next((r.description for r in results.values() if r.description), None)
    summary = summarise([(name, r.status, r.error, r.error_kind) for name, r in results.items()],
                        stopped=stopped, tolerated=tolerated, max_fail=step.max_fail)
    if summary.error_kind is not None:
        sr.error_kind = summary.error_kind
    if summary.status is not None:
        sr.status = summary.status
    if summary.error is not None or summary.status in ("failed", "timed_out", "cancelled"):
        sr.error = summary.error
    sr.notes.extend(summary.notes)


# ---------------------------------------------------------------- rollback


def rollback_fanout(run: Run, stepper: StepRunner, step: Step, ns: dict[str, Any],
                    sr: StepResult) -> tuple[bool, str | None, str]:
    """Run the step's rollback on the hosts where the step succeeded, ``forks`` at a time."""
    assert sr.hosts is not None and step.rollback is not None
    with _TARGETS_LOCK:
        known = _TARGETS.get(run, {}).get(step.id)
    if known is None:
        # a step another run completed (resume, `runproc rollback`): its hosts, from the inventory
        try:
            known = {t.name: t for t in _targets(run, [h for h in select_hosts(run, step) if h.name in sr.hosts])}
        except Exception as exc:  # noqa: BLE001 - the inventory changed or cannot be read
            return False, f"rollback: cannot find the hosts of {step.id}: {error_text(exc)}", ""
    # where the action completed: ok, or ok until its verify failed (that host changed too)
    targets = [known[name] for name, r in sr.hosts.items() if (r.status == "ok" or r.changed) and name in known]
    if not targets:
        return True, None, "no host to roll back"
    descriptions: dict[str, str] = {}

    def one(t: Target) -> tuple[str, bool, str | None]:
        hsr = sr.hosts[t.name]  # type: ignore[index]
        if run.rollback_cancel.is_set():
            hsr.notes.append("rollback abandoned (second interrupt)")
            return t.name, False, "abandoned (second interrupt)"
        t0 = time.monotonic()
        try:
            ok, error, description = stepper.rollback(step, {**ns, "host": t.view()}, host=t)
        except Exception as exc:  # noqa: BLE001
            ok, error, description = False, run.redactor(error_text(exc)), ""
        descriptions[t.name] = description
        hsr.rollback = StepResult(step.id, phase="rollback", status="ok" if ok else "failed", error=error,
                                  description=description, duration=time.monotonic() - t0)
        hsr.status = "rolled_back" if ok else "rollback_failed"
        return t.name, ok, error

    forks = max(1, run.forks or DEFAULT_FORKS)
    with ThreadPoolExecutor(max_workers=min(forks, len(targets)), thread_name_prefix=f"{step.id}-undo") as pool:
        outcomes = list(pool.map(one, targets))
    failed = [(name, error) for name, ok, error in outcomes if not ok]
    undone = len(outcomes) - len(failed)
    run.progress(step.id, f"rolled back on {undone}/{len(outcomes)} hosts", None)
    description = next(iter(descriptions.values()), "")
    if failed:
        shown = "; ".join(f"{name}: {(error or 'failed').splitlines()[0]}" for name, error in failed[:3])
        return False, f"rollback failed on {len(failed)} of {len(outcomes)} hosts: {shown}", description
    return True, None, description

