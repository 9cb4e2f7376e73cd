"""procedures/log-analysis.yml runs for real (issue 17, must-haves 3 and 6): the runbook's two
Elasticsearch queries against the ``_search`` stand-in (tests/servers/elasticsearch.py), which
computes their aggregations from documents indexed here; counts per error and p95 per endpoint
are summarised and judged against the thresholds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import engine
from tests.servers.elasticsearch import SearchServer, es_server, percentile  # noqa: F401 - a fixture

PROCEDURES = Path(__file__).resolve().parents[2] / "procedures"


def _ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat()


def _logs(slow_generate: bool) -> list[dict[str, Any]]:
    """An hour of errors (and older ones outside the window), a day of requests on two endpoints."""
    docs: list[dict[str, Any]] = []
    docs += [{"@timestamp": _ago(minutes=10), "level": "error", "message": "Template not found"}] * 120
    docs += [{"@timestamp": _ago(minutes=20), "level": "error", "message": "Connection pool exhausted"}] * 5
    docs += [{"@timestamp": _ago(hours=3), "level": "error", "message": "ECONNRESET"}] * 500  # before the hour
    docs += [{"@timestamp": _ago(minutes=5), "level": "info", "message": "started"}] * 50
    docs += [{"@timestamp": _ago(hours=2), "level": "info", "endpoint": "/templates", "response_time": 100 + i}
             for i in range(200)]
    top = 1400 if slow_generate else 400
    docs += [{"@timestamp": _ago(hours=5), "level": "info", "endpoint": "/generate",
              "response_time": 200 + (top - 200) * i / 99} for i in range(100)]
    docs += [{"@timestamp": _ago(days=3), "level": "info", "endpoint": "/generate", "response_time": 90000}]
    return docs


@pytest.fixture
def es(es_server: SearchServer) -> SearchServer:  # noqa: F811 - the fixture imported above
    es_server.reset()
    return es_server


def _run(es: SearchServer, **options: Any) -> Any:
    return engine.run(PROCEDURES / "log-analysis.yml", {"es_url": es.url, "max_error_count": 100},
                      journal=False, **options)


def test_counts_per_error_and_p95_per_endpoint_with_thresholds(es):
    es.index("unjucks-2026.12.04", _logs(slow_generate=True))
    result = _run(es)
    assert result.status == "failed" and result.root_cause == "p95_critical"
    summary = result.steps["summary"].json
    assert summary["errors_total"] == 125
    assert summary["errors"] == [{"message": "Template not found", "count": 120},
                                 {"message": "Connection pool exhausted", "count": 5}]
    assert summary["frequent_errors"] == [{"message": "Template not found", "count": 120}]
    generate = [200 + 1200 * i / 99 for i in range(100)]
    templates = [100.0 + i for i in range(200)]
    assert summary["requests"] == 300
    assert summary["endpoints"] == [
        {"endpoint": "/templates", "requests": 200, "p95_ms": round(percentile(templates, 95), 1)},
        {"endpoint": "/generate", "requests": 100, "p95_ms": round(percentile(generate, 95), 1)}]
    assert summary["p95_ms"] == round(percentile(templates + generate, 95), 1)
    assert summary["histogram"][0] == {"from_ms": 100.0, "count": 100}
    statuses = {k: result.steps[k].status for k in ("error_frequency", "p95_warning", "p95_critical")}
    assert statuses == {"error_frequency": "failed", "p95_warning": "failed", "p95_critical": "failed"}
    assert "120x Template not found" in (result.steps["error_frequency"].error or "")
    assert "/generate" in (result.steps["p95_critical"].error or "")
    # the runbook's queries went to _search as written
    first = es.requests[0].body if es.requests[0].body["aggs"].keys() == {"error_types"} else es.requests[1].body
    assert first["query"]["bool"]["must"] == [{"range": {"@timestamp": {"gte": "now-1h"}}}, {"term": {"level": "error"}}]


def test_healthy_logs_pass_every_check(es):
    es.index("unjucks-2026.12.04", [d for d in _logs(slow_generate=False) if d.get("message") != "Template not found"])
    result = _run(es)
    assert result.status == "ok", result.error
    assert {k: result.steps[k].status for k in ("error_frequency", "p95_warning", "p95_critical")} == {
        "error_frequency": "ok", "p95_warning": "ok", "p95_critical": "ok"}


def test_dry_run_searches_and_changes_nothing(es):
    es.index("unjucks-2026.12.04", _logs(slow_generate=False))
    before = {k: list(v) for k, v in es.indices.items()}
    result = engine.plan(PROCEDURES / "log-analysis.yml", {"es_url": es.url}, journal=False)
    assert result.status == "planned"
    assert result.steps["summary"].json["errors_total"] == 125  # the searches are reads: they ran
    assert {(r.method, r.path) for r in es.requests} == {("POST", "/unjucks-*/_search")}
    assert es.indices == before


def test_the_stand_in_refuses_what_it_does_not_know(es):
    es.index("unjucks-a", [{"level": "error"}])
    assert es.search("unjucks-*", {"query": {"fuzzy": {"level": "eror"}}})[0] == 400
    assert es.search("absent", {})[0] == 404
    status, answer = es.search("unjucks-*", {"query": {"term": {"level": {"value": "error"}}}})
    assert status == 200 and answer["hits"]["total"]["value"] == 1


def test_end_to_end_through_the_cli(es, tmp_path):
    """As an operator types it: the JSON report, exit 1 for a critical p95; a bad window is exit 2."""
    import json
    import subprocess

    from tests.helpers.cli import RUNPROC, child_env

    es.index("unjucks-2026.12.04", _logs(slow_generate=True))
    env = {**child_env(), "RUNPROC_STATE": f"sqlite:///{tmp_path}/state.db"}
    out = subprocess.run([*RUNPROC, str(PROCEDURES / "log-analysis.yml"), "-p", f"es_url={es.url}", "--output", "json"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)
    assert out.returncode == 1, out.stderr
    doc = json.loads(out.stdout)
    summary = next(s for s in doc["steps"] if s["id"] == "summary")
    assert summary["json"]["errors"][0] == {"message": "Template not found", "count": 120}
    bad = subprocess.run([*RUNPROC, str(PROCEDURES / "log-analysis.yml"), "-p", "error_window=an hour"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, stdin=subprocess.DEVNULL)
    assert bad.returncode == 2 and "error_window" in bad.stderr and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) <= 2
