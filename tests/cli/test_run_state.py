"""Run state: locks (held, stale), maintenance windows, the run history."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.helpers.cli import popen, run_json, runproc, wait_until, write

LOCKED = """
procedure: locked
lock: db-primary
params:
  nap: {type: float, default: 0}
steps:
  - id: work
    shell: touch started-$$; sleep {{ params.nap }}; echo done >> finished
"""




def test_lock_held_refuses_a_second_run_naming_the_holder(tmp_path: Path) -> None:
    path = write(tmp_path, LOCKED)
    first = popen(tmp_path, str(path), "-p", "nap=30", "--output", "json")
    try:
        wait_until(lambda: list(tmp_path.glob("started-*")), timeout=10)
        second = runproc(tmp_path, str(path), "--output", "json")
        assert second.rc == 3, second.stderr
        assert second.json["status"] == "refused"
        error = second.json["error"]
        assert "db-primary" in error and f"pid {first.pid}" in error and "locked" in error
        assert second.step("work")["status"] == "cancelled"
        text = runproc(tmp_path, str(path))
        assert text.rc == 3 and f"pid {first.pid}" in text.stdout
    finally:
        first.terminate()
        first.communicate(timeout=20)
    assert not (tmp_path / "finished").exists()
    # the interrupted holder released its lock: the next run goes through
    third = runproc(tmp_path, str(path), "--output", "json")
    assert third.rc == 0, third.stderr
    assert (tmp_path / "finished").read_text() == "done\n"


def test_stale_lock_of_a_dead_process_is_reclaimed(tmp_path: Path) -> None:
    path = write(tmp_path, LOCKED)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runproc(tmp_path, str(path), "--output", "json")  # creates the state database
    import socket

    db = sqlite3.connect(tmp_path / "state.db")
    with db:
        db.execute("DELETE FROM locks")
        db.execute("INSERT INTO locks (name, run_id, procedure, pid, host, user, acquired_at) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)",
                   ("db-primary", "deadbeef", "locked", dead.pid, socket.gethostname(), "ghost",
                    "2026-01-01T00:00:00Z"))
    db.close()
    done = runproc(tmp_path, str(path), "--output", "json")
    assert done.rc == 0, done.stdout + done.stderr
    db = sqlite3.connect(tmp_path / "state.db")
    assert db.execute("SELECT count(*) FROM locks").fetchone()[0] == 0  # released at the end
    db.close()


def _window_excluding_now() -> str:
    now = datetime.now(UTC)
    start = now + timedelta(hours=2)
    end = now + timedelta(hours=3)
    return f"daily {start:%H:%M}-{end:%H:%M} UTC"


def _window_including_now() -> str:
    now = datetime.now(UTC)
    start = now - timedelta(hours=1)
    end = now + timedelta(hours=1)
    return f"daily {start:%H:%M}-{end:%H:%M} UTC"


def test_outside_the_window_is_refused_and_ignore_window_runs(tmp_path: Path) -> None:
    text = f"""
        procedure: windowed
        window: "{_window_excluding_now()}"
        steps:
          - id: work
            shell: touch worked
    """
    done = run_json(tmp_path, text)
    assert done.rc == 3, done.stderr
    assert done.json["status"] == "refused" and "window" in done.json["error"]
    assert not (tmp_path / "worked").exists()
    forced = run_json(tmp_path, text, "--ignore-window")
    assert forced.rc == 0, forced.stderr
    assert (tmp_path / "worked").exists()


def test_inside_the_window_runs(tmp_path: Path) -> None:
    done = run_json(tmp_path, f"""
        procedure: windowed
        window: "{_window_including_now()}"
        steps:
          - id: work
            shell: touch worked
    """)
    assert done.rc == 0, done.stderr


def test_dry_run_outside_the_window_plans_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, f"""
        procedure: windowed
        window: "{_window_excluding_now()}"
        steps:
          - id: work
            shell: touch worked
    """)
    done = runproc(tmp_path, str(path), "--dry-run")
    assert done.rc == 0, done.stderr
    assert "window" in done.stdout + done.stderr
    assert not (tmp_path / "worked").exists()


def test_runs_lists_newest_first(tmp_path: Path) -> None:
    first = run_json(tmp_path, "procedure: one\nsteps:\n  - id: a\n    shell: 'true'\n")
    second = run_json(tmp_path, "procedure: two\nsteps:\n  - id: a\n    shell: 'false'\n")
    listed = runproc(tmp_path, "runs", "--output", "json", "--state", f"sqlite:///{tmp_path}/state.db")
    assert listed.rc == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["id"] for r in runs[:2]] == [second.json["run_id"], first.json["run_id"]]
    assert runs[0]["procedure"] == "two" and runs[0]["status"] == "failed"
    assert {"id", "procedure", "status", "started_at"} <= set(runs[0])
    shown = runproc(tmp_path, "show", first.json["run_id"], "--state", f"sqlite:///{tmp_path}/state.db")
    assert shown.rc == 0 and json.loads(shown.stdout)["procedure"] == "one"


def test_state_from_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "procedure: envstate\nsteps:\n  - id: a\n    shell: 'true'\n")
    url = f"sqlite:///{tmp_path}/other.db"
    done = runproc(tmp_path, str(path), env={"RUNPROC_STATE": url}, state=False)
    assert done.rc == 0, done.stderr
    assert (tmp_path / "other.db").exists()


def test_default_state_under_xdg_state_home(tmp_path: Path) -> None:
    path = write(tmp_path, "procedure: xdg\nsteps:\n  - id: a\n    shell: 'true'\n")
    done = runproc(tmp_path, str(path), env={"XDG_STATE_HOME": str(tmp_path / "xdg")}, state=False)
    assert done.rc == 0, done.stderr
    assert (tmp_path / "xdg" / "runproc" / "state.db").exists()


def test_dry_run_warns_about_a_held_lock_without_taking_it(tmp_path: Path) -> None:
    import os
    import socket

    path = write(tmp_path, LOCKED)
    runproc(tmp_path, str(path), "--output", "json")  # creates the state database
    db = sqlite3.connect(tmp_path / "state.db")
    with db:  # held by this (live) test process
        db.execute("INSERT INTO locks (name, run_id, procedure, pid, host, user, acquired_at) "
                   "VALUES ('db-primary', 'feedface', 'locked', ?, ?, 'tester', 'now')",
                   (os.getpid(), socket.gethostname()))
    db.close()
    plan = runproc(tmp_path, str(path), "--dry-run")
    assert plan.rc == 0, plan.stderr
    assert "a real run would be refused" in plan.stdout and "feedface" in plan.stdout
    real = runproc(tmp_path, str(path), "--output", "json")
    assert real.rc == 3 and "feedface" in real.json["error"]


def test_unusable_state_refuses_a_locked_run(tmp_path: Path) -> None:
    path = write(tmp_path, LOCKED)
    (tmp_path / "not-a-dir").write_text("")
    done = runproc(tmp_path, str(path), "--output", "json", "--state", f"sqlite:///{tmp_path}/not-a-dir/s.db",
                   state=False)
    # a state that cannot be opened is invalid input, found before anything runs (exit 2)
    assert done.rc == 2, done.stderr
    assert done.stderr.startswith("--state: ") and "not-a-dir" in done.stderr
    assert not (tmp_path / "finished").exists()
    bad = runproc(tmp_path, str(path), "--state", "postgresql://runproc@127.0.0.1:1/x", state=False)
    assert bad.rc == 2 and bad.stderr.startswith("--state: ") and len(bad.stderr.splitlines()) == 1, bad.stderr


# window.wait: a run submitted outside its window waits for it. RUNPROC_TEST_NOW makes the run
# believe it starts 2 seconds before a window opens (a real minute boundary would cost a minute).
WAITING = """
    procedure: patient
    window: {times: "Sun 02:00-04:00 UTC", wait: true}
    steps:
      - id: work
        shell: touch worked
"""
BEFORE_OPENING = {"RUNPROC_TEST_NOW": "2026-12-06T01:59:58Z"}  # a Sunday


def test_window_wait_waits_for_the_window_to_open_then_runs(tmp_path: Path) -> None:
    done = runproc(tmp_path, str(write(tmp_path, WAITING)), env=BEFORE_OPENING)
    assert done.rc == 0, done.stderr
    assert (tmp_path / "worked").exists()
    assert "waiting until 2026-12-06 02:00:00 UTC" in done.stderr + done.stdout
    # without wait: refused, saying when it next opens
    refused = run_json(tmp_path, WAITING.replace("wait: true", "wait: false"), env=BEFORE_OPENING)
    assert refused.rc == 3 and "next open 2026-12-06 02:00:00 UTC" in refused.json["error"], refused.stderr


def test_a_dry_run_outside_a_waiting_window_says_it_would_wait(tmp_path: Path) -> None:
    path = write(tmp_path, WAITING)
    done = runproc(tmp_path, str(path), "--dry-run", env={"RUNPROC_TEST_NOW": "2026-12-05T12:00:00Z"})
    assert done.rc == 0, done.stderr
    assert "a real run would wait until 2026-12-06 02:00:00 UTC" in done.stdout + done.stderr
    assert not (tmp_path / "worked").exists()


def test_ctrl_c_while_waiting_for_the_window_runs_nothing(tmp_path: Path) -> None:
    import signal

    path = write(tmp_path, WAITING)
    proc = popen(tmp_path, str(path), "--output", "json", env={"RUNPROC_TEST_NOW": "2026-12-05T12:00:00Z"})
    deadline = time.monotonic() + 30
    while not list(tmp_path.glob("state.db*")):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and "interrupted while waiting for the window" in out, err
    assert not (tmp_path / "worked").exists()


def test_a_bad_window_in_the_long_form_is_pointed_at(tmp_path: Path) -> None:
    path = write(tmp_path, WAITING.replace("Sun 02:00", "Funday 02:00"))
    done = runproc(tmp_path, "validate", str(path))
    assert done.rc == 2 and "proc.yml:2:" in done.stderr and "unknown day" in done.stderr, done.stderr
    path = write(tmp_path, WAITING.replace('times: "Sun 02:00-04:00 UTC", ', ""))
    done = runproc(tmp_path, "validate", str(path))
    assert done.rc == 2 and "proc.yml:2:" in done.stderr and "times" in done.stderr, done.stderr
