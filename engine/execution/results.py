"""What a run produced: one StepResult per step (and per host), one RunResult per run."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

STEP_STATUSES = ("ok", "failed", "timed_out", "skipped", "planned", "cancelled", "rolled_back",
                 "rollback_failed")
RUN_STATUSES = ("ok", "failed", "refused", "rollback_incomplete", "interrupted", "planned")
DONE = frozenset({"ok", "skipped", "planned"})  # lets dependents start
FAILED = frozenset({"failed", "timed_out"})  # what makes a run fail


def _same(text: str) -> str:
    return text


@dataclass
class StepResult:
    id: str
    status: str = "pending"
    phase: str = "step"  # step | finally | on_failure
    started_at: str | None = None
    duration: float = 0.0
    attempts: int = 0
    error: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    description: str | None = None
    hosts: dict[str, StepResult] | None = None
    notes: list[str] = field(default_factory=list)
    rollback: StepResult | None = None
    rollback_action: str | None = None  # in a plan: the undo that stands ready
    completed_at: float | None = None  # monotonic, orders rollbacks
    changed: bool = False  # the action completed although the step failed (its verify did)
    error_kind: str | None = None  # environment | assertion (executors/base.py)
    # a dry run: the step failed against today's state while an upstream write was only planned
    unjudged: bool = False
    # a foreach/matrix step: ``hosts`` holds its iterations, by label, in item order (loops.py)
    loop: bool = False

    @property
    def ok(self) -> bool:
        return self.status in DONE

    def __getattr__(self, name: str) -> Any:
        """Result fields read as attributes: ``result.steps["build"].rc``."""
        if not name.startswith("_"):
            fields = self.__dict__.get("fields")
            if fields is not None and name in fields:
                return fields[name]
        raise AttributeError(f"{type(self).__name__} {self.__dict__.get('id')!r} has no field {name!r}")

    def as_fields(self) -> dict[str, Any]:
        """The step as templates see it: ``steps.<id>.rc``, ``.status``, ``.ok``, ``.hosts``."""
        out = dict(self.fields)
        out.update(status=self.status, ok=self.status == "ok", error=self.error, attempts=self.attempts,
                   duration=self.duration)
        if self.hosts is not None:
            out["hosts"] = {h: r.as_fields() for h, r in self.hosts.items()}
        return out

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "status": self.status, "phase": self.phase,
                               "started_at": self.started_at, "duration": round(self.duration, 4),
                               "attempts": self.attempts, "error": self.error}
        if self.description is not None:
            out["action"] = self.description
        if self.error_kind is not None:
            out["error_kind"] = self.error_kind
        if self.unjudged:
            out["not_judged"] = True
        if self.loop:
            out["loop"] = True
        # executor fields sit beside the common ones (spec), which they never overwrite
        out.update({k: v for k, v in self.fields.items() if k not in out})
        if self.hosts is not None:
            out["hosts"] = {h: {k: v for k, v in r.to_json().items() if k != "id"} for h, r in self.hosts.items()}
        if self.notes:
            out["notes"] = list(self.notes)
        if self.rollback is not None:
            out["rollback"] = {k: v for k, v in self.rollback.to_json().items() if k != "id"}
        if self.rollback_action is not None:
            out["rollback_action"] = self.rollback_action
        return out


@dataclass
class RunResult:
    procedure: str
    run_id: str
    status: str
    exit_code: int
    dry_run: bool
    started_at: str
    duration: float
    steps: dict[str, StepResult]
    error: str | None = None
    root_cause: str | None = None
    rolled_back: list[str] = field(default_factory=list)
    not_undone: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # completed writes with no rollback defined
    offline: bool = False
    # one per notification sent (notify:/escalate:): {channel, event, ok, error, ...}
    notifications: list[dict[str, Any]] = field(default_factory=list)
    # the run's redactor: reports pass their final text through it, a last guard for secrets
    redact: Callable[[str], str] = field(default=_same, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def to_json(self) -> dict[str, Any]:
        return {"procedure": self.procedure, "run_id": self.run_id, "status": self.status,
                "exit_code": self.exit_code, "dry_run": self.dry_run, "started_at": self.started_at,
                "duration": round(self.duration, 4), "error": self.error, "root_cause": self.root_cause,
                # rolled_back in the order the undos ran; not_undone, in the order they would have
                "rolled_back": self.rolled_back, "not_undone": self.not_undone, "kept": self.kept,
                **({"counts": self.counts()} if self.dry_run else {}),
                **({"notifications": self.notifications} if self.notifications else {}),
                "steps": [s.to_json() for s in self.steps.values()]}

    def counts(self) -> dict[str, int]:
        """A plan's tally: statuses, and the checks that could not be judged against today's state."""
        out: dict[str, int] = {}
        for s in self.steps.values():
            out[s.status] = out.get(s.status, 0) + 1
        out["not_judged"] = count_unjudged(self.steps.values())
        return out


def count_unjudged(steps: Iterable[StepResult]) -> int:
    """Checks a plan could not judge against today's state, a child procedure's among them
    (they stand in its step's ``steps`` field, marked ``not_judged``)."""
    return sum(int(s.unjudged) + _child_unjudged(s.fields.get("steps")) for s in steps)


def _child_unjudged(steps: Any) -> int:
    if not isinstance(steps, dict):
        return 0
    return sum(int(e.get("not_judged") is True) + _child_unjudged(e.get("steps"))
               for e in steps.values() if isinstance(e, dict))


# the report fields every step has; the rest of an entry is the executor's result fields
_COMMON = frozenset({"id", "status", "phase", "started_at", "duration", "attempts", "error", "action", "notes",
                     "rollback", "rollback_action", "hosts", "error_kind", "not_judged", "loop"})


def recorded_result(entry: dict[str, Any], completed_at: float | None = None,
                    step_id: str | None = None) -> StepResult:
    """A step's StepResult rebuilt from its report entry: its fields are the ones reported, a
    fanned-out step's hosts each rebuilt the same way."""
    sid = str(entry.get("id") or step_id)
    hosts = entry.get("hosts")
    return StepResult(sid, status=str(entry.get("status")), phase=str(entry.get("phase") or "step"),
                      started_at=entry.get("started_at"), duration=float(entry.get("duration") or 0.0),
                      attempts=int(entry.get("attempts") or 0), error=entry.get("error"),
                      fields={k: v for k, v in entry.items() if k not in _COMMON},
                      description=entry.get("action"), notes=list(entry.get("notes") or []),
                      completed_at=completed_at, error_kind=entry.get("error_kind"), loop=entry.get("loop") is True,
                      hosts=({h: recorded_result(e, completed_at, sid) for h, e in hosts.items()}
                             if isinstance(hosts, dict) else None))
