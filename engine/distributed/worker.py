"""``runproc worker``: executes steps (and, by default, the interpreter workflow) from a task queue.

Run one inside each network zone, with that zone's credentials in its environment: the
steps routed to its queue run here, with the local run's own executor code, and their
secrets are read here.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor

from .client import Engine, connect


def serve(engine: Engine, queue: str, *, concurrency: int = 20, name: str | None = None,
          workflows: bool = True) -> int:
    """Poll ``queue`` until SIGINT/SIGTERM; 0 after a clean stop."""
    return asyncio.run(_serve(engine, queue, concurrency, name or f"{socket.gethostname()}:{os.getpid()}",
                              workflows))


async def _serve(engine: Engine, queue: str, concurrency: int, name: str, workflows: bool) -> int:
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

    from .activities import make_step_activity
    from .workflow import ProcedureWorkflow

    client = await connect(engine)
    loop = asyncio.get_running_loop()

    def server_answers() -> bool:
        """From a step's thread: does the server answer a call now (within ~10 s of retries)?"""
        from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

        call = client.workflow_service.get_system_info(GetSystemInfoRequest())
        try:
            asyncio.run_coroutine_threadsafe(call, loop).result(timeout=15)
        except Exception:  # noqa: BLE001 - away (or anything else): not answering now
            return False
        return True

    # runproc's own modules are passed through the sandbox: imported once, not per workflow run
    runner = SandboxedWorkflowRunner(restrictions=SandboxRestrictions.default.with_passthrough_modules("engine"))
    executor = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="runproc-step")
    worker = Worker(client, task_queue=queue, workflows=[ProcedureWorkflow] if workflows else [],
                    activities=[make_step_activity(name, server_answers)], activity_executor=executor,
                    max_concurrent_activities=concurrency, workflow_runner=runner, identity=name)
    stopping = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    print(f"runproc worker {name}: serving queue {queue!r} on {engine}"
          f"{' (steps and workflows)' if workflows else ' (steps)'}", file=sys.stderr, flush=True)
    async with worker:
        await stopping.wait()
        print(f"runproc worker {name}: stopping (steps running finish first)", file=sys.stderr, flush=True)
    executor.shutdown(wait=False)
    return 0
