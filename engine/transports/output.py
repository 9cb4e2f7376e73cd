"""Bounded capture of a command's output: head and tail kept, the whole spooled to a file.

A step that prints gigabytes must not take runproc's memory with it: each stream keeps its
first and last ``cap // 2`` bytes in memory, and once it passes ``cap`` the whole stream is
written to a log file whose path the result names.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import BinaryIO

DEFAULT_CAP = 1024 * 1024


class OutputBuffer:
    def __init__(self, name: str, cap: int = DEFAULT_CAP, spool_dir: Path | None = None) -> None:
        self.name = name
        self.cap = cap
        self.half = cap // 2
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0
        self.spool_dir = spool_dir
        self.spool: BinaryIO | None = None
        self.spool_path: str | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.total += len(data)
        if self.spool is None and self.total > self.cap:
            self._start_spool()
        if self.spool is not None:
            self.spool.write(data)
        if len(self.head) < self.half:
            take = self.half - len(self.head)
            self.head += data[:take]
            data = data[take:]
        if data:
            self.tail += data
            if len(self.tail) > self.half:
                del self.tail[: len(self.tail) - self.half]

    def _start_spool(self) -> None:
        if self.spool_dir is not None:
            self.spool_dir.mkdir(parents=True, exist_ok=True)
            f = tempfile.NamedTemporaryFile(dir=self.spool_dir, prefix=f"{self.name}-", suffix=".log",
                                            delete=False)
        else:
            f = tempfile.NamedTemporaryFile(prefix=f"runproc-{self.name}-", suffix=".log", delete=False)
        self.spool = f  # type: ignore[assignment]
        self.spool_path = f.name
        # what was kept so far is exactly the start of the stream
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
