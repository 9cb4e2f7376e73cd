"""When notifications fire (start, success, failure, rollback, approval_needed; a procedure's and a
step's own), what a broken receiver does to a run (nothing: it is recorded and shown), that no
secret reaches a payload, templates and ``when``, and a dry run that sends nothing."""

from __future__ import annotations

import base64
import json

import pytest

from .conftest import warnings


@pytest.fixture(autouse=True)
def _hook(http, monkeypatch):
    http.set_route("POST", "/hook", json={"ok": True})
    monkeypatch.setenv("NOTIFY_HOOK", http.url_for("/hook"))


def _events(http, path: str = "/hook") -> list[str]:
    return [r.json()["event"] for r in http.requests_to(path)]


def test_a_run_that_ends_ok_says_start_and_success(http, run_procedure):
    result = run_procedure("""
procedure: nightly
notify:
  - on: [start, success, failure, rollback, approval_needed]
    webhook: "{{ env.NOTIFY_HOOK }}"
steps:
  - id: work
    shell: "true"
""")
    assert result.status == "ok"
    assert sorted(_events(http)) == ["start", "success"]
    success = next(r.json() for r in http.requests_to("/hook") if r.json()["event"] == "success")
    assert success["status"] == "ok" and success["duration"] is not None
    assert [(n["event"], n["ok"]) for n in result.notifications] == [("start", True), ("success", True)]


def test_a_failure_is_said_before_the_rollback_and_the_rollback_when_it_is_over(http, run_procedure):
    result = run_procedure("""
procedure: deploy
notify:
  - on: [failure, rollback, success]
    webhook: "{{ env.NOTIFY_HOOK }}"
steps:
  - id: switch
    shell: "true"
    rollback: {shell: "true"}
  - id: smoke
    shell: "echo 502 from the new colour >&2; exit 1"
""")
    assert result.status == "failed"
    # the records are in the order the events happened: failure first, then the rollback
    assert [n["event"] for n in result.notifications] == ["failure", "rollback"]
    by_event = {r.json()["event"]: r.json() for r in http.requests_to("/hook")}
    failure, rollback = by_event["failure"], by_event["rollback"]
    assert failure["step"] == "smoke" and "502 from the new colour" in failure["error"]
    assert failure["rolled_back"] == []  # said before anything was undone
    assert rollback["status"] == "failed" and rollback["rolled_back"] == ["switch"]
    assert "Undone: switch" in rollback["message"]


def test_a_refused_run_is_a_failure_without_a_step(http, run_procedure):
    result = run_procedure("""
procedure: guarded
preconditions:
  - assert: "1 == 2"
    message: the change freeze is on
notify:
  - webhook: "{{ env.NOTIFY_HOOK }}"
steps:
  - id: work
    shell: "true"
""")
    assert result.status == "refused"
    [request] = http.requests_to("/hook")
    body = request.json()
    assert body["event"] == "failure" and body["status"] == "refused" and "change freeze" in body["error"]


def test_a_step_has_its_own_notifications(http, run_procedure):
    http.set_route("POST", "/step", json={})
    result = run_procedure("""
procedure: stepwise
steps:
  - id: approve
    confirm: "Go?"
    notify:
      - on: [approval_needed]
        webhook: "{{ env.NOTIFY_HOOK | replace('/hook', '/step') }}"
  - id: change
    shell: "true"
    rollback: {shell: "true"}
    notify:
      - on: [start, success, rollback]
        webhook: "{{ env.NOTIFY_HOOK | replace('/hook', '/step') }}"
  - id: check
    shell: "exit 2"
    notify:
      - on: [failure]
        webhook: "{{ env.NOTIFY_HOOK | replace('/hook', '/step') }}"
""", ask=lambda message: True)
    assert result.status == "failed"
    got = [(r.json()["event"], r.json()["step"], r.json()["status"]) for r in http.requests_to("/step")]
    assert sorted(got) == sorted([("approval_needed", "approve", "waiting"), ("start", "change", "running"),
                                  ("success", "change", "ok"), ("failure", "check", "failed"),
                                  ("rollback", "change", "rolled_back")])
    assert {n["step"] for n in result.notifications} == {"approve", "change", "check"}
    assert http.requests_to("/hook") == []


def test_approval_needed_is_not_sent_when_nobody_is_asked(http, run_procedure):
    proc = """
procedure: approved
notify:
  - on: [approval_needed]
    webhook: "{{ env.NOTIFY_HOOK }}"
steps:
  - id: approve
    confirm: "Go?"
"""
    assert run_procedure(proc, yes=True).status == "ok"  # --yes answered it
    assert run_procedure(proc).status == "refused"  # no terminal: refused at once, nobody waits
    assert http.requests_to("/hook") == []
    assert run_procedure(proc, ask=lambda message: False).status == "refused"
    [request] = http.requests_to("/hook")
    assert request.json()["question"] == "Go?"


@pytest.mark.parametrize("receiver", ["answers 500", "is down", "is too slow"])
def test_a_broken_receiver_never_fails_the_run_and_is_recorded(http, run_procedure, closed_port, receiver):
    http.set_route("POST", "/broken", status=500, json={"error": "upstream exploded"})
    http.set_route("POST", "/slow", json={}, delay=3.0)
    url = {"answers 500": http.url_for("/broken"), "is down": f"http://127.0.0.1:{closed_port}/hook",
           "is too slow": http.url_for("/slow")}[receiver]
    result = run_procedure(f"""
procedure: resilient
notify:
  - on: [start, success]
    slack: {{url: "{url}", timeout: 300ms}}
  - on: [success]
    webhook: "{{{{ env.NOTIFY_HOOK }}}}"
steps:
  - id: work
    shell: "true"
""")
    assert result.status == "ok" and result.exit_code == 0
    failed = [n for n in result.notifications if n["channel"] == "slack"]
    assert [n["event"] for n in failed] == ["start", "success"] and not any(n["ok"] for n in failed)
    expected = {"answers 500": "answered 500 Internal Server Error: {\"error\": \"upstream exploded\"}",
                "is down": "cannot reach http://127.0.0.1", "is too slow": "no answer within 0.3s"}[receiver]
    assert all(expected in n["error"] for n in failed), failed
    shown = warnings(result)
    assert any(w.startswith("notification slack on success failed: ") for w in shown), shown
    assert [n["ok"] for n in result.notifications if n["channel"] == "webhook"] == [True]  # the others still go


def test_no_secret_reaches_a_payload_the_report_or_a_warning(http, run_procedure, monkeypatch):
    canary = "Canary-0x5EC12E7-value"
    monkeypatch.setenv("CANARY", canary)
    # a receiver that echoes the secret in its refusal: the recorded error must not carry it
    http.set_route("POST", "/down-for-the-canary", status=503, body=f"rejected {canary}")
    down = http.url_for("/down-for-the-canary")
    result = run_procedure(f"""
procedure: leaky
secrets:
  canary: {{env: CANARY}}
  hook: {{env: NOTIFY_HOOK}}
notify:
  - on: [start, failure, rollback]
    slack: {{url: "{{{{ secrets.hook }}}}", message: "{{{{ event.summary }}}} {{{{ secrets.canary }}}} {{{{ secrets.canary | upper }}}}"}}
  - on: [failure]
    teams: {{url: "{{{{ secrets.hook }}}}", title: "{{{{ secrets.canary | b64encode }}}}"}}
  - on: [failure]
    webhook: {{url: "{{{{ secrets.hook }}}}", json: {{leak: "{{{{ secrets.canary[2:] }}}}"}}}}
  - on: [failure]
    pagerduty: {{routing_key: rk, url: "{{{{ secrets.hook }}}}", dedup_key: "{{{{ secrets.canary }}}}"}}
  - on: [failure]
    webhook: "{down}"
steps:
  - id: first
    shell: "true"
    rollback: {{shell: "echo undoing {{{{ secrets.canary }}}}"}}
  - id: second
    shell: "echo {{{{ secrets.canary }}}} >&2; exit 1"
""")
    assert result.status == "failed"
    forms = [canary, canary.upper(), canary.lower(), canary[2:], base64.b64encode(canary.encode()).decode()]
    bodies = [r.text for r in http.requests]
    assert len(bodies) >= 6
    for body in bodies:
        assert not any(form in body for form in forms), body
    assert any("***" in body for body in bodies)
    report = json.dumps(result.to_json()) + "\n".join(warnings(result))
    assert not any(form in report for form in forms)
    assert http.url_for("/hook") not in report and "/down-for-the-canary" not in report  # a URL's path is a credential


def test_a_message_template_reads_the_event_and_the_run(http, run_procedure):
    result = run_procedure("""
procedure: templated
params:
  env: {type: str, default: staging, help: where}
vars:
  oncall: "@john.smith"
notify:
  - on: [failure]
    slack:
      url: "{{ env.NOTIFY_HOOK }}"
      message: "{{ vars.oncall }}: {{ run.procedure }} on {{ params.env }} {{ event.status }} at {{ event.step }} ({{ steps.count.stdout | trim }} rows)"
steps:
  - id: count
    shell: echo 42
  - id: fail
    shell: "exit 1"
""")
    [request] = http.requests_to("/hook")
    assert request.json()["text"] == "@john.smith: templated on staging failed at fail (42 rows)"
    assert result.notifications[0]["ok"] is True


def test_a_message_that_does_not_render_sends_the_default_one_and_a_url_sends_nothing(http, run_procedure):
    result = run_procedure("""
procedure: typo
notify:
  - on: [failure]
    slack: {url: "{{ env.NOTIFY_HOOK }}", message: "{{ steps.later.stdout }} broke"}
  - on: [failure]
    webhook: "{{ steps.later.json.url }}"
steps:
  - id: fail
    shell: "exit 1"
  - id: later
    shell: "true"
""")
    [request] = http.requests_to("/hook")
    assert request.json()["text"].startswith("🚨 typo failed")
    sent, unsent = result.notifications
    assert sent["ok"] is True and "the default message was sent" in sent["warning"]
    assert any("the default message was sent" in w for w in warnings(result))
    # where to send cannot fall back on anything: not sent, recorded, said
    assert unsent["channel"] == "webhook" and unsent["ok"] is False and unsent["error"].startswith("url: ")
    assert any(w.startswith("notification webhook on failure not sent: url: ") for w in warnings(result))


def test_when_false_sends_nothing(http, run_procedure):
    result = run_procedure("""
procedure: quiet
params:
  page: {type: bool, default: false, help: page the on-call}
notify:
  - when: params.page
    webhook: "{{ env.NOTIFY_HOOK }}"
  - when: not params.page
    on: [success]
    webhook: "{{ env.NOTIFY_HOOK }}"
steps:
  - id: fail
    shell: "true"
""")
    assert [n["event"] for n in result.notifications] == ["success"]
    assert _events(http) == ["success"]


def test_a_dry_run_sends_nothing_and_says_what_a_real_run_would(http, run_procedure):
    from engine import events

    result = run_procedure("""
procedure: planned
notify:
  - on: [start, failure]
    webhook: "{{ env.NOTIFY_HOOK }}"
  - pagerduty: {routing_key: k, url: "{{ env.NOTIFY_HOOK }}"}
escalate:
  - after: 15m
    slack: {url: "{{ env.NOTIFY_HOOK }}"}
steps:
  - id: change
    shell: "true"
""", dry_run=True)
    assert result.status == "planned" and result.notifications == [] and http.requests == []
    [note] = [e.text for e in result.events if isinstance(e, events.Note) and e.level == "info"]
    assert note == ("a dry run sends no notification; a real run would notify: webhook on start, failure; "
                    "pagerduty on failure, approval_needed, rollback, success; slack after 15m without "
                    "an approval or a recovery")
