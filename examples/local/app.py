#!/usr/bin/env python3
"""The local platform's processes, Python standard library only.

    python3 app.py serve  --colour blue --port 18081 --release .state/releases/1.0.0 --db .state/app.db
    python3 app.py router --port 18080 --state .state --upstream blue=18081 --upstream green=18082

``serve`` is the application: ``GET /health`` answers 200 with a JSON document (colour, version,
database schema version) unless the release is marked broken, and ``GET /version`` answers the
version as text. ``router`` is the "load balancer": on every request it reads ``STATE/router``
(the live colour, one word) and forwards the request to that colour's port, so switching traffic
is one atomic file write. Both listen on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import signal
import sqlite3
import sys
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def schema_version(db: Path) -> int | None:
    """The database's migration version (``PRAGMA user_version``), or None without a database."""
    if not db.exists():
        return None
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


class _Quiet(BaseHTTPRequestHandler):
    server_version = "runproc-local/1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
        sys.stderr.write(f"{self.address_string()} {format % args}\n")

    def reply(self, code: int, body: str | dict, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        data = (json.dumps(body) if isinstance(body, dict) else body).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def app_handler(colour: str, release: Path, db: Path) -> type[BaseHTTPRequestHandler]:
    version = (release / "VERSION").read_text().strip()

    class App(_Quiet):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            headers = {"X-Colour": colour, "X-Version": version}
            if path == "/health":
                try:
                    schema = schema_version(db)
                except sqlite3.Error as exc:
                    self.reply(503, {"status": "down", "error": f"database: {exc}"}, headers=headers)
                    return
                if (release / "BROKEN").exists():
                    self.reply(500, {"status": "broken", "colour": colour, "version": version}, headers=headers)
                    return
                self.reply(200, {"status": "ok", "colour": colour, "version": version, "schema": schema},
                           headers=headers)
            elif path == "/version":
                self.reply(200, version + "\n", "text/plain", headers)
            elif path == "/":
                self.reply(200, {"app": "unjucks-local", "colour": colour, "version": version}, headers=headers)
            else:
                self.reply(404, {"error": f"no route {path}"}, headers=headers)

        do_HEAD = do_GET

    return App


def router_handler(state: Path, upstreams: dict[str, int]) -> type[BaseHTTPRequestHandler]:
    class Router(_Quiet):
        def do_GET(self) -> None:  # noqa: N802
            try:
                colour = (state / "router").read_text().strip()
                port = upstreams[colour]
            except (OSError, KeyError) as exc:
                self.reply(503, {"error": f"router has no live colour: {exc}"})
                return
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{self.path}", timeout=5) as resp:
                    code, body, ctype = resp.status, resp.read().decode(), resp.headers.get("Content-Type", "")
            except urllib.error.HTTPError as exc:
                code, body, ctype = exc.code, exc.read().decode(), exc.headers.get("Content-Type", "")
            except OSError as exc:
                self.reply(502, {"error": f"{colour} (port {port}) unreachable: {exc}"}, headers={"X-Colour": colour})
                return
            self.reply(code, body, ctype or "text/plain", {"X-Colour": colour})

        do_HEAD = do_GET

    return Router


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="the application")
    s.add_argument("--colour", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--release", type=Path, required=True, help="a release directory holding VERSION")
    s.add_argument("--db", type=Path, required=True)
    r = sub.add_parser("router", help="the router: forwards to the live colour")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--state", type=Path, required=True)
    r.add_argument("--upstream", action="append", default=[], metavar="COLOUR=PORT")
    args = p.parse_args(argv)
    if args.command == "serve":
        handler = app_handler(args.colour, args.release, args.db)
    else:
        upstreams = {k: int(v) for k, _, v in (u.partition("=") for u in args.upstream)}
        handler = router_handler(args.state, upstreams)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"{args.command} listening on 127.0.0.1:{args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
