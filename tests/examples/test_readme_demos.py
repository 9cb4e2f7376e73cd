"""The README's demo commands, run as a new user runs them: from the repository root.

The procedures resolve relative paths against their own folder (commands run there), but a
path handed to another program that opens it itself (SQLite's ``VACUUM INTO``) is resolved by
that program against the folder runproc was started from. So these tests start runproc from
the repository root and give the local platform a *relative* state directory (under
``examples/local/.state/``, which git ignores, one per test, removed after it): a path that
is not made absolute with ``run.dir`` is looked for under the repository root instead and the
run fails, as ``examples/local/release.yml`` once did. Free ports and a temporary run history
keep the tests from colliding with anything else.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "examples" / "local"


def _runproc() -> list[str]:
    """The installed console script when there is one (what the README runs), else the module."""
    script = Path(sys.executable).with_name("runproc")
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(tmp_path: Path, *args: str) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ, "NO_COLOR": "1", "TMPDIR": str(tmp_path)}
    out = subprocess.run([*_runproc(), *args, "--state", f"sqlite:///{tmp_path}/runs.db", "--output", "json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert out.stdout.strip(), out.stderr
    return out.returncode, json.loads(out.stdout), out.stderr


def _statuses(doc: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in doc["steps"]}


def _step(doc: dict[str, Any], step_id: str) -> dict[str, Any]:
    return next(s for s in doc["steps"] if s["id"] == step_id)


@pytest.fixture
def platform():
    """A relative state directory (``.state/pytest-...``, relative to examples/local) and free ports."""
    relative = f".state/pytest-{uuid.uuid4().hex[:12]}"
    state = LOCAL / relative
    assert not (ROOT / relative).exists()  # from the repo root, the relative path names nothing
    params = ["-p", f"state_dir={relative}", "-p", f"router_port={_free_port()}",
              "-p", f"blue_port={_free_port()}", "-p", f"green_port={_free_port()}"]
    try:
        yield state, params
    finally:
        if state.exists():  # stop whatever a failed run left running, then remove the state
            subprocess.run([sys.executable, str(LOCAL / "ctl.py"), "--state", str(state), "down"],
                           capture_output=True, timeout=30)
            shutil.rmtree(state, ignore_errors=True)
        assert not (ROOT / relative).exists(), "something was written under the repo root"


def test_quickstart_from_the_repo_root(tmp_path):
    code, doc, err = _run(tmp_path, "examples/quickstart.yml")
    assert code == 0, err + json.dumps(doc.get("error"))
    st = _statuses(doc)
    assert st["fault"] == "skipped" and st["cleanup"] == "ok"
    assert st["release"] == "ok" and not doc["rolled_back"]  # the rollback stood ready, unused
    service = _step(doc, "service")
    assert service["attempts"] == 3 and "ready" in service["stdout"]  # retried by `until`, exit 0 each time
    assert not list(tmp_path.glob("runproc-quickstart-*"))  # finally removed the scratch directory


def test_quickstart_fail_runs_the_rollback(tmp_path):
    code, doc, err = _run(tmp_path, "examples/quickstart.yml", "-p", "fail=true")
    assert code == 1, err
    assert doc["root_cause"] == "fault"
    assert _statuses(doc)["release"] == "rolled_back" and doc["rolled_back"] == ["release"]


def test_quickstart_until_keeps_retrying_a_probe_that_exits_0(tmp_path):
    code, doc, err = _run(tmp_path, "examples/quickstart.yml", "-p", "ready_after=5")
    assert code == 0, err
    assert _step(doc, "service")["attempts"] == 5


def test_blue_green_from_the_repo_root(tmp_path, platform):
    state, params = platform
    code, doc, err = _run(tmp_path, "examples/local/blue-green.yml", "-p", "version=2.0.0", "--yes", *params)
    assert code == 0, err + json.dumps(doc.get("error"))
    assert (state / "router").read_text().strip() == "green"
    assert (state / "colours" / "green").read_text().strip() == "2.0.0"
    assert _statuses(doc)["down"] == "ok"


def test_release_from_the_repo_root(tmp_path, platform):
    state, params = platform
    code, doc, err = _run(tmp_path, "examples/local/release.yml", "-p", "version=1.1.0", "--yes", *params)
    assert code == 0, err + json.dumps(doc.get("error"))
    assert len(list((state / "backups").glob("app-*.db"))) == 1  # VACUUM INTO wrote where it should
    with sqlite3.connect(state / "app.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 3
    assert (state / "colours" / "green").read_text().strip() == "1.1.0"


def test_migrate_from_another_folder(tmp_path, platform):
    """Started from a folder that is neither the repo root nor examples/local."""
    state, params = platform
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "NO_COLOR": "1"}
    out = subprocess.run([*_runproc(), str(LOCAL / "migrate.yml"), *params[:2],
                          "--state", f"sqlite:///{tmp_path}/runs.db", "--output", "json"],
                         cwd=elsewhere, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr + out.stdout[-2000:]
    assert len(list((state / "backups").glob("app-*.db"))) == 1
    assert not any(elsewhere.iterdir())
