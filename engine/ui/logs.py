"""Library loggers (paramiko, botocore, urllib3, httpx, psycopg...) routed into runproc's own.

Libraries log to the ``logging`` module; with no handler configured, Python's last-resort
handler prints their warnings and errors, tracebacks included, on stderr (paramiko's
``Exception (client): Error reading SSH protocol banner``). runproc says what went wrong in
the step's own one-line error instead, so by default these records go nowhere near the
terminal: they are kept in a bounded buffer and written with the run's step logs
(``library.log`` under ``--report-dir``'s logs). With ``-v`` they are printed on stderr too.
"""

from __future__ import annotations

import collections
import logging
import sys
import threading
from pathlib import Path

LIBRARIES = ("paramiko", "botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore", "psycopg",
             "jinja2", "asyncio")
_KEEP = 500  # records kept for the library log; older ones are dropped


class _Masking(logging.Formatter):
    """A formatter that masks every secret the runs of this process know (the record may quote one)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        redaction = sys.modules.get("engine.format.redaction")
        return redaction.redact_everywhere(text) if redaction is not None else text


class _Buffer(logging.Handler):
    """The last records, formatted with their tracebacks, for the library log."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: collections.deque[str] = collections.deque(maxlen=_KEEP)
        self._guard = threading.Lock()
        self.setFormatter(_Masking("%(asctime)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a library's odd record must not break a step
            text = f"{record.name} {record.levelname} (unformattable record)"
        with self._guard:
            self.lines.append(text)


_buffer = _Buffer()
_routed = False


def route_library_logs(verbose: bool = False) -> None:
    """Send library records to runproc's buffer (and to stderr with ``-v``), never to Python's
    last-resort handler. Idempotent; the CLI calls it once per process."""
    global _routed
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        if not _routed:
            logger.addHandler(_buffer)
            logger.propagate = False  # an embedder's root handlers are theirs; ours keep these
            logger.setLevel(logging.INFO)
        if verbose and not any(getattr(h, "_runproc_stderr", False) for h in logger.handlers):
            stderr = logging.StreamHandler(sys.stderr)
            stderr.setFormatter(_Masking("runproc: [%(name)s] %(levelname)s %(message)s"))
            stderr._runproc_stderr = True  # type: ignore[attr-defined]
            logger.addHandler(stderr)
    _routed = True


def write_library_log(folder: Path) -> Path | None:
    """Write the buffered records to ``folder/library.log``; None when there were none."""
    with _buffer._guard:
        lines = list(_buffer.lines)
    if not lines:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "library.log"
    path.write_text("\n".join(lines) + "\n")
    return path


def buffered() -> list[str]:
    """The records kept so far (for tests and the report)."""
    with _buffer._guard:
        return list(_buffer.lines)
