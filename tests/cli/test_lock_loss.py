"""A run whose lock is taken from it (runproc unlock, or its lease expired while it was
stopped) notices at its next heartbeat: it starts nothing new and undoes nothing, since
another run may now be working under that lock (issue 12.4)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers.cli import popen, runproc, write


def _wait_for(path: Path, proc: object, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < end and proc.poll() is None, "timed out"  # type: ignore[attr-defined]
        time.sleep(0.05)


@pytest.mark.parametrize("where", ["top", "child"])
def test_a_broken_lock_stops_its_run_without_undoing(tmp_path: Path, where: str) -> None:
    body = """
        steps:
          - id: hold
            shell: touch holding; while [ ! -e go ]; do sleep 0.05; done; echo hold >> effects
            rollback: {shell: echo undo-hold >> effects}
          - id: next
            needs: [hold]
            shell: echo next >> effects
    """
    if where == "top":
        path = write(tmp_path, "procedure: guarded\nlock: shared\n" + body.replace("\n        ", "\n")[1:])
    else:  # the lock is a child procedure's: the top run's heartbeat renews it
        write(tmp_path, "procedure: child\nlock: shared\n" + body.replace("\n        ", "\n")[1:], name="child.yml")
        path = write(tmp_path, """
            procedure: parent
            steps:
              - id: call
                procedure: child.yml
        """)
    env = {"RUNPROC_LOCK_LEASE": "2"}  # a heartbeat every half second
    proc = popen(tmp_path, str(path), env=env)
    _wait_for(tmp_path / "holding", proc)
    time.sleep(1.5)  # three heartbeats: the lock is renewed, not lost
    assert proc.poll() is None
    broken = runproc(tmp_path, "unlock", "shared", "--yes")
    assert broken.rc == 0, broken.stderr
    time.sleep(1.5)  # the next heartbeat finds it gone
    (tmp_path / "go").touch()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1, err
    assert "taken over or broken" in out + err
    assert (tmp_path / "effects").read_text().split() == ["hold"]  # next never ran, hold not undone


def test_a_lock_renewed_by_the_heartbeat_is_not_lost(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: patient
        lock: shared
        steps:
          - id: wait
            shell: sleep 3
          - id: next
            needs: [wait]
            shell: echo next >> effects
    """)
    done = runproc(tmp_path, str(path), env={"RUNPROC_LOCK_LEASE": "1"})
    assert done.rc == 0, done.stderr
    assert (tmp_path / "effects").read_text().split() == ["next"]
