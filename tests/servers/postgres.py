"""A throwaway PostgreSQL server on 127.0.0.1 for the whole test session.

Fixtures:
  postgres_server -> PostgresServer (session): .dsn .host .port .user .bin_dir .data_dir .psql(sql)
  pg_db           -> str (function): DSN of a fresh, empty database dropped after the test
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ._common import ServerStartError, free_port, log_tail

PG_SYSTEM_USER = "postgres"


def find_pg_bin_dir() -> Path:
    """Locate the directory holding initdb/pg_ctl/postgres/psql without relying on PATH."""
    candidates: list[Path] = []
    if env := os.environ.get("PG_BIN_DIR"):
        candidates.append(Path(env))
    for pg_config in ("pg_config", "/usr/bin/pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    versions = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    candidates += [Path(p) for p in versions]
    for found in (shutil.which("initdb"), shutil.which("pg_ctl")):
        if found:
            candidates.append(Path(os.path.realpath(found)).parent)
    for cand in candidates:
        if (cand / "initdb").is_file() and (cand / "pg_ctl").is_file() and (cand / "postgres").is_file():
            return cand
    raise ServerStartError(
        "PostgreSQL server binaries not found (looked at pg_config --bindir, /usr/lib/postgresql/*/bin, PATH); "
        "install the 'postgresql' package or run scripts/test"
    )


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C.UTF-8"
    return env


@dataclass
class PostgresServer:
    host: str
    port: int
    user: str
    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    log_path: Path

    @property
    def dsn(self) -> str:
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def psql(self, sql: str, dbname: str = "postgres") -> str:
        """Run ``sql`` through psql (unaligned, tuples only) and return stripped stdout; raise on error."""
        cmd = [
            str(self.bin_dir / "psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            dbname,
            "-c",
            sql,
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), timeout=60)
        if out.returncode != 0:
            raise RuntimeError(f"psql failed (rc={out.returncode}) for {sql!r}: {out.stderr.strip()}")
        return out.stdout.strip()


def _as_pg_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", PG_SYSTEM_USER, "--", *cmd]
    return cmd


def _ensure_pg_system_user() -> None:
    try:
        pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/bin/bash", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )


def _run(cmd: list[str], cwd: Path, what: str, log: Path | None = None) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=_clean_env(), timeout=120)
    if out.returncode != 0:
        extra = f"\n--- server log ---\n{log_tail(log)}" if log else ""
        raise ServerStartError(
            f"{what} failed (rc={out.returncode}): {' '.join(cmd)}\n{out.stdout}{out.stderr}{extra}"
        )


def start_postgres(extra_settings: dict[str, str] | None = None) -> PostgresServer:
    """A new cluster; ``extra_settings`` go to postgresql.conf as written (values quoted by the caller),
    e.g. WAL archiving for a point-in-time recovery."""
    bin_dir = find_pg_bin_dir()
    base = Path(tempfile.mkdtemp(prefix="runproc-pg-"))
    data_dir, socket_dir, log_path = base / "data", base / "sock", base / "postgres.log"
    socket_dir.mkdir()
    if os.geteuid() == 0:
        _ensure_pg_system_user()
        pw = pwd.getpwnam(PG_SYSTEM_USER)
        for p in (base, socket_dir):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    port = free_port("127.0.0.1")
    _run(
        _as_pg_user(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data_dir),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
                "--no-instructions",
            ]
        ),
        base,
        "initdb",
    )
    pkglib = bin_dir.parent / "lib"
    preload = "pg_stat_statements" if (pkglib / "pg_stat_statements.so").exists() else ""
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{socket_dir}'",
        "shared_preload_libraries": f"'{preload}'",
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": "100",
        "log_min_messages": "warning",
        **(extra_settings or {}),
    }
    with open(data_dir / "postgresql.conf", "a") as conf:
        conf.write("\n# runproc test server\n")
        conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
    server = PostgresServer("127.0.0.1", port, "postgres", bin_dir, data_dir, socket_dir, log_path)
    _run(
        _as_pg_user(
            [str(bin_dir / "pg_ctl"), "-D", str(data_dir), "-l", str(log_path), "-w", "-t", "30", "start"]
        ),
        base,
        "pg_ctl start",
        log_path,
    )
    try:
        server.psql("SELECT 1")
    except RuntimeError as exc:
        stop_postgres(server)
        raise ServerStartError(f"postgres started but is not answering: {exc}\n{log_tail(log_path)}") from exc
    return server


def stop_postgres(server: PostgresServer) -> None:
    subprocess.run(
        _as_pg_user(
            [str(server.bin_dir / "pg_ctl"), "-D", str(server.data_dir), "-m", "immediate", "-w", "stop"]
        ),
        capture_output=True,
        cwd=server.data_dir.parent,
        env=_clean_env(),
        timeout=60,
    )
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    try:
        yield server
    finally:
        stop_postgres(server)


@pytest.fixture
def pg_db(postgres_server: PostgresServer) -> Iterator[str]:
    """DSN of a fresh database for this test (dropped afterwards, even with open connections)."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    postgres_server.psql(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.dsn_for(name)
    finally:
        postgres_server.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
