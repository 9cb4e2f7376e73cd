"""Run a command on this machine in its own session, so a timeout can kill its whole tree."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .output import OutputBuffer

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL


@dataclass
class CommandResult:
    rc: int | None
    stdout: OutputBuffer
    stderr: OutputBuffer
    timed_out: bool = False
    cancelled: bool = False


def run_local(argv: list[str], *, cwd: Path | None, env: dict[str, str], deadline: float | None,
              cancel: threading.Event, stdin: bytes | None = None, spool_dir: Path | None = None,
              on_output: Callable[[str, str], None] | None = None) -> CommandResult:
    """Run argv, capturing both streams boundedly; kill the process group on deadline/cancel."""
    out = OutputBuffer("stdout", spool_dir=spool_dir)
    err = OutputBuffer("stderr", spool_dir=spool_dir)
    proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **env}, start_new_session=True,
                            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if stdin is not None and proc.stdin is not None:
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    timed_out = cancelled = False
    open_streams = 2
    exited_at: float | None = None
    try:
        while open_streams:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                timed_out = True
                break
            if cancel.is_set():
                cancelled = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 1.0:
                break  # a background child still holds the pipes; it is not ours to wait for
            wait = 0.25 if deadline is None else min(0.25, max(0.0, deadline - now))
            for key, _ in sel.select(timeout=wait):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                key.data.write(chunk)
                if on_output is not None:
                    on_output(key.data.name, chunk.decode("utf-8", errors="replace"))
        if timed_out or cancelled:
            kill_group(proc)
        rc = proc.wait()
    finally:
        sel.close()
        for stream in (proc.stdout, proc.stderr):
            stream.close()
        out.close()
        err.close()
    return CommandResult(rc, out, err, timed_out, cancelled)


def _feed(pipe: object, data: bytes) -> None:
    try:
        pipe.write(data)  # type: ignore[attr-defined]
        pipe.close()  # type: ignore[attr-defined]
    except OSError:
        pass


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole process group, then SIGKILL whatever is left after a grace period."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    _signal_group(pgid, signal.SIGTERM)
    end = time.monotonic() + KILL_GRACE
    while time.monotonic() < end:
        if proc.poll() is not None and not _group_alive(pgid):
            return
        time.sleep(0.05)
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
