"""What an event says, as a message template reads it (``event.*``), and the default texts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# a word for each status a message may carry (run statuses, and a step's own)
_WORDS = {"ok": "succeeded", "failed": "failed", "refused": "was refused", "interrupted": "was interrupted",
          "rollback_incomplete": "failed and its rollback is incomplete", "running": "is running",
          "timed_out": "timed out", "rolled_back": "was rolled back", "rollback_failed": "could not be rolled back",
          "waiting": "is waiting for an approval"}
_ICONS = {"start": "▶️", "success": "✅", "failure": "🚨", "rollback": "↩️", "approval_needed": "✋",
          "escalation": "⏫"}


@dataclass
class Facts:
    """One event of one run. ``step`` is the step concerned (the failed one, the one waiting
    for an approval, or the step whose own ``notify`` this is); ``cause`` and ``after`` are an
    escalation's: the wait that started its clock and how long it lasted (seconds)."""

    name: str
    procedure: str
    run_id: str
    status: str
    who: str
    host: str
    started_at: str
    step: str | None = None
    error: str | None = None
    question: str | None = None  # a confirm step's question
    duration: float | None = None
    rolled_back: list[str] = field(default_factory=list)
    not_undone: list[str] = field(default_factory=list)
    cause: str | None = None
    after: float | None = None
    own_step: bool = False  # a step's own notify entry, rather than the procedure's
    summary: str = ""

    def __post_init__(self) -> None:
        if not self.summary:
            self.summary = default_message(self)

    def as_namespace(self) -> dict[str, Any]:
        """``event`` as templates see it."""
        out = asdict(self)
        out.pop("own_step")
        return out

    @property
    def headline(self) -> str:
        """One line: what happened to which run (a title, a mail's subject)."""
        who = f"step {self.step} of {self.procedure}" if self.own_step and self.step else self.procedure
        if self.name == "approval_needed":
            return f"{who} waits for an approval (run {self.run_id})"
        if self.name == "escalation":
            waited = "approval" if self.cause == "approval_needed" else "recovery"
            return f"{self.procedure}: no {waited} after {shown_duration(self.after or 0)} (run {self.run_id})"
        if self.name == "start":
            return f"{who} started (run {self.run_id})"
        if self.name == "rollback" and not self.own_step:
            word = "rollback incomplete" if self.status == "rollback_incomplete" else "rolled back"
            return f"{self.procedure} {word} (run {self.run_id})"
        return f"{who} {_WORDS.get(self.status, self.status)} (run {self.run_id})"

    @property
    def severity(self) -> str:
        """good, bad or neutral: a colour for the channels that have one."""
        if self.name in ("failure", "escalation") or self.status in ("rollback_incomplete", "rollback_failed"):
            return "bad"
        if self.name == "success" or (self.name == "rollback" and self.status in ("failed", "rolled_back")):
            return "good"
        return "neutral"

    def lines(self) -> list[tuple[str, str]]:
        """The facts worth a line of their own, as (label, value)."""
        out = [("Procedure", self.procedure), ("Run", self.run_id), ("Status", self.status)]
        if self.step:
            out.append(("Step", self.step))
        if self.error:
            out.append(("Error", self.error))
        if self.rolled_back:
            out.append(("Rolled back", ", ".join(self.rolled_back)))
        if self.not_undone:
            out.append(("Not undone", ", ".join(self.not_undone)))
        out.append(("Who", f"{self.who}@{self.host}"))
        return out


def default_message(facts: Facts) -> str:
    """The text sent when an entry gives no ``message``: what happened, to which run, and what
    a person needs to act (the failed step and its error, what was or was not undone)."""
    text = f"{_ICONS.get(facts.name, '')} {facts.headline}".strip()
    if facts.name == "approval_needed" and facts.step:
        text += f"\nStep {facts.step} asks: {facts.question or 'approve?'}"
    elif facts.name == "escalation":
        text += (f"\nStep {facts.step} still waits for an approval" if facts.cause == "approval_needed" and facts.step
                 else f"\nThe run is still not recovered ({facts.status})")
        if facts.error:
            text += f": {facts.error}"
    elif facts.step and facts.error:
        text += f"\nStep {facts.step}: {facts.error}"
    elif facts.error:
        text += f"\n{facts.error}"
    if facts.rolled_back:
        text += f"\nUndone: {', '.join(facts.rolled_back)}"
    if facts.not_undone:
        text += f"\nNOT undone (a person must look): {', '.join(facts.not_undone)}"
    if facts.duration is not None:
        text += f"\nDuration: {shown_duration(facts.duration)}"
    text += f"\nBy {facts.who} on {facts.host}"
    return text


def shown_duration(seconds: float) -> str:
    """``0.2s``, ``15m``, ``1m30s``, ``2h05m``: a wait as a person says it."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
