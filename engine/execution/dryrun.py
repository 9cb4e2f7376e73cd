"""How a dry run judges what it could and could not know.

A plan executes readonly steps against today's state while upstream writes were only
planned; results of planned steps are unknown. These functions decide what such a step's
status and notes say, so that a plan is honest without being reported broken.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from graphlib import CycleError
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
    ns = run.namespace()
    if step.loops:
        if sr.hosts is not None:
            return  # each iteration shows its own undo
        from .loops import unknown_item_namespace

        ns = unknown_item_namespace(run, step)
    elif step.on is not None:
        # a fanned-out step's plan shows its action as on its first host: its undo likewise
        # (rendered without a host, host.name was "<cannot render: 'host' is undefined>")
        from .fanout import Target, select_hosts

        hosts = select_hosts(run, step)
        if hosts:
            h = hosts[0]
            ns = {**ns, "host": Target(h.name, h.address, h.port, h.user, h.vars, list(h.groups)).view()}
    undo = get_executor(step.rollback.action.kind)()
    ctx = stepper.context(step.id, step.rollback, ns)
    sr.rollback_action = stepper.describe(undo, step.rollback.action.options, ctx)


def judge_against_planned_upstream(run: Run, step: Step, sr: StepResult, upstream: PlannedUpstream) -> None:
    """A dry run executes readonly steps against today's state, but an upstream write was only
    planned: say so, and do not call the plan broken when such a step fails for that reason."""
    if not run.unknown or sr.status not in ("ok", "failed", "timed_out"):
        return  # nothing planned yet, or nothing to say about a step that was itself planned
    nearest, count = upstream.nearest(step.id, SHOWN)
    if not count:
        return
    shown = ", ".join(nearest) + (f" and {count - SHOWN} more" if count > SHOWN else "")
    was = "was" if count == 1 else "were"
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


SHOWN = 3  # planned upstream steps a note names; the rest are counted


class PlannedUpstream:
    """Which steps upstream of a step a dry run only planned (and that would change things).

    Every step of a plan asks this, so it must not walk its ancestors: in a chain of n planned
    steps that walk is O(n) per step, O(n^2) for the plan (it was O(n^3) with a scan of the
    steps for each ancestor met). Instead the planned steps are one bitset, each step's
    ancestors another (``graph.Dag``, built once in topological order), and the count is the
    popcount of their intersection. Only the few steps a note names are found by the
    breadth-first walk (nearest first), which stops once it has them and does not descend
    below a step with nothing planned upstream of it, so it visits a handful of steps.

    ``note`` is called by the scheduler as each main step of a dry run ends as planned (before
    any step that needs it starts); ``nearest`` by the steps downstream, from any thread.
    """

    def __init__(self, steps: list[Step], needs: dict[str, list[str]]) -> None:
        self._steps = {s.id: s for s in steps}
        self._needs = needs
        self._dag: graph.Dag | None = None
        with contextlib.suppress(CycleError):  # steps on a cycle never start; the rest are walked
            self._dag = graph.build(steps, needs)
        self._ancestors: dict[str, int] | None = None  # built at the first question that needs it
        self._planned: set[str] = set()
        self._mask = 0
        self._lock = threading.Lock()

    def note(self, step_id: str) -> None:
        """``step_id`` ended as planned: count it if it is a main step that would change things."""
        step = self._steps.get(step_id)
        if step is None or not changes_things(step):
            return
        with self._lock:
            self._planned.add(step_id)
            if self._dag is not None:
                self._mask |= 1 << self._dag.position[step_id]

    def nearest(self, step_id: str, first: int) -> tuple[list[str], int]:
        """The ``first`` planned steps upstream of ``step_id``, nearest first, and how many there are."""
        with self._lock:
            if not self._planned:
                return [], 0
            dag = self._dag
            if dag is None or len(dag.order) > graph.BITSET_LIMIT or step_id not in dag.position:
                found = self._walk(step_id, None)  # past the limit the bitsets would cost more than this
                return found[:first], len(found)
            if self._ancestors is None:
                self._ancestors = dag.ancestor_bitsets()
            count = (self._ancestors[step_id] & self._mask).bit_count()
            if not count:
                return [], 0
            return self._walk(step_id, min(first, count)), count

    def _walk(self, step_id: str, want: int | None) -> list[str]:
        """Breadth first from ``step_id`` through ``needs``; stops at ``want`` found (None: all)."""
        ancestors, mask = self._ancestors, self._mask
        seen: set[str] = set()
        out: list[str] = []
        frontier = deque(self._needs.get(step_id, ()))
        while frontier and (want is None or len(out) < want):
            node = frontier.popleft()
            if node in seen:
                continue
            seen.add(node)
            if node in self._planned:
                out.append(node)
            # nothing planned above it: what lies there is neither found nor on the way to one
            # (its ancestors' ancestors are a subset), so the order of what is found is unchanged
            if ancestors is None or ancestors[node] & mask:
                frontier.extend(self._needs.get(node, ()))
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
