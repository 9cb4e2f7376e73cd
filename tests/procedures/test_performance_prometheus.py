"""performance-check's application KPIs read from a real Prometheus (tests/servers/prometheus.py)
through the prometheus executor, and judged against the runbook's levels.

The exporter serves the application's metrics under an ``app`` label of this test's own (the
session's Prometheus is shared): 10 % of requests answered 5xx (critical: above 5 %), every
request faster than 100 ms (p95 95 ms: ok), no failed template generation (100 %: ok). The
database and the cache are not there: those KPIs are "not measured", a warning, never fine.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

import engine
from tests.servers._common import free_port

if TYPE_CHECKING:
    from tests.servers.prometheus import PrometheusServer

pytest_plugins = ["tests.servers.prometheus"]

PROCEDURE = Path(__file__).resolve().parents[2] / "procedures" / "performance-check.yml"


def test_application_kpis_come_from_prometheus_and_a_critical_error_rate_fails_the_run(
        prometheus_server: PrometheusServer, monkeypatch: pytest.MonkeyPatch) -> None:
    prom = prometheus_server
    app = prom.exporter.unique("app")
    prom.exporter.counter("http_requests_total", {"app": app, "status": "200"}, 9)
    prom.exporter.counter("http_requests_total", {"app": app, "status": "500"}, 1)
    for le in ("0.1", "0.5", "+Inf"):
        prom.exporter.counter("http_request_duration_seconds_bucket", {"app": app, "le": le}, 10)
    prom.exporter.counter("template_generations_total", {"app": app}, 20)
    prom.exporter.counter("template_generation_failures_total", {"app": app}, 0)
    for query in (f'sum(rate(http_requests_total{{app="{app}", status="500"}}[5m])) > 0',
                  f'sum(rate(http_request_duration_seconds_bucket{{app="{app}"}}[5m])) > 0',
                  f'sum(rate(template_generations_total{{app="{app}"}}[5m])) > 0'):
        prom.wait_for(query)  # two scrapes of each: a rate to read
    monkeypatch.setenv("DB_PASSWORD", "not-used")
    result = engine.run(PROCEDURE, {"prometheus_url": prom.url, "app": app, "db_port": free_port(),
                                    "redis_cli": "/bin/false"}, journal=False)
    assert result.exit_code == 1 and result.root_cause == "critical", result.error
    for step in ("p95", "error_rate", "template_success"):
        assert result.steps[step].status == "ok" and result.steps[step].description.startswith("prometheus[prometheus]: ")
    kpis = result.steps["levels"].fields["json"]["kpis"]
    assert kpis["p95_ms"]["level"] == "ok" and kpis["p95_ms"]["value"] == pytest.approx(95.0, abs=0.5)
    assert kpis["error_rate_pct"] == {"value": 10.0, "level": "critical", "warning": 1, "critical": 5}
    assert kpis["template_success_pct"]["value"] == 100.0 and kpis["template_success_pct"]["level"] == "ok"
    assert kpis["db_connections_pct"]["level"] == kpis["cache_hit_pct"]["level"] == "unknown"
    assert "error_rate_pct=10.0" in (result.steps["critical"].error or "")
