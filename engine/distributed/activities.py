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
import threading
from typing import Any

from ..errors import RunprocError


class StepProblem(Exception):
    """A step the worker cannot run at all (an executor it lacks, a template that cannot render):
    the step's failure, not retried."""


def make_step_activity(worker_name: str) -> Any:
    from temporalio import activity

    @activity.defn(name="runproc.step")
    def run(payload: dict[str, Any]) -> dict[str, Any]:
        stop = threading.Event()
        beat = _heartbeat(stop)
        try:
            out = _run(payload)
        finally:
            stop.set()
            beat.join(timeout=5)
        out["worker"] = worker_name
        if isinstance(out.get("entry"), dict):
            out["entry"]["worker"] = worker_name
        return out

    return run


def _heartbeat(stop: threading.Event) -> threading.Thread:
    """Tell Temporal the worker is alive while the step runs: a worker killed mid-step is
    noticed within the heartbeat timeout, not at the step's own timeout."""
    from temporalio import activity

    context = contextvars.copy_context()

    def beat() -> None:
        while not stop.wait(2.0):
            with contextlib.suppress(Exception):  # one that cannot be sent is retried next time
                activity.heartbeat()

    thread = threading.Thread(target=context.run, args=(beat,), name="runproc-heartbeat", daemon=True)
    thread.start()
    return thread


def _run(payload: dict[str, Any]) -> dict[str, Any]:
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
        when = raw.pop("when", None)
        if when is not None and not payload.get("rollback") and not ex.evaluate(str(when), ns):
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
        for key in ("queue", "idempotent", "continue_on_error"):
            raw.pop(key, None)  # the workflow's business, not the step's
        inputs = StepInputs(step=raw, values=values, connections=plan.get("connections") or {},
                            params=plan.get("param_decls") or {}, secrets=plan.get("secrets") or {},
                            workdir=plan.get("workdir") or ".", dry_run=bool(plan.get("dry_run")), yes=True)
        sr = run_step(inputs)
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
    """The procedure's secrets, read here from this worker's environment (never sent)."""
    out: dict[str, Any] = {}
    for name, var in (plan.get("secrets") or {}).items():
        out[name] = os.environ.get(var, "")
    return out


def _redacted(value: Any, redact: Any) -> Any:
    import json

    return json.loads(redact(json.dumps(value, default=str)))
