"""The library's incident procedures page as the runbook says (Severity Levels: a P0 is an
"immediate page to on-call"; a mitigation that fails pages too), against the Kubernetes
stand-in, with PagerDuty's Events API and the chat webhook played by the HTTP server."""

from __future__ import annotations

from pathlib import Path

import pytest

import engine

PROCEDURES = Path(__file__).resolve().parents[2] / "procedures"


@pytest.fixture
def paging(http, kube, monkeypatch):
    """PAGERDUTY_ROUTING_KEY and INCIDENT_WEBHOOK_URL set, the Events API at the HTTP server."""
    for path in ("/v2/enqueue", "/chat"):
        http.set_route("POST", path, status=202, json={"status": "success"})
    for name, value in {**kube.env(), "PAGERDUTY_ROUTING_KEY": "pd-routing-key-0001",
                        "RUNPROC_PAGERDUTY_URL": http.url_for("/v2/enqueue"),
                        "INCIDENT_WEBHOOK_URL": http.url_for("/chat")}.items():
        monkeypatch.setenv(name, value)
    return http


def _pages(http) -> list[dict]:
    return [r.json() for r in http.requests_to("/v2/enqueue")]


def test_outage_response_pages_when_it_starts_and_when_it_fails(paging, tmp_path):
    # a kubeconfig context that does not exist: the maintenance page cannot go up, the run fails
    result = engine.run(PROCEDURES / "outage-response.yml",
                        {"kube_context": "absent", "api_url": paging.url, "commander": "john.smith"},
                        yes=True, journal=False)
    assert result.status == "failed" and result.root_cause == "maintenance_on"
    pages = _pages(paging)
    assert [(p["event_action"], p["payload"]["class"]) for p in pages] == [("trigger", "start"),
                                                                           ("trigger", "failure")]
    assert {p["dedup_key"] for p in pages} == {f"runproc-outage-response-{result.run_id}"}  # one incident
    assert all(p["routing_key"] == "pd-routing-key-0001" and p["payload"]["severity"] == "critical" for p in pages)
    assert pages[1]["payload"]["custom_details"]["step"] == "maintenance_on"
    assert all(n["ok"] for n in result.notifications)


def test_outage_response_without_a_routing_key_pages_nobody(paging, monkeypatch):
    monkeypatch.delenv("PAGERDUTY_ROUTING_KEY")
    result = engine.run(PROCEDURES / "outage-response.yml", {"kube_context": "absent", "api_url": paging.url},
                        yes=True, journal=False)
    assert result.status == "failed" and result.notifications == [] and _pages(paging) == []


def test_a_failed_mitigation_pages_and_tells_the_incident_channel(paging, kube):
    kube.seed_deployment("unjucks-api", replicas=2)
    kube.auto_rollout = False  # the restarted pods never become ready
    result = engine.run(PROCEDURES / "mitigate-restart.yml",
                        {"platform": "kubernetes", "kube_context": "test", "api_url": paging.url,
                         "rollout_timeout": "1s"}, yes=True, journal=False)
    assert result.status == "failed" and result.root_cause == "k8s_rollout"
    [page] = _pages(paging)
    assert page["event_action"] == "trigger" and page["payload"]["component"] == "unjucks-api"
    [chat] = [r.json() for r in paging.requests_to("/chat")]
    assert chat["channel"] == "#incidents" and "Step k8s_rollout" in chat["text"]
