"""Maintenance windows: one, or several (open when any is), as the seed's weekly and monthly ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.format.window import WindowError, parse_window

SEED = "Sun 02:00-04:00 UTC; first Sun 01:00-05:00 UTC"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(("moment", "open_"), [
    ("2026-12-06T01:30", True),   # first Sunday of December: the monthly window opens at 01:00
    ("2026-12-06T04:30", True),   # ... and closes at 05:00
    ("2026-12-06T05:00", False),
    ("2026-12-13T01:30", False),  # second Sunday: only the weekly window, from 02:00
    ("2026-12-13T02:00", True),
    ("2026-12-14T02:30", False),  # a Monday
])
def test_either_window_opens_the_union(moment: str, open_: bool) -> None:
    assert parse_window(SEED).contains(at(moment)) is open_


def test_the_next_opening_is_the_earliest_of_the_windows() -> None:
    windows = parse_window(SEED)
    assert windows.next_opening(at("2026-12-07T00:00")) == at("2026-12-13T02:00")  # the weekly one
    assert windows.next_opening(at("2026-12-28T00:00")) == at("2027-01-03T01:00")  # January's first Sunday


@pytest.mark.parametrize(("text", "words"), [
    ("Sun 02:00-04:00 UTC; fist Sun 01:00-05:00 UTC", "cannot read window 'fist Sun"),
    ("Sun 02:00-04:00 UTC;", "an empty window"),
    ("Sun 02:00-04:00 UTC; Sun 01:00-05:00 Mars/Olympus", "unknown time zone"),
])
def test_each_window_is_checked(text: str, words: str) -> None:
    with pytest.raises(WindowError, match=words):
        parse_window(text)
