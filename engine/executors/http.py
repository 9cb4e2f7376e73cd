"""``http``: one HTTP request, with httpx, against a URL or a ``path`` on an ``http`` connection.

Values go into the request as fields (headers, query ``params``, ``json``), never through a
shell. In ``url`` and ``path``, a ``{{ }}`` value that lands in the path or query is
percent-encoded (``/users/{{ params.name }}`` with ``a/b?x`` asks for ``/users/a%2Fb%3Fx``),
so a value cannot add path segments or query parameters; a value that *starts* the URL or the
path (``url: "{{ vars.webhook }}"``) is taken as written, since it is the address itself.

One ``httpx.Client`` per connection per run (its ``headers``, ``timeout`` and ``verify``), kept
in ``ctx.resources``; URLs outside a connection share a default client. The request runs in a
helper thread so that the step's deadline and an interrupt are honoured even while a server
is slow to answer.

httpx is imported inside functions: ``runproc validate`` must not pay for it.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import field_validator, model_validator

from ..format.credentials import (
    SENSITIVE_NAME as SENSITIVE_HEADER,  # header names whose values are credentials
)
from ..format.durationfield import Duration
from ..format.durations import format_duration
from ..format.expressions import SqlIdent, SqlParam, to_text
from .base import ASSERTION, ENVIRONMENT, Effect, Executor, Options, Result, StepContext
from .sql import render_parts

BODY_LIMIT = 1024 * 1024  # `text` keeps at most 1 MiB; a longer body is not read further
DEFAULT_TIMEOUT = 30.0
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
WATCH_INTERVAL = 0.05
SNIPPET = 300  # characters of the body quoted in a failure message



def protect_credentials(settings: dict[str, str], ctx: StepContext) -> None:
    """A credential in a header or a URL is masked wherever it comes back (a server's echo)."""
    from ..format.credentials import credentials_in

    for name, value in settings.items():
        for credential in credentials_in(value, name):
            ctx.protect(credential)

StatusSpec = int | str | list[int | str]


def _status_item(item: int | str) -> tuple[int, int]:
    """An expected status as an inclusive range: 200 -> (200, 200), '2xx' -> (200, 299)."""
    if isinstance(item, bool):
        raise ValueError("expected a status code, not a boolean")
    if isinstance(item, int):
        if not 100 <= item <= 599:
            raise ValueError(f"{item} is not an HTTP status code (100-599)")
        return item, item
    text = item.strip().lower()
    if re.fullmatch(r"[1-5]xx", text):
        low = int(text[0]) * 100
        return low, low + 99
    if re.fullmatch(r"\d{3}", text):
        return _status_item(int(text))
    raise ValueError(f"expected a status code such as 200, a class such as '2xx', or a list of them; "
                     f"got {item!r}")


def status_ranges(spec: StatusSpec | None) -> list[tuple[int, int]]:
    if spec is None:
        return [(200, 399)]  # success and (unfollowed) redirects, as curl --fail sees it
    items = spec if isinstance(spec, list) else [spec]
    return [_status_item(i) for i in items]


def status_label(spec: StatusSpec | None) -> str:
    if spec is None:
        return "2xx or 3xx"
    items = spec if isinstance(spec, list) else [spec]
    return " or ".join(str(i) for i in items)


with warnings.catch_warnings():
    # the option is called `json` in the format; pydantic warns that it shadows BaseModel.json()
    warnings.filterwarnings("ignore", message='Field name "json"', category=UserWarning)

    class HttpOptions(Options):
        url: str | None = None
        path: str | None = None
        connection: str | None = None
        method: str = "GET"
        headers: dict[str, str | int | float | bool] = {}
        params: dict[str, Any] = {}
        json: Any = None
        body: str | None = None
        timeout: Duration | None = None
        expect_status: StatusSpec | None = None
        follow_redirects: bool = False
        verify: bool | str | None = None

        @field_validator("method")
        @classmethod
        def _method(cls, value: str) -> str:
            if "{{" in value:
                return value  # rendered at run time; effect() treats it as a write
            if not re.fullmatch(r"[A-Za-z]+", value):
                raise ValueError(f"not an HTTP method: {value!r}")
            return value.upper()

        @field_validator("expect_status")
        @classmethod
        def _expect(cls, value: StatusSpec | None) -> StatusSpec | None:
            status_ranges(value)  # raises with a readable message
            return value

        @model_validator(mode="after")
        def _target(self) -> HttpOptions:
            if (self.url is None) == (self.path is None):
                raise ValueError("give exactly one of 'url' (a full URL) or 'path' (on a connection's base_url)")
            if self.json is not None and self.body is not None:
                raise ValueError("give either 'json' or 'body', not both")
            return self


# ---------------------------------------------------------------- URLs

_ABSOLUTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PAST_AUTHORITY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*[/?#]")


_AUTHORITY_VALUE = re.compile(r"[A-Za-z0-9._\-:\[\]]*")


def render_url(template: str, ctx: StepContext, *, is_path: bool) -> str:
    """Render a URL or path; values in the path or query are percent-encoded (see the module doc)."""
    from urllib.parse import quote

    if "{{" not in template and "{%" not in template:
        return template
    # render_sql is the engine's "split a template into text and values" (the values are not
    # SQL-specific); it lets each value be encoded for where it lands in the URL
    out = ""
    for part in render_parts(ctx, template):
        if isinstance(part, str):
            out += part
            continue
        value = part.name if isinstance(part, SqlIdent) else part.value if isinstance(part, SqlParam) else part
        text = to_text(value)
        inside = bool(out) if is_path or not _ABSOLUTE.match(out) else bool(_PAST_AUTHORITY.match(out))
        if inside:
            # a value is one segment: "..", "." would climb or vanish once the URL is normalised
            out += text.replace(".", "%2E") if text in (".", "..") else quote(text, safe="")
        elif out and not _AUTHORITY_VALUE.fullmatch(text):
            # inside scheme://host:port a value could add a host or user-info ('x@evil/', 'a/b#')
            raise ValueError(f"a value in the host part of the URL must be a host name or port, got {text!r}")
        else:
            out += text  # the URL itself, from a var or a param: used as written
    return out


def join_url(base: str, path: str) -> str:
    """``base_url`` + ``path``, always appending (as httpx's base_url does), never replacing."""
    if not path:
        return base
    if path.startswith(("?", "#")):
        return base + path
    return base.rstrip("/") + "/" + path.lstrip("/")


def shown_url(url: str) -> str:
    """A URL for display: a password in its user-info part becomes ***."""
    return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/?#:@]*):[^/?#@]*@", r"\1:***@", url)


def _identity(conn: Any) -> str:
    """Tells connections apart that share a name: a child procedure shares its parent's resources."""
    return hashlib.sha1(conn.model_dump_json().encode()).hexdigest()[:12]


def header_text(name: str, value: Any) -> str:
    return "***" if SENSITIVE_HEADER.search(name) else to_text(value)


# ---------------------------------------------------------------- the request


@dataclass
class _Request:
    method: str
    url: str
    headers: dict[str, str]
    params: dict[str, Any]
    json: Any
    body: str | None
    timeout: float
    capped: bool  # the timeout was cut to the step's remaining time
    follow_redirects: bool
    client_key: str
    conn_name: str | None
    conn: Any
    verify: bool | str


@dataclass
class _Response:
    status_code: int
    reason: str
    headers: dict[str, str]
    data: bytes
    truncated: bool
    encoding: str | None
    content_type: str
    elapsed: float


def _send(client: Any, req: _Request, stop: threading.Event) -> _Response:
    import httpx

    request = client.build_request(
        req.method, req.url, headers=req.headers, params=req.params or None,
        json=req.json if req.json is not None else None,
        content=req.body.encode() if req.body is not None else None,
        timeout=httpx.Timeout(req.timeout))
    t0 = time.monotonic()
    resp = client.send(request, stream=True, follow_redirects=req.follow_redirects)
    try:
        data = bytearray()
        truncated = False
        for chunk in resp.iter_bytes():
            data += chunk
            if len(data) > BODY_LIMIT:
                truncated = True  # stop downloading: the rest would be thrown away
                del data[BODY_LIMIT:]
                break
            if stop.is_set():
                break
    finally:
        resp.close()
    headers: dict[str, str] = {}
    for name, value in resp.headers.multi_items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return _Response(resp.status_code, resp.reason_phrase, headers, bytes(data), truncated,
                     resp.charset_encoding, resp.headers.get("content-type", ""), time.monotonic() - t0)


def _decode(resp: _Response) -> str:
    try:
        return resp.data.decode(resp.encoding or "utf-8", errors="replace")
    except LookupError:  # an unknown charset name in Content-Type
        return resp.data.decode("utf-8", errors="replace")


def _parse_json(resp: _Response, text: str) -> Any:
    if resp.truncated:
        return None
    ctype = resp.content_type.lower()
    stripped = text.strip()
    looks = stripped[:1] in ("{", "[") and not ctype
    if "json" in ctype or looks:
        try:
            return jsonlib.loads(stripped)
        except ValueError:
            return None
    return None


def _client_for(req: _Request, ctx: StepContext) -> Any:
    def open_client() -> Any:
        import ssl

        import httpx

        verify: Any = req.verify
        if isinstance(verify, str):  # httpx 0.28 takes a CA bundle as an SSL context
            verify = ssl.create_default_context(cafile=verify)
        headers: dict[str, str] = {}
        timeout = DEFAULT_TIMEOUT
        if req.conn is not None:
            headers = {str(k): to_text(ctx.render(v)) for k, v in req.conn.headers.items()}
            protect_credentials(headers, ctx)
            timeout = req.conn.timeout or DEFAULT_TIMEOUT
        return httpx.Client(headers=headers, timeout=timeout, verify=verify, follow_redirects=False)

    return ctx.resources.get(req.client_key, open_client, lambda c: c.close())


# ---------------------------------------------------------------- the executor


class HttpExecutor(Executor):
    knows_effect = True  # the method / verb / op says whether it writes
    name = "http"
    main_option = "url"
    Options = HttpOptions
    connection_kinds = ("http",)
    result_fields = ("status_code", "headers", "text", "json", "elapsed")

    def effect(self, options: HttpOptions) -> Effect:
        # a templated method is unknown until the run: it counts as a write
        return Effect.READ if options.method in READ_METHODS else Effect.WRITE

    def describe(self, options: HttpOptions, ctx: StepContext) -> str:
        try:
            req = self._request(options, ctx)
        except (ValueError, KeyError) as exc:
            return f"{options.method} {options.url or options.path} ({exc})"
        text = f"{req.method} {shown_url(req.url)}"
        if req.params:
            text += " params " + jsonlib.dumps(req.params, default=str, ensure_ascii=False)
        if req.headers:
            text += " headers " + ", ".join(f"{k}: {header_text(k, v)}" for k, v in req.headers.items())
        if req.json is not None:
            shown = jsonlib.dumps(req.json, default=str, ensure_ascii=False)
            text += " json " + (shown if len(shown) <= 200 else shown[:200] + "...")
        elif req.body is not None:
            text += f" body ({len(req.body.encode())} bytes)"
        return ctx.redact(text)

    def uses_connection(self, options: HttpOptions) -> bool:
        """A full ``url`` needs no connection; a ``path`` is joined to one's base_url."""
        return options.path is not None or options.connection is not None

    def _request(self, options: HttpOptions, ctx: StepContext) -> _Request:
        conn_name: str | None = None
        conn: Any = None
        if options.path is not None or options.connection is not None:
            conn_name, conn = ctx.connection(options.connection, self.connection_kinds)
        if options.path is not None:
            url = join_url(to_text(ctx.render(conn.base_url)), render_url(options.path, ctx, is_path=True))
        else:
            url = render_url(options.url or "", ctx, is_path=False)
            if conn is not None and not _ABSOLUTE.match(url):
                url = join_url(to_text(ctx.render(conn.base_url)), url)
        method = to_text(ctx.render(options.method)).upper()
        headers = {str(k): to_text(ctx.render(v)) for k, v in options.headers.items()}
        protect_credentials({**headers, "url": url}, ctx)
        params = ctx.render(options.params) if options.params else {}
        body_json = ctx.render(options.json) if options.json is not None else None
        body = to_text(ctx.render(options.body)) if options.body is not None else None
        timeout = options.timeout or (conn.timeout if conn is not None and conn.timeout else DEFAULT_TIMEOUT)
        remaining = ctx.remaining()
        capped = remaining is not None and remaining < timeout
        if capped:
            timeout = max(remaining or 0.0, 0.001)
        verify = options.verify if options.verify is not None else (conn.verify if conn is not None else True)
        if isinstance(verify, str):  # a CA bundle, relative to the procedure's folder
            ca = Path(to_text(ctx.render(verify))).expanduser()
            verify = str(ca if ca.is_absolute() else ctx.workdir / ca)
        scope = f"{conn_name}:{_identity(conn)}" if conn is not None else "default"
        key = f"http:{scope}:verify={verify}"
        return _Request(method, url, headers, params, body_json, body, timeout, capped,
                        options.follow_redirects, key, conn_name, conn, verify)

    def execute(self, options: HttpOptions, ctx: StepContext) -> Result:
        import httpx

        try:
            req = self._request(options, ctx)
        except (ValueError, KeyError) as exc:
            return Result(False, {}, ctx.redact(str(exc)))
        what = f"{req.method} {shown_url(req.url)}"
        remaining = ctx.remaining()
        if remaining is not None and remaining <= 0:
            return Result(False, {}, f"{what}: timed out before the request was sent", timed_out=True)
        client = _client_for(req, ctx)
        stop = threading.Event()
        box: dict[str, Any] = {}
        done = threading.Event()

        def work() -> None:
            try:
                box["response"] = _send(client, req, stop)
            except BaseException as exc:  # noqa: BLE001 - handed to the step's thread
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=work, name=f"http-{ctx.step_id}", daemon=True).start()
        while not done.wait(WATCH_INTERVAL):
            if ctx.cancel.is_set():
                stop.set()
                # the request was sent: the server may still act on it (a write is not undone)
                return Result(False, {}, f"{what}: interrupted (the server may still complete the request)",
                              cancelled=True)
            left = ctx.remaining()
            if left is not None and left <= -0.5:  # httpx's own timeout normally fires first
                stop.set()
                return Result(False, {}, f"{what}: timed out (step timeout; the server may still complete "
                                         "the request)", timed_out=True)
        error = box.get("error")
        if error is not None:
            if isinstance(error, httpx.TimeoutException):
                if req.capped:
                    return Result(False, {}, ctx.redact(f"{what}: timed out (step timeout)"), timed_out=True)
                # a connect timeout is an unreachable host; a read timeout, a server that answered
                kind = ENVIRONMENT if isinstance(error, httpx.ConnectTimeout) else None
                return Result(False, {}, ctx.redact(f"{what}: no response within "
                                                    f"{format_duration(req.timeout)} ({type(error).__name__})"),
                              error_kind=kind)
            if isinstance(error, httpx.ConnectError):  # refused, no such name, TLS handshake
                return Result(False, {}, ctx.redact(f"{what}: cannot connect: {error}"), error_kind=ENVIRONMENT)
            if isinstance(error, httpx.HTTPError | httpx.InvalidURL):
                return Result(False, {}, ctx.redact(f"{what}: {type(error).__name__}: {error}"))
            raise error
        resp: _Response = box["response"]
        text = _decode(resp)
        fields = {
            "status_code": resp.status_code,
            "headers": {k: ctx.redact(header_text(k, v)) for k, v in resp.headers.items()},
            "text": ctx.redact(text),
            "json": _parse_json(resp, text),
            "elapsed": round(resp.elapsed, 4),
        }
        if resp.truncated:
            ctx.progress(f"response body longer than {BODY_LIMIT} bytes: text truncated, json not parsed")
        if not any(lo <= resp.status_code <= hi for lo, hi in status_ranges(options.expect_status)):
            snippet = " ".join(text.split())[:SNIPPET]
            message = (f"{what}: HTTP {resp.status_code} {resp.reason}".rstrip()
                       + f" (expected {status_label(options.expect_status)})"
                       + (f": {snippet}" if snippet else ""))
            return Result(False, fields, ctx.redact(message), error_kind=ASSERTION)  # it answered
        return Result(True, fields)
