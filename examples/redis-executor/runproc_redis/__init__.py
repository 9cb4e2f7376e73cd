"""``redis``: a runproc executor for Redis commands, packaged on its own as a plugin.

    - id: cache
      redis: cluster info                     # the short form: the command
      url: "redis://cache-1:6379/0"           # the default is redis://127.0.0.1:6379/0
      readonly: true
      verify:
        - assert: steps.cache.info.cluster_state == 'ok'

It speaks RESP2 over a socket with the standard library (no redis-py), so it installs offline.
Result fields: ``reply`` (the decoded reply: text, integer, list or null) and ``info`` (for the
``key:value`` replies of ``INFO`` and ``CLUSTER INFO``: a mapping, numbers as numbers).
Read commands (``PING``, ``INFO``, ``GET``, ``CLUSTER INFO``...) are ``Effect.READ``, so a dry
run executes them; everything else is a write, shown in a dry run and not sent.

Registered through the entry-point group ``runproc.executors`` (see pyproject.toml).
"""

from __future__ import annotations

import re
import shlex
import socket
import ssl
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from engine.executors.base import Effect, Executor, Options, Result, StepContext
from engine.format.durations import Duration

__all__ = ["RedisExecutor", "RedisOptions", "RespError", "parse_info", "encode_command"]
__version__ = "0.1.0"

DEFAULT_URL = "redis://127.0.0.1:6379/0"
MAX_REDIRECTS = 5

_ALWAYS_READ = (
    "PING ECHO INFO TIME DBSIZE LASTSAVE ROLE GET MGET GETRANGE STRLEN EXISTS TTL PTTL EXPIRETIME TYPE "
    "KEYS SCAN RANDOMKEY HGET HMGET HGETALL HKEYS HVALS HLEN HEXISTS HSTRLEN HSCAN LRANGE LLEN LINDEX "
    "LPOS SCARD SMEMBERS SISMEMBER SMISMEMBER SRANDMEMBER SSCAN SINTER SUNION SDIFF ZCARD ZCOUNT ZRANGE "
    "ZRANGEBYSCORE ZREVRANGE ZSCORE ZMSCORE ZRANK ZREVRANK ZSCAN ZLEXCOUNT XLEN XRANGE XREVRANGE XINFO "
    "PFCOUNT BITCOUNT BITPOS GETBIT GEOPOS GEODIST GEOSEARCH DUMP LOLWUT"
)
# first word -> None (always a read) or the set of read subcommands
READ_COMMANDS: dict[str, frozenset[str] | None] = {
    **dict.fromkeys(_ALWAYS_READ.split(), None),
    "CLUSTER": frozenset({"INFO", "NODES", "SLOTS", "SHARDS", "MYID", "MYSHARDID", "KEYSLOT",
                          "COUNTKEYSINSLOT", "GETKEYSINSLOT", "LINKS", "REPLICAS", "COUNT-FAILURE-REPORTS"}),
    "CONFIG": frozenset({"GET"}),
    "CLIENT": frozenset({"LIST", "INFO", "GETNAME", "ID"}),
    "MEMORY": frozenset({"USAGE", "STATS", "DOCTOR", "MALLOC-STATS"}),
    "SLOWLOG": frozenset({"GET", "LEN"}),
    "LATENCY": frozenset({"LATEST", "HISTORY", "DOCTOR", "GRAPH", "HISTOGRAM"}),
    "OBJECT": frozenset({"ENCODING", "FREQ", "IDLETIME", "REFCOUNT"}),
    "COMMAND": frozenset({"COUNT", "INFO", "DOCS", "LIST", "GETKEYS"}),
    "MODULE": frozenset({"LIST"}),
    "ACL": frozenset({"WHOAMI", "LIST", "USERS", "CAT", "GETUSER"}),
}

_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


class RedisOptions(Options):
    command: str | list[str | int | float]
    url: str = DEFAULT_URL
    password: str | None = None  # e.g. "{{ secrets.redis_password }}"; or in the URL
    timeout: Duration = 5.0


class RespError(Exception):
    """A reply of type error (``-ERR ...``) or a broken reply."""


# ---------------------------------------------------------------- RESP


def encode_command(args: list[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Reader:
    """Reads RESP2 replies from a socket, honouring a deadline and a cancel event."""

    def __init__(self, sock: socket.socket, deadline: float | None, cancel: Any) -> None:
        self.sock = sock
        self.deadline = deadline
        self.cancel = cancel
        self.buf = b""

    def _fill(self) -> None:
        while True:
            if self.cancel is not None and self.cancel.is_set():
                raise InterruptedError("interrupted")
            left = None if self.deadline is None else self.deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("no reply in time")
            self.sock.settimeout(0.2 if left is None else max(0.01, min(0.2, left)))
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                raise RespError("the server closed the connection")
            self.buf += chunk
            return

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def reply(self) -> Any:
        line = self.line()
        kind, rest = line[:1], line[1:].decode("utf-8", "replace")
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RespError(rest)
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise RespError(f"not a RESP reply: {line[:40]!r}")


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def parse_info(text: str) -> dict[str, Any]:
    """``INFO``/``CLUSTER INFO`` text to a mapping; numbers become numbers.

    ``db0:keys=1,expires=0`` becomes ``{"db0": {"keys": 1, "expires": 0}}``.
    """
    out: dict[str, Any] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or ":" not in line:
            continue
        key, _, value = line.partition(":")
        if "=" in value and "," in value or re.fullmatch(r"[a-z_]+=[^,]*", value):
            out[key] = {k: _number(v) for k, _, v in (p.partition("=") for p in value.split(","))}
        else:
            out[key] = _number(value)
    return out


# ---------------------------------------------------------------- the executor


def split_command(template: str) -> list[str]:
    """Split a command line as a shell would, keeping each ``{{ ... }}`` inside one word."""
    found: list[str] = []

    def hide(m: re.Match[str]) -> str:
        found.append(m.group(0))
        return f"\x00{len(found) - 1}\x00"

    words = shlex.split(_TEMPLATE.sub(hide, template))
    return [re.sub(r"\x00(\d+)\x00", lambda m: found[int(m.group(1))], w) for w in words]


def is_read(words: list[str]) -> bool:
    if not words or "{{" in words[0] or "{%" in words[0]:
        return False  # decided at run time: treat as a write
    subs = READ_COMMANDS.get(words[0].upper(), frozenset())
    if subs is None:
        return True
    return len(words) > 1 and "{{" not in words[1] and words[1].upper() in subs


def _where(url: str) -> tuple[str, int, int, str | None, str | None, bool]:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"expected a redis:// or rediss:// URL, got {url!r}")
    db = int(parts.path.strip("/") or 0)
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname or "127.0.0.1", parts.port or 6379, db, user, password, parts.scheme == "rediss"


def shown(url: str) -> str:
    host, port, db, *_ = _where(url)
    return f"{host}:{port}/{db}"


class RedisExecutor(Executor):
    name = "redis"
    main_option = "command"
    Options = RedisOptions
    result_fields = ("reply", "info")

    def _words(self, options: RedisOptions, ctx: StepContext | None = None) -> list[str]:
        items = split_command(options.command) if isinstance(options.command, str) else options.command
        if ctx is None:
            return [str(i) for i in items]
        from engine.format.expressions import to_text

        return [to_text(ctx.render(i)) if isinstance(i, str) else str(i) for i in items]

    def effect(self, options: RedisOptions) -> Effect:
        return Effect.READ if is_read(self._words(options)) else Effect.WRITE

    def describe(self, options: RedisOptions, ctx: StepContext) -> str:
        words = self._words(options, ctx)
        url = str(ctx.render(options.url))
        try:
            where = shown(url)
        except ValueError:
            where = "?"
        return f"redis[{where}]: " + " ".join(shlex.quote(w) for w in words)

    def execute(self, options: RedisOptions, ctx: StepContext) -> Result:
        words = self._words(options, ctx)
        if not words:
            return Result(False, {}, "no command")
        try:
            host, port, db, user, password, tls = _where(str(ctx.render(options.url)))
        except ValueError as exc:
            return Result(False, {}, str(exc))
        if options.password is not None:
            password = str(ctx.render(options.password))
        remaining = ctx.remaining()
        limit = options.timeout if remaining is None else min(options.timeout, remaining)
        deadline = time.monotonic() + limit
        try:
            reply = self._call(host, port, db, user, password, tls, words, deadline, ctx)
        except RespError as exc:
            return Result(False, {}, ctx.redact(f"redis {host}:{port}: {exc}"))
        except TimeoutError:
            timed_out = remaining is not None and remaining <= options.timeout
            return Result(False, {}, f"redis {host}:{port}: no reply within {limit:g}s", timed_out=timed_out)
        except InterruptedError:
            return Result(False, {}, "interrupted", cancelled=True)
        except OSError as exc:
            return Result(False, {}, ctx.redact(f"redis {host}:{port}: cannot connect: {exc}"))
        fields: dict[str, Any] = {"reply": reply, "info": None}
        if isinstance(reply, str) and words[0].upper() in ("INFO", "CLUSTER"):
            fields["info"] = parse_info(reply)
        return Result(True, fields)

    def _call(self, host: str, port: int, db: int, user: str | None, password: str | None, tls: bool,
              words: list[str], deadline: float, ctx: StepContext) -> Any:
        for _ in range(MAX_REDIRECTS):
            left = max(0.01, deadline - time.monotonic())
            with socket.create_connection((host, port), timeout=left) as raw:
                sock: socket.socket = ssl.create_default_context().wrap_socket(raw, server_hostname=host) if tls else raw
                reader = _Reader(sock, deadline, ctx.cancel)
                setup: list[list[str]] = []
                if password is not None:
                    setup.append(["AUTH", user, password] if user else ["AUTH", password])
                if db:
                    setup.append(["SELECT", str(db)])
                for cmd in setup:
                    sock.sendall(encode_command(cmd))
                    reader.reply()
                sock.sendall(encode_command(words))
                try:
                    return reader.reply()
                except RespError as exc:
                    moved = re.match(r"(MOVED|ASK) \d+ ([^:\s]+):(\d+)", str(exc))
                    if not moved:  # as redis-cli -c: follow the cluster's redirections
                        raise
                    host, port = moved.group(2) or host, int(moved.group(3))
        raise RespError(f"more than {MAX_REDIRECTS} cluster redirections")
