"""A journal commit is one statement (issue 14: W1's per-step overhead): its entries are all
committed or none, on SQLite and on PostgreSQL, however many there are (a spooled journal's
upload sends hundreds at once)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.state.sqlstore import JOURNAL_ROWS_A_STATEMENT, SqlStore


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStore]:
    opened: SqlStore
    if request.param == "sqlite":
        from engine.state.sqlite import SqliteStore

        opened = SqliteStore(f"sqlite:///{tmp_path}/state.db")
    else:
        from engine.state.postgres import PostgresStore

        opened = PostgresStore(str(request.getfixturevalue("pg_db")))
    opened.begin({"run_id": "r1", "procedure": "p", "started_at": "2026-12-04T00:00:00.000Z"}, None)
    try:
        yield opened
    finally:
        opened.close()


def _entries(first: int, count: int) -> list[dict[str, Any]]:
    return [{"seq": seq, "at": "2026-12-04T00:00:00.000Z", "event": "step_started", "step": f"s{seq}",
             "host": None, "data": {"phase": "step"}} for seq in range(first, first + count)]


def test_a_step_end_and_the_next_start_are_committed_together(store: SqlStore) -> None:
    ended = {"seq": 1, "at": "2026-12-04T00:00:00.000Z", "event": "step_finished", "step": "s0", "host": None,
             "data": {"entry": {"id": "s0", "status": "ok", "stdout": "hi"}, "completed": True}}
    store.append("r1", [ended, *_entries(2, 1)])
    journal = store.journal("r1")
    assert [(e["seq"], e["event"], e["step"]) for e in journal] == [(1, "step_finished", "s0"),
                                                                    (2, "step_started", "s2")]
    assert journal[0]["data"]["entry"]["stdout"] == "hi"
    assert journal[1]["data"] == {"phase": "step"} and journal[1]["host"] is None


@pytest.mark.parametrize("count", [JOURNAL_ROWS_A_STATEMENT, 2 * JOURNAL_ROWS_A_STATEMENT + 7])
def test_many_entries_are_all_there_in_order(store: SqlStore, count: int) -> None:
    store.append("r1", _entries(1, count))
    assert [e["seq"] for e in store.journal("r1")] == list(range(1, count + 1))


@pytest.mark.parametrize("count", [2, 2 * JOURNAL_ROWS_A_STATEMENT + 7])
def test_a_commit_that_fails_leaves_none_of_its_entries(store: SqlStore, count: int) -> None:
    store.append("r1", _entries(1, 1))
    # the last entry repeats seq 1: the whole commit is refused, its first entries with it
    with pytest.raises(Exception):  # noqa: B017, PT011 - each driver's own IntegrityError
        store.append("r1", [*_entries(2, count - 1), *_entries(1, 1)])
    assert [e["seq"] for e in store.journal("r1")] == [1]
    store.append("r1", _entries(2, 1))  # the connection is usable after the refusal
    assert [e["seq"] for e in store.journal("r1")] == [1, 2]
