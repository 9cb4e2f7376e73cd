"""Acting on a recorded run from ``runproc serve``: resume, retry from a step, roll back, cancel
(issue 15, must-have 5; docs/web.md "Actions").

Each action is first shown as a preview (what would happen, read from the state with the same
checks the command line makes, changing nothing), then done once it is confirmed:

- **resume**, **retry** (resume ``--from STEP``) and **rollback** start ``runproc resume`` or
  ``runproc rollback`` as a process of their own, as a start from the page does (starts.py): the
  secret params given again go on its stdin, never its command line; it is recorded as started
  by the token's holder; it goes on if the server stops. A run of a confirm step waits for an
  answer from the page (``RUNPROC_APPROVAL_WAIT``): resume never gets ``--yes``, which would
  approve every confirm step and so pass over ``four_eyes``.
- **cancel** sends SIGINT to the run's process, as Ctrl-C in its terminal would: the run stops
  scheduling, stops its running steps and rolls back what it did, as it does on Ctrl-C. Only a
  run of this machine can be signalled (its pid and that pid's start time, as recorded, still
  match); a run elsewhere is refused with where it runs. A PostgreSQL state shared by several
  machines needs its run stopped on its own machine (docs/web.md says why).

The audit of every action, done or refused, is the app's (app.py, ``SqlStore.audit``).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, RefusedError
from . import starts

ACTIONS = ("resume", "retry", "rollback", "cancel")
# what each action asks of the token's role (tokens.ROLES): a retry is a resume
ROLE_ACTION = {"resume": "resume", "retry": "resume", "rollback": "rollback", "cancel": "cancel"}
TITLES = {"resume": "Resume", "retry": "Retry from a step", "rollback": "Roll back", "cancel": "Cancel"}
INFLIGHT = ("again", "skip")


class ActionRefused(RefusedError):
    """The action cannot be done on this run now (a 409): the message says why."""


@dataclass
class Preview:
    """What an action would do to a run; ``why`` is set when it cannot be done."""

    action: str
    run_id: str
    procedure: str | None
    status: str | None
    why: str | None = None
    step: str | None = None  # retry: the step it starts from
    steps: list[str] = field(default_factory=list)  # retry: the steps it may start from
    again: list[str] = field(default_factory=list)  # resume/retry: run (again); rollback: undone
    kept: list[str] = field(default_factory=list)  # resume/retry: not run again; rollback: no undo
    in_flight: list[str] = field(default_factory=list)  # to decide: run/undo again, or leave
    secrets: list[str] = field(default_factory=list)  # secret params to give again
    process: dict[str, Any] | None = None  # cancel: where the run's process is

    @property
    def ok(self) -> bool:
        return self.why is None

    def to_json(self) -> dict[str, Any]:
        return {"action": self.action, "run_id": self.run_id, "procedure": self.procedure, "status": self.status,
                "possible": self.ok, "why": self.why, "step": self.step, "steps": self.steps,
                "again": self.again, "kept": self.kept, "in_flight": self.in_flight,
                "secret_params": self.secrets,
                "process": ({k: self.process.get(k) for k in ("host", "pid", "alive")} if self.process else None)}


def preview(store: Any, run_id: str, action: str, step: str | None = None) -> Preview:
    """What ``action`` would do to the run (its full id): read only, nothing is started."""
    meta = store.run_meta(run_id) or {}
    out = Preview(action, run_id, None, meta.get("status"))
    report = store.show(run_id) or {}
    out.procedure = report.get("procedure")
    out.status = report.get("status") or out.status
    if report.get("dry_run"):
        out.why = f"run {run_id} was a dry run: it changed nothing, there is nothing to {action}"
        return out
    if action == "cancel":
        return _cancel_preview(store, out)
    from ..state import replay

    verb = "rollback" if action == "rollback" else "resume"
    try:
        rec = replay.load(store, run_id, verb, {}, {}, check_secrets=False)
    except (InvalidInputError, RefusedError) as exc:
        out.why = " ".join(str(exc).split())
        return out
    out.secrets = sorted(n for n, hashed in (rec.inputs.get("secret_params") or {}).items() if hashed is not None)
    out.steps = [s.id for s in rec.proc.steps]
    try:
        if action == "rollback":
            undo = replay.undo_plan(rec)
            out.again, out.kept, out.in_flight = list(undo.undo), list(undo.kept), [str(i) for i in undo.in_flight]
            if not undo.undo and not undo.in_flight:
                out.why = f"run {run_id}: nothing to undo" + (
                    f" (kept, no rollback defined: {', '.join(undo.kept)})" if undo.kept else "")
        else:
            if action == "retry":
                # none chosen yet: the step the run failed at (its root cause), else its first step
                # not ok, else its first: the page shows that preview and a list to choose another
                statuses = {str(e.get("id")): e.get("status") for e in rec.report.get("steps") or []}
                cause = rec.report.get("root_cause")
                step = step or (cause if cause in out.steps else None) or next(
                    (sid for sid in out.steps if statuses.get(sid) != "ok"), out.steps[0] if out.steps else None)
                out.step = step
            plan = replay.resume_plan(rec, step if action == "retry" else None)
            out.kept = list(plan.done)
            out.again = [s for s in out.steps if s not in plan.done]
            out.in_flight = [str(i) for i in plan.in_flight if not i.automatic]
    except (InvalidInputError, RefusedError) as exc:
        out.why = " ".join(str(exc).split())
    return out


def _cancel_preview(store: Any, out: Preview) -> Preview:
    process = store.process_of(out.run_id)
    out.process = process
    if process is None or process["status"] != "running":
        out.why = f"run {out.run_id} is not running ({out.status}): there is nothing to cancel"
    elif not process["here"]:
        out.why = (f"run {out.run_id} runs on {process['host']} (pid {process['pid']}), not on this server's "
                   f"machine: stop it there (Ctrl-C in its terminal, or kill -INT {process['pid']})")
    elif not process["alive"]:
        out.why = (f"run {out.run_id}'s process (pid {process['pid']}) is gone: the run will show as interrupted "
                   "(runproc resume or rollback it then)")
    return out


# ---------------------------------------------------------------- doing it


@dataclass
class Done:
    """What an action did: its result in words, the run it started (if any) and its process."""

    result: str
    detail: str
    new_run: str | None = None
    pid: int | None = None


def cancel(store: Any, run_id: str) -> Done:
    """SIGINT to the run's process, checked again just before (its pid must still be that run's)."""
    out = _cancel_preview(store, Preview("cancel", run_id, None, "running"))
    if out.why is not None:
        raise ActionRefused(out.why)
    pid = int(out.process["pid"]) if out.process else 0
    try:
        os.kill(pid, signal.SIGINT)
    except ProcessLookupError:
        raise ActionRefused(f"run {run_id}'s process (pid {pid}) ended meanwhile") from None
    except PermissionError:
        raise ActionRefused(f"this server's user may not signal pid {pid} (run {run_id} runs as another "
                            "user): stop it from its terminal") from None
    return Done("signalled", f"SIGINT sent to pid {pid}: the run stops and rolls back as on Ctrl-C", pid=pid)


def replay_argv(action: str, run_id: str, *, step: str | None, inflight: str | None) -> list[str]:
    """``runproc resume|rollback`` arguments for ``action`` (before --state)."""
    if action == "rollback":
        # --yes: the confirmation was this server's page; an in-flight step is undone too
        # unless the operator chose to leave it (--skip-inflight wins over --yes)
        return ["rollback", run_id, "--yes", *(["--skip-inflight"] if inflight == "skip" else [])]
    argv = ["resume", run_id, *(["--from", step] if action == "retry" and step else [])]
    if inflight == "again":
        argv.append("--rerun-inflight")
    elif inflight == "skip":
        argv.append("--skip-inflight")
    return argv


def launch(store: Any, argv_tail: list[str], *, state_url: str, user: str, params: dict[str, Any],
           cwd: str) -> Done:
    """Start ``runproc ARGV --state URL --params-file /dev/stdin`` in a session of its own, as
    ``user``; the run it records (a resume or a rollback) once it is recorded. A process that
    ends first without one: ActionRefused with its last line (nothing was done, or nothing was
    left to do)."""
    child = starts.spawn(argv_tail, state_url=state_url, user=user, params=params, cwd=cwd, name="action")
    proc, done, last, since = child.proc, child.done, child.last, child.since
    deadline = time.monotonic() + starts.FIND_SECONDS
    while True:
        run_id = store.run_of_process(proc.pid, since)
        if run_id is not None:
            return Done("started", f"{' '.join(argv_tail[:1])} started as run {run_id} (pid {proc.pid})",
                        run_id, proc.pid)
        if done.is_set():
            said = (last[-1] if last else f"exit {proc.returncode}").removeprefix("runproc ")
            if proc.returncode == 0:  # e.g. a rollback with nothing left to undo: said, nothing recorded
                return Done("nothing to do", said, None, proc.pid)
            raise ActionRefused(said)
        if time.monotonic() >= deadline:
            return Done("started", f"pid {proc.pid}: not recorded yet after {starts.FIND_SECONDS:g}s", None,
                        proc.pid)
        done.wait(0.05)


def run_folder(store: Any, run_id: str) -> str:
    """Where the replay starts: the folder the run started in (its relative paths), else its file's."""
    inputs = store.inputs(run_id) or {}
    for candidate in (inputs.get("cwd"), str(Path(str(inputs.get("path") or "/")).parent)):
        if candidate and Path(candidate).is_dir():
            return str(candidate)
    return "/"
