"""Dry runs of the library's change-making procedures against the same real components as their
real runs (tests/procedures/test_library_integration.py): what a dry run reads, it reads for
real; and the test proves it changed nothing there.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.procedures._real import params, runproc, statuses, steps

NS = "unjucks-prod"


def _deployment(kube) -> dict[str, Any]:
    return kube.get("deployment", NS, "unjucks-api")


def _mitigate(file: str, kube, http, tmp, *extra: str, **values: Any) -> tuple[int, dict[str, Any], str]:
    values = {"platform": "kubernetes", "kube_context": "test", "api_url": http.url, **values}
    return runproc(file, *params(**values), "--dry-run", *extra, env=kube.env(), tmp=tmp)


def test_backup_verification_dry_run_creates_no_database(postgres_server, tmp_path):
    pg = postgres_server
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    backup = tmp_path / "backup.sql"
    backup.write_text("CREATE TABLE templates (id int);\nINSERT INTO templates VALUES (1);\n")
    before = set(pg.psql("SELECT datname FROM pg_database").split())
    code, doc, err = runproc("backup-verification.yml", *params(
        backup_file=backup, db_host=pg.host, db_port=pg.port, db_user=pg.user, scratch_db=scratch), "--dry-run",
        env={"PGPASSWORD": "x"}, tmp=tmp_path)
    assert code == 0, err
    st = statuses(doc)
    assert st["backup_readable"] == "ok"  # the file check ran, for real
    assert st["create_scratch"] == st["restore"] == st["drop_scratch"] == "planned"
    assert set(pg.psql("SELECT datname FROM pg_database").split()) == before


def test_scale_up_dry_run_rehearses_on_the_server_and_changes_nothing(kube, http, tmp_path):
    kube.seed_deployment("unjucks-api", replicas=2, containers={"unjucks-api": "unjucks:2.4.0"})
    before = _deployment(kube)["spec"]
    code, doc, err = _mitigate("scale-up.yml", kube, http, tmp_path, replicas=6, memory="2Gi")
    assert code == 0, err
    s = steps(doc)
    assert s["k8s_current"]["status"] == "ok"  # the replicas were read
    assert kube.mutations() and all(r.dry_run for r in kube.mutations())  # scale and patch: --dry-run=server
    assert _deployment(kube)["spec"] == before


def test_mitigate_rollback_dry_run_changes_nothing(kube, http, tmp_path):
    kube.seed_deployment("unjucks-api", replicas=2, containers={"unjucks-api": "unjucks:2.3.1"})
    kube.kubectl("-n", NS, "set", "image", "deployment/unjucks-api", "unjucks-api=unjucks:2.4.0")
    kube.requests.clear()
    code, doc, err = _mitigate("mitigate-rollback.yml", kube, http, tmp_path)
    assert code == 0, err
    assert all(r.dry_run for r in kube.mutations())
    assert _deployment(kube)["spec"]["template"]["spec"]["containers"][0]["image"] == "unjucks:2.4.0"


def test_mitigate_restart_dry_run_restarts_nothing(kube, http, tmp_path):
    kube.seed_deployment("unjucks-api", replicas=2)
    kube.requests.clear()
    code, doc, err = _mitigate("mitigate-restart.yml", kube, http, tmp_path)
    assert code == 0, err
    assert statuses(doc)["k8s_restart"] == "planned"
    assert kube.mutations() == []  # kubectl cannot rehearse a restart: nothing was sent
    annotations = _deployment(kube)["spec"]["template"]["metadata"].get("annotations") or {}
    assert "kubectl.kubernetes.io/restartedAt" not in annotations


def test_outage_response_dry_run_diagnoses_for_real_and_changes_nothing(kube, http, postgres_server, tmp_path):
    """The diagnosis runs against the stand-ins; the maintenance page, the rollback and the
    channel's messages are only rehearsed or shown."""
    kube.seed_deployment("unjucks-api", replicas=2, containers={"unjucks-api": "unjucks:2.3.1"})
    kube.kubectl("-n", NS, "set", "image", "deployment/unjucks-api", "unjucks-api=unjucks:2.4.0")
    kube.seed("ingresses", NS, {"metadata": {"name": "unjucks-ingress"}, "spec": {"rules": []}})
    kube.requests.clear()
    pg = postgres_server
    code, doc, err = runproc("outage-response.yml", *params(
        kube_context="test", api_url=http.url, db_host=pg.host, db_port=pg.port, repo=tmp_path), "--dry-run",
        env={**kube.env(), "INCIDENT_WEBHOOK_URL": http.url_for("/hook")}, tmp=tmp_path)
    assert code == 0, (err, doc.get("error"))
    st = statuses(doc)
    assert st["deployments"] == st["database"] == "ok"  # rollout history and pg_isready, for real
    assert st["maintenance_on"] in ("planned", "ok") and st["rollback_deploy"] in ("planned", "ok")
    assert all(r.dry_run for r in kube.mutations())
    ingress = kube.get("ingress", NS, "unjucks-ingress")
    assert not (ingress["metadata"].get("annotations") or {})
    assert _deployment(kube)["spec"]["template"]["spec"]["containers"][0]["image"] == "unjucks:2.4.0"
    assert http.requests_to("/hook") == []


def test_performance_check_dry_run_is_the_same_readonly_run(postgres_server, pg_db, http, tmp_path):
    pg = postgres_server
    http.set_route("GET", "/api/v1/query", json={"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {}, "value": [1710000000, "0.1"]}]}})
    code, doc, err = runproc("performance-check.yml", *params(
        prometheus_url=http.url, db_host=pg.host, db_port=pg.port, db_name=pg_db.rsplit("/", 1)[1], db_user=pg.user,
        redis_cli="/bin/false"), "--dry-run", env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    # every KPI reads 0.1: a template success rate of 0.1 % is critical, in a dry run as in a real one
    assert code == 1 and doc["root_cause"] == "critical", err
    assert steps(doc)["levels"]["json"]["kpis"]["template_success_pct"]["level"] == "critical"
    assert {r.method for r in http.requests} == {"GET"}  # only queries
