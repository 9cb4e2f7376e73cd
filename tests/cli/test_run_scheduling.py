"""The scheduler and one step's semantics, through ``runproc FILE --output json``."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

from tests.helpers.cli import run_json


def test_sequential_by_default_in_file_order(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: seq
        steps:
          - id: a
            shell: sleep 0.2; echo a >> order
          - id: b
            shell: echo b >> order
          - id: c
            shell: echo c >> order
    """)
    assert done.rc == 0, done.stderr
    assert (tmp_path / "order").read_text().split() == ["a", "b", "c"]
    assert done.statuses() == {"a": "ok", "b": "ok", "c": "ok"}


def _most_at_once(log: Path) -> int:
    """The largest number of steps running at the same moment, from their start/end lines."""
    events = []
    for line in log.read_text().split("\n"):
        if line:
            kind, _, stamp = line.split()
            events.append((float(stamp), 0 if kind == "end" else 1))  # an end before a start at a tie
    running = most = 0
    for _, start in sorted(events):
        running += 1 if start else -1
        most = max(most, running)
    return most


def _timed_steps(n: int, seconds: float) -> str:
    return "\n".join(f"  - id: s{i}\n    needs: []\n    shell: echo start s{i} $(date +%s.%N) >> log; "
                     f"sleep {seconds}; echo end s{i} $(date +%s.%N) >> log" for i in range(n))


def test_independent_steps_run_in_parallel(tmp_path: Path) -> None:
    done = run_json(tmp_path, "procedure: par\nsteps:\n" + _timed_steps(6, 1) + "\n")
    assert done.rc == 0, done.stderr
    assert set(done.statuses().values()) == {"ok"}
    assert _most_at_once(tmp_path / "log") == 6


def test_concurrency_bounds_the_pool(tmp_path: Path) -> None:
    done = run_json(tmp_path, "procedure: bounded\nconcurrency: 2\nsteps:\n" + _timed_steps(4, 0.4) + "\n")
    assert done.rc == 0, done.stderr
    assert _most_at_once(tmp_path / "log") == 2  # two waves of two


def test_outputs_flow_to_later_steps(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: flow
        steps:
          - id: a
            shell: |
              echo '{"n": 41, "name": "x y"}'
          - id: b
            shell: echo $(( {{ steps.a.json.n }} + 1 )) {{ steps.a.json.name }} > b.txt
          - id: c
            assert: steps.b.rc == 0 and steps.a.json.n == 41
    """)
    assert done.rc == 0, done.stderr
    assert (tmp_path / "b.txt").read_text() == "42 x y\n"
    assert done.step("a")["json"] == {"n": 41, "name": "x y"}
    assert done.step("c")["value"] is True


def test_when_false_skips_and_dependents_still_run(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: when
        params:
          go: {type: bool, default: false}
        steps:
          - id: maybe
            when: params.go
            shell: touch maybe
          - id: after
            shell: touch after
    """)
    assert done.rc == 0, done.stderr
    assert done.statuses() == {"maybe": "skipped", "after": "ok"}
    assert not (tmp_path / "maybe").exists()
    assert (tmp_path / "after").exists()


def test_continue_on_error_records_and_goes_on(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: coe
        steps:
          - id: flaky
            shell: echo boom >&2; exit 3
            continue_on_error: true
          - id: next
            shell: touch next
    """)
    assert done.rc == 0, done.stderr
    assert done.json["status"] == "ok"
    flaky = done.step("flaky")
    assert flaky["status"] == "failed" and flaky["rc"] == 3 and "boom" in flaky["error"]
    assert done.step("next")["status"] == "ok"
    assert (tmp_path / "next").exists()


def test_retry_until_reports_attempts(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: retry
        steps:
          - id: poll
            shell: echo x >> tries; wc -l < tries
            retry: {attempts: 5, delay: 0.05s, until: "result.stdout | int >= 3"}
    """)
    assert done.rc == 0, done.stderr
    poll = done.step("poll")
    assert poll["status"] == "ok" and poll["attempts"] == 3
    assert (tmp_path / "tries").read_text().count("x") == 3


def test_retry_exhausted_fails_with_last_error(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: retry
        steps:
          - id: poll
            shell: exit 1
            retry: {attempts: 3, delay: 0.01s, backoff: 2}
    """)
    assert done.rc == 1
    poll = done.step("poll")
    assert poll["status"] == "failed" and poll["attempts"] == 3 and poll["rc"] == 1


def test_timeout_kills_the_whole_process_tree(tmp_path: Path) -> None:
    marker = f"runproc-test-{uuid.uuid4().hex[:8]}"
    done = run_json(tmp_path, f"""
        procedure: timeout
        steps:
          - id: hang
            shell: sh -c "sleep 60; true {marker}" & sleep 61
            timeout: 0.5s
          - id: never
            shell: touch never
    """)
    assert done.rc == 1
    assert done.step("hang")["status"] == "timed_out"
    assert done.step("never")["status"] == "cancelled"
    assert not (tmp_path / "never").exists()
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", f"a descendant survived: {left.stdout}"
    assert done.json["duration"] < 5


def test_timeout_with_a_background_grandchild(tmp_path: Path) -> None:
    # the form: `sleep 60 &` inside the step
    marker = f"{60 + int(uuid.uuid4().int % 1000) / 1000:.3f}"
    done = run_json(tmp_path, f"""
        procedure: timeout
        steps:
          - id: hang
            shell: sleep {marker} & wait
            timeout: 0.3s
    """)
    assert done.step("hang")["status"] == "timed_out"
    time.sleep(0.2)
    left = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert left.stdout == ""


def test_verify_failure_fails_the_step_and_rolls_back(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: verify
        steps:
          - id: first
            shell: echo first-done >> log
            rollback: {shell: echo first-undone >> log}
          - id: change
            shell: echo 1 > value; echo changed >> log
            verify:
              - name: value is 2
                shell: cat value
                expect: result.stdout.strip() == "2"
            rollback: {shell: echo change-undone >> log}
          - id: later
            shell: touch later
    """)
    assert done.rc == 1, done.stderr
    change = done.step("change")
    assert change["status"] == "failed"
    assert "verify failed" in change["error"] and "value is 2" in change["error"]
    assert change["rollback"]["status"] == "ok"
    assert done.step("first")["status"] == "rolled_back"
    assert done.step("later")["status"] == "cancelled"
    assert (tmp_path / "log").read_text().split() == ["first-done", "changed", "change-undone", "first-undone"]
    assert done.json["root_cause"] == "change"
    assert set(done.json["rolled_back"]) == {"first", "change"}


def test_step_precondition_fails_before_the_action(tmp_path: Path) -> None:
    done = run_json(tmp_path, """
        procedure: pre
        steps:
          - id: guarded
            preconditions:
              - name: flag present
                shell: test -f flag
            shell: touch changed
    """)
    assert done.rc == 1
    assert done.step("guarded")["status"] == "failed"
    assert "precondition failed: flag present" in done.step("guarded")["error"]
    assert not (tmp_path / "changed").exists()


def test_env_and_working_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    done = run_json(tmp_path, """
        procedure: envdir
        params:
          who: {type: str, default: world}
        steps:
          - id: here
            shell: pwd; echo "$GREETING"
            env:
              GREETING: "hello {{ params.who }}"
          - id: there
            shell: {cmd: pwd, cwd: sub}
    """)
    assert done.rc == 0, done.stderr
    assert done.step("here")["stdout"].split("\n")[:2] == [str(tmp_path), "hello world"]
    assert done.step("there")["stdout"].strip() == str(tmp_path / "sub")


def test_simple_and_complex_commands_behave_alike(tmp_path: Path) -> None:
    # a simple command is executed without /bin/sh (as make does); its results must not differ
    done = run_json(tmp_path, """
        procedure: fastpath
        steps:
          - id: direct
            shell: /bin/echo hi there
          - id: missing
            shell: no-such-command-xyz arg
            continue_on_error: true
          - id: builtin
            shell: exit 7
            continue_on_error: true
          - id: pwd_env
            shell: printenv PWD
    """)
    assert done.step("direct")["stdout"] == "hi there\n"
    missing = done.step("missing")
    assert missing["rc"] == 127 and "not found" in missing["stderr"]
    assert done.step("builtin")["rc"] == 7
    assert done.step("pwd_env")["stdout"].strip() == str(tmp_path)
