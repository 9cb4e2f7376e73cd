"""Loops: a ``foreach:``/``matrix:`` step runs its body once per item (docs/format.md#loops).

The scheduler hands a loop step to ``run_loop`` and the saga hands its undo to
``rollback_loop``; a step without a loop never comes here. An iteration is run as a
fanned-out step's host is (fanout.py), and recorded the same way, so the journal, resume,
``runproc show``, plans and ``runproc apply`` treat both alike:

- its result is one entry of ``StepResult.hosts``, keyed by the iteration's label (``eu``,
  ``region=eu,tier=web``, ``#3``; engine/format/loops.py), in item order; ``loop`` marks
  the step so that its entries are called iterations, not hosts;
- ``StepRunner.execute`` runs it with an ``Iteration`` as its host: a name for its output,
  journal entries (``host_started``/``host_finished``) and planned action (``id@label``), and
  no transport, so the action runs where runproc runs;
- everything of the step applies per iteration: ``when``, preconditions, retries, verify,
  timeout, and the rollback (of each completed iteration, most recent first).

Decisions: iterations run one at a time in item order unless ``concurrency:`` says more (a
loop over regions or services in a runbook is a rollout, one at a time, as Ansible's loops
are); ``fail_fast`` (default true) starts no iteration once one has failed, the others are
``cancelled``; with ``fail_fast: false`` every iteration runs and the step fails at the end if
any did. The step's result has ``items`` (the list looped over) and ``results`` (each
iteration's result fields, with ``status`` and ``ok``, in item order).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, ProcedureError
from ..executors.base import environment_error
from ..format import expressions as ex
from ..format.loops import EXCLUDE, ForeachHosts, axes, combinations, labels, loop_name
from . import events as ev
from .journal import now_iso
from .results import FAILED, StepResult, recorded_result
from .step import NOT_STARTED, error_text
from .when import judge_when

if TYPE_CHECKING:
    from ..format.model import Step
    from .context import RunContext as Run
    from .step import StepRunner

# the items each loop step ran over, per run, so its rollback sees the items themselves (the
# report keeps them redacted); a run resumed or rolled back by another process reads the report's
_ITEMS: weakref.WeakKeyDictionary[Any, dict[str, list[Any]]] = weakref.WeakKeyDictionary()
_ITEMS_LOCK = threading.Lock()


class LoopError(InvalidInputError):
    """The items cannot be made: not a list, an inventory pattern that matches nothing."""


class Iteration:
    """One iteration as ``StepRunner`` sees a host: a name and no transport (runs here)."""

    __slots__ = ("name",)
    transport = None

    def __init__(self, name: str) -> None:
        self.name = name


# ---------------------------------------------------------------- items


def items_of(run: Run, step: Step, ns: Mapping[str, Any]) -> list[Any]:
    """The items, in order; ``ex.UnknownValueError`` when a dry run cannot know them yet."""
    if step.matrix is not None:
        matrix = {axis: _as_list(_value(run, step.matrix[axis], ns), f"matrix.{axis}") for axis in axes(step)}
        exclude = run.taint.run(ex.render_value, ns, step.matrix.get(EXCLUDE) or [])
        return combinations(matrix, [e for e in exclude if isinstance(e, dict)])
    if isinstance(step.foreach, ForeachHosts):
        return _hosts(run, step, ns)
    return _as_list(_value(run, step.foreach, ns), "foreach")


def _value(run: Run, value: Any, ns: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and not ex.is_template(value) and "}}" not in value:
        value = "{{ " + value + " }}"  # an expression: rendered whole, it keeps its type
    # through the run's taint: items made from a secret are masked wherever they show
    return run.taint.run(ex.render_value, ns, value)


def _as_list(value: Any, what: str) -> list[Any]:
    if isinstance(value, ex.Unknown):
        raise ex.UnknownValueError(value)
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str | bytes | Mapping) or not hasattr(value, "__iter__"):
        kind = ("a string" if isinstance(value, str | bytes) else "a mapping" if isinstance(value, Mapping)
                else f"{type(value).__name__}")
        hint = (" (hint: split it, as in params.x.split(','))" if isinstance(value, str)
                else " (hint: loop over its keys with '| list', or its pairs with '.items()')"
                if isinstance(value, Mapping) else "")
        raise LoopError(f"{what}: expected a list to loop over, got {kind}{hint}")
    return list(value)  # a range, dict items, a generator a filter made


def _hosts(run: Run, step: Step, ns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``foreach: {hosts: PATTERN}``: the selected hosts as ``host`` reads in a fan-out."""
    from ..inventory import InventoryError
    from ..transports.ssh import SECRET_VARS
    from .fanout import load_run_inventory

    assert isinstance(step.foreach, ForeachHosts)
    inventory = load_run_inventory(run, step)
    pattern = str(run.taint.run(ex.render_value, ns, step.foreach.hosts))
    optional = pattern.startswith("?")
    pattern = pattern.removeprefix("?").strip()
    try:
        matched = inventory.match(pattern)
        selected = inventory.limit(run.limit).match(pattern) if run.limit else matched
    except InventoryError as exc:
        raise LoopError(f"foreach.hosts: {exc}") from None
    if not matched and not optional:
        raise LoopError(f"foreach.hosts: no host in the inventory matches {pattern!r} "
                        f"(write hosts: \"?{pattern}\" if that may be normal)")
    out = []
    for h in selected:
        for name in SECRET_VARS:  # an inventory password never shows, here as in a fan-out
            if h.vars.get(name) is not None:
                run.taint.protect(str(h.vars[name]))
        out.append({"name": h.name, "address": h.address, "port": h.port, "user": h.user,
                    "vars": h.vars, "groups": list(h.groups)})
    return out


def _labels(run: Run, items: list[Any], matrix: bool) -> list[str]:
    shown = [run.redactor(label) for label in labels(items, matrix)]
    if len(set(shown)) < len(shown):  # a secret masked two labels alike
        shown = [f"#{i}" for i in range(len(shown))]
    return shown


def _plain(value: Any) -> Any:
    """The items as the report keeps them: JSON values, an unknown one as its text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


# ---------------------------------------------------------------- running


def run_loop(run: Run, stepper: StepRunner, step: Step, sr: StepResult) -> None:
    """Run every iteration of a loop step and summarise them in ``sr``."""
    sr.loop = True
    ns = run.namespace()
    name = loop_name(step)
    try:
        items = items_of(run, step, ns)
    except ex.UnknownValueError as exc:
        run.emit(ev.StepStarted(step.id, sr.phase, None, None))
        _plan_unknown_items(run, stepper, step, sr, ns, exc.unknown.label)
        return
    except (ex.ExpressionError, LoopError, ProcedureError) as exc:
        run.emit(ev.StepStarted(step.id, sr.phase, None, None))
        sr.status, sr.error = "failed", run.redactor(str(exc))
        return
    with _ITEMS_LOCK:
        _ITEMS.setdefault(run, {})[step.id] = items
    names = _labels(run, items, step.matrix is not None)
    sr.fields["items"] = run.redactor.deep(_plain(items))
    sr.hosts = {label: StepResult(step.id, status="pending", phase=sr.phase) for label in names}
    run.emit(ev.StepStarted(step.id, sr.phase, None, len(items)))
    if not items:
        sr.status = "skipped"
        sr.notes.append("no items: nothing to loop over")
        sr.fields["results"] = []
        return
    if not run.journal.step_started(step.id, sr.phase, None):
        sr.status, sr.error = "cancelled", NOT_STARTED
        return
    # `runproc resume`: iterations an earlier run finished are not run again
    done_before = (getattr(run, "completed_hosts", None) or {}).get(step.id) or {}
    for i, label in enumerate(names):
        if label in done_before:
            # before this run's iterations in completion order: a rollback undoes them last
            sr.hosts[label] = recorded_result(done_before[label], i - len(names), step.id)
            run.journal.host_finished(step.id, label, sr.hosts[label])
    todo = [(i, label, item) for i, (label, item) in enumerate(zip(names, items, strict=True))
            if label not in done_before]
    # a dry run: a result the body reads was only planned upstream; each iteration is shown
    unknown = (sorted(r for r in run.references.get(step.id, ()) if r in run.unknown)
               if run.dry_run else [])
    progress = _Progress(run, step.id, len(names), len(names) - len(todo))

    def one(label: str, item: Any) -> None:
        _iteration(run, stepper, step, sr.hosts[label], label, {**ns, name: item}, unknown)  # type: ignore[index]
        progress.done(sr.hosts[label].status)  # type: ignore[index]

    failed: list[str] = []
    lock = threading.Lock()
    queue = iter(todo)

    def next_one() -> tuple[int, str, Any] | None:
        with lock:
            if run.cancel.is_set() or (step.fail_fast and failed):
                return None
            return next(queue, None)

    def worker() -> None:
        while (job := next_one()) is not None:
            _, label, item = job
            one(label, item)
            if sr.hosts[label].status in FAILED:  # type: ignore[index]
                with lock:
                    failed.append(label)

    width = min(step.concurrency or 1, len(todo))
    if width <= 1:
        worker()  # one at a time, here: no thread for the common, sequential loop
    else:
        threads = [threading.Thread(target=worker, name=f"{step.id}-iter-{n}", daemon=True) for n in range(width)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    why = (f"not started: fail_fast, iteration {failed[0]} {sr.hosts[failed[0]].status}" if failed
           else "not started: the run was interrupted")
    for isr in sr.hosts.values():
        if isr.status == "pending":
            isr.status, isr.error = "cancelled", why
    _summarise(sr, step)


def _iteration(run: Run, stepper: StepRunner, step: Step, isr: StepResult, label: str, ns: dict[str, Any],
               unknown: list[str]) -> None:
    t0 = time.monotonic()
    isr.started_at = now_iso()
    try:
        go, undecided = judge_when(step.when, ns, isr, run.redactor, "iteration")
        if not go:
            return
        unknown = unknown or undecided
        if unknown:
            isr.description = _describe(stepper, step, ns, label)
            isr.status = "planned"
            isr.notes.append("depends on planned step(s) " + ", ".join(unknown) + ": result unknown in a dry run")
            return
        stepper.execute(step, ns, isr, host=Iteration(label))
        upstream = getattr(run, "_upstream", None)
        if run.dry_run and isr.phase == "step" and upstream is not None:
            from .dryrun import judge_against_planned_upstream

            judge_against_planned_upstream(run, step, isr, upstream)
    except ex.UnknownValueError as exc:
        isr.status = "planned"
        isr.notes.append(f"unknown until the run: {exc.unknown.label}")
        if isr.description is None:
            isr.description = _describe(stepper, step, ns, label)
    except Exception as exc:  # noqa: BLE001 - one iteration's surprise must not sink the others
        isr.status, isr.error = "failed", run.redactor(error_text(exc))
        isr.error_kind = "environment" if environment_error(exc) else None
    finally:
        isr.duration = time.monotonic() - t0
        isr.completed_at = time.monotonic()
        if run.dry_run and isr.status in ("planned", "ok") and step.rollback is not None:
            isr.rollback_action = _describe(stepper, step, ns, label, undo=True)
        run.journal.host_finished(step.id, label, isr)


def _describe(stepper: StepRunner, step: Step, ns: dict[str, Any], label: str | None, *, undo: bool = False) -> str:
    from ..executors import get_executor

    body = step.rollback if undo else step
    assert body is not None and body.action is not None
    executor = get_executor(body.action.kind)()
    ctx = stepper.context(step.id, body, ns, host=Iteration(label) if label else None, rollback=undo)
    return stepper.describe(executor, body.action.options, ctx)


def _plan_unknown_items(run: Run, stepper: StepRunner, step: Step, sr: StepResult, ns: dict[str, Any],
                        label: str) -> None:
    """A dry run before the items exist (an upstream step's result): the step is planned, its
    action shown with the item unknown."""
    name = loop_name(step)
    sr.status = "planned"
    sr.notes.append(f"items unknown until the run ({label}): each iteration is planned then")
    sr.description = _describe(stepper, step, {**ns, name: ex.Unknown(name)}, None)


def unknown_item_namespace(run: Run, step: Step) -> dict[str, Any]:
    """The namespace a plan shows a loop step's undo in when its items are not known yet."""
    name = loop_name(step)
    return {**run.namespace(), name: ex.Unknown(name)}


class _Progress:
    """``2/3 iterations ok`` after each iteration, as a StepProgress event."""

    def __init__(self, run: Run, step_id: str, total: int, done: int) -> None:
        self.run, self.step_id, self.total = run, step_id, total
        self.ok, self.failed = done, 0
        self.lock = threading.Lock()

    def done(self, status: str) -> None:
        with self.lock:
            self.ok += status in ("ok", "planned")
            self.failed += status in FAILED
            message = f"{self.ok}/{self.total} iterations ok" + (f", {self.failed} failed" if self.failed else "")
        self.run.progress(self.step_id, message, None)


def _summarise(sr: StepResult, step: Step) -> None:
    assert sr.hosts is not None
    results = sr.hosts
    n = len(results)
    sr.attempts = max((r.attempts for r in results.values()), default=0)
    failed = [(label, r) for label, r in results.items() if r.status in FAILED]
    # the action the step is known by: a failed iteration's (the root cause shows it), else the first's
    sr.description = next((r.description for r in [*(r for _, r in failed), *results.values()] if r.description),
                          None)
    sr.fields["results"] = [r.as_fields() for r in results.values()]
    cancelled = sum(1 for r in results.values() if r.status == "cancelled")
    if failed:
        sr.status = "timed_out" if all(r.status == "timed_out" for _, r in failed) else "failed"
        shown = "; ".join(f"{label}: {(r.error or r.status).splitlines()[0] if (r.error or r.status) else ''}"
                          for label, r in failed[:3])
        more = f" (and {len(failed) - 3} more)" if len(failed) > 3 else ""
        sr.error = f"{len(failed)} of {n} iterations {sr.status}: {shown}{more}"
        kinds = {r.error_kind for _, r in failed}
        sr.error_kind = kinds.pop() if len(kinds) == 1 else None
        if cancelled:
            sr.notes.append(f"fail_fast: {cancelled} iteration(s) not started")
    elif cancelled:
        sr.status, sr.error = "cancelled", f"interrupted: {cancelled} of {n} iterations not run"
    elif all(r.status == "skipped" for r in results.values()):
        sr.status = "skipped"
        sr.notes.append("every iteration was skipped")
    elif any(r.status == "planned" for r in results.values()):
        sr.status = "planned"
    else:
        sr.status = "ok"


# ---------------------------------------------------------------- rollback


def rollback_loop(run: Run, stepper: StepRunner, step: Step, ns: dict[str, Any],
                  sr: StepResult) -> tuple[bool, str | None, str]:
    """Undo each iteration whose action completed, the most recent first."""
    assert sr.hosts is not None and step.rollback is not None
    name = loop_name(step)
    with _ITEMS_LOCK:
        items = _ITEMS.get(run, {}).get(step.id)
    if items is None:  # a step another run completed (resume, runproc rollback): its report's items
        items = list(sr.fields.get("items") or [])
    done = [(i, label, r) for i, (label, r) in enumerate(sr.hosts.items()) if r.status == "ok" or r.changed]
    done.sort(key=lambda x: (x[2].completed_at or 0.0, x[0]), reverse=True)
    if not done:
        return True, None, "no iteration to roll back"
    failures: list[tuple[str, str]] = []
    first = ""
    for i, label, r in done:
        if run.rollback_cancel.is_set():
            r.notes.append("rollback abandoned (second interrupt)")
            failures.append((label, "abandoned (second interrupt)"))
            continue
        item = items[i] if i < len(items) else ex.Unknown(f"{name} of iteration {label}")
        t0 = time.monotonic()
        started = now_iso()
        try:
            ok, error, description = stepper.rollback(step, {**ns, name: item}, host=Iteration(label))
        except Exception as exc:  # noqa: BLE001 - one undo's surprise must not stop the others
            ok, error, description = False, run.redactor(error_text(exc)), ""
        first = first or description
        r.rollback = StepResult(step.id, phase="rollback", status="ok" if ok else "failed", error=error,
                                description=description, duration=time.monotonic() - t0, started_at=started,
                                attempts=1)
        r.status = "rolled_back" if ok else "rollback_failed"
        if not ok:
            failures.append((label, error or "failed"))
    undone = len(done) - len(failures)
    run.progress(step.id, f"rolled back {undone}/{len(done)} iterations", None)
    if failures:
        shown = "; ".join(f"{label}: {error.splitlines()[0] if error else ''}" for label, error in failures[:3])
        return False, f"rollback failed for {len(failures)} of {len(done)} iterations: {shown}", first
    return True, None, first
