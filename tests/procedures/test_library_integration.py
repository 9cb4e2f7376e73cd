"""Procedures of the library against real servers: PostgreSQL, the kubectl stand-in, sshd hosts.

Each test runs the procedure as a user would (``python -m engine.cli FILE -p ... --output json``)
and checks what a user can see: exit codes, step statuses, rows in tables, objects in the cluster,
files on the hosts.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROCEDURES = ROOT / "procedures"


def runproc(file: str, *args: str, env: dict[str, str] | None = None, tmp: Path,
            timeout: float = 120) -> tuple[int, dict[str, Any], str]:
    """Run a procedure through the CLI; (exit code, the JSON document, stderr)."""
    full_env = {**os.environ, "RUNPROC_STATE": f"sqlite:///{tmp}/runproc-state.db", **(env or {})}
    out = subprocess.run([sys.executable, "-m", "engine.cli", str(PROCEDURES / file), *args, "--output", "json"],
                         capture_output=True, text=True, env=full_env, timeout=timeout, cwd=tmp)
    try:
        doc = json.loads(out.stdout) if out.stdout.strip() else {}
    except json.JSONDecodeError:
        pytest.fail(f"not JSON (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.returncode, doc, out.stderr


def steps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in doc.get("steps", [])}


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in doc.get("steps", [])}


def params(**values: Any) -> list[str]:
    out: list[str] = []
    for k, v in values.items():
        out += ["-p", f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
    return out


# ---------------------------------------------------------------- backup-verification


def _source_db(pg, name: str, rows: int) -> str:
    pg.psql(f'CREATE DATABASE "{name}"')
    pg.psql("CREATE TABLE templates (id serial PRIMARY KEY, name text NOT NULL, body text)", dbname=name)
    if rows:
        pg.psql(f"INSERT INTO templates (name, body) SELECT 'tpl-' || i, 'body' FROM generate_series(1, {rows}) i",
                dbname=name)
    return name


def _pg_dump(pg, dbname: str, target: Path, fmt: str = "p") -> Path:
    cmd = [str(pg.bin_dir / "pg_dump"), "-h", pg.host, "-p", str(pg.port), "-U", pg.user, "-F", fmt,
           "--no-owner", "-d", dbname]
    out = subprocess.run(cmd, capture_output=True, check=True, timeout=60)
    if target.suffix == ".gz":
        target.write_bytes(gzip.compress(out.stdout))
    else:
        target.write_bytes(out.stdout)
    return target


def _databases(pg) -> set[str]:
    return set(pg.psql("SELECT datname FROM pg_database").split())


def _backup_params(pg, backup: Path, scratch: str) -> list[str]:
    return params(backup_file=backup, db_host=pg.host, db_port=pg.port, db_user=pg.user, scratch_db=scratch)


@pytest.mark.parametrize("suffix,fmt", [(".sql", "p"), (".sql.gz", "p"), (".dump", "c")])
def test_backup_verification_restores_a_real_dump(postgres_server, tmp_path, suffix, fmt):
    pg = postgres_server
    source = _source_db(pg, f"src_{uuid.uuid4().hex[:8]}", rows=7)
    backup = _pg_dump(pg, source, tmp_path / f"backup{suffix}", fmt)
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    try:
        code, doc, err = runproc("backup-verification.yml", *_backup_params(pg, backup, scratch),
                                 env={"PGPASSWORD": "unused-with-trust"}, tmp=tmp_path)
        assert code == 0, (err, doc.get("error"))
        s = steps(doc)
        assert s["count"]["scalar"] == 7
        assert s["drop_scratch"]["status"] == "ok"
        assert scratch not in _databases(pg)
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')


def test_backup_verification_fails_on_an_empty_backup_and_still_drops_the_scratch_db(postgres_server, tmp_path):
    pg = postgres_server
    source = _source_db(pg, f"src_{uuid.uuid4().hex[:8]}", rows=0)
    backup = _pg_dump(pg, source, tmp_path / "empty.sql")
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    try:
        code, doc, _ = runproc("backup-verification.yml", *_backup_params(pg, backup, scratch),
                               env={"PGPASSWORD": "x"}, tmp=tmp_path)
        assert code == 1
        assert doc["root_cause"] == "verdict"
        assert "0 rows in templates" in steps(doc)["verdict"]["error"]
        assert scratch not in _databases(pg)
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')


def test_backup_verification_refuses_an_existing_scratch_db(postgres_server, tmp_path):
    pg = postgres_server
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    pg.psql(f'CREATE DATABASE "{scratch}"')
    backup = tmp_path / "any.sql"
    backup.write_text("SELECT 1;\n")
    try:
        code, doc, _ = runproc("backup-verification.yml", *_backup_params(pg, backup, scratch),
                               env={"PGPASSWORD": "x"}, tmp=tmp_path)
        assert code == 3 and doc["status"] == "refused"
        assert scratch in _databases(pg)  # someone's database is left alone
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


def test_backup_verification_a_broken_dump_fails_the_restore(postgres_server, tmp_path):
    pg = postgres_server
    scratch = f"scratch_{uuid.uuid4().hex[:8]}"
    backup = tmp_path / "broken.sql"
    backup.write_text("CREATE TABLE templates (id int);\nTHIS IS NOT SQL;\n")
    code, doc, _ = runproc("backup-verification.yml", *_backup_params(pg, backup, scratch),
                           env={"PGPASSWORD": "x"}, tmp=tmp_path)
    assert code == 1 and doc["root_cause"] == "restore"
    assert scratch not in _databases(pg)


# ---------------------------------------------------------------- db-migration

MIGRATOR = '''\
"""A tiny knex-like migration tool: migrations/<version>.up.sql and .down.sql, table schema_migrations."""
import os, sys, pathlib, psycopg

HERE = pathlib.Path(__file__).parent / "migrations"
conn = psycopg.connect(os.environ["DATABASE_URL"], password=os.environ.get("PGPASSWORD"))
done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
known = sorted(p.name.split(".")[0] for p in HERE.glob("*.up.sql"))
cmd = sys.argv[1]
if cmd == "list":
    for v in known:
        print(("completed " if v in done else "pending   ") + v)
elif cmd == "up":
    with conn.transaction():
        for v in known:
            if v not in done:
                conn.execute((HERE / f"{v}.up.sql").read_text())
                conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (v,))
                print("applied", v)
elif cmd == "down":
    last = max(done & set(known))
    with conn.transaction():
        conn.execute((HERE / f"{last}.down.sql").read_text())
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (last,))
    print("reverted", last)
conn.commit()
'''


@pytest.fixture
def app_db(postgres_server, pg_db, tmp_path):
    """A database at version 20240101000000 and an app dir with a migration tool and two migrations."""
    pg = postgres_server
    name = pg_db.rsplit("/", 1)[1]
    pg.psql("CREATE TABLE schema_migrations (version varchar(14) PRIMARY KEY);"
            "INSERT INTO schema_migrations VALUES ('20240101000000');"
            "CREATE TABLE templates (id serial PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO templates (name) VALUES ('component'), ('service')", dbname=name)
    app = tmp_path / "app"
    (app / "migrations").mkdir(parents=True)
    (app / "migrate.py").write_text(MIGRATOR)
    (app / "migrations" / "20240301000000.up.sql").write_text("CREATE TABLE template_tags (tag text)")
    (app / "migrations" / "20240301000000.down.sql").write_text("DROP TABLE template_tags")
    (app / "migrations" / "20240320120000.up.sql").write_text("ALTER TABLE templates ADD COLUMN status text")
    (app / "migrations" / "20240320120000.down.sql").write_text("ALTER TABLE templates DROP COLUMN status")
    return pg, name, app


def _migration_params(pg, name: str, app: Path, tmp: Path, target: str = "20240320120000") -> list[str]:
    py = sys.executable
    return params(migration_version=target, db_host=pg.host, db_port=pg.port, db_name=name, db_user=pg.user,
                  app_dir=app, backup_dir=tmp / "backups", migrate_cmd=f"{py} migrate.py up",
                  migrate_down_cmd=f"{py} migrate.py down", list_cmd=f"{py} migrate.py list")


def _versions(pg, name: str) -> list[str]:
    return pg.psql("SELECT version FROM schema_migrations ORDER BY version", dbname=name).split()


def _tables(pg, name: str) -> set[str]:
    return set(pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", dbname=name).split())


def test_db_migration_dry_run_lists_pending_and_changes_nothing(app_db, tmp_path):
    pg, name, app = app_db
    code, doc, err = runproc("db-migration.yml", *_migration_params(pg, name, app, tmp_path), "--dry-run",
                             env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    assert code == 0, err
    s = steps(doc)
    assert s["current"]["status"] == "ok" and s["current"]["scalar"] == "20240101000000"
    assert s["pending"]["status"] == "ok"
    assert "pending   20240301000000" in s["pending"]["stdout"]
    assert "pending   20240320120000" in s["pending"]["stdout"]
    assert s["backup"]["status"] == "planned" and s["migrate"]["status"] == "planned"
    assert _versions(pg, name) == ["20240101000000"]
    assert not (tmp_path / "backups").exists()


def test_db_migration_backs_up_migrates_and_verifies(app_db, tmp_path):
    pg, name, app = app_db
    code, doc, err = runproc("db-migration.yml", *_migration_params(pg, name, app, tmp_path),
                             env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    assert code == 0, (err, doc.get("error"))
    assert statuses(doc)["migrate"] == "ok"
    assert steps(doc)["version"]["scalar"] == "20240320120000"
    assert _versions(pg, name) == ["20240101000000", "20240301000000", "20240320120000"]
    assert "template_tags" in _tables(pg, name)
    dumps = list((tmp_path / "backups").glob("migration-backup-20240320120000-*.sql.gz"))
    assert len(dumps) == 1
    assert b"CREATE TABLE public.templates" in gzip.decompress(dumps[0].read_bytes())

    # run again: already at the target, nothing to migrate
    code, doc, _ = runproc("db-migration.yml", *_migration_params(pg, name, app, tmp_path),
                           env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    assert code == 0 and statuses(doc)["migrate"] == "skipped"


def test_db_migration_that_misses_its_target_is_migrated_back_down(app_db, tmp_path):
    """The tool applies 20240301000000, but the target is 20240320120000 (its file is missing):
    the verification fails, and the rollback runs the down migration."""
    pg, name, app = app_db
    (app / "migrations" / "20240320120000.up.sql").unlink()
    code, doc, err = runproc("db-migration.yml", *_migration_params(pg, name, app, tmp_path),
                             env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    assert code == 1, err
    s = steps(doc)
    assert doc["root_cause"] == "migrate"
    assert "schema_migrations is at the target version" in s["migrate"]["error"]
    assert s["migrate"]["rollback"]["status"] == "ok"  # the step stays "failed" (the root cause), undone
    assert _versions(pg, name) == ["20240101000000"]
    assert "template_tags" not in _tables(pg, name)


def test_db_migration_with_a_failing_migration_changes_nothing(app_db, tmp_path):
    pg, name, app = app_db
    (app / "migrations" / "20240320120000.up.sql").write_text("ALTER TABLE no_such_table ADD COLUMN x int")
    code, doc, _ = runproc("db-migration.yml", *_migration_params(pg, name, app, tmp_path),
                           env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    assert code == 1 and doc["root_cause"] == "migrate"
    assert "no_such_table" in steps(doc)["migrate"]["stderr"]
    assert _versions(pg, name) == ["20240101000000"]  # the tool's transaction rolled back
    assert "template_tags" not in _tables(pg, name)
    assert list((tmp_path / "backups").glob("*.sql.gz"))  # the backup was taken first


def test_db_migration_refuses_a_replica_or_unreachable_primary(tmp_path):
    code, doc, _ = runproc("db-migration.yml", *params(migration_version="20240320120000", db_host="127.0.0.1",
                                                       db_port=1), env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    assert code == 3 and doc["status"] == "refused"


# ---------------------------------------------------------------- blue-green-deploy (kubectl stand-in)

NS = "unjucks-prod"


@pytest.fixture
def cluster(kube):
    """Two colours of unjucks-api running 1.0.0, the service selecting blue."""
    for colour in ("blue", "green"):
        kube.seed_deployment(f"unjucks-api-{colour}", replicas=2, containers={"unjucks-api": "unjucks:1.0.0"},
                             labels={"app": "unjucks-api", "version": colour})
    kube.seed_service("unjucks-api", selector={"app": "unjucks-api", "version": "blue"}, port=3000)
    kube.requests.clear()
    return kube


def _bg(kube, http, tmp: Path, *extra: str, **overrides: Any) -> tuple[int, dict[str, Any], str]:
    values = dict(version="1.1.0", kube_context="test", smoke_dir=tmp,
                  health_cmd='test "$DEPLOYMENT" = unjucks-api-green',
                  smoke_cmd='test "$COLOUR" = green && test "$VERSION" = 1.1.0', public_url=http.url)
    values.update(overrides)
    return runproc("blue-green-deploy.yml", *params(**values), *extra, env=kube.env(), tmp=tmp)


def _image(kube, colour: str) -> str:
    return kube.get("deployment", NS, f"unjucks-api-{colour}")["spec"]["template"]["spec"]["containers"][0]["image"]


def _selector(kube) -> str:
    return kube.get("service", NS, "unjucks-api")["spec"]["selector"]["version"]


def test_blue_green_deploys_to_the_idle_colour_and_switches(cluster, http, tmp_path):
    code, doc, err = _bg(cluster, http, tmp_path, "--yes")
    assert code == 0, (err, doc.get("error"))
    assert _image(cluster, "green") == "unjucks:1.1.0"
    assert _image(cluster, "blue") == "unjucks:1.0.0"  # the previous colour keeps running, untouched
    assert _selector(cluster) == "green"
    assert http.requests_to("/health", "GET")
    s = steps(doc)
    assert s["live"]["stdout"] == "blue" and s["idle"]["stdout"] == "green"
    assert s["previous_image"]["stdout"] == "unjucks:1.0.0"

    # the next release goes to blue, now idle
    code, doc, _ = _bg(cluster, http, tmp_path, "--yes", version="1.2.0",
                       health_cmd='test "$COLOUR" = blue', smoke_cmd="true")
    assert code == 0
    assert (_image(cluster, "blue"), _selector(cluster)) == ("unjucks:1.2.0", "blue")


def test_blue_green_dry_run_rehearses_on_the_server_and_changes_nothing(cluster, http, tmp_path):
    before = (_image(cluster, "green"), _selector(cluster))
    code, doc, err = _bg(cluster, http, tmp_path, "--dry-run")
    assert code == 0, err
    st = statuses(doc)
    assert st["live"] == st["idle"] == st["previous_image"] == "ok"
    assert st["set_image"] == st["switch"] == "planned"
    assert st["health"] == st["smoke"] == st["approve"] == "planned"
    mutations = cluster.mutations()
    assert mutations and all(r.dry_run for r in mutations)  # set image and patch went as --dry-run=server
    assert (_image(cluster, "green"), _selector(cluster)) == before


def test_blue_green_failed_smoke_test_restores_the_idle_image(cluster, http, tmp_path):
    code, doc, _ = _bg(cluster, http, tmp_path, "--yes", smoke_cmd="echo 'smoke: /templates returned 500' >&2; exit 1")
    assert code == 1 and doc["root_cause"] == "smoke"
    assert statuses(doc)["set_image"] == "rolled_back"
    assert _image(cluster, "green") == "unjucks:1.0.0"
    assert _selector(cluster) == "blue"


def test_blue_green_failure_after_the_switch_sends_traffic_back(cluster, http, tmp_path):
    code, doc, _ = _bg(cluster, http, tmp_path, "--yes", post_switch_cmd="exit 3")
    assert code == 1 and doc["root_cause"] == "post_switch"
    st = statuses(doc)
    assert st["switch"] == "rolled_back" and st["set_image"] == "rolled_back"
    assert _selector(cluster) == "blue"
    assert _image(cluster, "green") == "unjucks:1.0.0"


def test_blue_green_without_approval_never_switches(cluster, http, tmp_path):
    code, doc, _ = _bg(cluster, http, tmp_path)  # no --yes, no terminal
    assert code == 3
    assert statuses(doc)["switch"] == "cancelled"
    assert _selector(cluster) == "blue"
    assert _image(cluster, "green") == "unjucks:1.0.0"  # the deploy to green was rolled back


# ---------------------------------------------------------------- security-updates (sshd hosts)

APT_STUB = r"""#!/bin/sh
# a stand-in apt-get: logs its calls per node; one security update until "upgrade" ran
dir="$RUNPROC_NODE_DIR"
echo "$*" >> "$dir/apt.log"
case "$*" in
  *" upgrade"|*"upgrade")
    case "$*" in
      *"-s upgrade"*)
        [ -f "$dir/upgraded" ] || echo "Inst openssl [3.0.11-1] (3.0.13-1~deb12u1 Debian-Security:12/stable-security [amd64])"
        echo "Inst tzdata [2024a] (2024b Debian:12/stable-updates [all])"
        exit 0 ;;
    esac
    if [ -f "$(dirname "$0")/../fail/$RUNPROC_NODE" ]; then echo "E: dpkg was interrupted" >&2; exit 100; fi
    touch "$dir/upgraded"
    if [ "$RUNPROC_NODE" = node2 ]; then echo "libc6" > "$dir/reboot-required.pkgs"; touch "$dir/reboot-required"; fi
    ;;
esac
exit 0
"""

DOCKER_STUB = """#!/bin/sh
echo "$*" >> "$RUNPROC_NODE_DIR/docker.log"
"""


@pytest.fixture
def fleet(sshd_hosts, known_hosts_file, tmp_path):
    """An inventory of the sshd nodes (group nodes), stub apt-get/docker, clean node dirs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "apt-get").write_text(APT_STUB)
    (bin_dir / "docker").write_text(DOCKER_STUB)
    for stub in bin_dir.iterdir():
        stub.chmod(0o755)
    markers = tmp_path / "fail"
    markers.mkdir()
    lines = ["[nodes]"]
    for h in sshd_hosts:
        for name in ("apt.log", "docker.log", "upgraded", "reboot-required", "reboot-required.pkgs"):
            (h.workdir / name).unlink(missing_ok=True)
        lines.append(f"{h.name} ansible_host={h.address} ansible_port={h.port} ansible_user={h.user} "
                     f"ansible_ssh_private_key_file={h.client_key_path} reboot_required_file={h.workdir}/reboot-required "
                     f"ansible_ssh_common_args='-o UserKnownHostsFile={known_hosts_file} -o StrictHostKeyChecking=yes'")
    inventory = tmp_path / "nodes.ini"
    inventory.write_text("\n".join(lines) + "\n")
    return sshd_hosts, inventory, bin_dir, markers


def _updates(fleet, tmp: Path, *extra: str) -> tuple[int, dict[str, Any], str]:
    hosts, inventory, bin_dir, markers = fleet
    return runproc("security-updates.yml", "-i", str(inventory),
                   *params(hosts="nodes", docker_hosts="nodes", sudo="", apt_get=bin_dir / "apt-get",
                           docker=bin_dir / "docker"),
                   *extra, tmp=tmp)


def test_security_updates_fan_out_and_report_reboots(fleet, tmp_path):
    hosts = fleet[0]
    code, doc, err = _updates(fleet, tmp_path)
    assert code == 0, (err, doc.get("error"))
    s = steps(doc)
    assert set(s["upgrade"]["hosts"]) == {h.name for h in hosts}
    assert all(h["status"] == "ok" for h in s["upgrade"]["hosts"].values())
    assert "openssl" in s["pending"]["hosts"]["node1"]["stdout"]
    assert "tzdata" not in s["pending"]["hosts"]["node1"]["stdout"]  # only security updates are listed
    assert s["report"]["json"] == {"reboot_required": ["node2"], "updated": sorted(h.name for h in hosts)}
    for h in hosts:
        log = (h.workdir / "apt.log").read_text()
        assert "update -q" in log and "-y -q -o Dpkg::Options::=--force-confold upgrade" in log
        assert "pull -q unjucks:latest" in (h.workdir / "docker.log").read_text()


def test_security_updates_dry_run_lists_and_changes_nothing(fleet, tmp_path):
    hosts = fleet[0]
    code, doc, err = _updates(fleet, tmp_path, "--dry-run")
    assert code == 0, err
    st = statuses(doc)
    assert st["pending"] == "ok" and st["upgrade"] == "planned" and st["refresh"] == "planned"
    for h in hosts:
        assert "upgraded" not in {p.name for p in h.workdir.iterdir()}
        assert "-y" not in (h.workdir / "apt.log").read_text()


def test_security_updates_stop_after_the_batch_with_a_failure(fleet, tmp_path):
    hosts, _, _, markers = fleet
    (markers / "node2").touch()  # node2's upgrade fails; serial 25% = one host per batch
    code, doc, _ = _updates(fleet, tmp_path)
    assert code == 1 and doc["root_cause"] == "upgrade"
    per_host = {name: h["status"] for name, h in steps(doc)["upgrade"]["hosts"].items()}
    assert per_host == {"node1": "ok", "node2": "failed", "node3": "cancelled", "node4": "cancelled"}
    assert "-y" not in (hosts[2].workdir / "apt.log").read_text()  # node3 never upgraded
    assert not any((h.workdir / "upgraded").exists() for h in hosts[2:])
    assert statuses(doc)["images"] == "cancelled"


# ---------------------------------------------------------------- mitigations on Kubernetes (stand-in)


def _mitigate(file: str, kube, http, tmp: Path, *extra: str, **values: Any) -> tuple[int, dict[str, Any], str]:
    values = {"platform": "kubernetes", "kube_context": "test", "api_url": http.url, **values}
    return runproc(file, *params(**values), *extra, env=kube.env(), tmp=tmp)


def test_scale_up_on_kubernetes_horizontally_and_vertically(kube, http, tmp_path):
    kube.seed_deployment("unjucks-api", replicas=2, containers={"unjucks-api": "unjucks:2.4.0"})
    code, doc, err = _mitigate("scale-up.yml", kube, http, tmp_path, "--yes", replicas=6, memory="2Gi", cpu="1000m")
    assert code == 0, (err, doc.get("error"))
    dep = kube.get("deployment", NS, "unjucks-api")
    assert dep["spec"]["replicas"] == 6
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {"memory": "2Gi", "cpu": "1000m"}


def test_scale_up_refuses_to_scale_down(kube, http, tmp_path):
    kube.seed_deployment("unjucks-api", replicas=8)
    code, doc, _ = _mitigate("scale-up.yml", kube, http, tmp_path, "--yes", replicas=6)
    assert code == 1 and doc["root_cause"] == "k8s_current"
    assert "only scales up" in steps(doc)["k8s_current"]["error"]
    assert kube.get("deployment", NS, "unjucks-api")["spec"]["replicas"] == 8


def test_scale_up_that_never_becomes_ready_scales_back(kube, http, tmp_path):
    kube.seed_deployment("unjucks-api", replicas=2)
    kube.auto_rollout = False  # the new pods never become ready
    code, doc, _ = _mitigate("scale-up.yml", kube, http, tmp_path, "--yes", replicas=4, rollout_timeout="2s")
    assert code == 1 and doc["root_cause"] == "k8s_rollout"
    assert statuses(doc)["k8s_scale"] == "rolled_back"
    assert kube.get("deployment", NS, "unjucks-api")["spec"]["replicas"] == 2


def test_mitigate_rollback_undoes_the_last_deploy(kube, http, tmp_path):
    kube.seed_deployment("unjucks-api", replicas=2, containers={"unjucks-api": "unjucks:2.3.1"})
    kube.kubectl("-n", NS, "set", "image", "deployment/unjucks-api", "unjucks-api=unjucks:2.4.0")
    code, doc, err = _mitigate("mitigate-rollback.yml", kube, http, tmp_path, "--yes")
    assert code == 0, (err, doc.get("error"))
    assert _image_of(kube, "unjucks-api") == "unjucks:2.3.1"


def test_mitigate_restart_on_kubernetes(kube, http, tmp_path):
    kube.seed_deployment("unjucks-api", replicas=2)
    code, doc, err = _mitigate("mitigate-restart.yml", kube, http, tmp_path, "--yes")
    assert code == 0, (err, doc.get("error"))
    annotations = kube.get("deployment", NS, "unjucks-api")["spec"]["template"]["metadata"].get("annotations", {})
    assert "kubectl.kubernetes.io/restartedAt" in annotations
    assert statuses(doc)["docker_restart"] == statuses(doc)["systemd_restart"] == "skipped"


def _image_of(kube, name: str) -> str:
    return kube.get("deployment", NS, name)["spec"]["template"]["spec"]["containers"][0]["image"]


# ---------------------------------------------------------------- performance-check (levels)


def test_performance_check_reports_warning_and_critical_levels(postgres_server, pg_db, http, tmp_path):
    """Prometheus (the http fixture) answers 50 to every query: p95 50 ms is fine, but a 50 %
    error rate and a 50 % template success rate are critical; the database is real."""
    pg = postgres_server
    http.set_route("GET", "/api/v1/query", json={"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {}, "value": [1710000000, "50"]}]}})
    redis_cli = tmp_path / "redis-cli"
    redis_cli.write_text("#!/bin/sh\nprintf '# Stats\\r\\nkeyspace_hits:700\\r\\nkeyspace_misses:300\\r\\n'\n")
    redis_cli.chmod(0o755)
    code, doc, err = runproc("performance-check.yml", *params(
        prometheus_url=http.url, db_host=pg.host, db_port=pg.port, db_name=pg_db.rsplit("/", 1)[1], db_user=pg.user,
        redis_cli=redis_cli), env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    assert code == 1 and doc["root_cause"] == "critical", err
    s = steps(doc)
    kpis = s["levels"]["json"]["kpis"]
    assert kpis["p95_ms"] == {"value": 50.0, "level": "ok", "warning": 500, "critical": 1000}
    assert kpis["error_rate_pct"]["level"] == "critical"
    assert kpis["template_success_pct"]["level"] == "critical"
    assert kpis["cache_hit_pct"] == {"value": 70.0, "level": "warning", "warning": 80.0, "critical": 0}
    assert kpis["db_connections_pct"]["level"] == "ok"
    assert s["warnings"]["status"] == "failed" and "cache_hit_pct=70.0" in s["warnings"]["error"]
    assert "error_rate_pct=50.0" in s["critical"]["error"]


def test_performance_check_warnings_alone_do_not_fail_the_run(postgres_server, pg_db, http, tmp_path):
    pg = postgres_server
    http.set_route("GET", "/api/v1/query", json={"status": "success", "data": {"result": []}})  # no data
    code, doc, err = runproc("performance-check.yml", *params(
        prometheus_url=http.url, db_host=pg.host, db_port=pg.port, db_name=pg_db.rsplit("/", 1)[1], db_user=pg.user,
        redis_cli="/bin/false"), env={"DB_PASSWORD": "x"}, tmp=tmp_path)
    assert code == 0, (err, doc.get("error"))
    s = steps(doc)
    assert s["warnings"]["status"] == "failed" and "p95_ms=not measured" in s["warnings"]["error"]
    assert s["critical"]["status"] == "ok"


# ---------------------------------------------------------------- incident-notify


def test_incident_notify_posts_the_runbook_template(http, tmp_path):
    http.set_route("POST", "/hook", json={"ok": True})
    code, doc, err = runproc("incident-notify.yml", *params(
        kind="initial", severity=1, summary="Template generation failing", impact="template API",
        commander="john.smith", tech_lead="mike.johnson"),
        env={"INCIDENT_WEBHOOK_URL": http.url_for("/hook")}, tmp=tmp_path)
    assert code == 0, err
    [request] = http.requests_to("/hook", "POST")
    text = request.json()["text"]
    assert text.startswith("🚨 INCIDENT: P1 - Template generation failing\n\nStatus: INVESTIGATING\nImpact: template API\n")
    assert "Incident Commander: @john.smith\nTechnical Lead: @mike.johnson" in text
    assert http.url not in json.dumps(doc)  # the webhook URL is a secret: redacted


def test_incident_notify_refuses_an_incomplete_resolution(http, tmp_path):
    code, doc, _ = runproc("incident-notify.yml", *params(kind="resolution", resolution="rolled back"),
                           env={"INCIDENT_WEBHOOK_URL": http.url_for("/hook")}, tmp=tmp_path)
    assert code == 1 and doc["root_cause"] == "complete"
    assert http.requests_to("/hook") == []
