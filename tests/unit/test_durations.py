"""Durations as operators write them."""

from __future__ import annotations

import math

import pytest

from engine.format.durations import parse_duration


@pytest.mark.parametrize(("value", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0), ("1h 30m", 5400.0), ("250ms", 0.25),
    ("2d", 172800.0), ("1.5s", 1.5), ("10", 10.0), (" 7 ", 7.0), (5, 5.0), (0.5, 0.5), (0, 0.0),
])
def test_accepted(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["1:30", "5x", "", "-5s", "s", "1 0s", "inf", "nan", -1, math.inf, math.nan,
                                   True, None, [1]])
def test_refused(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)
