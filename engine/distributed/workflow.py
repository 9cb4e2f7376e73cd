"""The interpreter workflow: walks a validated procedure's DAG deterministically and runs each
step as an activity on the task queue it names.

Temporal replays this code from its history, so it only decides: which step is ready (file
order breaks ties, as the local scheduler does), which queue runs it, when to roll back. It
never renders a template, reads a secret or touches a file: a step's ``when``, its action,
checks and retries are rendered and run by the worker (engine/distributed/activities.py),
so secrets stay on the worker and out of the workflow's history.

Only the standard library, temporalio and the pure functions of engine.execution.batches
are imported here (the workflow sandbox).
Versioning: every change to what this code decides is guarded by ``workflow.patched(ID)``
so that runs started by the old code replay (docs/distributed.md, "Upgrades");
tests/distributed/histories/ holds recorded histories replayed by the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, TimeoutError, TimeoutType
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    # pure functions (no I/O, no clock): the same arithmetic as a local fan-out, on replay too
    from ..execution.batches import batch_sizes, stop_reason, summarise, too_many_failures

SA_PROCEDURE = SearchAttributeKey.for_keyword("RunprocProcedure")
SA_STATUS = SearchAttributeKey.for_keyword("RunprocStatus")
WORKFLOW_NAME = "runproc.procedure"
STEP_ACTIVITY = "runproc.step"
DONE = ("ok", "skipped", "planned")
FAILED = ("failed", "timed_out")


@workflow.defn(name=WORKFLOW_NAME)
class ProcedureWorkflow:
    def __init__(self) -> None:
        self.steps: dict[str, dict[str, Any]] = {}  # id -> report entry (status, error, fields...)
        self.views: dict[str, dict[str, Any]] = {}  # id -> steps.<id> as templates see it
        self.events: list[dict[str, Any]] = []  # what a follower shows, numbered
        self.waiting: dict[str, str] = {}  # confirm steps waiting: id -> message
        self.approvals: dict[str, dict[str, Any]] = {}
        self.completed: list[str] = []  # completion order: rollbacks run in reverse
        self.changed: set[str] = set()  # failed after their action completed (verify): undone too
        self.rolled_back: list[str] = []
        self.not_undone: list[str] = []
        self.cancel_requested = False
        self.waiting_window: str | None = None  # window.wait: when the window opens (UTC)
        self.activities: set[Any] = set()  # activity handles in flight: an interrupt cancels them

    # ------------------------------------------------------------ the run

    @workflow.run
    async def run(self, plan: dict[str, Any]) -> dict[str, Any]:
        started = workflow.now()
        self._event("run_started", None, {"steps": [[s["id"], s.get("name") or s["id"]] for s in self._all(plan)],
                                          "run_id": workflow.info().workflow_id, "procedure": plan["procedure"],
                                          "dry_run": bool(plan.get("dry_run")), "started_at": _iso(started)})
        for s in self._all(plan):
            self.steps[s["id"]] = {"id": s["id"], "status": "pending", "phase": s["phase"], "started_at": None,
                                   "duration": 0.0, "attempts": 0, "error": None}
        if plan.get("undo"):
            return await self._undo_run(plan, started)
        resumed = plan.get("resume") or {}
        for sid, entry in (resumed.get("done") or {}).items():  # in the order they completed
            self.steps[sid] = dict(entry)
            self.completed.append(sid)
        self.views.update(resumed.get("views") or {})
        if plan.get("window") and not await self._window(plan):
            # interrupted while waiting: nothing started, so nothing to undo or clean up
            for s in self._all(plan):
                self.steps[s["id"]].update(status="cancelled", error="not started: interrupted while waiting for "
                                                                     "the maintenance window")
            report = self._report(plan, started, "interrupted", 130,
                                  f"interrupted while waiting for the window {plan['window']['times']!r}", None,
                                  failed=False)
            self._event("run_finished", None, {"report": report})
            return report
        refusal = await self._preconditions(plan) if plan.get("preconditions") else None
        if refusal is not None:
            for s in self._all(plan):
                self.steps[s["id"]].update(status="cancelled", error="not started: the run was refused")
            report = self._report(plan, started, "refused", 3, refusal, None, failed=False)
            self._event("run_finished", None, {"report": report})
            return report
        root_cause = await self._dag(plan)
        failed = root_cause is not None or self.cancel_requested
        dry = bool(plan.get("dry_run"))
        if failed and not dry:
            if plan.get("no_rollback"):
                for sid in reversed(self.completed):
                    if plan["by_id"][sid].get("rollback"):
                        self.steps[sid].setdefault("notes", []).append("not rolled back (--no-rollback)")
            else:
                await self._rollbacks(plan)
            self._in_doubt(plan)
            await self._list(plan, plan.get("on_failure") or [])
        else:
            for s in plan.get("on_failure") or []:
                self.steps[s["id"]].update(status="skipped", notes=["the run did not fail" if not failed
                                                                    else "a dry run does not act on failure"])
        await self._list(plan, plan.get("finally") or [])
        cleanup_failed = [s["id"] for s in [*(plan.get("finally") or []), *(plan.get("on_failure") or [])]
                          if self.steps[s["id"]]["status"] in FAILED]
        refused = root_cause is not None and "refused" in (self.steps[root_cause].get("notes") or [])
        error = None
        if self.not_undone:
            status, code = "rollback_incomplete", 4
        elif self.cancel_requested:
            status, code = "interrupted", 130
        elif refused:
            status, code = "refused", 3
        elif root_cause is not None or cleanup_failed:
            status, code = "failed", 1
        else:
            status, code = ("planned", 0) if dry else ("ok", 0)
        cause = root_cause or (cleanup_failed[0] if cleanup_failed else None)
        if cause is not None:
            entry = self.steps[cause]
            error = f"step {cause} {entry['status']}: {entry.get('error')}"
        elif self.cancel_requested:
            error = "interrupted"
        if self.not_undone:
            error = f"{error}; not undone: {', '.join(self.not_undone)}" if error else None
        report = self._report(plan, started, status, code, error, cause, failed=failed)
        self._event("run_finished", None, {"report": report})
        return report

    def _report(self, plan: dict[str, Any], started: Any, status: str, code: int, error: str | None,
                cause: str | None, *, failed: bool) -> dict[str, Any]:
        dry = bool(plan.get("dry_run"))
        workflow.upsert_search_attributes([SA_STATUS.value_set(status)])
        report = {"procedure": plan["procedure"], "run_id": workflow.info().workflow_id, "status": status,
                  "exit_code": code, "dry_run": dry, "started_at": _iso(started),
                  "duration": round((workflow.now() - started).total_seconds(), 4), "error": error,
                  "root_cause": cause, "rolled_back": list(self.rolled_back), "not_undone": list(self.not_undone),
                  # completed writes left in place by a failed run: no rollback, or --no-rollback
                  "kept": [sid for sid in self.completed if failed and not dry and plan["by_id"][sid].get("writes")
                           and self.steps[sid]["status"] == "ok"
                           and (not plan["by_id"][sid].get("rollback") or plan.get("no_rollback"))],
                  "steps": [self.steps[s["id"]] for s in self._all(plan)], "engine": "temporal",
                  "completed": list(self.completed)}
        replayed = plan.get("resume") or plan.get("undo")
        if replayed:
            report.update(kind="resume" if plan.get("resume") else "rollback", of_run=replayed["of_run"])
        if self.approvals:
            report["approvals"] = list(self.approvals.values())
        return report

    def _in_doubt(self, plan: dict[str, Any]) -> None:
        """A step whose worker was lost mid-step may or may not have acted: nothing undoes it on
        a guess. It is said, and a person decides (``runproc rollback RUN --engine … --yes``
        undoes it, ``runproc resume RUN`` asks before running it again)."""
        for sid, entry in self.steps.items():
            step = plan["by_id"].get(sid)
            if not entry.get("in_doubt") or step is None:
                continue
            if step.get("rollback") and not plan.get("no_rollback"):
                self.not_undone.append(sid)
                why = "not undone"
            else:
                why = "kept" if not step.get("rollback") else "not rolled back (--no-rollback)"
            entry.setdefault("notes", []).append(
                f"in doubt: its worker was lost mid-step, so whether its action ran is unknown; {why} "
                "(runproc rollback RUN --engine ... --yes undoes it; runproc resume asks before running it again)")

    async def _undo_run(self, plan: dict[str, Any], started: Any) -> dict[str, Any]:
        """``runproc rollback RUN --engine``: the rollbacks an ended run left to do, most recent
        first (engine/distributed/replay.py chose them)."""
        undo = plan["undo"]
        for sid, entry in (undo.get("entries") or {}).items():
            self.steps[sid] = dict(entry)
        self.completed = list(undo["order"])
        await self._rollbacks(plan)
        status, code = ("rollback_incomplete", 4) if self.not_undone else ("ok", 0)
        error = f"not undone: {', '.join(self.not_undone)}" if self.not_undone else None
        report = self._report(plan, started, status, code, error, None, failed=False)
        report.update(steps=[self.steps[sid] for sid in reversed(undo["order"])], undo=list(reversed(undo["order"])),
                      kept=[])
        self._event("run_finished", None, {"report": report})
        return report

    async def _preconditions(self, plan: dict[str, Any]) -> str | None:
        """The procedure's preconditions, checked on a worker of the default queue before any
        step (they may read secrets): the refusal, or None when they all pass."""
        check = {"id": "preconditions", "phase": "preconditions", "queue": plan["default_queue"],
                 "raw": {"id": "preconditions", "assert": "true", "preconditions": plan["preconditions"]}}
        result = await self._run_activity(plan, check, {"rollback": False})
        if "lost" in result:
            self._event("precondition", None, {"ok": False, "error": result["lost"]})
            return f"preconditions not checked: {result['lost']}"
        entry = result.get("entry") or {}
        ok = entry.get("status") in DONE
        self._event("precondition", None, {"ok": ok, "error": entry.get("error")})
        return None if ok else str(entry.get("error") or "precondition failed")

    async def _window(self, plan: dict[str, Any]) -> bool:
        """Submitted outside its maintenance window with ``window.wait: true``: wait for it with
        a durable timer (no process sleeps: a worker may restart meanwhile). False: interrupted
        while waiting. A dry run only says it would wait."""
        window = plan["window"]
        if plan.get("dry_run"):
            self._event("note", None, {"level": "warning", "text": f"outside the window {window['times']!r}: "
                                                                   f"a real run would wait until {window['opens_at']}"})
            return True
        self.waiting_window = str(window["opens_at"])
        self._event("window_waiting", None, {"times": window["times"], "opens_at": window["opens_at"]})
        # counted from the run's start, not from this replay: the timer is in the history
        waited = (workflow.now() - workflow.info().start_time).total_seconds()
        remaining = float(window.get("wait_seconds") or 0) - waited
        if remaining > 0:
            # asyncio's: the TimeoutError of this module is temporalio's activity timeout
            with contextlib.suppress(asyncio.TimeoutError):  # noqa: UP041
                await workflow.wait_condition(lambda: self.cancel_requested, timeout=timedelta(seconds=remaining))
        self.waiting_window = None
        return not self.cancel_requested

    async def _dag(self, plan: dict[str, Any]) -> str | None:
        """The main steps: ready ones start at once (file order), ``concurrency`` at a time."""
        order = [s["id"] for s in plan["steps"]]
        pending = {sid for sid in order if self.steps[sid]["status"] == "pending"}  # resume: some are done
        running: dict[str, asyncio.Task[None]] = {}
        root_cause: str | None = None
        limit = int(plan.get("concurrency") or 16)
        while pending or running:
            if root_cause is None and not self.cancel_requested:
                for sid in order:
                    if sid not in pending or len(running) >= limit:
                        continue
                    step = plan["by_id"][sid]
                    needs = step.get("needs") or []
                    if all(self._lets_dependents_start(plan, n) for n in needs):
                        pending.discard(sid)
                        running[sid] = asyncio.create_task(self._step(plan, step))
                    elif any(self._blocks(plan, n) for n in needs):
                        pending.discard(sid)  # an upstream step failed: this one never starts
                        self.steps[sid].update(status="cancelled", error="not started: a step it needs failed")
            if not running:
                break
            await workflow.wait(list(running.values()), return_when=asyncio.FIRST_COMPLETED)
            for sid in [k for k, t in running.items() if t.done()]:
                running.pop(sid)
                entry = self.steps[sid]
                step = plan["by_id"][sid]
                stops = (entry["status"] in FAILED and not step.get("continue_on_error")) or (
                    entry["status"] == "cancelled" and not self.cancel_requested)
                if stops and root_cause is None:
                    root_cause = sid
        why = (f"not started: {root_cause} {self.steps[root_cause]['status']}" if root_cause
               else "not started: the run was interrupted")
        for sid in order:
            if self.steps[sid]["status"] == "pending":
                self.steps[sid].update(status="cancelled", error=why)
        return root_cause

    def _lets_dependents_start(self, plan: dict[str, Any], sid: str) -> bool:
        entry = self.steps[sid]
        return entry["status"] in DONE or (bool(plan["by_id"][sid].get("continue_on_error"))
                                           and entry["status"] in FAILED)

    def _blocks(self, plan: dict[str, Any], sid: str) -> bool:
        entry = self.steps[sid]
        return entry["status"] in (*FAILED, "cancelled") and not (
            plan["by_id"][sid].get("continue_on_error") and entry["status"] in FAILED)

    async def _list(self, plan: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """finally / on_failure: in file order, each whatever the others did."""
        for step in steps:
            await self._step(plan, step)

    # ------------------------------------------------------------ one step

    async def _step(self, plan: dict[str, Any], step: dict[str, Any]) -> None:
        sid = step["id"]
        entry = self.steps[sid]
        entry["started_at"] = _iso(workflow.now())
        t0 = workflow.now()
        self._event("step_started", sid, {"phase": step["phase"]})
        try:
            if step.get("confirm") is not None:
                await self._confirm(plan, step, entry)
            elif step.get("hosts") is not None:
                await self._fanout(plan, step, entry)
            else:
                await self._activity(plan, step, entry, rollback=False)
        finally:
            entry["duration"] = round((workflow.now() - t0).total_seconds(), 4)
            if entry["status"] not in ("pending",) and step["phase"] == "step" and entry["status"] != "cancelled":
                self.completed.append(sid)
            self._event("step_finished", sid, {"entry": entry})

    async def _confirm(self, plan: dict[str, Any], step: dict[str, Any], entry: dict[str, Any]) -> None:
        """A person's approval, durably: the run waits (as long as it takes, costing nothing)
        for ``runproc approve RUN STEP`` (an update), unless ``--yes`` approved everything."""
        sid = step["id"]
        if not await self._when(plan, step, entry):
            return
        if plan.get("dry_run"):
            entry.update(status="planned", action=f"ask: {step['confirm']}", attempts=0)
            return
        if plan.get("yes"):
            entry.update(status="ok", approved=True, by="--yes", how="--yes", attempts=1)
            return
        self.waiting[sid] = step["confirm"]
        self._event("waiting", sid, {"message": step["confirm"]})
        await workflow.wait_condition(lambda: sid in self.approvals or self.cancel_requested)
        self.waiting.pop(sid, None)
        if self.cancel_requested and sid not in self.approvals:
            entry.update(status="cancelled", error="interrupted while waiting for approval")
            return
        answer = self.approvals[sid]
        entry.update(approved=answer["approved"], by=answer["by"], how="runproc approve", attempts=1,
                     comment=answer.get("comment"))
        if answer["approved"]:
            entry["status"] = "ok"
        else:
            entry.update(status="failed", error=f"not approved by {answer['by']}: {step['confirm']}",
                         notes=["refused"])

    async def _activity(self, plan: dict[str, Any], step: dict[str, Any], entry: dict[str, Any], *,
                        rollback: bool) -> None:
        result = await self._run_activity(plan, step, {"rollback": rollback})
        if rollback:
            return
        if "lost" in result:
            entry.update(status="failed", error=result["lost"], error_kind="environment")
            if result.get("in_doubt"):
                entry["in_doubt"] = True
            return
        started = entry.get("started_at")
        entry.update(result.get("entry") or {})
        entry["started_at"] = entry.get("started_at") or started  # the worker's entry has no clock
        if result.get("changed"):
            self.changed.add(step["id"])
            entry["changed"] = True  # for runproc rollback RUN: its action completed, its verify failed
        if result.get("view") is not None:
            self.views[step["id"]] = result["view"]

    async def _run_activity(self, plan: dict[str, Any], step: dict[str, Any], extra: dict[str, Any]
                            ) -> dict[str, Any]:
        """Run the step (or its rollback, or only its ``when``) on its queue; a lost worker, a
        queue nobody serves or a timeout is the step's failure, said in words."""
        queue = (extra.get("host") or {}).get("queue") or step.get("queue") or plan["default_queue"]
        payload = {"plan": {k: plan[k] for k in ("procedure", "path", "workdir", "params", "param_decls",
                                                   "secrets", "connections", "vars", "dry_run", "run",
                                                   "accept_new_hosts", "known_hosts") if k in plan},
                   "step": step["raw"], "phase": step["phase"], "executor": step.get("executor"),
                   "steps": {sid: self.views[sid] for sid in step.get("reads") or [] if sid in self.views},
                   **extra}
        timeout = step.get("timeout")
        # the engine's own retry runs inside the activity; Temporal retries only what may run
        # twice (idempotent: true, or readonly), and only when a worker was lost
        again = bool(step.get("idempotent") or not step.get("writes"))
        try:
            handle = workflow.start_activity(
                STEP_ACTIVITY, payload, task_queue=queue,
                # an interrupt cancels the step on its worker, which kills its processes and
                # answers: the run waits for that answer before it rolls back
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                start_to_close_timeout=timedelta(seconds=(timeout or 24 * 3600) + 30),
                schedule_to_start_timeout=timedelta(seconds=float(plan.get("schedule_to_start") or 60)),
                heartbeat_timeout=timedelta(seconds=float(plan.get("heartbeat") or 10)),
                retry_policy=RetryPolicy(maximum_attempts=3 if again else 1,
                                         initial_interval=timedelta(milliseconds=200),
                                         non_retryable_error_types=["StepProblem"]),
                summary=(f"{step['id']}{' @' + extra['host']['name'] if extra.get('host') else ''}"
                         f"{' (rollback)' if extra.get('rollback') else ''}"))
            if self.cancel_requested and not extra.get("rollback"):
                handle.cancel()  # interrupted while this was being scheduled
            self.activities.add(handle)
            try:
                result: dict[str, Any] = await handle
            finally:
                self.activities.discard(handle)
            return result
        except ActivityError as exc:
            error = _why(exc, queue, plan, again)
            if extra.get("rollback"):
                return {"ok": False, "error": error}
            # a step that may not run twice, whose worker went silent (it died, or the server was
            # away longer than the heartbeat timeout): whether its action ran is not known
            doubt = (not again and isinstance(exc.cause, TimeoutError)
                     and exc.cause.type in (TimeoutType.HEARTBEAT, TimeoutType.START_TO_CLOSE))
            return {"lost": error, "in_doubt": doubt}

    async def _rollbacks(self, plan: dict[str, Any]) -> None:
        """The saga: the rollback of each step that completed, most recent first."""
        for sid in reversed(self.completed):
            step = plan["by_id"][sid]
            entry = self.steps[sid]
            # a fanned-out step that failed is undone on the hosts where it did complete
            some_hosts = any(r.get("status") == "ok" or r.get("changed") for r in (entry.get("hosts") or {}).values())
            if not step.get("rollback") or entry["status"] != "ok" and sid not in self.changed and not some_hosts:
                if entry["status"] == "ok" and step.get("writes") and not step.get("rollback"):
                    entry.setdefault("notes", []).append("no rollback defined: its change was kept")
                continue
            self._event("rollback_started", sid, {})
            t0 = workflow.now()
            if step.get("hosts") is not None:
                result = await self._undo_hosts(plan, step, entry)
            else:
                result = await self._run_activity(plan, step, {"rollback": True})
            ok = bool(result.get("ok"))
            entry["rollback"] = {"status": "ok" if ok else "failed", "error": result.get("error"),
                                 "action": result.get("action"),
                                 "duration": round((workflow.now() - t0).total_seconds(), 4)}
            if ok:
                self.rolled_back.append(sid)
                if entry["status"] == "ok":
                    entry["status"] = "rolled_back"
            else:
                entry["status"] = "rollback_failed"
                self.not_undone.append(sid)
            self._event("rollback_finished", sid, {"ok": ok, "error": result.get("error")})

    # ------------------------------------------------------------ fan-out

    async def _when(self, plan: dict[str, Any], step: dict[str, Any], entry: dict[str, Any]) -> bool:
        """A step's ``when``, decided on a worker of its queue (it may read secrets): False
        when the step is skipped or the decision could not be made (the step failed)."""
        if not step.get("when"):
            return True
        result = await self._run_activity(plan, step, {"when_only": True})
        if "lost" in result:
            entry.update(status="failed", error=result["lost"], error_kind="environment")
            return False
        if result.get("status") == "skipped":
            entry.update(result["entry"])
            self.views[step["id"]] = result.get("view") or {"status": "skipped", "ok": False}
            return False
        return True

    async def _fanout(self, plan: dict[str, Any], step: dict[str, Any], entry: dict[str, Any]) -> None:
        """``on:``: the step once per inventory host (chosen at submission), each on its host's
        queue, ``forks`` at a time in ``serial`` batches, stopping at ``max_fail``; as the local
        run does (engine/execution/fanout.py), with the same arithmetic."""
        sid = step["id"]
        if not await self._when(plan, step, entry):
            return
        hosts: list[dict[str, Any]] = list(step.get("hosts") or [])
        results: dict[str, dict[str, Any]] = {h["name"]: {"status": "pending", "phase": step["phase"],
                                                          "started_at": None, "duration": 0.0, "attempts": 0,
                                                          "error": None} for h in hosts}
        entry["hosts"] = results
        views: dict[str, Any] = {}
        if not hosts:
            entry.update(status="skipped", notes=[step.get("hosts_note") or "no hosts to run on"])
            self.views[sid] = {"status": "skipped", "ok": False, "hosts": {}}
            return
        left_out: dict[str, str] = {}
        for up in step.get("upstream_fanouts") or []:
            for name, result in (self.steps[up].get("hosts") or {}).items():
                if result.get("status") in FAILED:
                    left_out.setdefault(name, up)
        for name, up in left_out.items():
            if name in results:
                results[name].update(status="skipped",
                                     notes=[f"left out: it failed in step {up} (within that step's max_fail)"])
        # runproc resume: hosts where the resumed run finished this step are not run again
        done_before = ((plan.get("resume") or {}).get("hosts_done") or {}).get(sid) or {}
        for name, finished in done_before.items():
            if name in results:
                results[name] = dict(finished)
                views[name] = {**{k: v for k, v in finished.items() if k not in ("notes", "phase")}, "ok": True}
        targets = [h for h in hosts if h["name"] not in left_out and h["name"] not in done_before]
        if not targets and not done_before:
            entry.update(status="skipped", notes=["every host was left out: each failed in a step this one needs"])
            self.views[sid] = {"status": "skipped", "ok": False, "hosts": {}}
            return
        done = 0

        async def one(host: dict[str, Any]) -> None:
            nonlocal done
            t0 = workflow.now()
            results[host["name"]]["started_at"] = _iso(t0)
            if self.cancel_requested:
                results[host["name"]].update(status="cancelled", error="not started: the run was interrupted")
                return
            result = await self._run_activity(plan, step, {"rollback": False, "host": host})
            if "lost" in result:
                results[host["name"]].update(status="failed", error=result["lost"], error_kind="environment")
                if result.get("in_doubt"):
                    results[host["name"]]["in_doubt"] = True
            else:
                results[host["name"]].update({k: v for k, v in (result.get("entry") or {}).items()
                                              if k != "id" and not (k == "started_at" and v is None)})
                if result.get("changed"):
                    results[host["name"]]["changed"] = True
                views[host["name"]] = result.get("view")
            results[host["name"]]["duration"] = round((workflow.now() - t0).total_seconds(), 4)
            done += 1
            ok = sum(1 for r in results.values() if r["status"] in ("ok", "planned"))
            failed = sum(1 for r in results.values() if r["status"] in FAILED)
            self._event("step_progress", sid, {"message": f"{ok}/{len(targets)} hosts ok"
                                                          + (f", {failed} failed" if failed else "")})

        stopped: str | None = None
        tolerated = start = 0
        forks = max(1, int(plan.get("forks") or 20))
        for number, size in enumerate(batch_sizes(len(targets), step.get("serial")), start=1):
            batch = targets[start:start + size]
            start += size
            if stopped is not None or self.cancel_requested:
                for host in batch:
                    results[host["name"]].update(status="cancelled",
                                                 error=f"not started: {stopped or 'the run was interrupted'}")
                continue
            await _at_most(forks, [lambda h=host: one(h) for host in batch])  # type: ignore[misc]
            failed = sum(1 for h in batch if results[h["name"]]["status"] in FAILED)
            if too_many_failures(failed, len(batch), step.get("max_fail")):
                stopped = stop_reason(number, failed, len(batch), step.get("max_fail"))
            else:
                tolerated += failed
        summary = summarise([(h["name"], results[h["name"]]["status"], results[h["name"]].get("error"),
                              results[h["name"]].get("error_kind")) for h in hosts],
                            stopped=stopped, tolerated=tolerated, max_fail=step.get("max_fail"))
        entry["attempts"] = max((int(r.get("attempts") or 0) for r in results.values()), default=0)
        action = next((r.get("action") for r in results.values() if r.get("action")), None)
        if action is not None:
            entry["action"] = action
        if summary.error_kind is not None:
            entry["error_kind"] = summary.error_kind
        entry["status"] = summary.status
        entry["error"] = summary.error
        if summary.notes:
            entry["notes"] = [*(entry.get("notes") or []), *summary.notes]
        if any(r.get("in_doubt") for r in results.values()):
            entry["in_doubt"] = True
        if any(r.get("changed") for r in results.values()):
            self.changed.add(sid)  # a host changed before its verify failed: the saga undoes it there
        self.views[sid] = {"status": entry["status"], "ok": entry["status"] == "ok", "error": entry["error"],
                           "attempts": entry["attempts"], "duration": 0.0,
                           "hosts": {name: views.get(name) or {"status": r["status"], "ok": r["status"] == "ok"}
                                     for name, r in results.items()}}

    async def _undo_hosts(self, plan: dict[str, Any], step: dict[str, Any], entry: dict[str, Any]
                          ) -> dict[str, Any]:
        """The rollback of a fanned-out step on exactly the hosts where its action completed."""
        results: dict[str, dict[str, Any]] = entry.get("hosts") or {}
        targets = [h for h in step.get("hosts") or []
                   if h["name"] in results and (results[h["name"]]["status"] == "ok" or results[h["name"]].get("changed"))]
        if not targets:
            return {"ok": True, "error": None, "action": "no host to roll back"}
        failures: list[tuple[str, str]] = []
        actions: list[str] = []

        async def one(host: dict[str, Any]) -> None:
            t0 = workflow.now()
            result = await self._run_activity(plan, step, {"rollback": True, "host": host})
            ok = bool(result.get("ok"))
            if result.get("action"):
                actions.append(str(result["action"]))
            results[host["name"]]["rollback"] = {"status": "ok" if ok else "failed", "error": result.get("error"),
                                                 "action": result.get("action"),
                                                 "duration": round((workflow.now() - t0).total_seconds(), 4)}
            results[host["name"]]["status"] = "rolled_back" if ok else "rollback_failed"
            if not ok:
                failures.append((host["name"], str(result.get("error") or "failed")))

        await _at_most(max(1, int(plan.get("forks") or 20)), [lambda h=host: one(h) for host in targets])  # type: ignore[misc]
        undone = len(targets) - len(failures)
        self._event("step_progress", step["id"], {"message": f"rolled back on {undone}/{len(targets)} hosts"})
        if failures:
            order = [h["name"] for h in targets]
            failures.sort(key=lambda f: order.index(f[0]))
            shown = "; ".join(f"{name}: {error.splitlines()[0]}" for name, error in failures[:3])
            return {"ok": False, "error": f"rollback failed on {len(failures)} of {len(targets)} hosts: {shown}",
                    "action": actions[0] if actions else None}
        return {"ok": True, "error": None, "action": actions[0] if actions else None}

    # ------------------------------------------------------------ talking to it

    @workflow.query
    def progress(self, since: int = 0) -> dict[str, Any]:
        """Events after ``since`` (a follower's last seen number), and who waits for approval."""
        return {"events": self.events[since:], "waiting": dict(self.waiting), "window": self.waiting_window}

    @workflow.update
    def approve(self, answer: dict[str, Any]) -> str:
        self.approvals[answer["step"]] = {**answer, "at": _iso(workflow.now())}
        self._event("approval", answer["step"], {k: answer.get(k) for k in ("approved", "by", "comment")})
        return f"{'approved' if answer['approved'] else 'rejected'} {answer['step']} as {answer['by']}"

    @approve.validator
    def _approvable(self, answer: dict[str, Any]) -> None:
        if answer.get("step") not in self.waiting:
            waiting = ", ".join(sorted(self.waiting)) or "none"
            raise ValueError(f"step {answer.get('step')!r} is not waiting for an approval (waiting: {waiting})")

    @workflow.signal
    def interrupt(self) -> None:
        """Ctrl-C at the controller: start nothing new, stop the steps running (their workers
        kill their processes), roll back what completed."""
        if self.cancel_requested:
            return
        self.cancel_requested = True
        for handle in list(self.activities):
            handle.cancel()

    # ------------------------------------------------------------ helpers

    def _event(self, kind: str, step: str | None, data: dict[str, Any]) -> None:
        self.events.append({"n": len(self.events) + 1, "kind": kind, "step": step, "at": _iso(workflow.now()),
                            **data})

    @staticmethod
    def _all(plan: dict[str, Any]) -> list[dict[str, Any]]:
        return [*plan["steps"], *(plan.get("finally") or []), *(plan.get("on_failure") or [])]


async def _at_most(limit: int, jobs: list[Any]) -> None:
    """Run ``jobs`` (callables returning coroutines), at most ``limit`` at a time, in order."""
    running: set[asyncio.Task[None]] = set()
    for job in jobs:
        while len(running) >= limit:
            _, pending = await workflow.wait(running, return_when=asyncio.FIRST_COMPLETED)
            running = set(pending)
        running.add(asyncio.create_task(job()))
    if running:
        await workflow.wait(running)


def _iso(when: Any) -> str:
    return str(when.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def _why(exc: ActivityError, queue: str, plan: dict[str, Any], again: bool) -> str:
    """Why an activity did not give a result, in an operator's words."""
    cause = exc.cause
    if isinstance(cause, TimeoutError):
        if cause.type == TimeoutType.SCHEDULE_TO_START:
            return (f"no worker took the step from queue {queue!r} within "
                    f"{float(plan.get('schedule_to_start') or 60):g}s (is a runproc worker --queue {queue} running?)")
        if cause.type == TimeoutType.HEARTBEAT:
            return ("the worker running it was lost (no heartbeat)" +
                    ("" if again else "; not run again: it is not idempotent"))
        return f"timed out on the worker ({cause.type.name.lower() if cause.type else 'timeout'})"
    if isinstance(cause, ApplicationError):
        return str(cause.message)
    if isinstance(cause, CancelledError):
        return "interrupted: stopped on its worker"
    return str(cause or exc)
