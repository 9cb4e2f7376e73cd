"""Executing one step: ``when``, dry-run decisions, preconditions, retries, verify, rollback.

This module decides what happens to a single step; the scheduler (runner.py) decides when.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import RunprocError
from ..executors import get_executor
from ..executors.base import ASSERTION, ENVIRONMENT, Effect, Executor, Result, StepContext, environment_error
from ..executors.confirm import Refusal
from ..format import expressions as ex
from .events import Note
from .results import StepResult
from .store import user_name

if TYPE_CHECKING:
    import threading

    from ..format.model import Body, Check, Step
    from .context import RunContext as Run


# a step that did not start because the journal's write before it found the state store gone
NOT_STARTED = "not started: the state store stopped answering"


def error_text(exc: BaseException) -> str:
    """An exception as a step's error: runproc's own errors are worded for the user already
    (``web-1 127.0.0.1:22: no SSH banner ...``); anything else is named by its type."""
    return str(exc) if isinstance(exc, RunprocError) and str(exc) else f"{type(exc).__name__}: {exc}"


def result_view(res: Result) -> dict[str, Any]:
    """``result`` as checks and ``until`` see it."""
    status = "ok" if res.ok else ("timed_out" if res.timed_out else "failed")
    return {**res.fields, "ok": res.ok, "status": status, "error": res.error}


class StepRunner:
    """Runs bodies for one Run; stateless apart from the Run it serves."""

    def __init__(self, run: Run) -> None:
        self.run = run

    # ------------------------------------------------------------ contexts

    def context(self, step_id: str, body: Body, ns: dict[str, Any], *, host: Any = None,
                readonly: bool = False, rollback: bool = False) -> StepContext:
        run = self.run
        red = run.redactor
        taint = run.taint
        timeout = body.timeout
        # read the phase's event now: a rollback or a finally step is cancelled by its own level
        cancel = run.rollback_cancel if rollback else run.cancel
        host_name = getattr(host, "name", None)
        on_output: Callable[[str, str], None] | None = None
        live = run.journal.output if run.journal.active else None  # runproc serve shows it as it runs
        if run.wants_output or live is not None:
            shown = run.wants_output

            def on_output(stream: str, text: str) -> None:
                text = red(text)
                if shown:
                    run.output(step_id, stream, text, host_name)
                if live is not None:
                    live(step_id, stream, text, host_name)

        def on_progress(message: str) -> None:
            run.progress(step_id, red(message), host_name)

        def run_child(file: str, params: dict[str, Any], *, dry_run: bool = False) -> Any:
            return run.run_child(file, params, dry_run=dry_run, cancel=cancel, parent_step=step_id)

        return StepContext(
            step_id=step_id, workdir=run.workdir, dry_run=run.dry_run, offline=run.offline,
            deadline=time.monotonic() + timeout if timeout else None, cancel=cancel,
            env={k: str(v) for k, v in body.env.items()}, connections=run.proc.connections,
            resources=run.resources, log_dir=run.log_dir, host=host, yes=run.yes,
            interactive=run.ask is not None, ask=self.asker(step_id, body, cancel), readonly=readonly,
            # every render goes through the run's taint: a value derived from a secret is masked
            render=lambda v: taint.run(ex.render_value, ns, v),
            render_shell=lambda t: taint.run(_render_shell, ns, t),
            render_shell_exec=lambda t: taint.run(_render_shell_exec, ns, t),
            render_sql=lambda t: taint.run(ex.render_sql, ns, t),
            evaluate=lambda e: ex.evaluate(e, ns), redact=red, protect=taint.protect, on_output=on_output,
            on_progress=on_progress, run_child=run_child)

    def asker(self, step_id: str, body: Body, cancel: Any) -> Any:
        """What a step asks a person through: for a confirm step of a journaled run, a gate that
        also takes the answer from runproc approve or the web page (approvals.py); else the
        terminal's asker, if any."""
        run = self.run
        if getattr(body.action, "kind", None) != "confirm" or not run.journal.active:
            return run.ask
        from .approvals import Gate

        return Gate(run.journal, step_id, run.ask, cancel, str(getattr(run, "run_id", "")))

    def describe(self, executor: Executor, options: Any, ctx: StepContext) -> str:
        """The rendered action for plans and reports; never the reason a step fails."""
        try:
            return self.run.redactor(executor.describe(options, ctx))
        except ex.UnknownValueError as exc:
            return f"<depends on {exc.unknown.label}, unknown until the run>"
        except ex.ExpressionError as exc:
            return f"<cannot render: {self.run.redactor(str(exc))}>"
        except Exception as exc:  # noqa: BLE001 - a plugin's describe must not take the step down
            return f"<cannot describe: {self.run.redactor(f'{type(exc).__name__}: {exc}')}>"

    # ------------------------------------------------------------ actions with retry

    def attempt(self, step_id: str, body: Body, ns: dict[str, Any], *, host: Any = None,
                readonly: bool = False, rollback: bool = False, until: str | None = None,
                rehearse: bool = False, on_start: Callable[[str], bool] | None = None
                ) -> tuple[Result, int, str]:
        """Execute a body's action with its retry policy; return (result, attempts, description).
        ``on_start`` hears the rendered action before it first runs (the journal commits it).

        ``timeout`` bounds each attempt (as Ansible's per-task timeout with ``retries``); the
        whole step may take ``attempts * (timeout + delay)``.
        """
        assert body.action is not None
        executor = get_executor(body.action.kind)()
        options = body.action.options
        retry = body.retry
        attempts = retry.attempts if retry else 1
        delay = retry.delay if retry else 0.0
        until = until if until is not None else (retry.until if retry else None)
        cancel = self.run.rollback_cancel if rollback else self.run.cancel
        description = ""
        res = Result(False, {}, "not run")
        n = 0
        for n in range(1, attempts + 1):
            ctx = self.context(step_id, body, ns, host=host, readonly=readonly, rollback=rollback)
            if n == 1:
                description = self.describe(executor, options, ctx)
                if on_start is not None:
                    if on_start(description) is False:  # the journal found the store gone
                        return Result(False, {}, NOT_STARTED, cancelled=True), 0, description
                else:
                    # a check or an undo: the previous step's end, if held, is on disk first
                    self.run.journal.flush()
            try:
                with ex.executing():
                    if rehearse:
                        rehearsed = executor.rehearse(options, ctx)
                        res = rehearsed if rehearsed is not None else Result(True, {}, planned=True)
                    else:
                        res = executor.execute(options, ctx)
            except ex.UnknownValueError:
                raise
            except ex.ExpressionError as exc:  # a template that cannot render: its message says it all
                res = Result(False, {}, str(exc))
            except Exception as exc:  # noqa: BLE001 - an executor's unexpected error is the step's error
                res = Result(False, {}, error_text(exc),
                             error_kind=ENVIRONMENT if environment_error(exc) else None)
            res.error = self.run.redactor(res.error) if res.error else res.error
            res.fields = self.run.redactor.deep(res.fields)
            if res.ok and until and not res.planned:
                try:
                    if not ex.evaluate(until, {**ns, "result": result_view(res)}):
                        res = Result(False, res.fields, f"until not met: {until.strip()}", error_kind=ASSERTION)
                except ex.ExpressionError as exc:
                    res = Result(False, res.fields, self.run.redactor(str(exc)))
            if res.ok or res.cancelled or isinstance(res, Refusal) or n == attempts:
                break
            if cancel.is_set():
                break
            self.run.retrying(step_id, n, delay, res.error, getattr(host, "name", None))
            if _wait(cancel, delay):
                res = Result(False, res.fields, "interrupted while waiting to retry", cancelled=True)
                break
            if retry:
                delay = delay * retry.backoff
                if retry.max_delay is not None:
                    delay = min(delay, retry.max_delay)
        return res, n, description

    # ------------------------------------------------------------ checks

    def check(self, step_id: str, check: Check, ns: dict[str, Any], *, host: Any = None,
              own: Result | None = None) -> tuple[bool, str | None, str | None]:
        """Run a precondition or verification; (passed, reason, error kind). A check without an
        action judges ``own``, the step's own result, with its ``expect``."""
        label = check.name or self._default_name(check)
        named = f"{check.name}: " if check.name else ""
        if self.run.offline:
            return True, None, None
        if check.action is None:
            assert check.expect is not None and own is not None  # the loader allows it in verify only
            try:
                if ex.evaluate(check.expect, {**ns, "result": result_view(own)}):
                    return True, None, None
            except ex.ExpressionError as exc:
                return False, f"{named}{self.run.redactor(str(exc))}", ASSERTION
            return False, f"{named}expected {check.expect.strip()}", ASSERTION
        if self.run.dry_run and _writes(check):
            # a check that would POST or mutate is not run by a dry run (keep writes out of checks)
            self.run.emit(Note("warning", f"{step_id}: check '{label}' not run in a dry run: it would write"))
            return True, None, None
        until = check.retry.until if check.retry and check.retry.until else check.expect
        try:
            res, _, _ = self.attempt(step_id, check, ns, host=host, readonly=True, until=until)
        except ex.UnknownValueError as exc:  # a dry run without a secret, or a planned step's result
            self.run.emit(Note("warning", f"{step_id}: check '{label}' not run: it needs "
                                          f"{exc.unknown.label}, unknown in a dry run"))
            return True, None, None
        if res.ok:
            return True, None, None
        reason = res.error or "failed"
        if check.expect and reason.startswith("until not met"):
            reason = f"expected {check.expect.strip()}"
        return False, f"{label}: {reason}", res.error_kind

    @staticmethod
    def _default_name(check: Check) -> str:
        if check.action is None:
            return f"expect: {(check.expect or '').strip()[:60]}"
        main = getattr(check.action.options, get_executor(check.action.kind).main_option, "")
        text = main if isinstance(main, str) else " ".join(map(str, main)) if isinstance(main, list) else ""
        return f"{check.action.kind}: {text.strip()[:60]}"

    # ------------------------------------------------------------ one step, one host (or local)

    def execute(self, step: Step, ns: dict[str, Any], sr: StepResult, *, host: Any = None) -> None:
        """Fill ``sr`` by running the step's action once (on ``host`` when given)."""
        run = self.run
        assert step.action is not None
        executor = get_executor(step.action.kind)()
        options = step.action.options
        try:
            safe = step.readonly or executor.effect(options) == Effect.READ
        except Exception as exc:  # noqa: BLE001 - a plugin's bug: fail the step, say why
            sr.status, sr.error = "failed", f"cannot tell whether it writes: {type(exc).__name__}: {exc}"
            return
        if run.offline and not executor.plans_offline:
            ctx = self.context(step.id, step, ns, host=host)
            sr.description = self.describe(executor, options, ctx)
            sr.status = "planned"
            return
        if run.expected_actions is not None:
            # before the step's preconditions too: an action the plan did not show is refused
            # before this step does anything at all (the failure then rolls back what ran)
            departure = self.departure_from_plan(step, executor, options, ns, host)
            if departure is not None:
                sr.description, sr.error = departure
                sr.status = "failed"
                return
        for check in step.preconditions:
            passed, reason, kind = self.check(step.id, check, ns, host=host)
            if not passed:
                sr.status, sr.error, sr.error_kind = "failed", f"precondition failed: {reason}", kind
                ctx = self.context(step.id, step, ns, host=host)
                sr.description = self.describe(executor, options, ctx)
                return
        rehearse = run.dry_run and not safe
        reach = getattr(getattr(host, "transport", None), "reach", None)
        if rehearse and reach is not None:
            # a planned write on a host proves the host is there: an unreachable one would fail
            # the real run, so it fails the plan (Ansible's check mode connects too)
            try:
                reach()
            except Exception as exc:  # noqa: BLE001 - SshError, OSError: the host's own failure
                sr.description = self.describe(executor, options, self.context(step.id, step, ns, host=host))
                sr.status, sr.error = "failed", error_text(exc)
                sr.error_kind = ENVIRONMENT if environment_error(exc) else None
                return
        journal = run.journal
        host_name = getattr(host, "name", None)

        def started(action: str) -> bool:
            if host_name is None:
                return journal.step_started(step.id, sr.phase, action)
            journal.host_started(step.id, host_name, action)
            return True

        res, attempts, description = self.attempt(step.id, step, ns, host=host, readonly=step.readonly,
                                                  rehearse=rehearse, on_start=started if journal.active else None)
        sr.attempts, sr.description, sr.fields = attempts, description, res.fields
        if step.action.kind == "confirm" and journal.active and "approved" in res.fields:
            how = str(res.fields.get("how") or "terminal")
            # with --yes, the approver is whoever passed it
            by = user_name() if how == "--yes" else res.fields.get("by")
            journal.approval(step.id, bool(res.fields.get("approved")), by, how, res.fields.get("comment"),
                             res.fields.get("role"))
        if isinstance(res, Refusal):
            sr.status, sr.error = "failed", res.error
            sr.notes.append("refused")
            return
        if not res.ok:
            sr.status = "timed_out" if res.timed_out else ("cancelled" if res.cancelled else "failed")
            sr.error, sr.error_kind = res.error, res.error_kind
            return
        if rehearse or res.planned:
            sr.status = "planned"
            if res.note:
                sr.notes.append(res.note)
            elif rehearse and not res.planned:
                sr.notes.append("rehearsed: the target accepted the change without applying it")
            return
        if step.verify:
            vns = {**ns, "steps": {**ns["steps"], step.id: {**res.fields, "ok": True, "status": "ok"}}}
            for check in step.verify:
                passed, reason, kind = self.check(step.id, check, vns, host=host, own=res)
                if not passed:
                    # the action did complete: on failure, its rollback must run
                    sr.changed = True
                    sr.status, sr.error, sr.error_kind = "failed", f"verify failed: {reason}", kind
                    return
        sr.status = "ok"

    def departure_from_plan(self, step: Step, executor: Executor, options: Any, ns: dict[str, Any],
                            host: Any) -> tuple[str, str] | None:
        """(action now, error) when the action would not be the one a saved plan showed; else None.

        A host of a fanned-out step is held to its own planned action (``id@host``: an action
        may use ``host.*``), else to the step's entry (the plan skipped the whole step). Steps
        the plan could not render fully have no entry and are not compared.
        """
        expected = self.run.expected_actions
        assert expected is not None
        key = step.id if host is None else f"{step.id}@{getattr(host, 'name', host)}"
        if key not in expected:
            key = step.id
            if key not in expected:
                return None
        planned = expected[key]
        now = self.describe(executor, options, self.context(step.id, step, ns, host=host))
        if planned is None:
            return now, f"not in the saved plan: the plan skipped it (when false), now it would run: {now}"
        if now == planned:
            return None
        return now, f"differs from the saved plan: planned {planned!r} now {now!r}"

    def rollback(self, step: Step, ns: dict[str, Any], *, host: Any = None) -> tuple[bool, str | None, str]:
        assert step.rollback is not None
        res, _, description = self.attempt(step.id, step.rollback, ns, host=host, rollback=True)
        return res.ok, res.error, description


def _render_shell(template: str, ns: dict[str, Any]) -> str:
    """A command template as a plan shows it: each value as text where it stands (shell.py)."""
    if not ex.is_template(template):
        return template
    from ..executors.shell import QUOTER, quote_in, shell_template

    rewritten = shell_template(template)
    try:
        return ex.render(rewritten, {**ns, QUOTER: quote_in}, "shell")
    except ex.UnknownValueError:
        raise
    except ex.ExpressionError as exc:  # say it in the author's words, not the rewritten ones
        raise ex.ExpressionError(str(exc).replace(rewritten.strip(), template.strip())) from None


def _render_shell_exec(template: str, ns: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """A command template as it runs: values referenced as environment variables, and their values."""
    if not ex.is_template(template):
        return template, {}
    from ..executors.shell import bind_values, unbind_values

    token, values = bind_values()
    try:
        return _render_shell(template, ns), values
    finally:
        unbind_values(token)


def _writes(body: Body) -> bool:
    """Whether a body's executor knows that this call writes (an HTTP POST, a kubectl patch)."""
    assert body.action is not None
    cls = get_executor(body.action.kind)
    try:
        return cls.knows_effect and cls().effect(body.action.options) == Effect.WRITE
    except Exception:  # noqa: BLE001 - cannot tell: do not run it in a dry run
        return True


def _wait(cancel: threading.Event, delay: float) -> bool:
    """Sleep ``delay`` unless cancelled; True when cancelled."""
    return cancel.wait(delay) if delay > 0 else cancel.is_set()
