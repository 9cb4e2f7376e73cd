"""A tiny in-memory RESP server for tests and demos (a thread on 127.0.0.1; not Redis).

    with FakeRedis() as server:            # or: python3 -m runproc_redis.fake --port 6390
        url = server.url                   # redis://127.0.0.1:<port>/0
        ...
        server.commands                    # every command received, as lists of str

Knows PING, ECHO, AUTH, SELECT, GET, SET, DEL, INCR, EXISTS, DBSIZE, FLUSHDB, INFO [section]
and CLUSTER INFO; answers ``-ERR unknown command`` to anything else. ``password=`` makes every
command but AUTH fail until the client authenticates.
"""

from __future__ import annotations

import argparse
import contextlib
import socketserver
import threading
from typing import Any

from . import encode_command  # noqa: F401 - re-exported for tests that talk raw RESP

INFO_STATS = {
    "total_connections_received": 12, "total_commands_processed": 345, "keyspace_hits": 950,
    "keyspace_misses": 50, "expired_keys": 3, "evicted_keys": 0,
}
CLUSTER_INFO = {
    "cluster_state": "ok", "cluster_slots_assigned": 16384, "cluster_slots_ok": 16384,
    "cluster_slots_pfail": 0, "cluster_slots_fail": 0, "cluster_known_nodes": 6, "cluster_size": 3,
}


def _encode(value: Any) -> bytes:
    if isinstance(value, Exception):
        return f"-{value}\r\n".encode()
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, bool):
        return b":%d\r\n" % int(value)
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, list):
        return b"*%d\r\n" % len(value) + b"".join(_encode(v) for v in value)
    if isinstance(value, _Status):
        return f"+{value.text}\r\n".encode()
    data = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class _Status:
    def __init__(self, text: str) -> None:
        self.text = text


OK = _Status("OK")


def _section(title: str, values: dict[str, Any]) -> str:
    return f"# {title}\r\n" + "".join(f"{k}:{v}\r\n" for k, v in values.items())


class FakeRedis:
    def __init__(self, port: int = 0, password: str | None = None, cluster_state: str = "ok") -> None:
        self.data: dict[int, dict[str, str]] = {}
        self.commands: list[list[str]] = []
        self.password = password
        self.cluster_state = cluster_state
        self.stats = dict(INFO_STATS)
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                session = {"db": 0, "authed": outer.password is None}
                while True:
                    try:
                        args = self._read()
                    except (ConnectionError, ValueError):
                        return
                    if args is None:
                        return
                    outer.commands.append(args)
                    self.wfile.write(_encode(outer.answer(args, session)))
                    self.wfile.flush()

            def _read(self) -> list[str] | None:
                line = self.rfile.readline()
                if not line:
                    return None
                if not line.startswith(b"*"):  # inline command, as telnet sends
                    return line.decode().split()
                out = []
                for _ in range(int(line[1:])):
                    size = int(self.rfile.readline()[1:])
                    out.append(self.rfile.read(size + 2)[:-2].decode())
                return out

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def answer(self, args: list[str], session: dict[str, Any]) -> Any:
        if not args:
            return Exception("ERR empty command")
        cmd, rest = args[0].upper(), args[1:]
        if cmd == "AUTH":
            if self.password is not None and rest and rest[-1] == self.password:
                session["authed"] = True
                return OK
            return Exception("WRONGPASS invalid username-password pair or user is disabled.")
        if not session["authed"]:
            return Exception("NOAUTH Authentication required.")
        db = self.data.setdefault(session["db"], {})
        if cmd == "PING":
            return rest[0] if rest else _Status("PONG")
        if cmd == "ECHO":
            return rest[0]
        if cmd == "SELECT":
            session["db"] = int(rest[0])
            return OK
        if cmd == "GET":
            self.stats["keyspace_hits" if rest[0] in db else "keyspace_misses"] += 1
            return db.get(rest[0])
        if cmd == "SET":
            db[rest[0]] = rest[1]
            return OK
        if cmd == "DEL":
            return sum(1 for k in rest if db.pop(k, None) is not None)
        if cmd == "EXISTS":
            return sum(1 for k in rest if k in db)
        if cmd == "INCR":
            db[rest[0]] = str(int(db.get(rest[0], "0")) + 1)
            return int(db[rest[0]])
        if cmd == "DBSIZE":
            return len(db)
        if cmd == "FLUSHDB":
            db.clear()
            return OK
        if cmd == "INFO":
            section = rest[0].lower() if rest else "all"
            parts = {"server": _section("Server", {"redis_version": "7.2.4-fake", "tcp_port": self.port}),
                     "stats": _section("Stats", self.stats),
                     "keyspace": _section("Keyspace", {f"db{n}": f"keys={len(d)},expires=0,avg_ttl=0"
                                                       for n, d in self.data.items() if d})}
            chosen = parts.values() if section in ("all", "everything", "default") else [parts.get(section, "")]
            return "\r\n".join(chosen)
        if cmd == "CLUSTER" and rest and rest[0].upper() == "INFO":
            return "".join(f"{k}:{v}\r\n" for k, v in {**CLUSTER_INFO, "cluster_state": self.cluster_state}.items())
        return Exception(f"ERR unknown command '{args[0]}'")

    def start(self) -> FakeRedis:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-redis", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="A tiny fake Redis (RESP) server on 127.0.0.1.")
    p.add_argument("--port", type=int, default=6390)
    p.add_argument("--password")
    args = p.parse_args(argv)
    server = FakeRedis(args.port, args.password)
    print(f"fake redis on {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server._server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
