"""runproc on a pseudo-terminal: a screen that interprets what it prints, keys typed at it."""

from __future__ import annotations

import os
import pty
import re
import select
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers.cli import RUNPROC, child_env

_CSI = re.compile(r"\x1b\[([0-9;?]*)([@-~])")
_OSC = re.compile(r"\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


class Screen:
    """A terminal screen without scrollback limit: enough of VT100 for rich's Live."""

    def __init__(self, cols: int) -> None:
        self.cols = cols
        self.lines: list[list[str]] = [[]]
        self.row = 0
        self.col = 0

    def feed(self, text: str) -> None:
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\x1b":
                m = _CSI.match(text, i) or _OSC.match(text, i)
                if m is not None and m.re is _CSI:
                    self._csi(m[1], m[2])
                i = m.end() if m is not None else i + 2
                continue
            if ch == "\r":
                self.col = 0
            elif ch == "\n":
                self.row += 1
                self.col = 0
            elif ch == "\b":
                self.col = max(0, self.col - 1)
            elif ch >= " ":
                if self.col >= self.cols:  # autowrap, as a terminal does on the next character
                    self.row += 1
                    self.col = 0
                line = self._line()
                line.extend(" " * (self.col + 1 - len(line)))
                line[self.col] = ch
                self.col += 1
            i += 1

    def _line(self) -> list[str]:
        while len(self.lines) <= self.row:
            self.lines.append([])
        return self.lines[self.row]

    def _csi(self, params: str, final: str) -> None:
        n = int(params) if params.isdigit() else 1
        if final == "A":
            self.row = max(0, self.row - n)
        elif final == "B":
            self.row += n
        elif final == "C":
            self.col += n
        elif final == "D":
            self.col = max(0, self.col - n)
        elif final == "G":
            self.col = n - 1
        elif final == "K":
            line = self._line()
            if params == "2":
                line.clear()
            elif params in ("", "0"):
                del line[self.col:]
            else:
                line[: self.col] = [" "] * min(self.col, len(line))
        # colours (m), cursor visibility (?25h/l) and the rest change no text

    def text(self) -> list[str]:
        lines = ["".join(line).rstrip() for line in self.lines]
        while lines and not lines[-1]:
            lines.pop()
        return lines


class Terminal:
    """runproc on a pseudo-terminal of ``cols`` columns: stdin, stdout and stderr."""

    def __init__(self, cwd: Path, args: list[str], cols: int = 100) -> None:
        self.screen = Screen(cols)
        env = child_env({"TERM": "xterm", "COLUMNS": str(cols), "LINES": "40"})
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: runproc on the terminal
            os.chdir(cwd)
            os.execvpe(RUNPROC[0], [*RUNPROC, *args], env)
        self.raw = b""
        self.code: int | None = None

    def read_until(self, done: Callable[[], bool], timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while not done() and time.monotonic() < end:
            readable, _, _ = select.select([self.fd], [], [], 0.05)
            if not readable:
                continue
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            self.raw += data
            self.screen.feed(data.decode(errors="replace"))

    def wait(self, timeout: float = 60) -> list[str]:
        self.read_until(lambda: False, timeout)
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        self.code = os.waitstatus_to_exitcode(status)
        return self.screen.text()

    def type(self, text: str) -> None:
        os.write(self.fd, text.encode())

    def shows(self, pattern: str) -> bool:
        return any(re.search(pattern, line) for line in self.screen.text())
