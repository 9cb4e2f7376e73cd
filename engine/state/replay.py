"""Replaying recorded runs: ``runproc resume RUN`` and ``runproc rollback RUN``.

Every real run started from the CLI records its inputs beside its report in the journal
(``capture``): the procedure file's absolute path, the SHA-256 of every file its definition
comes from (engine/plans.py's fingerprint: procedure, child procedures, inventory), its
params (those declared ``secret: true`` only as a salted hash), its options, and at the end
the order its steps completed in. Both commands refuse (exit 3) when a fingerprinted file
changed since: the recorded results would not describe what the file now says.

- rollback: runs the ``rollback`` of each completed step not yet undone, most recent first,
  with the recorded results as ``steps.<id>``; records a new run (kind ``rollback``).
- resume: runs the procedure again with the recorded params and options; steps recorded
  ``ok`` are not run again (``Run(completed=...)``), their recorded fields are their
  ``steps.<id>``; records a new run (kind ``resume``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, RefusedError
from ..execution.results import recorded_result

if TYPE_CHECKING:
    from ..execution.scheduler import Run
    from ..format.model import Procedure
    from .sqlstore import SqlStore as SqliteStore

INPUTS_VERSION = 1
# report keys that describe the step, not its executor's result: everything else in a report
# entry is a result field (rc, stdout, rows...), as StepResult.to_json spread them

def capture(run: Run, inventory: str | None, cwd: str) -> dict[str, Any]:
    """The inputs to record for a real run, taken before it starts (the files as it read them)."""
    from . import fingerprints, plans

    files, warnings = fingerprints.fingerprint(run.proc, inventory, run.namespace())
    params: dict[str, Any] = {}
    secret: dict[str, str | None] = {}
    for name, value in run.params.items():
        spec = run.proc.params.get(name)
        if spec is not None and spec.secret:
            # never the value: a hash that tells whether the value given again is the same
            secret[name] = None if value is None else plans.hash_secret(value)
        else:
            params[name] = value
    return {"version": INPUTS_VERSION, "kind": "run", "of_run": None, "path": str(run.proc.path), "cwd": cwd,
            "files": files, "not_fingerprinted": warnings, "params": params, "secret_params": secret,
            "options": {"inventory": inventory, "limit": run.limit, "only": sorted(run.only),
                        "no_rollback": run.no_rollback, "forks": run.forks}}


@dataclass
class Recorded:
    """A recorded run, checked replayable: its report, inputs, procedure and params to run with."""

    report: dict[str, Any]
    inputs: dict[str, Any]
    proc: Procedure
    values: dict[str, Any]  # the recorded params (typed), then the secret ones given again
    given: dict[str, str]  # -p values (secret params only)
    replays: list[dict[str, Any]]  # earlier resumes/rollbacks of this run
    journal: list[dict[str, Any]] = field(default_factory=list)  # the run's journal, in order

    @property
    def run_id(self) -> str:
        return str(self.report["run_id"])

    def entries(self) -> dict[str, dict[str, Any]]:
        return {str(e["id"]): e for e in self.report.get("steps") or []}

    def undone(self) -> set[str]:
        """Steps already undone: by the run's own rollback, or by an earlier `runproc rollback`."""
        out = set(self.report.get("rolled_back") or [])
        for r in self.replays:
            if r["kind"] == "rollback":
                out.update(r["report"].get("rolled_back") or [])
        return out


def load(journal: SqliteStore, ref: str, verb: str, given: dict[str, str], from_file: dict[str, Any],
         *, check_secrets: bool = True) -> Recorded:
    """The run ``ref`` names (an id or its first characters), or a RefusedError/InvalidInputError saying why not.
    ``check_secrets=False``: a preview of what would be done (runproc serve's confirmation page),
    without the secret params given again; nothing may be run with what it returns."""
    from ..format.loader import load as load_procedure
    from . import fingerprints, plans

    report = journal.show(ref)
    if report is None:
        raise InvalidInputError(f"no run {ref!r} (runproc runs lists them)")
    run_id = str(report["run_id"])
    if report.get("status") == "running":
        raise RefusedError(f"run {run_id} is still running (pid {report.get('pid')} on {report.get('host')}, "
                           f"by {report.get('user')}): wait for it, or stop it first")
    if report.get("dry_run"):
        raise RefusedError(f"run {run_id} was a dry run: it changed nothing, there is nothing to {verb}")
    inputs = journal.inputs(run_id)
    if inputs is None:
        raise RefusedError(f"run {run_id} has no recorded inputs (it was recorded by an older runproc or by a "
                      f"library caller): nothing to {verb} it with; run the procedure again instead")
    if inputs.get("kind") == "rollback":
        raise RefusedError(f"run {run_id} is a rollback of run {inputs.get('of_run')}: to retry what it left "
                      f"undone, runproc rollback {inputs.get('of_run')}")
    replays = journal.replays_of(run_id)
    for r in replays:
        r["journal"] = journal.journal(r["id"])  # a stopped rollback: which undo was in flight
    resumed = [r["id"] for r in replays if r["kind"] == "resume"]
    if resumed:
        # its steps now belong to the resumed run: acting on both would undo or redo them twice
        raise RefusedError(f"run {run_id} was resumed as run {resumed[-1]}: runproc {verb} {resumed[-1]} instead")
    holder = journal.lock_of(run_id)
    if holder is not None:
        raise RefusedError(f"run {run_id} is still running (it holds lock {holder.name!r}: {holder})")
    changes = fingerprints.changed_files(inputs)
    if changes:
        raise RefusedError(f"the procedure changed since run {run_id}, so its recorded results may not match "
                      "what the file now says:\n" + "\n".join(f"  {c}" for c in changes))
    from ..errors import ProcedureError

    try:
        proc = load_procedure(inputs["path"])
    except ProcedureError as exc:
        raise InvalidInputError("\n".join(str(p) for p in exc.problems)) from None
    values = {k: v for k, v in inputs["params"].items() if v is not None}
    secret: dict[str, str | None] = inputs.get("secret_params") or {}
    fixed = sorted(n for n in {*given, *from_file} if n not in secret)
    if fixed:
        raise InvalidInputError(f"param {fixed[0]!r} is fixed by run {run_id} (it ran with "
                                f"{fixed[0]}={inputs['params'].get(fixed[0])!r}); only params declared "
                                "secret: true are given again")
    values.update(from_file)
    for name, stored in secret.items():
        value = given.get(name, from_file.get(name))
        if stored is None or not check_secrets:
            continue
        if value is None:
            raise InvalidInputError(f"param {name!r} is secret: run {run_id} recorded only a hash of it; "
                                    f"give it again with -p {name}=VALUE")
        if not plans.secret_matches(stored, value):
            raise RefusedError(f"param {name!r}: not the value run {run_id} ran with")
    return Recorded(report, inputs, proc, values, dict(given), replays, journal.journal(run_id))


def build_run(rec: Recorded, *, on_event: Any = None, ask: Any = None,
              completed: dict[str, dict[str, Any]] | None = None,
              completed_hosts: dict[str, dict[str, dict[str, Any]]] | None = None, **options: Any) -> Run:
    """A Run of the recorded procedure with the recorded params and options (``options`` adds the
    present command's choices: state, yes, ignore_window...)."""
    from ..execution.options import RunOptions
    from ..execution.scheduler import Run
    from .opening import store_opener

    opts = rec.inputs["options"]
    chosen = RunOptions(no_rollback=bool(opts.get("no_rollback")), only=tuple(opts.get("only") or ()),
                        limit=opts.get("limit"), inventory=opts.get("inventory"), forks=opts.get("forks"), **options)
    return Run(rec.proc, params=rec.values, cli_params=rec.given, options=chosen, on_event=on_event, ask=ask,
               store=store_opener(chosen.state), completed=completed, completed_hosts=completed_hosts)


def inputs_of_replay(rec: Recorded, kind: str) -> dict[str, Any]:
    """The recorded inputs again, for the resume/rollback's own journal entry (files unchanged:
    ``load`` checked them)."""
    keep = {k: v for k, v in rec.inputs.items() if k not in ("completed", "changed")}
    return {**keep, "kind": kind, "of_run": rec.run_id}


# ---------------------------------------------------------------- resume


@dataclass
class InFlight:
    """A step (or one host of it) that was running when the runner stopped: its action may or
    may not have happened. ``undo``: it was the step's rollback that was in flight."""

    step: str
    host: str | None
    automatic: bool  # readonly or idempotent: done again without asking
    undo: bool = False

    def __str__(self) -> str:
        what = f"the rollback of {self.step}" if self.undo else self.step
        return f"{what} on {self.host}" if self.host else what


@dataclass
class ResumePlan:
    done: dict[str, dict[str, Any]]  # steps not run again, id -> report entry, in completion order
    hosts_done: dict[str, dict[str, dict[str, Any]]]  # fanned-out steps: host -> entry, done already
    in_flight: list[InFlight]


def resume_plan(rec: Recorded, from_step: str | None = None) -> ResumePlan:
    """What a resume skips and what it must decide about; RefusedError when it cannot resume.
    ``from_step`` (``runproc resume --from STEP``): that step and every step that needs it,
    directly or not, run again even if recorded ok (a run that ended ok may be retried so)."""
    from ..execution.dryrun import changes_things
    from .recovery import in_flight

    again = rerun_from(rec, from_step) if from_step is not None else set()
    status = rec.report.get("status")
    if status == "ok" and not again:
        raise RefusedError(f"run {rec.run_id} ended ok: there is nothing to resume "
                           "(runproc resume --from STEP runs a step and those after it again)")
    rollbacks = [r["id"] for r in rec.replays if r["kind"] == "rollback"]
    undoing = any(e["event"] == "rollback_started" for e in rec.journal)
    if rec.undone() or rollbacks or undoing:
        how = f"by runproc rollback (run {rollbacks[-1]})" if rollbacks else "when it failed"
        finish = (f" (runproc rollback {rec.run_id} finishes undoing what is left)"
                  if rec.report.get("status") in ("interrupted", "rollback_incomplete") else "")
        raise RefusedError(f"run {rec.run_id}'s completed steps were rolled back {how}: there is nothing to resume "
                           f"from; run it again instead: runproc {rec.inputs['path']} ...{finish}")
    entries = rec.entries()
    order = [sid for sid in rec.inputs.get("completed") or [] if sid in entries]
    note = f"done in run {rec.run_id}: not run again (resumed)"
    done = {sid: {**entries[sid], "notes": [*_live_notes(entries[sid]), note]} for sid in order
            if entries[sid].get("status") == "ok" and entries[sid].get("phase", "step") == "step"
            and sid not in again}
    main = {s.id for s in rec.proc.steps}
    hosts_done: dict[str, dict[str, dict[str, Any]]] = {}
    for sid, entry in entries.items():
        if sid in done or sid in again or sid not in main or not isinstance(entry.get("hosts"), dict):
            continue
        ok = {h: {**e, "notes": [*(e.get("notes") or []), note]} for h, e in entry["hosts"].items()
              if e.get("status") == "ok"}
        if ok:
            hosts_done[sid] = ok
    flying: list[InFlight] = []
    for sid, hosts in in_flight(rec.journal).items():
        if sid not in main or sid in again:  # asked to run again: nothing to decide
            continue
        step = rec.proc.step(sid)
        automatic = step.idempotent or not changes_things(step)
        if hosts is None:
            flying.append(InFlight(sid, None, automatic))
        else:
            flying.extend(InFlight(sid, h, automatic) for h in sorted(hosts))
    return ResumePlan(done, hosts_done, flying)


def rerun_from(rec: Recorded, step: str) -> set[str]:
    """``step`` and every main step that needs it, directly or not: what ``--from`` runs again.
    InvalidInputError, with a did-you-mean, for a step the procedure does not have."""
    from ..format.graph import declared_needs
    from ..format.suggest import did_you_mean

    needs = declared_needs(rec.proc.steps)
    if step not in needs:
        raise InvalidInputError(f"--from {step}: procedure {rec.proc.procedure!r} has no step {step!r}"
                                f"{did_you_mean(step, needs)} (finally and on_failure steps run anyway)")
    dependents: dict[str, list[str]] = {sid: [] for sid in needs}
    for sid, deps in needs.items():
        for dep in deps:
            dependents[dep].append(sid)
    again, todo = {step}, [step]
    while todo:
        for nxt in dependents[todo.pop()]:
            if nxt not in again:
                again.add(nxt)
                todo.append(nxt)
    return again


def treat_as_done(plan: ResumePlan, item: InFlight, run_id: str) -> None:
    """--skip-inflight: the in-flight step (or host) counts as done; its result is unknown."""
    note = f"in flight when run {run_id} stopped; treated as done (--skip-inflight): not run again"
    entry = {"id": item.step, "status": "ok", "phase": "step", "started_at": None, "duration": 0.0,
             "attempts": 1, "error": None, "notes": [note]}
    if item.host is None:
        plan.done[item.step] = entry
    else:
        plan.hosts_done.setdefault(item.step, {})[item.host] = entry


def _live_notes(entry: dict[str, Any]) -> list[str]:
    """A step's notes without the old run's verdict on its rollback: the resumed run decides that
    anew (the runner counts "not rolled back" notes as changes kept)."""
    return [n for n in entry.get("notes") or [] if not n.startswith(("not rolled back", "no rollback defined"))]


# ---------------------------------------------------------------- rollback


@dataclass
class UndoPlan:
    undo: list[str]  # steps whose rollback runs, most recently completed first
    kept: list[str]  # completed steps that change things and have no rollback
    in_flight: list[InFlight] = field(default_factory=list)  # to decide: undo it too, or leave it
    forced: set[tuple[str, str | None]] = field(default_factory=set)  # in flight, undone all the same


def undo_plan(rec: Recorded) -> UndoPlan:
    """What ``runproc rollback`` would undo; RefusedError when it cannot."""
    from ..execution.dryrun import changes_things
    from ..execution.results import FAILED
    from .recovery import IN_FLIGHT, in_flight

    entries = rec.entries()
    undone = rec.undone()
    changed = set(rec.inputs.get("changed") or [])
    order = [sid for sid in rec.inputs.get("completed") or [] if sid in entries]
    flying = in_flight(rec.journal)
    # the step in flight is the most recent: it is undone first, if it is undone at all
    order += [sid for sid in flying if sid in entries and sid not in order]
    undo: list[str] = []
    kept: list[str] = []
    decide: list[InFlight] = []
    undo_flying = _undos_in_flight(rec)
    for sid in reversed(order):
        e = entries[sid]
        if e.get("phase", "step") != "step" or sid in undone:
            continue
        status = e.get("status")
        hosts = e.get("hosts") if isinstance(e.get("hosts"), dict) else {}
        flying_hosts = [h for h, he in hosts.items() if he.get("status") == IN_FLIGHT]
        # ok; or failed in its verify after its action completed (as the run's own rollback does);
        # or an undo that failed before, tried again; or hosts of a fanned-out step that finished
        completed = status in ("ok", "rollback_failed") or (status in FAILED and sid in changed) or (
            any(h.get("status") in ("ok", "rollback_failed") or h.get("changed") for h in hosts.values()))
        was_flying = status == IN_FLIGHT and not hosts
        if not (completed or was_flying or flying_hosts):
            continue
        step = rec.proc.step(sid)
        if step.rollback is None:
            if changes_things(step):
                kept.append(sid)
            continue
        if not changes_things(step):
            continue
        if sid in undo_flying:
            decide.append(InFlight(sid, None, False, undo=True))
        elif was_flying:
            decide.append(InFlight(sid, None, False))
        decide.extend(InFlight(sid, h, False) for h in flying_hosts)
        if completed and sid not in undo_flying:
            undo.append(sid)
    return UndoPlan(undo, kept, decide)


def _undos_in_flight(rec: Recorded) -> set[str]:
    """Steps whose rollback started and did not finish: in the run itself, or in an earlier
    ``runproc rollback`` of it that was stopped."""
    out: set[str] = set()
    journals = [rec.journal] + [r.get("journal") or [] for r in rec.replays if r["kind"] == "rollback"]
    for journal in journals:
        started: set[str] = set()
        for e in journal:
            if e["event"] == "rollback_started" and e.get("step"):
                started.add(e["step"])
            elif e["event"] == "rollback_finished" and e.get("step"):
                started.discard(e["step"])
        out |= started
    return out


def include_in_flight(plan: UndoPlan, item: InFlight) -> None:
    """The operator said the in-flight step (or host, or undo) may have changed things: undo it."""
    if item.step not in plan.undo:
        plan.undo.insert(0, item.step)  # the most recent of all: undone first
    plan.forced.add((item.step, item.host))


def roll_back(rec: Recorded, plan: UndoPlan, run: Run) -> tuple[dict[str, Any], int]:
    """Run the undos of ``plan`` in ``run``; record and return (the report, exit code)."""
    from ..execution import events as ev
    from ..execution import saga as rollback
    from ..execution.results import RunResult
    from ..execution.step import StepRunner
    from .recovery import IN_FLIGHT

    t0 = time.monotonic()
    entries = rec.entries()
    for sid, entry in entries.items():
        sr = recorded_result(entry)
        if sid in plan.undo and sr.status in ("rollback_failed", IN_FLIGHT):
            sr.status = "ok"  # its change is (or may be) still there: undone now, it reads rolled_back
        for host, hsr in (sr.hosts or {}).items():
            if hsr.status == "rollback_failed" or (hsr.status == IN_FLIGHT and (sid, host) in plan.forced):
                hsr.status = "ok"
            elif hsr.status == IN_FLIGHT:
                hsr.notes.append("in flight when the runner stopped; left as it is (--skip-inflight)")
        run.results[sid] = sr
        run.views[sid] = sr.as_fields()
    run.journal_inputs = inputs_of_replay(rec, "rollback")
    run._begin_journal()  # a stopped rollback is itself recorded, so that it can be finished
    # rollback templates render as they would have in the run itself
    run.base_ns["run"].update(id=rec.run_id, started_at=rec.report.get("started_at"))
    refusal, locked = run._take_lock() if rec.proc.lock else (None, False)
    if refusal is not None:
        raise RefusedError(refusal)
    stepper = StepRunner(run)
    run._phase_cancel = run.rollback_cancel
    try:
        for sid in plan.undo:
            sr = run.results[sid]
            if run.rollback_cancel.is_set():
                sr.notes.append("rollback abandoned (interrupted): its change was kept")
                run.not_undone.append(sid)
                continue
            rollback.rollback_one(run, stepper, rec.proc.step(sid), sr)
    finally:
        run._phase_cancel = run.stop
        if locked:
            run.store().release(rec.proc.lock or "", run.run_id)
        # a connection that fails to close does not change what was undone
        run.resources.close_all()
    status, code = ("rollback_incomplete", 4) if run.not_undone else ("ok", 0)
    error = f"not undone: {', '.join(run.not_undone)}" if run.not_undone else None
    result = RunResult(rec.proc.procedure, run.run_id, status, code, False, run.started_at, time.monotonic() - t0,
                       run.results, error, None, list(run.undo_order), list(run.not_undone), plan.kept,
                       redact=run.redactor)
    report = {**result.to_json(), "kind": "rollback", "of_run": rec.run_id}
    run.journal.finish(report, inputs_of_replay(rec, "rollback"))
    run.journal.close()
    run.store().close()
    run.emit(ev.RunFinished(result))  # its end, for a consumer (a trace: engine/observe/tracing.py)
    return report, code


def chdir_to(rec: Recorded) -> str | None:
    """Go to the folder the run started in (a relative child path renders as it did); the old one."""
    there = rec.inputs.get("cwd")
    here = os.getcwd()
    if there and there != here and Path(there).is_dir():
        os.chdir(there)
        return here
    return None
