"""The state store as the run core sees it: one interface, implemented in engine/state.

The run core takes locks, records runs and spools logs through a ``StateStore`` it is given
(or a function that opens one when first needed); it never opens a store itself, so the
execution layer does not depend on where state lives (SQLite today, PostgreSQL next).
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

    def __str__(self) -> str:
        return (f"run {self.run_id} of {self.procedure} (pid {self.pid} on {self.host}, "
                f"by {self.user}, since {self.acquired_at})")


class StateStore(ABC):
    """Runs, their inputs, and locks, kept beyond one process."""

    url: str

    @abstractmethod
    def holder(self, name: str) -> LockHolder | None:
        """The live holder of a lock, or None."""

    @abstractmethod
    def acquire(self, name: str, run_id: str, procedure: str, user: str, acquired_at: str) -> LockHolder | None:
        """Take the lock; return the live holder instead when another run has it."""

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
    def runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The latest runs, newest first."""

    @abstractmethod
    def show(self, run_id: str) -> dict[str, Any] | None:
        """A run's report, by id or unique prefix."""

    @abstractmethod
    def logs_dir(self) -> Path:
        """Where runs spool their full outputs (one folder per run below it)."""

    @abstractmethod
    def close(self) -> None:
        """Release what the store holds open."""


class StoreOpener(Protocol):
    """What opens a store when a run first needs it (a dry run may never), and says where its
    logs go without opening it."""

    def __call__(self) -> StateStore: ...

    def logs_dir(self) -> Path: ...


def user_name() -> str:
    """The OS user running runproc, as locks and records name it."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in some containers
        return "unknown"
