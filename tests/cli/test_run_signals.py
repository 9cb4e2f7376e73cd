"""SIGINT/SIGTERM: stop, kill running steps, roll back, finally; a second SIGINT abandons undos."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from pathlib import Path

from tests.helpers.cli import popen, write


def _wait_for_file(path: Path, timeout: float = 15) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists():
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def test_sigint_mid_step_rolls_back_and_exits_130(tmp_path: Path) -> None:
    marker = f"runproc-sig-{uuid.uuid4().hex[:8]}"
    path = write(tmp_path, f"""
        procedure: interrupted
        steps:
          - id: a
            shell: echo a >> done
            rollback: {{shell: echo a >> undone}}
          - id: long
            shell: touch running; sh -c "sleep 60; true {marker}"
            rollback: {{shell: echo long >> undone}}
          - id: after
            shell: touch after
        finally:
          - id: tidy
            shell: touch tidied
    """)
    proc = popen(tmp_path, str(path), "--output", "json")
    _wait_for_file(tmp_path / "running")
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert time.monotonic() - t0 < 5
    report = json.loads(out)
    assert report["status"] == "interrupted" and report["exit_code"] == 130
    statuses = {s["id"]: s["status"] for s in report["steps"]}
    assert statuses == {"a": "rolled_back", "long": "cancelled", "after": "cancelled", "tidy": "ok"}
    assert (tmp_path / "undone").read_text().split() == ["a"]
    assert (tmp_path / "tidied").exists() and not (tmp_path / "after").exists()
    time.sleep(0.1)
    assert subprocess.run(["pgrep", "-f", marker], capture_output=True).stdout == b""


def test_sigterm_acts_like_sigint(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: terminated
        steps:
          - id: a
            shell: echo a >> done
            rollback: {shell: echo a >> undone}
          - id: long
            shell: touch running; sleep 60
    """)
    proc = popen(tmp_path, str(path))
    _wait_for_file(tmp_path / "running")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert (tmp_path / "undone").read_text() == "a\n"
    assert "interrupted" in out


def test_second_sigint_abandons_rollbacks_and_says_which(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: impatient
        steps:
          - id: a
            shell: "true"
            rollback: {shell: echo a >> undone}
          - id: b
            shell: "true"
            rollback: {shell: touch undoing-b; sleep 30; echo b >> undone}
          - id: long
            shell: touch running; sleep 60
        finally:
          - id: tidy
            shell: touch tidied
    """)
    for output in ("json", "text"):
        for f in ("running", "undoing-b", "undone", "tidied"):
            (tmp_path / f).unlink(missing_ok=True)
        proc = popen(tmp_path, str(path), "--output", output)
        _wait_for_file(tmp_path / "running")
        proc.send_signal(signal.SIGINT)
        _wait_for_file(tmp_path / "undoing-b")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        # undos that did not run need a person, whatever stopped them: 4 wins over 130
        assert proc.returncode == 4, err
        assert not (tmp_path / "undone").exists()  # b's undo was killed, a's never started
        assert (tmp_path / "tidied").exists()
        if output == "json":
            report = json.loads(out)
            assert report["status"] == "rollback_incomplete"
            assert report["not_undone"] == ["b", "a"]
            statuses = {s["id"]: s["status"] for s in report["steps"]}
            assert statuses["b"] == "rollback_failed" and statuses["long"] == "cancelled"
            a = next(s for s in report["steps"] if s["id"] == "a")
            assert any("abandoned" in n for n in a["notes"])
        else:
            tail = out.split("NOT UNDONE")[1]
            assert "a" in tail and "b" in tail


def test_hangup_with_the_terminal_gone_still_rolls_back(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: hungup
        steps:
          - id: a
            shell: echo a >> done
            rollback: {shell: echo a >> undone}
          - id: long
            shell: touch running; sleep 60
    """)
    proc = popen(tmp_path, str(path))
    _wait_for_file(tmp_path / "running")
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone, as a closed terminal would be
    proc.send_signal(signal.SIGHUP)
    proc.wait(timeout=20)
    assert proc.returncode == 130
    assert (tmp_path / "undone").read_text() == "a\n"
