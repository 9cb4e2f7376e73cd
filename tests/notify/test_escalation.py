"""``escalate:``: after a wait without an approval (or a recovery) someone else is told; an
approval (a recovery) in time stops the clock. Each wait here ends on what the test observes
(the escalation received, a flag written), never on a sleep."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from .conftest import warnings

WAITING = """
procedure: change-with-approval
notify:
  - on: [approval_needed]
    webhook: "{{ env.NOTIFY_HOOK }}"
escalate:
  - after: AFTER
    webhook: "{{ env.NOTIFY_HOOK }}/escalated"
    on: [approval_needed]
steps:
  - id: approve
    confirm: "Apply the change?"
  - id: apply
    shell: "true"
"""


@pytest.fixture(autouse=True)
def _hook(http, monkeypatch):
    http.set_route("POST", "/hook", json={"ok": True})
    http.set_route("POST", "/hook/escalated", json={"ok": True})
    monkeypatch.setenv("NOTIFY_HOOK", http.url_for("/hook"))


def _until(condition, limit: float = 20.0) -> bool:
    """Wait for ``condition`` (bounded, so a broken build fails rather than hangs)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_no_approval_in_time_escalates(http, run_procedure):
    def approver(message: str) -> bool:
        # the person answers only once the escalation has gone out
        return _until(lambda: http.requests_to("/hook/escalated"))

    result = run_procedure(WAITING.replace("AFTER", "200ms"), ask=approver)
    assert result.status == "ok"
    [escalated] = http.requests_to("/hook/escalated")
    body = escalated.json()
    assert body["event"] == "escalation" and body["cause"] == "approval_needed" and body["after"] == 0.2
    assert body["step"] == "approve" and "still waits for an approval" in body["message"]
    assert [(n["event"], n.get("cause")) for n in result.notifications] == [
        ("approval_needed", None), ("escalation", "approval_needed")]


def test_an_approval_in_time_stops_the_clock(http, run_procedure):
    result = run_procedure(WAITING.replace("AFTER", "30s"), ask=lambda message: True)
    assert result.status == "ok"
    assert len(http.requests_to("/hook")) == 1 and http.requests_to("/hook/escalated") == []
    assert [n["event"] for n in result.notifications] == ["approval_needed"]


def test_a_denial_also_stops_the_clock(http, run_procedure):
    result = run_procedure(WAITING.replace("AFTER", "30s"), ask=lambda message: False)
    assert result.status == "refused"
    assert http.requests_to("/hook/escalated") == []


def test_a_failure_without_recovery_escalates_while_the_run_goes_on(http, run_procedure, tmp_path: Path):
    """The rollback (the recovery) waits for a flag the test writes once the escalation arrived."""
    flag = tmp_path / "escalated"
    watcher = threading.Thread(target=lambda: _until(lambda: http.requests_to("/hook/escalated"))
                               and flag.write_text("seen"), daemon=True)
    watcher.start()
    result = run_procedure(f"""
procedure: slow-recovery
notify:
  - on: [failure, rollback]
    webhook: "{{{{ env.NOTIFY_HOOK }}}}"
escalate:
  - after: 100ms
    webhook: "{{{{ env.NOTIFY_HOOK }}}}/escalated"
steps:
  - id: restore
    shell: "true"
    rollback:
      shell: "i=0; while [ ! -e {flag} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; test -e {flag}"
  - id: verify
    shell: "exit 1"
""")
    watcher.join(timeout=30)
    assert result.status == "failed" and result.rolled_back == ["restore"]
    [escalated] = http.requests_to("/hook/escalated")
    assert escalated.json()["cause"] == "failure" and escalated.json()["step"] == "verify"
    assert [n["event"] for n in result.notifications] == ["failure", "escalation", "rollback"]
    assert not warnings(result)


def test_a_run_that_ends_stops_its_clocks(http, run_procedure):
    result = run_procedure("""
procedure: quick-failure
escalate:
  - after: 100ms
    webhook: "{{ env.NOTIFY_HOOK }}/escalated"
steps:
  - id: fail
    shell: "exit 1"
""")
    assert result.status == "failed" and result.notifications == []
    # a clock left running would fire within its 100 ms: wait for every clock to be over
    for clock in [t for t in threading.enumerate() if t.name.startswith("notify-escalation-")]:
        clock.join(timeout=10)
    assert http.requests_to("/hook/escalated") == []
