"""How a dry run judges what it could and could not know.

A plan executes readonly steps against today's state while upstream writes were only
planned; results of planned steps are unknown. These functions decide what such a step's
status and notes say, so that a plan is honest without being reported broken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..executors.base import ENVIRONMENT
from ..format import graph
from ..format.model import Step
from .results import StepResult

if TYPE_CHECKING:
    from .context import RunContext as Run
    from .step import StepRunner


def describe_undo(run: Run, stepper: StepRunner, step: Step, sr: StepResult) -> None:
    """A plan shows the undo that stands ready for each step, as a real failure would run it."""
    from ..executors import get_executor

    assert step.rollback is not None and step.rollback.action is not None
    undo = get_executor(step.rollback.action.kind)()
    ctx = stepper.context(step.id, step.rollback, run.namespace())
    sr.rollback_action = stepper.describe(undo, step.rollback.action.options, ctx)


def judge_against_planned_upstream(run: Run, step: Step, sr: StepResult) -> None:
    """A dry run executes readonly steps against today's state, but an upstream write was only
    planned: say so, and do not call the plan broken when such a step fails for that reason."""
    planned = planned_upstream(run, step.id)
    if not planned:
        return
    shown = ", ".join(planned[:3]) + (f" and {len(planned) - 3} more" if len(planned) > 3 else "")
    was = "was" if len(planned) == 1 else "were"
    if sr.status in ("failed", "timed_out") and sr.error_kind == ENVIRONMENT:
        # unreachable, refused, no such program: the real run would fail the same way
        sr.notes.append(f"the environment is broken, whatever upstream {shown} would change")
        return
    if sr.status in ("failed", "timed_out"):
        sr.notes.append(
            f"failed against the current state ({sr.error}); upstream {shown} {was} only "
            "planned, so a real run may differ"
        )
        sr.status, sr.error, sr.unjudged = "planned", None, True
    elif sr.status == "ok":
        sr.notes.append(f"ran against the current state; upstream {shown} {was} only planned")


def planned_upstream(run: Run, step_id: str) -> list[str]:
    """Steps this one (transitively) needs that a dry run only planned, nearest first."""
    if not run.unknown:
        return []
    if run._needs is None:
        run._needs = graph.declared_needs(run.proc.steps)
    seen: set[str] = set()
    out: list[str] = []
    frontier = list(run._needs.get(step_id, ()))
    while frontier:
        node = frontier.pop(0)
        if node in seen:
            continue
        seen.add(node)
        if (
            node in run.unknown
            and run.results[node].status == "planned"
            and changes_things(run.proc.step(node))
        ):
            out.append(node)
        frontier.extend(run._needs.get(node, ()))
    return out


def plan_unknown(
    run: Run, stepper: StepRunner, step: Step, sr: StepResult, ns: dict[str, Any], unknown: list[str]
) -> None:
    from ..executors import get_executor

    assert step.action is not None
    executor = get_executor(step.action.kind)()
    sr.description = stepper.describe(executor, step.action.options, stepper.context(step.id, step, ns))
    sr.status = "planned"
    sr.notes.append("depends on planned step(s) " + ", ".join(unknown) + ": result unknown in a dry run")


def changes_things(step: Step) -> bool:
    """Whether a completed step left a change behind (for the "kept" list)."""
    from ..executors import get_executor
    from ..executors.base import Effect

    if step.readonly or step.action is None:
        return False
    cls = get_executor(step.action.kind)
    return not cls.stateless and cls().effect(step.action.options) != Effect.READ
