"""A programmable, request-recording HTTP server on 127.0.0.1.

Fixtures:
  http_server -> HttpServer (session)
  http        -> HttpServer (function): same server, routes and recorded requests reset before the test

Default routes: ``GET /health`` -> 200 {"status": "ok"}; anything else -> 404 {"error": "not found"}.
"""

from __future__ import annotations

import json as jsonlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from ._common import QuietThreadingHTTPServer, read_request_body

Body = bytes | str | dict[str, Any] | list[Any] | None


def _encode(body: Body) -> tuple[bytes, str]:
    if body is None:
        return b"", "text/plain"
    if isinstance(body, bytes):
        return body, "application/octet-stream"
    if isinstance(body, str):
        return body.encode(), "text/plain; charset=utf-8"
    return jsonlib.dumps(body).encode(), "application/json"


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    time: float

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.body)


@dataclass
class Route:
    status: int = 200
    body: Body = None
    headers: dict[str, str] = field(default_factory=dict)
    sequence: list[tuple[int, Body]] = field(default_factory=list)  # served in turn, last one repeats
    delay: float = 0.0
    hits: int = 0

    def next_response(self) -> tuple[int, Body]:
        self.hits += 1
        if self.sequence:
            return self.sequence[min(self.hits, len(self.sequence)) - 1]
        return self.status, self.body


class HttpServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.routes: dict[tuple[str, str], Route] = {}
        self._lock = threading.Lock()
        self._httpd = QuietThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.host = "127.0.0.1"
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-http", daemon=True)
        self.reset()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        """Forget recorded requests and custom routes; restore ``GET /health``."""
        with self._lock:
            self.requests.clear()
            self.routes.clear()
        self.set_route("GET", "/health", json={"status": "ok"})

    def url_for(self, path: str) -> str:
        return self.url + path

    def set_route(
        self,
        method: str,
        path: str,
        status: int = 200,
        json: Any = None,
        body: bytes | str | None = None,
        headers: Mapping[str, str] | None = None,
        sequence: Sequence[tuple[int, Body]] | None = None,
        delay: float = 0.0,
    ) -> Route:
        """Program ``METHOD path``. ``sequence=[(503, ...), (200, {...})]`` serves responses in turn
        (the last repeats); dict/list bodies are sent as JSON. ``delay`` sleeps before answering."""
        route = Route(
            status=status,
            body=json if json is not None else body,
            headers=dict(headers or {}),
            sequence=list(sequence or []),
            delay=delay,
        )
        with self._lock:
            self.routes[(method.upper(), path)] = route
        return route

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [
                r for r in self.requests if r.path == path and (method is None or r.method == method.upper())
            ]

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        body = read_request_body(handler)
        rec = RecordedRequest(
            method=handler.command,
            path=parts.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            time=time.time(),
        )
        with self._lock:
            self.requests.append(rec)
            route = self.routes.get((rec.method, rec.path))
            status, payload = route.next_response() if route else (404, {"error": "not found"})
        if route and route.delay:
            time.sleep(route.delay)
        data, ctype = _encode(payload)
        handler.send_response(status)
        extra = route.headers if route else {}
        if not any(k.lower() == "content-type" for k in extra):
            handler.send_header("Content-Type", ctype)
        for k, v in extra.items():
            handler.send_header(k, v)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(data)


def _make_handler(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _any(self) -> None:
            server._handle(self)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

    return Handler


@pytest.fixture(scope="session")
def http_server() -> Iterator[HttpServer]:
    server = HttpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(http_server: HttpServer) -> HttpServer:
    http_server.reset()
    return http_server
