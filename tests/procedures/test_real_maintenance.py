"""procedures/maintenance.yml end to end, and maintenance-notice.yml, against real local components.

The weekly window is opened with RUNPROC_TEST_NOW (a Sunday, 02:30 UTC). Everything the run and
its children touch is on loopback: the status webhook and the deploy pipeline's freeze endpoint
and the public API, AlertManager and Prometheus (the HTTP server), the ingress carrying the
maintenance page (the Kubernetes stand-in, with the real kubectl), the backup restored into a
scratch database and the post-checks' database (the session PostgreSQL), last night's backup
object (moto's S3), the application servers of the local inventory (this machine) where apt-get,
sudo and docker are small stand-ins that log what they are asked, and the TLS endpoint, unjucks
and redis-cli of tests/procedures/conftest.py.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any

import pytest

from tests.procedures._real import params, runproc, statuses, steps

NS = "unjucks-prod"
SNIPPET = "nginx.ingress.kubernetes.io/configuration-snippet"
IN_WINDOW = "2026-12-06T02:30:00Z"  # a Sunday, inside "Sun 02:00-04:00 UTC"

APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$STUB_LOG"
case "$*" in
  *"-s upgrade"*) [ -f "$STUB_DIR/upgraded" ] || echo "Inst openssl [3.0.11-1] (3.0.13-1 Debian-Security:12/stable-security [amd64])" ;;
  *upgrade*) [ -f "$STUB_DIR/fail-upgrade" ] && { echo "E: dpkg was interrupted" >&2; exit 100; }; touch "$STUB_DIR/upgraded" ;;
esac
exit 0
"""
SUDO = '#!/bin/sh\n[ "$1" = -n ] && shift\nexec "$@"\n'
DOCKER = '#!/bin/sh\necho "docker $*" >> "$STUB_LOG"\n'


@pytest.fixture(scope="module")
def databases(postgres_server) -> Any:
    """The post-checks' database (unjucks, read by the role monitor) on the session server."""
    pg = postgres_server
    pg.psql("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'monitor') THEN "
            "CREATE ROLE monitor LOGIN; END IF; END $$")
    if not pg.psql("SELECT 1 FROM pg_database WHERE datname = 'unjucks'"):
        pg.psql("CREATE DATABASE unjucks")
    yield pg
    pg.psql("DROP DATABASE IF EXISTS unjucks WITH (FORCE)")


@pytest.fixture
def site(stand_ins, databases, http, kube, s3_server, s3_bucket, tmp_path) -> dict[str, Any]:
    pg = databases
    # the platform: healthy API and monitoring, an ingress, last night's backup, a good dump
    http.set_route("POST", "/hook", json={"ok": True})
    http.set_route("PUT", "/freeze", json={"frozen": True})
    http.set_route("DELETE", "/freeze", status=204)
    http.set_route("GET", "/templates", json=[])
    http.set_route("GET", "/api/v1/status", json={"status": "operational"})
    http.set_route("GET", "/api/v2/alerts", json=[])
    http.set_route("GET", "/api/v1/query", json={"status": "success", "data": {"resultType": "vector", "result": []}})
    kube.seed("ingresses", NS, {"metadata": {"name": "unjucks-ingress"}, "spec": {"rules": []}})
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    s3_server.client().put_object(Bucket=s3_bucket, Key=f"daily/{today}.sql.gz", Body=b"backup bytes")
    dump = tmp_path / "latest.sql"
    dump.write_text("CREATE TABLE templates (id int, name text);\nINSERT INTO templates VALUES (1, 'component');\n")
    # apt-get, sudo and docker of the application servers (this machine, through the local inventory)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("apt-get", APT_GET), ("sudo", SUDO), ("docker", DOCKER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = stand_ins.env(
        STATUS_WEBHOOK_URL=http.url_for("/hook"), DEPLOY_FREEZE_TOKEN="freeze-token-value", PGPASSWORD="x",
        STUB_LOG=str(tmp_path / "stub.log"), STUB_DIR=str(tmp_path), RUNPROC_TEST_NOW=IN_WINDOW,
        PATH=os.pathsep.join([str(bin_dir), str(stand_ins.bin), os.environ["PATH"]]), **kube.env())
    values = params(
        backup_file=dump, update_hosts="appservers", kube_context="test", api_url=http.url, db_host=pg.host,
        db_port=pg.port, s3_endpoint=s3_server.endpoint_url, backup_bucket=s3_bucket, prometheus_url=http.url,
        alertmanager_url=http.url, tls_host="127.0.0.1", tls_port=stand_ins.tls_port,
        freeze_url=http.url_for("/freeze"))
    return {"env": env, "params": values, "tmp": tmp_path}


def _maintenance(site: dict[str, Any], *extra: str, **env: str) -> tuple[int, dict[str, Any], str]:
    return runproc("maintenance.yml", *site["params"], *extra, env={**site["env"], **env}, tmp=site["tmp"],
                   timeout=240)


def _page(kube) -> str | None:
    return (kube.get("ingress", NS, "unjucks-ingress")["metadata"].get("annotations") or {}).get(SNIPPET)


def _posted(http) -> list[str]:
    return [r.json()["text"] for r in http.requests_to("/hook", "POST")]


def _stub_log(site: dict[str, Any]) -> str:
    log = Path(site["env"]["STUB_LOG"])
    return log.read_text() if log.exists() else ""


def _databases(pg) -> set[str]:
    return set(pg.psql("SELECT datname FROM pg_database").split())


def test_maintenance_end_to_end_in_the_window(site, http, kube, databases):
    code, doc, err = _maintenance(site)
    assert code == 0, (err, doc.get("error"))
    st = statuses(doc)
    assert st["migration"] == "skipped" and st["notify_failure"] == "skipped"
    assert {v for k, v in st.items() if k not in ("migration", "notify_failure")} == {"ok"}
    # the freeze: on before anything changed, lifted at the end, with the token
    freeze = [(r.method, r.headers.get("authorization")) for r in http.requests if r.path == "/freeze"]
    assert freeze == [("PUT", "Bearer freeze-token-value"), ("DELETE", "Bearer freeze-token-value")]
    first_change = min(r.time for r in http.requests if r.path == "/hook")
    assert http.requests_to("/freeze", "PUT")[0].time <= first_change
    texts = _posted(http)
    assert texts[0].startswith("🔧 Scheduled maintenance has started") and texts[-1].startswith("✅")
    # the page went up (the stand-in recorded the annotate) and is down again
    assert _page(kube) is None
    assert any(r.method == "PATCH" and "ingresses" in r.path and not r.dry_run for r in kube.requests)
    # the backup was restored and counted, its scratch database dropped
    assert steps(doc)["verify_backups"]["steps"]["count"]["scalar"] == 1
    assert "unjucks_backup_test" not in _databases(databases)
    # security updates on both application servers, then the images
    log = _stub_log(site)
    assert log.count("-y -q -o Dpkg::Options::=--force-confold upgrade") == 2
    assert "docker pull -q unjucks:latest" in log
    assert steps(doc)["post_checks"]["steps"]["summary"]["status"] == "ok"
    assert "deploy_freeze" in steps(doc)["rollback_plan"]["json"]
    assert "freeze-token-value" not in str(doc)  # a secret: redacted everywhere


def test_maintenance_failure_undoes_the_page_lifts_the_freeze_and_tells_the_team(site, http, kube):
    (site["tmp"] / "fail-upgrade").touch()  # the upgrade of the first application server fails
    code, doc, _ = _maintenance(site)
    assert code == 1 and doc["root_cause"] == "security_updates"
    st = statuses(doc)
    assert st["maintenance_on"] == "rolled_back" and st["post_checks"] == "cancelled"
    assert _page(kube) is None
    assert [r.method for r in http.requests if r.path == "/freeze"] == ["PUT", "DELETE"]
    assert st["freeze_off"] == "ok"
    assert _posted(http)[-1].startswith("❌ Maintenance failed")


def test_maintenance_dry_run_changes_nothing(site, http, kube, databases):
    code, doc, err = _maintenance(site, "--dry-run")
    assert code == 0, err
    st = statuses(doc)
    assert st["freeze_on"] == st["notify_start"] == st["maintenance_on"] == st["notify_end"] == "planned"
    assert st["rollback_plan"] == "ok"  # readonly: it ran
    assert {r.method for r in http.requests} <= {"GET"}  # nothing posted, frozen or thawed
    assert _page(kube) is None
    assert all(r.dry_run for r in kube.mutations())
    assert "upgrade" not in _stub_log(site).replace("-s upgrade", "")
    assert "unjucks_backup_test" not in _databases(databases)


@pytest.mark.parametrize("now", ["2026-12-07T02:30:00Z",   # a Monday
                                 "2026-12-13T01:30:00Z"])  # the second Sunday, before the weekly window
def test_maintenance_outside_the_window_is_refused_before_anything(site, http, kube, now):
    code, doc, err = _maintenance(site, RUNPROC_TEST_NOW=now)
    assert code == 3 and doc["status"] == "refused"
    assert "outside the maintenance window 'Sun 02:00-04:00 UTC; first Sun 01:00-05:00 UTC'" in doc["error"]
    assert http.requests == [] and _page(kube) is None


# ---------------------------------------------------------------- maintenance-notice


def _notice(site: dict[str, Any], databases, *extra: str) -> tuple[int, dict[str, Any], str]:
    pg = databases
    backup = next(v for v in site["params"] if v.startswith("backup_file="))
    return runproc("maintenance-notice.yml", "-p", backup, *params(db_host=pg.host, db_port=pg.port), *extra,
                   env=site["env"], tmp=site["tmp"])


def test_maintenance_notice_24_hours_before(site, http, databases):
    code, doc, err = _notice(site, databases, "-p", "hours_before=24")
    assert code == 0, (err, doc.get("error"))
    channels = {r.json()["channel"]: r.json()["text"] for r in http.requests_to("/hook", "POST")}
    assert channels["#announcements"].startswith("🔧 Scheduled maintenance in 24 hours: Sunday 02:00-04:00 UTC.")
    assert "#customer-success" in channels
    assert steps(doc)["backups"]["steps"]["verdict"]["status"] == "ok"


def test_maintenance_notice_2_hours_before_with_a_bad_backup_fails(site, http, databases):
    Path(next(v for v in site["params"] if v.startswith("backup_file=")).split("=", 1)[1]).write_text(
        "CREATE TABLE templates (id int);\n")  # an empty backup
    code, doc, _ = _notice(site, databases, "-p", "hours_before=2")
    assert code == 1 and doc["root_cause"] == "backups"
    [notice] = [r.json() for r in http.requests_to("/hook", "POST")]  # users are told; not customer success
    assert notice["text"].startswith("🔧 Scheduled maintenance in 2 hours")


def test_maintenance_notice_dry_run_posts_nothing(site, http, databases):
    code, doc, err = _notice(site, databases, "--dry-run")
    assert code == 0, err
    assert statuses(doc)["notice"] == statuses(doc)["customer_success"] == "planned"
    assert http.requests_to("/hook") == []
    assert "unjucks_backup_test" not in _databases(databases)


def test_the_schedules_are_the_runbooks() -> None:
    """09:00 UTC for the morning check; Saturday 02:00 and Sunday 00:00 UTC for the notices."""
    import engine

    root = Path(__file__).resolve().parents[2] / "procedures"
    [morning] = engine.load(root / "morning-health-check.yml").schedule
    assert (morning.cron, morning.timezone) == ("0 9 * * *", "UTC")
    notices = {s.name: (s.cron, s.params) for s in engine.load(root / "maintenance-notice.yml").schedule}
    assert notices == {"weekly-24h": ("0 2 * * 6", {"hours_before": 24}), "weekly-2h": ("0 0 * * 0", {"hours_before": 2})}
