"""Procedures on Temporal (issue 13), against a real dev server and real `runproc worker`
processes on loopback (tests/servers/temporal.py): the same procedures give the same
outcome as a local run, secrets stay on the workers, each step runs on its queue's worker,
a confirm step waits for `runproc approve`, bad input is one line."""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.cli import RUNPROC, child_env, runproc, write
from tests.helpers.plugins import install_redis_plugin
from tests.servers.temporal import TemporalServer, start_worker, stop_worker


@pytest.fixture(scope="module")
def queue() -> str:
    """A queue of this module's own: a worker of another module never takes its steps."""
    return f"q-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def worker(temporal_server: TemporalServer, queue: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[object]:
    """One worker for the module's tests (steps run in their own procedure's folder)."""
    proc = start_worker(temporal_server.address, queue, name="w-main", cwd=tmp_path_factory.mktemp("worker"),
                        env={"DEMO_TOKEN": CANARY})
    try:
        temporal_server.wait_for_pollers(queue, identity_contains="w-main", proc=proc)
        yield proc
    finally:
        stop_worker(proc)


CANARY = "canary-7d1f0c2e9b"


def _engine_args(server: TemporalServer, queue: str) -> list[str]:
    return ["--engine", server.engine_url, "--queue", queue]


# ---------------------------------------------------------------- same semantics as a local run

SEMANTICS = {
    "dag-when-retry": """
        procedure: dag
        params:
          who: {type: str, default: world}
        vars:
          greeting: "hello {{ params.who }}"
        steps:
          - id: first
            shell: "echo first >> effects; echo '{\\"n\\": 2}'"
          - id: left
            needs: [first]
            shell: echo "{{ vars.greeting }} {{ steps.first.json.n }}" >> effects
          - id: skipped
            needs: [first]
            when: "steps.first.json.n > 5"
            shell: echo never >> effects
          - id: flaky
            needs: [left]
            shell: "n=$(cat tries 2>/dev/null || echo 0); echo $((n+1)) > tries; test $n -ge 1"
            retry: {attempts: 3, delay: 0}
            verify:
              - expect: "result.rc == 0"
        finally:
          - id: tidy
            shell: echo tidy >> effects
    """,
    "failure-rolls-back": """
        procedure: saga
        steps:
          - id: one
            shell: echo one >> effects
            rollback: {shell: echo undo-one >> effects}
          - id: two
            needs: [one]
            shell: echo two >> effects
            rollback: {shell: echo undo-two >> effects}
          - id: soft
            needs: [two]
            continue_on_error: true
            shell: echo soft >> effects; exit 1
          - id: three
            needs: [soft]
            shell: echo three >> effects
            verify:
              - shell: test -e nonexistent
            rollback: {shell: echo undo-three >> effects}
          - id: four
            needs: [three]
            shell: echo four >> effects
        on_failure:
          - id: page
            shell: echo page >> effects
        finally:
          - id: tidy
            shell: echo tidy >> effects
    """,
    # fan-out: hosts of a batch run in parallel, so effects are compared as a multiset (the
    # per-host statuses are compared exactly)
    "fanout-max-fail-leaves-hosts-out": """
        procedure: rolling
        inventory: hosts.ini
        steps:
          - id: drain
            on: web
            serial: 2
            max_fail: 1
            shell: "echo drain-{{ host.name }} >> effects; test {{ host.name }} != web2"
            rollback: {shell: "echo undo-drain-{{ host.name }} >> effects"}
          - id: enable
            needs: [drain]
            on: web
            shell: "echo enable-{{ host.name }}-{{ host.vars.colour }} >> effects"
          - id: db
            needs: [enable]
            on: "db:?nothing"
            shell: "echo db-{{ host.name }} >> effects; exit 1"
    """,
    "fanout-serial-stops-and-rolls-back": """
        procedure: canary
        inventory: hosts.ini
        steps:
          - id: upgrade
            on: web
            serial: 1
            shell: "echo up-{{ host.name }} >> effects; test {{ host.name }} != web2"
            rollback: {shell: "echo down-{{ host.name }} >> effects"}
          - id: none
            on: "?nothing"
            shell: echo never >> effects
    """,
    "preconditions-refuse": """
        procedure: guarded
        preconditions:
          - shell: "true"
          - shell: test -e ready
        steps:
          - id: act
            shell: echo act >> effects
        finally:
          - id: tidy
            shell: echo tidy >> effects
    """,
    "timeout-and-concurrency": """
        procedure: bounded
        concurrency: 1
        steps:
          - id: a
            needs: []
            shell: echo a >> effects
          - id: b
            needs: []
            shell: echo b >> effects
          - id: slow
            needs: [a, b]
            timeout: 1s
            continue_on_error: true
            shell: sleep 5; echo never >> effects
          - id: after
            needs: [slow]
            shell: echo after >> effects
    """,
    "confirm-with-yes": """
        procedure: approved
        steps:
          - id: ask
            confirm: {message: "go?"}
          - id: act
            needs: [ask]
            shell: echo act >> effects
    """,
}


@pytest.mark.parametrize("name", sorted(SEMANTICS))
def test_the_same_procedure_gives_the_same_outcome_locally_and_on_temporal(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path, name: str) -> None:
    outcomes = {}
    for engine in ("local", "temporal"):
        folder = tmp_path / engine
        folder.mkdir()
        path = write(folder, SEMANTICS[name])
        (folder / "hosts.ini").write_text(HOSTS)
        extra = _engine_args(temporal_server, queue) if engine == "temporal" else []
        done = runproc(folder, str(path), "--output", "json", "--yes", *extra, timeout=120)
        assert done.stdout.strip(), done.stderr
        report = done.json
        effects = (folder / "effects").read_text().split("\n") if (folder / "effects").exists() else []
        outcomes[engine] = {"rc": done.rc, "status": report["status"], "root_cause": report["root_cause"],
                            "rolled_back": report["rolled_back"],
                            "steps": {s["id"]: s["status"] for s in report["steps"]},
                            "hosts": {s["id"]: {h: r["status"] for h, r in s["hosts"].items()}
                                      for s in report["steps"] if "hosts" in s},
                            "notes": {s["id"]: s.get("notes") for s in report["steps"] if "hosts" in s},
                            "effects": sorted(effects) if name.startswith("fanout") else effects}
    assert outcomes["temporal"] == outcomes["local"]
    if name.startswith("fanout"):
        assert outcomes["local"]["hosts"], outcomes  # the case did fan out


# hosts of the fan-out cases: reached with ansible_connection=local, as Ansible does
HOSTS = """
[web]
web1 colour=blue
web2 colour=green
web3 colour=blue

[db]
db1

[all:vars]
ansible_connection=local
"""


def test_steps_run_on_the_worker_and_the_report_has_the_local_shape(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: shaped
        steps:
          - id: hello
            shell: echo hello
    """)
    done = runproc(tmp_path, str(path), "--output", "json", *_engine_args(temporal_server, queue))
    assert done.rc == 0, done.stderr
    report = done.json
    assert set(report) >= {"procedure", "run_id", "status", "exit_code", "dry_run", "started_at", "duration",
                           "error", "root_cause", "rolled_back", "not_undone", "kept", "steps"}
    step = done.step("hello")
    assert step["stdout"] == "hello\n" and step["rc"] == 0 and step["worker"] == "w-main"
    engine = temporal_server.engine_url

    def listed(*filters: str) -> list[str]:
        done = runproc(tmp_path, "runs", "--engine", engine, "--output", "json", *filters)
        assert done.rc == 0, done.stderr
        return [r["id"] for r in json.loads(done.stdout)]

    assert report["run_id"] in listed()
    assert report["run_id"] in listed("--procedure", "shaped", "--status", "ok", "--since", "1h")
    assert report["run_id"] not in listed("--procedure", "shaped", "--status", "failed")
    assert report["run_id"] not in listed("--procedure", "other") + listed("--user", "nobody-at-all")
    # a run id's first characters, as for a local run
    shown = runproc(tmp_path, "show", report["run_id"][:6], "--engine", engine, "--output", "json")
    assert json.loads(shown.stdout)["status"] == "ok" and json.loads(shown.stdout)["run_id"] == report["run_id"]
    # an empty --engine (a script's unset variable) does not quietly run here
    empty = runproc(tmp_path, str(path), "--engine", "")
    assert empty.rc == 2 and "--engine ''" in empty.stderr, empty.stderr


def test_secrets_are_read_on_the_worker_and_never_enter_the_history(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: secretive
        secrets:
          token: {env: DEMO_TOKEN}
          filed: {file: filed-secret}
        steps:
          - id: use
            shell: echo "token={{ secrets.token }}"; echo "{{ secrets.token }}" > seen
          - id: derived
            needs: [use]
            shell: echo "{{ secrets.token | upper }}"
          - id: from_file
            shell: echo "filed={{ secrets.filed }}"; echo "{{ secrets.filed }}" > seen-file
    """)
    filed = "filed-canary-51ab09"
    (tmp_path / "filed-secret").write_text(filed + "\n")  # read by the worker, in the procedure's folder
    # the controller has no DEMO_TOKEN at all: only the worker has it
    done = runproc(tmp_path, str(path), "--output", "json", *_engine_args(temporal_server, queue))
    assert done.rc == 0, done.stderr
    assert (tmp_path / "seen").read_text().strip() == CANARY  # the worker did use it
    assert (tmp_path / "seen-file").read_text().strip() == filed
    history = temporal_server.workflow_show_json(done.json["run_id"])
    for text in (done.stdout, done.stderr, history):
        assert CANARY not in text and CANARY.upper() not in text and filed not in text
    assert done.step("use")["stdout"] == "token=***\n"
    assert done.step("from_file")["stdout"] == "filed=***\n"


def test_each_step_runs_on_the_worker_of_its_queue(temporal_server: TemporalServer, worker: object, queue: str,
                                                   tmp_path: Path) -> None:
    zone = f"{queue}-zone-b"
    other = start_worker(temporal_server.address, zone, name="w-zone-b", cwd=tmp_path, extra_args=["--no-workflows"])
    try:
        temporal_server.wait_for_pollers(zone, identity_contains="w-zone-b", proc=other)
        path = write(tmp_path, f"""
            procedure: routed
            connections:
              inside: {{http: {{base_url: "http://127.0.0.1:9", queue: {zone}}}}}
            steps:
              - id: here
                shell: echo here
              - id: there
                queue: {zone}
                shell: echo there
              - id: by_connection
                http: {{connection: inside, method: GET, path: /}}
                continue_on_error: true
        """)
        done = runproc(tmp_path, str(path), "--output", "json", *_engine_args(temporal_server, queue))
        assert done.stdout.strip(), done.stderr
        workers = {s["id"]: s.get("worker") for s in done.json["steps"]}
        assert workers == {"here": "w-main", "there": "w-zone-b", "by_connection": "w-zone-b"}, done.stderr
        # an inventory group names the queue of its hosts (runproc_queue); a step's queue: wins
        (tmp_path / "hosts.ini").write_text(f"""
            [web]
            web1
            web2
            [dbs]
            db1
            [dbs:vars]
            runproc_queue={zone}
            [all:vars]
            ansible_connection=local
        """.replace("            ", ""))
        fanned = write(tmp_path, f"""
            procedure: zones
            inventory: hosts.ini
            steps:
              - id: everywhere
                on: all
                shell: echo "{{{{ host.name }}}}"
              - id: pinned
                on: all
                queue: {queue}
                shell: "true"
        """, name="zones.yml")
        done = runproc(tmp_path, str(fanned), "--output", "json", *_engine_args(temporal_server, queue))
        assert done.rc == 0, done.stderr
        hosts = {s["id"]: {h: (r.get("worker"), r.get("stdout")) for h, r in s["hosts"].items()}
                 for s in done.json["steps"]}
        assert hosts["everywhere"] == {"web1": ("w-main", "web1\n"), "web2": ("w-main", "web2\n"),
                                       "db1": ("w-zone-b", "db1\n")}
        assert {h: w for h, (w, _) in hosts["pinned"].items()} == {"web1": "w-main", "web2": "w-main",
                                                                   "db1": "w-main"}
    finally:
        stop_worker(other)


def test_a_confirm_step_waits_for_runproc_approve(temporal_server: TemporalServer, worker: object, queue: str,
                                                  tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: gated
        steps:
          - id: before
            shell: echo before >> effects
            rollback: {shell: echo undo-before >> effects}
          - id: gate
            needs: [before]
            confirm: {message: "switch traffic?"}
          - id: after
            needs: [gate]
            shell: echo after >> effects
    """)
    started = runproc(tmp_path, str(path), "--detach", *_engine_args(temporal_server, queue))
    assert started.rc == 0, started.stderr
    run_id = started.stdout.strip()
    engine = temporal_server.engine_url
    deadline = time.monotonic() + 30
    while True:  # the run waits, durably: nothing runs until someone answers
        shown = json.loads(runproc(tmp_path, "show", run_id, "--engine", engine, "--output", "json").stdout)
        if "gate" in (shown.get("waiting") or {}):
            break
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    wrong = runproc(tmp_path, "approve", run_id, "after", "--engine", engine, state=False)
    assert wrong.rc == 3 and "not waiting" in wrong.stderr
    said = runproc(tmp_path, "approve", run_id, "gate", "--engine", engine, "--comment", "checked the graphs",
                   state=False)
    assert said.rc == 0 and "approved gate" in said.stdout, said.stderr
    report = _wait_done(tmp_path, engine, run_id)
    assert report["status"] == "ok"
    assert report["approvals"][0]["by"] and report["approvals"][0]["comment"] == "checked the graphs"
    assert (tmp_path / "effects").read_text().split() == ["before", "after"]
    late = runproc(tmp_path, "approve", run_id, "gate", "--engine", engine, state=False)
    assert late.rc == 3 and "has ended" in late.stderr, late.stderr


def test_a_rejected_confirm_refuses_the_run_and_rolls_back(temporal_server: TemporalServer, worker: object,
                                                           queue: str, tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: gated
        steps:
          - id: before
            shell: echo before >> effects
            rollback: {shell: echo undo-before >> effects}
          - id: gate
            needs: [before]
            confirm: {message: "switch traffic?"}
    """)
    run_id = runproc(tmp_path, str(path), "--detach", *_engine_args(temporal_server, queue)).stdout.strip()
    engine = temporal_server.engine_url
    deadline = time.monotonic() + 30
    while runproc(tmp_path, "approve", run_id, "gate", "--reject", "--engine", engine, state=False).rc != 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    report = _wait_done(tmp_path, engine, run_id)
    assert report["status"] == "refused" and report["exit_code"] == 3
    assert (tmp_path / "effects").read_text().split() == ["before", "undo-before"]


def _wait_done(tmp: Path, engine: str, run_id: str, timeout: float = 60) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        shown = json.loads(runproc(tmp, "show", run_id, "--engine", engine, "--output", "json").stdout)
        if shown["status"] != "running":
            return dict(shown)
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)


def test_the_run_goes_on_when_the_cli_is_killed(temporal_server: TemporalServer, worker: object, queue: str,
                                                tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: lasting
        steps:
          - id: one
            shell: echo one >> effects; touch started; sleep 2
          - id: two
            needs: [one]
            shell: echo two >> effects
    """)
    cli = subprocess.Popen([*RUNPROC, str(path), *_engine_args(temporal_server, queue)], cwd=tmp_path,
                           env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not (tmp_path / "started").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cli.send_signal(signal.SIGKILL)
    cli.wait(timeout=10)
    runs = json.loads(runproc(tmp_path, "runs", "--engine", temporal_server.engine_url, "--output", "json").stdout)
    run_id = next(r["id"] for r in runs if r["procedure"] == "lasting")
    assert _wait_done(tmp_path, temporal_server.engine_url, run_id)["status"] == "ok"
    assert (tmp_path / "effects").read_text().split() == ["one", "two"]


# ---------------------------------------------------------------- resume and rollback of an engine run

RESUMABLE = """
    procedure: resumable
    inventory: hosts.ini
    steps:
      - id: one
        shell: "echo one >> effects; echo '{\\"v\\": 7}'"
        rollback: {shell: echo undo-one >> effects}
      - id: spread
        on: web
        shell: "test -e fixed-{{ host.name }} -o {{ host.name }} != web2 && echo spread-{{ host.name }} >> effects"
        rollback: {shell: "echo undo-spread-{{ host.name }} >> effects"}
      - id: two
        shell: "test -e fixed && echo two-{{ steps.one.json.v }} >> effects"
      - id: three
        shell: echo three >> effects
"""


def _failed_run(server: TemporalServer, queue: str, tmp: Path) -> str:
    """RESUMABLE run with --no-rollback: one ok, spread ok on web1 and web3, failed on web2."""
    path = write(tmp, RESUMABLE)
    (tmp / "hosts.ini").write_text(HOSTS)
    done = runproc(tmp, str(path), "--no-rollback", "--output", "json", *_engine_args(server, queue))
    assert done.rc == 1 and done.json["root_cause"] == "spread", done.stderr
    return str(done.json["run_id"])


def test_resume_of_an_engine_run_runs_only_what_did_not_finish(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    engine = temporal_server.engine_url
    run_id = _failed_run(temporal_server, queue, tmp_path)
    (tmp_path / "fixed-web2").touch()
    (tmp_path / "effects").write_text("")
    first = runproc(tmp_path, "resume", run_id, "--engine", engine, "--output", "json")
    assert first.rc == 1 and first.json["root_cause"] == "two", first.stderr  # web2 done now, two not yet
    assert "one" in first.stderr and "spread on web1, web3" in first.stderr  # said: done before
    again = runproc(tmp_path, "resume", run_id, "--engine", engine)
    assert again.rc == 3 and f"resumed by run {run_id}.resume" in again.stderr, again.stderr
    (tmp_path / "fixed").touch()
    second = runproc(tmp_path, "resume", f"{run_id}.resume", "--engine", engine, "--output", "json")
    assert second.rc == 0, second.stderr
    # each effect once: one and the two finished hosts were not run again; steps.one's result was kept
    assert (tmp_path / "effects").read_text().split() == ["spread-web2", "two-7", "three"]
    statuses = {s["id"]: s["status"] for s in second.json["steps"]}
    assert statuses == {"one": "ok", "spread": "ok", "two": "ok", "three": "ok"}
    done = runproc(tmp_path, "resume", f"{run_id}.resume.resume", "--engine", engine)
    assert done.rc == 3 and "nothing to resume" in done.stderr


def test_rollback_of_an_engine_run_undoes_each_change_once(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    engine = temporal_server.engine_url
    run_id = _failed_run(temporal_server, queue, tmp_path)
    (tmp_path / "effects").write_text("")
    done = runproc(tmp_path, "rollback", run_id, "--engine", engine)
    assert done.rc == 3 and "--yes" in done.stderr  # no terminal to ask: refused, nothing undone
    assert (tmp_path / "effects").read_text() == ""
    done = runproc(tmp_path, "rollback", run_id, "--engine", engine, "--yes")
    assert done.rc == 0, done.stderr
    assert "will undo spread, one in this order" in done.stderr
    undone = (tmp_path / "effects").read_text().split()
    assert sorted(undone[:2]) == ["undo-spread-web1", "undo-spread-web3"] and undone[2:] == ["undo-one"]
    again = runproc(tmp_path, "rollback", run_id, "--engine", engine, "--yes")
    assert again.rc == 0 and "nothing to undo" in again.stderr, again.stderr
    assert len((tmp_path / "effects").read_text().split()) == 3
    resumed = runproc(tmp_path, "resume", run_id, "--engine", engine)
    assert resumed.rc == 3 and "rolled back by run" in resumed.stderr, resumed.stderr


def test_a_failed_undo_is_tried_again_by_the_next_rollback(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    engine = temporal_server.engine_url
    path = write(tmp_path, """
        procedure: stubborn
        steps:
          - id: a
            shell: echo a >> effects
            rollback: {shell: "test -e can-undo && echo undo-a >> effects"}
          - id: b
            shell: echo b >> effects
            rollback: {shell: echo undo-b >> effects}
          - id: c
            shell: exit 1
    """)
    run = runproc(tmp_path, str(path), "--no-rollback", "--output", "json", *_engine_args(temporal_server, queue))
    run_id = run.json["run_id"]
    first = runproc(tmp_path, "rollback", run_id, "--engine", engine, "--yes", "--output", "json")
    assert first.rc == 4 and first.json["not_undone"] == ["a"], first.stderr
    (tmp_path / "can-undo").touch()
    second = runproc(tmp_path, "rollback", run_id, "--engine", engine, "--yes", "--output", "json")
    assert second.rc == 0 and second.json["run_id"] == f"{run_id}.rollback-2", second.stderr
    assert second.json["undo"] == ["a"]  # b was undone by the first rollback: not again
    assert (tmp_path / "effects").read_text().split() == ["a", "b", "undo-b", "undo-a"]


# ---------------------------------------------------------------- window.wait: a durable timer

WAITING = """
    procedure: patient
    window: {times: "Sun 02:00-04:00 UTC", wait: true}
    steps:
      - id: work
        shell: touch worked
"""


def test_window_wait_waits_for_the_window_with_a_durable_timer(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    path = write(tmp_path, WAITING)
    engine = temporal_server.engine_url
    # the controller believes it is 10 s before the window opens (a Sunday, 02:00 UTC): room for
    # the `show` below to find it waiting on a loaded machine, where a CLI call can take seconds
    started = runproc(tmp_path, str(path), "--detach", *_engine_args(temporal_server, queue),
                      env={"RUNPROC_TEST_NOW": "2026-12-06T01:59:50Z"})
    assert started.rc == 0, started.stderr
    run_id = started.stdout.strip()
    shown = runproc(tmp_path, "show", run_id, "--engine", engine, "--output", "text")
    assert "waiting:   for the maintenance window, until 2026-12-06 02:00:00 UTC" in shown.stdout, shown.stdout
    assert not (tmp_path / "worked").exists()
    assert _wait_done(tmp_path, engine, run_id)["status"] == "ok"
    assert (tmp_path / "worked").exists()
    # the wait was a timer in the workflow's history, not a sleeping process
    events = json.loads(temporal_server.workflow_show_json(run_id))["events"]
    assert "EVENT_TYPE_TIMER_FIRED" in [e["eventType"] for e in events]


def test_ctrl_c_while_a_run_waits_for_its_window_runs_nothing(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    path = write(tmp_path, WAITING)
    cli = subprocess.Popen([*RUNPROC, str(path), "--output", "json", *_engine_args(temporal_server, queue)],
                           cwd=tmp_path, env=child_env({"RUNPROC_TEST_NOW": "2026-12-05T12:00:00Z"}),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while True:  # the run exists and waits (about 14 hours) before the interrupt
        runs = json.loads(runproc(tmp_path, "runs", "--engine", temporal_server.engine_url, "--output",
                                  "json").stdout)
        mine = [r for r in runs if r["procedure"] == "patient" and r["status"] == "running"]
        if mine:
            shown = json.loads(runproc(tmp_path, "show", mine[0]["id"], "--engine", temporal_server.engine_url,
                                       "--output", "json").stdout)
            if shown.get("waiting_for_window"):
                break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    cli.send_signal(signal.SIGINT)
    out, err = cli.communicate(timeout=60)
    assert cli.returncode == 130, err
    report = json.loads(out)
    assert report["status"] == "interrupted" and "waiting for the window" in report["error"]
    assert not (tmp_path / "worked").exists()


def test_ctrl_c_stops_the_running_step_on_its_worker_and_a_second_one_leaves_the_run_going(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: stoppable
        steps:
          - id: one
            shell: echo one >> effects
            rollback: {shell: "sleep 3; echo undo-one >> effects"}
          - id: long
            shell: "echo $$ > long.pid; sleep 60; echo long-done >> effects"
    """)
    cli = subprocess.Popen([*RUNPROC, str(path), "--output", "json", *_engine_args(temporal_server, queue)],
                           cwd=tmp_path, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "long.pid").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    pid = int((tmp_path / "long.pid").read_text())
    cli.send_signal(signal.SIGINT)  # the step is killed on its worker, then one is rolled back (3 s)
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]:
        assert time.monotonic() < deadline, "the running step was not stopped"
        time.sleep(0.05)
    cli.send_signal(signal.SIGINT)  # stop following: the rollback goes on there
    out, err = cli.communicate(timeout=30)
    assert cli.returncode == 130, err
    assert "interrupted: stopping the running steps" in err and "stopped following run" in err, err
    run_id = err.split("stopped following run ")[1].split(";")[0]
    report = _wait_done(tmp_path, temporal_server.engine_url, run_id)
    assert report["status"] == "interrupted" and report["rolled_back"] == ["one"]
    assert (tmp_path / "effects").read_text().split() == ["one", "undo-one"]  # long never finished


# ---------------------------------------------------------------- bad input


def test_bad_engine_input_is_one_line(temporal_server: TemporalServer, tmp_path: Path, queue: str) -> None:
    path = write(tmp_path, """
        procedure: tiny
        steps:
          - id: a
            shell: "true"
    """)
    for engine, words in (("temporal:/nope", "expected temporal://HOST:PORT"),
                          ("temporal://127.0.0.1:1", "cannot connect"),
                          (f"temporal://{temporal_server.address}/no-such-namespace", "no-such-namespace")):
        done = runproc(tmp_path, str(path), "--engine", engine, timeout=60)
        assert done.rc == 2 and words in done.stderr, (engine, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    fanned = write(tmp_path, """
        procedure: fanned
        steps:
          - id: a
            on: web
            shell: "true"
    """, name="fanned.yml")
    done = runproc(tmp_path, str(fanned), "--engine", temporal_server.engine_url)
    assert done.rc == 2 and "fanned.yml:4:9:" in done.stderr and "no inventory" in done.stderr, done.stderr
    # a password in the inventory would travel in the workflow's history: refused before anything runs
    (tmp_path / "pw.ini").write_text("[web]\nweb1 ansible_connection=local ansible_password=hunter2-canary\n")
    done = runproc(tmp_path, str(fanned), "-i", "pw.ini", "--engine", temporal_server.engine_url)
    assert done.rc == 2 and "fanned.yml:4:9:" in done.stderr and "ansible_password" in done.stderr, done.stderr
    assert "hunter2-canary" not in done.stderr
    done = runproc(tmp_path, str(fanned), "-i", "pw.ini", "--limit", "nosuch", "--engine",
                   temporal_server.engine_url)
    assert done.rc == 2 and "--limit 'nosuch' matches no host" in done.stderr, done.stderr
    locked = write(tmp_path, """
        procedure: locked
        lock: db
        window: "Sat 02:00-02:01"
        steps:
          - id: a
            shell: "true"
    """, name="locked.yml")
    done = runproc(tmp_path, str(locked), "--engine", temporal_server.engine_url)
    assert done.rc == 2 and "locked.yml:2:7:" in done.stderr and "lock" in done.stderr, done.stderr
    guarded = write(tmp_path, """
        procedure: guarded
        steps:
          - id: gate
            confirm: {message: "go?", four_eyes: true}
    """, name="guarded.yml")
    done = runproc(tmp_path, str(guarded), "--engine", temporal_server.engine_url)
    assert done.rc == 2 and "guarded.yml:3:" in done.stderr and "four_eyes" in done.stderr, done.stderr
    unlocked = write(tmp_path, (tmp_path / "locked.yml").read_text().replace("lock: db\n", ""), name="w.yml")
    done = runproc(tmp_path, str(unlocked), "--engine", temporal_server.engine_url)
    assert done.rc == 3 and "maintenance window" in done.stderr, done.stderr


def test_no_worker_on_a_queue_is_said_with_the_queue_and_the_wait(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: orphan
        steps:
          - id: lonely
            queue: nobody-serves-this
            shell: "true"
    """)
    done = runproc(tmp_path, str(path), "--output", "json", "--schedule-to-start", "2",
                   *_engine_args(temporal_server, queue))
    assert done.rc == 1
    error = done.step("lonely")["error"]
    assert "nobody-serves-this" in error and "2s" in error, error


def test_a_step_whose_executor_the_worker_lacks_fails_in_one_line(
        temporal_server: TemporalServer, worker: object, queue: str, tmp_path: Path) -> None:
    # the controller has the redis plugin (it validates the file), the worker does not
    site = install_redis_plugin(tmp_path)
    path = write(tmp_path, """
        procedure: cache
        steps:
          - id: ping
            redis: PING
            url: redis://127.0.0.1:9
            readonly: true
    """)
    done = runproc(tmp_path, str(path), "--output", "json", *_engine_args(temporal_server, queue),
                   env={"PYTHONPATH": str(site)})
    assert done.rc == 1, done.stderr
    error = done.step("ping")["error"]
    assert error.count("\n") == 0 and "worker w-main has no executor 'redis'" in error and repr(queue) in error, error


@pytest.mark.parametrize("name", ["dag-when-retry", "failure-rolls-back", "fanout-serial-stops-and-rolls-back"])
def test_a_dry_run_plans_the_same_on_temporal(temporal_server: TemporalServer, worker: object, queue: str,
                                              tmp_path: Path, name: str) -> None:
    plans = {}
    for engine in ("local", "temporal"):
        folder = tmp_path / engine
        folder.mkdir()
        path = write(folder, SEMANTICS[name])
        (folder / "hosts.ini").write_text(HOSTS)
        extra = _engine_args(temporal_server, queue) if engine == "temporal" else []
        done = runproc(folder, str(path), "--dry-run", "--output", "json", *extra, timeout=120)
        assert done.stdout.strip(), done.stderr
        plans[engine] = {"rc": done.rc, "status": done.json["status"],
                         "steps": {s["id"]: (s["status"], s.get("action")) for s in done.json["steps"]}}
        assert not (folder / "effects").exists()  # a dry run changes nothing, on either engine
    assert plans["temporal"] == plans["local"]
