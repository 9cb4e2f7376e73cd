"""One OpenTelemetry trace per run, built from the run's events (docs/traces.md).

``TraceSink`` is an ``on_event`` consumer that wraps another (the console): it turns each
event into spans, then hands the event on. It never changes how a run goes: nothing here
raises into the run, and an export that fails is said once, as a warning line, at the end.

The spans:

- ``run <procedure>``: the root, from ``RunStarted`` to ``RunFinished``;
- ``step <id>``: a step (``finally`` and ``on_failure`` steps too), a child of the root, from
  ``StepStarted`` to ``StepFinished``; a child procedure's steps are children of the step
  that ran it, timed by their results;
- ``host <name>``: a host of a fanned-out step (``item <label>``: an iteration of a loop), a
  child of its step, timed by its result (``started_at``, ``duration``);
- ``attempt <n>``: each try of a step (or of a host) that retried, a child of the step (or
  host): from its start, or the end of the wait before it, to the next ``StepRetrying`` or
  the end;
- ``rollback <id>``: a step's undo, a child of the root, from ``RollbackStarted`` to
  ``RollbackFinished``.

Status: OK for ok, planned and skipped; ERROR, with the error's first line, for failed,
timed out and a failed undo; unset for a step that never started (cancelled). Attributes
are few and plain (``runproc.*``: run id, procedure, step id and phase, executor, host,
attempt, dry run, status, the rendered action); every string passes through the run's
redactor, so a secret, or a value derived from one, never leaves in a span.

The SDK is a private ``TracerProvider`` (never the global one: an embedder's own tracing is
theirs) with a ``BatchSpanProcessor``: spans leave in the background as they end, and the end
of the run waits for the last of them at most the exporter's timeout
(``OTEL_EXPORTER_OTLP_TIMEOUT``, 10 s by default). The SDK's own log records are kept from the
terminal; the last error among them is the warning's reason.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import UsageError
from ..execution import events as ev
from ..execution.results import StepResult
from . import INSTALL_HINT, shown_endpoint, traces_endpoint

OK_STATUSES = frozenset({"ok", "planned", "skipped"})
ERROR_STATUSES = frozenset({"failed", "timed_out", "rollback_failed", "refused", "interrupted",
                            "rollback_incomplete"})
_STEP_PHASES = ("step", "finally", "on_failure")
_ERROR_CHARS = 500  # a status description: the error's first line, cut here
_ACTION_CHARS = 300


class TracingUnavailable(UsageError):
    """``--otel`` without the OpenTelemetry SDK installed (exit 2, with the install hint)."""


def _first_line(text: str | None, limit: int = _ERROR_CHARS) -> str:
    line = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _iso_ns(stamp: str | None) -> int | None:
    """A result's ``started_at`` (ISO 8601, ms) as nanoseconds since the epoch."""
    if not stamp:
        return None
    try:
        return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1e9)
    except (TypeError, ValueError):
        return None


class _LastError(logging.Handler):
    """Keeps the SDK's records off the terminal; remembers the last warning or error as the reason."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.reason is not None:
            return  # the first says why (the cause); later ones say it was given up
        try:
            self.reason = record.getMessage()
        except Exception:  # noqa: BLE001 - an odd record: no reason rather than no run
            self.reason = None


class _Open:
    """A step's span while it runs, and the retries heard for it (per host: ``None`` is the step)."""

    def __init__(self, span: Any, start: int) -> None:
        self.span = span
        self.start = start
        self.retries: dict[str | None, list[tuple[int, int, float, str | None]]] = {}


class TraceSink:
    """An ``on_event`` consumer that exports the run's trace, then hands each event to ``inner``.

    ``say`` hears the one warning line of an export that failed (default: stderr). A sink
    traces one run: the first ``RunFinished`` flushes and shuts its exporter down.
    """

    def __init__(self, inner: Callable[[ev.Event], None] | None, *, say: Callable[[str], None] | None = None,
                 explicit: bool = True) -> None:
        self.inner = inner
        # the run decodes output only for a consumer that shows it; spans never carry output
        self.wants_output = bool(inner is not None and getattr(inner, "wants_output", True))
        self.say = say or _stderr
        self.endpoint = traces_endpoint()
        self.proc: Any = None
        self.run: Any = None
        self.redact: Callable[[str], str] = _redact_everywhere
        self.done = False
        self.root: Any = None
        self.root_start = 0
        self.run_id: str | None = None
        self.dry_run = False
        self.steps: dict[str, _Open] = {}
        self.finished: dict[str, StepResult] = {}
        self.rollbacks: dict[str, tuple[Any, int]] = {}
        self.exported = 0
        self.failed_exports = 0
        self._provider: Any = None
        protocol = _protocol()
        if protocol not in ("", "http/protobuf"):
            # the spans still go out over HTTP: a collector usually takes both, on 4318 and 4317
            self.say(f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: runproc exports OTLP over HTTP (http/protobuf) "
                     f"only, to {shown_endpoint(self.endpoint)}")
        try:
            self._start_sdk()
        except ImportError as exc:
            if explicit:
                raise TracingUnavailable(f"runproc: --otel needs the OpenTelemetry SDK ({exc.name or exc} "
                                         f"is not installed): {INSTALL_HINT}") from None
            self.say(f"traces are off: OTEL_EXPORTER_OTLP_ENDPOINT is set, but the OpenTelemetry SDK "
                     f"is not installed ({INSTALL_HINT})")
            self.done = True

    # ------------------------------------------------------------ the SDK

    def _start_sdk(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
        from opentelemetry.trace import SpanKind, Status, StatusCode, set_span_in_context

        from ..version import __version__

        self._Status, self._StatusCode, self._in_context = Status, StatusCode, set_span_in_context
        self._kind = SpanKind.INTERNAL
        self._log = _LastError()
        self._sdk_log = logging.getLogger("opentelemetry")
        self._sdk_log.addHandler(self._log)
        self._sdk_log.propagate = False  # the SDK's retries and failures are said once, by this sink
        resource = Resource.create()
        service = str(resource.attributes.get("service.name") or "")
        if not service or service.startswith("unknown_service"):  # OTEL_SERVICE_NAME wins when set
            resource = resource.merge(Resource({"service.name": "runproc"}))
        if "service.version" not in resource.attributes:
            resource = resource.merge(Resource({"service.version": __version__}))
        sink = self

        class Watched(SpanExporter):
            """The OTLP exporter, counting what left and what did not (never raising)."""

            def __init__(self) -> None:
                self.inner = OTLPSpanExporter()  # endpoint, headers, timeout, TLS: the OTEL_* environment

            def export(self, spans: Any) -> SpanExportResult:
                try:
                    result = self.inner.export(spans)
                except Exception as exc:  # noqa: BLE001 - a failed export is a warning, never the run's end
                    sink._log.reason = f"{type(exc).__name__}: {exc}"
                    result = SpanExportResult.FAILURE
                if result == SpanExportResult.SUCCESS:
                    sink.exported += len(spans)
                else:
                    sink.failed_exports += len(spans)
                return result

            def shutdown(self) -> None:
                self.inner.shutdown()

            def force_flush(self, timeout_millis: int = 30000) -> bool:
                return True

        self.exporter = Watched()
        self.timeout = export_timeout()
        self._provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        self._provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer = self._provider.get_tracer("runproc", __version__)

    # ------------------------------------------------------------ the consumer

    def bind_run(self, run: Any) -> None:
        """The run this sink hears (``Run.__init__`` calls it): its procedure names each step's
        executor, its redactor masks every attribute."""
        self.run = run
        self.proc = getattr(run, "proc", None)
        redactor = getattr(run, "redactor", None)
        if redactor is not None:
            self.redact = redactor
        bind = getattr(self.inner, "bind_run", None)
        if bind is not None:
            bind(run)

    def bind_procedure(self, proc: Any) -> None:
        """A run on the Temporal engine: no local Run, but the procedure names the executors."""
        self.proc = proc

    def __getattr__(self, name: str) -> Any:
        # the console's own methods (pause, resume...) for whoever holds the wrapped sink
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)

    def __call__(self, event: ev.Event) -> None:
        if not self.done:
            try:
                self._see(event)
            except Exception as exc:  # noqa: BLE001 - a trace never takes a run down
                self._log.reason = f"{type(exc).__name__}: {exc}"
                self.failed_exports += 1
        try:
            if self.inner is not None:
                self.inner(event)
        finally:  # a consumer that raises at the end still leaves the trace exported
            if isinstance(event, ev.RunFinished) and not self.done:
                self.close()

    # ------------------------------------------------------------ events to spans

    def _see(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            self._run_started(e)
        elif self.root is None and not isinstance(e, ev.RunFinished) and not self._replay_root():
            return  # a sink that joined mid-run: nothing to hang spans on
        elif isinstance(e, ev.StepStarted):
            if e.phase in _STEP_PHASES and e.step_id not in self.steps:
                now = time.time_ns()
                span = self._span(f"step {e.step_id}", self.root, now, self._step_attributes(e.step_id, e.phase))
                self.steps[e.step_id] = _Open(span, now)
        elif isinstance(e, ev.StepRetrying):
            opened = self.steps.get(e.step_id)
            if opened is not None:
                host = getattr(e, "host", None)
                opened.retries.setdefault(host, []).append((time.time_ns(), e.attempt, e.delay, e.error))
        elif isinstance(e, ev.StepFinished):
            self._step_finished(e)
        elif isinstance(e, ev.RollbackStarted):
            now = time.time_ns()
            attributes = self._step_attributes(e.step_id, "rollback", rollback=True)
            self.rollbacks[e.step_id] = (self._span(f"rollback {e.step_id}", self.root, now, attributes), now)
        elif isinstance(e, ev.RollbackFinished):
            opened_undo = self.rollbacks.pop(e.step_id, None)
            if opened_undo is not None:
                span, _ = opened_undo
                status = "ok" if e.ok else "rollback_failed"
                span.set_attribute("runproc.status", status)
                self._status(span, status, e.error)
                span.end(end_time=time.time_ns())
        elif isinstance(e, ev.PreconditionChecked):
            attributes: dict[str, Any] = {"runproc.precondition": self.redact(e.name), "runproc.ok": e.ok}
            if e.error:
                attributes["runproc.error"] = self.redact(_first_line(e.error))
            self.root.add_event("precondition", attributes)
        elif isinstance(e, ev.Interrupted):
            self.root.add_event("interrupted", {"runproc.interrupts": e.count})
        elif isinstance(e, ev.Note) and e.level == "warning":
            self.root.add_event("warning", {"runproc.message": self.redact(_first_line(e.text))})
        elif isinstance(e, ev.RunFinished):
            self._run_finished(e)

    def _run_started(self, e: ev.RunStarted) -> None:
        if self.root is not None:
            return  # one trace per sink: a second run is not traced (embedders: a sink per run)
        self.run_id, self.dry_run = e.run_id, e.dry_run
        self.root_start = time.time_ns()
        attributes = {"runproc.run_id": e.run_id, "runproc.procedure": self.redact(e.procedure),
                      "runproc.dry_run": e.dry_run, "runproc.offline": e.offline}
        self.root = self._span(f"run {self.redact(e.procedure)}", None, self.root_start, attributes)

    def _replay_root(self) -> bool:
        """``runproc rollback`` undoes a recorded run without starting one: its root opens with
        the first undo, named by the run it was bound to."""
        run = self.run
        if run is None or getattr(run, "proc", None) is None:
            return False
        self.run_id, self.dry_run = str(run.run_id), bool(run.dry_run)
        self.root_start = time.time_ns()
        procedure = self.redact(str(run.proc.procedure))
        self.root = self._span(f"run {procedure}", None, self.root_start,
                               {"runproc.run_id": self.run_id, "runproc.procedure": procedure,
                                "runproc.dry_run": self.dry_run, "runproc.replay": "rollback"})
        return True

    def _step_finished(self, e: ev.StepFinished) -> None:
        result = e.result
        now = time.time_ns()
        if e.phase.startswith("child"):
            # a child procedure's step, forwarded as it ended: under the step that ran the child
            parent_step = e.phase.partition(":")[2]
            parent = self.steps[parent_step].span if parent_step in self.steps else self.root
            start = _iso_ns(result.started_at) or now
            span = self._span(f"step {e.step_id}", parent, start, self._step_attributes(e.step_id, e.phase))
            opened = _Open(span, start)
            end = max(start, start + int(result.duration * 1e9)) if result.started_at else now
        else:
            opened = self.steps.pop(e.step_id, None)  # type: ignore[assignment]
            if opened is None:  # finished without starting: skipped (when), or done by an earlier run
                attributes = self._step_attributes(e.step_id, e.phase)
                recorded = _iso_ns(result.started_at)
                if recorded is not None and recorded < self.root_start:
                    # runproc resume: the recorded result stands, the step is not run again; a
                    # point in this trace, not the earlier run's timing
                    attributes["runproc.recorded"] = True
                opened = _Open(self._span(f"step {e.step_id}", self.root, now, attributes), now)
            end = now
        self.finished[e.step_id] = result
        span = opened.span
        self._result_attributes(span, result)
        if result.hosts:
            for name, host_result in result.hosts.items():
                self._host(opened, e.step_id, e.phase, name, host_result, result.loop, end)
        else:
            self._attempts(span, self._step_attributes(e.step_id, e.phase), opened.retries.get(None, []),
                           opened.start, end, result)
        self._status(span, result.status, result.error)
        span.end(end_time=max(end, opened.start))

    def _host(self, opened: _Open, step_id: str, phase: str, name: str, result: StepResult, loop: bool,
              step_end: int) -> None:
        start = max(_iso_ns(result.started_at) or opened.start, opened.start)
        end = min(start + int(result.duration * 1e9), step_end) if result.started_at else start
        label = self.redact(name)
        attributes = self._step_attributes(step_id, phase)
        attributes["runproc.item" if loop else "runproc.host"] = label
        span = self._span(f"{'item' if loop else 'host'} {label}", opened.span, start, attributes)
        self._result_attributes(span, result)
        self._attempts(span, attributes, opened.retries.get(name, []), start, end, result)
        self._status(span, result.status, result.error)
        span.end(end_time=max(end, start))

    def _attempts(self, parent: Any, attributes: dict[str, Any], retries: list[tuple[int, int, float, str | None]],
                  start: int, end: int, result: StepResult) -> None:
        """One span per try of a step (or host) that retried: each ends at its retry event, the
        next begins after the wait."""
        if not retries:
            return
        begin = start
        for at, number, delay, error in retries:
            span = self._span(f"attempt {number}", parent, min(begin, at), {**attributes, "runproc.attempt": number})
            span.set_attribute("runproc.status", "failed")
            self._status(span, "failed", error or "failed")
            span.end(end_time=at)
            begin = at + int(delay * 1e9)
        last = retries[-1][1] + 1
        span = self._span(f"attempt {last}", parent, min(begin, end), {**attributes, "runproc.attempt": last})
        span.set_attribute("runproc.status", result.status)
        self._status(span, result.status, result.error)
        span.end(end_time=max(end, begin))

    def _run_finished(self, e: ev.RunFinished) -> None:
        result = e.result
        now = time.time_ns()
        if self.root is None:  # a run that never said it started: its trace from its result
            self.run_id = result.run_id
            start = _iso_ns(result.started_at) or now
            self.root = self._span(f"run {self.redact(result.procedure)}", None, start,
                                   {"runproc.run_id": result.run_id, "runproc.procedure": self.redact(result.procedure),
                                    "runproc.dry_run": result.dry_run})
        for step_id, opened in list(self.steps.items()):  # steps the run left (interrupted, abandoned)
            sr = result.steps.get(step_id)
            status = sr.status if sr is not None else "cancelled"
            opened.span.set_attribute("runproc.status", status)
            self._status(opened.span, status, sr.error if sr is not None else None)
            opened.span.end(end_time=now)
        self.steps.clear()
        for span, _ in self.rollbacks.values():
            self._status(span, "rollback_failed", "abandoned")
            span.end(end_time=now)
        self.rollbacks.clear()
        self.root.set_attribute("runproc.status", result.status)
        self.root.set_attribute("runproc.exit_code", int(result.exit_code))
        if result.root_cause:
            self.root.set_attribute("runproc.root_cause", self.redact(result.root_cause))
        if result.rolled_back:
            self.root.set_attribute("runproc.rolled_back", [self.redact(s) for s in result.rolled_back])
        if result.not_undone:
            self.root.set_attribute("runproc.not_undone", [self.redact(s) for s in result.not_undone])
        status = "ok" if result.exit_code == 0 else result.status
        error = result.error
        cause = result.steps.get(result.root_cause) if result.root_cause else None
        if cause is not None and cause.error:
            error = f"{result.root_cause}: {cause.error}"
        self._status(self.root, status if status in OK_STATUSES | ERROR_STATUSES else "failed", error)
        self.root.end(end_time=max(now, self.root_start))

    # ------------------------------------------------------------ span helpers

    def _span(self, name: str, parent: Any, start: int, attributes: dict[str, Any]) -> Any:
        context = self._in_context(parent) if parent is not None else None
        return self.tracer.start_span(name, context=context, kind=self._kind, start_time=start,
                                      attributes=attributes)

    def _step_attributes(self, step_id: str, phase: str, rollback: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"runproc.run_id": self.run_id or "", "runproc.step.id": self.redact(step_id),
                               "runproc.step.phase": phase, "runproc.dry_run": self.dry_run}
        kind = self._executor(step_id, rollback)
        if kind:
            out["runproc.executor"] = kind
        return out

    def _executor(self, step_id: str, rollback: bool) -> str | None:
        if self.proc is None or "/" in step_id:  # a child procedure's step: its file is the child's
            return None
        try:
            step = self.proc.step(step_id)
        except Exception:  # noqa: BLE001 - an id this procedure does not know (a recorded run's)
            return None
        body = getattr(step, "rollback", None) if rollback else step
        action = getattr(body, "action", None)
        return str(action.kind) if action is not None else None

    def _result_attributes(self, span: Any, result: StepResult) -> None:
        span.set_attribute("runproc.status", result.status)
        if result.attempts:
            span.set_attribute("runproc.attempts", int(result.attempts))
        if result.description:
            span.set_attribute("runproc.action", self.redact(_first_line(result.description, _ACTION_CHARS)))
        if result.error_kind:
            span.set_attribute("runproc.error_kind", result.error_kind)
        if result.hosts is not None:
            span.set_attribute("runproc.items" if result.loop else "runproc.hosts", len(result.hosts))

    def _status(self, span: Any, status: str, error: str | None) -> None:
        if status in OK_STATUSES:
            span.set_status(self._Status(self._StatusCode.OK))
        elif status in ERROR_STATUSES:
            span.set_status(self._Status(self._StatusCode.ERROR, self.redact(_first_line(error) or status)))

    # ------------------------------------------------------------ the end

    def close(self) -> None:
        """Export what is left (waiting at most the exporter's timeout), then say once if any
        span did not leave."""
        if self.done:
            return
        self.done = True
        provider = self._provider
        try:
            provider.force_flush(timeout_millis=int((self.timeout + 1) * 1000))
            provider.shutdown()
        except Exception as exc:  # noqa: BLE001 - said below, never raised into the run
            self._log.reason = f"{type(exc).__name__}: {exc}"
            self.failed_exports += 1
        self._sdk_log.removeHandler(self._log)
        if self.failed_exports:
            reason = self.redact(_first_line(self._log.reason, 200)) if self._log.reason else "no answer"
            self.say(f"traces not exported to {shown_endpoint(self.endpoint)} ({self.failed_exports} span(s) "
                     f"lost; the run is not affected): {reason}")


def export_timeout() -> float:
    """The exporter's timeout in seconds, as the SDK reads it (``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT``,
    else ``OTEL_EXPORTER_OTLP_TIMEOUT``, else 10)."""
    import os

    for name in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        try:
            return max(0.0, float(os.environ[name]))
        except (KeyError, ValueError):
            continue
    return 10.0


def _protocol() -> str:
    import os

    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = os.environ.get(name, "").strip().lower()
        if value:
            return value
    return ""


def _stderr(text: str) -> None:
    print(f"runproc: warning: {text}", file=sys.stderr)


def _redact_everywhere(text: str) -> str:
    redaction = sys.modules.get("engine.format.redaction")
    return redaction.redact_everywhere(text) if redaction is not None else text
