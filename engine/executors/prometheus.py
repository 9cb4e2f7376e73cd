"""``prometheus``: a PromQL query over Prometheus' HTTP API, so a check can gate on a metric.

An instant query (``/api/v1/query``, at ``time`` or now) or a range query
(``/api/v1/query_range`` over ``range: {start, end, step}``) against a ``prometheus``
connection or a ``url``. A query only reads: it runs in a dry run like any readonly step, and
as a check (``expect: result.value < 0.01``) with ``retry`` to wait until a metric is healthy.

Errors are one line: Prometheus' own (``errorType: error``, e.g. a PromQL syntax error is
``bad_data``), or the URL that could not be reached. Values in the query are placed by
``promql.build_query`` so that they never become PromQL. One ``httpx.Client`` per connection
per run lives in ``ctx.resources``; the request runs in a helper thread so that the step's
deadline and an interrupt are honoured while a slow query runs. httpx is imported inside
functions: loading a procedure must not pay for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import field_validator, model_validator

from ..format.durationfield import Duration
from ..format.durations import format_duration
from ..format.expressions import to_text
from .base import ASSERTION, ENVIRONMENT, Effect, Executor, Options, Result, StepContext
from .http import join_url, protect_credentials, shown_url
from .promql import build_query, check_time, default_step, one_line, parse_time, shape, show_time

DEFAULT_TIMEOUT = 30.0
WATCH_INTERVAL = 0.05
POST_ABOVE = 2000  # characters of query sent in the URL; longer ones go as a form (POST)
SNIPPET = 200  # characters of a non-JSON answer quoted in an error
# Prometheus' errorType values that say the server cannot serve queries (not the query's fault)
_UNAVAILABLE = frozenset({"unavailable", "internal"})


class PromRange(Options):
    start: str | int | float
    end: str | int | float = "now"
    step: Duration | None = None

    @field_validator("start", "end")
    @classmethod
    def _time(cls, value: str | int | float) -> str | int | float:
        return check_time(value)

    @field_validator("step")
    @classmethod
    def _step(cls, value: float | None) -> float | None:
        if value is not None and value <= 0:
            raise ValueError("step must be more than 0")
        return value


class PrometheusOptions(Options):
    query: str
    url: str | None = None
    connection: str | None = None
    time: str | int | float | None = None
    range: PromRange | None = None
    timeout: Duration | None = None

    @field_validator("range", mode="before")
    @classmethod
    def _range_short(cls, value: Any) -> Any:
        # `range: 30m` is the last 30 minutes, step chosen for about 250 points
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return {"start": f"now-{value}"}
        return value

    @field_validator("time")
    @classmethod
    def _time(cls, value: str | int | float | None) -> str | int | float | None:
        return None if value is None else check_time(value)

    @model_validator(mode="after")
    def _one_kind(self) -> PrometheusOptions:
        if self.time is not None and self.range is not None:
            raise ValueError("give 'time' (an instant query) or 'range' (a range query), not both")
        if self.url is not None and self.connection is not None:
            raise ValueError("give 'url' or 'connection', not both")
        return self


@dataclass
class _Call:
    base: str  # the server's URL, as the connection or `url` gives it
    path: str
    params: dict[str, str]
    query: str
    timeout: float
    capped: bool  # the timeout was cut to the step's remaining time
    client_key: str
    conn: Any

    @property
    def what(self) -> str:
        return f"prometheus {shown_url(self.base)}"


class PrometheusExecutor(Executor):
    knows_effect = True  # a query never writes
    name = "prometheus"
    main_option = "query"
    Options = PrometheusOptions
    connection_kinds = ("prometheus",)
    result_fields = ("value", "series", "count", "result_type", "warnings")

    def effect(self, options: PrometheusOptions) -> Effect:
        return Effect.READ

    def uses_connection(self, options: PrometheusOptions) -> bool:
        return options.url is None

    def describe(self, options: PrometheusOptions, ctx: StepContext) -> str:
        try:
            query = one_line(build_query(ctx.render_sql(options.query)))
        except ValueError as exc:
            query = f"{one_line(options.query)} ({exc})"
        where = options.connection or options.url or "?"
        if options.url is None and options.connection is None:
            with contextlib.suppress(ValueError, KeyError):  # execute says why there is none
                where = ctx.connection(None, self.connection_kinds)[0]
        text = f"prometheus[{shown_url(to_text(ctx.render(where)))}]: {query}"
        if options.range is not None:
            r = options.range
            step = f", step {r.step:g}s" if r.step else ""
            text += f" (range {show_time(ctx.render(r.start))} to {show_time(ctx.render(r.end))}{step})"
        elif options.time is not None:
            text += f" (at {show_time(ctx.render(options.time))})"
        return ctx.redact(text)

    def _call(self, options: PrometheusOptions, ctx: StepContext) -> _Call:
        conn: Any = None
        if options.url is not None:
            base = to_text(ctx.render(options.url))
        else:
            _, conn = ctx.connection(options.connection, self.connection_kinds)
            base = to_text(ctx.render(conn.url))
        protect_credentials({"url": base}, ctx)
        query = build_query(ctx.render_sql(options.query))
        now = time.time()
        params = {"query": query}
        if options.range is not None:
            r = options.range
            start, end = parse_time(ctx.render(r.start), now), parse_time(ctx.render(r.end), now)
            if end <= start:
                raise ValueError(f"range: the end ({show_time(r.end)}) is not after the start ({show_time(r.start)})")
            step = r.step or default_step(start, end)
            params.update(start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step:g}")
            path = "/api/v1/query_range"
        else:
            if options.time is not None:
                params["time"] = f"{parse_time(ctx.render(options.time), now):.3f}"
            path = "/api/v1/query"
        timeout = options.timeout or (conn.timeout if conn is not None and conn.timeout else DEFAULT_TIMEOUT)
        remaining = ctx.remaining()
        capped = remaining is not None and remaining < timeout
        if capped:
            timeout = max(remaining or 0.0, 0.001)
        # Prometheus stops evaluating at its own `timeout` too: a query abandoned here does not
        # keep the server busy
        params["timeout"] = f"{max(timeout, 0.001):.3f}"
        identity = hashlib.sha1(conn.model_dump_json().encode()).hexdigest()[:12] if conn is not None else "url"
        return _Call(base, path, params, query, timeout, capped, f"prometheus:{identity}:{base}", conn)

    def execute(self, options: PrometheusOptions, ctx: StepContext) -> Result:
        try:
            call = self._call(options, ctx)
        except (ValueError, KeyError) as exc:
            return Result(False, {}, ctx.redact(f"prometheus: {exc}"))
        remaining = ctx.remaining()
        if remaining is not None and remaining <= 0:
            return Result(False, {}, f"{call.what}: timed out before the query was sent", timed_out=True)
        client = _client(call, ctx)  # on the step's thread: the run's resources are opened here
        outcome = _in_thread(lambda: _send(client, call), ctx, call)
        if isinstance(outcome, Result):
            return outcome
        status, reason, body = outcome
        return _judge(call, status, reason, body, ctx)


def _client(call: _Call, ctx: StepContext) -> Any:
    def open_client() -> Any:
        import ssl

        import httpx

        headers: dict[str, str] = {}
        verify: Any = True
        if call.conn is not None:
            headers = {str(k): to_text(ctx.render(v)) for k, v in call.conn.headers.items()}
            protect_credentials(headers, ctx)
            verify = call.conn.verify
            if isinstance(verify, str):  # a CA bundle, relative to the procedure's folder
                from pathlib import Path

                ca = Path(to_text(ctx.render(verify))).expanduser()
                verify = ssl.create_default_context(cafile=str(ca if ca.is_absolute() else ctx.workdir / ca))
        return httpx.Client(headers=headers, verify=verify, follow_redirects=False)

    return ctx.resources.get(call.client_key, open_client, lambda c: c.close())


def _send(client: Any, call: _Call) -> tuple[int, str, bytes]:
    import httpx

    url = join_url(call.base, call.path)
    timeout = httpx.Timeout(call.timeout)
    if len(call.query) > POST_ABOVE:  # the API takes the same parameters as a form
        resp = client.post(url, data=call.params, timeout=timeout)
    else:
        resp = client.get(url, params=call.params, timeout=timeout)
    return resp.status_code, resp.reason_phrase, resp.content


def _in_thread(work: Callable[[], tuple[int, str, bytes]], ctx: StepContext, call: _Call) -> tuple[int, str, bytes] | Result:
    """Run the request in a helper thread; a Result when it failed, was interrupted or timed out."""
    import httpx

    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            box["answer"] = work()
        except BaseException as exc:  # noqa: BLE001 - handed to the step's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"prometheus-{ctx.step_id}", daemon=True).start()
    while not done.wait(WATCH_INTERVAL):
        # an abandoned request ends at its own timeout; Prometheus stops at the `timeout` it was sent
        if ctx.cancel.is_set():
            return Result(False, {}, f"{call.what}: interrupted", cancelled=True)
        left = ctx.remaining()
        if left is not None and left <= -0.5:  # httpx's own timeout normally fires first
            return Result(False, {}, f"{call.what}: timed out (step timeout)", timed_out=True)
    error = box.get("error")
    if error is None:
        return box["answer"]  # type: ignore[no-any-return]
    if isinstance(error, httpx.TimeoutException):
        if call.capped:
            return Result(False, {}, ctx.redact(f"{call.what}: timed out (step timeout)"), timed_out=True)
        kind = ENVIRONMENT if isinstance(error, httpx.ConnectTimeout) else None
        return Result(False, {}, ctx.redact(f"{call.what}: no answer within {format_duration(call.timeout)} "
                                            f"({type(error).__name__})"), error_kind=kind)
    if isinstance(error, httpx.ConnectError):  # refused, no such name, TLS handshake
        detail = " ".join(str(error).split()) or type(error).__name__
        return Result(False, {}, ctx.redact(f"{call.what}: cannot connect: {detail}"), error_kind=ENVIRONMENT)
    if isinstance(error, httpx.HTTPError | httpx.InvalidURL):
        detail = " ".join(str(error).split())
        return Result(False, {}, ctx.redact(f"{call.what}: {type(error).__name__}: {detail}"),
                      error_kind=ENVIRONMENT)
    raise error


def _judge(call: _Call, status: int, reason: str, body: bytes, ctx: StepContext) -> Result:
    """The answer as a Result: Prometheus' JSON (success or its error), or why it is not one."""
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("status") not in ("success", "error"):
        snippet = " ".join(body.decode("utf-8", errors="replace").split())[:SNIPPET]
        # no Prometheus API at that URL (a 404 page, a proxy's login form): the run would meet it too
        return Result(False, {}, ctx.redact(f"{call.what}: HTTP {status} {reason}, not a Prometheus API answer"
                                            + (f": {snippet}" if snippet else "")
                                            + f" (query: {one_line(call.query, 120)})"),
                      error_kind=ENVIRONMENT)
    warnings = [" ".join(str(w).split()) for w in doc.get("warnings") or []]
    for warning in warnings:
        ctx.progress(f"prometheus warning: {warning}")
    if doc["status"] == "error":
        error_type = str(doc.get("errorType") or f"HTTP {status}")
        message = " ".join(str(doc.get("error") or "").split())
        kind = ENVIRONMENT if error_type in _UNAVAILABLE or status in (401, 403) else None
        return Result(False, {"warnings": warnings} if warnings else {},
                      ctx.redact(f"{call.what}: {error_type}: {message} (query: {one_line(call.query, 120)})"),
                      error_kind=kind)
    fields = {**shape(doc.get("data") or {}), "warnings": warnings}
    if fields["count"] == 0 and fields["result_type"] in ("vector", "matrix"):
        ctx.progress("the query matched no series: result.value is null")
    if status >= 400:  # a success document with an error status: trust the status
        return Result(False, fields, f"{call.what}: HTTP {status} {reason}", error_kind=ASSERTION)
    return Result(True, fields)
