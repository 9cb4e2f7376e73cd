"""A run's notifications: the listener of its own events that tells ``engine.notify`` when a
notification event happened (docs/notifications.md).

The run feeds every event it emits to ``see`` (before its ``on_event`` consumer, so an
embedder with no consumer, or with one of its own, gets the same notifications) and calls
``finish`` with its result before recording it: the end events are sent, the sends still in
flight are waited for (bounded), and their records become the result's ``notifications``.

When each event fires:

- ``start``: the run started (a step: it started);
- ``approval_needed``: a confirm step waits for a person: asked at the terminal (``ask``), or
  waiting for ``runproc approve`` or the web page (the step says so as its progress); not when
  ``--yes`` answers it, nor when nobody can (the step then fails at once); its escalation clock
  starts;
- ``failure``: as soon as a step fails the run, before its rollback (a step: it failed or
  timed out), or at the end when the run ended failed, refused or interrupted without such a
  step; the failure's escalation clock starts;
- ``rollback``: the rollbacks of a failed run are over (its status says whether all ran: a
  complete one is a recovery); a step: its own undo ran;
- ``success``: the run (a step) ended ok.

A dry run sends nothing: it says which notifications a real run would send.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

from ..format import expressions as ex
from ..format.model import Step
from . import events as ev
from .approvals import WAITING as WAITING_FROM_ELSEWHERE
from .results import FAILED, RunResult
from .store import user_name

if TYPE_CHECKING:
    from ..format.notifications import Notification
    from ..notify.templates import Facts

_PHASES = ("step", "finally", "on_failure")
_FAILED_RUN = ("failed", "refused", "interrupted", "rollback_incomplete")


class RunNotifier:
    """Notifications of one run (``run``: the scheduler's ``Run``)."""

    def __init__(self, run: Any) -> None:
        from ..notify.dispatch import Dispatcher

        self.run = run
        self.proc = run.proc
        self.who = user_name()
        self.host = socket.gethostname()
        self.failure_sent = False
        self.waiting: set[str] = set()  # confirm steps whose approval_needed went out
        self.steps: dict[str, Step] = {s.id: s for s in self.proc.all_steps() if s.notify or _asks(s)}
        self.dispatcher = Dispatcher(render=self._render, evaluate=self._evaluate, redact=run.redactor,
                                     note=self._warn, levels=self.proc.escalate)

    # ------------------------------------------------------------ the run's names

    def _namespace(self, facts: Facts) -> dict[str, Any]:
        return self.run.namespace(event=facts.as_namespace())

    def _render(self, value: Any, facts: Facts) -> Any:
        # through the run's taint: a value a template derives from a secret is masked too
        return self.run.taint.run(ex.render_value, self._namespace(facts), value)

    def _evaluate(self, expression: str, facts: Facts) -> Any:
        return ex.evaluate(expression, self._namespace(facts))

    def _warn(self, text: str) -> None:
        self.run.emit(ev.Note("warning", text))

    def _facts(self, name: str, status: str, **more: Any) -> Facts:
        from ..notify.templates import Facts

        return Facts(name=name, procedure=self.proc.procedure, run_id=self.run.run_id, status=status,
                     who=self.who, host=self.host, started_at=self.run.started_at, **more)

    # ------------------------------------------------------------ events

    def see(self, event: ev.Event) -> None:
        """One event of the run; never raises (a notification never fails a run)."""
        if isinstance(event, ev.Note):
            return
        try:
            self._see(event)
        except Exception as exc:  # noqa: BLE001 - said, and the run goes on
            self._warn(f"notifications: {type(exc).__name__}: {self.run.redactor(str(exc))}")

    def _see(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            self._to_procedure(self._facts("start", "running"))
        elif isinstance(e, ev.StepStarted) and e.phase in _PHASES:
            step = self.steps.get(e.step_id)
            if step is None:
                return
            self._to_step(step, self._facts("start", "running", step=step.id, own_step=True))
            if _asks(step) and self.run.ask is not None and not _answered_by_yes(step, self.run.yes):
                self._approval_needed(step)
        elif isinstance(e, ev.StepProgress) and e.message.startswith(WAITING_FROM_ELSEWHERE):
            # a journaled run's confirm step waits for runproc approve or the web page
            step = self.steps.get(e.step_id)
            if step is not None and _asks(step):
                self._approval_needed(step)
        elif isinstance(e, ev.StepFinished) and e.phase in _PHASES:
            self._step_finished(e)
        elif isinstance(e, ev.RollbackFinished):
            step = self.steps.get(e.step_id)
            if step is not None:
                status = "rolled_back" if e.ok else "rollback_failed"
                self._to_step(step, self._facts("rollback", status, step=step.id, error=e.error, own_step=True))

    def _approval_needed(self, step: Step) -> None:
        assert step.action is not None
        if step.id in self.waiting:
            return  # asked at the terminal and waiting elsewhere too: one wait
        self.waiting.add(step.id)
        try:
            question = str(self._render(step.action.options.message, self._facts("approval_needed", "waiting")))
        except Exception:  # noqa: BLE001 - the step itself reports a message that does not render
            question = step.action.options.message
        facts = self._facts("approval_needed", "waiting", step=step.id, question=self.run.redactor(question))
        self._to_step(step, self._facts("approval_needed", "waiting", step=step.id, question=facts.question,
                                        own_step=True))
        self._to_procedure(facts)
        self.dispatcher.start_clock(f"approval:{step.id}", facts)

    def _step_finished(self, e: ev.StepFinished) -> None:
        self.dispatcher.stop_clock(f"approval:{e.step_id}")  # answered, either way
        self.waiting.discard(e.step_id)
        result = e.result
        step = self.steps.get(e.step_id)
        if result.status == "ok" and step is not None:
            self._to_step(step, self._facts("success", "ok", step=step.id, duration=result.duration, own_step=True))
        if result.status not in FAILED:
            return
        if step is not None:
            self._to_step(step, self._facts("failure", result.status, step=step.id, error=result.error,
                                            own_step=True))
        if e.phase == "step" and not self.failure_sent and not self.proc.step(e.step_id).continue_on_error:
            # the run fails now: said at once, not after its rollback (which may take long)
            self.failure_sent = True
            status = "refused" if "refused" in result.notes else "failed"
            facts = self._facts("failure", status, step=e.step_id, error=result.error)
            self._to_procedure(facts)
            self.dispatcher.start_clock("failure", facts)

    # ------------------------------------------------------------ the end

    def finish(self, result: RunResult) -> None:
        """The end events, then wait for the sends in flight; ``result.notifications`` lists them."""
        try:
            self.dispatcher.stop_clock("failure")  # the run is over: rolled back, or left to a person
            end = dict(duration=result.duration, rolled_back=list(result.rolled_back),
                       not_undone=list(result.not_undone))
            # the failed step's own error reads better beside its id than the run's sentence
            cause = result.steps.get(result.root_cause) if result.root_cause else None
            error = cause.error if cause is not None and cause.error else result.error
            if result.status == "ok":
                self._to_procedure(self._facts("success", "ok", **end))
            elif result.status in _FAILED_RUN and not self.failure_sent:
                self.failure_sent = True
                self._to_procedure(self._facts("failure", result.status, step=result.root_cause,
                                               error=error, **end))
            if result.rolled_back or result.not_undone:
                self._to_procedure(self._facts("rollback", result.status, step=result.root_cause,
                                               error=error, **end))
        except Exception as exc:  # noqa: BLE001 - the run's outcome stands whatever happens here
            self._warn(f"notifications: {type(exc).__name__}: {self.run.redactor(str(exc))}")
        result.notifications = self.dispatcher.close()

    # ------------------------------------------------------------ who hears it

    def _to_procedure(self, facts: Facts) -> None:
        for entry in self.proc.notify:
            if facts.name in entry.events:
                self.dispatcher.notify(entry, facts)

    def _to_step(self, step: Step, facts: Facts) -> None:
        for entry in step.notify:
            if facts.name in entry.events:
                self.dispatcher.notify(entry, facts)


class PlanNotifier:
    """A dry run's: it sends nothing, and says at its start what a real run would send."""

    def __init__(self, run: Any) -> None:
        self.run = run

    def see(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            text = plan_note(self.run.proc)
            if text:
                self.run.emit(ev.Note("info", text))

    def finish(self, result: RunResult) -> None:
        pass


def notifier_for(run: Any) -> RunNotifier | PlanNotifier:
    """The listener that sends a run's notifications (a dry run's only says what it would send)."""
    return PlanNotifier(run) if run.dry_run else RunNotifier(run)


def _asks(step: Step) -> bool:
    return step.action is not None and step.action.kind == "confirm"


def _answered_by_yes(step: Step, yes: bool) -> bool:
    """``--yes`` answers a confirm step, unless its rules want another person (four_eyes,
    approvers: engine/execution/approvals.py)."""
    options = step.action.options if step.action is not None else None
    return yes and not (getattr(options, "four_eyes", False) or getattr(options, "approvers", None))


def plan_note(proc: Any) -> str | None:
    """What a dry run says instead of sending: the channels and the events they would hear."""
    said: list[str] = []
    entries: list[tuple[str, Notification]] = [("", n) for n in proc.notify]
    entries += [(f"step {s.id}: ", n) for s in proc.all_steps() for n in s.notify]
    for prefix, entry in entries:
        said.append(f"{prefix}{entry.channel} on {', '.join(entry.events)}")
    from ..notify.templates import shown_duration

    for level in proc.escalate:
        waits = [w for e, w in (("approval_needed", "an approval"), ("failure", "a recovery")) if e in level.events]
        said.append(f"{level.channel} after {shown_duration(level.after)} without {' or '.join(waits)}")
    if not said:
        return None
    return "a dry run sends no notification; a real run would notify: " + "; ".join(said)
