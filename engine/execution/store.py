"""The state store as the run core sees it: one interface, implemented in engine/state.

The run core takes locks, journals runs and spools logs through a ``StateStore`` it is given
(or a function that opens one when first needed); it never opens a store itself, so the
execution layer does not depend on where state lives (SQLite on one machine, PostgreSQL
shared by a team).

A real run is journaled write-ahead: ``begin`` records it before its first step, ``append``
commits each transition (step started with its rendered action, host finished, step
finished with its result, rollback, approval) before the next side effect starts, and
``record`` writes its report at the end. A run whose process is gone before ``record`` is
``interrupted``: ``show`` rebuilds its report from the journal.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass
class LockHolder:
    """Who holds a lock: the run, its process and where it runs."""

    name: str
    run_id: str
    procedure: str
    pid: int
    host: str
    user: str
    acquired_at: str
    pid_start: str | None = None
    heartbeat_at: float | None = None  # seconds since the epoch, by the store's clock
    lease: float | None = None  # seconds after the last heartbeat that the lease lasts
    alive: bool = True  # False: the holder is gone (its process died or it stopped renewing)

    def __str__(self) -> str:
        return (f"run {self.run_id} of {self.procedure} (pid {self.pid} on {self.host}, "
                f"by {self.user}, since {self.acquired_at})")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "run_id": self.run_id, "procedure": self.procedure, "pid": self.pid,
                "host": self.host, "user": self.user, "since": self.acquired_at,
                "heartbeat_at": self.heartbeat_at, "lease": self.lease, "alive": self.alive}


@dataclass
class RunFilter:
    """Which runs ``runs`` lists: every field narrows, None does not."""

    procedure: str | None = None
    status: str | None = None
    since: str | None = None  # an ISO time: runs started at or after it
    user: str | None = None
    limit: int = 50
    offset: int = 0


class StateStore(ABC):
    """Runs, their inputs, and locks, kept beyond one process."""

    url: str

    @abstractmethod
    def holder(self, name: str) -> LockHolder | None:
        """The live holder of a lock, or None."""

    @abstractmethod
    def acquire(self, name: str, run_id: str, procedure: str, user: str, acquired_at: str) -> LockHolder | None:
        """Take the lock; return the live holder instead when another run has it. A holder
        that is gone (dead process, expired lease) is taken over, and that is recorded."""

    @abstractmethod
    def renew(self, run_id: str, locks: list[str]) -> list[str]:
        """The holder's heartbeat: the run and its locks are still alive. Returns the locks it
        no longer holds (taken over or broken while it did not renew)."""

    @abstractmethod
    def locks(self) -> list[LockHolder]:
        """Every lock held, live or left by a holder that is gone."""

    @abstractmethod
    def break_lock(self, name: str, by: str) -> LockHolder | None:
        """Remove a lock whoever holds it (``runproc unlock``), recorded with who broke it."""

    @abstractmethod
    def lock_events(self, name: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The audit of locks, newest first: acquired, released, taken_over, broken."""

    @abstractmethod
    def begin(self, header: dict[str, Any], inputs: dict[str, Any] | None) -> None:
        """Record a run as it starts (status running): who, where, what, and its inputs."""

    @abstractmethod
    def append(self, run_id: str, entries: list[dict[str, Any]]) -> None:
        """Commit journal entries ({seq, at, event, step, host, data}) before going on."""

    @abstractmethod
    def journal(self, run_id: str) -> list[dict[str, Any]]:
        """A run's journal, in order."""

    @abstractmethod
    def release(self, name: str, run_id: str) -> None:
        """Give the lock back (only the holder's own run may)."""

    @abstractmethod
    def record(self, report: dict[str, Any], inputs: dict[str, Any] | None = None) -> None:
        """Record a finished run; ``inputs`` make it resumable and undoable."""

    @abstractmethod
    def inputs(self, run_id: str) -> dict[str, Any] | None:
        """What was recorded to resume or roll back a run."""

    @abstractmethod
    def replays_of(self, run_id: str) -> list[dict[str, Any]]:
        """The resumes and rollbacks made from a run, oldest first."""

    @abstractmethod
    def lock_of(self, run_id: str) -> LockHolder | None:
        """The live lock a run holds, if any."""

    @abstractmethod
    def runs(self, limit: int = 50, where: RunFilter | None = None) -> list[dict[str, Any]]:
        """The latest runs, newest first (``where`` filters and pages)."""

    @abstractmethod
    def show(self, run_id: str) -> dict[str, Any] | None:
        """A run's report, by id or unique prefix."""

    @abstractmethod
    def logs_dir(self) -> Path:
        """Where runs spool their full outputs (one folder per run below it)."""

    @abstractmethod
    def close(self) -> None:
        """Release what the store holds open."""

    # answers to confirm steps given beside the run's terminal (engine/execution/approvals.py);
    # a store without them offers none: the terminal alone answers

    def answer(self, run_id: str, step: str, request: int, answer: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Record an answer to a confirm step's request unless one is there: (whether this one
        stands, the answer that stands)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no answers to confirm steps")

    def answer_of(self, run_id: str, step: str, request: int) -> dict[str, Any] | None:
        """The answer given to a confirm step's request, or None."""
        return None


class StoreOpener(Protocol):
    """What opens a store when a run first needs it (a dry run may never), and says where its
    logs go without opening it."""

    def __call__(self) -> StateStore: ...

    def logs_dir(self) -> Path: ...


def state_home() -> Path:
    """runproc's own folder of state on this machine: ``$XDG_STATE_HOME/runproc``
    (``~/.local/state/runproc``): the default state file, logs, spooled journals, crash files."""
    import os

    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "runproc"


def user_name() -> str:
    """The OS user running runproc, as locks and records name it."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
