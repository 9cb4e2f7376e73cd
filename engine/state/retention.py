"""Retention of what runs leave behind: step logs on disk and step output in the state.

A step that prints 200 MB used to leave a 200 MB log in ``logs/<run_id>/`` and about 1 MB
of stdout in the database, run after run. The policy (docs/history.md), each limit set by an
environment variable (``off`` or ``0``: no limit):

- ``RUNPROC_LOG_RUN_CAP`` (100MB): the most one run's logs may hold. A log file stops
  growing at it as it is written (engine/transports/output.py: in the logs folder this
  module marks with a ``.runproc-retention`` file); at the end of the run, a run whose files
  together pass it has its largest files cut to their head and tail, with a marker line
  saying how much was cut.
- ``RUNPROC_LOG_TOTAL_CAP`` (1GB): the most the logs folder may hold; the oldest runs'
  folders are deleted first.
- ``RUNPROC_LOG_MAX_AGE`` (30d): a run's logs older than this are deleted.
- ``RUNPROC_OUTPUT_CAP`` (64KiB): what the state keeps of each output stream of a step
  (stdout, stderr, an HTTP body), in the run's report and its journal: the first quarter and
  the end, with a marker. The run itself, and its templates, see the whole output; only the
  copy kept in the state is cut (a resumed run's templates see that copy).

The log limits are applied after each run's report is recorded (``after_run``): a scan of
the logs folder, never a reason for the run to fail (a problem is one warning line).
Logs of a run still going are never touched.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..transports.output import log_cut_marker, mark_retained, parse_size

# variable -> (default, kind): the policy's knobs as docs/history.md lists them
KNOBS: dict[str, tuple[str, str]] = {
    "RUNPROC_LOG_RUN_CAP": ("100MB", "size"),
    "RUNPROC_LOG_TOTAL_CAP": ("1GB", "size"),
    "RUNPROC_LOG_MAX_AGE": ("30d", "age"),
    "RUNPROC_OUTPUT_CAP": ("64KiB", "size"),
}
# the text fields of a step's result that hold a stream of output (shell, kubectl, http)
STREAMS = ("stdout", "stderr", "text")


@dataclass
class Policy:
    """The limits in force (None: no limit), and what could not be read from the environment."""

    run_cap: int | None
    total_cap: int | None
    max_age: float | None  # seconds
    output_cap: int | None
    values: dict[str, str] = field(default_factory=dict)  # variable -> the text in force
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"log_run_cap": self.run_cap, "log_total_cap": self.total_cap, "log_max_age": self.max_age,
                "output_cap": self.output_cap,
                "settings": {name: {"value": self.values[name],
                                    "from": "environment" if os.environ.get(name) else "default"}
                             for name in KNOBS},
                "problems": list(self.problems)}


def policy() -> Policy:
    """The policy from the environment; a value that cannot be read keeps its default (and is
    named in ``problems``: a warning, never a failed run)."""
    read: dict[str, Any] = {}
    values: dict[str, str] = {}
    problems: list[str] = []
    for name, (default, kind) in KNOBS.items():
        text = (os.environ.get(name) or "").strip() or default
        try:
            read[name] = _parse(text, kind)
        except ValueError as exc:
            problems.append(f"{name}={text!r}: {exc}; using the default, {default}")
            text = default
            read[name] = _parse(default, kind)
        values[name] = text
    return Policy(read["RUNPROC_LOG_RUN_CAP"], read["RUNPROC_LOG_TOTAL_CAP"], read["RUNPROC_LOG_MAX_AGE"],
                  read["RUNPROC_OUTPUT_CAP"], values, problems)


def _parse(text: str, kind: str) -> Any:
    if kind == "size":
        return parse_size(text)
    if text.strip().lower() in ("off", "none", "unlimited", "0"):
        return None
    from ..format.durations import parse_duration

    seconds = parse_duration(text)
    return seconds or None


def format_size(size: float | None) -> str:
    """``1.2 MB``, ``640 B``; ``unlimited`` for None (decimal units, as the knobs take them)."""
    if size is None:
        return "unlimited"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(size) < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"  # pragma: no cover - the loop returns at GB


# ---------------------------------------------------------------- output kept in the state


def cap_text(text: str, cap: int | None, log: str | None = None) -> str:
    """``text`` as the state keeps it: whole up to ``cap`` bytes, else its first quarter, a
    marker and its end (a failure says why at the end; the start says what ran)."""
    if cap is None or len(text) * 4 <= cap:  # cheap test first: 4 bytes a character at most
        return text
    data = text.encode("utf-8", errors="replace")
    if len(data) <= cap:
        return text
    head_n = cap // 4
    tail_n = cap - head_n
    where = f"; the log: {log}" if log else ""
    cut = len(data) - head_n - tail_n
    marker = f"\n[... runproc: {cut:,} bytes of this output not kept in the state (RUNPROC_OUTPUT_CAP){where} ...]\n"
    # cut on bytes, dropping a character split in two at either edge
    return (data[:head_n].decode("utf-8", errors="ignore") + marker
            + data[len(data) - tail_n:].decode("utf-8", errors="ignore"))


def cap_entry(entry: dict[str, Any], cap: int | None) -> dict[str, Any]:
    """A step's report entry with its output streams capped (its hosts, undo and child steps too);
    the same dict when nothing needed cutting."""
    if cap is None or not isinstance(entry, dict):
        return entry
    changed: dict[str, Any] = {}
    for key in STREAMS:
        value = entry.get(key)
        if isinstance(value, str):
            kept = cap_text(value, cap, entry.get(f"{key}_log") if key != "text" else None)
            if kept is not value:
                changed[key] = kept
    for key in ("hosts", "steps"):  # fanned out: per host; a child procedure: per child step
        nested = entry.get(key)
        if isinstance(nested, dict):
            capped = {k: cap_entry(v, cap) for k, v in nested.items()}
            if any(capped[k] is not nested[k] for k in nested):
                changed[key] = capped
    undo = entry.get("rollback")
    if isinstance(undo, dict):
        capped_undo = cap_entry(undo, cap)
        if capped_undo is not undo:
            changed["rollback"] = capped_undo
    return {**entry, **changed} if changed else entry


_OUTPUT_CAP: dict[str, int | None] = {}  # RUNPROC_OUTPUT_CAP's text -> bytes: read once per value


def output_cap() -> int | None:
    """``RUNPROC_OUTPUT_CAP`` in bytes (None: no limit); its default when it cannot be read.
    Asked at every journal write, so its text is parsed once."""
    text = os.environ.get("RUNPROC_OUTPUT_CAP") or KNOBS["RUNPROC_OUTPUT_CAP"][0]
    if text not in _OUTPUT_CAP:
        try:
            _OUTPUT_CAP[text] = parse_size(text)
        except ValueError:
            _OUTPUT_CAP[text] = parse_size(KNOBS["RUNPROC_OUTPUT_CAP"][0])
    return _OUTPUT_CAP[text]


def stored_report(report: dict[str, Any], cap: int | None | bool = True) -> dict[str, Any]:
    """A run's report as the state keeps it (``cap``: True for the policy's)."""
    limit = output_cap() if cap is True else (cap or None)
    steps = report.get("steps")
    if limit is None or not isinstance(steps, list):
        return report
    return {**report, "steps": [cap_entry(e, limit) for e in steps]}


def stored_entries(entries: list[dict[str, Any]], cap: int | None | bool = True) -> list[dict[str, Any]]:
    """Journal entries as the state keeps them: a step's, a host's or an undo's result capped."""
    limit = output_cap() if cap is True else (cap or None)
    if limit is None:
        return entries
    out = []
    for e in entries:
        data = e.get("data")
        if isinstance(data, dict) and isinstance(data.get("entry"), dict):
            capped = cap_entry(data["entry"], limit)
            if capped is not data["entry"]:
                e = {**e, "data": {**data, "entry": capped}}
        out.append(e)
    return out


# ---------------------------------------------------------------- logs on disk


@dataclass
class Folder:
    """One run's logs folder."""

    path: Path
    size: int
    mtime: float

    @property
    def run_id(self) -> str:
        return self.path.name


def folder_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue  # deleted meanwhile
    return total


def run_folders(logs_dir: Path) -> list[Folder]:
    """The run folders under ``logs_dir``, oldest first (by their last change)."""
    out: list[Folder] = []
    try:
        entries = list(os.scandir(logs_dir))
    except OSError:
        return out
    for entry in entries:
        try:
            if not entry.is_dir(follow_symlinks=False):
                continue
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        path = Path(entry.path)
        # a folder's own time changes when a file is added; a log growing changes the file's
        newest = max([mtime, *(_mtime(p) for p in _files(path))])
        out.append(Folder(path, folder_size(path), newest))
    out.sort(key=lambda f: f.mtime)
    return out


def _files(folder: Path) -> list[Path]:
    return [Path(root) / name for root, _dirs, files in os.walk(folder) for name in files]


def _mtime(path: Path) -> float:
    try:
        return path.lstat().st_mtime
    except OSError:
        return 0.0


def usage(logs_dir: Path) -> dict[str, Any]:
    """The logs folder: its path, bytes and number of run folders (``runproc state info``)."""
    folders = run_folders(logs_dir)
    return {"dir": str(logs_dir), "exists": logs_dir.is_dir(), "bytes": sum(f.size for f in folders),
            "run_folders": len(folders),
            "oldest": _iso(folders[0].mtime) if folders else None}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def trim_file(path: Path, keep: int) -> int:
    """Cut ``path`` to about ``keep`` bytes: its head and tail around a marker line. The bytes cut."""
    size = path.stat().st_size
    if size <= keep:
        return 0
    probe = log_cut_marker(size, size, size)  # as long as the real marker can be, at most
    room = max(0, keep - len(probe))
    head_n = room // 2
    tail_n = room - head_n
    cut = size - head_n - tail_n
    tmp = path.with_name(f".{path.name}.trim")
    with path.open("rb") as src, tmp.open("wb") as dst:
        _copy(src, dst, head_n)
        dst.write(log_cut_marker(cut, head_n, tail_n))
        if tail_n:
            src.seek(size - tail_n)
            _copy(src, dst, tail_n)
    os.replace(tmp, path)
    return cut


_CHUNK = 1 << 20


def _copy(src: Any, dst: Any, n: int) -> None:
    """Copy ``n`` bytes in 1 MiB chunks: a head of 50 MB read at once would be 50 MB of memory
    in a process that promises to stay small however much a step prints."""
    while n > 0:
        chunk = src.read(min(n, _CHUNK))
        if not chunk:
            return
        dst.write(chunk)
        n -= len(chunk)


def cap_run(folder: Path, cap: int) -> int:
    """Bring one run's logs under ``cap``: the smaller files kept whole, the larger ones cut to
    an equal share of what is left. The bytes freed."""
    files = sorted(((f.lstat().st_size, f) for f in _files(folder) if f.is_file()), key=lambda x: x[0])
    if sum(size for size, _ in files) <= cap:
        return 0
    freed = 0
    budget = cap
    for i, (size, path) in enumerate(files):
        share = budget // (len(files) - i)
        if size <= share:
            budget -= size
            continue
        freed += trim_file(path, share)
        budget -= share
    return freed


def _remove(folder: Folder) -> int:
    shutil.rmtree(folder.path, ignore_errors=True)
    return folder.size


def enforce(logs_dir: Path, run_id: str | None, protected: set[str], pol: Policy,
            now: float | None = None) -> dict[str, Any]:
    """Apply the log limits under ``logs_dir``: ``run_id``'s own folder to the per-run cap, then
    age and the total (folders of ``protected`` runs, those still going, never deleted)."""
    summary: dict[str, Any] = {"trimmed_bytes": 0, "deleted_folders": [], "deleted_bytes": 0}
    if not logs_dir.is_dir():
        return summary
    if run_id is not None and pol.run_cap is not None and (logs_dir / run_id).is_dir():
        summary["trimmed_bytes"] = cap_run(logs_dir / run_id, pol.run_cap)
    if pol.max_age is None and pol.total_cap is None:
        return summary
    now = time.time() if now is None else now
    folders = run_folders(logs_dir)
    kept: list[Folder] = []
    for f in folders:
        if pol.max_age is not None and f.mtime < now - pol.max_age and f.run_id not in protected:
            summary["deleted_bytes"] += _remove(f)
            summary["deleted_folders"].append(f.run_id)
        else:
            kept.append(f)
    if pol.total_cap is not None:
        total = sum(f.size for f in kept)
        for f in kept:  # oldest first
            if total <= pol.total_cap:
                break
            if f.run_id in protected:
                continue
            total -= f.size
            summary["deleted_bytes"] += _remove(f)
            summary["deleted_folders"].append(f.run_id)
    return summary


def after_run(store: Any, run_id: str) -> None:
    """The log limits, applied once a run's report is recorded: never an error for the run,
    a warning line on stderr when something stood in the way."""
    try:
        pol = policy()
        for problem in pol.problems:
            print(f"runproc: warning: log retention: {problem}", file=sys.stderr)
        logs_dir = store.logs_dir()
        _mark(logs_dir)
        if not logs_dir.is_dir():
            return
        protected = {run_id, *store.running_ids()}
        enforce(logs_dir, run_id, protected, pol)
    except Exception as exc:  # noqa: BLE001 - the run is over; its outcome stands
        print(f"runproc: warning: log retention: {type(exc).__name__}: {exc}", file=sys.stderr)


def _mark(logs_dir: Path) -> None:
    """Mark the state's logs folder as looked after (engine/transports/output.py)."""
    mark_retained(logs_dir)


def remove_run_logs(logs_dir: Path, run_ids: list[str], dry_run: bool = False) -> tuple[int, int]:
    """The logs folders of these runs deleted (``runproc prune``): (folders, bytes)."""
    folders = bytes_ = 0
    for rid in run_ids:
        path = logs_dir / rid
        if not rid or "/" in rid or rid in (".", "..") or not path.is_dir():
            continue
        size = folder_size(path)
        if not dry_run:
            shutil.rmtree(path, ignore_errors=True)
        folders += 1
        bytes_ += size
    return folders, bytes_
