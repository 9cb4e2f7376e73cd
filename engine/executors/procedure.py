"""``procedure``: run another procedure file (relative to this one) with ``params``."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ..errors import ProcedureError
from ..format.expressions import to_text
from .base import ENVIRONMENT, Executor, Options, Result, StepContext


class ProcedureOptions(Options):
    file: str
    params: dict[str, Any] = {}


class ProcedureExecutor(Executor):
    name = "procedure"
    main_option = "file"
    Options = ProcedureOptions
    result_fields = ("steps", "run_status")
    plans_offline = True  # the child's own offline plan is the honest description of this step

    def describe(self, options: ProcedureOptions, ctx: StepContext) -> str:
        params = ctx.render(options.params)
        shown = " ".join(f"-p {shlex.quote(f'{k}={to_text(v)}')}" for k, v in params.items())
        return f"runproc {_shown_path(ctx.workdir / to_text(ctx.render(options.file)))} {shown}".rstrip()

    def _run(self, options: ProcedureOptions, ctx: StepContext, dry_run: bool) -> Result:
        if ctx.run_child is None:
            return Result(False, {}, "child procedures need the runner")
        file = to_text(ctx.render(options.file))
        try:
            child = ctx.run_child(file, ctx.render(options.params), dry_run=dry_run)
        except ProcedureError as exc:  # the child's file, params or secrets: say so plainly
            return Result(False, {}, f"child procedure {file}: {exc}")
        # each child step as templates see it, plus the action it ran or would run, and what a
        # plan could not judge there (the parent's tally counts it: results.count_unjudged)
        fields = {"steps": {sid: {**s.as_fields(), "action": s.description,
                                  **({"error_kind": s.error_kind} if s.error_kind else {}),
                                  **({"not_judged": True} if s.unjudged else {})}
                            for sid, s in child.steps.items()},
                  "run_status": child.status}
        if child.ok:
            # a child that was itself a dry run (a parent's readonly step in a dry run) only planned
            return Result(True, fields, planned=dry_run or child.status == "planned")
        if child.not_undone:  # the parent's run must end "a person must look" too
            fields["not_undone"] = [f"{child.procedure}/{sid}" for sid in child.not_undone]
        message = f"child procedure {child.procedure} ended {child.status}: {child.error}"
        if child.status == "interrupted":
            return Result(False, fields, message, cancelled=True)
        return Result(False, fields, message, error_kind=_failure_kind(child))

    def execute(self, options: ProcedureOptions, ctx: StepContext) -> Result:
        return self._run(options, ctx, dry_run=False)

    def rehearse(self, options: ProcedureOptions, ctx: StepContext) -> Result | None:
        return self._run(options, ctx, dry_run=True)


def _failure_kind(child: Any) -> str | None:
    """Why a child run failed, for its parent's dry-run verdict: a broken environment anywhere
    in the child (no such program, a refused connection) would break the real run too, so it
    must not pass for a data problem a planned upstream write might fix; else the root cause's."""
    failed = [s for s in child.steps.values() if s.status in ("failed", "timed_out")]
    if any(s.error_kind == ENVIRONMENT for s in failed):
        return ENVIRONMENT
    root = child.steps.get(child.root_cause) if child.root_cause else None
    return root.error_kind if root is not None else None


def _shown_path(path: Path) -> str:
    """The child's file as the operator can paste it: relative to where they are, when inside."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path.resolve())
