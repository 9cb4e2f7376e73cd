"""Determinism: histories recorded from real runs replay against today's workflow code.

A change to what the interpreter workflow decides, made without ``workflow.patched``, would
break the runs in flight when a team upgrades its workers: replaying these histories fails
on it (temporalio's Replayer raises a nondeterminism error). Record a new history with
every new feature of the workflow (docs/distributed.md, "Upgrades")."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
def test_a_recorded_history_replays_against_todays_workflow(path: Path) -> None:
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from engine.distributed.workflow import ProcedureWorkflow

    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("engine"))
    replayer = Replayer(workflows=[ProcedureWorkflow], workflow_runner=runner)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))
    assert result.replay_failure is None, result.replay_failure


def test_a_workflow_change_without_a_patch_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above has teeth: a workflow that decides differently fails the replay."""
    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from engine.distributed import workflow as wf

    async def reversed_dag(self: wf.ProcedureWorkflow, plan: dict[str, object]) -> str | None:
        steps = list(plan["steps"])  # type: ignore[call-overload]
        for step in reversed(steps):  # a different order: other activities, other commands
            await self._step(plan, step)
        return None

    monkeypatch.setattr(wf.ProcedureWorkflow, "_dag", reversed_dag)
    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("engine"))
    replayer = Replayer(workflows=[wf.ProcedureWorkflow], workflow_runner=runner)
    path = next(p for p in HISTORIES if p.stem == "dag-when-retry")
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))
    assert result.replay_failure is not None
