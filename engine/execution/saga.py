"""The saga's failure path: undo completed steps, most recent first, and say what was kept."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ..format import expressions as ex
from ..format.model import Step
from . import events as ev
from .dryrun import changes_things
from .journal import now_iso
from .results import FAILED, StepResult
from .step import StepRunner

if TYPE_CHECKING:
    from .context import RunContext as Run


def to_undo(run: Run) -> list[StepResult]:
    """Steps whose action completed, most recent first.

    A step whose action succeeded but whose ``verify`` failed did change things, so it is
    undone too; a step that failed or timed out in its action is not (its rollback could
    undo something that never happened).
    """
    out = [
        sr
        for sr in run.results.values()
        if sr.phase == "step"
        and sr.completed_at is not None
        and (
            sr.status == "ok"
            or sr.changed
            or (sr.hosts and any(h.status == "ok" or h.changed for h in sr.hosts.values()))
        )
    ]
    out.sort(key=lambda r: r.completed_at or 0, reverse=True)
    return out


def note_kept_without_rollback(run: Run, why: str) -> None:
    for sr in to_undo(
        run,
    ):
        if run.proc.step(sr.id).rollback is not None:
            sr.notes.append(f"not rolled back ({why})")


def rollback_all(run: Run) -> None:
    stepper = StepRunner(run)
    run._phase_cancel = run.rollback_cancel
    try:
        for sr in to_undo(
            run,
        ):
            step = run.proc.step(sr.id)
            if step.rollback is None:
                if sr.status == "ok" and changes_things(step):
                    sr.notes.append("no rollback defined: its change was kept")
                continue
            if run.rollback_cancel.is_set():
                sr.notes.append("rollback abandoned (second interrupt): its change was kept")
                run.not_undone.append(sr.id)
                continue
            rollback_one(run, stepper, step, sr)
    finally:
        run._phase_cancel = run.stop


def rollback_one(run: Run, stepper: StepRunner, step: Step, sr: StepResult) -> None:
    run.emit(ev.RollbackStarted(sr.id))
    run.journal.rollback_started(sr.id)
    t0 = time.monotonic()
    started = now_iso()
    try:
        ns = run.namespace()
        if step.loops and sr.hosts is not None:
            from .loops import rollback_loop

            ok, error, description = rollback_loop(run, stepper, step, ns, sr)
        elif sr.hosts is not None:
            from .fanout import rollback_fanout

            ok, error, description = rollback_fanout(run, stepper, step, ns, sr)
        else:
            ok, error, description = stepper.rollback(step, ns)
    except ex.ExpressionError as exc:
        ok, error, description = False, f"rollback: {exc}", ""
    except Exception as exc:  # noqa: BLE001 - one undo's surprise must not stop the others
        ok, error, description = False, f"internal error: {type(exc).__name__}: {exc}", ""
    if not ok and run.rollback_cancel.is_set():
        error = f"interrupted (second interrupt): {error}" if error else "interrupted (second interrupt)"
    error = run.redactor(error) if error else error
    sr.rollback = StepResult(
        sr.id,
        phase="rollback",
        status="ok" if ok else "failed",
        error=error,
        description=description,
        duration=time.monotonic() - t0,
        started_at=started,
        attempts=1,
    )
    if ok:
        run.undo_order.append(sr.id)
        # the root cause keeps "failed" (its verify failed; the undo is in .rollback)
        if sr.status == "ok" or sr.hosts is not None and sr.status not in FAILED:
            sr.status = "rolled_back"
    else:
        sr.status = "rollback_failed"
        run.not_undone.append(sr.id)
    run.journal.rollback_finished(sr.id, sr)
    run.emit(ev.RollbackFinished(sr.id, ok, error))
