"""procedures/point-in-time-recovery.yml performed for real on a scratch PostgreSQL cluster.

The module's primary archives its WAL (archive_command: cp to a folder). Its history, built
once: rows ``before-backup``; a base backup (plain, and tar for the second test); rows
``before-target``; the target (a time, and a restore point); rows ``after-target``; the WAL
switched and archived. The procedure then recovers a new cluster from the base backup and the
archive to the target, on its own port, with the application (a deployment of the Kubernetes
stand-in) stopped meanwhile; the recovered database must hold the rows written before the
target and none written after it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.procedures._real import params, runproc, statuses, steps
from tests.servers._common import free_port
from tests.servers.postgres import (
    PG_SYSTEM_USER,
    PostgresServer,
    _as_pg_user,
    _clean_env,
    start_postgres,
    stop_postgres,
)

NS = "unjucks-prod"


@dataclass
class History:
    primary: PostgresServer
    base: Path  # a folder the postgres user owns: backups, archive, recovered clusters
    archive: Path
    plain_backup: Path
    tar_backup: Path
    target_time: str
    restore_point: str
    run_as: str


def _owned_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(PG_SYSTEM_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def _pg(primary: PostgresServer, *cmd: str) -> None:
    out = subprocess.run(_as_pg_user(list(cmd)), capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def history() -> Iterator[History]:
    base = _owned_dir(Path(tempfile.mkdtemp(prefix="runproc-pitr-")))
    archive = _owned_dir(base / "archive")
    primary = start_postgres({
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_command": f"'cp %p {archive}/%f'",
        "full_page_writes": "on",  # an online base backup is only consistent with it
    })
    try:
        primary.psql("CREATE DATABASE unjucks")
        primary.psql("CREATE TABLE templates (id serial PRIMARY KEY, name text NOT NULL);"
                     "INSERT INTO templates (name) VALUES ('before-backup')", dbname="unjucks")
        plain, tar = base / "base-plain", base / "base-tar"
        for target, fmt in ((plain, "p"), (tar, "t")):
            _pg(primary, str(primary.bin_dir / "pg_basebackup"), "-h", primary.host, "-p", str(primary.port),
                "-U", primary.user, "-D", str(target), "-F", fmt, "-X", "stream", "--checkpoint=fast",
                *(["-z"] if fmt == "t" else []))
        primary.psql("INSERT INTO templates (name) VALUES ('before-target')", dbname="unjucks")
        # the target: a moment after that commit and before the next one (both later in the WAL)
        target_time = primary.psql("SELECT clock_timestamp()::text")
        point = f"pitr_{uuid.uuid4().hex[:8]}"
        primary.psql(f"SELECT pg_create_restore_point('{point}')")
        primary.psql("INSERT INTO templates (name) VALUES ('after-target')", dbname="unjucks")
        segment = primary.psql("SELECT pg_walfile_name(pg_current_wal_lsn())")
        primary.psql("SELECT pg_switch_wal()")
        for _ in range(600):  # the archiver copies the switched segment within moments
            if (archive / segment).exists():
                break
            time.sleep(0.05)
        assert (archive / segment).exists(), f"{segment} was never archived: {sorted(os.listdir(archive))}"
        yield History(primary, base, archive, plain, tar, target_time, point,
                      "runuser -u postgres --" if os.geteuid() == 0 else "")
    finally:
        stop_postgres(primary)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def app(kube):
    kube.seed_deployment("unjucks-api", replicas=3, containers={"unjucks-api": "unjucks:2.4.0"})
    return kube


def _replicas(kube) -> int:
    return kube.get("deployment", NS, "unjucks-api")["spec"]["replicas"]


class Recovery:
    """One recovery's own data directory, port and socket; its server is stopped at the end."""

    def __init__(self, h: History) -> None:
        self.h = h
        self.dir = h.base / f"recovered-{uuid.uuid4().hex[:8]}"
        self.socket = _owned_dir(h.base / f"sock-{uuid.uuid4().hex[:8]}")
        self.port = free_port("127.0.0.1")

    def params(self, **target: str) -> list[str]:
        h = self.h
        return params(**target, recovery_dir=self.dir, recovery_port=self.port, socket_dir=self.socket,
                      wal_archive=h.archive, pg_bin=h.primary.bin_dir, run_as=h.run_as, kube_context="test")

    def names(self) -> list[str]:
        out = subprocess.run([str(self.h.primary.bin_dir / "psql"), "-X", "-At", "-h", str(self.socket), "-p",
                              str(self.port), "-U", "postgres", "-d", "unjucks", "-c",
                              "SELECT name FROM templates ORDER BY id"],
                             capture_output=True, text=True, env=_clean_env(), timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    def stop(self) -> None:
        if (self.dir / "postmaster.pid").exists():
            subprocess.run(_as_pg_user([str(self.h.primary.bin_dir / "pg_ctl"), "-D", str(self.dir), "-m",
                                        "immediate", "-w", "stop"]), capture_output=True, env=_clean_env(), timeout=60)


@pytest.fixture
def recovery(history: History) -> Iterator[Recovery]:
    r = Recovery(history)
    try:
        yield r
    finally:
        r.stop()


def test_pitr_to_a_time_keeps_rows_before_it_and_none_after(history, recovery, app, tmp_path):
    code, doc, err = runproc("point-in-time-recovery.yml", *recovery.params(recovery_time=history.target_time),
                             "-p", f"base_backup={history.plain_backup}", "--yes", env=app.env(), tmp=tmp_path)
    assert code == 0, (err, doc.get("error"))
    s = steps(doc)
    assert s["backup"]["hosts"]["local-db-replica"]["stdout"].strip() == "15" or s["settings"]["status"] == "ok"
    assert statuses(doc)["settings_legacy"] == "skipped"
    assert recovery.names() == ["before-backup", "before-target"]  # 'after-target' was never replayed
    assert (recovery.dir / "recovery.signal").exists() is False  # promoted: PostgreSQL removed it
    assert "recovery_target_time" in (recovery.dir / "postgresql.auto.conf").read_text()
    assert _replicas(app) == 3  # stopped during the recovery, started again after it
    scales = [r for r in app.requests if r.method == "PATCH" and "scale" in r.path]
    assert len(scales) == 2
    # the primary went on untouched
    assert history.primary.psql("SELECT count(*) FROM templates", dbname="unjucks") == "3"


def test_pitr_to_a_restore_point_from_a_tar_backup(history, recovery, app, tmp_path):
    code, doc, err = runproc("point-in-time-recovery.yml", *recovery.params(restore_point=history.restore_point),
                             "-p", f"base_backup={history.tar_backup}", "--yes", env=app.env(), tmp=tmp_path)
    assert code == 0, (err, doc.get("error"))
    assert recovery.names() == ["before-backup", "before-target"]
    assert f"recovery_target_name = '{history.restore_point}'" in (recovery.dir / "postgresql.auto.conf").read_text()


def test_pitr_that_cannot_reach_its_target_undoes_everything(history, recovery, app, tmp_path):
    """A restore point the archive does not hold: PostgreSQL refuses to start at the end of
    the WAL; the half-made cluster is removed and the application scaled back up."""
    code, doc, err = runproc("point-in-time-recovery.yml", *recovery.params(restore_point="no_such_point"),
                             "-p", f"base_backup={history.plain_backup}", "--yes", env=app.env(), tmp=tmp_path)
    assert code == 1, err
    # pg_ctl start fails when the instance stops before it accepted connections, else the
    # wait for the promotion sees it stopped: either way, at once and with its log
    assert doc["root_cause"] in ("start", "promoted")
    if doc["root_cause"] == "promoted":
        assert "stopped" in steps(doc)["promoted"]["hosts"]["local-db-replica"]["stdout"]
    st = statuses(doc)
    assert st["restore_base"] == "rolled_back" and st["stop_app"] == "rolled_back"
    assert st["scale_back"] == "cancelled"
    assert not recovery.dir.exists()
    assert _replicas(app) == 3


def test_pitr_dry_run_reads_and_changes_nothing(history, recovery, app, tmp_path):
    code, doc, err = runproc("point-in-time-recovery.yml", *recovery.params(recovery_time=history.target_time),
                             "-p", f"base_backup={history.plain_backup}", "--dry-run", env=app.env(), tmp=tmp_path)
    assert code == 0, err
    st = statuses(doc)
    assert st["backup"] == st["archive"] == st["replicas"] == st["target_free"] == "ok"  # the reads ran
    assert steps(doc)["replicas"]["stdout"] == "3"
    assert st["stop_app"] == st["restore_base"] == st["start"] == st["scale_back"] == "planned"
    assert not recovery.dir.exists()
    assert _replicas(app) == 3
    assert all(r.dry_run for r in app.mutations())  # kubectl scale rehearsed with --dry-run=server


def test_pitr_refuses_a_target_given_twice_or_not_at_all(history, recovery, app, tmp_path):
    code, doc, _ = runproc("point-in-time-recovery.yml", *recovery.params(), "--yes", env=app.env(), tmp=tmp_path)
    assert code == 1 and doc["root_cause"] == "target_given"
    assert statuses(doc)["stop_app"] == "cancelled"
    assert _replicas(app) == 3 and not recovery.dir.exists()
