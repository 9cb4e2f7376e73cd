"""Maintenance windows: ``"Sun 02:00-04:00 UTC"``, ``"Mon-Fri 22:00-02:00 Europe/Paris"``,
``"daily 01:00-05:00"``, ``"first Sun 01:00-05:00 UTC"`` (the seed's monthly window), or several
of them separated by ``;`` (a YAML list in a procedure): the seed's weekly and monthly windows
are ``"Sun 02:00-04:00 UTC; first Sun 01:00-05:00 UTC"``, open when either is.

A window may cross midnight; it then belongs to the day it starts on.
"""

from __future__ import annotations

import re
import time as _time
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from .. import process
from ..errors import InvalidInputError

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ORDINALS = {"first": 1, "second": 2, "third": 3, "fourth": 4, "last": -1}
_FORM = re.compile(r"^\s*(?:(?P<ord>first|second|third|fourth|last)\s+)?(?P<days>[A-Za-z,*-]+)\s+"
                   r"(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})(?:\s+(?P<tz>\S+))?\s*$",
                   re.IGNORECASE)


class WindowError(InvalidInputError, ValueError):
    pass


@dataclass(frozen=True)
class Window:
    text: str
    days: frozenset[int]
    start: time
    end: time
    tz: tzinfo
    ordinal: int | None = None

    def contains(self, moment: datetime) -> bool:
        local = moment.astimezone(self.tz)
        for offset in (0, 1):  # the window may have started yesterday and cross midnight
            day = (local - timedelta(days=offset)).date()
            if not self._day_matches(day):
                continue
            begin = datetime.combine(day, self.start, self.tz)
            finish = datetime.combine(day, self.end, self.tz)
            if finish <= begin:
                finish += timedelta(days=1)
            if begin <= local < finish:
                return True
        return False

    def next_opening(self, moment: datetime) -> datetime:
        """When the window next opens after ``moment`` (``moment`` itself when it is open)."""
        if self.contains(moment):
            return moment
        local = moment.astimezone(self.tz)
        # a monthly window ("first Sun") opens within about five weeks; a year is plenty
        for offset in range(0, 400):
            day = local.date() + timedelta(days=offset)
            if self._day_matches(day):
                begin = datetime.combine(day, self.start, self.tz)
                if begin > local:
                    return begin
        raise WindowError(f"window {self.text!r} never opens")

    def _day_matches(self, day: date) -> bool:
        if day.weekday() not in self.days:
            return False
        if self.ordinal is None:
            return True
        if self.ordinal == -1:
            return (day + timedelta(days=7)).month != day.month
        return (day.day - 1) // 7 + 1 == self.ordinal


def _days(spec: str) -> frozenset[int]:
    spec = spec.lower()
    if spec in ("daily", "*", "every", "any"):
        return frozenset(range(7))
    if spec in ("weekdays",):
        return frozenset(range(5))
    if spec in ("weekends", "weekend"):
        return frozenset({5, 6})
    out: set[int] = set()
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            ia, ib = _day(a), _day(b)
            i = ia
            while True:
                out.add(i)
                if i == ib:
                    break
                i = (i + 1) % 7
        else:
            out.add(_day(part))
    return frozenset(out)


def _day(name: str) -> int:
    key = name.strip()[:3]
    if key not in DAYS:
        raise WindowError(f"unknown day {name!r}; use Mon..Sun, Mon-Fri, Sat,Sun or daily")
    return DAYS.index(key)


def _clock(text: str) -> time:
    h, m = (int(x) for x in text.split(":"))
    if h > 24 or m > 59 or (h == 24 and m):
        raise WindowError(f"invalid time {text!r}")
    return time(0, 0) if h == 24 else time(h, m)


def clock_now() -> datetime:
    """Now, for deciding windows. ``RUNPROC_TEST_NOW`` (ISO time, tests only) makes the process
    believe it started at that moment, so that a test can start a run seconds before a window
    opens instead of waiting for a real minute boundary; the clock still runs from there."""
    import os

    fake = os.environ.get("RUNPROC_TEST_NOW")
    real = datetime.now(UTC)
    if not fake:
        return real
    try:
        start = datetime.fromisoformat(fake.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInputError(f"RUNPROC_TEST_NOW={fake!r}: expected an ISO time, e.g. 2026-12-06T01:59:58Z") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    return start + timedelta(seconds=_time.monotonic() - process.started())


@dataclass(frozen=True)
class Windows:
    """Several windows: open when any of them is."""

    text: str
    windows: tuple[Window, ...]

    def contains(self, moment: datetime) -> bool:
        return any(w.contains(moment) for w in self.windows)

    def next_opening(self, moment: datetime) -> datetime:
        return min(w.next_opening(moment) for w in self.windows)


def parse_window(text: str) -> Window | Windows:
    """One window, or several separated by ``;`` (each read as below)."""
    if ";" in text:
        parts = [part.strip() for part in text.split(";")]
        if not all(parts):
            raise WindowError(f"cannot read window {text!r}: an empty window between ';'")
        return Windows(text, tuple(_one_window(part) for part in parts))
    return _one_window(text)


def _one_window(text: str) -> Window:
    m = _FORM.match(text)
    if not m:
        raise WindowError(f"cannot read window {text!r}; expected e.g. 'Sun 02:00-04:00 UTC'")
    tzname = m.group("tz") or "UTC"
    try:
        from zoneinfo import ZoneInfo

        tz: tzinfo = ZoneInfo(tzname)
    except Exception:  # noqa: BLE001 - zoneinfo raises several kinds
        raise WindowError(f"unknown time zone {tzname!r}") from None
    ordinal = ORDINALS[m.group("ord").lower()] if m.group("ord") else None
    return Window(text, _days(m.group("days")), _clock(m.group("start")), _clock(m.group("end")), tz, ordinal)
