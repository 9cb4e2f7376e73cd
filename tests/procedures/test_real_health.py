"""The morning health check and the template health check run for real against local stand-ins.

What they probe, on loopback: the API, AlertManager and Prometheus (the HTTP server of
tests/servers/http.py), PostgreSQL (the session server), the backup bucket (moto's S3), an
error log on the application servers (the local inventory's hosts are this machine), a TLS
endpoint with a certificate made for the test (its CA trusted through SSL_CERT_FILE), and the
``unjucks`` CLI and ``redis-cli`` (programs this machine lacks: small stand-ins that read a
templates folder and answer ``cluster info``). Both procedures are readonly: their dry run is
the same run, and changes nothing either.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from tests.procedures._real import params, runproc, statuses, steps
from tests.servers._common import free_port


@pytest.fixture
def platform(stand_ins, http, postgres_server, pg_db, s3_server, s3_bucket, tmp_path):
    """Everything healthy: API endpoints, no alerts, every target up, last night's backup, a quiet log."""
    http.set_route("GET", "/templates", json=[{"name": "component"}])
    http.set_route("GET", "/api/v1/status", json={"status": "operational"})
    http.set_route("GET", "/api/v2/alerts", json=[])
    http.set_route("GET", "/api/v1/query", json={"status": "success", "data": {"resultType": "vector", "result": []}})
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    s3_server.client().put_object(Bucket=s3_bucket, Key=f"daily/{today}.sql.gz", Body=b"backup bytes")
    log = tmp_path / "error.log"
    log.write_text("".join(f"2024-03-20T08:{i:02d}:00Z info request served\n" for i in range(50)))
    pg = postgres_server
    values = params(
        api_url=http.url, alertmanager_url=http.url, prometheus_url=http.url,
        db_host=pg.host, db_port=pg.port, db_name=pg_db.rsplit("/", 1)[1], db_user=pg.user,
        redis_cli=stand_ins.bin / "redis-cli", error_log=log, backup_bucket=s3_bucket,
        s3_endpoint=s3_server.endpoint_url, tls_host="127.0.0.1", tls_port=stand_ins.tls_port,
        unjucks=stand_ins.bin / "unjucks")
    return values, log


def _morning(stand_ins, values: list[str], tmp: Path, *extra: str, **env: str):
    return runproc("morning-health-check.yml", *values, *extra, env=stand_ins.env(**env), tmp=tmp)


def test_morning_health_check_all_green(stand_ins, platform, http, tmp_path):
    values, _ = platform
    code, doc, err = _morning(stand_ins, values, tmp_path)
    assert code == 0, (err, doc.get("error"), {k: v.get("error") for k, v in steps(doc).items() if v.get("error")})
    assert set(statuses(doc).values()) == {"ok"}
    s = steps(doc)
    assert s["certificate"]["json"]["days_left"] >= 88
    assert s["database"]["scalar"] == 1
    assert set(s["error_logs"]["hosts"]) == {"local-app1", "local-app2"}  # every app server of the inventory
    assert [r.query["query"] for r in http.requests_to("/api/v1/query")] == [["up == 0"]]
    assert http.requests_to("/api/v2/alerts")[0].query["active"] == ["true"]
    for path in ("/health", "/templates", "/api/v1/status"):
        assert http.requests_to(path, "GET"), path
    assert s["templates"]["status"] == "ok"  # the child template-health-check


def test_morning_health_check_names_every_failed_check(stand_ins, platform, http, tmp_path):
    values, log = platform
    http.set_route("GET", "/api/v2/alerts", json=[{"labels": {"alertname": "HighErrorRate"}}])
    http.set_route("GET", "/api/v1/status", status=503, json={"status": "degraded"})
    with log.open("a") as f:
        f.write("2024-03-20T08:59:00Z FATAL template store unreachable\n")
    code, doc, _ = _morning(stand_ins, [*values, *params(db_port=free_port("127.0.0.1"), cert_warn_days=365)],
                            tmp_path, REDIS_CLUSTER_STATE="fail")
    assert code == 1 and doc["root_cause"] == "summary"
    st = statuses(doc)
    failed = {k for k, v in st.items() if v == "failed"}
    assert failed == {"alerts", "endpoints", "error_logs", "database", "redis", "certificate", "summary"}
    s = steps(doc)
    assert "HighErrorRate" in s["alerts"]["error"]
    assert "1 of 3 iterations failed: /api/v1/status" in s["endpoints"]["error"]
    assert "expires in" in s["certificate"]["error"]
    for name in ("alerts", "certificate", "database", "endpoints", "error_logs", "redis"):
        assert name in s["summary"]["error"]
    assert st["health"] == st["backups"] == st["metrics"] == st["templates"] == "ok"


def test_morning_health_check_dry_run_is_the_same_readonly_run(stand_ins, platform, http, s3_server, s3_bucket,
                                                               tmp_path):
    values, log = platform
    before = log.read_bytes()
    objects = [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]]
    code, doc, err = _morning(stand_ins, values, tmp_path, "--dry-run")
    assert code == 0, err
    st = statuses(doc)
    assert doc["dry_run"] is True
    # every check is readonly: it ran; the child template check is dry-run in turn (its checks
    # ran too), and the summary, after a dry-run child, is planned
    assert st.pop("templates") == st.pop("summary") == "planned"
    assert set(st.values()) == {"ok"}
    assert {c["status"] for c in steps(doc)["templates"]["steps"].values()} == {"ok"}
    assert {r.method for r in http.requests} == {"GET"}  # nothing posted, put or deleted
    assert log.read_bytes() == before
    assert [o["Key"] for o in s3_server.client().list_objects_v2(Bucket=s3_bucket)["Contents"]] == objects


# ---------------------------------------------------------------- template-health-check


def _templates(stand_ins, tmp: Path, *extra: str):
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    return runproc("template-health-check.yml", *params(unjucks=stand_ins.bin / "unjucks", workdir=work), *extra,
                   env=stand_ins.env(), tmp=tmp), work


def test_template_health_check_passes_against_the_cli(stand_ins, tmp_path):
    (code, doc, err), _ = _templates(stand_ins, tmp_path)
    assert code == 0, err
    s = steps(doc)
    assert "test-template" in s["listing"]["stdout"]
    assert "would generate test-template" in s["generation"]["stdout"]
    assert "http://test.example.com" in s["semantic"]["stdout"]


def test_template_health_check_fails_naming_the_broken_check(stand_ins, tmp_path):
    (code, doc, _), _ = _templates(stand_ins, tmp_path, "-p", "template=no-such-template")
    assert code == 1 and doc["root_cause"] == "summary"
    assert "Template not found: no-such-template" in steps(doc)["generation"]["stderr"]
    assert steps(doc)["summary"]["error"].startswith("FAILED: generation ")
    assert statuses(doc)["listing"] == statuses(doc)["semantic"] == "ok"


def test_template_health_check_dry_run_runs_the_checks_and_writes_nothing(stand_ins, tmp_path):
    (code, doc, err), work = _templates(stand_ins, tmp_path, "--dry-run")
    assert code == 0, err
    assert doc["dry_run"] is True and set(statuses(doc).values()) == {"ok"}
    assert list(work.iterdir()) == []
    assert sorted(p.name for p in stand_ins.templates.iterdir()) == ["component", "semantic", "test-template"]
