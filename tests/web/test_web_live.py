"""runproc serve, live: a run's journal and the runs list as server-sent events. A run started
from the command line against the same state shows up and moves while it runs (SQLite through
the test client, PostgreSQL through a real ``runproc serve``); viewers of one run share one
poller; a finished run's stream replays its journal and closes; a reconnecting browser resumes
after the last entry it saw."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from engine.web.app import Settings
from engine.web.live import Hub
from tests.helpers.cli import RUNPROC, child_env, write
from tests.helpers.web import GATED, EventReader, History, TestClient, app_client, journal_event, serving


def _start(tmp_path: Path, state: str) -> tuple[subprocess.Popen[str], Path]:
    go = tmp_path / "go"
    path = write(tmp_path, GATED.format(go=go), "gated.yml")
    proc = subprocess.Popen([*RUNPROC, str(path), "--output", "json", "--state", state], cwd=tmp_path,
                            env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, go


def _finish(proc: subprocess.Popen[str]) -> None:
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err


def test_a_finished_runs_stream_replays_its_journal_and_closes(client: TestClient, history: History) -> None:
    run_id = history.ids["demo"][0]
    with client.stream("GET", f"/api/v1/runs/{run_id}/events") as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = EventReader(r.iter_lines()).rest()
    entries = [e for e in events if e.name == "journal"]
    seqs = [e.data["seq"] for e in entries]
    assert seqs == list(range(1, len(seqs) + 1)) and [e.id for e in entries] == [str(s) for s in seqs]
    assert [e.data["event"] for e in entries][:2] == ["step_started", "step_finished"]
    assert any(e.data["event"] == "approval" and e.data["step"] == "approve" for e in entries)
    status = [e.data for e in events if e.name == "run"]  # first, before the entries of its batch
    assert events[0].name == "run" and status == [{"status": "failed", "exit_code": 1, "ended_at": status[0]["ended_at"]}]
    assert events[-1].name == "end" and events[-1].data == {"status": "failed", "seq": seqs[-1]}
    # a page loaded at entry N follows from N; a browser that reconnects says what it saw last
    with client.stream("GET", f"/api/v1/runs/{run_id}/events", params={"after": str(seqs[-2])}) as r:
        assert [e.data.get("seq") for e in EventReader(r.iter_lines()).rest() if e.name == "journal"] == [seqs[-1]]
    with client.stream("GET", f"/api/v1/runs/{run_id}/events", headers={"last-event-id": str(seqs[-3])}) as r:
        later = [e.data.get("seq") for e in EventReader(r.iter_lines()).rest() if e.name == "journal"]
        assert later == seqs[-2:]


def test_a_stream_refuses_what_it_cannot_follow(client: TestClient) -> None:
    for url, status, words in (("/api/v1/runs/0123456789ab/events", 404, "no run"),
                               ("/api/v1/runs/0123456789ab/events?after=-1", 400, "after"),
                               ("/api/v1/runs/events?procedure=x", 400, "procedure")):
        r = client.get(url)
        assert r.status_code == status and words in r.json()["error"]["message"], (url, r.text)


def test_a_cli_run_appears_and_moves_live(tmp_path: Path) -> None:
    state = f"sqlite:///{tmp_path}/state.db"
    proc, go = _start(tmp_path, state)
    try:
        with app_client(Settings(state=state)) as c, c.stream("GET", "/api/v1/runs/events") as listing:
            runs = EventReader(listing.iter_lines())
            started = runs.until(lambda e: e.data.get("procedure") == "gated", "the new run in the runs list")
            run_id = str(started.data["id"])
            assert started.data["page"] == f"/runs/{run_id}"
            with c.stream("GET", f"/api/v1/runs/{run_id}/events") as r:
                live = EventReader(r.iter_lines())
                assert live.until(lambda e: True, "the run's status").data == {
                    "status": "running", "exit_code": None, "ended_at": None}
                live.until(journal_event("step_started", "hold"), "hold starting")
                page = c.get(f"/runs/{run_id}").text
                assert 'id="live-run"' in page and '<script src="/static/live.js' in page
                hold = page.split('id="step-hold"', 1)[1].split("</h3>", 1)[0]
                assert "st-running" in hold  # the step in flight of a live run: running, not interrupted
                go.touch()
                finished = live.until(journal_event("step_finished", "last"), "last finishing")
                assert finished.data["data"]["entry"]["stdout"] == "last words\n"  # its output comes along
                assert live.until(lambda e: e.name == "end", "the end").data["status"] == "ok"
            runs.until(lambda e: e.data.get("id") == run_id and e.data.get("status") == "ok", "the run ending")
        _finish(proc)
    finally:
        go.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


class _Journal:
    """A store that hands out one journal entry per poll once released, then ends the run."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self.released = False
        self.polls_after_release = 0
        self.given = 0

    def journal_after(self, run_id: str, after: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if not self.released:
            return {"status": "running", "exit_code": None, "ended_at": None}, []
        self.polls_after_release += 1
        self.given += 1
        entry = {"seq": self.given, "at": "", "event": "step_started", "step": f"s{self.given}", "host": None,
                 "data": None}
        status = "running" if self.given < self.entries else "ok"
        return {"status": status, "exit_code": 0 if status == "ok" else None, "ended_at": None}, [entry]

    def settle(self) -> list[str]:
        return []


def test_fifty_viewers_of_one_run_cost_one_query_a_tick() -> None:
    store = _Journal(entries=5)
    hub = Hub(store, interval=0.01)

    async def watch() -> list[Any]:
        return [(name, data.get("seq")) async for name, data in hub.follow("r1", 0)]

    async def main() -> list[list[Any]]:
        viewers = [asyncio.ensure_future(watch()) for _ in range(50)]
        while hub.watching().get("r1", 0) < 50:
            await asyncio.sleep(0.01)  # every viewer is in before the run moves
        store.released = True
        return list(await asyncio.gather(*viewers))

    seen = asyncio.run(main())
    want = [("run", None), *[("journal", n) for n in range(1, 6)]]
    for got in seen:
        assert [g for g in got if g[0] == "journal"] == want[1:] and got[-1] == ("end", 5)
    assert store.polls_after_release == 5  # one query a tick for all fifty, not fifty
    assert hub.watching() == {}  # the poller is gone with its last viewer


def test_a_cli_run_on_postgresql_streams_through_a_real_server(pg_db: str, tmp_path: Path,
                                                              history: History) -> None:
    proc, go = _start(tmp_path, pg_db)
    try:
        with serving(history, "--state", pg_db) as base, httpx.Client(base_url=base, timeout=60) as http:
            # the run is recorded when it starts, before its first step: poll the list until it is
            deadline = time.monotonic() + 60  # a bound on a hang, not a measure
            runs: list[dict[str, Any]] = []
            while not runs and time.monotonic() < deadline and proc.poll() is None:
                runs = http.get("/api/v1/runs", params={"procedure": "gated"}).json()["runs"]
            assert runs, "the run never showed up in the list"
            run_id = runs[0]["id"]
            with http.stream("GET", f"/api/v1/runs/{run_id}/events") as r:
                assert r.status_code == 200
                live = EventReader(r.iter_lines())
                live.until(journal_event("step_started", "hold"), "hold starting")
                go.touch()
                live.until(journal_event("step_finished", "hold"), "hold finishing")
                assert live.until(lambda e: e.name == "end", "the end").data["status"] == "ok"
                steps = [e.data["step"] for e in live.seen if e.name == "journal"]
                assert steps == ["first", "first", "hold", "hold", "last", "last"]
        _finish(proc)
    finally:
        go.touch()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
