"""How a run ends: the cleanup lists (``on_failure``, ``finally``), then the outcome (status,
exit code, what was rolled back, kept or not undone) and its record in the state store.
A base class of the scheduler's ``Run``."""

from __future__ import annotations

import time
from typing import Any

from ..format import graph
from ..format.model import Step
from . import events as ev
from .results import FAILED, RunResult, StepResult
from .step import StepRunner


class Outcome:
    """The end of a run."""

    # ------------------------------------------------------------ failure path

    def _run_list(self, steps: list[Step]) -> None:
        """finally/on_failure: in order (``needs`` respected), each whatever the others did."""
        if not steps:
            return
        stepper = StepRunner(self)
        self._phase_cancel = self.final_cancel  # a first or second interrupt must not stop cleanup
        try:
            by_id = {s.id: s for s in steps}
            for sid in graph.build(steps).order:
                step = by_id[sid]
                sr = self.results[sid]
                if self.final_cancel.is_set():
                    sr.status, sr.error = "cancelled", "abandoned (interrupted a third time)"
                    continue
                self._step_job(stepper, step)
        finally:
            self._phase_cancel = self.stop

    # ------------------------------------------------------------ outcome

    def _finish(self, t0: float) -> RunResult:
        steps = self.results
        main = [steps[s.id] for s in self.proc.steps]
        kept = [s.id for s in main if any(n.startswith(("no rollback defined", "not rolled back"))
                                          for n in s.notes)]
        cleanup_failed = [s.id for s in (*self.proc.finally_, *self.proc.on_failure)
                          if steps[s.id].status in FAILED]
        if self.state_lost is not None and self.root_cause is None and not self.interrupted:
            self.error = self.state_lost
        elif self.lock_lost is not None and self.root_cause is None and not self.interrupted:
            self.error = self.lock_lost
        if self.not_undone:
            # before "interrupted": an undo that did not run needs a person, whatever stopped it
            status, code = "rollback_incomplete", 4
        elif self.interrupted:
            status, code = "interrupted", 130
        elif self.refused:
            # a denied approval is a refusal even after earlier steps: they were all undone above
            status, code = "refused", 3
        elif self.root_cause is not None or self.state_lost is not None or self.lock_lost is not None:
            status, code = "failed", 1
        elif cleanup_failed:
            status, code = "failed", 1
            self.root_cause = cleanup_failed[0]
            sr = steps[cleanup_failed[0]]
            self.error = self.error or f"step {sr.id} {sr.status}: {sr.error}"
        elif self.dry_run:
            status, code = "planned", 0
        else:
            status, code = "ok", 0
        result = RunResult(self.proc.procedure, self.run_id, status, code, self.dry_run, self.started_at,
                           time.monotonic() - t0, steps, self.redactor(self.error) if self.error else None,
                           self.root_cause, list(self.undo_order), list(self.not_undone), kept, self.offline,
                           redact=self.redactor)
        if self.notifier is not None:  # the end's notifications, waited for (bounded), are in the record
            self.notifier.finish(result)
        if self.journal.active:
            self.journal.finish(result.to_json(), self._inputs_to_record(main))
        elif self.use_journal and self.parent is None and not self.offline:
            try:
                self.store().record(result.to_json(), self._inputs_to_record(main))
            except Exception as exc:  # noqa: BLE001 - history is best effort; the outcome is not
                self.emit(ev.Note("warning", f"could not record the run in the journal: {exc}"))
        self.emit(ev.RunFinished(result))
        return result

    def _inputs_to_record(self, main: list[StepResult]) -> dict[str, Any] | None:
        """The journal's inputs for a later resume/rollback, with what only the end knows: the
        order steps completed in (rollbacks run in reverse) and which failed steps had changed
        things (their action completed, their verify failed: rollback undoes them too)."""
        if self.journal_inputs is None or self.dry_run:
            return None
        ended = sorted((sr for sr in main if sr.completed_at is not None), key=lambda sr: sr.completed_at or 0)
        return {**self.journal_inputs, "completed": [sr.id for sr in ended],
                "changed": [sr.id for sr in main if sr.changed]}
