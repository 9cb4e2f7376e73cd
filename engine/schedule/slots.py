"""Cron slots: when a schedule fires, in its time zone, as UTC times.

A slot is named by its UTC time to the second (``2026-12-04T03:00:00Z``), the same text in
every scheduler, so two schedulers agree on which slot they claim.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from ..errors import InvalidInputError

# how many slots one evaluation walks at most (a seconds schedule down for a day is 86,400)
MAX_WALK = 200_000


class CronMissing(InvalidInputError):
    """croniter, the schedule extra, is not installed."""


def _croniter() -> type:
    try:
        from croniter import croniter
    except ImportError:
        raise CronMissing("schedules need croniter, the schedule extra: pip install 'runproc[schedule]'") from None
    return croniter  # type: ignore[no-any-return]


def slot_name(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_slot(text: str) -> datetime:
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def _walk(cron: str, zone: str, after: datetime) -> Iterator[datetime]:
    it = _croniter()(cron, after.astimezone(ZoneInfo(zone)))
    while True:
        yield it.get_next(datetime).astimezone(UTC).replace(microsecond=0)


def next_fires(cron: str, zone: str, after: datetime, count: int = 1) -> list[datetime]:
    """The next ``count`` slots after ``after`` (UTC times)."""
    walk = _walk(cron, zone, after)
    return [next(walk) for _ in range(count)]


def slots_between(cron: str, zone: str, after: datetime, until: datetime, keep: int = 10) -> tuple[int, list[datetime]]:
    """The slots in (after, until]: how many there are, and the last ``keep`` of them, oldest first."""
    last: collections.deque[datetime] = collections.deque(maxlen=keep)
    count = 0
    for slot in _walk(cron, zone, after):
        if slot > until or count >= MAX_WALK:
            break
        count += 1
        last.append(slot)
    return count, list(last)
