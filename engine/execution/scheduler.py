"""The scheduler: ready steps to a bounded worker pool; then rollback, on_failure, finally.

A run goes: params and secrets -> window and lock -> procedure preconditions -> the DAG
(ready steps start at once, ties by file position) -> on failure: nothing new starts,
running steps finish or time out, completed steps are rolled back in reverse completion
order -> ``on_failure`` -> ``finally``. Everything observable leaves as events.

Threads: ``execute()`` called on the main thread runs the run on a coordinator thread and
only waits for it, so that signal handlers (which Python runs on the main thread) run at
once even while a step blocks inside C code (a database driver, an SSH read). The
coordinator runs a step itself when it is the only thing that can run (a sequential chain
then costs no thread hand-off) and hands steps to a pool when several are ready.
"""

from __future__ import annotations

import heapq
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import process
from ..errors import Problem, ProcedureError
from ..format import expressions as ex
from ..format import graph
from ..format.credentials import connection_secrets
from ..format.model import Procedure, Step
from ..format.params import resolve_params
from ..format.redaction import Redactor
from . import dryrun
from . import events as ev
from . import saga as rollback
from .admission import Admission
from .children import ChildProcedures
from .journal import Journal, NullJournal, _without_password, now_iso
from .options import RunOptions
from .outcome import Outcome
from .resources import Resources
from .results import DONE, FAILED, RunResult, StepResult, recorded_result
from .step import NOT_STARTED, StepRunner
from .store import StateStore, StoreOpener, user_name
from .taint import Taint
from .when import judge_when

DEFAULT_CONCURRENCY_CAP = 16


class Run(Admission, Outcome, ChildProcedures):
    """One execution of a procedure. Build with ``run()``; ``interrupt()`` is signal-safe.

    Cancellation has three levels, one event each: the first interrupt stops the steps
    (``cancel`` during the steps), the second abandons rollbacks, the third abandons
    ``on_failure``/``finally``. ``cancel`` always names the event of the phase being run,
    so an executor or the fan-out that watches ``run.cancel`` stops when its phase should.
    """

    def __init__(self, proc: Procedure, *, params: dict[str, Any] | None = None,
                 cli_params: dict[str, str] | None = None, options: RunOptions | None = None,
                 on_event: Callable[[ev.Event], None] | None = None, ask: Callable[[str], bool] | None = None,
                 store: StateStore | StoreOpener | None = None, parent: Run | None = None,
                 completed: dict[str, dict[str, Any]] | None = None,
                 completed_hosts: dict[str, dict[str, dict[str, Any]]] | None = None) -> None:
        """``options``: what the caller chose (engine.execution.options). ``store``: the state
        store, or what opens it when first needed (None: no locks, nothing recorded). ``ask``:
        how a ``confirm`` asks a person. ``parent``: the run whose step runs this child."""
        self.proc = proc
        self.options = options = options or RunOptions()
        self.dry_run = options.dry_run
        self.offline = options.offline
        self.yes = options.yes
        self.no_rollback = options.no_rollback
        self.only = set(options.only)
        self.limit = options.limit
        self.inventory_path = options.inventory
        # as errors name it: a postgresql:// URL without its password
        self.state_url = _without_password(options.state) if options.state else None
        self.ignore_window = options.ignore_window
        self.forks = options.forks
        self.accept_new_hosts = options.accept_new_hosts
        self.known_hosts = options.known_hosts  # SSH known_hosts file (default ~/.ssh/known_hosts)
        self.use_journal = options.journal and store is not None
        # `runproc apply`: the actions a saved plan showed, by step id (``id@host`` for a host of
        # a fanned-out step, ``parent/child`` for a child procedure's step); None means the plan
        # showed the step not acting (``when`` false). StepRunner refuses to execute an action
        # that renders otherwise (engine/state/plans.py builds this).
        self.expected_actions = options.expected_actions
        self._log_dir = Path(options.log_dir) if options.log_dir else None
        self.on_event = on_event
        self.notifier: Any = None  # hears this run's events for notify:/escalate: (set up below)
        # consumers that do not show output (JSON mode, a quiet console) spare the decoding
        self.wants_output = on_event is not None and getattr(on_event, "wants_output", True)
        self.ask = ask
        self._store_arg = store
        self.parent = parent
        # `runproc resume`: steps an earlier run completed, id -> its report entry, in completion
        # order. They are not run again; their recorded fields are their ``steps.<id>``.
        self.completed = completed or {}
        # and hosts of fanned-out steps an earlier run finished: step id -> host -> its entry
        self.completed_hosts = completed_hosts or {}
        # what the store keeps to resume or roll back this run (engine/state/replay.py captures it)
        self.journal_inputs: dict[str, Any] | None = None
        self.workdir = proc.workdir
        # what each step's templates read (a pydantic private attribute: slow to reach per step)
        self.references: dict[str, set[str]] = proc._references
        self.run_id = os.urandom(6).hex()  # as uuid4().hex[:12], without importing uuid
        self.started_at = now_iso()
        self.stop = threading.Event()  # first interrupt: start nothing, kill running steps
        self.rollback_cancel = threading.Event()  # second: abandon rollbacks
        self.final_cancel = threading.Event()  # third: abandon on_failure and finally
        self._phase_cancel = self.stop
        self.interrupts = 0
        self.resources: Resources = parent.resources if parent else Resources()
        self.redactor = Redactor()
        self._emit_lock = threading.RLock()
        self._journal_obj: Any = None
        # the write-ahead journal (engine/execution/journal.py); a real run's begins in _execute
        self.journal: NullJournal = NullJournal()
        self.state_lost: str | None = None  # why the state store stopped answering mid-run
        self.lock_lost: str | None = None  # a lock of this run taken over or broken mid-run
        self._store_lock = threading.Lock()
        self.event_error: Exception | None = None  # the first exception an on_event consumer raised
        self.results: dict[str, StepResult] = {}
        self.views: dict[str, Any] = {}  # steps.<id> as templates see them
        self.unknown: set[str] = set()  # planned steps whose results a dry run cannot know
        # a dry run: which planned steps lie upstream of each step (built in _schedule)
        self._upstream: dryrun.PlannedUpstream | None = None
        self.error: str | None = None
        self.root_cause: str | None = None
        self.refused = False
        self.undo_order: list[str] = []  # rollbacks that ran, in the order they ran
        self.not_undone: list[str] = []
        # resolved before anything runs; ProcedureError (exit 2) on bad input
        self.params = resolve_params(proc, cli_params, params)
        self._check_only()
        # a dry run plans without secrets: what needs a missing one is shown as unknown
        # a store's secrets (vault, aws_secretsmanager, aws_ssm) are read here, once for the run
        from ..executors import secretstores

        self.secrets: dict[str, Any] = secretstores.resolve(proc, allow_missing=self.dry_run, offline=self.offline)
        self.missing_secrets = [n for n, v in self.secrets.items() if v is None]
        for name in self.missing_secrets:
            self.secrets[name] = ex.Unknown(f"secrets.{name}")
        # every value derived from a secret is masked too: engine/taint.py renders twice to find them
        self.taint = Taint(self.redactor)
        for value in self.secrets.values():
            self.taint.protect(value)
        if parent is not None:  # a parent's secret, or a value derived from one, passed down stays hidden
            for value, shadow in parent.taint.pairs():
                self.taint.protect(value, shadow)
        for name, spec in proc.params.items():
            if spec.secret and self.params.get(name) is not None:
                self.taint.protect(self.params[name])
        for value in connection_secrets(proc.connections):
            self.taint.protect(value)
        self.base_ns = self._base_namespace()
        if self.use_journal and not self.dry_run and parent is None:
            # a real run records itself: a state it cannot open is invalid input, before any step
            self.store()
        if proc.notify or proc.escalate or any(s.notify for s in proc.all_steps()):
            from .notifying import notifier_for  # engine.notify is imported only by runs that notify

            self.notifier = notifier_for(self)
        bind = getattr(on_event, "bind_run", None)  # a consumer that reads the run (engine/observe/tracing.py)
        if bind is not None:
            bind(self)

    @property
    def cancel(self) -> threading.Event:
        """The cancellation event of the phase being run (steps, rollbacks, cleanup)."""
        return self._phase_cancel

    @property
    def log_dir(self) -> Path:
        """Where full outputs are spooled: ``--report-dir``'s, else the state store's logs folder
        (a temporary folder for a run without a store)."""
        if self._log_dir is None:
            if self._store_arg is not None:  # where the store keeps logs, without opening it
                base = self._store_arg.logs_dir()
                # the state's own folder: its logs stop growing at RUNPROC_LOG_RUN_CAP as they
                # are written, from the state's first run on (not only once a run has ended)
                from ..transports.output import mark_retained

                mark_retained(base)
            else:
                import tempfile

                base = Path(tempfile.gettempdir()) / "runproc-logs"
            self._log_dir = base / self.run_id
        return self._log_dir

    # ------------------------------------------------------------ events

    def emit(self, event: ev.Event) -> None:
        if self.notifier is not None:  # first: an embedder without a consumer is notified too
            self.notifier.see(event)
        if self.on_event is not None and self.event_error is None:
            with self._emit_lock:  # consumers need not be thread-safe
                try:
                    self.on_event(event)
                except Exception as exc:  # noqa: BLE001 - raised again once the run is safely over
                    # a failing consumer must not stop a run half-way, before its rollbacks
                    self.event_error = exc

    def output(self, step_id: str, stream: str, text: str, host: str | None) -> None:
        self.emit(ev.StepOutput(step_id, stream, text, host))

    def progress(self, step_id: str, message: str, host: str | None) -> None:
        self.emit(ev.StepProgress(step_id, message, host))

    def retrying(self, step_id: str, attempt: int, delay: float, error: str | None,
                 host: str | None = None) -> None:
        self.emit(ev.StepRetrying(step_id, attempt, delay, error, host))

    def interrupt(self) -> None:
        """First call: stop and roll back. Second: abandon rollbacks. Third: abandon cleanup.

        Safe in a signal handler: it sets events and emits one event. The main thread only
        waits for the coordinator while a run is going, so it never holds the emit lock here.
        """
        self.interrupts += 1
        if self.interrupts == 1:
            self.error = self.error or "interrupted"
            self.stop.set()
        elif self.interrupts == 2:
            self.rollback_cancel.set()
        else:
            self.final_cancel.set()
        self.emit(ev.Interrupted(self.interrupts))

    @property
    def interrupted(self) -> bool:
        # a child procedure shares its parent's stop event without counting interrupts
        return self.interrupts > 0 or self.stop.is_set()

    # ------------------------------------------------------------ namespace

    def _base_namespace(self) -> dict[str, Any]:
        ns: dict[str, Any] = {
            "params": self.params, "secrets": self.secrets, "env": dict(os.environ),
            "run": {"id": self.run_id, "dry_run": self.dry_run, "started_at": self.started_at,
                    "error": None, "procedure": self.proc.procedure, "dir": str(self.workdir),
                    "offline": self.offline},
            "steps": self.views, "vars": {},
        }
        for name, value in self.proc.vars.items():
            try:
                ns["vars"][name] = self.taint.run(ex.render_value, ns, value)
            except ex.ExpressionError as exc:
                src = self.proc._source
                line, col = src.where(("vars", name)) if src else (0, 0)
                raise ProcedureError(Problem(src.file if src else "<vars>", line, col,
                                             f"vars.{name}: {self.redactor(str(exc))}")) from None
        return ns

    def namespace(self, **extra: Any) -> dict[str, Any]:
        self.base_ns["run"]["error"] = self.redactor(self.error) if self.error else None
        return {**self.base_ns, **extra} if extra else self.base_ns

    # ------------------------------------------------------------ the run

    def execute(self) -> RunResult:
        """Run to the end. On the main thread, wait for a coordinator thread (see the module doc)."""
        if threading.current_thread() is not threading.main_thread():
            result = self._execute()
            self._raise_event_error()
            return result
        box: list[Any] = []
        ended = threading.Event()

        def body() -> None:
            try:
                box.append(self._execute())
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                box.append(exc)
            finally:
                ended.set()

        worker = threading.Thread(target=body, name=f"run-{self.run_id}", daemon=True)
        worker.start()
        while not ended.is_set():
            try:
                # returns the moment the coordinator ends; the timeout only bounds how long
                # a platform without interruptible locks would delay a signal handler.
                # (An Event, not Thread.join: a join interrupted by KeyboardInterrupt can
                # leave the thread looking finished on Python < 3.13.)
                ended.wait(0.5)
            except KeyboardInterrupt:  # a library caller's Ctrl-C acts as the CLI's SIGINT
                self.interrupt()
        worker.join()
        outcome = box[0]
        if isinstance(outcome, BaseException):
            raise outcome
        self._raise_event_error()
        return outcome

    def _raise_event_error(self) -> None:
        if self.event_error is not None:
            raise RuntimeError(f"the on_event consumer raised {type(self.event_error).__name__}: "
                               f"{self.event_error} (the run went on without it and ended)") from self.event_error

    def _execute(self) -> RunResult:
        t0 = time.monotonic()
        order = [*self.proc.steps, *self.proc.finally_, *self.proc.on_failure]
        for step in self.proc.steps:
            self.results[step.id] = StepResult(step.id, phase="step")
        for step in self.proc.finally_:
            self.results[step.id] = StepResult(step.id, phase="finally")
        for step in self.proc.on_failure:
            self.results[step.id] = StepResult(step.id, phase="on_failure")
        if self.completed:
            for i, (sid, entry) in enumerate(self.completed.items()):
                # before any step of this run, in their old order: a rollback undoes them last
                self.results[sid] = recorded_result(entry, completed_at=i - len(self.completed))
        self.emit(ev.RunStarted(self.run_id, self.proc.procedure, self.dry_run, self.offline,
                                [(s.id, s.name or s.id) for s in order], self.started_at))
        if self.use_journal and not self.dry_run and self.parent is None and not self.offline:
            self._begin_journal()
        if self.missing_secrets and not self.offline:
            self.emit(ev.Note("warning", "secret(s) not set: " + ", ".join(self.missing_secrets)
                              + "; what needs them is shown as unknown, and a real run would refuse"))
        lock_taken = False
        try:
            refusal = self._check_window()
            if refusal is None and self.proc.lock and not self.offline:
                refusal, lock_taken = self._take_lock()
            if refusal is None:
                refusal = self._preconditions()
            if refusal is not None:
                self.refused = True
                self.error = refusal
                for sr in self.results.values():
                    sr.status, sr.error = "cancelled", "not started: the run was refused"
                return self._finish(t0)
            self._schedule()
            self.lock_lost = self.lock_lost or self._top().lock_lost  # a child's lock is renewed on top
            failed = (self.root_cause is not None or self.interrupted or self.state_lost is not None
                      or self.lock_lost is not None)
            if failed and not self.dry_run:
                if self.no_rollback:
                    rollback.note_kept_without_rollback(self, "--no-rollback")
                elif self.lock_lost is not None:
                    # another run holds the lock now: undoing under its feet could break its work
                    rollback.note_kept_without_rollback(self, "the lock was taken over: runproc rollback "
                                                              f"{self.run_id} once the other run has ended")
                else:
                    rollback.rollback_all(self)
                self._run_list(self.proc.on_failure)
            else:
                why = "the run did not fail" if not failed else "a dry run does not act on failure"
                for step in self.proc.on_failure:
                    self.results[step.id].status = "skipped"
                    self.results[step.id].notes.append(why)
            self._run_list(self.proc.finally_)
            return self._finish(t0)
        finally:
            # a store that stopped answering is not asked again (each try would wait for its
            # timeouts): the lock is left to its lease, which nobody renews any more
            if lock_taken and self.state_lost is None:
                try:
                    self._top().journal.unhold(self.proc.lock or "", self.run_id)
                    self.store().release(self.proc.lock or "", self.run_id)
                except Exception as exc:  # noqa: BLE001 - never hide the outcome; say it
                    self.emit(ev.Note("warning", f"could not release lock {self.proc.lock!r}: {exc}"))
            if self.parent is None:
                for problem in self.resources.close_all():
                    self.emit(ev.Note("warning", f"closing {problem}"))
            self.journal.close()
            if self._journal_obj is not None:
                self._journal_obj.close()
                self._journal_obj = None

    # ------------------------------------------------------------ scheduling

    def _schedule(self) -> None:
        steps = {s.id: s for s in self.proc.steps}
        needs = graph.declared_needs(self.proc.steps)  # validated acyclic by the loader
        position = {s.id: i for i, s in enumerate(self.proc.steps)}
        waiting = {sid: set(n) for sid, n in needs.items()}
        dependents: dict[str, list[str]] = {sid: [] for sid in needs}
        for sid, deps in needs.items():
            for d in deps:
                dependents[d].append(sid)
        ready: list[tuple[int, str]] = [(position[s], s) for s, n in waiting.items() if not n]
        if self.dry_run:
            self._upstream = dryrun.PlannedUpstream(self.proc.steps, needs)
        heapq.heapify(ready)
        limit = self.proc.concurrency or DEFAULT_CONCURRENCY_CAP
        done: queue.SimpleQueue[str] = queue.SimpleQueue()
        running: set[str] = set()
        stepper = StepRunner(self)

        def finished(sid: str) -> None:
            running.discard(sid)
            sr = self.results[sid]
            step = steps[sid]
            if sr.status in DONE or (step.continue_on_error and sr.status in FAILED):
                for dep in dependents[sid]:
                    waiting[dep].discard(sid)
                    if not waiting[dep]:
                        heapq.heappush(ready, (position[dep], dep))
            elif self.root_cause is None and sr.status != "cancelled":
                self.root_cause = sid
                self.error = f"step {sid} {sr.status}: {sr.error}"
                self.refused = "refused" in sr.notes

        # a thread per running step (at most ``limit``): a pool would save ~50 us a step but
        # its import (concurrent.futures, logging) costs ~8 ms of every run's start.
        # An offline plan waits on nothing (a step is described, or a child procedure planned
        # offline in turn): its steps would only take turns on the GIL, and a thread per step
        # cost more than the step (10,000 ready steps: 2.5 s of a 4.6 s plan). So the
        # coordinator runs them itself, in the order they start, as threads would finish them.
        workers: list[threading.Thread] = []
        started: deque[str] = deque()  # offline: started, not yet run
        try:
            while ready or running:
                while ready and len(running) < limit and not self._stopping():
                    _, sid = heapq.heappop(ready)
                    running.add(sid)
                    if self.offline:
                        started.append(sid)
                        continue
                    if not ready and len(running) == 1:
                        # the only step that can run now: nothing else can become ready
                        # before it ends, so run it here rather than pay two thread hand-offs.
                        # Its end is journaled with whatever this loop starts next (one commit
                        # a step), or flushed below when the loop waits or ends instead.
                        self._step_job(stepper, steps[sid], hold_finish=True)
                        finished(sid)
                        continue
                    self.journal.flush()
                    worker = threading.Thread(target=self._step_job, args=(stepper, steps[sid], done),
                                              name=f"step-{sid}", daemon=True)
                    worker.start()
                    workers.append(worker)
                if not running:
                    break
                if started:
                    sid = started.popleft()
                    self._step_job(stepper, steps[sid])
                    finished(sid)
                    continue
                self.journal.flush()
                finished(done.get())  # every job puts its id, whatever happens to it
        finally:
            self.journal.flush()
        for worker in workers:
            worker.join()  # each has put its id: this only waits for the thread to exit
        reason = (f"not started: {self.root_cause} {self.results[self.root_cause].status}"
                  if self.root_cause else NOT_STARTED
                  if self.state_lost and not self.interrupted else f"not started: {self._top().lock_lost}"
                  if self._top().lock_lost and not self.interrupted else "not started: the run was interrupted")
        for sid in steps:
            sr = self.results[sid]
            if sr.status == "pending":
                sr.status, sr.error = "cancelled", reason

    def _stopping(self) -> bool:
        return (self.root_cause is not None or self.stop.is_set() or self.state_lost is not None
                or self.lock_lost is not None or self._top().lock_lost is not None)

    # ------------------------------------------------------------ the journal

    def _begin_journal(self) -> None:
        """Record the run before its first step; a store that cannot is invalid input (exit 2)."""
        from ..version import __version__

        inputs = self.journal_inputs or {}
        header = {"run_id": self.run_id, "procedure": self.proc.procedure, "path": str(self.proc.path),
                  "started_at": self.started_at, "user": user_name(), "pid": process.pid(),
                  "version": __version__, "kind": inputs.get("kind") or "run", "of_run": inputs.get("of_run"),
                  # params as recorded for a replay: a secret param only as a salted hash
                  "params": inputs.get("params"), "files": inputs.get("files"),
                  "steps": [(s.id, "step") for s in self.proc.steps]
                  + [(s.id, "finally") for s in self.proc.finally_]
                  + [(s.id, "on_failure") for s in self.proc.on_failure]}
        journal = Journal(self, self.store(), on_lost=self._lose_state, on_lock_lost=self._lose_lock)
        try:
            journal.begin(header, self.journal_inputs)
        except Exception as exc:  # noqa: BLE001 - a state that cannot record: nothing has run
            where = self.state_url or "the default run state"
            raise ProcedureError(Problem("--state", 0, 0, f"cannot record the run in {where}: "
                                                          f"{self.redactor(str(exc))}")) from None
        self.journal = journal
        for sid in self.completed:
            # done in the run resumed: this run's journal says so too, in their order, so that
            # resuming this run in turn does not run them again
            journal.step_finished(self.results[sid])

    def _lose_lock(self, name: str) -> None:
        """The heartbeat found a lock of this run (or of a child procedure it runs) taken over
        (its lease expired: the process was stopped, the machine slept) or broken by runproc
        unlock: start nothing new, in this run and its children."""
        if self.lock_lost is None:
            self.lock_lost = (f"lock {name!r} was taken over or broken while this run held it (it was not "
                              "renewed within its lease): nothing new starts, and nothing is undone")
            self.emit(ev.Note("warning", self.lock_lost))

    def _lose_state(self, reason: str, spool: Path | None, spool_error: str | None = None) -> None:
        """The state store stopped answering: start nothing new, let running steps finish, roll back."""
        if spool is not None:
            kept = (f"the journal goes on in {spool}, uploaded when runproc next reaches the state "
                    f"(or: runproc state sync {spool})")
        else:
            kept = f"the journal could not be spooled either ({spool_error}): the run's report is all there is"
        self.state_lost = f"the state store stopped answering ({reason}); {kept}"
        self.emit(ev.Note("warning", self.state_lost))

    def _step_job(self, stepper: StepRunner, step: Step, done: queue.SimpleQueue[str] | None = None, *,
                  hold_finish: bool = False) -> None:
        sr = self.results[step.id]
        done_before = step.id in self.completed and sr.phase == "step"
        try:
            if not done_before:
                self._run_step(stepper, step, sr)
        except Exception as exc:  # noqa: BLE001 - a bug in one step must not hang the run
            sr.status, sr.error = "failed", f"internal error: {type(exc).__name__}: {exc}"
        finally:
            try:
                # a step whose start found the state store gone did not start: its end says
                # so (cancelled, whatever became of the start's write), and it has no place
                # in the completion order
                never_started = sr.status == "cancelled" and sr.error == NOT_STARTED
                if not done_before and not never_started:  # a resumed step keeps its old place
                    sr.completed_at = time.monotonic()
                if sr.error:
                    sr.error = self.redactor(sr.error)
                if sr.notes and self.redactor:
                    sr.notes = [self.redactor(n) for n in sr.notes]
                self.views[step.id] = (ex.Unknown(f"steps.{step.id}") if step.id in self.unknown
                                       else sr.as_fields())
                if not done_before:
                    # committed before any step that needs it starts
                    self.journal.step_finished(sr, hold=hold_finish)
                self.emit(ev.StepFinished(step.id, sr.phase, sr))
            finally:
                if done is not None:
                    done.put(step.id)

    def _run_step(self, stepper: StepRunner, step: Step, sr: StepResult) -> None:
        t0 = time.monotonic()
        sr.started_at = now_iso()
        try:
            if self.only and step.id not in self.only and sr.phase == "step":
                sr.status = "skipped"
                sr.notes.append("not selected (--only)")
                return
            if step.loops:  # once per item, each with its when, retries and result
                from .loops import run_loop

                run_loop(self, stepper, step, sr)
                return
            ns = self.namespace()
            unknown = sorted(r for r in self.references.get(step.id, ()) if r in self.unknown)
            go, undecided = judge_when(step.when, ns, sr, self.redactor, "step")
            if not go:
                return
            unknown = unknown or undecided
            if self.dry_run and unknown:
                self.emit(ev.StepStarted(step.id, sr.phase, None, None))
                dryrun.plan_unknown(self, stepper, step, sr, ns, unknown)
                return
            hosts = self._hosts(step) if step.on else None
            self.emit(ev.StepStarted(step.id, sr.phase, None, len(hosts) if hosts is not None else None))
            if hosts is not None:
                from .fanout import run_fanout

                if not self.journal.step_started(step.id, sr.phase, None):
                    sr.status, sr.error = "cancelled", NOT_STARTED
                    return
                run_fanout(self, stepper, step, ns, sr, hosts)
            else:
                stepper.execute(step, ns, sr)
            # a child procedure whose undos did not all run leaves them to this run's person
            self.not_undone.extend(f"{step.id}/{x}" for x in sr.fields.get("not_undone") or ())
            if self.dry_run and sr.phase == "step" and self._upstream is not None:
                dryrun.judge_against_planned_upstream(self, step, sr, self._upstream)
        except ex.UnknownValueError as exc:
            sr.status = "planned"
            sr.notes.append(f"unknown until the run: {exc.unknown.label}")
            if sr.description is None and step.action is not None:
                from ..executors import get_executor

                executor = get_executor(step.action.kind)()
                sr.description = stepper.describe(executor, step.action.options,
                                                  stepper.context(step.id, step, self.namespace()))
        except ProcedureError as exc:
            sr.status, sr.error = "failed", str(exc)
        finally:
            sr.duration = time.monotonic() - t0
            if sr.status == "planned":
                self.unknown.add(step.id)
                if self._upstream is not None and sr.phase == "step":
                    self._upstream.note(step.id)
            if self.dry_run and sr.status in ("planned", "ok") and step.rollback is not None:
                dryrun.describe_undo(self, stepper, step, sr)

    def _hosts(self, step: Step) -> list[Any]:
        from .fanout import select_hosts

        return select_hosts(self, step)
