"""Durations as operators write them: ``30s``, ``5m``, ``1h30m``, ``250ms`` or a number of seconds."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> float:
    """Seconds as a float; raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 5m or 1h, not a boolean")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        if text and _PART.fullmatch(text) or (text and all(_PART.fullmatch(p) for p in _split(text))):
            return sum(float(n) * _UNIT[u] for n, u in _PART.findall(text))
        try:
            return parse_duration(float(text))
        except ValueError:
            pass
    raise ValueError(f"expected a duration such as 30s, 5m, 1h30m or a number of seconds, got {value!r}")


def _split(text: str) -> list[str]:
    parts = [m.group(0) for m in _PART.finditer(text)]
    return parts if "".join(parts) == text else [text]


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
                             {"type": "string", "pattern": r"^(\d+(\.\d+)?(ms|s|m|h|d))+$"}]}
Duration = Annotated[float, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]
