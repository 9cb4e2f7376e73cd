"""Child procedures: a ``procedure:`` step runs another procedure file as a child run that
shares its parent's store, resources, cancellation and secrets. A base class of ``Run``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import Problem, ProcedureError
from . import events as ev
from .results import RunResult


class ChildProcedures:
    """What a run does for the child procedures its steps call."""


    def run_child(self, file: str, params: dict[str, Any], *, dry_run: bool = False, parent_step: str | None = None,
                  cancel: threading.Event | None = None) -> RunResult:
        from ..format.loader import load

        path = Path(file)
        if not path.is_absolute():
            path = self.workdir / path
        chain = [self.proc.path]
        run: Any = self  # up the chain of parents
        while run is not None and run.parent is not None:
            run = run.parent
            chain.append(run.proc.path)
        if path.resolve() in chain:  # a procedure that calls itself would recurse without end
            names = " -> ".join(p.name for p in reversed([*chain]) if p) + f" -> {path.name}"
            raise ProcedureError(Problem(file, 0, 0, f"child procedures call each other in a loop: {names}"))
        child_proc = load(path)
        from dataclasses import replace

        # the parent's choices, less what only the parent names (--only, a saved plan, the report)
        options = replace(self.options, dry_run=dry_run or self.dry_run, only=(), expected_actions=None,
                          report_dir=None, log_dir=str(self.log_dir))
        child = type(self)(child_proc, params=params, options=options, ask=self.ask, store=self._store_arg, parent=self,
                    on_event=self._child_events(child_proc.procedure, parent_step))
        # the child stops with the phase of the parent that runs it, and abandons its undos
        # and cleanup when the parent's are abandoned
        child.stop = cancel or self.cancel
        child._phase_cancel = child.stop
        child.rollback_cancel = self.rollback_cancel
        child.final_cancel = self.final_cancel
        child.wants_output = self.wants_output
        if self.expected_actions is not None and parent_step is not None:
            # the plan held the child's steps under this step's id: the child is held to them too
            prefix = f"{parent_step}/"
            child.expected_actions = {k[len(prefix):]: v for k, v in self.expected_actions.items()
                                      if k.startswith(prefix)}
        return child._execute()

    def _check_only(self) -> None:
        """``--only`` names steps; a typo must not skip everything and report success."""
        ids = [s.id for s in self.proc.steps]
        unknown = [o for o in self.only if o not in ids]
        if unknown:
            from ..errors import Problem
            from ..format.suggest import did_you_mean

            raise ProcedureError([Problem("--only", 0, 0, f"unknown step {o!r}{did_you_mean(o, ids)}")
                                  for o in sorted(unknown)])

    def _child_events(self, name: str, parent_step: str | None = None) -> Callable[[ev.Event], None]:
        def forward(event: ev.Event) -> None:
            if isinstance(event, ev.StepFinished):
                # the child's steps appear under the parent's step, named child/step
                phase = f"child:{parent_step}" if parent_step else "child"
                self.emit(ev.StepFinished(f"{name}/{event.step_id}", phase, event.result))
            elif isinstance(event, ev.StepOutput):
                self.emit(ev.StepOutput(f"{name}/{event.step_id}", event.stream, event.text, event.host))
            elif isinstance(event, ev.Note) and event.level != "child":
                self.emit(ev.Note(event.level, f"{name}: {event.text}", event.data))
        return forward

