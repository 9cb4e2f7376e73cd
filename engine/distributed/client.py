"""The controller's side: start a procedure's workflow, follow it with the local console,
list and show runs, answer approvals. ``--engine temporal://HOST:PORT[/NAMESPACE]``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError, RefusedError
from . import require_temporalio

ENGINE_ENV = "RUNPROC_ENGINE"
POLL = 0.1  # seconds between two looks at a running workflow's progress


@dataclass(frozen=True)
class Engine:
    address: str
    namespace: str = "default"

    def __str__(self) -> str:
        return f"temporal://{self.address}/{self.namespace}"


def parse_engine(url: str) -> Engine:
    """``temporal://HOST:PORT[/NAMESPACE]``; anything else is invalid input."""
    if not url.startswith("temporal://"):
        raise InvalidInputError(f"--engine {url!r}: expected temporal://HOST:PORT[/NAMESPACE] (or no --engine: "
                                "run here)")
    rest = url[len("temporal://"):]
    address, _, namespace = rest.partition("/")
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidInputError(f"--engine {url!r}: expected temporal://HOST:PORT[/NAMESPACE], e.g. "
                                "temporal://127.0.0.1:7233")
    return Engine(address, namespace.strip("/") or "default")


async def connect(engine: Engine, timeout: float = 10.0) -> Any:
    """A client, or one line saying why not (unreachable, unknown namespace)."""
    require_temporalio()
    from temporalio.client import Client
    from temporalio.service import RPCError

    try:
        client = await asyncio.wait_for(Client.connect(engine.address, namespace=engine.namespace), timeout)
    except TimeoutError:
        raise InvalidInputError(f"--engine {engine}: no Temporal server answered within {timeout:g}s") from None
    except (RuntimeError, RPCError, OSError) as exc:
        raise InvalidInputError(f"--engine {engine}: cannot connect: {_first_line(exc)}") from None
    try:
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=engine.namespace))
    except RPCError as exc:
        raise InvalidInputError(f"--engine {engine}: namespace {engine.namespace!r}: {_first_line(exc)}") from None
    return client


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------- a run


def submit_and_follow(plan: dict[str, Any], engine: Engine, *, on_event: Callable[[Any], None] | None,
                      detach: bool, stop: list[Any]) -> dict[str, Any]:
    """Start the workflow; follow it to its end (``on_event`` hears the local run's events) and
    return its report, or with ``detach`` return at once ({run_id})."""
    require_temporalio()
    return asyncio.run(_submit_and_follow(plan, engine, on_event, detach, stop))


async def _submit_and_follow(plan: dict[str, Any], engine: Engine, on_event: Any, detach: bool,
                             stop: list[Any]) -> dict[str, Any]:
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from .workflow import SA_PROCEDURE, SA_STATUS, WORKFLOW_NAME

    client = await connect(engine)
    run_id = plan["run"]["id"]
    attributes = TypedSearchAttributes([SearchAttributePair(SA_PROCEDURE, plan["procedure"]),
                                        SearchAttributePair(SA_STATUS, "running")])
    handle = await client.start_workflow(
        WORKFLOW_NAME, plan, id=run_id, task_queue=plan["default_queue"], search_attributes=attributes,
        memo={"procedure": plan["procedure"], "path": plan["path"], "user": _user(), "dry_run": plan["dry_run"],
              "started_at": plan["run"]["started_at"]})
    if detach:
        return {"run_id": run_id, "detached": True}
    return await follow(client, handle, on_event, stop)


async def follow(client: Any, handle: Any, on_event: Any, stop: list[Any] | None = None) -> dict[str, Any]:
    """Show the run's progress as it goes (a query, polled), then its report."""
    from . import events

    seen = 0
    translator = events.Translator(on_event)
    result_task = asyncio.ensure_future(handle.result())
    interrupted = False
    while True:
        if stop is not None and not interrupted and any(getattr(e, "is_set", lambda: False)() for e in stop):
            interrupted = True
            await handle.signal("interrupt")
        try:
            progress = await handle.query("progress", seen)
        except Exception:  # noqa: BLE001 - the workflow may be between tasks or done: look again
            progress = {"events": []}
        for event in progress.get("events") or []:
            seen = max(seen, int(event["n"]))
            translator(event)
        if result_task.done():
            break
        await asyncio.sleep(POLL)
    report: dict[str, Any] = result_task.result()
    for event in (await _final_events(handle, seen)):
        translator(event)
    return report


async def _final_events(handle: Any, seen: int) -> list[dict[str, Any]]:
    try:
        progress = await handle.query("progress", seen)
    except Exception:  # noqa: BLE001 - a closed workflow still answers queries; if not, the report says it
        return []
    return list(progress.get("events") or [])


def _user() -> str:
    from ..execution.store import user_name

    return user_name()


# ---------------------------------------------------------------- runs, show, approve


def list_runs(engine: Engine, limit: int = 50) -> list[dict[str, Any]]:
    require_temporalio()
    return asyncio.run(_list_runs(engine, limit))


async def _list_runs(engine: Engine, limit: int) -> list[dict[str, Any]]:
    from .workflow import WORKFLOW_NAME

    client = await connect(engine)
    out: list[dict[str, Any]] = []
    async for wf in client.list_workflows(f"WorkflowType = '{WORKFLOW_NAME}'", limit=limit):
        memo = await wf.memo()
        status = wf.search_attributes.get("RunprocStatus")
        out.append({"id": wf.id, "procedure": memo.get("procedure"),
                    "status": (status[0] if isinstance(status, list) and status else status) or
                    wf.status.name.lower() if wf.status else None,
                    "started_at": wf.start_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "dry_run": bool(memo.get("dry_run")), "user": memo.get("user"), "engine": "temporal"})
        if len(out) >= limit:
            break
    return out


def show_run(engine: Engine, run_id: str) -> dict[str, Any]:
    require_temporalio()
    return asyncio.run(_show_run(engine, run_id))


async def _show_run(engine: Engine, run_id: str) -> dict[str, Any]:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    client = await connect(engine)
    handle = client.get_workflow_handle(run_id)
    try:
        desc = await handle.describe()
    except RPCError:
        raise InvalidInputError(f"no run {run_id!r} on {engine} (runproc runs --engine {engine} lists them)") from None
    if desc.status == WorkflowExecutionStatus.COMPLETED:
        report: dict[str, Any] = await handle.result()
        return report
    progress = await handle.query("progress", 0)
    steps: dict[str, dict[str, Any]] = {}
    for event in progress.get("events") or []:
        if event["kind"] == "step_finished":
            steps[event["step"]] = event["entry"]
        elif event["kind"] == "step_started":
            steps.setdefault(event["step"], {"id": event["step"], "status": "running"})
    memo = await desc.memo()
    return {"procedure": memo.get("procedure"), "run_id": run_id, "status": "running",
            "exit_code": None, "dry_run": bool(memo.get("dry_run")), "started_at": memo.get("started_at"),
            "duration": 0.0, "error": None, "root_cause": None, "rolled_back": [], "not_undone": [], "kept": [],
            "steps": list(steps.values()), "waiting": progress.get("waiting") or {}, "engine": "temporal"}


def approve(engine: Engine, run_id: str, step: str, *, approved: bool, comment: str | None) -> str:
    require_temporalio()
    return asyncio.run(_approve(engine, run_id, step, approved, comment))


async def _approve(engine: Engine, run_id: str, step: str, approved: bool, comment: str | None) -> str:
    from temporalio.client import WorkflowUpdateFailedError
    from temporalio.service import RPCError

    client = await connect(engine)
    handle = client.get_workflow_handle(run_id)
    answer = {"step": step, "approved": approved, "by": _user(), "comment": comment,
              "host": os.uname().nodename}
    try:
        said: str = await handle.execute_update("approve", answer)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise RefusedError(f"run {run_id}: {getattr(cause, 'message', None) or _first_line(exc)}") from None
    except RPCError as exc:
        raise InvalidInputError(f"run {run_id}: {_first_line(exc)}") from None
    return said
