"""Escalation and communication per the runbook (issue 17, must-haves 4 and 6): incident-triage
posts the Initial Incident Report to #incidents, pages the primary at once for a P0, and escalates
to the next level when nobody acknowledges within the severity's response time; incident-notify's
resolution posts the Resolution Report and resolves the page; outage-response posts the
Resolution Report to #incidents when the service is back. PagerDuty's Events API and the chat
webhook are the HTTP stand-in, mail is aiosmtpd with STARTTLS; the diagnosis runs against the
session's PostgreSQL.

The runbook's response times (15 minutes, 1 hour, 4 hours, 24 hours) are what the files say,
checked here; a test shortens them on the loaded procedure so that an escalation is seen
without waiting, and every wait ends on what the test observes, never on a sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import engine
from tests.servers.smtp import smtp_server  # noqa: F401 - a fixture used by the tests here

PROCEDURES = Path(__file__).resolve().parents[2] / "procedures"


def _until(condition: Callable[[], bool], limit: float = 20.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def receivers(http: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The PagerDuty keys and the chat webhook set, the Events API and the webhook at the HTTP server."""
    for path in ("/v2/enqueue", "/chat"):
        http.set_route("POST", path, status=202, json={"status": "success"})
    for name, value in {"PAGERDUTY_ROUTING_KEY": "pd-primary-0001", "PAGERDUTY_SECONDARY_ROUTING_KEY": "pd-second-0002",
                        "RUNPROC_PAGERDUTY_URL": http.url_for("/v2/enqueue"),
                        "INCIDENT_WEBHOOK_URL": http.url_for("/chat"), "DB_PASSWORD": "unused-with-trust"}.items():
        monkeypatch.setenv(name, value)
    return http


@pytest.fixture
def mailbox(smtp_server: Any) -> Any:  # noqa: F811 - the fixture imported above
    """The SMTP relay, its mails and logins forgotten."""
    smtp_server.reset()
    return smtp_server


def _pages(http: Any) -> list[dict[str, Any]]:
    return [r.json() for r in http.requests_to("/v2/enqueue")]


def _chat(http: Any) -> list[dict[str, Any]]:
    return [r.json() for r in http.requests_to("/chat")]


def _triage(pg: Any, tmp_path: Path, **params: Any) -> dict[str, Any]:
    """The diagnosis for real, quickly: systemd status and journal on the local inventory's app
    servers, the database checks against the session's PostgreSQL."""
    return {"platform": "systemd", "repo": str(tmp_path), "db_host": pg.host, "db_port": pg.port,
            "db_name": "postgres", "db_user": pg.user, "summary": "Template generation failing",
            "impact": "template API", **params}


def _shortened(after: dict[float, float]) -> Any:
    """incident-triage as shipped, with its escalation times checked and then shortened."""
    proc = engine.load(PROCEDURES / "incident-triage.yml")
    assert [level.after for level in proc.escalate] == [900, 900, 3600, 3600, 14400, 86400]  # the runbook's
    for level in proc.escalate:
        level.after = after.get(level.after, level.after)
    return proc


def test_p0_pages_at_once_and_escalates_to_the_secondary_when_not_acknowledged(postgres_server, receivers, tmp_path):
    http = receivers
    proc = _shortened({900: 0.2})

    def commander(question: str) -> bool:
        # the Incident Commander acknowledges only once the escalation has gone out
        assert "P0 incident: Template generation failing" in question and "15 minutes" in question
        return _until(lambda: len(_pages(http)) >= 2 and len(_chat(http)) >= 2)

    result = engine.run(proc, _triage(postgres_server, tmp_path, severity=0), ask=commander, journal=False)
    assert result.status == "ok", result.error
    assert result.steps["acknowledge"].status == "ok" and result.steps["connections"].status == "ok"
    initial, escalated = _chat(http)
    assert initial["channel"] == "#incidents"
    assert initial["text"].startswith("🚨 INCIDENT: P0 - Template generation failing\n\nStatus: INVESTIGATING\n"
                                      "Impact: template API\nStart Time: ")
    assert "Incident Commander: @john.smith\nTechnical Lead: @mike.johnson" in initial["text"]
    assert escalated["channel"] == "#emergency-response" and "Sarah Chen" in escalated["text"]
    page, second = _pages(http)
    assert (page["routing_key"], page["event_action"]) == ("pd-primary-0001", "trigger")
    assert (second["routing_key"], second["event_action"]) == ("pd-second-0002", "trigger")
    assert page["dedup_key"] == second["dedup_key"] == f"runproc-incident-triage-{result.run_id}"
    assert all(n["ok"] for n in result.notifications)
    assert sorted((n["channel"], n["event"]) for n in result.notifications) == [
        ("pagerduty", "escalation"), ("pagerduty", "start"), ("slack", "escalation"), ("slack", "start")]
    import json
    doc = json.dumps(result.to_json())
    for secret in ("pd-primary-0001", "pd-second-0002", http.url_for("/chat")):
        assert secret not in doc, [line for line in doc.split(", ") if secret in line]


def test_p1_acknowledged_in_time_pages_nobody(postgres_server, receivers, tmp_path):
    http = receivers
    result = engine.run(PROCEDURES / "incident-triage.yml", _triage(postgres_server, tmp_path, severity=1),
                        ask=lambda question: True, journal=False)
    assert result.status == "ok", result.error
    assert _pages(http) == []  # a P1 is paged only when not acknowledged within the hour
    [initial] = _chat(http)
    assert initial["text"].startswith("🚨 INCIDENT: P1 - Template generation failing")


def test_p1_not_acknowledged_pages_the_primary(postgres_server, receivers, tmp_path):
    http = receivers
    proc = _shortened({3600: 0.2})
    result = engine.run(proc, _triage(postgres_server, tmp_path, severity=1, incident_key="INC-1234"),
                        ask=lambda q: _until(lambda: len(_pages(http)) >= 1 and len(_chat(http)) >= 2),
                        journal=False)
    assert result.status == "ok", result.error
    [page] = _pages(http)
    assert page["routing_key"] == "pd-primary-0001" and page["dedup_key"] == "INC-1234"
    assert page["payload"]["severity"] == "error"
    assert "not acknowledged within 1 hour" in _chat(http)[1]["text"]


def test_p2_mails_the_escalation_address_when_not_acknowledged(postgres_server, receivers, mailbox, tmp_path,
                                                               monkeypatch):
    smtp = mailbox
    monkeypatch.setenv("SSL_CERT_FILE", str(smtp.ca))  # the relay's certificate, made for the test
    monkeypatch.setenv("SMTP_PASSWORD", smtp.password)
    proc = _shortened({14400: 0.2})
    result = engine.run(proc, _triage(postgres_server, tmp_path, severity=2, escalation_email="oncall@unjucks.example",
                                      smtp_port=smtp.port, smtp_user=smtp.user),
                        ask=lambda q: _until(lambda: len(smtp.mails) >= 1), journal=False)
    assert result.status == "ok", result.error
    [mail] = smtp.mails
    assert mail.recipients == ["oncall@unjucks.example"] and mail.tls and mail.authenticated
    assert mail.message["Subject"] == "P2 not acknowledged within 4 hours: Template generation failing"
    assert _pages(receivers) == []
    assert smtp.password not in str(result.to_json())


def test_triage_dry_run_sends_nothing(postgres_server, receivers, tmp_path):
    result = engine.plan(PROCEDURES / "incident-triage.yml", _triage(postgres_server, tmp_path, severity=0),
                         journal=False)
    assert result.status == "planned" and result.steps["acknowledge"].status == "planned"
    assert result.steps["connections"].status == "ok"  # the diagnosis is real
    assert _pages(receivers) == [] and _chat(receivers) == [] and result.notifications == []


def test_resolution_report_resolves_the_page(receivers, tmp_path):
    http = receivers
    result = engine.run(PROCEDURES / "incident-notify.yml", {
        "kind": "resolution", "severity": 1, "summary": "Template generation failing",
        "resolution": "rolled back to 2.3.1", "duration": "47 min", "root_cause": "bad cache key in 2.4.0",
        "incident_key": "INC-1234"}, journal=False)
    assert result.status == "ok", result.error
    [post] = _chat(http)
    assert post["text"] == ("✅ RESOLVED: P1 - Template generation failing\n\nResolution: rolled back to 2.3.1\n"
                            "Duration: 47 min\nRoot Cause: bad cache key in 2.4.0\n\n"
                            "Post-mortem: Will be posted within 24 hours")
    [resolve] = _pages(http)
    assert (resolve["event_action"], resolve["dedup_key"]) == ("resolve", "INC-1234")


def test_resolution_dry_run_sends_nothing(receivers):
    result = engine.plan(PROCEDURES / "incident-notify.yml", {
        "kind": "resolution", "resolution": "rolled back", "duration": "5 min", "root_cause": "a bad deploy",
        "incident_key": "INC-1"}, journal=False)
    assert result.status == "planned" and result.steps["post"].status == "planned"
    assert _chat(receivers) == [] and _pages(receivers) == []


def test_outage_response_posts_the_resolution_report_to_incidents(receivers, tmp_path):
    """The service is back (here: the one readonly step asked for ran), so the report goes out."""
    http = receivers
    result = engine.run(PROCEDURES / "outage-response.yml", {"repo": str(tmp_path), "api_url": http.url},
                        only=("load_balancer",), yes=True, journal=False)
    assert result.status == "ok", result.error
    [report] = [c for c in _chat(http) if c["channel"] == "#incidents"]
    assert report["text"].startswith("✅ RESOLVED: P0 - Unjucks platform unavailable\n\nResolution: rolled back")
    assert "Post-mortem: Will be posted within 24 hours" in report["text"]
    assert [p["event_action"] for p in _pages(http)] == ["trigger", "resolve"]


@pytest.mark.parametrize("name", ["mitigate-restart", "mitigate-rollback"])
def test_a_mitigation_waiting_for_its_approval_escalates(receivers, name, kube, monkeypatch):
    """Nobody approves the restart (or the rollback) in time: the secondary is paged and
    #emergency-response told; the approval is then denied, so nothing was changed."""
    http = receivers
    for key, value in kube.env().items():
        monkeypatch.setenv(key, value)
    kube.seed_deployment("unjucks-api", replicas=2)
    before = kube.get("deployment", "unjucks-prod", "unjucks-api")["metadata"]["generation"]
    proc = engine.load(PROCEDURES / f"{name}.yml")
    assert [level.after for level in proc.escalate] == [900, 900]  # the runbook's P0 response time
    for level in proc.escalate:
        level.after = 0.2
    params = {"platform": "kubernetes", "kube_context": "test"}
    result = engine.run(proc, params, journal=False, ask=lambda question: not _until(
        lambda: any(c["channel"] == "#emergency-response" for c in _chat(http)) and len(_pages(http)) >= 1))
    assert result.status == "refused" and result.exit_code == 3
    escalated = [c for c in _chat(http) if c["channel"] == "#emergency-response"]
    assert len(escalated) == 1 and "Sarah Chen" in escalated[0]["text"]
    assert "pd-second-0002" in {p["routing_key"] for p in _pages(http)}
    assert kube.get("deployment", "unjucks-prod", "unjucks-api")["metadata"]["generation"] == before
