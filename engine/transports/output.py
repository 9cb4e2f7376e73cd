"""Bounded capture of a command's output: head and tail kept, the whole spooled to a file.

A step that prints gigabytes must not take runproc's memory with it: each stream keeps its
first and last ``cap // 2`` bytes in memory, and once it passes ``cap`` the whole stream is
written to a log file whose path the result names.
"""

from __future__ import annotations

import codecs
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

DEFAULT_CAP = 1024 * 1024
LINE_LIMIT = 64 * 1024  # a streamed "line" longer than this is shown in pieces


class OutputBuffer:
    def __init__(self, name: str, cap: int = DEFAULT_CAP, spool_dir: Path | None = None,
                 label: str | None = None) -> None:
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

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.total += len(data)
        # head + tail hold the whole stream only up to 2 * half bytes (cap may be odd)
        if self.spool is None and self.total > 2 * self.half:
            self._start_spool()
        if self.spool is not None:
            self.spool.write(data)
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
        # kept open across write() calls and closed by close(): no with-block can hold it
        f = tempfile.NamedTemporaryFile(dir=directory, prefix=prefix, suffix=".log", delete=False)  # noqa: SIM115
        self.spool = f  # type: ignore[assignment]
        self.spool_path = f.name
        # what was kept so far is exactly the start of the stream (see write)
        f.write(bytes(self.head) + bytes(self.tail))

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        if not self.truncated:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace")
        skipped = self.total - len(self.head) - len(self.tail)
        where = f"; full output in {self.spool_path}" if self.spool_path else ""
        marker = f"\n[... {skipped:,} bytes not shown{where} ...]\n"
        return (bytes(self.head).decode("utf-8", errors="replace") + marker
                + bytes(self.tail).decode("utf-8", errors="replace"))


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
