"""The controller's side: start a procedure's workflow, follow it with the local console,
list and show runs, answer approvals. ``--engine temporal://HOST:PORT[/NAMESPACE]``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import FailedError, InvalidInputError, RefusedError
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


# how long the SDK retries a call to a server that does not answer (its RetryConfig default)
SDK_RETRY_SECONDS = 10.0


async def connect(engine: Engine, timeout: float = 10.0, *, quiet: bool = False,
                  patience: float | None = None) -> Any:
    """A client, or one line saying why not (unreachable, unknown namespace). ``quiet``: the SDK's
    core does not log (its warnings, e.g. each retried call while the server is down, go to
    stdout: they would break a controller's console and ``--output json``; a worker keeps them).
    ``patience``: a follower's RUNPROC_ENGINE_TIMEOUT. The SDK retries a call for ~10 s before
    it fails, and the follower can only give up once a call has failed: below 10 s, calls
    give up after ``patience`` seconds instead, so that a short timeout is kept."""
    require_temporalio()
    from temporalio.client import Client, RetryConfig
    from temporalio.service import RPCError

    runtime = _quiet_runtime() if quiet else None
    tls, api_key = security()
    retry = None
    if patience and patience < SDK_RETRY_SECONDS:
        retry = RetryConfig(max_elapsed_time_millis=max(1, int(patience * 1000)))
    try:
        client = await asyncio.wait_for(Client.connect(engine.address, namespace=engine.namespace, runtime=runtime,
                                                       tls=tls, api_key=api_key, retry_config=retry), timeout)
    except TimeoutError:
        raise InvalidInputError(f"--engine {engine}: no Temporal server answered within {timeout:g}s") from None
    except (RuntimeError, RPCError, OSError) as exc:
        raise InvalidInputError(f"--engine {engine}: cannot connect: {_connect_error(exc)}") from None
    try:
        from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=engine.namespace))
    except RPCError as exc:
        raise InvalidInputError(f"--engine {engine}: namespace {engine.namespace!r}: {_first_line(exc)}") from None
    return client


# How every runproc command (controller, worker, runs, show, approve) reaches a cluster that
# wants TLS: from the environment, so that a worker's service unit and an operator's shell set
# it once. The key and the API key are read, never shown.
TLS_ENV = {"cert": "RUNPROC_TEMPORAL_TLS_CERT", "key": "RUNPROC_TEMPORAL_TLS_KEY",
           "ca": "RUNPROC_TEMPORAL_TLS_CA", "server_name": "RUNPROC_TEMPORAL_TLS_SERVER_NAME",
           "on": "RUNPROC_TEMPORAL_TLS", "api_key": "RUNPROC_TEMPORAL_API_KEY"}


def security() -> tuple[Any, str | None]:
    """(``tls`` for ``Client.connect``: False, True or a TLSConfig; the API key or None).

    mTLS: ``RUNPROC_TEMPORAL_TLS_CERT`` and ``RUNPROC_TEMPORAL_TLS_KEY`` (PEM files, the client's
    certificate and key), ``RUNPROC_TEMPORAL_TLS_CA`` (the server's CA; default: the system's),
    ``RUNPROC_TEMPORAL_TLS_SERVER_NAME`` (the name the server's certificate carries, when it is
    not the address's host). ``RUNPROC_TEMPORAL_TLS=1``: TLS without a client certificate.
    ``RUNPROC_TEMPORAL_API_KEY``: an API key (Temporal Cloud), over TLS."""
    env = {k: os.environ.get(v, "").strip() for k, v in TLS_ENV.items()}
    api_key = env["api_key"] or None
    if not any(env[k] for k in ("cert", "key", "ca", "server_name")):
        on = env["on"].lower() not in ("", "0", "false", "no")
        return bool(on or api_key), api_key
    if bool(env["cert"]) != bool(env["key"]):
        given, missing = ("cert", "key") if env["cert"] else ("key", "cert")
        raise InvalidInputError(f"{TLS_ENV[given]} is set but {TLS_ENV[missing]} is not: mTLS needs the client's "
                                "certificate and its key")

    def read(which: str) -> bytes | None:
        if not env[which]:
            return None
        try:
            return Path(env[which]).read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"{TLS_ENV[which]}={env[which]}: cannot read it ({exc.strerror})") from None

    from temporalio.service import TLSConfig

    return TLSConfig(server_root_ca_cert=read("ca"), domain=env["server_name"] or None, client_cert=read("cert"),
                     client_private_key=read("key")), api_key


_runtimes: list[Any] = []


def _quiet_runtime() -> Any:
    """One SDK runtime per process, its core's logging off."""
    if not _runtimes:
        from temporalio.runtime import Runtime, TelemetryConfig

        _runtimes.append(Runtime(telemetry=TelemetryConfig(logging=None)))
    return _runtimes[0]


def _connect_error(exc: BaseException) -> str:
    """Why a connection failed, in words: the SDK's core says it as a Rust transport error."""
    text = _first_line(exc)
    lowered = text.lower()
    for marker, said in (("connection refused", "connection refused (is a Temporal server listening there?)"),
                         ("certificate", "the TLS handshake failed on a certificate"),
                         ("handshake", "the TLS handshake failed"),
                         ("tls", "the TLS handshake failed"),
                         ("timed out", "timed out"),
                         ("dns", "the name does not resolve")):
        if marker in lowered:
            return f"{said} [{text[:160]}]"
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]


# ---------------------------------------------------------------- a run


def submit_and_follow(plan: dict[str, Any], engine: Engine, *, on_event: Callable[[Any], None] | None,
                      detach: bool, stop: list[Any], leave: Any = None) -> dict[str, Any]:
    """Start the workflow; follow it to its end (``on_event`` hears the local run's events) and
    return its report, or with ``detach`` return at once ({run_id}). ``stop``: events that, once
    set, interrupt the run; ``leave``: an event that, once set, stops following ({run_id,
    detached}: the run goes on)."""
    require_temporalio()
    return asyncio.run(_submit_and_follow(plan, engine, on_event, detach, stop, leave))


async def _submit_and_follow(plan: dict[str, Any], engine: Engine, on_event: Any, detach: bool,
                             stop: list[Any], leave: Any = None) -> dict[str, Any]:
    from temporalio.common import SearchAttributePair, TypedSearchAttributes

    from .workflow import SA_PROCEDURE, SA_STATUS, WORKFLOW_NAME

    patience = engine_timeout()  # a bad RUNPROC_ENGINE_TIMEOUT is said before the run starts
    client = await connect(engine, quiet=True, patience=patience)
    run_id = plan["run"]["id"]
    attributes = TypedSearchAttributes([SearchAttributePair(SA_PROCEDURE, plan["procedure"]),
                                        SearchAttributePair(SA_STATUS, "running")])
    from temporalio.common import WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    try:
        handle = await client.start_workflow(
            WORKFLOW_NAME, plan, id=run_id, task_queue=plan["default_queue"], search_attributes=attributes,
            # a resume or rollback has the id of what it replays (<id>.resume): never twice
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        memo={"procedure": plan["procedure"], "path": plan["path"], "user": _user(), "dry_run": plan["dry_run"],
              "started_at": plan["run"]["started_at"],
              **({"kind": "resume" if plan.get("resume") else "rollback",
                  "of_run": (plan.get("resume") or plan.get("undo") or {}).get("of_run")}
                 if plan.get("resume") or plan.get("undo") else {})})
    except WorkflowAlreadyStartedError:
        raise RefusedError(f"run {run_id} exists already on {engine}: runproc show {run_id} --engine "
                           f"{engine}") from None
    if detach:
        return {"run_id": run_id, "detached": True}
    return await follow(client, handle, on_event, stop, leave)


async def follow(client: Any, handle: Any, on_event: Any, stop: list[Any] | None = None,
                 leave: Any = None) -> dict[str, Any]:
    """Show the run's progress as it goes (a query, polled), then its report.

    The server may go away for a while (a restart, a network blip): the run goes on there, so
    the follower keeps asking, for up to ``RUNPROC_ENGINE_TIMEOUT`` seconds without an answer,
    then gives up in one line that says how to find the run again."""
    import time

    from temporalio.service import RPCError

    from . import events

    seen = 0
    translator = events.Translator(on_event, f"temporal://{client.service_client.config.target_host}/"
                                             f"{client.namespace}")
    result_task = asyncio.ensure_future(handle.result())
    interrupted = False
    patience = engine_timeout()
    away: float | None = None  # since when no query was answered
    while True:
        if leave is not None and leave.is_set():
            return {"run_id": handle.id, "detached": True}
        if stop is not None and not interrupted and any(getattr(e, "is_set", lambda: False)() for e in stop):
            try:
                await handle.signal("interrupt")
                interrupted = True
            except RPCError:  # the server is away: said again on the next turn
                pass
        if result_task.done() and not isinstance(result_task.exception(), RPCError):
            # over: a query of a closed workflow replays its whole history on a worker (~0.27 s
            # for 100 steps), so the last events are asked for once, below
            break
        asked = time.monotonic()
        try:
            progress = await handle.query("progress", seen)
            away = None
        except Exception:  # noqa: BLE001 - the workflow may be between tasks or done: look again
            progress = {"events": []}
            away = away or asked
        for event in progress.get("events") or []:
            seen = max(seen, int(event["n"]))
            translator(event)
        if result_task.done():
            if not isinstance(result_task.exception(), RPCError):
                break
            # the SDK's own retries (~10 s) gave up on a server that is away: ask again, for a while
            silent = time.monotonic() - (away or time.monotonic())
            if patience and silent > patience:
                engine = f"temporal://{client.service_client.config.target_host}/{client.namespace}"
                raise FailedError(f"lost contact with {engine}: no answer for {silent:.0f}s (RUNPROC_ENGINE_TIMEOUT="
                                  f"{patience:g}): {_first_line(result_task.exception())}; run {handle.id} goes on "
                                  f"there: runproc show {handle.id} --engine {engine}")
            result_task = asyncio.ensure_future(handle.result())
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


def engine_timeout() -> float:
    """``RUNPROC_ENGINE_TIMEOUT``: how long a follower waits for a server that went away (seconds,
    default 60; 0: as long as it takes)."""
    text = os.environ.get("RUNPROC_ENGINE_TIMEOUT", "").strip()
    if not text:
        return 60.0
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise InvalidInputError(f"RUNPROC_ENGINE_TIMEOUT={text!r}: expected seconds (0: wait as long as it takes)")
    return seconds


def _user() -> str:
    from ..execution.store import user_name

    return user_name()


# ---------------------------------------------------------------- runs, show, approve


# runs listed are sorted here (newest first): SQL visibility lists open runs first
LIST_CAP = 5000


@dataclass(frozen=True)
class RunQuery:
    """``runproc runs --engine`` filters: procedure and status go to Temporal (search
    attributes), ``since`` too (StartTime); ``user`` is read from each run's memo."""

    limit: int = 50
    offset: int = 0
    procedure: str | None = None
    status: str | None = None
    since: str | None = None  # ISO time, UTC
    user: str | None = None


def list_runs(engine: Engine, query: RunQuery | None = None) -> list[dict[str, Any]]:
    require_temporalio()
    return asyncio.run(_list_runs(engine, query or RunQuery()))


def _quoted(value: str) -> str:
    """A value in a visibility query: refused when it could end the string (values never
    become code)."""
    if "'" in value or "\\" in value:
        raise InvalidInputError(f"{value!r}: a quote or backslash cannot appear in a filter")
    return f"'{value}'"


async def _list_runs(engine: Engine, query: RunQuery) -> list[dict[str, Any]]:
    from .workflow import WORKFLOW_NAME

    client = await connect(engine, quiet=True)
    text = f"WorkflowType = {_quoted(WORKFLOW_NAME)}"
    if query.procedure:
        text += f" AND RunprocProcedure = {_quoted(query.procedure)}"
    if query.status:
        text += f" AND RunprocStatus = {_quoted(query.status)}"
    if query.since:
        text += f" AND StartTime >= {_quoted(query.since)}"
    out: list[dict[str, Any]] = []
    async for wf in client.list_workflows(text, limit=LIST_CAP):
        memo = await wf.memo()
        if query.user and memo.get("user") != query.user:
            continue
        status = wf.search_attributes.get("RunprocStatus")
        duration = (wf.close_time - wf.start_time).total_seconds() if wf.close_time else None
        out.append({"id": wf.id, "procedure": memo.get("procedure"),
                    "status": (status[0] if isinstance(status, list) and status else status) or
                    wf.status.name.lower() if wf.status else None,
                    "started_at": wf.start_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    "duration": round(duration, 3) if duration is not None else None, "exit_code": None,
                    "dry_run": bool(memo.get("dry_run")), "user": memo.get("user"), "host": None,
                    "kind": memo.get("kind") or "run", "of_run": memo.get("of_run"), "engine": "temporal"})
    out.sort(key=lambda r: str(r["started_at"]), reverse=True)
    return out[query.offset:query.offset + query.limit]


async def _resolve(client: Any, engine: Engine, run_id: str) -> str:
    """A run id, or its first characters (as a local run's): one run, or one line saying why not."""
    from temporalio.service import RPCError

    from .workflow import WORKFLOW_NAME

    try:
        await client.get_workflow_handle(run_id).describe()
        return run_id
    except RPCError:
        pass
    found = [wf.id async for wf in client.list_workflows(f"WorkflowType = {_quoted(WORKFLOW_NAME)}",
                                                         limit=LIST_CAP) if wf.id.startswith(run_id)]
    if not found:
        raise InvalidInputError(f"no run {run_id!r} on {engine} (runproc runs --engine {engine} lists them)")
    shortest = min(found, key=len)
    # a run and its replays (RUN.resume, RUN.rollback) share its id as a prefix: the run itself
    if all(f.startswith(shortest) for f in found):
        return shortest
    raise InvalidInputError(f"run {run_id!r} is ambiguous on {engine}: {', '.join(sorted(found)[:5])}"
                            + (" ..." if len(found) > 5 else ""))


def show_run(engine: Engine, run_id: str) -> dict[str, Any]:
    require_temporalio()
    return asyncio.run(_show_run(engine, run_id))


async def _show_run(engine: Engine, run_id: str) -> dict[str, Any]:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    client = await connect(engine, quiet=True)
    run_id = await _resolve(client, engine, run_id)
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
    from datetime import UTC, datetime

    so_far = (datetime.now(UTC) - desc.start_time).total_seconds() if desc.start_time else 0.0
    return {"procedure": memo.get("procedure"), "run_id": run_id, "status": "running",
            "exit_code": None, "dry_run": bool(memo.get("dry_run")), "started_at": memo.get("started_at"),
            "duration": round(so_far, 3), "engine_url": str(engine), "user": memo.get("user"),
            "kind": memo.get("kind") or "run", "of_run": memo.get("of_run"), "error": None, "root_cause": None, "rolled_back": [], "not_undone": [], "kept": [],
            "steps": list(steps.values()), "waiting": progress.get("waiting") or {},
            "waiting_for_window": progress.get("window"), "engine": "temporal"}


@dataclass
class Recorded:
    """An ended run of the engine: its input, its report, and the runs made from it since
    (``<id>.resume``, ``<id>.rollback``, ``<id>.rollback-2``...: id -> report, None while running)."""

    plan: dict[str, Any]
    report: dict[str, Any]
    replays: dict[str, dict[str, Any] | None]
    run_id: str = ""  # the whole id (a prefix was given)


def recorded_run(engine: Engine, run_id: str) -> Recorded:
    """An ended run and what was made of it; RefusedError while it runs."""
    require_temporalio()
    return asyncio.run(_recorded_run(engine, run_id))


async def _recorded_run(engine: Engine, run_id: str) -> Recorded:
    client = await connect(engine, quiet=True)
    run_id = await _resolve(client, engine, run_id)
    plan, report = await _ended(client, engine, run_id)
    replays: dict[str, dict[str, Any] | None] = {}
    for candidate in _replay_ids(run_id):
        try:
            _, replayed = await _ended(client, engine, candidate)
        except InvalidInputError:  # no such run
            if candidate.endswith(".resume"):
                continue
            break
        except RefusedError:  # still running
            replayed = None
        replays[candidate] = replayed
    return Recorded(plan, report, replays, run_id)


def _replay_ids(run_id: str) -> Any:
    yield f"{run_id}.resume"
    yield f"{run_id}.rollback"
    n = 2
    while True:
        yield f"{run_id}.rollback-{n}"
        n += 1


async def _ended(client: Any, engine: Engine, run_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    from temporalio.client import WorkflowExecutionStatus
    from temporalio.service import RPCError

    handle = client.get_workflow_handle(run_id)
    try:
        desc = await handle.describe()
    except RPCError:
        raise InvalidInputError(f"no run {run_id!r} on {engine} (runproc runs --engine {engine} lists them)") from None
    if desc.status == WorkflowExecutionStatus.RUNNING:
        raise RefusedError(f"run {run_id} is still running: runproc show {run_id} --engine {engine}")
    if desc.status != WorkflowExecutionStatus.COMPLETED:
        status = desc.status.name.lower() if desc.status else "unknown"
        raise RefusedError(f"run {run_id} ended {status} on Temporal, without a report: nothing to act on")
    report: dict[str, Any] = await handle.result()
    history = await handle.fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    plan: dict[str, Any] = (await client.data_converter.decode(started.input.payloads))[0]
    return plan, report


def approve(engine: Engine, run_id: str, step: str, *, approved: bool, comment: str | None) -> str:
    require_temporalio()
    return asyncio.run(_approve(engine, run_id, step, approved, comment))


async def _approve(engine: Engine, run_id: str, step: str, approved: bool, comment: str | None) -> str:
    from temporalio.client import WorkflowExecutionStatus, WorkflowUpdateFailedError
    from temporalio.service import RPCError

    client = await connect(engine, quiet=True)
    run_id = await _resolve(client, engine, run_id)
    handle = client.get_workflow_handle(run_id)
    answer = {"step": step, "approved": approved, "by": _user(), "comment": comment,
              "host": os.uname().nodename}
    try:
        desc = await handle.describe()
        if desc.status != WorkflowExecutionStatus.RUNNING:
            status = desc.status.name.lower() if desc.status else "ended"
            raise RefusedError(f"run {run_id} has ended ({status}): nothing waits for an approval "
                               f"(runproc show {run_id} --engine {engine})")
        said: str = await handle.execute_update("approve", answer)
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        raise RefusedError(f"run {run_id}: {getattr(cause, 'message', None) or _first_line(exc)}") from None
    except RPCError as exc:
        raise InvalidInputError(f"run {run_id}: {_first_line(exc)}") from None
    return said
