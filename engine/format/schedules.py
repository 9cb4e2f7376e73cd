"""``schedule:`` in a procedure (docs/format.md, docs/web.md "Schedules"): when a scheduler
(``runproc scheduler``, or ``runproc serve``) starts the procedure by itself.

    schedule:
      cron: "0 3 * * *"          # minute hour day-of-month month day-of-week (a 6th field: seconds)
      timezone: Europe/Paris     # the zone the cron reads in (default UTC)
      params: {mode: full}       # the run's params
      overlap: skip              # the previous run still going: skip | queue | cancel_previous
      catch_up: skip             # slots missed while no scheduler ran: skip | latest | all

One mapping, or a list of them (each then with a ``name``). Checked as the file loads: a cron
expression croniter cannot read, an unknown zone, an unknown param or a value of the wrong type
is a file:line:col problem. croniter is imported only here and only when a procedure has a
schedule (the ``schedule`` extra, also part of ``web``); without it the cron is checked by the
scheduler, which needs it anyway, so a procedure with a schedule still runs by hand.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
OVERLAP = ("skip", "queue", "cancel_previous")
CATCH_UP = ("skip", "latest", "all")


# the editor's JSON Schema of schedule: (runproc schema): one mapping or a list of them, written
# here rather than generated, so that loading the format never builds it
_ONE = {"type": "object", "additionalProperties": False, "required": ["cron"], "properties": {
    "name": {"type": "string", "pattern": NAME_PATTERN},
    "cron": {"type": "string", "description": "minute hour day-of-month month day-of-week (a 6th field: seconds), "
                                              "or @hourly, @daily..."},
    "timezone": {"type": "string", "default": "UTC", "description": "an IANA zone the cron reads in"},
    "params": {"type": "object"},
    "overlap": {"enum": list(OVERLAP), "default": "skip"},
    "catch_up": {"enum": list(CATCH_UP), "default": "skip"}}}
JSON_SCHEMA = {"anyOf": [_ONE, {"type": "array", "items": _ONE}, {"type": "null"}]}


class Schedule(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True, defer_build=True)

    name: str | None = Field(None, pattern=NAME_PATTERN)
    cron: str
    timezone: str = "UTC"
    params: dict[str, Any] = Field(default_factory=dict)
    overlap: Literal["skip", "queue", "cancel_previous"] = "skip"
    catch_up: Literal["skip", "latest", "all"] = "skip"

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = cron_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        problem = zone_problem(value)
        if problem:
            raise ValueError(problem)
        return value


def cron_problem(text: str, *, need_croniter: bool = False) -> str | None:
    """Why ``text`` is not a cron expression croniter reads (5 fields, or 6 with seconds), or None.
    Without croniter: None (or, with ``need_croniter``, the extra to install)."""
    fields = text.split()
    if len(fields) not in (5, 6) and not (len(fields) == 1 and text.strip().startswith("@")):
        return (f"expected 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds last; "
                f"got {len(fields)} in {text!r}")
    try:
        from croniter import croniter
    except ImportError:
        return "schedules need croniter: pip install 'runproc[schedule]'" if need_croniter else None
    try:
        croniter(text)
    except Exception as exc:  # noqa: BLE001 - croniter's own errors (CroniterBadCronError and kin), said in one line
        return f"cannot read cron expression {text!r}: {' '.join(str(exc).split()) or type(exc).__name__}"
    return None


def zone_problem(name: str) -> str | None:
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (an IANA name such as UTC, Europe/Paris, America/New_York)"
    return None


def one_or_many(value: Any) -> Any:
    """``schedule:`` as one mapping or a list of them; the model keeps a list."""
    return [value] if isinstance(value, dict) else value


def check_schedules(value: list[Schedule] | None, params: dict[str, Any]) -> list[Schedule] | None:
    """A procedure's schedules against its params (unknown names, wrong types, a required one
    missing) and their names (one each in a list of several, no two alike); raises ValueError."""
    if not value:
        return value
    from .params import coerce
    from .suggest import did_you_mean

    seen: set[str] = set()
    for i, item in enumerate(value):
        where = f"the {_nth(i)} schedule's " if len(value) > 1 else ""
        if len(value) > 1 and not item.name:
            raise ValueError(f"the {_nth(i)} schedule has no name: each schedule of a list needs one")
        if item.name:
            if item.name in seen:
                raise ValueError(f"two schedules are named {item.name!r}")
            seen.add(item.name)
        for key, given in item.params.items():
            if key not in params:
                raise ValueError(f"{where}params: unknown param {key!r}{did_you_mean(key, set(params))}")
            try:
                coerce(key, params[key], given, from_text=False)
            except ValueError as exc:
                raise ValueError(f"{where}params.{key}: {exc}") from None
        for key, spec in params.items():
            if getattr(spec, "required", False) and key not in item.params:
                raise ValueError(f"{where}params: {key!r} is required and the schedule does not give it")
    return value


def _nth(i: int) -> str:
    return {0: "first", 1: "second", 2: "third"}.get(i, f"#{i + 1}")


def schedules_of(proc: Any) -> list[tuple[str, Schedule]]:
    """A procedure's schedules with their names (the procedure's name for a lone one)."""
    items = getattr(proc, "schedule", None) or []
    return [(item.name or proc.procedure, item) for item in items]
