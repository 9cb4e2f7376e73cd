"""``schedule:`` checked as the file loads, ``runproc schedule add|list|remove`` (in process,
their dry runs changing nothing) and ``runproc scheduler --once --at`` end to end: a real run
recorded as started by ``schedule:NAME``, and the same slot never fired twice."""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from engine.cli.app import main
from tests.helpers.cli import runproc, write

PROC = """
procedure: report
params:
  mode: {type: str, choices: [full, quick], default: quick}
  key: {type: str, secret: true, default: k}
steps:
  - id: say
    shell: echo mode {{ params.mode }}
"""

BAD = """
procedure: report
params:
  mode: {type: str, choices: [full, quick], default: quick}
schedule:
  - name: one
    cron: "0 25 * * *"
    timezone: Mars/Olympus
  - name: two
    cron: "*/5 * * *"
    overlap: sometimes
steps:
  - id: say
    shell: echo hi
"""


def test_a_bad_schedule_is_a_located_problem_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    done = runproc(tmp_path, "validate", str(path))
    assert done.rc == 2
    lines = done.stderr.splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:6:11", f"{path}:7:15", f"{path}:9:11",
                                                       f"{path}:10:14"], done.stderr
    assert "schedule[0].cron" in lines[0] and "Mars/Olympus" in lines[1] and "6 with seconds" in lines[2]
    assert "Traceback" not in done.stderr
    write(tmp_path, BAD.replace('"0 25 * * *"', '"0 3 * * *"').replace("Mars/Olympus", "UTC")
          .replace('"*/5 * * *"', '"*/5 * * * *"').replace("sometimes", "queue")
          .replace("timezone: UTC", "timezone: UTC\n    params: {mdoe: full}"), "p.yml")
    typo = runproc(tmp_path, "validate", "p.yml")
    assert typo.rc == 2 and "p.yml:5:3: schedule: the first schedule's params: unknown param 'mdoe'" in typo.stderr
    assert "did you mean 'mode'" in typo.stderr


def _main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_schedule_add_list_remove_and_their_dry_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = write(tmp_path, PROC)
    state = ["--state", f"sqlite:///{tmp_path}/state.db"]
    add = ["schedule", "add", "nightly", str(proc), "--cron", "0 3 * * *", "--timezone", "Europe/Paris",
           "-p", "mode=full", "--overlap", "queue", *state]
    rc, _, err = _main(capsys, *add, "--dry-run")
    assert rc == 0 and "would add nightly" in err and "nothing changed" in err
    rc, out, _ = _main(capsys, "schedule", "list", "--output", "json", *state)
    assert rc == 0 and json.loads(out) == []  # the dry run added nothing
    rc, _, err = _main(capsys, *add)
    assert rc == 0 and "added nightly" in err
    rc, out, _ = _main(capsys, "schedule", "list", "--output", "json", *state)
    [item] = json.loads(out)
    assert (item["procedure"], item["params"], item["overlap"], item["catch_up"], item["source"]) == \
        ("report", {"mode": "full"}, "queue", "skip", "state")
    assert item["next"][0].endswith(("T02:00:00Z", "T01:00:00Z")) and item["user"] == "schedule:nightly"
    rc, out, _ = _main(capsys, "schedule", "list", *state)
    assert rc == 0 and out.startswith("nightly") and "never fired" in out
    rc, _, err = _main(capsys, *add)
    assert rc == 3 and "exists already" in err
    rc, _, err = _main(capsys, "schedule", "remove", "nightly", "--dry-run", *state)
    assert rc == 0 and "would remove" in err
    assert len(json.loads(_main(capsys, "schedule", "list", "--output", "json", *state)[1])) == 1
    rc, _, err = _main(capsys, "schedule", "remove", "nightly", *state)
    assert rc == 0 and "removed nightly" in err
    rc, _, err = _main(capsys, "schedule", "remove", "nightly", *state)
    assert rc == 2 and "no stored schedule 'nightly'" in err
    rc, _, err = _main(capsys, "schedule")
    assert rc == 2 and "a command is needed" in err
    rc, _, err = _main(capsys, "schedule", "ad")
    assert rc == 2 and "unknown command 'ad'" in err


@pytest.mark.parametrize(("args", "words"), [
    (["--cron", "0 3 * *"], "--cron: expected 5 fields"),
    (["--cron", "0 3 * * *", "--timezone", "Nowhere/Atall"], "unknown time zone 'Nowhere/Atall'"),
    (["--cron", "0 3 * * *", "--overlap", "never"], "--overlap 'never': expected one of skip, queue"),
    (["--cron", "0 3 * * *", "-p", "mdoe=full"], "did you mean 'mode'"),
    (["--cron", "0 3 * * *", "-p", "mode=fast"], "mode"),
    (["--cron", "0 3 * * *", "-p", "key=hush"], "'key' is a secret"),
])
def test_schedule_add_refuses_bad_input_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    args: list[str], words: str) -> None:
    proc = write(tmp_path, PROC)
    rc, _, err = _main(capsys, "schedule", "add", "x", str(proc), *args, "--state", f"sqlite:///{tmp_path}/s.db")
    assert rc == 2 and words in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


HELD = PROC.replace("    shell: echo mode {{ params.mode }}",
                    "    shell: \"while [ ! -e '{go}' ]; do sleep 0.05; done; echo mode {{ params.mode }}\"")


def test_the_scheduler_fires_a_due_slot_as_a_real_run_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    go = tmp_path / "go"  # the run holds until the test lets it end: it still runs at the next slot
    proc = write(tmp_path, HELD.replace("{go}", str(go)))
    try:
        state = f"sqlite:///{tmp_path}/state.db"
        assert _main(capsys, "schedule", "add", "every-second", str(proc), "--cron", "* * * * * *", "-p", "mode=full",
                     "--state", state)[0] == 0
        created = json.loads(_main(capsys, "schedule", "list", "--output", "json", "--state", state)[1])[0]["created_at"]
        # a second and a half after it was added: one or two slots due, on time
        at = (datetime.fromisoformat(created.replace("Z", "+00:00")) + timedelta(seconds=1.5)).isoformat()
        far = runproc(tmp_path, "scheduler", "--once", "--at", "2099-01-01T00:00:00Z", "--state", state, state=False)
        assert far.rc == 2 and "a time to come goes with --dry-run only" in far.stderr
        dry = runproc(tmp_path, "scheduler", "--once", "--at", at, "--dry-run", "--state", state, state=False)
        assert dry.rc == 0 and "every-second" in dry.stdout and "would start" in dry.stdout and "(dry run)" in dry.stdout
        with sqlite3.connect(tmp_path / "state.db") as db:
            assert db.execute("SELECT count(*) FROM schedule_fires").fetchone() == (0,)
            assert db.execute("SELECT count(*) FROM runs").fetchone() == (0,)
        done = runproc(tmp_path, "scheduler", "--once", "--at", at, "--state", state, state=False)
        assert done.rc == 0 and "fired run" in done.stderr, done.stderr
        again = runproc(tmp_path, "scheduler", "--once", "--at", at, "--state", state, state=False)
        assert again.rc == 0 and "fired" not in again.stderr
        with sqlite3.connect(tmp_path / "state.db") as db:
            fires = db.execute("SELECT outcome, run_id FROM schedule_fires ORDER BY slot").fetchall()
            assert [f[0] for f in fires] in (["fired"], ["fired", "skipped"])  # the second: while the first runs
            run_id = fires[0][1]
        go.touch()
        for _ in range(600):  # the run goes on after the scheduler exits: wait for its end (a bound on a hang)
            with sqlite3.connect(tmp_path / "state.db") as db:
                if db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone() != ("running",):
                    break
            time.sleep(0.05)
        shown = runproc(tmp_path, "show", run_id, "--output", "json", "--state", state, state=False)
        report = json.loads(shown.stdout)
        assert report["procedure"] == "report" and "mode full" in json.dumps(report)
        listed = json.loads(runproc(tmp_path, "runs", "--output", "json", "--state", state, state=False).stdout)
        assert [r.get("user") for r in listed] == ["schedule:every-second"]
    finally:
        go.touch()  # a held run never outlives the test
