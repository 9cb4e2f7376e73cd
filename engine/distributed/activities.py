"""The worker's side of a step: render and run it with the local run's own code.

The activity receives the step as written, the procedure's declarations (params, secrets by
name, connections, vars) and the results of the steps its templates read. It reads the
secrets here, from the worker's own environment, renders ``vars`` and ``when``, runs the
step (or its rollback) with ``engine.execution.portable`` and returns the redacted report
entry and the ``steps.<id>`` view: what comes back enters the workflow's history, so no
secret does.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..errors import RunprocError


def make_step_activity(worker_name: str, server_answers: Callable[[], bool] | None = None) -> Any:
    """The step activity. ``server_answers``: whether the Temporal server answers a call now
    (asked from the activity's thread); a step that ends while the server is away waits for
    it before it returns (see _await_server)."""
    from temporalio import activity

    guard_steps()

    # no exception raised into the step's thread on a cancel (it could land anywhere, leaving the
    # step's processes running): the heartbeat thread sees the cancel and the step kills them
    @activity.defn(name="runproc.step", no_thread_cancel_exception=True)
    def run(payload: dict[str, Any]) -> dict[str, Any]:
        _has_executor(payload, worker_name)
        stop = threading.Event()
        cancel = threading.Event()
        beat = _heartbeat(stop, cancel)
        started = time.monotonic()
        try:
            out = _run(payload, cancel)
            if server_answers is not None and time.monotonic() - started >= CHECK_AFTER:
                _await_server(server_answers)
        finally:
            stop.set()
            beat.join(timeout=5)
        out["worker"] = worker_name
        if isinstance(out.get("entry"), dict):
            out["entry"]["worker"] = worker_name
        return out

    return run


# The server answered when the step started (it handed the step over): a step shorter than
# this ends within that long of the server's last answer, and is not checked. The call costs
# 3-5 ms (bench/temporal.py: T1 20 -> 24 ms a step when every step made it).
CHECK_AFTER = 1.0


def _await_server(server_answers: Callable[[], bool]) -> None:
    """Return once the server answers, or when waiting longer is pointless. The SDK reports a
    step's result for only ~10 s of a server away, then drops it (the step would wait for its
    heartbeat timeout and be in doubt): returning when the server has just answered keeps the
    result. Heartbeats go on meanwhile; past the heartbeat timeout the step is in doubt on the
    server anyway, and a worker shutting down does not wait."""
    from temporalio import activity

    timeout = activity.info().heartbeat_timeout
    end = time.monotonic() + (timeout.total_seconds() if timeout else 60.0)
    while not server_answers():
        if time.monotonic() >= end or activity.is_worker_shutdown():
            return
        time.sleep(0.5)


def _has_executor(payload: dict[str, Any], worker_name: str) -> None:
    """A step whose executor (a plugin) the controller has and this worker lacks: one line
    that says which worker and which queue, not the validator's view of an unknown key."""
    from ..executors import is_executor

    kind = payload.get("executor")
    if not kind or payload.get("when_only") or payload.get("rollback") or is_executor(str(kind)):
        return
    from temporalio import activity
    from temporalio.exceptions import ApplicationError

    queue = activity.info().task_queue
    raise ApplicationError(f"worker {worker_name} has no executor {kind!r}: install the plugin that provides it "
                           f"on the workers of queue {queue!r}", type="StepProblem", non_retryable=True)


def _heartbeat(stop: threading.Event, cancel: threading.Event) -> threading.Thread:
    """Tell Temporal the worker is alive while the step runs: a worker killed mid-step is
    noticed within the heartbeat timeout, not at the step's own timeout. A heartbeat's answer
    also carries an interrupt of the run (the workflow cancels the step): ``cancel`` is then
    set, and the step kills its processes as a local run's Ctrl-C does."""
    from temporalio import activity

    context = contextvars.copy_context()
    # a beat well within the timeout (RUNPROC_HEARTBEAT_TIMEOUT may make it short): two may be lost
    timeout = activity.info().heartbeat_timeout
    every = min(2.0, timeout.total_seconds() / 3) if timeout else 2.0
    # a cancel is seen sooner than a beat: look often, beat at the pace above
    look = min(every, 0.25)

    def beat() -> None:
        waited = 0.0
        while not stop.wait(look):
            if activity.is_cancelled():
                cancel.set()
            waited += look
            if waited >= every:
                waited = 0.0
                with contextlib.suppress(Exception):  # one that cannot be sent is retried next time
                    activity.heartbeat()

    thread = threading.Thread(target=context.run, args=(beat,), name="runproc-heartbeat", daemon=True)
    thread.start()
    return thread


# The guard: a tiny process of the worker's own that waits for the worker to die. A worker killed
# mid-step (kill -9, OOM) cannot kill its step's commands (they run in sessions of their own), and
# Temporal has by then declared the attempt lost: a command left running would complete its
# effect after the run failed and rolled back, or alongside the retry of an idempotent step on
# another worker. When the worker's end of the pipe closes (it is gone, however), the guard kills
# every process still carrying one of this worker's step tokens (engine/transports/local.py gives
# each step's processes RUNPROC_STEP_TOKEN=<worker pid>.<n>). Standalone code run by ``python -I``:
# nothing to import, and nothing of the worker's state shared with it.
_GUARD = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
prefix = sys.argv[1].encode()
try:
    while os.read(0, 4096):
        pass
except OSError:
    pass
def carriers():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/" + entry + "/environ", "rb") as f:
                    if any(v.startswith(prefix) for v in f.read().split(b"\\0")):
                        found.append(int(entry))
            except OSError:
                pass
    return found
end = time.monotonic() + 10
while time.monotonic() < end:
    pids = carriers()
    if not pids:
        break
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    time.sleep(0.05)
"""
_guard: list[Any] = []  # the guard's Popen: held for the worker's life (its pipe closing fires the guard)


def guard_steps() -> None:
    """Start the guard, once per worker process (Linux: it reads /proc)."""
    if _guard or not sys.platform.startswith("linux"):
        return
    from ..transports.local import TOKEN_VAR

    # a session of its own: a Ctrl-C or a signal to the worker's process group leaves it be,
    # and the pipe's write end is not inherited by the steps' commands (close_fds, O_CLOEXEC)
    _guard.append(subprocess.Popen([sys.executable, "-I", "-c", _GUARD, f"{TOKEN_VAR}={os.getpid()}."],
                                   stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True, close_fds=True))


def _run(payload: dict[str, Any], cancel: threading.Event | None = None) -> dict[str, Any]:
    from ..execution.portable import StepInputs, run_step
    from ..format import expressions as ex
    from ..format.redaction import Redactor

    plan = payload["plan"]
    raw = dict(payload["step"])
    sid = str(raw["id"])
    values = {"params": dict(plan.get("params") or {}), "vars": {}, "steps": dict(payload.get("steps") or {}),
              "run": dict(plan.get("run") or {})}
    secrets = _secrets(plan)
    redact = Redactor()
    for value in secrets.values():
        if value:
            redact.add(str(value))
    ns = {**values, "secrets": secrets, "env": dict(os.environ)}
    try:
        for name, value in (plan.get("vars") or {}).items():
            ns["vars"][name] = ex.render_value(value, ns)
        values["vars"] = dict(ns["vars"])
        dry = bool(plan.get("dry_run"))
        # a dry run: a planned upstream step's results are unknown, as in a local plan
        unknown = [sid_ for sid_, view in values["steps"].items()
                   if dry and isinstance(view, dict) and view.get("status") == "planned"]
        for sid_ in unknown:
            ns["steps"][sid_] = ex.Unknown(f"steps.{sid_}")
        when = raw.pop("when", None)
        undecided = None
        if when is not None and not payload.get("rollback"):
            try:
                go = bool(ex.evaluate(str(when), ns))
            except ex.UnknownValueError as exc:
                go, undecided = True, exc.unknown.label
        else:
            go = True
        if not go:
            entry = {"id": sid, "status": "skipped", "phase": payload.get("phase") or "step",
                     "started_at": None, "duration": 0.0, "attempts": 0, "error": None,
                     "notes": [f"when false: {str(when).strip()}"]}
            return {"status": "skipped", "entry": entry, "view": {"status": "skipped", "ok": False}}
        if payload.get("when_only"):
            return {"status": "go"}
        if payload.get("rollback"):
            undo = raw.get("rollback")
            if not isinstance(undo, dict):
                return {"ok": True, "error": None}
            raw = {"id": sid, **undo}
        raw.pop("needs", None)
        raw.pop("rollback", None)
        for key in ("queue", "idempotent", "continue_on_error", "on", "serial", "max_fail"):
            raw.pop(key, None)  # the workflow's business, not the step's
        host = payload.get("host")
        if isinstance(host, dict):
            host = {k: v for k, v in host.items() if k != "queue"}
        inputs = StepInputs(step=raw, values=values, connections=plan.get("connections") or {},
                            params=plan.get("param_decls") or {}, secrets=_where_secrets_are(plan),
                            workdir=plan.get("workdir") or ".", dry_run=dry, yes=True, unknown=unknown,
                            host=host, accept_new_hosts=bool(plan.get("accept_new_hosts")),
                            known_hosts=plan.get("known_hosts"))
        sr = run_step(inputs, stop=cancel)
        if undecided is not None:
            sr.notes.insert(0, f"when undecided in a dry run ({undecided} is unknown): the step may run or be "
                               "skipped")
    except (RunprocError, ex.ExpressionError) as exc:
        text = redact(str(exc))
        if payload.get("rollback"):
            return {"ok": False, "error": text}
        from temporalio.exceptions import ApplicationError

        raise ApplicationError(f"step {sid}: {text}", type="StepProblem", non_retryable=True) from None
    sr.phase = payload.get("phase") or "step"
    entry = _redacted(sr.to_json(), redact)
    if payload.get("rollback"):
        return {"ok": sr.status == "ok", "error": entry.get("error"), "action": entry.get("action")}
    # changed: its action completed although it failed (its verify did): a rollback undoes it
    return {"status": sr.status, "entry": entry, "view": _redacted(sr.as_fields(), redact), "changed": sr.changed}


def _secrets(plan: dict[str, Any]) -> dict[str, Any]:
    """The procedure's secrets, read here from this worker's environment, files or stores
    (never sent): for rendering ``vars`` and ``when`` and for redaction; the step itself reads
    them again through the local run's code (engine/format/params.py), which says what is
    missing. A store's secret is read once per run on this worker (engine/executors/secretstores.py)."""
    from pathlib import Path

    out: dict[str, Any] = {}
    for name, how in (plan.get("secrets") or {}).items():
        if isinstance(how, str):  # a run submitted by an older controller: an environment variable
            how = {"env": how}
        if how.get("env") is None and how.get("file") is None:
            out[name] = _store_secret(how, str((plan.get("run") or {}).get("id") or "") or None)
            continue
        if how.get("env") is not None:
            out[name] = os.environ.get(str(how["env"]), "")
            continue
        path = Path(str(how.get("file") or ""))
        path = path if path.is_absolute() else Path(str(plan.get("workdir") or ".")) / path
        try:
            out[name] = path.read_text().rstrip("\n")
        except (OSError, ValueError):
            out[name] = ""
    return out


def _store_secret(how: dict[str, Any], run_id: str | None) -> str:
    """A secret kept in a store; "" when it cannot be read here (the step says why)."""
    from pydantic import ValidationError

    from ..executors import secretstores
    from ..format.model import Secret
    from ..format.params import SecretUnavailable

    try:
        return secretstores.read_one(Secret.model_validate(how), run_id)
    except (SecretUnavailable, ValidationError):
        return ""


def _where_secrets_are(plan: dict[str, Any]) -> dict[str, Any]:
    """The secrets' declarations for the step, a relative file made absolute against the
    procedure's folder (the worker's own working directory may be anywhere)."""
    from pathlib import Path

    out: dict[str, Any] = {}
    for name, how in (plan.get("secrets") or {}).items():
        if isinstance(how, dict) and how.get("file") and not Path(str(how["file"])).is_absolute():
            how = {**how, "file": str(Path(str(plan.get("workdir") or ".")) / str(how["file"]))}
        out[name] = how
    return out


def _redacted(value: Any, redact: Any) -> Any:
    import json

    return json.loads(redact(json.dumps(value, default=str)))
