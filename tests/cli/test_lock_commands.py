"""`runproc locks` (who holds what, alive or stale, and the audit with --history) and
`runproc unlock` (refused without a terminal or --yes, recorded with who broke it) (issue 12.4)."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.helpers.cli import popen, runproc, write

LOCKED = """
procedure: locked
lock: db-primary
steps:
  - id: work
    shell: echo $$ > {name}.pid; exec sleep 60
"""


def _wait_for(path: Path, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.stat().st_size:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def _locks(tmp: Path) -> list[dict[str, Any]]:
    done = runproc(tmp, "locks", "--output", "json")
    assert done.rc == 0, done.stderr
    return list(json.loads(done.stdout))


def _history(tmp: Path, *args: str) -> list[dict[str, Any]]:
    done = runproc(tmp, "locks", "--history", *args, "--output", "json")
    assert done.rc == 0, done.stderr
    return list(json.loads(done.stdout))


def _holder(tmp: Path, name: str) -> subprocess.Popen[str]:
    """A run holding db-primary, its step asleep until killed."""
    proc = popen(tmp, str(write(tmp, LOCKED.format(name=name), f"{name}.yml")))
    _wait_for(tmp / f"{name}.pid")
    return proc


def _stop(proc: subprocess.Popen[str], pid_file: Path) -> None:
    proc.kill()
    proc.communicate(timeout=20)
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


def test_locks_lists_the_holder_then_shows_it_stale_after_sigkill(tmp_path: Path) -> None:
    empty = runproc(tmp_path, "locks")
    assert empty.rc == 0 and empty.stdout == "" and "no lock is held" in empty.stderr
    first = _holder(tmp_path, "first")
    try:
        run_id = _state_run(tmp_path)
        [held] = _locks(tmp_path)
        assert held["name"] == "db-primary" and held["run_id"] == run_id and held["procedure"] == "locked"
        assert held["user"] == getpass.getuser() and held["host"] == socket.gethostname()
        assert held["pid"] == first.pid and held["alive"] is True and held["stale"] is False
        assert held["since"] and held["lease"] == 60 and 0 <= held["heartbeat_age"] < 60
        text = runproc(tmp_path, "locks")
        assert text.rc == 0, text.stderr
        line = text.stdout.strip()
        assert line.startswith("db-primary") and " held " in line and f"run {run_id} of locked" in line
        assert f"(pid {first.pid})" in line and "heartbeat " in line and "s ago" in line and "lease 60s" in line
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=20)
        [stale] = _locks(tmp_path)
        assert stale["run_id"] == run_id and stale["alive"] is False and stale["stale"] is True
        shown = runproc(tmp_path, "locks").stdout
        assert "STALE" in shown and "holder gone: the next run that wants it takes it over" in shown
        # and so it does: the takeover is in the audit
        second = _holder(tmp_path, "second")
        try:
            [taken] = _locks(tmp_path)
            assert taken["pid"] == second.pid and taken["alive"] is True
        finally:
            _stop(second, tmp_path / "second.pid")
    finally:
        _stop(first, tmp_path / "first.pid")
    events = [e["event"] for e in _history(tmp_path, "db-primary")]
    assert events[:3] == ["acquired", "taken_over", "acquired"]


def _state_run(tmp: Path) -> str:
    done = runproc(tmp, "runs", "--status", "running", "--output", "json", "--state", f"sqlite:///{tmp}/state.db")
    [run] = json.loads(done.stdout)
    return str(run["id"])


def test_unlock_asks_is_refused_without_a_terminal_and_is_recorded_with_who_broke_it(tmp_path: Path) -> None:
    holder = _holder(tmp_path, "holder")
    try:
        run_id = _state_run(tmp_path)
        refused = runproc(tmp_path, "unlock", "db-primary")  # stdin is a pipe: nobody to ask
        assert refused.rc == 3, refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "--yes" in lines[0] and run_id in lines[0] and "Traceback" not in refused.stderr
        assert [h["run_id"] for h in _locks(tmp_path)] == [run_id]  # still held
        broken = runproc(tmp_path, "unlock", "db-primary", "--yes", "--output", "json")
        assert broken.rc == 0, broken.stderr
        assert broken.json["by"] == getpass.getuser() and broken.json["holder"]["run_id"] == run_id
        assert broken.json["holder"]["alive"] is True
        assert _locks(tmp_path) == []
        [last, *_] = _history(tmp_path)
        assert last["event"] == "broken" and last["name"] == "db-primary" and last["run_id"] == run_id
        assert last["user"] == getpass.getuser() and "alive" in last["detail"]
        text = runproc(tmp_path, "locks", "--history", "db-primary")
        assert text.rc == 0 and "broken" in text.stdout.splitlines()[0] and getpass.getuser() in text.stdout
        # the holder is not stopped: it goes on without the lock, which another run may take
        assert holder.poll() is None
        other = runproc(tmp_path, str(write(tmp_path, "procedure: other\nlock: db-primary\nsteps:\n"
                                                       "  - id: a\n    shell: 'true'\n", "other.yml")))
        assert other.rc == 0, other.stdout + other.stderr
    finally:
        _stop(holder, tmp_path / "holder.pid")


def test_unlock_of_a_lock_not_held_is_one_line_and_exit_2(tmp_path: Path) -> None:
    runproc(tmp_path, str(write(tmp_path, "procedure: p\nsteps:\n  - id: a\n    shell: 'true'\n")))
    done = runproc(tmp_path, "unlock", "no-such-lock", "--yes")
    assert done.rc == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "no-such-lock" in lines[0] and "not held" in lines[0]
    assert _history(tmp_path) == []  # nothing was recorded as broken
    named = runproc(tmp_path, "locks", "db-primary")
    assert named.rc == 2 and "--history" in named.stderr and "Traceback" not in named.stderr
