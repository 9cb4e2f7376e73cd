"""The runs page over a long history (10,000 runs, put in with SQL in one transaction): page 1
is the 50 newest, the last page is the oldest, filters narrow the same pages. How fast it is
goes in bench/web.py, not here. And the pages over a PostgreSQL state made by real runs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from engine.state.sqlite import SqliteStore
from engine.web.app import Settings
from tests.helpers.cli import runproc, write
from tests.helpers.web import ALPHA, DEMO, app_client

COUNT = 10_000
PROCEDURES = [f"service-{i:02d}" for i in range(10)]
USERS = ["alice", "bob", "carol"]
STATUSES = ["ok", "ok", "ok", "failed", "planned"]


def _fill(path: Path) -> list[dict[str, str]]:
    """COUNT runs, one a minute back from now; each a small report. Newest first, as listed."""
    store = SqliteStore(f"sqlite:///{path}")
    now = datetime.now(UTC).replace(microsecond=0)
    rows = []
    for n in range(COUNT):
        started = (now - timedelta(minutes=n)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        run = {"id": f"{n:012x}", "procedure": PROCEDURES[n % 10], "status": STATUSES[n % 5], "user": USERS[n % 3],
               "started_at": started}
        report = {"procedure": run["procedure"], "run_id": run["id"], "status": run["status"],
                  "exit_code": 1 if run["status"] == "failed" else 0, "dry_run": run["status"] == "planned",
                  "started_at": started, "duration": 1.5, "steps": [{"id": "only", "status": run["status"]}]}
        rows.append((run, report))
    with store._tx() as execute:
        for run, report in rows:
            execute('INSERT INTO runs (id, "procedure", status, exit_code, dry_run, started_at, duration, report, '
                    '"user", host, pid, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
                    (run["id"], run["procedure"], run["status"], report["exit_code"], int(report["dry_run"]),
                     run["started_at"], 1.5, json.dumps(report), run["user"], "ci-1", 4000, "run"))
    store.close()
    return [run for run, _ in rows]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]]]:
    path = tmp_path_factory.mktemp("web-scale") / "state.db"
    return path, _fill(path)


def _ids(html: str) -> list[str]:
    return re.findall(r'<a class="mono" href="/runs/([0-9a-f]{12})">', html)


def test_ten_thousand_runs_page_by_page(big: tuple[Path, list[dict[str, str]]]) -> None:
    path, runs = big
    newest = [r["id"] for r in runs]
    with app_client(Settings(state=f"sqlite:///{path}")) as c:
        first = c.get("/runs")
        assert first.status_code == 200
        assert _ids(first.text) == newest[:50]
        assert 'rel="next" href="/runs?page=2"' in first.text
        assert _ids(c.get("/runs", params={"page": "2"}).text) == newest[50:100]
        last = c.get("/runs", params={"page": "200"})
        assert _ids(last.text) == newest[-50:] and 'rel="next"' not in last.text
        assert _ids(c.get("/runs", params={"page": "201"}).text) == []
        api = c.get("/api/v1/runs", params={"limit": "500", "page": "20"}).json()
        assert [r["id"] for r in api["runs"]] == newest[-500:] and api["next"] is None


def test_ten_thousand_runs_filtered(big: tuple[Path, list[dict[str, str]]]) -> None:
    path, runs = big
    since = runs[3000]["started_at"]

    def expected(**where: str) -> list[str]:
        return [r["id"] for r in runs if all(r[k] == v for k, v in where.items()) and r["started_at"] >= since]

    with app_client(Settings(state=f"sqlite:///{path}")) as c:
        params = {"procedure": "service-03", "status": "failed", "since": since}
        want = expected(procedure="service-03", status="failed")
        assert len(want) == 300  # of the 3,001 runs since: every tenth, all failed
        assert _ids(c.get("/runs", params=params).text) == want[:50]
        assert _ids(c.get("/runs", params={**params, "page": "6"}).text) == want[250:]
        mine = expected(user="bob")
        got = c.get("/api/v1/runs", params={"user": "bob", "since": since, "limit": "100", "page": "3"}).json()
        assert [r["id"] for r in got["runs"]] == mine[200:300]


def test_the_pages_over_a_postgresql_state(pg_db: str, tmp_path: Path) -> None:
    """The same SQL through the PostgreSQL store: real runs recorded there, read back by pages."""
    ids = {}
    for name, text, args, rc in (("alpha", ALPHA, (), 0), ("demo", DEMO, ("--yes",), 1)):
        write(tmp_path, text, f"{name}.yml")
        done = runproc(tmp_path, f"{name}.yml", "--output", "json", "--state", pg_db, *args, state=False)
        assert done.rc == rc, done.stderr
        ids[name] = done.json["run_id"]
    with app_client(Settings(state=pg_db, procedures=tmp_path)) as c:
        assert _ids(c.get("/runs").text) == [ids["demo"], ids["alpha"]]
        assert _ids(c.get("/runs", params={"status": "failed"}).text) == [ids["demo"]]
        run = c.get(f"/runs/{ids['demo']}")
        assert run.status_code == 200 and 'data-step="rollout"' in run.text and "st-rolled_back" in run.text
        api = c.get(f"/api/v1/runs/{ids['demo']}").json()
        assert api["rolled_back"] == ["prepare"] and api["approvals"][0]["step"] == "approve"
        assert "state postgresql://" in c.get("/runs").text
        assert c.get("/api/v1/runs/0123456789ab").status_code == 404
