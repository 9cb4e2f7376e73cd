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
