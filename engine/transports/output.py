"""Bounded capture of a command's output: head and tail kept, the whole spooled to a file.

A step that prints gigabytes must not take runproc's memory with it: each stream keeps its
first and last ``cap // 2`` bytes in memory, and once it passes ``cap`` the whole stream is
written to a log file whose path the result names.

Nor the disk: in a logs folder that runproc's log retention looks after (the state's, marked
by a ``.runproc-retention`` file; not a ``--report-dir``, whose logs are whole as asked), a log
file stops growing at ``RUNPROC_LOG_RUN_CAP`` (default 100 MB, docs/history.md). Past it the
middle is dropped as it arrives and the file ends, when the stream does, with a marker line
saying how much was cut and the stream's last bytes (the in-memory tail): at most the cap on
disk, whatever the step prints.
"""

from __future__ import annotations

import codecs
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DEFAULT_CAP = 1024 * 1024
LINE_LIMIT = 64 * 1024  # a streamed "line" longer than this is shown in pieces
DEFAULT_LOG_CAP = 100 * 1000 * 1000  # RUNPROC_LOG_RUN_CAP's default: one log file, one run's logs
# in a logs folder, this file says runproc's retention looks after its run folders
RETAINED = ".runproc-retention"
_SIZE_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
               "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4}
OFF = ("off", "none", "unlimited", "0")


def parse_size(text: str) -> int | None:
    """Bytes from ``100MB``, ``1.5GB``, ``64KiB``, ``512`` (bytes); None for ``off``/``0`` (no
    limit). ValueError, with the accepted forms, for anything else."""
    import re

    value = text.strip().lower()
    if value in OFF:
        return None
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    if m is None or m.group(2) not in _SIZE_UNITS:
        raise ValueError(f"expected a size such as 100MB, 1GB, 64KiB or off, got {text!r}")
    size = int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])
    return size or None


def mark_retained(logs_dir: Path) -> None:
    """Mark a state's logs folder as looked after by runproc's retention: its log files stop
    growing at the per-run cap as they are written (see ``_limit``). A folder that cannot be
    made or written is left as it is: its logs are still cut after each run where they can be."""
    mark = logs_dir / RETAINED
    if mark.exists():
        return
    try:
        logs_dir.mkdir(parents=True, exist_ok=True)
        mark.write_text("runproc's log retention looks after the run folders here (docs/history.md)\n")
    except OSError:
        pass


def log_cap_from_env() -> int | None:
    """The most one log file may hold on disk: ``RUNPROC_LOG_RUN_CAP`` (None: no limit). A
    value that cannot be read keeps the default here; the retention pass at the end of the
    run says so (engine/state/retention.py)."""
    import os

    text = os.environ.get("RUNPROC_LOG_RUN_CAP")
    if not text:
        return DEFAULT_LOG_CAP
    try:
        return parse_size(text)
    except ValueError:
        return DEFAULT_LOG_CAP


class OutputBuffer:
    def __init__(self, name: str, cap: int = DEFAULT_CAP, spool_dir: Path | None = None,
                 label: str | None = None, log_cap: int | None | bool = True) -> None:
        self.name = name
        self.cap = cap
        self.half = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.spool_dir = spool_dir
        self.label = label  # names the spool file (the step id), with the stream name
        self.spool: BinaryIO | None = None
        self.spool_path: str | None = None
        # the log file's limit on disk (True: RUNPROC_LOG_RUN_CAP's in a retained logs folder,
        # none elsewhere; None: none), known when the file is started: the stream's start up to
        # ``log_head`` bytes is written as it comes, the last ``log_tail`` bytes (kept in memory
        # anyway) at the end
        self.log_cap = log_cap
        self.log_tail = 0
        self.log_head: int | None = None
        self.spooled = 0  # bytes of the stream written to the log file
        self.log_cut = 0  # bytes of the stream the log file leaves out (known at close)

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.total += len(data)
        # head + tail hold the whole stream only up to 2 * half bytes (cap may be odd)
        if self.spool is None and self.total > 2 * self.half:
            self._start_spool()
        if self.spool is not None:
            self._to_log(data)
        if len(self.head) < self.half:
            take = self.half - len(self.head)
            self.head += data[:take]
            data = data[take:]
        if data:
            if len(data) >= self.half:
                self.tail[:] = data[len(data) - self.half:]
            else:
                self.tail += data
                if len(self.tail) > self.half:
                    del self.tail[: len(self.tail) - self.half]

    def _start_spool(self) -> None:
        prefix = f"{self.label}-{self.name}-" if self.label else f"runproc-{self.name}-"
        directory: Path | None = None
        if self.spool_dir is not None:
            try:
                self.spool_dir.mkdir(parents=True, exist_ok=True)
                directory = self.spool_dir
            except OSError:
                directory = None  # losing the full output is worse than keeping it in /tmp
        limit = self._limit(directory)
        if limit:
            self.log_tail = min(self.half, limit // 2)
            self.log_head = limit - self.log_tail
        # kept open across write() calls and closed by close(): no with-block can hold it
        f = tempfile.NamedTemporaryFile(dir=directory, prefix=prefix, suffix=".log", delete=False)  # noqa: SIM115
        self.spool = f  # type: ignore[assignment]
        self.spool_path = f.name
        # what was kept so far is exactly the start of the stream (see write)
        self._to_log(bytes(self.head) + bytes(self.tail))

    def _limit(self, directory: Path | None) -> int | None:
        if self.log_cap is not True:
            return self.log_cap or None
        if directory is None or not (directory.parent / RETAINED).exists():
            return None  # a --report-dir's logs, or a temporary folder: not the state's to limit
        return log_cap_from_env()

    def _to_log(self, data: bytes) -> None:
        """The stream's next bytes into the log file, up to its head's limit."""
        if self.log_head is not None:
            data = data[:max(0, self.log_head - self.spooled)]
        if data:
            assert self.spool is not None
            self.spool.write(data)
            self.spooled += len(data)

    def close(self) -> None:
        if self.spool is None or self.spool.closed:
            return
        missing = self.total - self.spooled
        if missing > 0:
            # the stream went past the log's limit: its end is the in-memory tail (the last
            # ``half`` bytes of the stream), after a marker unless nothing at all was cut
            keep = min(missing, self.log_tail)
            self.log_cut = missing - keep
            if self.log_cut:
                self.spool.write(log_cut_marker(self.log_cut, self.spooled, keep))
            if keep:
                self.spool.write(bytes(self.tail[len(self.tail) - keep:]))
        self.spool.close()

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace")
        skipped = self.total - len(self.head) - len(self.tail)
        where = ""
        if self.spool_path:
            where = (f"; its first and last bytes in {self.spool_path}" if self.log_cut
                     else f"; full output in {self.spool_path}")
        marker = f"\n[... {skipped:,} bytes not shown{where} ...]\n"
        return (bytes(self.head).decode("utf-8", errors="replace") + marker
                + bytes(self.tail).decode("utf-8", errors="replace"))


def log_cut_marker(cut: int, head: int, tail: int) -> bytes:
    """The line a capped log file has where its middle was dropped (retention trims use it too)."""
    return (f"\n[... runproc: {cut:,} bytes cut from this log (the first {head:,} and the last {tail:,} are "
            "kept; RUNPROC_LOG_RUN_CAP sets the limit) ...]\n").encode()


class LineStream:
    """Turns a stream's byte chunks into whole decoded lines for live display.

    Chunks end anywhere: inside a UTF-8 character (decoded incrementally) or inside a line,
    where a secret could be cut in two and escape redaction (so only whole lines leave, or
    pieces of ``LINE_LIMIT`` characters of a line that never ends).
    """

    def __init__(self, name: str, sink: Callable[[str, str], None]) -> None:
        self.name = name
        self.sink = sink
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""

    def feed(self, data: bytes, final: bool = False) -> None:
        text = self.pending + self.decoder.decode(data, final)
        cut = text.rfind("\n") + 1
        if cut == 0 and len(text) >= LINE_LIMIT:
            cut = len(text)
        if final:
            cut = len(text)
        self.pending = text[cut:]
        if cut:
            self.sink(self.name, text[:cut])

    def close(self) -> None:
        self.feed(b"", final=True)
