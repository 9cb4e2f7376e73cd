"""HTML from Jinja2 templates shipped in ``engine/web/templates``: a sandboxed environment
(a template cannot reach Python internals through the data it is given) with autoescaping on
for every template, so a step's output, a param value or a step id with ``<`` in it is text,
never markup. Nothing is marked safe: the DAG's SVG is written by a template too.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from ..format.durations import format_duration

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def _duration(value: Any) -> str:
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    return format_duration(float(value))


def _when(value: Any) -> str:
    """An ISO time as the pages show it: UTC, to the second (the full value is its tooltip)."""
    if not isinstance(value, str) or len(value) < 19:
        return "-" if not value else str(value)
    return value[:19].replace("T", " ") + "Z"


def _clock(value: Any, day: Any = None) -> str:
    """A time within the run's day as its clock time (to the millisecond); another day's in full."""
    if not isinstance(value, str) or len(value) < 19:
        return "-" if not value else str(value)
    if isinstance(day, str) and value[:10] == day[:10]:
        return value[11:].rstrip("Z") + "Z"
    return value.replace("T", " ")


def _pretty(value: Any) -> str:
    """A result field as text: a string as it is, anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def _status_class(value: Any) -> str:
    """A CSS class for a status: letters and underscores only, whatever the record says."""
    text = "".join(c if c.isalnum() else "_" for c in str(value or "unknown"))
    return f"st-{text}"


@cache
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True, undefined=StrictUndefined,
                               trim_blocks=True, lstrip_blocks=True)
    env.filters.update(duration=_duration, when=_when, clock=_clock, pretty=_pretty, status_class=_status_class)
    return env


def render(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)
