"""Locks as leases across processes and machines (issue 12.4), on SQLite and on a real
PostgreSQL: twenty runners wanting one lock never overlap, a SIGKILLed holder is taken over
(at once on its own host), a holder on another machine that stops renewing is taken over
once its lease expires and one that keeps renewing never is, and a run's own heartbeat keeps
its lock through a step longer than the lease. Every takeover is in the lock audit.

"Another machine" is a store object opened in the test as host ``other-machine``: to the
runners it is a holder whose pid they cannot check, judged only by its heartbeat.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.state.sqlstore import SqlStore, now_iso
from tests.helpers.cli import RUNPROC, child_env, write

BACKENDS = ["sqlite", "postgres"]
LOCK = "shared"
# how the refusal names the holder: its run id, procedure, pid and host
HELD = re.compile(r"lock 'shared' is held by run (\w+) of contended \(pid (\d+) on ([^,]+), by ")


def _procedure(tmp: Path) -> Path:
    """Its step logs `<run id> start|end <time>` around a short sleep; with park=FILE it writes
    its pid to FILE and sleeps for good instead of ending (a holder to be killed)."""
    times = tmp / "times"
    return write(tmp, f"""
        procedure: contended
        lock: {LOCK}
        params:
          hold: {{type: float, default: 0.2}}
          park: {{type: str, default: ""}}
          release: {{type: str, default: ""}}
        steps:
          - id: work
            shell: |
              echo "{{{{ run.id }}}} start $(date +%s.%N)" >> {times}
              if [ -n "{{{{ params.park }}}}" ]; then echo $$ > "{{{{ params.park }}}}.tmp"
                mv "{{{{ params.park }}}}.tmp" "{{{{ params.park }}}}"; exec sleep 600; fi
              if [ -n "{{{{ params.release }}}}" ]; then touch {tmp}/holding
                while [ ! -e "{{{{ params.release }}}}" ]; do sleep 0.05; done; fi
              sleep {{{{ params.hold }}}}
              echo "{{{{ run.id }}}} end $(date +%s.%N)" >> {times}
    """)


@pytest.fixture(params=BACKENDS)
def state(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state URL: a SQLite file in the test's folder, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return str(request.getfixturevalue("pg_db"))


def _open(url: str, **kw: Any) -> SqlStore:
    """The store at ``url`` as this test's own client (``host=`` to stand in for another machine)."""
    if url.startswith("sqlite:"):
        from engine.state.sqlite import SqliteStore

        return SqliteStore(url, **kw)
    from engine.state.postgres import PostgresStore

    return PostgresStore(url, **kw)


def _env(tmp: Path, lease: float | None = None) -> dict[str, str]:
    env = child_env({"RUNPROC_SPOOL_DIR": str(tmp / "spool")})
    if lease is not None:
        env["RUNPROC_LOCK_LEASE"] = str(lease)
    return env


def _start(tmp: Path, url: str, *params: str, lease: float | None = None) -> subprocess.Popen[str]:
    argv = [*RUNPROC, str(tmp / "proc.yml"), "--output", "json", "--state", url]
    for p in params:
        argv += ["-p", p]
    return subprocess.Popen(argv, cwd=tmp, env=_env(tmp, lease), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, errors="replace")


class Outcome:
    """One runner's end: exit code, its JSON report, stderr."""

    def __init__(self, proc: subprocess.Popen[str], timeout: float = 300) -> None:
        out, self.stderr = proc.communicate(timeout=timeout)
        self.pid, self.rc = proc.pid, proc.returncode
        assert out.strip(), f"no report (exit {self.rc}); stderr:\n{self.stderr}"
        self.report: dict[str, Any] = json.loads(out)
        assert "Traceback" not in self.stderr, self.stderr

    @property
    def holder(self) -> tuple[str, int, str]:
        """(run id, pid, host) the refusal names."""
        found = HELD.search(self.report.get("error") or "")
        assert found, (self.rc, self.report.get("error"), self.stderr)
        return found[1], int(found[2]), found[3]


def _run(tmp: Path, url: str, *params: str, lease: float | None = None) -> Outcome:
    return Outcome(_start(tmp, url, *params, lease=lease))


def _intervals(tmp: Path) -> dict[str, list[float]]:
    """run id -> [start, end] (end missing for a holder killed mid-step)."""
    out: dict[str, list[float]] = {}
    path = tmp / "times"
    for line in path.read_text().splitlines() if path.exists() else []:
        run_id, what, at = line.split()
        assert (what == "start") == (run_id not in out), f"{run_id} {what} twice: {path.read_text()}"
        out.setdefault(run_id, []).append(float(at))
    return out


def _assert_no_overlap(spans: dict[str, list[float]]) -> None:
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    for (a, sa), (b, sb) in zip(ordered, ordered[1:], strict=False):
        assert len(sa) == 2, f"run {a} never ended but {b} started after it: {ordered}"
        assert sa[1] <= sb[0], f"run {b} started at {sb[0]} while {a} held the lock ({sa}): {ordered}"


def _assert_ran_or_refused(outcomes: list[Outcome], spans: dict[str, list[float]],
                           holders: Callable[[str, int], bool]) -> list[Outcome]:
    """Each runner ran its step (exit 0) or was refused (exit 3) naming a holder; those that ran."""
    ran = []
    for o in outcomes:
        assert o.rc in (0, 3), (o.rc, o.report.get("error"), o.stderr)
        if o.rc == 0:
            assert o.report["status"] == "ok" and o.report["run_id"] in spans
            assert len(spans[o.report["run_id"]]) == 2
            ran.append(o)
        else:
            assert o.report["status"] == "refused" and o.report["run_id"] not in spans
            run_id, pid, host = o.holder
            assert holders(run_id, pid), (run_id, pid, o.report["error"])
            assert host == socket.gethostname()
    assert ran, "no runner ran"
    assert len(ran) == len(spans)
    return ran


def _wait_for(path: Path, proc: subprocess.Popen[str], deadline: float = 120) -> None:
    end = time.monotonic() + deadline
    while not path.exists():
        assert proc.poll() is None, f"the holder ended (exit {proc.returncode}): {proc.communicate()}"
        assert time.monotonic() < end, f"{path} never appeared"
        time.sleep(0.05)


def _takeovers(tmp: Path, url: str) -> list[dict[str, Any]]:
    """The takeovers of the lock, as the lock audit shows them (runproc locks --history)."""
    done = subprocess.run([*RUNPROC, "locks", "--history", LOCK, "-n", "500", "--output", "json", "--state", url],
                          env=_env(tmp), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return [e for e in json.loads(done.stdout) if e["event"] == "taken_over"]


def test_twenty_concurrent_runners_never_overlap(tmp_path: Path, state: str) -> None:
    _procedure(tmp_path)
    procs = [_start(tmp_path, state) for _ in range(20)]
    outcomes = [Outcome(p) for p in procs]
    spans = _intervals(tmp_path)
    _assert_no_overlap(spans)
    pids = {o.pid for o in outcomes}
    # whoever a refusal names is one of the twenty, and it ran
    _assert_ran_or_refused(outcomes, spans, lambda run_id, pid: run_id in spans and pid in pids)
    assert _takeovers(tmp_path, state) == []  # every holder released its lock: nothing to take over


def test_a_sigkilled_holder_is_taken_over_at_once_on_its_host(tmp_path: Path, state: str) -> None:
    _procedure(tmp_path)
    parked = tmp_path / "parked"
    holder = _start(tmp_path, state, f"park={parked}", lease=2)
    try:
        _wait_for(parked, holder)
        (held_id,) = _intervals(tmp_path)
        # while it lives, it holds: every runner is refused naming it
        for o in [Outcome(p) for p in [_start(tmp_path, state, lease=2) for _ in range(3)]]:
            assert o.rc == 3 and o.holder[:2] == (held_id, holder.pid), (o.rc, o.report.get("error"))
    finally:
        holder.send_signal(signal.SIGKILL)  # the runner, mid-step
        holder.communicate(timeout=30)
        if parked.exists():
            os.kill(int(parked.read_text()), signal.SIGKILL)  # and its step, which would go on
    killed_at = time.time()
    procs = [_start(tmp_path, state, lease=2) for _ in range(8)]
    outcomes = [Outcome(p) for p in procs]
    spans = _intervals(tmp_path)
    spans[held_id].append(killed_at)  # the killed holder's step ran until it was killed
    _assert_no_overlap(spans)
    pids = {o.pid for o in outcomes}
    ran = _assert_ran_or_refused(outcomes, {k: v for k, v in spans.items() if k != held_id},
                                 lambda run_id, pid: run_id in spans and pid in pids)
    (taken,) = _takeovers(tmp_path, state)
    first = min(ran, key=lambda o: spans[o.report["run_id"]][0])
    assert taken["run_id"] == first.report["run_id"]
    assert f"from run {held_id} (pid {holder.pid} on {socket.gethostname()}" in taken["detail"]
    assert "its process is gone" in taken["detail"]


class Renewer:
    """Another machine's holder, renewing its lease every lease/4 until stopped."""

    def __init__(self, store: SqlStore, run_id: str) -> None:
        self.store, self.run_id = store, run_id
        self.stop = threading.Event()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._beat, daemon=True)
        self.thread.start()

    def _beat(self) -> None:
        while not self.stop.wait(self.store.lease / 4):
            try:
                self.store.renew(self.run_id, [LOCK])
            except BaseException as exc:  # noqa: BLE001 - the test asserts none happened
                self.errors.append(exc)
                return

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        assert not self.errors, self.errors


REMOTE_RUN = "remote0run01"


def test_another_machines_holder_is_taken_over_once_its_lease_expires(tmp_path: Path, state: str) -> None:
    _procedure(tmp_path)
    remote = _open(state, host="other-machine", lease=2)
    try:
        assert remote.acquire(LOCK, REMOTE_RUN, "contended", "someone", now_iso()) is None
        renewer = Renewer(remote, REMOTE_RUN)
        try:
            refused = _run(tmp_path, state)
            assert refused.rc == 3, refused.report
            assert refused.holder[0] == REMOTE_RUN and refused.holder[2] == "other-machine"
        finally:
            renewer.halt()  # the other machine is gone: nothing renews its lease any more
        # poll: refused until the lease expires, then a runner takes the lock over
        deadline = time.monotonic() + 120
        while True:
            o = _run(tmp_path, state)
            assert o.rc in (0, 3), (o.rc, o.report.get("error"), o.stderr)
            if o.rc == 0:
                break
            assert o.holder[0] == REMOTE_RUN
            assert time.monotonic() < deadline, "the expired lease was never taken over"
            time.sleep(0.2)
        (taken,) = _takeovers(tmp_path, state)
        assert taken["run_id"] == o.report["run_id"]
        assert f"from run {REMOTE_RUN} (pid {os.getpid()} on other-machine, by someone)" in taken["detail"]
        assert "lease expired" in taken["detail"]
        assert remote.holder(LOCK) is None  # released by the runner that took it over
    finally:
        remote.close()


def test_another_machines_holder_that_keeps_renewing_is_never_taken_over(tmp_path: Path, state: str) -> None:
    _procedure(tmp_path)
    remote = _open(state, host="other-machine", lease=2)
    try:
        assert remote.acquire(LOCK, REMOTE_RUN, "contended", "someone", now_iso()) is None
        renewer = Renewer(remote, REMOTE_RUN)
        try:
            start = time.monotonic()
            attempts = 0
            while attempts < 3 or time.monotonic() - start < 3 * remote.lease:  # a few leases
                o = _run(tmp_path, state)
                assert o.rc == 3 and o.holder[0] == REMOTE_RUN, (o.rc, o.report.get("error"), o.stderr)
                attempts += 1
        finally:
            renewer.halt()
        assert _takeovers(tmp_path, state) == []
        holder = remote.holder(LOCK)
        assert holder is not None and holder.run_id == REMOTE_RUN
        remote.release(LOCK, REMOTE_RUN)
        assert _run(tmp_path, state).rc == 0  # released: the next runner goes
    finally:
        remote.close()
    assert len(_intervals(tmp_path)) == 1  # only the runner after the release ran its step


def test_a_runs_heartbeat_keeps_its_lock_through_a_step_longer_than_the_lease(tmp_path: Path, state: str) -> None:
    _procedure(tmp_path)
    lease = 2.0
    release = tmp_path / "release"
    holder = _start(tmp_path, state, f"release={release}", lease=lease)
    try:
        _wait_for(tmp_path / "holding", holder)
        start = time.monotonic()
        attempts = 0
        # its step lasts over three leases: every runner meanwhile is refused naming it
        while attempts < 3 or time.monotonic() - start < 3 * lease:
            o = _run(tmp_path, state, lease=lease)
            assert o.rc == 3 and o.holder[1] == holder.pid, (o.rc, o.report.get("error"), o.stderr)
            attempts += 1
            time.sleep(0.2)
    finally:
        release.touch()
    done = Outcome(holder)
    assert done.rc == 0, (done.report.get("error"), done.stderr)
    assert _takeovers(tmp_path, state) == []
    assert list(_intervals(tmp_path)) == [done.report["run_id"]]
