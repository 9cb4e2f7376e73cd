"""procedures/incident-triage.yml end to end against real local components.

The cluster is the Kubernetes stand-in (a deployment with its pods and rollout history, one pod
crash-looping); the database is the session PostgreSQL with a real lock wait planted (one
session holds a table lock, another waits for it); the deployed branch is a real git
repository; the application servers are this machine (local inventory) where docker,
systemctl and journalctl are stand-ins that print what the real ones would; the incident
channel is the HTTP server.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.procedures._real import params, runproc, statuses, steps

NS = "unjucks-prod"
STUBS = {
    "docker": '#!/bin/sh\necho "CONTAINER ID   IMAGE            STATUS          NAMES"\n'
              'echo "3f2a1b        unjucks:2.4.0    Up 2 hours      unjucks-api"\n',
    "systemctl": '#!/bin/sh\necho "● unjucks-api.service - Unjucks API"\necho "   Active: active (running)"\n',
    "journalctl": '#!/bin/sh\necho "Mar 20 14:02:11 app1 unjucks-api[812]: Error: connect ETIMEDOUT 10.0.0.5:5432"\n',
}


@pytest.fixture
def lock_wait(postgres_server, pg_db) -> Iterator[str]:
    """A table lock held by one session and waited for by another, for the length of the test."""
    name = pg_db.rsplit("/", 1)[1]
    postgres_server.psql("CREATE TABLE templates (id int)", dbname=name)
    holder = psycopg.connect(pg_db)
    holder.execute("LOCK TABLE templates IN ACCESS EXCLUSIVE MODE")  # the transaction stays open
    waiter = psycopg.connect(pg_db, autocommit=True)
    thread = threading.Thread(target=lambda: waiter.execute("SELECT count(*) FROM templates"), daemon=True)
    thread.start()
    while postgres_server.psql(  # the waiter is queued behind the lock before the test starts
            "SELECT count(*) FROM pg_locks WHERE NOT granted", dbname=name) == "0":
        thread.join(0.05)
    try:
        yield name
    finally:
        holder.rollback()
        thread.join(30)
        holder.close()
        waiter.close()


@pytest.fixture
def scene(kube, http, postgres_server, lock_wait, tmp_path) -> dict[str, Any]:
    kube.seed_deployment("unjucks-api", replicas=2, containers={"unjucks-api": "unjucks:2.3.1"})
    kube.kubectl("-n", NS, "set", "image", "deployment/unjucks-api", "unjucks-api=unjucks:2.4.0")
    kube.seed("pods", NS, {"metadata": {"name": "unjucks-api-7d9-crash", "labels": {"app": "unjucks-api"}},
                           "spec": {"containers": [{"name": "unjucks-api", "image": "unjucks:2.4.0"}]},
                           "status": {"phase": "CrashLoopBackOff"}})
    kube.requests.clear()  # what the test did to set the scene is not the procedure's
    http.set_route("POST", "/hook", json={"ok": True})
    repo = tmp_path / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=ci", "-c", "user.email=ci@localhost"]
    subprocess.run(["git", "init", "-q", "-b", "production", str(repo)], check=True)
    for msg in ("release 2.3.1", "release 2.4.0: new template cache"):
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", msg], check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    pg = postgres_server
    values = params(kube_context="test", repo=repo, db_host=pg.host, db_port=pg.port, db_name=lock_wait,
                    db_user=pg.user, post_to_chat=True)
    env = {**kube.env(), "DB_PASSWORD": "x", "INCIDENT_WEBHOOK_URL": http.url_for("/hook"),
           "PATH": os.pathsep.join([str(bin_dir), os.environ["PATH"]])}
    return {"params": values, "env": env, "tmp": tmp_path}


def _triage(scene: dict[str, Any], *extra: str) -> tuple[int, dict[str, Any], str]:
    return runproc("incident-triage.yml", *scene["params"], *extra, env=scene["env"], tmp=scene["tmp"])


def test_incident_triage_collects_the_evidence_and_posts_a_digest(scene, http):
    code, doc, err = _triage(scene, "--yes")  # --yes: the Incident Commander's acknowledgement
    assert code == 0, (err, doc.get("error"))
    s = steps(doc)
    assert "unjucks-api-7d9-crash" in s["pods"]["stdout"]
    assert "release 2.4.0: new template cache" in s["commits"]["stdout"]
    assert "REVISION" in s["rollouts"]["stdout"] and "2" in s["rollouts"]["stdout"]
    assert "unjucks:2.4.0" in s["containers"]["hosts"]["local-app1"]["stdout"]
    assert "ETIMEDOUT" in s["system_logs"]["hosts"]["local-app2"]["stdout"]
    assert s["locks"]["rowcount"] >= 1
    lock = s["locks"]["rows"][0]
    assert lock["mode"] == "AccessShareLock" and lock["blocked_by"]  # who waits, and for whom
    assert any("FROM templates" in r["query"] for r in s["long_queries"]["rows"])
    texts = [r.json().get("text", "") for r in http.requests_to("/hook", "POST")]
    [text] = [t for t in texts if t.startswith("Triage of unjucks-api (unjucks-prod)")]  # the digest
    assert "unjucks-api-7d9-crash(CrashLoopBackOff)" in text
    assert "lock waits: 1" in text or "lock waits: 2" in text


def test_incident_triage_dry_run_reads_everything_and_posts_nothing(scene, http, kube):
    code, doc, err = _triage(scene, "--dry-run")
    assert code == 0, err
    st = statuses(doc)
    assert st["post"] == "planned"
    assert st["locks"] == st["connections"] == st["commits"] == st["digest"] == st["pods"] == "ok"
    assert http.requests_to("/hook") == []
    assert kube.mutations() == []  # readonly through and through: nothing sent to the cluster but reads


def test_incident_triage_narrowed_to_systemd(scene, http):
    code, doc, _ = _triage(scene, *params(platform="systemd", post_to_chat=False, acknowledge=False))
    assert code == 0
    st = statuses(doc)
    assert st["pods"] == st["containers"] == st["rollouts"] == st["app_logs"] == "skipped"
    assert st["service"] == st["system_logs"] == "ok"
    assert not [r for r in http.requests_to("/hook") if r.json().get("text", "").startswith("Triage of")]
    assert Path(scene["tmp"] / "repo").exists()
