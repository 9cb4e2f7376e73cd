"""Maintenance windows: ``"Sun 02:00-04:00 UTC"``, ``"Mon-Fri 22:00-02:00 Europe/Paris"``,
``"daily 01:00-05:00"``, ``"first Sun 01:00-05:00 UTC"`` (the seed's monthly window).

A window may cross midnight; it then belongs to the day it starts on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

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


def parse_window(text: str) -> Window:
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
