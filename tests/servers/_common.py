"""Small helpers shared by the real-server fixtures (ports, readiness, HTTP bodies)."""

from __future__ import annotations

import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class ServerStartError(RuntimeError):
    """A test server could not be started; the message carries the reason and a log tail."""


class QuietThreadingHTTPServer(ThreadingHTTPServer):
    """A test HTTP server that never writes to the process's stderr.

    socketserver prints "Exception occurred during processing of request" for
    a client that hung up mid-request (a step timed out, a test ended). Those
    lines land in whatever test runs next and would fail a test that reads
    stderr, so a request's failure is the client's to see, not stderr's.
    """

    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        return


def free_port(host: str = "127.0.0.1") -> int:
    """Ask the kernel for a currently free TCP port on ``host`` (loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    """Block until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    last: OSError | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last = exc
            time.sleep(0.02)
    raise ServerStartError(f"nothing listening on {host}:{port} after {timeout}s ({last})")


def log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"<no log at {path}>"
    return "\n".join(text.splitlines()[-lines:])


def read_request_body(handler: BaseHTTPRequestHandler) -> bytes:
    """Read a request body given Content-Length or chunked transfer encoding."""
    if "chunked" in handler.headers.get("Transfer-Encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size_line = handler.rfile.readline().strip()
            size = int(size_line.split(b";")[0] or b"0", 16)
            if size == 0:
                # consume trailers up to the blank line
                while handler.rfile.readline().strip():
                    pass
                return b"".join(chunks)
            chunks.append(handler.rfile.read(size))
            handler.rfile.readline()
    length = int(handler.headers.get("Content-Length") or 0)
    return handler.rfile.read(length) if length else b""
