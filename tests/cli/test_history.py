"""History a team can use (issue 12.6): `runproc runs` filters and pages, `runproc show` says
who, where, params, steps, approvals, rollbacks and the step in flight, `runproc prune`
deletes old runs with their journal and logs (never a running one), the log and stored-output
retention applies itself after each run, and `runproc state info` shows it all."""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import signal
import socket
import sqlite3
import time
from pathlib import Path
from typing import Any

from tests.helpers.cli import Done, popen, run_json, runproc, state_args, write

OK = "procedure: alpha\nsteps:\n  - id: a\n    shell: 'true'\n"
FAILS = "procedure: beta\nsteps:\n  - id: b\n    shell: 'exit 3'\n"


def _state(tmp: Path) -> list[str]:
    return state_args(tmp)


def _runs(tmp: Path, *args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    done = runproc(tmp, "runs", "--output", "json", *args, *_state(tmp), env=env)
    assert done.rc == 0, done.stderr
    return list(json.loads(done.stdout))


def _sql(tmp: Path, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(tmp / "state.db")
    try:
        with db:
            return db.execute(statement, params).fetchall()
    finally:
        db.close()


def _one_line_error(done: Done, *words: str) -> None:
    assert done.rc == 2, (done.rc, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], lines[0]


def _wait_for(path: Path, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.stat().st_size:
            return
        time.sleep(0.02)
    raise AssertionError(f"{path} never appeared")


def _kill(pid_file: Path) -> None:
    """SIGKILL a step's command by the pid it wrote (it outlives a killed runner otherwise)."""
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(pid_file.read_text().strip()), signal.SIGKILL)


# ---------------------------------------------------------------- runs


def _history(tmp: Path) -> dict[str, list[str]]:
    """Six runs: alpha ok x3, beta failed x2, one alpha dry run (planned); ids by kind, oldest first."""
    ids: dict[str, list[str]] = {"alpha": [], "beta": [], "planned": []}
    for text, key, extra in ((OK, "alpha", ()), (FAILS, "beta", ()), (OK, "alpha", ()), (FAILS, "beta", ()),
                             (OK, "alpha", ()), (OK, "planned", ("--dry-run",))):
        done = run_json(tmp, text, *extra)
        ids[key].append(done.json["run_id"])
    return ids


def test_runs_filters_by_procedure_status_user_and_since(tmp_path: Path) -> None:
    ids = _history(tmp_path)
    every = _runs(tmp_path)
    assert len(every) == 6
    assert {"id", "procedure", "status", "started_at", "duration", "exit_code", "dry_run", "user", "host",
            "kind"} <= set(every[0])
    assert every[0]["user"] == getpass.getuser() and every[0]["host"] == socket.gethostname()
    assert [r["id"] for r in _runs(tmp_path, "--procedure", "beta")] == ids["beta"][::-1]
    assert {r["procedure"] for r in _runs(tmp_path, "--procedure", "alpha")} == {"alpha"}
    failed = _runs(tmp_path, "--status", "failed")
    assert [r["id"] for r in failed] == ids["beta"][::-1] and {r["exit_code"] for r in failed} == {1}
    planned = _runs(tmp_path, "--status", "planned")
    assert [r["id"] for r in planned] == ids["planned"] and planned[0]["dry_run"] is True
    assert len(_runs(tmp_path, "--status", "ok")) == 3
    assert _runs(tmp_path, "--status", "rollback_incomplete") == []
    # a teammate's run (as a shared state holds them) and two old runs
    _sql(tmp_path, 'UPDATE runs SET "user" = ? WHERE id = ?', ("alice", ids["alpha"][1]))
    _sql(tmp_path, "UPDATE runs SET started_at = ? WHERE id = ?", ("2020-01-02T03:04:05.000Z", ids["alpha"][0]))
    _sql(tmp_path, "UPDATE runs SET started_at = ? WHERE id = ?", ("2021-06-01T00:00:00.000Z", ids["beta"][0]))
    assert [r["id"] for r in _runs(tmp_path, "--user", "alice")] == [ids["alpha"][1]]
    assert _runs(tmp_path, "--user", "nobody-here") == []
    recent = {r["id"] for r in _runs(tmp_path, "--since", "7d")}
    assert len(recent) == 4 and ids["alpha"][0] not in recent and ids["beta"][0] not in recent
    assert len(_runs(tmp_path, "--since", "12h")) == 4
    assert {r["id"] for r in _runs(tmp_path, "--since", "2021-01-01")} == recent | {ids["beta"][0]}
    assert len(_runs(tmp_path, "--since", "2020-01-02T03:04:05Z")) == 6
    assert len(_runs(tmp_path, "--since", "2020-01-02T03:04:06Z")) == 5
    # filters combine
    both = _runs(tmp_path, "--procedure", "alpha", "--status", "ok", "--since", "7d")
    assert {r["id"] for r in both} == {ids["alpha"][1], ids["alpha"][2]}
    text = runproc(tmp_path, "runs", "--procedure", "beta", *_state(tmp_path))
    assert text.rc == 0, text.stderr
    lines = text.stdout.strip().splitlines()
    assert len(lines) == 2 and ids["beta"][1] in lines[0]
    assert "failed (exit 1)" in lines[0] and f"{getpass.getuser()}@{socket.gethostname()}" in lines[0]


def test_runs_pages_and_says_how_to_see_the_next_page(tmp_path: Path) -> None:
    ids = _history(tmp_path)
    newest_first = [r["id"] for r in _runs(tmp_path)]
    assert set(newest_first) == {i for v in ids.values() for i in v}
    assert [r["id"] for r in _runs(tmp_path, "-n", "2")] == newest_first[:2]
    assert [r["id"] for r in _runs(tmp_path, "--limit", "2", "--page", "2")] == newest_first[2:4]
    assert [r["id"] for r in _runs(tmp_path, "-n", "2", "--page", "3")] == newest_first[4:6]
    assert _runs(tmp_path, "-n", "2", "--page", "4") == []
    assert [r["id"] for r in _runs(tmp_path, "-n", "3", "--offset", "1")] == newest_first[1:4]
    first = runproc(tmp_path, "runs", "-n", "2", *_state(tmp_path))
    assert first.rc == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines[:2]] == newest_first[:2]
    assert lines[-1].startswith("-- more: runproc runs") and lines[-1].endswith("--page 2"), lines
    last = runproc(tmp_path, "runs", "-n", "2", "--page", "3", *_state(tmp_path))
    assert [ln.split()[0] for ln in last.stdout.strip().splitlines()] == newest_first[4:6]  # no "more" line
    filtered = runproc(tmp_path, "runs", "--status", "ok", "-n", "2", *_state(tmp_path))
    more = filtered.stdout.strip().splitlines()[-1]
    assert "--status ok" in more and more.endswith("--page 2"), more
    # the line to copy gives the next page
    argv = more.removeprefix("-- more: runproc ").split()
    nxt = runproc(tmp_path, *argv, "--output", "json")
    assert [r["id"] for r in json.loads(nxt.stdout)] == [i for i in newest_first if i in ids["alpha"]][2:]


def test_runs_bad_values_are_one_line_and_exit_2(tmp_path: Path) -> None:
    run_json(tmp_path, OK)
    for args, words in ((["--status", "bogus"], ["--status", "bogus", "interrupted"]),
                        (["--since", "yesterday"], ["--since", "yesterday"]),
                        (["--since", "7 parsecs"], ["--since"]),
                        (["-n", "0"], ["-n"]), (["-n", "many"], ["-n"]),
                        (["--page", "0"], ["--page"]), (["--offset", "-1"], ["--offset"])):
        _one_line_error(runproc(tmp_path, "runs", *args, *_state(tmp_path)), *words)


# ---------------------------------------------------------------- show

SHOWN = """
procedure: shown
params:
  env: {type: str, default: staging}
  token: {type: str, secret: true}
steps:
  - id: prepare
    shell: echo prepared
    rollback:
      shell: echo undone >> undo-log
  - id: approve
    confirm: "deploy to {{ params.env }}?"
  - id: broken
    shell: echo "disk full" >&2; exit 1
"""


def test_show_says_who_where_params_steps_approvals_and_rollbacks(tmp_path: Path) -> None:
    path = write(tmp_path, SHOWN)
    done = runproc(tmp_path, str(path), "--yes", "-p", "env=prod", "-p", "token=hunter2-secret", "--output", "json")
    assert done.rc == 1, done.stderr
    run_id = done.json["run_id"]
    text = runproc(tmp_path, "show", run_id, "--output", "text", *_state(tmp_path))
    assert text.rc == 0, text.stderr
    out = text.stdout
    user, host = getpass.getuser(), socket.gethostname()
    assert f"by:        {user} on {host} (pid " in out, out
    assert "params:    env=prod, token=***" in out
    assert "status:    failed (exit 1)" in out and "ended:     " in out
    assert "approvals:" in out and f"approve: approved by {user} (--yes)" in out
    lines = out.splitlines()
    prepare = next(i for i, ln in enumerate(lines) if "rolled_back" in ln and "prepare" in ln)
    assert lines[prepare + 1].strip().startswith("started ")
    assert lines[prepare + 2].strip().startswith("rollback: ok"), lines[prepare:prepare + 3]
    assert "rolled back: prepare" in out and "disk full" in out
    shown = runproc(tmp_path, "show", run_id[:7], "--output", "json", *_state(tmp_path)).json
    assert shown["run_id"] == run_id and shown["user"] == user and shown["host"] == host
    assert isinstance(shown["pid"], int) and shown["params"] == {"env": "prod", "token": "***"}
    assert shown["approvals"] == [{"step": "approve", "at": shown["approvals"][0]["at"], "approved": True,
                                   "by": user, "how": "--yes"}]
    events = [(e["event"], e["step"]) for e in shown["journal"]]
    assert ("approval", "approve") in events and ("rollback_finished", "prepare") in events
    assert events.index(("step_started", "prepare")) < events.index(("step_finished", "prepare"))
    assert shown["rolled_back"] == ["prepare"]
    prepare_entry = next(s for s in shown["steps"] if s["id"] == "prepare")
    assert prepare_entry["rollback"]["status"] == "ok" and prepare_entry["started_at"]
    for output in (text.stdout, text.stderr, json.dumps(shown)):
        assert "hunter2-secret" not in output


def test_show_an_interrupted_run_names_the_step_in_flight(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: long
        steps:
          - id: first
            shell: echo one
          - id: slow
            shell: echo $$ > slow.pid; exec sleep 60
            needs: [first]
    """)
    proc = popen(tmp_path, str(path), "--output", "json")
    try:
        _wait_for(tmp_path / "slow.pid")
        running = _runs(tmp_path, "--status", "running")
        assert [r["procedure"] for r in running] == ["long"]
        live = runproc(tmp_path, "show", running[0]["id"], "--output", "json", *_state(tmp_path)).json
        assert live["status"] == "running" and live["in_flight"] == ["slow"]
        os.kill(proc.pid, signal.SIGKILL)  # the runner dies; its step's command lives on
    finally:
        proc.kill()
        proc.communicate(timeout=20)
        _kill(tmp_path / "slow.pid")
    listed = _runs(tmp_path)
    assert listed[0]["status"] == "interrupted" and listed[0]["exit_code"] is None
    assert [r["id"] for r in _runs(tmp_path, "--status", "interrupted")] == [listed[0]["id"]]
    assert _runs(tmp_path, "--status", "running") == []
    shown = runproc(tmp_path, "show", listed[0]["id"], "--output", "json", *_state(tmp_path)).json
    assert shown["status"] == "interrupted" and shown["in_flight"] == ["slow"]
    statuses = {s["id"]: s["status"] for s in shown["steps"]}
    assert statuses == {"first": "ok", "slow": "interrupted"}
    text = runproc(tmp_path, "show", listed[0]["id"], "--output", "text", *_state(tmp_path)).stdout
    assert "in flight: slow" in text and "status:    interrupted\n" in text
    assert f"(pid {proc.pid})" in text and "(exit 0)" not in text


# ---------------------------------------------------------------- prune

FLOOD = """
procedure: {name}
steps:
  - id: flood
    shell: head -c 2000000 /dev/zero | tr '\\0' 'x'; echo $$ > {name}.pid; {tail}
"""


def test_prune_deletes_old_runs_their_journal_inputs_and_logs_never_a_running_one(tmp_path: Path) -> None:
    old = [run_json(tmp_path, FLOOD.format(name="old", tail="true")).json["run_id"] for _ in range(2)]
    recent = run_json(tmp_path, FLOOD.format(name="recent", tail="true")).json["run_id"]
    logs = tmp_path / "logs"
    assert _folders(logs) == {*old, recent}  # each spooled its 2 MB stdout
    path = write(tmp_path, FLOOD.format(name="going", tail="exec sleep 60"), "going.yml")
    going = popen(tmp_path, str(path))
    try:
        _wait_for(tmp_path / "going.pid")
        going_id = _runs(tmp_path, "--status", "running")[0]["id"]
        for rid in (*old, going_id):  # started long ago, as far as the state says
            _sql(tmp_path, "UPDATE runs SET started_at = ? WHERE id = ?", ("2020-01-01T00:00:00.000Z", rid))
        assert _sql(tmp_path, "SELECT COUNT(*) FROM journal WHERE run_id IN (?, ?)", tuple(old))[0][0] > 0
        # looking first deletes nothing
        planned = runproc(tmp_path, "prune", "--older-than", "90d", "--dry-run", "--output", "json")
        assert planned.rc == 0, planned.stderr
        assert planned.json["dry_run"] is True and sorted(planned.json["run_ids"]) == sorted(old)
        assert planned.json["running_kept"] == 1 and planned.json["log_folders"] == 2
        listed = runproc(tmp_path, "prune", "--older-than", "90d", "--dry-run")
        assert all(rid in listed.stdout for rid in old) and "would delete 2 runs" in listed.stdout
        assert len(_runs(tmp_path)) == 4
        # no terminal and no --yes: refused, nothing deleted
        refused = runproc(tmp_path, "prune", "--older-than", "90d")
        assert refused.rc == 3 and "--yes" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
        assert len(_runs(tmp_path)) == 4
        done = runproc(tmp_path, "prune", "--older-than", "90d", "--yes", "--output", "json")
        assert done.rc == 0, done.stderr
        report = done.json
        assert sorted(report["run_ids"]) == sorted(old) and report["runs"] == 2 and report["run_inputs"] == 2
        assert report["journal_entries"] > 0 and report["log_folders"] == 2 and report["log_bytes"] >= 4_000_000
        assert report["running_kept"] == 1
        assert {r["id"] for r in _runs(tmp_path)} == {recent, going_id}
        for table, key in (("runs", "id"), ("journal", "run_id"), ("run_inputs", "run_id")):
            assert _sql(tmp_path, f"SELECT COUNT(*) FROM {table} WHERE {key} IN (?, ?)", tuple(old))[0][0] == 0
        assert _sql(tmp_path, "SELECT COUNT(*) FROM journal WHERE run_id = ?", (going_id,))[0][0] > 0
        assert _folders(logs) == {recent, going_id}
        again = runproc(tmp_path, "prune", "--older-than", "90d", "--yes")
        assert again.rc == 0 and "nothing to prune" in again.stdout and "kept 1 still going" in again.stdout
    finally:
        going.kill()
        going.communicate(timeout=20)
        _kill(tmp_path / "going.pid")
    _one_line_error(runproc(tmp_path, "prune", "--older-than", "ninety days", "--yes"), "--older-than")
    missing = runproc(tmp_path, "prune", "--yes")
    assert missing.rc == 2 and "--older-than" in missing.stderr and "Traceback" not in missing.stderr


# ---------------------------------------------------------------- retention


def _folders(logs: Path) -> set[str]:
    """The run folders in a logs folder (beside them, the mark that retention looks after it)."""
    assert (logs / ".runproc-retention").is_file()
    return {p.name for p in logs.iterdir() if p.is_dir()}


def _db_bytes(tmp: Path) -> int:
    return sum(p.stat().st_size for p in tmp.glob("state.db*"))


def test_a_flooding_step_leaves_a_capped_log_and_capped_stored_output(tmp_path: Path) -> None:
    run_json(tmp_path, OK)  # the state exists: what follows is growth
    before = _db_bytes(tmp_path)
    text = """
        procedure: flood
        steps:
          - id: flood
            shell: head -c 5000000 /dev/zero | tr '\\0' 'x'; echo; echo THE-END
          - id: measure
            shell: echo "{{ steps.flood.stdout | length }}"
            needs: [flood]
          - id: on_disk
            shell: cat logs/*/flood-stdout-*.log | wc -c
            needs: [flood]
    """
    done = run_json(tmp_path, text, env={"RUNPROC_LOG_RUN_CAP": "1MB"})
    assert done.rc == 0, done.stderr
    run_id = done.json["run_id"]
    # the run itself, and its templates, saw the output as before (the in-memory head and tail)
    assert int(done.step("measure")["stdout"]) > 1_000_000 and "THE-END" in done.step("flood")["stdout"]
    # while the run went on, the log had already stopped growing at the cap (head, marker, tail)
    assert int(done.step("on_disk")["stdout"]) <= 1_000_000 + 300
    logs = list((tmp_path / "logs" / run_id).iterdir())
    assert len(logs) == 1
    log = logs[0].read_bytes()
    assert len(log) <= 1_000_000
    assert b"bytes cut from this log" in log and log.rstrip().endswith(b"THE-END") and log.startswith(b"xxxx")
    # the state keeps 64 KiB of each stream (the default), marked, in the report and the journal
    shown = runproc(tmp_path, "show", run_id, "--output", "json", *_state(tmp_path)).json
    flood = next(s for s in shown["steps"] if s["id"] == "flood")
    assert len(flood["stdout"].encode()) <= 64 * 1024 + 400 and "not kept in the state" in flood["stdout"]
    assert flood["stdout"].rstrip().endswith("THE-END")
    finished = next(e for e in shown["journal"] if e["event"] == "step_finished" and e["step"] == "flood")
    assert len(finished["data"]["entry"]["stdout"].encode()) <= 64 * 1024 + 400
    assert _db_bytes(tmp_path) - before < 1_000_000  # it grew by megabytes a run before


def test_the_log_cap_holds_while_the_first_run_of_a_new_state_writes(tmp_path: Path) -> None:
    # no run before this one: the state's logs folder is new, and still its log stops growing
    # at the cap while the step prints (it used to grow unbounded until the run's end)
    text = """
        procedure: first-flood
        steps:
          - id: flood
            shell: head -c 3000000 /dev/zero | tr '\\0' 'x'; echo; echo THE-END
          - id: on_disk
            shell: cat logs/*/flood-stdout-*.log | wc -c
            needs: [flood]
    """
    done = run_json(tmp_path, text, env={"RUNPROC_LOG_RUN_CAP": "1MB"})
    assert done.rc == 0, done.stderr
    assert int(done.step("on_disk")["stdout"]) <= 1_000_000 + 300
    assert _folders(tmp_path / "logs") == {done.json["run_id"]}


def test_the_output_cap_is_configurable_and_off_keeps_it_all(tmp_path: Path) -> None:
    text = "procedure: chatty\nsteps:\n  - id: talk\n    shell: head -c 30000 /dev/zero | tr '\\0' 'y'\n"
    small = run_json(tmp_path, text, env={"RUNPROC_OUTPUT_CAP": "4KiB"}).json["run_id"]
    whole = run_json(tmp_path, text, env={"RUNPROC_OUTPUT_CAP": "off"}).json["run_id"]
    for rid, size in ((small, 4096), (whole, 30000)):
        shown = runproc(tmp_path, "show", rid, "--output", "json", *_state(tmp_path)).json
        stdout = shown["steps"][0]["stdout"]
        assert (len(stdout) <= size + 400) and (("not kept" in stdout) == (rid == small))
    assert len(runproc(tmp_path, "show", whole, "--output", "json", *_state(tmp_path)).json["steps"][0]["stdout"]) \
        == 30000


def test_total_cap_and_age_delete_the_oldest_logs_after_a_run(tmp_path: Path) -> None:
    env = {"RUNPROC_LOG_TOTAL_CAP": "5MB"}
    ids = [run_json(tmp_path, FLOOD.format(name="f", tail="true"), env=env).json["run_id"] for _ in range(2)]
    logs = tmp_path / "logs"
    assert _folders(logs) == set(ids)  # 4 MB: under the cap
    third = run_json(tmp_path, FLOOD.format(name="f", tail="true"), env=env).json["run_id"]
    assert _folders(logs) == {ids[1], third}  # 6 MB: the oldest run's logs went
    # logs older than RUNPROC_LOG_MAX_AGE go at the next run
    month_ago = time.time() - 40 * 86400
    for f in [logs / ids[1], *(logs / ids[1]).iterdir()]:
        os.utime(f, (month_ago, month_ago))
    run_json(tmp_path, OK, env={"RUNPROC_LOG_MAX_AGE": "30d"})
    assert _folders(logs) == {third}
    # a bad value: a warning line, the default holds, the run is not failed
    warned = run_json(tmp_path, OK, env={"RUNPROC_LOG_TOTAL_CAP": "lots"})
    assert warned.rc == 0 and "RUNPROC_LOG_TOTAL_CAP" in warned.stderr and "Traceback" not in warned.stderr
    assert _folders(logs) == {third}


# ---------------------------------------------------------------- state info / sync


def test_state_info_shows_counts_sizes_logs_retention_and_spool(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    env = {"RUNPROC_SPOOL_DIR": str(spool), "RUNPROC_LOG_MAX_AGE": "7d"}
    run_json(tmp_path, OK, env=env)
    run_json(tmp_path, FAILS, env=env)
    run_json(tmp_path, FLOOD.format(name="f", tail="true"), env=env)
    spool.mkdir()
    waiting = spool / "0123456789ab.jsonl"  # another state's: it waits for runproc state sync
    waiting.write_text(json.dumps({"type": "header", "state": "sqlite:////elsewhere/state.db",
                                   "header": {"run_id": "0123456789ab"}}) + "\n")
    info = runproc(tmp_path, "state", "info", "--output", "json", env=env)
    assert info.rc == 0, info.stderr
    got = info.json
    assert got["state"] == f"sqlite:///{tmp_path}/state.db"
    assert isinstance(got["schema_version"], int) and got["schema_version"] >= 2
    assert got["runs"] == {"failed": 1, "ok": 2} and got["runs_total"] == 3
    assert got["journal_entries"] > 0 and got["database"]["bytes"] > 0
    assert str(tmp_path / "state.db") in got["database"]["files"]
    assert got["logs"]["dir"] == str(tmp_path / "logs") and got["logs"]["run_folders"] == 1
    assert got["logs"]["bytes"] >= 2_000_000
    retention = got["retention"]
    assert retention["log_max_age"] == 7 * 86400 and retention["log_run_cap"] == 100_000_000
    assert retention["log_total_cap"] == 1_000_000_000 and retention["output_cap"] == 64 * 1024
    assert retention["settings"]["RUNPROC_LOG_MAX_AGE"] == {"value": "7d", "from": "environment"}
    assert retention["settings"]["RUNPROC_LOG_RUN_CAP"] == {"value": "100MB", "from": "default"}
    assert got["spool"]["dir"] == str(spool) and [f["path"] for f in got["spool"]["files"]] == [str(waiting)]
    text = runproc(tmp_path, "state", "info", env={**env, "RUNPROC_OUTPUT_CAP": "tiny"})
    assert text.rc == 0, text.stderr
    for expected in ("schema version:", "runs:           3 (failed 1, ok 2)", "journal:", "database:",
                     f"logs:           {tmp_path / 'logs'}", "RUNPROC_LOG_MAX_AGE=7d", "1 journal waiting",
                     "warning: RUNPROC_OUTPUT_CAP='tiny'"):
        assert expected in text.stdout, text.stdout


def test_state_sync_of_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    _one_line_error(runproc(tmp_path, "state", "sync", str(tmp_path / "nope.jsonl")), "nope.jsonl")
    usage = runproc(tmp_path, "state")
    assert usage.rc == 2 and "info" in usage.stderr and "Traceback" not in usage.stderr


def test_show_of_an_unknown_run_is_one_line_and_exit_2(tmp_path: Path) -> None:
    run_json(tmp_path, OK)
    _one_line_error(runproc(tmp_path, "show", "ffffffffffff", *_state(tmp_path)), "ffffffffffff")
