"""Durations as operators write them: ``30s``, ``5m``, ``1h30m``, ``250ms`` or a number of seconds.

No pydantic here: commands that only read or print durations (``runproc runs``) import this
without the model; the model's field type is ``engine.format.durationfield.Duration``."""

from __future__ import annotations

import math
import re
from typing import Any

_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_FULL = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*(?:ms|s|m|h|d)\s*)+")
_NUMBER = re.compile(r"\s*\d+(?:\.\d+)?\s*")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds as a float; raises ValueError with the accepted forms.

    Only finite, non-negative amounts: ``float("inf")`` and ``"nan"`` would read as a
    number to Python but make no sense as a timeout.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h, not a boolean")
    if isinstance(value, int | float):
        if value != value or value in (math.inf, -math.inf):
            raise ValueError(f"expected a finite duration, got {value}")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        if _FULL.fullmatch(value):
            return sum(float(n) * _UNIT[u] for n, u in _PART.findall(value))
        if _NUMBER.fullmatch(value):
            return float(value)
    raise ValueError(f"expected a duration such as 30s, 5m, 1h30m or a number of seconds, got {value!r}")


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


DURATION_SCHEMA = {"anyOf": [{"type": "number", "minimum": 0},
                             {"type": "string",
                              "pattern": r"^\s*((\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+|\d+(\.\d+)?\s*)$"}]}


def __getattr__(name: str) -> Any:
    """``from engine.format.durations import Duration`` keeps working for plugins (the field type
    lives in engine.format.durationfield, so that reading durations does not load pydantic)."""
    if name == "Duration":
        from .durationfield import Duration

        return Duration
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
