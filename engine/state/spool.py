"""Journals spooled while the state store was unreachable, and their upload to the store.

engine/execution/journal.py writes a spool file when the store stops answering mid-run:
``spool_dir()/<run_id>.jsonl`` (``$RUNPROC_SPOOL_DIR``, else ``$XDG_STATE_HOME/runproc/spool``),
one JSON object a line: a header (the state URL without its password, the run's header and
inputs, host, pid, user), then each journal entry from the outage on, then the final report.
The run keeps the file open and flock'ed until it ends.

``upload`` puts one file into a store: the run is begun if the store never saw it, entries
whose seq the store lacks are appended, the final report is recorded, and the file is
deleted. It is idempotent: an entry committed just before the connection broke (and spooled
too, since the runner never heard back) is not written twice, and a second upload of the same
content changes nothing. ``upload_pending`` does it for every spool file of one state: what
opening a store does (engine/state/opening.py), the "next contact".
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from ..errors import InvalidInputError, RefusedError
from ..execution.journal import _without_password, spool_dir
from .sqlstore import SqlStore

# the runs.pid_start of a run known only from a spool file without its report: no process has
# this start time, so the run is judged by its lease (long expired), never by a reused pid
_NO_PROCESS = "spooled"


class SpoolError(InvalidInputError):
    """A file that is not a usable spool file (exit 2)."""


class SpoolBusy(RefusedError):
    """The run that writes this spool file is still going (exit 3: sync it after that run ends)."""


@dataclass
class Spool:
    """What one spool file holds."""

    path: Path
    header: dict[str, Any]  # the header line: state, header (the run's), inputs, host, pid, user
    entries: list[dict[str, Any]] = field(default_factory=list)
    report: dict[str, Any] | None = None
    inputs: dict[str, Any] | None = None  # recorded with the report (what resume/rollback need)

    @property
    def run_id(self) -> str:
        return str(self.header["header"]["run_id"])


def read(path: Path) -> Spool:
    """The content of a spool file; a SpoolError (one line) if it is not one."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpoolError(f"{path}: {exc.strerror or exc}") from None
    spool: Spool | None = None
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            if n == len(lines):
                break  # a last line torn by a crash mid-write: everything before it holds
            raise SpoolError(f"{path}:{n}: not a JSON line of a runproc spool file") from None
        kind = record.get("type") if isinstance(record, dict) else None
        if spool is None:
            if kind != "header" or not isinstance(record.get("header"), dict) or "run_id" not in record["header"]:
                raise SpoolError(f"{path}:{n}: not a runproc spool file (its first line is not a header)")
            spool = Spool(path, record)
        elif kind == "entry":
            spool.entries.append({k: record.get(k) for k in ("seq", "at", "event", "step", "host", "data")})
        elif kind == "report":
            spool.report, spool.inputs = record.get("report"), record.get("inputs")
    if spool is None:
        raise SpoolError(f"{path}: empty, not a runproc spool file")
    return spool


def state_of(path: Path) -> str | None:
    """The state URL (without password) a spool file belongs to, from its first line only."""
    try:
        with path.open(encoding="utf-8") as f:
            record = json.loads(f.readline())
    except (OSError, ValueError):
        return None
    state = record.get("state") if isinstance(record, dict) else None
    return state if isinstance(state, str) else None


def same_state(a: str, b: str) -> bool:
    """Whether two state URLs name the same state (passwords and spellings aside)."""
    from .opening import is_postgres, state_path

    if is_postgres(a) or is_postgres(b):
        def key(url: str) -> str:
            return _without_password(url).replace("postgres://", "postgresql://", 1).rstrip("/")

        return key(a) == key(b)
    try:
        return state_path(a).resolve() == state_path(b).resolve()
    except (InvalidInputError, OSError):
        return a == b


@contextmanager
def _held(path: Path) -> Iterator[IO[str]]:
    """The spool file, locked against its run (still writing?) and against another upload."""
    try:
        f = path.open("r+", encoding="utf-8")
    except FileNotFoundError:
        raise SpoolError(f"{path}: no such spool file (already uploaded?)") from None
    except OSError as exc:
        raise SpoolError(f"{path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise SpoolBusy(f"{path} is still being written by its run (pid {_writer(path)}): "
                            "it is uploaded once that run ends") from None
        yield f
    finally:
        f.close()


def _writer(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as f:
            return str(json.loads(f.readline()).get("pid", "?"))
    except (OSError, ValueError, AttributeError):
        return "?"


# files this process uploaded (their resolved path -> the summary): opening the store for
# `runproc state sync FILE` uploads FILE already (the next contact), and the sync that follows
# gets the same summary rather than "no such file"
_DONE: dict[Path, dict[str, Any]] = {}


def upload(store: SqlStore, path: Path) -> dict[str, Any]:
    """Upload one spool file into ``store`` (idempotent: entries already there are skipped);
    remove the file once uploaded. A summary: {run_id, file, entries (uploaded), skipped
    (already there), report (bool), status (the run's final status, or None)}.

    SpoolError (exit 2): not a spool file. SpoolBusy (exit 3): its run is still writing it."""
    path = Path(path)
    key = path.resolve()
    if not path.exists() and key in _DONE:
        return _DONE[key]
    with _held(path):
        spool = read(path)
        run_id = spool.run_id
        head = spool.header
        with store._mutex, store._tx() as run:
            if run("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                # the store never saw the run begin (it went away before begin could commit):
                # begin it now as its runner did, with the runner's host and pid
                h = head["header"]
                run('INSERT INTO runs (id, "procedure", status, exit_code, dry_run, started_at, duration, report, '
                    '"user", host, pid, pid_start, heartbeat_at, lease, kind, of_run) VALUES '
                    "(?, ?, 'running', NULL, 0, ?, NULL, ?, ?, ?, ?, ?, 0, ?, ?, ?)",
                    (run_id, h.get("procedure"), h.get("started_at"), json.dumps(h, default=str),
                     h.get("user") or head.get("user"), head.get("host"), head.get("pid"), _NO_PROCESS,
                     store.lease, h.get("kind") or "run", h.get("of_run")))
                if head.get("inputs") is not None:
                    store._put_inputs(run, run_id, head["inputs"])
            have = {int(r[0]) for r in run("SELECT seq FROM journal WHERE run_id = ?", (run_id,)).fetchall()}
            missing = [e for e in spool.entries if isinstance(e.get("seq"), int) and e["seq"] not in have]
        if missing:
            store.append(run_id, missing)
        if spool.report is not None:
            store.record(spool.report, spool.inputs)
            ended = _ended_at(spool.report)
            if ended is not None:
                with store._mutex, store._tx() as run:
                    run("UPDATE runs SET ended_at = ? WHERE id = ?", (ended, run_id))
        path.unlink(missing_ok=True)
    summary = {"run_id": run_id, "file": str(path), "entries": len(missing),
               "skipped": len(spool.entries) - len(missing), "report": spool.report is not None,
               "status": spool.report.get("status") if spool.report is not None else None}
    _DONE[key] = summary
    return summary


def _ended_at(report: dict[str, Any]) -> str | None:
    """When the run ended (its start plus its duration), not when it was uploaded."""
    try:
        start = datetime.fromisoformat(str(report["started_at"]).replace("Z", "+00:00"))
        end = start + timedelta(seconds=float(report["duration"]))
    except (KeyError, TypeError, ValueError):
        return None
    return end.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pending(url: str, folder: Path | None = None) -> list[Path]:
    """The spool files of the state at ``url``, oldest first (only their first lines are read)."""
    folder = folder or spool_dir()
    try:
        files = sorted(folder.glob("*.jsonl"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []
    out = []
    for path in files:
        state = state_of(path)
        if state is not None and same_state(state, url):
            out.append(path)
    return out


def upload_pending(store: SqlStore) -> list[dict[str, Any]]:
    """Upload every spool file of this store's state (the next contact after an outage); one
    still being written by its run, or that cannot be uploaded now, stays for the next time.
    The summaries of those uploaded, and {file, error} for those that failed."""
    out: list[dict[str, Any]] = []
    for path in pending(store.url):
        try:
            out.append(upload(store, path))
        except SpoolBusy:
            continue  # its run is still going: it uploads on a later contact
        except Exception as exc:  # noqa: BLE001 - never stop the store from opening; say it
            if not path.exists():
                continue  # another runproc opening this state uploaded it meanwhile
            out.append({"file": str(path), "error": " ".join(str(exc).split()) or type(exc).__name__})
    return out


def note(summary: dict[str, Any]) -> str:
    """One line about an upload, for the person at the terminal."""
    if "error" in summary:
        return (f"runproc: could not upload the spooled journal {summary['file']}: {summary['error']} "
                f"(it stays; runproc state sync {summary['file']} retries)")
    status = f", status {summary['status']}" if summary.get("status") else ""
    return (f"runproc: uploaded the journal of run {summary['run_id']} spooled while the state store was "
            f"unreachable ({summary['entries']} entries{status}) from {summary['file']}")
