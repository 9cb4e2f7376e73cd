"""The commands of the Temporal engine: worker (execute steps from a task queue) and approve
(answer a confirm step a run waits on). docs/distributed.md."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .common import Parser

ENGINE_HELP = "the Temporal engine: temporal://HOST:PORT[/NAMESPACE]; default $RUNPROC_ENGINE"


def _worker(argv: list[str]) -> int:
    p = Parser(prog="runproc worker", description="Execute the steps routed to a task queue (and, by default, "
                                                  "the workflows that interpret procedures) on this machine.")
    p.add_argument("--temporal", required=True, metavar="HOST:PORT", help="the Temporal server's frontend")
    p.add_argument("--namespace", default="default", help="the Temporal namespace (default: default)")
    p.add_argument("--queue", default=os.environ.get("RUNPROC_QUEUE") or "runproc",
                   help="the task queue to serve (default $RUNPROC_QUEUE or runproc)")
    p.add_argument("--concurrency", type=int, default=20, help="steps at a time (default 20)")
    p.add_argument("--name", help="this worker's name in step results (default HOST:PID)")
    p.add_argument("--no-workflows", action="store_true", help="run steps only, not the interpreter workflow")
    ns = p.parse_args(argv)
    from ..distributed import require_temporalio
    from ..distributed.client import parse_engine
    from ..errors import UsageError

    if ns.concurrency < 1:
        raise UsageError("runproc worker: --concurrency must be at least 1")
    require_temporalio()
    from ..distributed.worker import serve

    address = ns.temporal.removeprefix("temporal://").rstrip("/")
    host, _, port = address.rpartition(":")
    if "/" in address or not host or not port.isdigit():
        raise UsageError(f"runproc worker: --temporal {ns.temporal!r}: expected HOST:PORT, e.g. 127.0.0.1:7233 "
                         "(the namespace is --namespace)")
    engine = parse_engine(f"temporal://{address}/{ns.namespace}")
    return serve(engine, ns.queue, concurrency=ns.concurrency, name=ns.name, workflows=not ns.no_workflows)


def _approve(argv: list[str]) -> int:
    from .common import STATE_HELP

    p = Parser(prog="runproc approve", description="Answer a confirm step that a run waits on, recorded with who "
                                                   "answered: a run against a state (the default), or on the "
                                                   "Temporal engine with --engine.")
    p.add_argument("run", help="the run id (or its first characters, against a state)")
    p.add_argument("step", help="the confirm step's id")
    p.add_argument("--reject", action="store_true", help="refuse instead (the run then rolls back)")
    p.add_argument("--comment", help="why, recorded with the answer")
    p.add_argument("--state", help=STATE_HELP + " (a run on this machine or a shared PostgreSQL state)")
    p.add_argument("--engine", default=os.environ.get("RUNPROC_ENGINE"), help=ENGINE_HELP)
    ns = p.parse_args(argv)
    if ns.state or not ns.engine:
        return _approve_in_state(ns)
    from ..distributed.client import approve, parse_engine

    print(approve(parse_engine(ns.engine), ns.run, ns.step, approved=not ns.reject, comment=ns.comment))
    return 0


def _approve_in_state(ns: Any) -> int:
    """The answer written into the state, where the waiting run polls for it (a local run's
    confirm step; engine/execution/approvals.py checks the step's approvers and four_eyes)."""
    from ..execution.approvals import give
    from ..execution.store import user_name
    from ..state.opening import open_store

    store = open_store(ns.state)
    try:
        given = give(store, ns.run, ns.step, approved=not ns.reject, by=user_name(), role=None,
                     how="runproc approve", comment=ns.comment)
    finally:
        store.close()
    verdict = "approved" if given["approved"] else "rejected"
    print(f"{verdict} {given['step']} of run {given['run_id']} as {given['by']}; the run goes on when it next looks "
          "(within a second)")
    return 0


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"worker": _worker, "approve": _approve}
