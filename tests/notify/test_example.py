"""docs/notifications.md's example as the page runs it: examples/notifications/receiver.py
started on a free port, examples/notifications/release.yml run against it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import engine

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "notifications"


@pytest.fixture
def receiver() -> Iterator[tuple[str, subprocess.Popen[str]]]:
    proc = subprocess.Popen([sys.executable, str(EXAMPLE / "receiver.py"), "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:"), first + (proc.stderr.read() if proc.stderr else "")
        yield first.split()[-1], proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_example_release_reports_its_failure_and_rollback(receiver, monkeypatch):
    url, proc = receiver
    monkeypatch.setenv("NOTIFY_URL", url)
    result = engine.run(EXAMPLE / "release.yml", {"smoke_fails": True}, yes=True, journal=False)
    assert result.status == "failed" and result.rolled_back == ["release"]
    assert all(n["ok"] for n in result.notifications), result.notifications
    got = sorted((n["channel"], n["event"], n.get("step")) for n in result.notifications)
    assert got == [("pagerduty", "failure", None), ("pagerduty", "rollback", None), ("slack", "failure", None),
                   ("slack", "rollback", None), ("slack", "start", None), ("webhook", "rollback", "release")]
    proc.terminate()
    printed, _ = proc.communicate(timeout=10)
    assert printed.count("--- POST /slack") == 3 and printed.count("--- POST /pagerduty") == 2
    assert '"event_action": "resolve"' in printed and "--- POST /audit" in printed
    assert "Version: 1.4.2" in printed
