"""Schedules (docs/web.md "Schedules"): the scheduler evaluated at times the test gives it (no
waiting for minutes to pass), against a real state (SQLite, and PostgreSQL for the slot that
two schedulers race for), with launchers that start real processes: ``sleep`` for a run that
is still going, ``true`` (waited for) for one that has ended. Then the page and
``/api/v1/schedules``."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, expect

from engine.schedule.scheduler import MAX_CATCH_UP, Scheduler
from engine.state.opening import open_store
from engine.web.app import Settings
from tests.helpers.cli import write
from tests.helpers.web import LOOPBACK, History, app_client, serving
from tests.web.test_web_browser import WAIT_MS, browser  # noqa: F401 - the module's browser fixture

NIGHTLY = """
procedure: nightly
params:
  mode: {type: str, choices: [full, quick], default: quick}
  token: {type: str, secret: true, default: "s3cr3t-default"}
schedule:
  cron: "0 3 * * *"
  timezone: Europe/Paris
  params: {mode: full}
  overlap: {overlap}
  catch_up: {catch_up}
steps:
  - id: a
    shell: echo {{ params.mode }}
"""

T0 = datetime(2026, 1, 10, 1, 0, tzinfo=UTC)  # before 03:00 in Paris (02:00 UTC in winter)
SLOT = datetime(2026, 1, 10, 2, 0, tzinfo=UTC)


class Launcher:
    """Starts a real process per fire: ``sleep 60`` (a run still going) or ``true``, waited
    for (a run that has ended); records what it was asked to start."""

    def __init__(self, going: bool) -> None:
        self.going = going
        self.calls: list[tuple[str, dict[str, Any], str]] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def __call__(self, file: str, params: dict[str, Any], user: str) -> tuple[str | None, int]:
        self.calls.append((file, params, user))
        proc = subprocess.Popen(["sleep", "60"] if self.going else ["true"])
        self.procs.append(proc)
        if not self.going:
            proc.wait()
        return None, proc.pid

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "procedures").mkdir()
    return tmp_path / "procedures"


def _scheduler(tmp_path: Path, folder: Path, going: bool = False, overlap: str = "skip", catch_up: str = "skip",
               state: str | None = None) -> tuple[Scheduler, Launcher]:
    write(folder, NIGHTLY.replace("{overlap}", overlap).replace("{catch_up}", catch_up), "nightly.yml")
    store = open_store(state or f"sqlite:///{tmp_path}/state.db")
    launcher = Launcher(going)
    return Scheduler(store, launch=launcher, files=lambda: sorted(folder.glob("*.yml")), log=lambda line: None), launcher


@pytest.fixture
def made(tmp_path: Path, folder: Path) -> Iterator[Any]:
    made: list[tuple[Scheduler, Launcher]] = []

    def make(**kw: Any) -> tuple[Scheduler, Launcher]:
        made.append(_scheduler(tmp_path, folder, **kw))
        return made[-1]
    yield make
    for scheduler, launcher in made:
        launcher.close()
        scheduler.store.close()


def _actions(decisions: list[Any]) -> list[tuple[str, str]]:
    return [(d.action, d.slot) for d in decisions]


def test_a_slot_fires_once_as_its_schedule_and_not_again(made: Any) -> None:
    scheduler, launcher = made()
    assert _actions(scheduler.tick(T0)) == [("registered", "2026-01-10T01:00:00Z")]  # first seen: history starts
    assert scheduler.tick(T0 + timedelta(minutes=30)) == []  # nothing due before 03:00 Paris
    fired = scheduler.tick(SLOT + timedelta(seconds=3))
    assert _actions(fired) == [("fired", "2026-01-10T02:00:00Z")]
    assert launcher.calls == [(str(Path(launcher.calls[0][0])), {"mode": "full"}, "schedule:nightly")]
    assert launcher.calls[0][0].endswith("nightly.yml")
    assert scheduler.tick(SLOT + timedelta(seconds=20)) == []  # the same slot: dealt with
    row = scheduler.store.fires("nightly", limit=1)[0]
    assert row["outcome"] == "fired" and row["pid"] == launcher.procs[0].pid


def test_a_dry_run_tick_says_what_would_fire_and_changes_nothing(made: Any) -> None:
    scheduler, launcher = made()
    scheduler.tick(T0)
    before = scheduler.store.fires("nightly")
    would = scheduler.tick(SLOT + timedelta(seconds=3), dry_run=True)
    assert _actions(would) == [("fired", "2026-01-10T02:00:00Z")] and "would start" in would[0].detail
    assert launcher.calls == [] and scheduler.store.fires("nightly") == before


def _race(a: Scheduler, b: Scheduler) -> list[Any]:
    """Both schedulers deal with the same slot at the same moment; what they did."""
    a.tick(T0)
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def tick(s: Scheduler) -> None:
        barrier.wait()
        results.extend(s.tick(SLOT + timedelta(seconds=1)))
    threads = [threading.Thread(target=tick, args=(s,)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_schedulers_on_one_state_fire_a_slot_once(made: Any) -> None:
    (a, launched_a), (b, launched_b) = made(), made()
    results = _race(a, b)
    assert len(launched_a.calls) + len(launched_b.calls) == 1
    assert [d.action for d in results if d.action == "fired"] == ["fired"]


def test_two_schedulers_on_one_postgresql_state_fire_a_slot_once(tmp_path: Path, folder: Path, pg_db: str) -> None:
    (a, launched_a), (b, launched_b) = (_scheduler(tmp_path, folder, state=pg_db) for _ in range(2))
    try:
        results = _race(a, b)
        assert len(launched_a.calls) + len(launched_b.calls) == 1
        assert [d.action for d in results if d.action == "fired"] == ["fired"]
        # the key itself: a slot claimed is refused to the next claimant
        assert a.store.claim_slot("nightly", "2026-01-20T02:00:00Z", "firing")
        assert not b.store.claim_slot("nightly", "2026-01-20T02:00:00Z", "firing")
    finally:
        for scheduler, launcher in ((a, launched_a), (b, launched_b)):
            launcher.close()
            scheduler.store.close()


def test_overlap_skip_skips_a_slot_while_the_previous_run_goes(made: Any) -> None:
    scheduler, launcher = made(going=True)
    scheduler.tick(T0)
    scheduler.tick(SLOT)
    nxt = SLOT + timedelta(days=1)
    skipped = scheduler.tick(nxt)
    assert _actions(skipped) == [("skipped", "2026-01-11T02:00:00Z")] and "still going" in skipped[0].detail
    assert len(launcher.calls) == 1


def test_overlap_queue_fires_the_slot_once_the_previous_run_ended(made: Any) -> None:
    scheduler, launcher = made(going=True, overlap="queue")
    scheduler.tick(T0)
    scheduler.tick(SLOT)
    assert _actions(scheduler.tick(SLOT + timedelta(days=1))) == [("queued", "2026-01-11T02:00:00Z")]
    assert scheduler.tick(SLOT + timedelta(days=1, seconds=5)) == []  # still going: it waits
    launcher.procs[0].kill()
    launcher.procs[0].wait()
    later = scheduler.tick(SLOT + timedelta(days=1, seconds=10))
    assert _actions(later) == [("fired", "2026-01-11T02:00:00Z")] and later[0].detail == "queued"
    assert len(launcher.calls) == 2


def test_overlap_cancel_previous_interrupts_the_run_then_fires(made: Any) -> None:
    scheduler, launcher = made(going=True, overlap="cancel_previous")
    scheduler.tick(T0)
    scheduler.tick(SLOT)
    queued = scheduler.tick(SLOT + timedelta(days=1))
    assert _actions(queued) == [("queued", "2026-01-11T02:00:00Z")] and "interrupting" in queued[0].detail
    assert launcher.procs[0].wait(timeout=30) == -signal.SIGINT  # as Ctrl-C
    assert _actions(scheduler.tick(SLOT + timedelta(days=1, seconds=2))) == [("fired", "2026-01-11T02:00:00Z")]


@pytest.mark.parametrize(("policy", "fired", "missed"), [
    ("skip", [], ["2026-01-14T02:00:00Z"]),
    ("latest", ["2026-01-14T02:00:00Z"], []),
    ("all", ["2026-01-11T02:00:00Z", "2026-01-12T02:00:00Z", "2026-01-13T02:00:00Z", "2026-01-14T02:00:00Z"], []),
])
def test_catch_up_decides_the_slots_missed_while_no_scheduler_ran(made: Any, policy: str, fired: list[str],
                                                                  missed: list[str]) -> None:
    scheduler, launcher = made(catch_up=policy)
    scheduler.tick(T0)
    scheduler.tick(SLOT)  # fired on time; then the scheduler is down for four days
    back = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)
    decisions = scheduler.tick(back)
    assert [d.slot for d in decisions if d.action == "fired"] == fired
    assert [d.slot for d in decisions if d.action == "missed"] == missed
    assert len(launcher.calls) == 1 + len(fired)
    assert scheduler.tick(back + timedelta(minutes=1)) == []  # dealt with once


def test_catch_up_all_runs_at_most_the_newest_missed_slots(made: Any) -> None:
    scheduler, launcher = made(catch_up="all")
    scheduler.tick(T0)
    decisions = scheduler.tick(T0 + timedelta(days=40))
    assert len([d for d in decisions if d.action == "fired"]) == MAX_CATCH_UP
    assert "older missed slots not run" in decisions[0].detail


def test_a_stored_schedule_starts_from_when_it_was_added_and_a_bad_launch_is_recorded(made: Any, tmp_path: Path) -> None:
    scheduler, launcher = made()
    scheduler.store.add_schedule({"name": "hourly", "file": str(tmp_path / "procedures" / "nightly.yml"),
                                  "cron": "0,30 * * * *", "timezone": "UTC", "params": {"mode": "quick"},
                                  "overlap": "skip", "catch_up": "skip", "created_at": "2026-01-10T00:00:00.000Z"})

    def refuse(file: str, params: dict[str, Any], user: str) -> tuple[str | None, int]:
        from engine.errors import ProcedureError

        raise ProcedureError("mode: expected one of full, quick")
    scheduler.launch = refuse
    decisions = [d for d in scheduler.tick(T0) if d.schedule == "hourly"]
    assert _actions(decisions) == [("missed", "2026-01-10T00:30:00Z"), ("failed", "2026-01-10T01:00:00Z")]
    assert "expected one of" in decisions[1].detail
    assert scheduler.store.fires("hourly", limit=1)[0]["outcome"] == "failed"
    # removed, then added again a day later: it starts from then, with nothing to catch up
    scheduler.store.remove_schedule("hourly")
    scheduler.store.add_schedule({"name": "hourly", "file": str(tmp_path / "procedures" / "nightly.yml"),
                                  "cron": "0,30 * * * *", "timezone": "UTC", "params": {"mode": "quick"},
                                  "overlap": "skip", "catch_up": "all", "created_at": "2026-01-11T00:10:00.000Z"})
    later = [d for d in scheduler.tick(datetime(2026, 1, 11, 0, 30, 5, tzinfo=UTC)) if d.schedule == "hourly"]
    assert _actions(later) == [("failed", "2026-01-11T00:30:00Z")]  # its one slot since, on time


def test_a_name_taken_twice_is_listed_with_its_problem_and_never_fires(made: Any, tmp_path: Path) -> None:
    scheduler, launcher = made()
    scheduler.store.add_schedule({"name": "nightly", "file": str(tmp_path / "procedures" / "nightly.yml"),
                                  "cron": "0 4 * * *", "timezone": "UTC", "params": {}, "overlap": "skip",
                                  "catch_up": "skip"})
    listed = scheduler.listing(T0)
    assert [(s["source"], s["problem"] is not None) for s in listed] == [("state", False), ("file", True)]
    assert listed[0]["next"][0] == "2026-01-10T04:00:00Z"


def test_the_schedules_page_and_api_show_next_fire_times_and_mask_secrets(tmp_path: Path, folder: Path) -> None:
    write(folder, NIGHTLY.replace("{overlap}", "queue").replace("{catch_up}", "latest")
          .replace("params: {mode: full}", "params: {mode: full, token: hush-hush-9}"), "nightly.yml")
    state = f"sqlite:///{tmp_path}/state.db"
    with app_client(Settings(state=state, procedures=folder)) as client:
        api = client.get(f"{LOOPBACK}/api/v1/schedules")
        assert api.status_code == 200, api.text
        body = api.json()
        [item] = body["schedules"]
        assert item["name"] == "nightly" and item["timezone"] == "Europe/Paris" and item["overlap"] == "queue"
        assert item["params"] == {"mode": "full", "token": "***"} and len(item["next"]) == 3
        assert all(t.endswith(("T02:00:00Z", "T01:00:00Z")) for t in item["next"])  # 03:00 in Paris
        page = client.get(f"{LOOPBACK}/schedules")
        assert page.status_code == 200 and "nightly" in page.text
        assert item["next"][0].replace("T", " ") in page.text  # as the pages show times
        for text in (api.text, page.text, json.dumps(client.get(f"{LOOPBACK}/api/v1/openapi.json").json())):
            assert "hush-hush-9" not in text
        assert "/api/v1/schedules" in client.get(f"{LOOPBACK}/api/v1/openapi.json").json()["paths"]
        assert client.get(f"{LOOPBACK}/api/v1/schedules?x=1").status_code == 400


TICKER = """
procedure: ticker
description: Fired by its schedule every second; one run at a time
schedule:
  cron: "* * * * * *"
  overlap: skip
steps:
  - id: hold
    shell: "while [ ! -e '{go}' ]; do sleep 0.05; done; echo released"
"""


def test_a_schedule_fires_and_its_run_appears_on_the_runs_page(browser: Browser, tmp_path: Path,  # noqa: F811
                                                              folder: Path) -> None:
    go = tmp_path / "go"
    write(folder, TICKER.replace("{go}", str(go)), "ticker.yml")
    try:
        with serving(History(tmp_path, folder)) as base:
            page = browser.new_page()
            page.goto(f"{base}/runs")
            row = page.locator("table.runs tbody tr").first
            expect(row).to_contain_text("schedule:ticker", timeout=WAIT_MS)  # live: no reload by hand
            run_id = str(page.locator("table.runs tbody tr a.mono").first.text_content())
            for _ in range(600):  # until a later slot was skipped while the run holds (a bound on a hang)
                last = httpx.get(f"{base}/api/v1/schedules", timeout=30).json()["schedules"][0]["last"]
                if any(f["outcome"] == "skipped" for f in last):
                    break
                time.sleep(0.05)
            page.goto(f"{base}/schedules")
            listed = page.locator("#schedule-ticker")
            expect(listed).to_contain_text("* * * * * *")
            expect(listed.locator("td.next div")).to_have_count(3)
            expect(listed).to_contain_text(run_id)
            expect(listed).to_contain_text("skipped")  # the slots after it, while it runs (overlap: skip)
            go.touch()  # the run ends
            page.goto(f"{base}/runs/{run_id}")
            expect(page.locator("body")).to_contain_text("released", timeout=WAIT_MS)
            page.close()
    finally:
        go.touch()


def test_a_schedule_keeps_its_newest_slots_and_its_queued_ones(made: Any) -> None:
    scheduler, _ = made()
    store = scheduler.store
    for day in range(1, 10):
        store.claim_slot("nightly", f"2026-01-0{day}T02:00:00Z", "queued" if day == 1 else "skipped")
    assert store.trim_fires("nightly", 3) == 5
    assert [f["slot"][:10] for f in store.fires("nightly")] == ["2026-01-09", "2026-01-08", "2026-01-07", "2026-01-01"]
    assert store.trim_fires("nightly", 3) == 0
