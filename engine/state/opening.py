"""Which store a state URL names, and opening it: ``sqlite:///path`` (the default) or
``postgresql://user@host:port/db``. A URL that cannot be used is invalid input (exit 2),
said in one line, before anything runs.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Problem, ProcedureError
from ..execution.store import StoreOpener

if TYPE_CHECKING:
    from .sqlstore import SqlStore

POSTGRES_SCHEMES = ("postgresql", "postgres")


def default_state_url() -> str:
    env = os.environ.get("RUNPROC_STATE")
    if env:
        return env
    from ..execution.store import state_home

    return f"sqlite:///{state_home() / 'state.db'}"


def state_problem(url: str, message: str, hint: str | None = None) -> ProcedureError:
    """A state URL that cannot be used: invalid input (exit 2), said in one line (the password
    of a URL never shown)."""
    return ProcedureError(Problem("--state", 0, 0, f"state {shown_url(url)!r}: {message}", hint))


def shown_url(url: str) -> str:
    """The URL without its password."""
    if "://" not in url or "@" not in url.split("://", 1)[1].split("/", 1)[0]:
        return url
    scheme, rest = url.split("://", 1)
    creds, tail = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}{':***' if ':' in creds else ''}@{tail}"


def is_postgres(url: str) -> bool:
    return url.split("://", 1)[0] in POSTGRES_SCHEMES if "://" in url else False


def state_path(url: str) -> Path:
    """The file of a SQLite state URL (or a bare path); invalid input for anything else."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])  # sqlite:////abs/path keeps its leading slash
    if url.startswith("sqlite://"):
        raise state_problem(url, "write sqlite:///relative/path or sqlite:////absolute/path")
    if "://" not in url:
        return Path(url)
    scheme = url.split("://", 1)[0]
    raise state_problem(url, f"unsupported scheme {scheme + '://'!r}",
                        "use sqlite:///PATH or postgresql://USER@HOST:PORT/DB")


def check_url(url: str) -> None:
    """A malformed URL is invalid input now, before anything runs."""
    if is_postgres(url):
        from .postgres import parse_url

        parse_url(url)
    else:
        state_path(url)


class _Opener:
    """Opens the store at ``url`` on first need; knows its logs folder without opening it."""

    def __init__(self, url: str | None) -> None:
        self.url = url or default_state_url()
        check_url(self.url)

    def __call__(self) -> SqlStore:
        return open_store(self.url)

    def logs_dir(self) -> Path:
        if is_postgres(self.url):
            from .sqlstore import default_logs_dir

            return default_logs_dir()
        return state_path(self.url).parent / "logs"


def store_opener(url: str | None = None) -> StoreOpener:
    """What opens the store at ``url`` when a run first needs it; a malformed URL is invalid
    input now (exit 2), before anything runs."""
    return _Opener(url)


def open_store(url: str | None = None, *, upload_spool: bool = True) -> SqlStore:
    """The state store at ``url``; an unusable one is invalid input (exit 2) before anything runs."""
    from .sqlstore import SchemaTooNew

    url = url or default_state_url()
    if is_postgres(url):
        from .postgres import open_postgres

        return _uploaded(open_postgres(url), upload_spool)
    path = state_path(url)
    from .sqlite import SqliteStore

    try:
        return _uploaded(SqliteStore(url), upload_spool)
    except SchemaTooNew as exc:
        raise state_problem(url, f"{path}: {exc}", "upgrade runproc to use this state") from None
    except (OSError, sqlite3.OperationalError) as exc:  # a folder it cannot create, a file it cannot open
        if isinstance(exc, OSError) and exc.filename and exc.strerror:
            reason = f"{exc.filename}: {exc.strerror}"  # the folder that could not be made, say
        else:
            reason = str(exc)
        raise state_problem(url, f"cannot open {path}: {reason}") from None
    except sqlite3.DatabaseError as exc:  # not a database, or a corrupt one
        raise state_problem(url, f"{path} is not a usable runproc state database ({exc})",
                            "move the file aside to start a new state") from None


def _uploaded(store: SqlStore, upload: bool = True) -> SqlStore:
    """The store, after uploading the journals spooled while it was unreachable (the next
    contact after an outage: docs/state-outage.md). Cheap when there are none: one look at the
    spool folder, and the first line of each file in it."""
    from ..execution.journal import spool_dir

    if not upload:
        return store
    try:
        if not any(spool_dir().glob("*.jsonl")):
            return store
    except OSError:
        return store
    import sys

    from .spool import note, upload_pending

    for summary in upload_pending(store):
        print(note(summary), file=sys.stderr)
    return store
