"""Typed events the runner emits. The library prints nothing; the console, the JSON report
and the journal are all consumers of these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import RunResult, StepResult


@dataclass
class Event:
    pass


@dataclass
class RunStarted(Event):
    run_id: str
    procedure: str
    dry_run: bool
    offline: bool
    steps: list[tuple[str, str]]  # (id, display name) in file order, then finally/on_failure
    started_at: str


@dataclass
class PreconditionChecked(Event):
    name: str
    ok: bool
    error: str | None = None
    unknown: bool = False


@dataclass
class StepStarted(Event):
    step_id: str
    phase: str
    description: str | None = None
    hosts: int | None = None


@dataclass
class StepOutput(Event):
    step_id: str
    stream: str
    text: str
    host: str | None = None


@dataclass
class StepProgress(Event):
    step_id: str
    message: str
    host: str | None = None


@dataclass
class StepRetrying(Event):
    step_id: str
    attempt: int
    delay: float
    error: str | None
    host: str | None = None  # the host of a fanned-out step that retried (traces: a span per attempt)


@dataclass
class StepFinished(Event):
    step_id: str
    phase: str
    result: StepResult


@dataclass
class RollbackStarted(Event):
    step_id: str


@dataclass
class RollbackFinished(Event):
    step_id: str
    ok: bool
    error: str | None = None


@dataclass
class Interrupted(Event):
    count: int
    abandoned: list[str] = field(default_factory=list)


@dataclass
class RunFinished(Event):
    result: RunResult


@dataclass
class Note(Event):
    level: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)
