"""What each channel sends, as its receiver gets it: Slack's incoming-webhook payload, a Teams
Adaptive Card (and a legacy MessageCard), a generic JSON webhook, PagerDuty Events API v2
(trigger and resolve, one dedup key per run), and a mail over SMTP with STARTTLS and AUTH."""

from __future__ import annotations

import os

import pytest

from .conftest import warnings

FAILING = """
procedure: shipping
secrets:
  hook: {env: NOTIFY_HOOK}
steps:
  - id: build
    shell: "true"
  - id: deploy
    shell: "echo disk full >&2; exit 3"
"""


@pytest.fixture(autouse=True)
def _hook(http, monkeypatch):
    http.set_route("POST", "/hook", json={"ok": True})
    monkeypatch.setenv("NOTIFY_HOOK", http.url_for("/hook"))


def test_slack_gets_an_incoming_webhook_payload(http, run_procedure):
    result = run_procedure(FAILING + """
notify:
  - on: failure
    slack: {url: "{{ secrets.hook }}", channel: "#incidents", username: runproc, icon_emoji: ":rotating_light:"}
""")
    assert result.status == "failed"
    [request] = http.requests_to("/hook", "POST")
    body = request.json()
    assert request.headers["content-type"] == "application/json"
    assert set(body) == {"text", "channel", "username", "icon_emoji"}
    assert body["channel"] == "#incidents" and body["username"] == "runproc"
    text = body["text"]
    assert f"shipping failed (run {result.run_id})" in text
    assert "Step deploy: command exited with 3" in text and "disk full" in text
    assert result.notifications == [{"channel": "slack", "event": "failure", "ok": True, "error": None,
                                     "target": f"{http.url} #incidents", "status_code": 200}]


def test_teams_gets_an_adaptive_card_or_a_legacy_message_card(http, run_procedure):
    result = run_procedure(FAILING + """
notify:
  - on: failure
    teams: {url: "{{ secrets.hook }}"}
  - on: failure
    teams: {url: "{{ secrets.hook }}", format: messagecard, title: "Deploy of {{ run.procedure }} broke"}
""")
    adaptive, legacy = (r.json() for r in http.requests_to("/hook"))
    if "@type" in adaptive:
        adaptive, legacy = legacy, adaptive
    [attachment] = adaptive["attachments"]
    assert adaptive["type"] == "message"
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    title, text, facts = card["body"]
    assert title["text"] == f"shipping failed (run {result.run_id})" and title["color"] == "Attention"
    assert "Step deploy" in text["text"]
    assert {"title": "Step", "value": "deploy"} in facts["facts"]
    assert legacy["@type"] == "MessageCard" and legacy["title"] == "Deploy of shipping broke"
    assert {"name": "Run", "value": result.run_id} in legacy["sections"][0]["facts"]
    assert [n["ok"] for n in result.notifications] == [True, True]


def test_a_webhook_gets_the_event_as_json_in_its_short_and_long_forms(http, run_procedure, monkeypatch):
    monkeypatch.setenv("HOOK_TOKEN", "tok-31415")
    http.set_route("PUT", "/custom", json={})
    result = run_procedure(FAILING.replace("  hook: {env: NOTIFY_HOOK}", "  hook: {env: NOTIFY_HOOK}\n"
                                           "  token: {env: HOOK_TOKEN}") + """
notify:
  - webhook: "{{ secrets.hook }}"
  - on: [failure]
    webhook:
      url: "{{ secrets.hook | replace('/hook', '/custom') }}"
      method: PUT
      headers: {Authorization: "Bearer {{ secrets.token }}"}
      json: {alert: "{{ run.procedure }} {{ event.name }}", step: "{{ event.step }}", severity: 2}
""")
    [plain] = http.requests_to("/hook")
    body = plain.json()
    assert body["event"] == "failure" and body["procedure"] == "shipping" and body["run_id"] == result.run_id
    assert body["status"] == "failed" and body["step"] == "deploy" and "disk full" in body["error"]
    assert body["who"] and body["host"] and body["sender"] == "runproc"
    assert body["message"].startswith("🚨 shipping failed")
    [custom] = http.requests_to("/custom", "PUT")
    assert custom.json() == {"alert": "shipping failure", "step": "deploy", "severity": 2}
    assert custom.headers["authorization"] == "Bearer tok-31415"  # a credential is used as given
    assert "tok-31415" not in str(result.to_json())


def test_pagerduty_triggers_then_resolves_one_incident_per_run(http, run_procedure, monkeypatch):
    monkeypatch.setenv("PD_KEY", "R0UT1NGKEY0000000000000000000000")
    http.set_route("POST", "/v2/enqueue", status=202, json={"status": "success", "message": "Event processed"})
    proc = """
procedure: release
secrets:
  pd: {env: PD_KEY}
notify:
  - pagerduty: {routing_key: "{{ secrets.pd }}", url: "{{ env.PD_URL }}", severity: error, group: web}
steps:
  - id: approve
    confirm: Release to production?
  - id: release
    shell: "true"
"""
    monkeypatch.setenv("PD_URL", http.url_for("/v2/enqueue"))
    result = run_procedure(proc, ask=lambda message: True)
    assert result.status == "ok"
    trigger, resolve = (r.json() for r in http.requests_to("/v2/enqueue", "POST"))
    assert trigger["event_action"] == "trigger" and resolve["event_action"] == "resolve"
    assert trigger["routing_key"] == resolve["routing_key"] == "R0UT1NGKEY0000000000000000000000"
    assert trigger["dedup_key"] == resolve["dedup_key"] == f"runproc-release-{result.run_id}"
    payload = trigger["payload"]
    assert payload["severity"] == "error" and payload["group"] == "web" and payload["component"] == "release"
    assert payload["class"] == "approval_needed" and "Release to production?" in payload["summary"]
    assert payload["custom_details"]["step"] == "approve"
    assert "payload" not in resolve
    assert [(n["event"], n["status_code"]) for n in result.notifications] == [("approval_needed", 202),
                                                                              ("success", 202)]
    assert "R0UT1NGKEY" not in str(result.to_json())


def test_pagerduty_resolves_on_a_complete_rollback_and_not_on_an_incomplete_one(http, run_procedure,
                                                                                monkeypatch):
    http.set_route("POST", "/v2/enqueue", status=202, json={"status": "success"})
    monkeypatch.setenv("PD_URL", http.url_for("/v2/enqueue"))
    proc = """
procedure: migrate
notify:
  - pagerduty: {routing_key: k, url: "{{ env.PD_URL }}"}
steps:
  - id: change
    shell: "true"
    rollback: {shell: "UNDO"}
  - id: check
    shell: "exit 1"
"""
    result = run_procedure(proc.replace("UNDO", "true"))
    assert result.status == "failed" and result.rolled_back == ["change"]
    assert [r.json()["event_action"] for r in http.requests_to("/v2/enqueue")] == ["trigger", "resolve"]
    http.reset()
    http.set_route("POST", "/v2/enqueue", status=202, json={"status": "success"})
    result = run_procedure(proc.replace("UNDO", "exit 4"))
    assert result.status == "rollback_incomplete"
    actions = [r.json()["event_action"] for r in http.requests_to("/v2/enqueue")]
    assert actions == ["trigger", "trigger"]  # a person must look: the incident stays open


def test_email_goes_over_starttls_with_a_login(smtp, run_procedure, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", smtp.password)
    result = run_procedure(FAILING.replace("  hook: {env: NOTIFY_HOOK}", "  smtp: {env: SMTP_PASSWORD}") + f"""
notify:
  - on: [failure]
    email:
      host: {smtp.host}
      port: {smtp.port}
      from: runproc@example.com
      to: [oncall@example.com, lead@example.com]
      user: {smtp.user}
      password: "{{{{ secrets.smtp }}}}"
      verify: {smtp.ca}
""")
    assert result.status == "failed"
    [mail] = smtp.mails
    assert mail.tls and mail.authenticated and smtp.logins == [(smtp.user, True)]
    assert mail.sender == "runproc@example.com" and mail.recipients == ["oncall@example.com", "lead@example.com"]
    message = mail.message
    assert message["Subject"] == f"[runproc] shipping failed (run {result.run_id})"
    assert message["Auto-Submitted"] == "auto-generated"
    body = message.get_content()
    assert "Step deploy: command exited with 3" in body and f"Run: {result.run_id}" in body
    assert smtp.password not in mail.data.decode()
    assert result.notifications[0]["ok"] is True and result.notifications[0]["channel"] == "email"


def test_email_to_a_server_whose_certificate_is_not_trusted_is_a_recorded_failure(smtp, run_procedure):
    result = run_procedure(f"""
procedure: mailer
steps:
  - id: ok
    shell: "true"
notify:
  - on: success
    email: {{host: {smtp.host}, port: {smtp.port}, from: a@example.com, to: b@example.com, subject: "hi"}}
""")
    assert result.status == "ok" and smtp.mails == []
    [record] = result.notifications
    assert record["ok"] is False and "TLS" in record["error"]
    assert any("notification email on success failed" in w for w in warnings(result))


def test_email_with_a_wrong_password_is_a_recorded_failure(smtp, run_procedure, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", "not-the-password")
    result = run_procedure(f"""
procedure: mailer
secrets:
  smtp: {{env: SMTP_PASSWORD}}
steps:
  - id: ok
    shell: "true"
notify:
  - on: success
    email: {{host: {smtp.host}, port: {smtp.port}, from: a@example.com, to: b@example.com, user: {smtp.user},
             password: "{{{{ secrets.smtp }}}}", verify: {smtp.ca}}}
""")
    assert result.status == "ok" and smtp.mails == []
    [record] = result.notifications
    assert record["ok"] is False and "authentication refused (535)" in record["error"]
    assert "not-the-password" not in str(result.to_json()) + "".join(warnings(result))
    assert os.environ["SMTP_PASSWORD"] == "not-the-password"
