"""examples/local end to end: real processes, a real router, a real SQLite database.

Each test gets its own state directory and free ports; every process a test starts is
stopped (the procedures stop their own in `finally`; keep_running ones by `ctl.py down`).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "examples" / "local"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Platform:
    def __init__(self, state: Path) -> None:
        self.state = state
        self.ports = {"router_port": _free_port(), "blue_port": _free_port(), "green_port": _free_port()}

    def run(self, file: str, *args: str, **values: Any) -> tuple[int, dict[str, Any]]:
        """Run a procedure of examples/local through the CLI with this platform's state and ports."""
        merged: dict[str, Any] = {"state_dir": self.state, **values}
        if file != "migrate.yml":
            merged.update(python=sys.executable, **self.ports)
        params: list[str] = []
        for k, v in merged.items():
            params += ["-p", f"{k}={str(v).lower() if isinstance(v, bool) else v}"]
        out = subprocess.run([sys.executable, "-m", "engine.cli", str(LOCAL / file), *params, *args,
                              "--output", "json"], capture_output=True, text=True, timeout=120,
                             env={**os.environ, "RUNPROC_STATE": f"sqlite:///{self.state.parent}/runs.db"})
        assert out.stdout.strip(), out.stderr
        return out.returncode, json.loads(out.stdout)

    def ctl(self, *args: str) -> dict[str, Any]:
        out = subprocess.run([sys.executable, str(LOCAL / "ctl.py"), "--state", str(self.state), *args],
                             capture_output=True, text=True, check=True, timeout=30)
        return json.loads(out.stdout)

    def live(self) -> str:
        return (self.state / "router").read_text().strip()

    def get(self, port_name: str, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports[port_name]}{path}", timeout=5) as resp:
            return resp.read().decode()

    def schema(self) -> int:
        with sqlite3.connect(self.state / "app.db") as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])

    def tables(self) -> set[str]:
        with sqlite3.connect(self.state / "app.db") as conn:
            return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def running(self) -> dict[str, bool]:
        return self.ctl("status")["running"]


@pytest.fixture
def platform(tmp_path):
    p = Platform(tmp_path / "state")
    p.state.mkdir()
    yield p
    p.ctl("down")


def statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in doc["steps"]}


def test_blue_green_deploys_switches_and_stops_its_processes(platform):
    code, doc = platform.run("blue-green.yml", "--yes", version="1.1.0")
    assert code == 0, doc.get("error")
    assert platform.live() == "green"
    assert platform.ctl("status")["versions"] == {"blue": "1.0.0", "green": "1.1.0"}
    assert statuses(doc)["down"] == "ok"
    assert not any(platform.running().values())  # finally stopped blue, green and the router

    code, doc = platform.run("blue-green.yml", "--yes", version="1.2.0", keep_running=True)
    assert code == 0, doc.get("error")
    assert platform.live() == "blue"
    assert platform.get("router_port", "/version").strip() == "1.2.0"
    assert json.loads(platform.get("router_port", "/health"))["colour"] == "blue"
    assert platform.get("green_port", "/version").strip() == "1.1.0"  # the previous colour still serves


def test_failure_after_the_switch_switches_back(platform):
    assert platform.run("blue-green.yml", "--yes", version="1.1.0")[0] == 0
    code, doc = platform.run("blue-green.yml", "--yes", version="1.2.0", fail_after_switch=True, keep_running=True)
    assert code == 1 and doc["root_cause"] == "after_switch"
    assert statuses(doc)["switch"] == "rolled_back" and statuses(doc)["start_idle"] == "rolled_back"
    assert platform.live() == "green"
    assert platform.running() == {"blue": False, "green": True, "router": True}  # the new colour was stopped
    assert platform.get("router_port", "/version").strip() == "1.1.0"


def test_a_broken_release_never_gets_traffic(platform):
    code, doc = platform.run("blue-green.yml", "--yes", version="1.3.0", broken=True)
    assert code == 1 and doc["root_cause"] == "health"
    assert statuses(doc)["switch"] == "cancelled"
    assert platform.live() == "blue"
    assert not any(platform.running().values())


def test_dry_run_changes_nothing(platform):
    code, doc = platform.run("blue-green.yml", "--dry-run", version="1.1.0")
    assert code == 0, doc.get("error")
    st = statuses(doc)
    assert st["status"] == "ok" and st["start_idle"] == "planned" and st["switch"] == "planned"
    assert not (platform.state / "router").exists()
    assert not (platform.state / "releases").exists()


def test_migrate_up_fail_and_roll_back(platform):
    code, doc = platform.run("migrate.yml", to=1)
    assert code == 0, doc.get("error")
    assert platform.schema() == 1 and "templates" in platform.tables()

    code, doc = platform.run("migrate.yml", "--dry-run")
    assert code == 0
    st = statuses(doc)
    assert st["current"] == "ok" and st["m001_templates"] == "skipped"
    assert st["m002_status"] == st["m003_generations"] == "planned"
    assert platform.schema() == 1

    code, doc = platform.run("migrate.yml", fail=True)
    assert code == 1 and doc["root_cause"] == "fault"
    assert statuses(doc)["m002_status"] == statuses(doc)["m003_generations"] == "rolled_back"
    assert platform.schema() == 1  # the down migrations ran
    assert "template_generations" not in platform.tables()
    with sqlite3.connect(platform.state / "app.db") as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(templates)")]
    assert "status" not in columns
    assert len(list((platform.state / "backups").glob("app-*.db"))) == 2  # one per real run, none for the dry run

    code, doc = platform.run("migrate.yml")
    assert code == 0 and platform.schema() == 3


def test_release_migrates_then_deploys(platform):
    code, doc = platform.run("release.yml", "--yes", version="1.1.0", keep_running=True)
    assert code == 0, doc.get("error")
    assert platform.schema() == 3
    health = json.loads(platform.get("router_port", "/health"))
    assert health == {"status": "ok", "colour": "green", "version": "1.1.0", "schema": 3}
