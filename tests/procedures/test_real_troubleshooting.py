"""The Troubleshooting Guide's four procedures run for real (issue 17, must-haves 1 and 6):

- troubleshoot-db-connections against the session's PostgreSQL with a planted long-running query
  and a session idle in a transaction;
- troubleshoot-response-time against PostgreSQL (a planted slow statement) and a slow API played
  by the HTTP stand-in;
- troubleshoot-templates against a template directory, a stand-in unjucks CLI and a real `npm ls`
  on a package with a missing dependency;
- troubleshoot-auth against the HTTP stand-in as the OAuth provider and a real HS256 JWT.

Each diagnosis says which hypothesis holds with its evidence; each remedy runs only when its
hypothesis holds and it is approved; each dry run changes nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import engine

PROCEDURES = Path(__file__).resolve().parents[2] / "procedures"


def _until(condition: Callable[[], bool], limit: float = 30.0) -> bool:
    """Wait for a condition the test set up (bounded: a broken build fails rather than hangs)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------- database connection issues


@dataclass
class Planted:
    db: str
    sleeper: subprocess.Popen[bytes]
    idle: subprocess.Popen[bytes]


def _psql(pg: Any, db: str, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGAPPNAME"] = "unjucks-api"
    return subprocess.Popen([str(pg.bin_dir / "psql"), "-X", "-q", "-h", pg.host, "-p", str(pg.port),
                             "-U", pg.user, "-d", db, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, **kwargs)


@pytest.fixture
def sessions(postgres_server: Any) -> Iterator[Planted]:
    """A query running for a minute and a session idle in its transaction, both from unjucks-api."""
    pg, db = postgres_server, f"conn_{uuid.uuid4().hex[:10]}"
    pg.psql(f'CREATE DATABASE "{db}"')
    sleeper = _psql(pg, db, "-c", "SELECT pg_sleep(60)")
    idle = _psql(pg, db, stdin=subprocess.PIPE)
    assert idle.stdin is not None
    idle.stdin.write(b"BEGIN;\nSELECT 1;\n")
    idle.stdin.flush()
    both = (f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{db}' AND application_name = 'unjucks-api' "
            "AND ((state = 'active' AND now() - query_start > interval '300 ms') "
            "OR (state = 'idle in transaction' AND now() - state_change > interval '300 ms'))")
    assert _until(lambda: pg.psql(both) == "2")
    try:
        yield Planted(db, sleeper, idle)
    finally:
        for proc in (sleeper, idle):
            proc.kill()
            proc.wait(timeout=30)
        pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _conn_params(pg: Any, db: str, **extra: Any) -> dict[str, Any]:
    return {"db_host": pg.host, "db_port": pg.port, "db_name": db, "db_user": pg.user,
            "long_query_s": 0.2, "idle_tx_s": 0.2, **extra}


def _app_sessions(pg: Any, db: str) -> str:
    return pg.psql(f"SELECT string_agg(state, ',' ORDER BY state) FROM pg_stat_activity "
                   f"WHERE datname = '{db}' AND application_name = 'unjucks-api'")


def test_db_connections_diagnoses_and_remedies_when_approved(postgres_server, sessions, tmp_path):
    pg = postgres_server
    pool_file = tmp_path / "pool-size"
    result = engine.run(PROCEDURES / "troubleshoot-db-connections.yml", _conn_params(
        pg, sessions.db, pool_warn_pct=0, pool_cmd=f"echo 40 > {pool_file}", pool_restore_cmd=f"rm {pool_file}"),
        yes=True, journal=False)
    assert result.status == "ok", result.error
    findings = result.steps["findings"].json
    assert findings["holds"] == ["pool_exhausted", "long_running_queries", "idle_in_transaction"]
    assert "pg_sleep(60)" in findings["hypotheses"]["long_running_queries"]["evidence"]
    assert "unjucks-api" in findings["hypotheses"]["idle_in_transaction"]["evidence"]
    assert "long_running_queries: pid" in (result.steps["summary"].error or "")
    assert [result.steps[s].status for s in ("cancel_long_running", "end_idle", "raise_pool")] == ["ok"] * 3
    # the query was cancelled (psql reports the error and exits), the idle session is gone
    assert sessions.sleeper.wait(timeout=30) != 0
    assert _until(lambda: _app_sessions(pg, sessions.db) == "")
    assert pool_file.read_text().strip() == "40"


def test_db_connections_dry_run_only_diagnoses(postgres_server, sessions, tmp_path):
    pg = postgres_server
    pool_file = tmp_path / "pool-size"
    result = engine.plan(PROCEDURES / "troubleshoot-db-connections.yml", _conn_params(
        pg, sessions.db, pool_warn_pct=0, pool_cmd=f"touch {pool_file}", pool_restore_cmd=f"rm {pool_file}"),
        journal=False)
    assert result.status == "planned"
    assert result.steps["findings"].json["holds"] == ["pool_exhausted", "long_running_queries", "idle_in_transaction"]
    assert {s: result.steps[s].status for s in ("approve_cancel", "cancel_long_running", "end_idle", "raise_pool")} == {
        "approve_cancel": "planned", "cancel_long_running": "planned", "end_idle": "planned", "raise_pool": "planned"}
    assert f"rm {pool_file}" in (result.steps["raise_pool"].rollback_action or "")  # the undo stands ready
    assert not pool_file.exists()
    assert _app_sessions(pg, sessions.db) == "active,idle in transaction"  # both still there
    assert sessions.sleeper.poll() is None


def test_db_connections_nothing_holds_on_a_quiet_database(postgres_server, pg_db):
    pg, db = postgres_server, pg_db.rsplit("/", 1)[1]
    result = engine.run(PROCEDURES / "troubleshoot-db-connections.yml", _conn_params(pg, db), journal=False)
    assert result.status == "ok" and result.steps["findings"].json["holds"] == []
    assert result.steps["summary"].status == "ok"
    assert {result.steps[s].status for s in ("approve_cancel", "cancel_long_running", "end_idle")} == {"skipped"}


def test_db_connections_unreachable_is_a_finding(postgres_server):
    pg = postgres_server
    result = engine.run(PROCEDURES / "troubleshoot-db-connections.yml",
                        {**_conn_params(pg, "unjucks"), "db_port": _closed_port()}, journal=False)
    assert result.exit_code == 0
    findings = result.steps["findings"].json
    assert findings["holds"] == ["unreachable"]
    assert "cannot connect" in findings["hypotheses"]["unreachable"]["evidence"]
    assert result.steps["pool"].status == "skipped"


# ---------------------------------------------------------------- high response times


@pytest.fixture
def slow_db(postgres_server: Any) -> Iterator[str]:
    """pg_stat_statements with a slow statement planted: a filter on an unindexed column."""
    pg, db = postgres_server, f"resp_{uuid.uuid4().hex[:10]}"
    pg.psql(f'CREATE DATABASE "{db}"')
    pg.psql("""
        CREATE EXTENSION pg_stat_statements;
        CREATE TABLE template_generations (id serial PRIMARY KEY, customer_id int NOT NULL, created_at timestamptz
                                           NOT NULL DEFAULT now()) WITH (autovacuum_enabled = false);
        INSERT INTO template_generations (customer_id) SELECT i % 5000 FROM generate_series(1, 50000) i;
        ANALYZE template_generations;
        SELECT pg_stat_statements_reset();
    """, dbname=db)
    for _ in range(3):
        pg.psql("SELECT count(*) FROM template_generations WHERE customer_id = 42", dbname=db)
    try:
        yield db
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _resp_params(pg: Any, db: str, http: Any, **extra: Any) -> dict[str, Any]:
    return {"api_url": http.url, "max_response_s": 0.1, "db_host": pg.host, "db_port": pg.port, "db_name": db,
            "db_user": pg.user, "slow_query_ms": 0.5, "max_load_per_cpu": 1000, "max_process_cpu_pct": 1000, **extra}


def test_response_time_finds_the_slow_database_and_optimises_it(postgres_server, slow_db, http, tmp_path):
    pg = postgres_server
    http.set_route("GET", "/templates", json=[{"name": "api"}], delay=0.3)
    scaled = tmp_path / "scaled"
    result = engine.run(PROCEDURES / "troubleshoot-response-time.yml", _resp_params(
        pg, slow_db, http, scale_cmd=f"touch {scaled}", scale_back_cmd=f"rm {scaled}"), yes=True, journal=False)
    assert result.status == "ok", result.error
    findings = result.steps["findings"].json
    assert findings["holds"] == ["api_slow", "db_slow"]
    assert "GET /templates answered 200 in" in findings["hypotheses"]["api_slow"]["evidence"]
    assert "customer_id = $1" in findings["hypotheses"]["db_slow"]["evidence"]
    assert "load" in findings["hypotheses"]["cpu_saturated"]["evidence"]  # with its evidence
    assert result.steps["summary"].status == "failed" and "db_slow" in (result.steps["summary"].error or "")
    assert result.steps["scale_out"].status == "skipped" and not scaled.exists()
    assert result.steps["optimize_database"].status == "ok"
    assert "idx_template_generations_customer_id" in pg.psql(
        "SELECT string_agg(indexname, ',') FROM pg_indexes WHERE tablename = 'template_generations'", dbname=slow_db)


def test_response_time_dry_run_changes_nothing(postgres_server, slow_db, http, tmp_path):
    pg = postgres_server
    http.set_route("GET", "/templates", json=[], delay=0.3)
    scaled = tmp_path / "scaled"
    result = engine.plan(PROCEDURES / "troubleshoot-response-time.yml", _resp_params(
        pg, slow_db, http, max_load_per_cpu=0, scale_cmd=f"touch {scaled}", scale_back_cmd=f"rm {scaled}",
        node_pattern=Path("/proc/self/comm").read_text().strip()),  # this test's process plays the application
        journal=False)
    assert result.status == "planned"
    assert result.steps["findings"].json["holds"] == ["api_slow", "cpu_saturated", "db_slow"]
    assert result.steps["scale_out"].status == "planned" and f"rm {scaled}" in (
        result.steps["scale_out"].rollback_action or "")
    assert result.steps["optimize_database"].status == "planned"
    assert not scaled.exists()
    assert pg.psql("SELECT count(*) FROM pg_indexes WHERE tablename = 'template_generations'", dbname=slow_db) == "1"


# ---------------------------------------------------------------- template generation failures

UNJUCKS = """#!/bin/sh
# a stand-in for the unjucks CLI: two templates, one of them broken
case "$1" in
  list) printf 'invoice\\nbroken\\n' ;;
  validate) if [ "$2" = broken ]; then echo "Template render error: (broken.njk) [Line 3] expected end of block" >&2; exit 1; fi
            echo "$2: ok" ;;
  *) exit 2 ;;
esac
"""


@pytest.fixture
def template_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """An application checkout missing a dependency, a template only its owner can read, the CLI."""
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))  # npm's logs stay in the test's folder
    app, templates = tmp_path / "app", tmp_path / "app" / "templates"
    templates.mkdir(parents=True)
    (app / "package.json").write_text('{"name": "unjucks-app", "version": "1.0.0", "dependencies": {"left-pad": "^1.3.0"}}')
    (app / "node_modules" / "old").mkdir(parents=True)
    for name in ("invoice.njk", "broken.njk"):
        (templates / name).write_text("{% block body %}{{ name }}{% endblock %}")
    (templates / "invoice.njk").chmod(0o600)
    cli = tmp_path / "unjucks"
    cli.write_text(UNJUCKS)
    cli.chmod(0o755)
    # installs what package.json asks for, as npm ci would from a registry
    install = ("mkdir -p node_modules/left-pad && "
               "echo '{\"name\": \"left-pad\", \"version\": \"1.3.0\"}' > node_modules/left-pad/package.json")
    return {"app_dir": str(app), "templates_dir": str(templates), "unjucks": str(cli), "app_user": "nobody",
            "install_cmd": install}


def test_templates_diagnoses_and_remedies_when_approved(template_site):
    site = template_site
    invoice = Path(site["templates_dir"]) / "invoice.njk"
    result = engine.run(PROCEDURES / "troubleshoot-templates.yml", {**site, "template": "invoice"}, yes=True,
                        journal=False)
    assert result.status == "ok", result.error
    findings = result.steps["findings"].json
    assert findings["holds"] == ["templates_unreadable", "dependencies_missing"]
    assert f"{invoice} (0o600)" in findings["hypotheses"]["templates_unreadable"]["evidence"]
    assert "missing: left-pad@^1.3.0" in findings["hypotheses"]["dependencies_missing"]["evidence"]
    assert findings["hypotheses"]["syntax_invalid"]["evidence"] == "unjucks validate invoice passed"
    assert oct(invoice.stat().st_mode & 0o777) == "0o604"
    app = Path(site["app_dir"])
    assert (app / "node_modules" / "left-pad" / "package.json").exists()
    assert not (app / "node_modules" / "old").exists() and not list(app.glob("node_modules.runproc-*"))


def test_templates_syntax_and_missing_templates_are_findings(template_site):
    # npm ls is not asked here (only): its answer is the other tests' subject
    result = engine.run(PROCEDURES / "troubleshoot-templates.yml", {**template_site, "template": "broken"},
                        journal=False, only=("listing", "permissions", "list", "validate", "findings", "summary"))
    findings = result.steps["findings"].json
    assert "syntax_invalid" in findings["holds"]
    assert "[Line 3] expected end of block" in findings["hypotheses"]["syntax_invalid"]["evidence"]
    result = engine.run(PROCEDURES / "troubleshoot-templates.yml", {**template_site, "template": "absent"},
                        journal=False, only=("list", "findings", "permissions", "listing", "validate"))
    assert result.steps["findings"].json["hypotheses"]["template_missing"] == {
        "holds": True, "evidence": "unjucks list does not show absent"}


def test_templates_a_failed_install_is_undone(template_site):
    site = {**template_site, "install_cmd": "mkdir node_modules && echo half > node_modules/partial && exit 1"}
    result = engine.run(PROCEDURES / "troubleshoot-templates.yml", {**site, "template": "invoice"}, yes=True,
                        journal=False)
    assert result.status == "failed" and result.root_cause == "install_dependencies"
    app = Path(site["app_dir"])
    assert (app / "node_modules" / "old").exists() and not (app / "node_modules" / "partial").exists()
    invoice = Path(site["templates_dir"]) / "invoice.njk"
    assert oct(invoice.stat().st_mode & 0o777) == "0o600"  # fix_permissions was rolled back too


def test_templates_dry_run_changes_nothing(template_site):
    invoice = Path(template_site["templates_dir"]) / "invoice.njk"
    result = engine.plan(PROCEDURES / "troubleshoot-templates.yml", {**template_site, "template": "invoice"},
                         journal=False)
    assert result.status == "planned"
    assert result.steps["findings"].json["holds"] == ["templates_unreadable", "dependencies_missing"]
    assert {result.steps[s].status for s in ("fix_permissions", "install_dependencies")} == {"planned"}
    assert oct(invoice.stat().st_mode & 0o777) == "0o600"
    assert (Path(template_site["app_dir"]) / "node_modules" / "old").exists()


# ---------------------------------------------------------------- authentication


LDAPSEARCH = """#!/bin/sh
# a stand-in for ldapsearch (ldap-utils): a directory with one user, one bind password
echo "$@" >> "$(dirname "$0")/ldapsearch.argv"
while [ $# -gt 0 ]; do
  case "$1" in
    -H) url=$2; shift ;; -y) pwfile=$2; shift ;; -D|-b|-o) shift ;; -x|-LLL) ;; *) filter=$1; shift; break ;;
  esac
  shift
done
case "$url" in *down*) echo "ldap_sasl_bind(SIMPLE): Can't contact LDAP server (-1)" >&2; exit 255 ;; esac
[ "$(cat "$pwfile")" = "directory-pw-31415" ] || { echo "ldap_bind: Invalid credentials (49)" >&2; exit 49; }
[ "$filter" = "(uid=testuser)" ] && echo "dn: uid=testuser,ou=people,dc=unjucks,dc=example"
exit 0
"""


def _jwt(secret: str, **claims: Any) -> str:
    import base64
    import hashlib
    import hmac
    import json

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    signing = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing}.{b64(hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest())}"


@pytest.fixture
def ldapsearch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cli = tmp_path / "ldapsearch"
    cli.write_text(LDAPSEARCH)
    cli.chmod(0o755)
    monkeypatch.setenv("LDAP_BIND_PASSWORD", "directory-pw-31415")
    monkeypatch.setenv("JWT_SECRET", "jwt-secret-27182")
    return cli


def test_auth_diagnoses_and_refreshes_the_oauth_credentials(ldapsearch, http, tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_TOKEN", _jwt("jwt-secret-27182", sub="alice", exp=int(time.time()) - 60))
    # the provider refuses the client until its credentials are refreshed
    http.set_route("GET", "/oauth/authorize", sequence=[(400, {"error": "invalid_client"}), (200, "<html>login</html>")])
    creds = tmp_path / "client-secret"
    creds.write_text("old")
    result = engine.run(PROCEDURES / "troubleshoot-auth.yml", {
        "ldap_url": "ldap://127.0.0.1:1389", "ldapsearch": str(ldapsearch), "oauth_provider": http.url,
        "oauth_refresh_cmd": f"echo new > {creds}", "oauth_restore_cmd": f"echo old > {creds}"},
        yes=True, journal=False)
    assert result.status == "ok", result.error
    findings = result.steps["findings"].json
    assert findings["holds"] == ["oauth_misconfigured", "jwt_invalid"]
    h = findings["hypotheses"]
    assert h["ldap_user_missing"]["evidence"] == "uid=testuser found: dn: uid=testuser,ou=people,dc=unjucks,dc=example"
    assert h["oauth_misconfigured"]["evidence"].startswith('authorize answered 400: {"error": "invalid_client"}')
    assert h["jwt_invalid"]["evidence"].startswith("expired ") and "(sub alice, alg HS256)" in h["jwt_invalid"]["evidence"]
    assert result.steps["refresh_credentials"].status == "ok" and creds.read_text().strip() == "new"
    [authorize, *_] = http.requests_to("/oauth/authorize")
    assert authorize.query == {"client_id": ["unjucks-web"], "response_type": ["code"],
                               "redirect_uri": ["https://api.unjucks.example/auth/callback"]}
    # the bind password went through a file, never on ldapsearch's command line
    assert "directory-pw-31415" not in (ldapsearch.parent / "ldapsearch.argv").read_text()
    assert "directory-pw-31415" not in str(result.to_json()) and "jwt-secret-27182" not in str(result.to_json())


def test_auth_ldap_findings(ldapsearch, monkeypatch):
    def holds(**params: Any) -> list[str]:
        result = engine.run(PROCEDURES / "troubleshoot-auth.yml", {"ldapsearch": str(ldapsearch), **params},
                            journal=False)
        return result.steps["findings"].json["holds"]

    assert holds(ldap_url="ldap://down.invalid:389") == ["ldap_unreachable"]
    assert holds(ldap_url="ldap://127.0.0.1:1389", test_user="mallory") == ["ldap_user_missing"]
    monkeypatch.setenv("LDAP_BIND_PASSWORD", "wrong")
    assert holds(ldap_url="ldap://127.0.0.1:1389") == ["ldap_bind_failed"]
    monkeypatch.setenv("JWT_TOKEN", _jwt("another-key", sub="bob"))
    monkeypatch.setenv("LDAP_BIND_PASSWORD", "directory-pw-31415")
    assert holds() == ["jwt_invalid"]


def test_auth_dry_run_changes_nothing(ldapsearch, http, tmp_path, monkeypatch):
    monkeypatch.setenv("JWT_TOKEN", _jwt("jwt-secret-27182", sub="alice", exp=int(time.time()) + 600))
    http.set_route("GET", "/oauth/authorize", status=400, json={"error": "invalid_client"})
    creds = tmp_path / "client-secret"
    result = engine.plan(PROCEDURES / "troubleshoot-auth.yml", {
        "oauth_provider": http.url, "oauth_refresh_cmd": f"touch {creds}", "oauth_restore_cmd": f"rm {creds}"},
        journal=False)
    assert result.status == "planned"
    assert result.steps["findings"].json["holds"] == ["oauth_misconfigured"]
    assert result.steps["findings"].json["hypotheses"]["jwt_invalid"]["evidence"].startswith("valid for ")
    assert result.steps["refresh_credentials"].status == "planned" and not creds.exists()
