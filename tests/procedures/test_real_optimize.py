"""procedures/db-optimize.yml and procedures/app-profile.yml run for real (issue 17, must-haves 2
and 6): db-optimize against the session's PostgreSQL with a planted slow query, a missing index, a
bloated table and an unused index; app-profile against a Node.js service's metrics as the HTTP
stand-in serves them. Each is also dry-run, and the database is shown unchanged by it."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import engine

PROCEDURES = Path(__file__).resolve().parents[2] / "procedures"


def _plant(pg: Any, name: str, *, pgss: bool) -> None:
    """A database as the runbook finds it: template_generations (50k rows, read by customer_id,
    no index on it: the planted slow query), sessions (half its rows deleted, autovacuum off: the
    bloat) with an index nobody uses."""
    pg.psql(f'CREATE DATABASE "{name}"')
    pg.psql(f"""
        {'CREATE EXTENSION pg_stat_statements;' if pgss else ''}
        CREATE TABLE template_generations (id serial PRIMARY KEY, customer_id int NOT NULL,
                                           created_at timestamptz NOT NULL DEFAULT now(), body text)
            WITH (autovacuum_enabled = false);
        INSERT INTO template_generations (customer_id, body)
            SELECT i % 5000, repeat('x', 40) FROM generate_series(1, 50000) i;
        ANALYZE template_generations;
        CREATE TABLE sessions (id serial PRIMARY KEY, token text NOT NULL) WITH (autovacuum_enabled = false);
        INSERT INTO sessions (token) SELECT md5(i::text) FROM generate_series(1, 10000) i;
        ANALYZE sessions;
        DELETE FROM sessions WHERE id % 2 = 0;
        CREATE INDEX idx_sessions_token ON sessions (token);
    """, dbname=name)
    for _ in range(3):  # the slow statement, as the application sends it
        pg.psql("SELECT count(*) FROM template_generations WHERE customer_id = 42", dbname=name)


@pytest.fixture
def planted(postgres_server: Any) -> Iterator[str]:
    name = f"opt_{uuid.uuid4().hex[:10]}"
    _plant(postgres_server, name, pgss=True)
    try:
        yield name
    finally:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _params(pg: Any, db: str, **extra: Any) -> dict[str, Any]:
    return {"db_host": pg.host, "db_port": pg.port, "db_name": db, "db_user": pg.user,
            "slow_query_ms": 0.5, "min_table_rows": 1000, **extra}


def _indexes(pg: Any, db: str) -> set[str]:
    return set(pg.psql("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'", dbname=db).split())


def _dead(pg: Any, db: str) -> int:
    return int(pg.psql("SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 'sessions'", dbname=db))


def test_db_optimize_finds_proposes_and_applies_when_approved(postgres_server, planted):
    pg, db = postgres_server, planted
    result = engine.run(PROCEDURES / "db-optimize.yml", _params(pg, db), yes=True, journal=False)
    assert result.status == "ok", result.error
    proposal = result.steps["proposal"].json
    assert proposal["source"] == "pg_stat_statements"
    assert any("customer_id = $1" in s["query"] for s in proposal["slow_statements"])
    created = {(p["table"], tuple(p["columns"])): p["name"] for p in proposal["create_indexes"]}
    assert created == {("template_generations", ("customer_id",)): "idx_template_generations_customer_id",
                       ("template_generations", ("created_at",)): "idx_generations_created_at"}
    assert [v["table"] for v in proposal["vacuum"]] == ["sessions"]
    assert [u["index"] for u in proposal["unused_indexes"]] == ["idx_sessions_token"]
    # the summary names what holds; a finding is not a failed run
    assert result.steps["summary"].status == "failed" and "idx_template_generations_customer_id" in (
        result.steps["summary"].error or "")
    assert {k: result.steps[k].status for k in ("create_indexes", "vacuum")} == {"create_indexes": "ok", "vacuum": "ok"}
    # the indexes exist, are valid, and the planted query uses the new one
    assert {"idx_template_generations_customer_id", "idx_generations_created_at"} <= _indexes(pg, db)
    assert pg.psql("SELECT bool_and(indisvalid) FROM pg_index WHERE indrelid = 'template_generations'::regclass",
                   dbname=db) == "t"
    plan = pg.psql("EXPLAIN SELECT count(*) FROM template_generations WHERE customer_id = 42", dbname=db)
    assert "idx_template_generations_customer_id" in plan
    assert pg.psql("SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'sessions'",
                   dbname=db) == "t"
    assert "idx_sessions_token" in _indexes(pg, db)  # unused: reported, never dropped


def test_db_optimize_dry_run_changes_nothing(postgres_server, planted):
    pg, db = postgres_server, planted
    before, dead = _indexes(pg, db), _dead(pg, db)
    result = engine.plan(PROCEDURES / "db-optimize.yml", _params(pg, db), journal=False)
    assert result.status == "planned"
    assert len(result.steps["proposal"].json["create_indexes"]) == 2  # the findings are real
    assert {k: result.steps[k].status for k in ("approve", "create_indexes", "vacuum")} == {
        "approve": "planned", "create_indexes": "planned", "vacuum": "planned"}
    assert "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_template_generations_customer_id" in (
        result.steps["create_indexes"].description or "")
    assert _indexes(pg, db) == before and _dead(pg, db) == dead > 0
    assert pg.psql("SELECT last_vacuum IS NULL FROM pg_stat_user_tables WHERE relname = 'sessions'", dbname=db) == "t"


def test_db_optimize_without_an_approval_changes_nothing(postgres_server, planted):
    pg, db = postgres_server, planted
    before = _indexes(pg, db)
    result = engine.run(PROCEDURES / "db-optimize.yml", _params(pg, db), journal=False)  # nobody to ask
    assert result.status == "refused" and result.exit_code == 3
    assert result.steps["create_indexes"].status != "ok" and _indexes(pg, db) == before


def test_db_optimize_without_pg_stat_statements_reads_pg_stat_activity(postgres_server):
    pg, db = postgres_server, f"opt_{uuid.uuid4().hex[:10]}"
    _plant(pg, db, pgss=False)
    slow = subprocess.Popen(
        [str(pg.bin_dir / "psql"), "-X", "-q", "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-d", db, "-c",
         "SELECT count(*) FROM template_generations, pg_sleep(60) WHERE customer_id = 7"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        running = ("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' AND state = 'active' "
                   "AND pid <> pg_backend_pid() AND now() - query_start > interval '200 ms'")
        deadline = time.monotonic() + 30
        while pg.psql(running, dbname=db) != "1" and time.monotonic() < deadline:
            time.sleep(0.05)
        result = engine.plan(PROCEDURES / "db-optimize.yml", _params(pg, db, slow_query_ms=100), journal=False)
        proposal = result.steps["proposal"].json
        assert proposal["source"] == "pg_stat_activity" and result.steps["slow_statements"].status == "skipped"
        assert "idx_template_generations_customer_id" in {p["name"] for p in proposal["create_indexes"]}
    finally:
        pg.psql(f"SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' "
                "AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()", dbname=db)
        slow.wait(timeout=30)
        pg.psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


# ---------------------------------------------------------------- app-profile (a real Node.js process)

NODE_SERVICE = r"""
// A stand-in for the Node.js service: prom-client's default lag and heap metrics, computed by
// Node itself. --busy blocks the event loop 200 ms in every 250; --retain=N keeps N MB on the heap.
const http = require('http');
const { monitorEventLoopDelay } = require('perf_hooks');
const lag = monitorEventLoopDelay({ resolution: 10 });
lag.enable();
const retain = Number((process.argv.find(a => a.startsWith('--retain=')) || '--retain=0').split('=')[1]);
const kept = [];
for (let i = 0; i < retain; i++) kept.push(new Array(131072).fill(i));  // 1 MB of the V8 heap each
if (process.argv.includes('--busy')) setInterval(() => { const end = Date.now() + 200; while (Date.now() < end) {} }, 250);
const server = http.createServer((req, res) => {
  const m = process.memoryUsage();
  res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
  res.end([
    '# TYPE nodejs_eventloop_lag_p99_seconds gauge',
    `nodejs_eventloop_lag_p99_seconds ${lag.percentile(99) / 1e9}`,
    `nodejs_eventloop_lag_mean_seconds ${lag.mean / 1e9}`,
    `nodejs_heap_size_used_bytes ${m.heapUsed}`,
    `nodejs_heap_size_total_bytes ${m.heapTotal}`,
    `process_resident_memory_bytes ${m.rss}`,
    `kept_strings ${kept.length}`, ''].join('\n'));
});
server.listen(0, '127.0.0.1', () => console.log(server.address().port));
"""


@pytest.fixture(scope="module")
def node_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two real Node.js processes: a calm one holding 24 MB, and one whose event loop is blocked."""
    script = tmp_path_factory.mktemp("node") / "service.js"
    script.write_text(NODE_SERVICE)
    procs = {"calm": subprocess.Popen(["node", str(script), "--retain=24"], stdout=subprocess.PIPE),
             "busy": subprocess.Popen(["node", str(script), "--busy"], stdout=subprocess.PIPE)}
    try:
        urls = {}
        for name, proc in procs.items():
            assert proc.stdout is not None
            urls[name] = f"http://127.0.0.1:{int(proc.stdout.readline())}/metrics"
        yield urls
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait(timeout=30)


def test_app_profile_fails_on_a_blocked_event_loop(node_services):
    result = engine.run(PROCEDURES / "app-profile.yml", {"metrics_url": node_services["busy"], "samples": 3,
                                                         "interval": "300ms", "lag_critical_ms": 100},
                        journal=False)
    assert result.status == "failed" and result.root_cause == "critical"
    verdict = result.steps["verdict"].json
    assert verdict["lag_p99_ms"] > 100
    assert verdict["critical"][0].startswith("event-loop lag p99 ")
    assert "NODE_OPTIONS=--prof" in verdict["next"][0] and "--prof-process" in (result.steps["critical"].error or "")


def test_app_profile_warns_on_the_heap_and_passes(node_services):
    result = engine.run(PROCEDURES / "app-profile.yml", {
        "metrics_url": node_services["calm"], "samples": 2, "interval": "100ms", "heap_limit_mb": 64,
        "heap_warning_pct": 20, "heap_critical_pct": 99, "lag_warning_ms": 5000, "lag_critical_ms": 10000},
        journal=False)
    assert result.status == "ok", result.error
    verdict = result.steps["verdict"].json
    assert verdict["heap_used_mb"] >= 24 and verdict["heap_pct"] == round(100 * verdict["heap_used_mb"] / 64, 1)
    assert verdict["rss_mb"] >= verdict["heap_used_mb"] and verdict["lag_mean_ms"] is not None
    assert result.steps["warnings"].status == "failed" and "heap used" in (result.steps["warnings"].error or "")
    assert "heap snapshots" in verdict["next"][0]


def test_app_profile_dry_run_reads_only(node_services):
    result = engine.plan(PROCEDURES / "app-profile.yml", {"metrics_url": node_services["calm"], "samples": 1,
                                                          "lag_warning_ms": 5000, "lag_critical_ms": 10000},
                         journal=False)
    assert result.status == "planned" and result.steps["verdict"].json["heap_used_mb"] >= 24
    assert result.steps["critical"].status == "ok"  # the service answered and is within its limits
