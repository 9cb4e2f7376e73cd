"""The state store going away mid-run (issue 12.5), with a real PostgreSQL stopped under a
running runproc: nothing new starts, the running step finishes, the completed steps are rolled
back, the journal goes on in a local spool file, the run exits 1 saying so in one line; once
the server is back, the next contact (any runproc that opens the state) or `runproc state
sync FILE` uploads the spool: the run is in history with its final status and its whole
journal, and the spool file is gone. A second upload changes nothing.

Each test has its own PostgreSQL server (it is stopped and started again), not the shared one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.state import spool
from engine.state.postgres import PostgresStore
from engine.state.recovery import in_flight
from engine.state.sqlite import SqliteStore
from tests.helpers.cli import RUNPROC, child_env, write
from tests.servers.postgres import PostgresServer, _as_pg_user, _clean_env, start_postgres, stop_postgres

PASSWORD = "sekret-never-shown"  # the test server trusts loopback: the password is only carried
STEPS = ["s1", "s2", "s3", "s4"]


@pytest.fixture
def server() -> Iterator[PostgresServer]:
    pg = start_postgres()
    try:
        pg.psql("CREATE DATABASE outage")
        yield pg
    finally:
        stop_postgres(pg)  # stops it if it runs, and removes its data


def _pg_ctl(pg: PostgresServer, *args: str) -> None:
    done = subprocess.run(_as_pg_user([str(pg.bin_dir / "pg_ctl"), "-D", str(pg.data_dir), *args]),
                          capture_output=True, text=True, cwd=pg.data_dir.parent, env=_clean_env(), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def _stop(pg: PostgresServer) -> None:
    _pg_ctl(pg, "-m", "fast", "-w", "stop")  # its connections are cut, new ones refused


def _start(pg: PostgresServer) -> None:
    _pg_ctl(pg, "-l", str(pg.log_path), "-w", "-t", "60", "start")


def _server_pids(pg: PostgresServer) -> list[int]:
    """This test's server: its postmaster and the processes it forked (the backends)."""
    postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
    pids = [postmaster]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                stat = (proc / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == postmaster:
                pids.append(int(proc.name))
    return pids


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _procedure(tmp: Path) -> Path:
    """Four steps in a chain, each with an undo, all logging to `effects`; s2 waits for `marker`."""
    lines = ["procedure: outage", "lock: outage", "steps:"]
    for i, sid in enumerate(STEPS):
        action = f"echo {sid} >> effects"
        if sid == "s2":
            action = "echo s2-start >> effects; while [ ! -e marker ]; do sleep 0.05; done; echo s2 >> effects"
        lines += [f"  - id: {sid}", f"    shell: {json.dumps(action)}",
                  f"    rollback: {{shell: \"echo undo-{sid} >> effects\"}}"]
        if i:
            lines.append(f"    needs: [{STEPS[i - 1]}]")
    return write(tmp, "\n".join(lines) + "\n")


def _effects(tmp: Path) -> list[str]:
    path = tmp / "effects"
    return path.read_text().split() if path.exists() else []


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return child_env({"RUNPROC_SPOOL_DIR": str(tmp / "spool"), **extra})


def _runproc(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNPROC, *args], cwd=tmp, env=_env(tmp, **env), capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, errors="replace")


def _wait_for(predicate: Any, proc: subprocess.Popen[str], what: str) -> None:
    end = time.monotonic() + 120
    while not predicate():
        assert proc.poll() is None, f"the run ended before {what}: {proc.communicate()}"
        assert time.monotonic() < end, f"never: {what}"
        time.sleep(0.05)


def _spool_files(tmp: Path) -> list[Path]:
    folder = tmp / "spool"
    return sorted(folder.glob("*.jsonl")) if folder.is_dir() else []


@dataclass
class Ran:
    rc: int
    out: str
    err: str


def _outage(tmp: Path, pg: PostgresServer, url: str, *, first: str, output: str) -> Ran:
    """Run the procedure and stop PostgreSQL while s2 runs; then let s2 finish. ``first``:
    what notices the outage, the next journal write (s2's end) or the heartbeat (a short
    lease; s2 goes on until the spool file is there); or "frozen": the server is not stopped
    but frozen (SIGSTOP: it refuses nothing, answers nothing, as behind a network that drops
    packets) and the write gives up after RUNPROC_STATE_TIMEOUT."""
    _procedure(tmp)
    lease = {"write": "60", "heartbeat": "2", "frozen": "60"}[first]
    run = subprocess.Popen([*RUNPROC, "proc.yml", "--output", output, "--state", url], cwd=tmp,
                           env=_env(tmp, RUNPROC_LOCK_LEASE=lease, RUNPROC_STATE_TIMEOUT="2"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                           errors="replace")
    frozen: list[int] = []
    try:
        _wait_for(lambda: "s2-start" in _effects(tmp), run, "s2 started")
        if first == "frozen":
            frozen = _server_pids(pg)
            _signal(frozen, signal.SIGSTOP)
        else:
            _stop(pg)
        if first == "heartbeat":
            _wait_for(lambda: _spool_files(tmp), run, "the heartbeat noticed")
            # its run still writes it: an upload (to any store) leaves it alone
            other = SqliteStore(f"sqlite:///{tmp}/other.db")
            try:
                with pytest.raises(spool.SpoolBusy):
                    spool.upload(other, _spool_files(tmp)[0])
            finally:
                other.close()
        (tmp / "marker").touch()
        out, err = run.communicate(timeout=120)
    finally:
        _signal(frozen, signal.SIGCONT)
        if run.poll() is None:
            run.kill()
            run.communicate()
    return Ran(run.returncode, out, err)


def _check_the_run(tmp: Path, run: Ran, *, output: str, shown: str, first: str) -> str:
    """What the run did and said; its spool file. Returns the run id."""
    out, err = run.out, run.err
    assert "Traceback" not in out + err, out + err
    assert PASSWORD not in out + err
    # s2 finished, s3 and s4 never started, s2 and s1 undone in reverse order
    assert _effects(tmp) == ["s1", "s2-start", "s2", "undo-s2", "undo-s1"]
    assert run.rc == 1, out + err
    (path,) = _spool_files(tmp)
    if output == "json":
        report = json.loads(out)
        run_id = report["run_id"]
        assert report["status"] == "failed" and report["rolled_back"] == ["s2", "s1"]
        assert {s["id"]: s["status"] for s in report["steps"]}["s3"] == "cancelled"
        said = err.strip().splitlines()[-1]  # a person watching a JSON run: one line on stderr
    else:
        run_id = path.stem
        # a warning as it happens, then the summary says it again as the run's failure
        warned, said = [ln for ln in out.splitlines() if "stopped answering" in ln]
        assert "warning" in warned and said.lstrip().startswith("failed: "), out
    assert "the state store stopped answering" in said and f"{shown}:" in said, said
    assert str(path) in said and f"runproc state sync {path}" in said, said
    assert path.name == f"{run_id}.jsonl"
    text = path.read_text()
    assert PASSWORD not in text
    lines = [json.loads(ln) for ln in text.splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["state"] == shown
    assert lines[0]["header"]["run_id"] == run_id
    entries = [(ln["event"], ln["step"]) for ln in lines[1:-1]]
    assert all(ln["type"] == "entry" for ln in lines[1:-1])
    undo = [("rollback_started", "s2"), ("rollback_finished", "s2"), ("rollback_started", "s1"),
            ("rollback_finished", "s1")]
    if first == "heartbeat":  # noticed while s2 ran: its end is the first entry the store missed
        assert entries == [("step_finished", "s2"), *undo]
    else:
        # the write that failed carried s2's end and s3's start (one commit a step,
        # docs/state.md): s3 did not start, and its end, right after, says so
        assert entries == [("step_finished", "s2"), ("step_started", "s3"), ("step_finished", "s3"), *undo]
        s3_end = lines[3]["data"]
        assert s3_end["entry"]["status"] == "cancelled" and s3_end["completed"] is False
        assert s3_end["entry"]["error"] == "not started: the state store stopped answering"
    assert lines[-1]["type"] == "report" and lines[-1]["report"]["status"] == "failed"
    return str(run_id)


def _check_uploaded(url: str, run_id: str, spooled: Path) -> list[dict[str, Any]]:
    """The run is in history as it ended, its journal whole; a second upload changes nothing."""
    store = PostgresStore(url)
    try:
        report = store.show(run_id)
        assert report is not None and report["status"] == "failed" and report["exit_code"] == 1
        assert report["rolled_back"] == ["s2", "s1"]
        journal = store.journal(run_id)
        assert [e["seq"] for e in journal] == list(range(1, len(journal) + 1))  # no gap
        steps = [(e["event"], e["step"]) for e in journal]
        assert steps[:4] == [("step_started", "s1"), ("step_finished", "s1"), ("step_started", "s2"),
                             ("step_finished", "s2")]
        assert steps[-1] == ("rollback_finished", "s1")
        assert in_flight(journal) == {}  # s3, whose start the failed write carried, is not in flight
        spooled_entries = sum(1 for ln in spooled.read_text().splitlines() if json.loads(ln)["type"] == "entry")
        again = spool.upload(store, spooled)  # a copy of the spool file, uploaded again
        assert again["run_id"] == run_id and again["entries"] == 0 and again["skipped"] == spooled_entries
        assert store.journal(run_id) == journal
        assert store.show(run_id) == report
        assert not spooled.exists()
        return journal
    finally:
        store.close()


@pytest.mark.parametrize(("first", "output", "upload"), [("write", "json", "next-contact"),
                                                         ("heartbeat", "text", "sync"),
                                                         ("frozen", "json", "next-contact")])
def test_state_store_stopped_mid_run(tmp_path: Path, server: PostgresServer, first: str, output: str,
                                     upload: str) -> None:
    url = server.dsn_for("outage").replace(f"{server.user}@", f"{server.user}:{PASSWORD}@")
    shown = server.dsn_for("outage")  # as the spool file and the messages say it
    run = _outage(tmp_path, server, url, first=first, output=output)
    run_id = _check_the_run(tmp_path, run, output=output, shown=shown, first=first)
    (path,) = _spool_files(tmp_path)
    copy = tmp_path / "copy.jsonl"
    shutil.copy(path, copy)

    if first != "frozen":
        _start(server)
    if upload == "next-contact":
        listed = _runproc(tmp_path, "runs", "--output", "json", "--state", url)
        assert listed.returncode == 0, listed.stderr
        assert f"uploaded the journal of run {run_id}" in listed.stderr and str(path) in listed.stderr
        (row,) = [r for r in json.loads(listed.stdout) if r["id"] == run_id]
        assert row["status"] == "failed" and row["exit_code"] == 1
    else:
        synced = _runproc(tmp_path, "state", "sync", str(path), "--state", url)
        assert synced.returncode == 0, synced.stdout + synced.stderr
        assert run_id in synced.stdout + synced.stderr
        assert PASSWORD not in synced.stdout + synced.stderr
    assert not path.exists()
    _check_uploaded(url, run_id, copy)

    # the lock the run could not release: its runner is gone, so the next run takes it over
    again = _runproc(tmp_path, "proc.yml", "--output", "json", "--state", url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _effects(tmp_path)[5:] == ["s1", "s2-start", "s2", "s3", "s4"]
    store = PostgresStore(url)
    try:
        (taken,) = [e for e in store.lock_events("outage") if e["event"] == "taken_over"]
        assert f"from run {run_id} " in taken["detail"] and "its process is gone" in taken["detail"]
    finally:
        store.close()


def test_a_runner_killed_during_the_outage_is_interrupted_once_its_spool_is_uploaded(
        tmp_path: Path, server: PostgresServer) -> None:
    """The spool has no report (the runner was SIGKILLed after undoing s2): uploaded, the run is
    interrupted with its journal whole, and `runproc rollback` finishes the undo (s1 only)."""
    url = server.dsn_for("outage")
    _procedure(tmp_path)
    run = subprocess.Popen([*RUNPROC, "proc.yml", "--state", url], cwd=tmp_path,
                           env=_env(tmp_path, RUNPROC_TEST_KILL_AFTER="rollback_finished:s2"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        _wait_for(lambda: "s2-start" in _effects(tmp_path), run, "s2 started")
        _stop(server)
        (tmp_path / "marker").touch()
        run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == -9
    assert _effects(tmp_path) == ["s1", "s2-start", "s2", "undo-s2"]
    (path,) = _spool_files(tmp_path)
    run_id = path.stem
    assert [json.loads(ln)["type"] for ln in path.read_text().splitlines()][-1] == "entry"  # no report

    _start(server)
    shown = _runproc(tmp_path, "show", run_id, "--output", "json", "--state", url)
    assert shown.returncode == 0, shown.stderr
    assert f"uploaded the journal of run {run_id}" in shown.stderr
    assert json.loads(shown.stdout)["status"] == "interrupted"
    assert not path.exists()
    store = PostgresStore(url)
    try:
        journal = store.journal(run_id)
    finally:
        store.close()
    assert [e["seq"] for e in journal] == list(range(1, len(journal) + 1))
    assert [(e["event"], e["step"]) for e in journal][-1] == ("rollback_finished", "s2")
    undone = _runproc(tmp_path, "rollback", run_id, "--yes", "--state", url)
    assert undone.returncode == 0, undone.stdout + undone.stderr
    assert _effects(tmp_path) == ["s1", "s2-start", "s2", "undo-s2", "undo-s1"]  # s2 not undone twice
