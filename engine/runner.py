"""The scheduler: ready steps to a bounded worker pool; then rollback, on_failure, finally.

A run goes: params and secrets -> window and lock -> procedure preconditions -> the DAG
(ready steps start at once, ties by file position) -> on failure: nothing new starts,
running steps finish or time out, completed steps are rolled back in reverse completion
order -> ``on_failure`` -> ``finally``. Everything observable leaves as events.
"""

from __future__ import annotations

import heapq
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import events as ev
from . import expressions as ex
from . import graph
from .errors import Problem, ProcedureError
from .executors.confirm import Refusal  # noqa: F401 - re-exported for executors' tests
from .model import Procedure, Step
from .params import resolve_params, resolve_secrets
from .resources import Resources
from .results import DONE, RunResult, StepResult
from .stepexec import StepRunner, now_iso

DEFAULT_CONCURRENCY_CAP = 16


class Run:
    """One execution of a procedure. Build with ``run()``; ``interrupt()`` is signal-safe."""

    def __init__(self, proc: Procedure, *, params: dict[str, Any] | None = None,
                 cli_params: dict[str, str] | None = None, dry_run: bool = False, offline: bool = False,
                 yes: bool = False, no_rollback: bool = False, only: list[str] | None = None,
                 limit: str | None = None, inventory: str | None = None, state: str | None = None,
                 ignore_window: bool = False, on_event: Callable[[ev.Event], None] | None = None,
                 ask: Callable[[str], bool] | None = None, log_dir: str | Path | None = None,
                 forks: int | None = None, accept_new_hosts: bool = False, journal: bool = True,
                 parent: Run | None = None) -> None:
        self.proc = proc
        self.dry_run = dry_run or offline
        self.offline = offline
        self.yes = yes
        self.no_rollback = no_rollback
        self.only = set(only or [])
        self.limit = limit
        self.inventory_path = inventory
        self.state_url = state
        self.ignore_window = ignore_window
        self.on_event = on_event
        self.ask = ask
        self.log_dir = Path(log_dir) if log_dir else None
        self.forks = forks
        self.accept_new_hosts = accept_new_hosts
        self.use_journal = journal
        self.parent = parent
        self.workdir = proc.workdir
        self.run_id = uuid.uuid4().hex[:12]
        self.started_at = now_iso()
        self.cancel = threading.Event()
        self.rollback_cancel = threading.Event()
        self.final_cancel = threading.Event()
        self.interrupts = 0
        self.resources: Resources = parent.resources if parent else Resources()
        self.redactor = ex.Redactor()
        self._emit_lock = threading.Lock()
        self.results: dict[str, StepResult] = {}
        self.views: dict[str, Any] = {}  # steps.<id> as templates see them
        self.unknown: set[str] = set()  # planned steps whose results a dry run cannot know
        self.error: str | None = None
        self.root_cause: str | None = None
        self.refused = False
        self._inventory: Any = None
        # resolved before anything runs; ProcedureError (exit 2) on bad input
        self.params = resolve_params(proc, cli_params, params)
        self.secrets = resolve_secrets(proc, allow_missing=offline)
        for value in self.secrets.values():
            self.redactor.add(value)
        for name, spec in proc.params.items():
            if spec.secret and self.params.get(name) is not None:
                self.redactor.add(self.params[name])
        self.base_ns = self._base_namespace()

    # ------------------------------------------------------------ events

    def emit(self, event: ev.Event) -> None:
        if self.on_event is not None:
            with self._emit_lock:
                self.on_event(event)

    def output(self, step_id: str, stream: str, text: str, host: str | None) -> None:
        self.emit(ev.StepOutput(step_id, stream, text, host))

    def progress(self, step_id: str, message: str, host: str | None) -> None:
        self.emit(ev.StepProgress(step_id, message, host))

    def retrying(self, step_id: str, attempt: int, delay: float, error: str | None) -> None:
        self.emit(ev.StepRetrying(step_id, attempt, delay, error))

    def interrupt(self) -> None:
        """First call: stop and roll back. Second: abandon rollbacks. Third: abandon finally."""
        self.interrupts += 1
        if self.interrupts == 1:
            self.error = self.error or "interrupted"
            self.cancel.set()
        elif self.interrupts == 2:
            self.rollback_cancel.set()
        else:
            self.final_cancel.set()

    # ------------------------------------------------------------ namespace

    def _base_namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {
            "params": self.params, "secrets": self.secrets, "env": dict(os.environ),
            "run": {"id": self.run_id, "dry_run": self.dry_run, "started_at": self.started_at,
                    "error": None, "procedure": self.proc.procedure},
            "steps": self.views, "vars": {},
        }
        for name, value in self.proc.vars.items():
            try:
                ns["vars"][name] = ex.render_value(value, ns)
            except ex.ExpressionError as exc:
                src = self.proc._source
                line, col = src.where(("vars", name)) if src else (0, 0)
                raise ProcedureError(Problem(src.file if src else "<vars>", line, col,
                                             f"vars.{name}: {exc}")) from None
        return ns

    def namespace(self, **extra: Any) -> dict[str, Any]:
        self.base_ns["run"]["error"] = self.error
        return {**self.base_ns, **extra} if extra else self.base_ns

    # ------------------------------------------------------------ the run

    def execute(self) -> RunResult:
        t0 = time.monotonic()
        order = [*self.proc.steps, *self.proc.finally_, *self.proc.on_failure]
        for step in order:
            phase = ("finally" if step in self.proc.finally_ else
                     "on_failure" if step in self.proc.on_failure else "step")
            self.results[step.id] = StepResult(step.id, phase=phase)
        self.emit(ev.RunStarted(self.run_id, self.proc.procedure, self.dry_run, self.offline,
                                [(s.id, s.name or s.id) for s in order], self.started_at))
        journal = None
        lock_taken = False
        try:
            refusal = self._check_window()
            if refusal is None and self.proc.lock and not self.dry_run:
                journal = self._journal()
                holder = journal.acquire(self.proc.lock, self.run_id, self.proc.procedure,
                                         _user(), self.started_at)
                if holder is not None:
                    refusal = f"lock {self.proc.lock!r} is held by {holder}"
                else:
                    lock_taken = True
            if refusal is None:
                refusal = self._preconditions()
            if refusal is not None:
                self.refused = True
                self.error = refusal
                for sr in self.results.values():
                    sr.status, sr.error = "cancelled", "not started: the run was refused"
                return self._finish(t0, journal)
            self._schedule()
            failed = self.root_cause is not None or self.interrupts > 0
            if failed and not self.dry_run:
                if not self.no_rollback:
                    self._rollback_all()
                self._run_list(self.proc.on_failure)
            else:
                for step in self.proc.on_failure:
                    self.results[step.id].status = "skipped"
                    self.results[step.id].notes.append("the run did not fail")
            self._run_list(self.proc.finally_)
            return self._finish(t0, journal)
        finally:
            if lock_taken and journal is not None:
                journal.release(self.proc.lock or "", self.run_id)
            if self.parent is None:
                for problem in self.resources.close_all():
                    self.emit(ev.Note("warning", f"closing {problem}"))
            if journal is not None and self.parent is None:
                journal.close()

    def _journal(self) -> Any:
        from .journal import Journal

        return Journal(self.state_url)

    def _check_window(self) -> str | None:
        if not self.proc.window:
            return None
        from .window import parse_window

        window = parse_window(self.proc.window)
        if window.contains(datetime.now(UTC)):
            return None
        if self.ignore_window:
            self.emit(ev.Note("warning", f"outside the window {self.proc.window!r}; --ignore-window given"))
            return None
        if self.dry_run:
            self.emit(ev.Note("warning", f"outside the window {self.proc.window!r}: a real run would be refused"))
            return None
        return f"outside the maintenance window {self.proc.window!r} (use --ignore-window to override)"

    def _preconditions(self) -> str | None:
        stepper = StepRunner(self)
        for check in self.proc.preconditions:
            name = check.name or stepper._default_name(check)
            if self.offline:
                self.emit(ev.PreconditionChecked(name, True, unknown=True))
                continue
            passed, reason = stepper.check("preconditions", check, self.namespace())
            self.emit(ev.PreconditionChecked(name, passed, reason))
            if not passed:
                return f"precondition failed: {reason}"
            if self.cancel.is_set():
                return "interrupted"
        return None

    # ------------------------------------------------------------ scheduling

    def _schedule(self) -> None:
        steps = {s.id: s for s in self.proc.steps}
        dag = graph.build(self.proc.steps)
        waiting = {sid: set(needs) for sid, needs in dag.needs.items()}
        dependents = dag.dependents()
        ready: list[tuple[int, str]] = [(dag.position[s], s) for s, n in waiting.items() if not n]
        heapq.heapify(ready)
        limit = self.proc.concurrency or DEFAULT_CONCURRENCY_CAP
        done: queue.Queue[str] = queue.Queue()
        running: set[str] = set()
        stepper = StepRunner(self)
        with ThreadPoolExecutor(max_workers=limit, thread_name_prefix="step") as pool:
            while ready or running:
                while ready and len(running) < limit and not self._stopping():
                    _, sid = heapq.heappop(ready)
                    running.add(sid)
                    pool.submit(self._step_job, stepper, steps[sid], done)
                if not running:
                    break
                try:
                    sid = done.get(timeout=0.5)  # timed so that signal handlers run promptly
                except queue.Empty:
                    continue
                running.discard(sid)
                sr = self.results[sid]
                step = steps[sid]
                counts_done = sr.status in DONE or (step.continue_on_error and sr.status != "cancelled")
                if counts_done:
                    for dep in dependents[sid]:
                        waiting[dep].discard(sid)
                        if not waiting[dep]:
                            heapq.heappush(ready, (dag.position[dep], dep))
                elif self.root_cause is None and sr.status != "cancelled":
                    self.root_cause = sid
                    self.error = f"step {sid} {sr.status}: {sr.error}"
                    self.refused = "refused" in sr.notes
        reason = (f"not started: {self.root_cause} {self.results[self.root_cause].status}"
                  if self.root_cause else "not started: the run was interrupted")
        for sid in steps:
            sr = self.results[sid]
            if sr.status == "pending":
                sr.status, sr.error = "cancelled", reason

    def _stopping(self) -> bool:
        return self.root_cause is not None or self.cancel.is_set()

    def _step_job(self, stepper: StepRunner, step: Step, done: queue.Queue[str]) -> None:
        sr = self.results[step.id]
        try:
            self._run_step(stepper, step, sr)
        except Exception as exc:  # noqa: BLE001 - a bug in one step must not hang the run
            sr.status, sr.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        finally:
            sr.completed_at = time.monotonic()
            self.views[step.id] = (ex.Unknown(f"steps.{step.id}") if step.id in self.unknown
                                   else sr.as_fields())
            self.emit(ev.StepFinished(step.id, sr.phase, sr))
            done.put(step.id)

    def _run_step(self, stepper: StepRunner, step: Step, sr: StepResult) -> None:
        t0 = time.monotonic()
        sr.started_at = now_iso()
        try:
            if self.only and step.id not in self.only and sr.phase == "step":
                sr.status = "skipped"
                sr.notes.append("not selected (--only)")
                return
            ns = self.namespace()
            unknown = sorted(r for r in self.proc._references.get(step.id, ()) if r in self.unknown)
            if step.when:
                try:
                    if not ex.evaluate(step.when, ns):
                        sr.status = "skipped"
                        sr.notes.append(f"when false: {step.when.strip()}")
                        return
                except ex.UnknownValueError as exc:
                    sr.notes.append(f"when undecided in a dry run ({exc.unknown.label} is unknown): "
                                    "the step may run or be skipped")
                    unknown = unknown or [exc.unknown.label]
                except ex.ExpressionError as exc:
                    sr.status, sr.error = "failed", f"when: {exc}"
                    return
            hosts = self._hosts(step) if step.on else None
            self.emit(ev.StepStarted(step.id, sr.phase, None, len(hosts) if hosts is not None else None))
            if self.dry_run and unknown:
                self._plan_unknown(stepper, step, sr, ns, unknown)
                return
            if hosts is not None:
                from .fanout import run_fanout

                run_fanout(self, stepper, step, ns, sr, hosts)
            else:
                stepper.execute(step, ns, sr)
        except ex.UnknownValueError as exc:
            sr.status = "planned"
            sr.notes.append(f"unknown until the run: {exc.unknown.label}")
        except ProcedureError as exc:
            sr.status, sr.error = "failed", str(exc)
        finally:
            sr.duration = time.monotonic() - t0
            if sr.status == "planned":
                self.unknown.add(step.id)

    def _plan_unknown(self, stepper: StepRunner, step: Step, sr: StepResult, ns: dict[str, Any],
                      unknown: list[str]) -> None:
        from .executors import get_executor

        assert step.action is not None
        executor = get_executor(step.action.kind)()
        sr.description = stepper.describe(executor, step.action.options, stepper.context(step.id, step, ns))
        sr.status = "planned"
        sr.notes.append("depends on planned step(s) " + ", ".join(unknown) + ": result unknown in a dry run")

    def _hosts(self, step: Step) -> list[Any]:
        from .fanout import select_hosts

        return select_hosts(self, step)

    # ------------------------------------------------------------ failure path

    def _rollback_all(self) -> None:
        completed = [sr for sr in self.results.values()
                     if sr.phase == "step" and sr.completed_at is not None
                     and (sr.status == "ok" or (sr.hosts and any(h.status == "ok" for h in sr.hosts.values())))]
        completed.sort(key=lambda r: r.completed_at or 0, reverse=True)
        stepper = StepRunner(self)
        for sr in completed:
            step = self.proc.step(sr.id)
            if step.rollback is None:
                if not step.readonly and sr.status == "ok":
                    self.results[sr.id].notes.append("no rollback defined: its change was kept")
                continue
            if self.rollback_cancel.is_set():
                sr.notes.append("rollback abandoned (second interrupt)")
                continue
            self.emit(ev.RollbackStarted(sr.id))
            t0 = time.monotonic()
            ns = self.namespace()
            if sr.hosts is not None:
                from .fanout import rollback_fanout

                ok, error, description = rollback_fanout(self, stepper, step, ns, sr)
            else:
                ok, error, description = stepper.rollback(step, ns)
            rb = StepResult(sr.id, phase="rollback", status="ok" if ok else "failed", error=error,
                            description=description, duration=time.monotonic() - t0)
            sr.rollback = rb
            sr.status = "rolled_back" if ok else "rollback_failed"
            if not ok and self.rollback_cancel.is_set():
                sr.notes.append("rollback interrupted")
            self.emit(ev.RollbackFinished(sr.id, ok, error))

    def _run_list(self, steps: list[Step]) -> None:
        """finally/on_failure: in order, each whatever the others did."""
        stepper = StepRunner(self)
        saved = self.cancel
        self.cancel = self.final_cancel  # a first interrupt must not stop the cleanup
        try:
            for step in steps:
                sr = self.results[step.id]
                if self.final_cancel.is_set():
                    sr.status, sr.error = "cancelled", "abandoned (interrupted again)"
                    continue
                done: queue.Queue[str] = queue.Queue()
                self._step_job(stepper, step, done)
        finally:
            self.cancel = saved

    # ------------------------------------------------------------ outcome

    def _finish(self, t0: float, journal: Any) -> RunResult:
        steps = self.results
        main = [steps[s.id] for s in self.proc.steps]
        rolled_back = [s.id for s in main if s.status == "rolled_back"]
        not_undone = [s.id for s in main if s.status == "rollback_failed"
                      or any(n.startswith("rollback abandoned") for n in s.notes)]
        kept = [s.id for s in main if any(n.startswith("no rollback defined") for n in s.notes)]
        cleanup_failed = [s.id for s in (*self.proc.finally_, *self.proc.on_failure)
                          if steps[s.id].status in ("failed", "timed_out")]
        if self.interrupts:
            status, code = "interrupted", 130
        elif not_undone:
            status, code = "rollback_incomplete", 4
        elif self.refused:
            status, code = "refused", 3
        elif self.root_cause is not None:
            status, code = "failed", 1
        elif cleanup_failed:
            status, code = "failed", 1
            self.error = self.error or f"cleanup step {cleanup_failed[0]} failed"
            self.root_cause = cleanup_failed[0]
        elif self.dry_run:
            status, code = "planned", 0
        else:
            status, code = "ok", 0
        result = RunResult(self.proc.procedure, self.run_id, status, code, self.dry_run, self.started_at,
                           time.monotonic() - t0, steps, self.redactor(self.error) if self.error else None,
                           self.root_cause, rolled_back, not_undone, kept, self.offline)
        if self.use_journal and self.parent is None and not self.offline:
            try:
                (journal or self._journal()).record(result.to_json())
            except Exception as exc:  # noqa: BLE001 - history is best effort; the outcome is not
                self.emit(ev.Note("warning", f"could not record the run in the journal: {exc}"))
        self.emit(ev.RunFinished(result))
        return result

    # ------------------------------------------------------------ child procedures

    def run_child(self, file: str, params: dict[str, Any], *, dry_run: bool = False) -> RunResult:
        from .loader import load

        path = Path(file)
        if not path.is_absolute():
            path = self.workdir / path
        child_proc = load(path)
        child = Run(child_proc, params=params, dry_run=dry_run or self.dry_run, offline=self.offline,
                    yes=self.yes, no_rollback=self.no_rollback, inventory=self.inventory_path,
                    limit=self.limit, state=self.state_url, ignore_window=self.ignore_window,
                    ask=self.ask, log_dir=self.log_dir, forks=self.forks,
                    accept_new_hosts=self.accept_new_hosts, parent=self,
                    on_event=self._child_events(child_proc.procedure))
        child.cancel = self.cancel
        return child.execute()

    def _child_events(self, name: str) -> Callable[[ev.Event], None]:
        def forward(event: ev.Event) -> None:
            if isinstance(event, ev.StepFinished):
                self.emit(ev.Note("child", f"{name}/{event.step_id}: {event.result.status}"))
        return forward


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001
        return "unknown"


def run(procedure: Procedure | str | Path, params: dict[str, Any] | None = None, **options: Any) -> RunResult:
    """Run (or with ``dry_run=True`` plan) a procedure; see ``Run`` for the options."""
    if not isinstance(procedure, Procedure):
        from .loader import load

        procedure = load(procedure)
    return Run(procedure, params=params, **options).execute()
