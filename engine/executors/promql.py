"""PromQL for the ``prometheus`` executor: values placed safely in a query, times, results.

Values never become code. A query is rendered as literal text and values (the engine's
``render_sql`` split, whose values are not SQL-specific); each value is then written for
where it lands, found by following PromQL's lexical states (code, the three string quotes,
comments) through the literal text before it:

- inside a string (``{version="{{ steps.idle.stdout }}"}``): escaped as that string's
  content, so a quote in the value cannot end the string;
- in code (``[{{ params.window }}]``, ``> {{ params.max }}``): only a number, a duration or a
  name (a metric, label or function name), never an operator keyword: anything else is
  refused with the reason, so a value cannot add a clause such as ``or vector(0)``;
- a value that is the whole query (``query: "{{ params.query }}"``) is the query itself,
  used as written: the author chose to take PromQL from there.

Times (``time``, ``range.start``/``end``) are ``now``, ``now-30m`` (or ``-30m``), an RFC 3339
timestamp (UTC when it has no offset) or Unix seconds. Results become plain JSON values:
a sample's value is a float, or Prometheus' own text for ``NaN``/``+Inf``/``-Inf``, which
JSON (and a PostgreSQL journal) cannot hold as numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from ..errors import InvalidInputError
from ..format.durations import parse_duration
from ..format.expressions import SqlIdent, SqlParam, to_text

MAX_POINTS = 250  # a range without `step` is cut into about this many points (as Grafana does)

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:Inf|NaN)|0[xX][0-9a-fA-F]+")
_DURATION = re.compile(r"(?:\d+(?:ms|s|m|h|d|w|y))+")
_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# names that would change what the query does rather than name something in it
_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                       "group_right", "bool", "offset", "atan2"})
_RELATIVE = re.compile(r"\s*(?:now\s*)?-\s*(\S.*)")


class QueryValueError(InvalidInputError, ValueError):
    """A value that cannot be placed where it stands in the query (the procedure's input is wrong
    for this query; the step fails with this message)."""


# ---------------------------------------------------------------- rendering


def _escape(text: str, quote: str) -> str:
    if quote == "`":  # a raw string has no escapes: a backquote would end it
        if "`" in text:
            raise QueryValueError(f"a value inside a `raw string` cannot contain a backquote: {text!r}")
        return text
    out = text.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _code_value(text: str) -> str:
    stripped = text.strip()
    if _NUMBER.fullmatch(stripped) or _DURATION.fullmatch(stripped):
        return stripped
    if _NAME.fullmatch(stripped) and stripped.lower() not in _KEYWORDS:
        return stripped
    raise QueryValueError(
        f"a value outside a quoted string must be a number, a duration or a name, got {text!r} "
        "(put it inside quotes to match it as a label value, or make the whole query one value)")


class _Lexer:
    """Follows PromQL's lexical state through literal text: in code, in a string, in a comment."""

    def __init__(self) -> None:
        self.state = "code"  # code | " | ' | ` | comment
        self._escaped = False

    def feed(self, text: str) -> None:
        for ch in text:
            if self.state == "code":
                if ch in "\"'`":
                    self.state = ch
                elif ch == "#":
                    self.state = "comment"
            elif self.state == "comment":
                if ch == "\n":
                    self.state = "code"
            elif self._escaped:
                self._escaped = False
            elif ch == "\\" and self.state != "`":
                self._escaped = True
            elif ch == self.state:
                self.state = "code"

    def place(self, value: Any) -> str:
        """A value written for the current state."""
        text = value.name if isinstance(value, SqlIdent) else to_text(value)
        if self.state == "code":
            return _code_value(text)
        if self.state == "comment":
            if "\n" in text:
                raise QueryValueError("a value inside a # comment cannot contain a line break")
            return text
        if self._escaped:
            raise QueryValueError("a value cannot follow a backslash inside a string")
        return _escape(text, self.state)


def build_query(parts: Iterable[Any]) -> str:
    """The query from rendered parts (literal text, SqlParam/SqlIdent values); see the module doc."""
    parts = list(parts)
    values = [p for p in parts if not isinstance(p, str)]
    if len(values) == 1 and all(p.strip() == "" for p in parts if isinstance(p, str)):
        only = values[0]
        return to_text(only.value if isinstance(only, SqlParam) else only.name)
    lexer = _Lexer()
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            lexer.feed(part)
            out.append(part)
        else:
            out.append(lexer.place(part.value if isinstance(part, SqlParam) else part))
    return "".join(out)


def one_line(query: str, limit: int = 300) -> str:
    """A query as one line for plans and errors (a YAML block may span lines)."""
    text = " ".join(query.split())
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- times


def check_time(value: Any) -> Any:
    """Load-time check of a ``time``/``start``/``end`` (a template is checked when rendered)."""
    if isinstance(value, str) and ("{{" in value or "{%" in value):
        return value
    parse_time(value, 0.0)
    return value


def parse_time(value: Any, now: float) -> float:
    """Unix seconds of ``now``, ``now-DURATION``/``-DURATION``, RFC 3339 or Unix seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a time such as now, now-30m, an RFC 3339 timestamp or Unix seconds, "
                         "not a boolean")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"expected a finite time, got {value}")
        return float(value)
    text = str(value).strip()
    if text == "now":
        return now
    relative = _RELATIVE.fullmatch(text)
    if relative:
        try:
            return now - parse_duration(relative.group(1))
        except ValueError:
            pass
    try:
        return float(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise ValueError(f"expected a time such as now, now-30m, -1h, an RFC 3339 timestamp "
                         f"(2024-03-20T14:30:00Z) or Unix seconds, got {value!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return stamp.timestamp()


def default_step(start: float, end: float) -> float:
    """About MAX_POINTS points over the range, in whole seconds, at least one."""
    return float(max(1, math.ceil((end - start) / MAX_POINTS)))


def show_time(value: Any) -> str:
    """A time option as a plan shows it: as written (``now-30m``), numbers as they are."""
    return str(value).strip() if not isinstance(value, float) or not value.is_integer() else str(int(value))


# ---------------------------------------------------------------- results


def sample(text: Any) -> float | str:
    """A sample value: a float, or Prometheus' text for a value that is not finite."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return str(text)
    return number if math.isfinite(number) else str(text)


def _finite(values: list[float | str]) -> list[float]:
    return [v for v in values if isinstance(v, float)]


def shape(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` of a query answer as result fields: ``result_type``, ``series``, ``count``, ``value``.

    ``value`` is the sample when the answer is a scalar or a vector of exactly one series,
    else None (no series, several series, a range).
    """
    kind = data.get("resultType")
    raw = data.get("result")
    series: list[dict[str, Any]] = []
    value: Any = None
    if kind == "vector":
        for item in raw or []:
            series.append({"labels": item.get("metric") or {}, "value": sample((item.get("value") or [0, None])[1])})
        if len(series) == 1:
            value = series[0]["value"]
    elif kind == "matrix":
        for item in raw or []:
            points = [[float(t), sample(v)] for t, v in item.get("values") or []]
            finite = _finite([p[1] for p in points])
            series.append({"labels": item.get("metric") or {}, "values": points,
                           "last": points[-1][1] if points else None,
                           "min": min(finite) if finite else None, "max": max(finite) if finite else None})
    elif kind in ("scalar", "string") and isinstance(raw, list) and len(raw) == 2:
        value = sample(raw[1]) if kind == "scalar" else str(raw[1])
    return {"result_type": kind, "series": series, "count": len(series), "value": value}
