"""A running step's output in runproc serve (issue 15, must-haves 2 and 8): the run journals
what a step prints while it runs (``output`` entries, within about a second, redacted, capped
at RUNPROC_OUTPUT_CAP a stream), so the run page, its event stream and
``/api/v1/runs/{id}/steps/{step}/logs`` show it before the step ends; once it ended, the logs
endpoint gives its result's streams and its whole log file."""

from __future__ import annotations

import base64
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from engine.state.opening import open_store
from engine.web.app import Settings
from tests.helpers.cli import RUNPROC, child_env, write
from tests.helpers.web import CANARY, EventReader, app_client, journal_event

# prints a line with a secret in it, then waits for the test: its output must show before it ends
TALKER = """
procedure: talker
secrets:
  t: {env: CANARY}
steps:
  - id: talk
    shell: "echo hello {{ secrets.t }}; echo to stderr >&2; while [ ! -e release ]; do sleep 0.05; done; echo bye"
  - id: after
    shell: echo after
"""

# prints 3 MB at once, then waits long enough for the live output to be journaled
FLOOD = """
procedure: flood
steps:
  - id: flood
    shell: "head -c 3000000 /dev/zero | tr '\\\\0' x | fold -w 99; while [ ! -e release ]; do sleep 0.05; done"
"""

BOUND = 60.0  # a bound on a hang, never a measure of speed
NEEDLES = (CANARY, CANARY.upper(), base64.b64encode(CANARY.encode()).decode())


@contextmanager
def _running(tmp: Path, text: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """(state, run id) of a run of ``text`` once its first step started; released and ended after."""
    state = f"sqlite:///{tmp}/state.db"
    path = write(tmp, text, "proc.yml")
    proc = subprocess.Popen([*RUNPROC, str(path), "--state", state], cwd=tmp, env=child_env(env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        store = open_store(state)
        try:
            deadline = time.monotonic() + BOUND
            while not store.runs(1):
                assert time.monotonic() < deadline and proc.poll() is None, "the run never started"
                time.sleep(0.05)
            yield state, store.runs(1)[0]["id"]
        finally:
            store.close()
        (tmp / "release").touch()
        _, err = proc.communicate(timeout=BOUND)
        assert proc.returncode == 0, err
    finally:
        (tmp / "release").touch()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_running_steps_output_shows_before_it_ends_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    env = {"CANARY": CANARY, "XDG_STATE_HOME": str(tmp_path / "xdg")}
    with _running(tmp_path, TALKER, env) as (state, run_id), app_client(Settings(state=state)) as c, \
            c.stream("GET", f"/api/v1/runs/{run_id}/events") as r:
        live = EventReader(r.iter_lines())
        said = live.until(lambda e: journal_event("output", "talk")(e) and "hello" in str(e.data["data"]),
                          "talk's output while it runs")
        # the step cannot have ended: it waits for the file `release`, which nobody made yet
        assert not (tmp_path / "release").exists()
        assert said.data["data"] == {"stream": "stdout", "text": "hello ***\n"}
        logs = c.get(f"/api/v1/runs/{run_id}/steps/talk/logs").json()
        assert logs["running"] and logs["status"] == "running" and logs["files"] == []
        assert {(o["stream"], o["text"]) for o in logs["output"]} >= {("stdout", "hello ***\n")}
        after = max(o["seq"] for o in logs["output"])
        assert c.get(f"/api/v1/runs/{run_id}/steps/talk/logs?after={after}").json()["output"] == []
        page = c.get(f"/runs/{run_id}").text
        talk = page.split('id="step-talk"', 1)[1].split("</section>", 1)[0]
        assert "hello ***" in talk and "running-output" in talk
        steps = c.get(f"/api/v1/runs/{run_id}/steps").json()["steps"]
        assert [o["text"] for o in steps[0]["output"] if o["stream"] == "stdout"] == ["hello ***\n"]
        seen = [page, str(logs), str(steps)]
        (tmp_path / "release").touch()
        done = live.until(journal_event("step_finished", "talk"), "talk ending")
        assert done.data["data"]["entry"]["stdout"] == "hello ***\nbye\n"
        seen += [str(e.data) for e in live.rest()]
        ended = c.get(f"/api/v1/runs/{run_id}/steps/talk/logs").json()
        assert not ended["running"] and {"host": None, "stream": "stdout", "text": "hello ***\nbye\n"} in (
            ended["result"])
        assert c.get(f"/api/v1/runs/{run_id}/steps/talk/logs/stdout").text == "hello ***\nbye\n"
        assert c.get(f"/api/v1/runs/{run_id}/steps/nope/logs").status_code == 404
        # the finished step's page shows its result, not the pieces it printed on the way
        assert "running-output" not in c.get(f"/runs/{run_id}").text
        seen.append(c.get(f"/runs/{run_id}").text)
    leaks = [n for text in seen for n in NEEDLES if n in text]
    assert leaks == []


def test_a_flood_of_output_adds_at_most_the_cap_to_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg))
    env = {"RUNPROC_OUTPUT_CAP": "16KiB", "XDG_STATE_HOME": str(xdg)}
    with _running(tmp_path, FLOOD, env) as (state, run_id):
        store = open_store(state)
        try:
            deadline = time.monotonic() + BOUND
            while not any("live output stops here" in str(e["data"]) for e in store.journal(run_id)):
                assert time.monotonic() < deadline, "the live output never reached its cap"
                time.sleep(0.1)
        finally:
            store.close()
    store = open_store(state)
    try:
        said = [e["data"]["text"] for e in store.journal(run_id) if e["event"] == "output"]
    finally:
        store.close()
    # 3 MB printed: the journal kept its first 16 KiB and a marker, in a few entries
    assert sum(len(t.encode()) for t in said) < 16 * 1024 + 300 and len(said) < 20
    assert said[0].startswith("x" * 99 + "\n")
    with app_client(Settings(state=state)) as c:
        logs = c.get(f"/api/v1/runs/{run_id}/steps/flood/logs").json()
        assert [(f["stream"], f["bytes"] > 3_000_000) for f in logs["files"]] == [("stdout", True)]
        whole = c.get(logs["files"][0]["url"])
        assert whole.status_code == 200 and len(whole.content) > 3_000_000  # the log file, whole
