"""kill -9 in the middle of a fanned-out step (real sshd hosts on 127.0.0.x): resume runs the
step only on the hosts that had not finished it, rollback undoes it only where it ran, each
exactly once (issue 12.2). Hosts run one at a time (``--forks 1``) so the kill point is exact.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from tests.helpers.cli import popen, runproc, write
from tests.servers.sshd import SshHost, write_inventory

NODES = ["node1", "node2", "node3", "node4"]


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch HOME: the SSH client never reads or writes the real ~/.ssh."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def _setup(tmp: Path, hosts: list[SshHost], known_hosts: Path, *, hold: str | None = None) -> tuple[Path, str]:
    """A procedure whose step appends its host's name to that host's own file (and the undo,
    ``undo-NAME``); ``hold``: on that host, after its line, the step waits for the test."""
    write_inventory(tmp / "inventory.ini", hosts, known_hosts=known_hosts)
    tag = f"effects-{uuid.uuid4().hex[:8]}"
    hold_cmd = (f'; if [ {{{{ host.name }}}} = {hold} ]; then touch "{tmp}/holding"; sleep 30; fi'
                if hold else "")
    path = write(tmp, f"""
        procedure: spread
        inventory: inventory.ini
        steps:
          - id: before
            shell: echo before >> local-effects
            rollback: {{shell: echo undo-before >> local-effects}}
          - id: spread
            on: nodes
            needs: [before]
            shell: echo {{{{ host.name }}}} >> "$RUNPROC_NODE_DIR/{tag}"{hold_cmd}
            rollback:
              shell: echo undo-{{{{ host.name }}}} >> "$RUNPROC_NODE_DIR/{tag}"
          - id: after
            needs: [spread]
            shell: echo after >> local-effects
    """)
    return path, tag


def _effects(hosts: list[SshHost], tag: str) -> dict[str, list[str]]:
    out = {}
    for h in hosts:
        f = h.workdir / tag
        out[h.name] = f.read_text().split() if f.exists() else []
    return out


def _last_run(tmp: Path) -> dict[str, object]:
    done = runproc(tmp, "runs", "--output", "json", "--state", f"sqlite:///{tmp}/state.db")
    return dict(json.loads(done.stdout)[0])


def _crash_at(tmp: Path, path: Path, kill_after: str) -> str:
    done = runproc(tmp, str(path), "--forks", "1", env={"RUNPROC_TEST_KILL_AFTER": kill_after})
    assert done.rc == -9, done.stderr
    run = _last_run(tmp)
    assert run["status"] == "interrupted"
    return str(run["id"])


def _crash_inside(tmp: Path, path: Path) -> str:
    """SIGKILL the runner from outside while node3 runs the step (its line written)."""
    proc = popen(tmp, str(path), "--forks", "1")
    deadline = time.monotonic() + 30
    while not (tmp / "holding").exists():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.kill()
    proc.communicate(timeout=20)
    run = _last_run(tmp)
    assert run["status"] == "interrupted"
    return str(run["id"])


@pytest.mark.parametrize("kill", ["host_finished:spread@node2", "host_started:spread@node3", "inside-node3"])
def test_resume_runs_a_fanned_out_step_only_where_it_did_not_finish(sshd_hosts: list[SshHost],
                                                                    known_hosts_file: Path, tmp_path: Path,
                                                                    kill: str) -> None:
    path, tag = _setup(tmp_path, sshd_hosts, known_hosts_file, hold="node3" if kill == "inside-node3" else None)
    run_id = _crash_inside(tmp_path, path) if kill == "inside-node3" else _crash_at(tmp_path, path, kill)
    shown = json.loads(runproc(tmp_path, "show", run_id, "--output", "json", "--state",
                               f"sqlite:///{tmp_path}/state.db").stdout)
    hosts = next(s for s in shown["steps"] if s["id"] == "spread")["hosts"]
    assert hosts["node1"]["status"] == "ok" and hosts["node2"]["status"] == "ok"
    if kill != "host_finished:spread@node2":
        assert hosts["node3"]["status"] == "interrupted"
        asked = runproc(tmp_path, "resume", run_id)
        assert asked.rc == 3 and "spread on node3 was in flight" in asked.stderr, asked.stderr
    (tmp_path / "holding").unlink(missing_ok=True)
    # the operator looks at node3: its line is there (killed inside) or not (killed before)
    node3 = _effects(sshd_hosts, tag)["node3"]
    choice = "--skip-inflight" if node3 else "--yes"
    resumed = runproc(tmp_path, "resume", run_id, choice, "--output", "json")
    assert resumed.rc == 0, resumed.stderr
    assert _effects(sshd_hosts, tag) == {n: [n] for n in NODES}
    assert (tmp_path / "local-effects").read_text().split() == ["before", "after"]
    step = next(s for s in resumed.json["steps"] if s["id"] == "spread")
    assert "not run again" in " ".join(step["hosts"]["node1"].get("notes") or [])


@pytest.mark.parametrize("kill", ["host_finished:spread@node2", "host_started:spread@node3", "inside-node3"])
def test_rollback_undoes_a_fanned_out_step_only_where_it_ran(sshd_hosts: list[SshHost], known_hosts_file: Path,
                                                             tmp_path: Path, kill: str) -> None:
    path, tag = _setup(tmp_path, sshd_hosts, known_hosts_file, hold="node3" if kill == "inside-node3" else None)
    run_id = _crash_inside(tmp_path, path) if kill == "inside-node3" else _crash_at(tmp_path, path, kill)
    ran = [n for n, lines in _effects(sshd_hosts, tag).items() if lines]
    choice = ["--yes"] if "node3" in ran or kill == "host_finished:spread@node2" else ["--yes", "--skip-inflight"]
    undone = runproc(tmp_path, "rollback", run_id, *choice)
    assert undone.rc == 0, undone.stderr
    assert _effects(sshd_hosts, tag) == {n: ([n, f"undo-{n}"] if n in ran else []) for n in NODES}
    assert (tmp_path / "local-effects").read_text().split() == ["before", "undo-before"]
    again = runproc(tmp_path, "rollback", run_id, *choice)
    assert again.rc == 0 and "nothing to undo" in again.stderr, again.stderr
