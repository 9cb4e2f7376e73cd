"""A step's processes do not outlive it: not after a timeout, a SIGTERM or SIGINT of runproc, or
the end of the run, even a double-forked ``setsid`` grandchild that left the process group."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.helpers.cli import popen, runproc, write

# a grandchild in a session of its own whose parent exits at once: orphaned, out of the group
ESCAPE = "setsid sh -c 'sleep 300 & echo $! > grandchild.pid' &"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:].split()[0] != b"Z"


def _wait_for(predicate: object, timeout: float = 15) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _grandchild(tmp: Path) -> int:
    assert _wait_for(lambda: (tmp / "grandchild.pid").is_file() and (tmp / "grandchild.pid").read_text().strip())
    return int((tmp / "grandchild.pid").read_text())


@pytest.fixture
def reap_strays():
    """Whatever a failing test leaves behind is killed, so it cannot outlive the suite."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_a_timeout_kills_a_grandchild_that_left_the_group(tmp_path: Path, reap_strays: list[int]) -> None:
    write(tmp_path, f"""
        procedure: tree
        steps:
          - id: a
            shell: "{ESCAPE} sleep 30"
            timeout: 1s
    """)
    done = runproc(tmp_path, "proc.yml")
    assert done.rc == 1
    pid = _grandchild(tmp_path)
    reap_strays.append(pid)
    assert _wait_for(lambda: not _alive(pid)), f"grandchild {pid} survived the timeout"


def test_the_end_of_a_step_kills_what_it_left_running(tmp_path: Path, reap_strays: list[int]) -> None:
    write(tmp_path, f"""
        procedure: tree
        steps:
          - id: a
            shell: "{ESCAPE} true"
    """)
    done = runproc(tmp_path, "proc.yml")
    assert done.rc == 0, done.stderr
    pid = _grandchild(tmp_path)
    reap_strays.append(pid)
    assert _wait_for(lambda: not _alive(pid)), f"grandchild {pid} outlived its step"


def test_a_parallel_step_end_kills_what_it_left_running_while_the_run_goes_on(tmp_path: Path,
                                                                              reap_strays: list[int]) -> None:
    """Started by a step's own thread, the orphan is runproc's main thread's child: found there
    at the step's end, not at the run's."""
    write(tmp_path, f"""
        procedure: tree
        steps:
          - id: a
            needs: []
            shell: "{ESCAPE} true"
          - id: b
            needs: []
            shell: sleep 4
    """)
    proc = popen(tmp_path, "proc.yml")
    try:
        pid = _grandchild(tmp_path)
        reap_strays.append(pid)
        assert _wait_for(lambda: not _alive(pid), timeout=3), f"grandchild {pid} outlived its step"
        assert proc.poll() is None, "the run ended first: this proves nothing"
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_to_runproc_kills_the_whole_tree(tmp_path: Path, reap_strays: list[int], sig: int) -> None:
    write(tmp_path, f"""
        procedure: tree
        steps:
          - id: a
            shell: "{ESCAPE} sleep 30"
    """)
    proc = popen(tmp_path, "proc.yml")
    pid = _grandchild(tmp_path)
    reap_strays.append(pid)
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert _wait_for(lambda: not _alive(pid)), f"grandchild {pid} survived {signal.Signals(sig).name}"


def test_a_process_started_without_the_step_token_is_left_running(tmp_path: Path, reap_strays: list[int]) -> None:
    # the documented way to start a service that must outlive its step
    write(tmp_path, """
        procedure: service
        steps:
          - id: a
            shell: "env -u RUNPROC_STEP_TOKEN setsid sh -c 'sleep 300 & echo $! > grandchild.pid' & true"
    """)
    done = runproc(tmp_path, "proc.yml")
    assert done.rc == 0, done.stderr
    pid = _grandchild(tmp_path)
    reap_strays.append(pid)
    time.sleep(0.3)  # the step is over; its cleanup has run
    assert _alive(pid)
