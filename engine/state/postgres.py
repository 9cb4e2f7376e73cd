"""The state store in PostgreSQL: shared by a team, so that locks and history hold across machines.

``--state postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?connect_timeout=N&...]`` (or
``postgres://``, or ``$RUNPROC_STATE``). A password may also come from ``PGPASSWORD`` or
``~/.pgpass``: libpq reads them as it does for psql. docs/state-postgresql.md is the user's
guide.

The SQL is SqlStore's (engine/state/sqlstore.py), written once for both databases; this
module gives it connections and the PostgreSQL dialect:

- connections come from a small pool (psycopg_pool), opened on first use after the store has
  checked that it can connect and has migrated the schema on a connection of its own;
- connections are in autocommit mode: ``_tx`` wraps its statements in an explicit transaction,
  a single statement (a read, a journal append) is a transaction by itself, one round trip;
- ``CLOCK`` is the server's clock, so that machines whose clocks disagree agree on a lease;
- migrations take a transaction-level advisory lock: twenty runproc processes opening a new
  database at once migrate it once, the others wait and find it done.

psycopg is imported only when a PostgreSQL state is used: ``runproc --version`` and a SQLite
user never pay for it.
"""

from __future__ import annotations

import atexit
import functools
import os
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..errors import ProcedureError
from .opening import POSTGRES_SCHEMES, shown_url, state_problem
from .sqlstore import Exec, SchemaTooNew, SqlStore, default_logs_dir

if TYPE_CHECKING:
    from pathlib import Path

    import psycopg
    from psycopg_pool import ConnectionPool

# seconds to wait for the server when the URL does not say (connect_timeout=N): an address
# that drops packets must not hang a run, a `runproc runs`, a heartbeat
DEFAULT_CONNECT_TIMEOUT = 5
# the key of the advisory lock that serialises migrations (any constant; this one spells "rnpr")
MIGRATION_LOCK_KEY = 0x726E7072
POOL_MIN, POOL_MAX = 1, 4
URL_FORM = "postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"


@dataclass(frozen=True)
class PgTarget:
    """What a PostgreSQL state URL names (the password is not kept here: libpq reads the URL)."""

    user: str | None
    hosts: tuple[str, ...]
    ports: tuple[int | None, ...]
    dbname: str
    options: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        """host:port as a person would say it (the default port when none is given)."""
        if not self.hosts or self.hosts == ("",):
            return self.options.get("host", "the local socket")
        return ",".join(f"{h or 'localhost'}:{p or self.options.get('port', 5432)}"
                        for h, p in zip(self.hosts, self.ports, strict=True))


# ---------------------------------------------------------------- the URL


def parse_url(url: str) -> PgTarget:
    """The parts of a PostgreSQL state URL; a malformed one is invalid input (exit 2), said in
    one line without its password, before anything runs."""
    scheme, sep, rest = url.partition("://")
    if scheme not in POSTGRES_SCHEMES or not sep:
        raise state_problem(url, "not a PostgreSQL URL", f"write {URL_FORM}")
    if any(c.isspace() for c in url):
        raise state_problem(url, "a URL cannot hold spaces", f"write {URL_FORM} (percent-encode odd characters)")
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # an unbalanced [ of an IPv6 address, say
        raise state_problem(url, f"malformed URL ({exc})", f"write {URL_FORM}") from None
    if parts.fragment:
        raise state_problem(url, f"unexpected '#{parts.fragment}' in the URL", f"write {URL_FORM}")
    netloc = parts.netloc
    user: str | None = None
    if "@" in netloc:
        creds, netloc = netloc.rsplit("@", 1)
        user = unquote(creds.split(":", 1)[0]) or None
    hosts, ports = _hosts(url, netloc)
    try:
        options = dict(parse_qsl(parts.query, keep_blank_values=True, strict_parsing=True)) if parts.query else {}
    except ValueError:
        raise state_problem(url, f"malformed query '?{parts.query}'",
                            f"write {URL_FORM}?connect_timeout=10 (key=value pairs joined by &)") from None
    options.pop("password", None)  # never kept, never shown
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    dbname = path or options.get("dbname", "")
    if not dbname:
        raise state_problem(url, "no database name", f"write {URL_FORM}")
    if "/" in path:
        raise state_problem(url, f"{path!r} is not a database name (it holds '/')", f"write {URL_FORM}")
    if "connect_timeout" in options and not _is_int(options["connect_timeout"]):
        raise state_problem(url, f"connect_timeout={options['connect_timeout']!r} is not a number of seconds")
    if "port" in options and not _port(options["port"]):
        raise state_problem(url, f"bad port {options['port']!r}", "a port is a number from 1 to 65535")
    return PgTarget(user, hosts, ports, dbname, options)


def _hosts(url: str, netloc: str) -> tuple[tuple[str, ...], tuple[int | None, ...]]:
    """``host[:port]`` items, comma-separated as libpq allows (an IPv6 address in brackets)."""
    hosts: list[str] = []
    ports: list[int | None] = []
    if not netloc:
        return (), ()  # the local socket, or ?host=...
    for item in netloc.split(","):
        match = re.fullmatch(r"(\[[0-9A-Fa-f:.%\w]*\]|[^:\[\]]*)(?::(.*))?", item)
        if match is None:
            raise state_problem(url, f"malformed host {item!r}", f"write {URL_FORM}")
        host, port_text = match.group(1), match.group(2)
        if port_text is None or port_text == "":
            port = None
        else:
            port = _port(port_text)
            if port is None:
                raise state_problem(url, f"bad port {port_text!r}", "a port is a number from 1 to 65535")
        hosts.append(unquote(host.strip("[]")))
        ports.append(port)
    return tuple(hosts), tuple(ports)


def _port(text: str) -> int | None:
    return int(text) if text.isdigit() and 1 <= int(text) <= 65535 else None


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def _conninfo(url: str, target: PgTarget) -> str:
    """The libpq connection string: the URL as given, plus a connect timeout and our name
    unless it says otherwise. Anything libpq itself rejects is a malformed URL."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        given = conninfo_to_dict(url)
    except psycopg.Error as exc:
        raise state_problem(url, f"malformed URL ({_one_line(exc, url)})", f"write {URL_FORM}") from None
    extra: dict[str, Any] = {}
    if "connect_timeout" not in given:
        extra["connect_timeout"] = DEFAULT_CONNECT_TIMEOUT
    if "application_name" not in given:
        extra["application_name"] = "runproc"  # who this is in pg_stat_activity
    return make_conninfo(url, **extra)


# ---------------------------------------------------------------- SQL with ? placeholders


@functools.lru_cache(maxsize=512)
def _pg(sql: str) -> str:
    """SqlStore's ``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled); quoted
    text and identifiers are left as they are."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            out.append("%%" if ch == "%" else ch)
            if ch == quote:
                quote = None
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


# ---------------------------------------------------------------- the store


class PostgresStore(SqlStore):
    """Runs, journal and locks in one PostgreSQL database (see the module docstring)."""

    # the server's clock, now (not the transaction's start), as seconds since the epoch
    CLOCK = "extract(epoch from clock_timestamp())::double precision"
    REAL = "DOUBLE PRECISION"
    SERIAL = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"

    def __init__(self, url: str, *, host: str | None = None, lease: float | None = None) -> None:
        """Connect (one line, exit 2, when it cannot: malformed URL, server unreachable, wrong
        password, no such database) and bring the schema up to date (SchemaTooNew when the
        database's schema is newer than this runproc)."""
        super().__init__(url, host=host, lease=lease)
        self.target = parse_url(url)
        self.conninfo = _conninfo(url, self.target)
        self._pool_obj: ConnectionPool | None = None
        self._pool_lock = threading.Lock()
        # the first connection checks the server, the login and the database, and migrates;
        # the pool opens on first use after that
        self._setup: psycopg.Connection[Any] | None = self._connect_checked()
        try:
            self.migrate()
        finally:
            setup, self._setup = self._setup, None
            setup.close()
        atexit.register(self.close)  # `runproc runs` and others may not close what they opened

    # ------------------------------------------------------------ connections

    def _connect_checked(self) -> psycopg.Connection[Any]:
        import psycopg

        try:
            return psycopg.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise self._connect_problem(exc) from None

    def _connect_problem(self, exc: Exception) -> ProcedureError:
        """Why a connection failed, in one line without the password, with what to do. libpq
        gives no SQLSTATE for a failed connection: its text tells the cases apart, and any
        other is still one line (the text as libpq said it)."""
        text = _one_line(exc, self.url)
        low = text.lower()
        t = self.target
        who = t.user or os.environ.get("PGUSER") or "(the OS user)"
        if "password" in low or "authentication" in low or ("role" in low and "does not exist" in low):
            return state_problem(self.url, f"the server refused the login of user {who} ({text})",
                                 "check the user and password: in the URL, PGPASSWORD or ~/.pgpass")
        if "database" in low and "does not exist" in low:
            return state_problem(self.url, f"database {t.dbname!r} does not exist on {t.where}",
                                 f"create it (createdb {t.dbname}) or name another one")
        if "fatal" not in low:  # the server never answered: refused, timed out, no such host
            return state_problem(self.url, f"cannot reach the PostgreSQL server at {t.where} ({text})",
                                 "is the server running there, accepting TCP/IP connections?")
        return state_problem(self.url, f"the server at {t.where} refused the connection ({text})")

    def _pool(self) -> ConnectionPool:
        """The pool, opened on first need (a store that only migrated never starts one)."""
        pool = self._pool_obj
        if pool is not None:
            return pool
        with self._pool_lock:
            if self._pool_obj is None:
                import logging

                from psycopg_pool import ConnectionPool

                # the pool says a failed reconnection through logging: without a handler Python
                # would print it, lines of it, in the middle of the run's own one-line error
                # (an embedder's handlers still get it: the record propagates)
                logging.getLogger("psycopg").addHandler(logging.NullHandler())

                timeout = float(self._connect_timeout())
                # autocommit: one statement is its own transaction, committed before execute
                # returns; _tx opens an explicit one around several. timeout: how long a caller
                # waits for a connection (a server gone mid-run must fail the call, not hang it)
                pool = ConnectionPool(self.conninfo, min_size=POOL_MIN, max_size=POOL_MAX, open=False,
                                      kwargs={"autocommit": True}, timeout=timeout + 1,
                                      reconnect_timeout=max(10.0, 2 * timeout), num_workers=1,
                                      name="runproc-state")
                pool.open(wait=True, timeout=timeout + 1)
                self._pool_obj = pool
            return self._pool_obj

    def _connect_timeout(self) -> int:
        from psycopg.conninfo import conninfo_to_dict

        value = conninfo_to_dict(self.conninfo).get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        try:
            return max(1, int(value))
        except (TypeError, ValueError):
            return DEFAULT_CONNECT_TIMEOUT

    def _connection(self) -> AbstractContextManager[psycopg.Connection[Any]]:
        if self._setup is not None:
            return nullcontext(self._setup)
        return self._pool().connection()

    @contextmanager
    def _tx(self) -> Iterator[Exec]:
        with self._connection() as conn, conn.transaction():
            def run(sql: str, params: Sequence[Any]) -> Any:
                return conn.execute(_pg(sql), tuple(params))

            yield run

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._connection() as conn:
            return conn.execute(_pg(sql), tuple(params)).fetchall()

    def _statement(self, sql: str, params: Sequence[Any]) -> None:
        # autocommit: committed when execute returns, in one round trip
        with self._connection() as conn:
            conn.execute(_pg(sql), tuple(params))

    def _serialise_migrations(self, run: Exec) -> None:
        # held until the transaction ends: a concurrent first use waits, then finds it migrated
        run(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})", ())

    def _has_table(self, run: Exec, name: str) -> bool:
        # to_regclass follows the search_path, as the unqualified CREATE TABLEs do
        return bool(run("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0])

    def _before_v2(self, run: Exec) -> None:
        run("ALTER TABLE locks ADD COLUMN IF NOT EXISTS pid_start TEXT", ())

    # ------------------------------------------------------------ the rest

    def logs_dir(self) -> Path:
        return default_logs_dir()

    def close(self) -> None:
        with self._pool_lock:
            pool, self._pool_obj = self._pool_obj, None
        if pool is not None:
            pool.close(timeout=2)


def _one_line(exc: BaseException, url: str) -> str:
    """An exception's text on one line, never with the URL's password in it."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    password = _password(url)
    if password:
        text = text.replace(password, "***")
    return text


def _password(url: str) -> str | None:
    rest = url.split("://", 1)[-1]
    netloc = rest.split("/", 1)[0].split("?", 1)[0]
    if "@" not in netloc:
        return None
    creds = netloc.rsplit("@", 1)[0]
    return unquote(creds.split(":", 1)[1]) if ":" in creds else None


def open_postgres(url: str) -> PostgresStore:
    """The PostgreSQL state at ``url``, connected and migrated; one line and exit 2 when it
    cannot be used (malformed URL, unreachable server, refused login, no such database, a
    schema newer than this runproc), before anything runs."""
    try:
        return PostgresStore(url)
    except SchemaTooNew as exc:
        target = parse_url(url)
        raise state_problem(url, f"database {target.dbname!r}: {exc}", "upgrade runproc to use this state") from None
    except ProcedureError:
        raise
    except Exception as exc:  # noqa: BLE001 - psycopg's, while migrating (a missing privilege, say)
        import psycopg

        if not isinstance(exc, psycopg.Error):
            raise
        raise state_problem(url, f"cannot set up the state schema: {_one_line(exc, url)}",
                            f"the user of {shown_url(url)} needs to create tables in that database") from None
