"""What the parts of the run core may use of the run they serve: a narrow, typed surface.

The scheduler (``Run``) implements it; the step, the fan-out, the dry-run judgement and the
saga of rollbacks are typed against this protocol, never against the scheduler, so the run
core has no import circle and a step can be executed by anything that provides these
(a remote worker, a test).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..format.model import Procedure
    from ..format.redaction import Redactor
    from .events import Event
    from .journal import NullJournal
    from .resources import Resources
    from .results import RunResult, StepResult
    from .taint import Taint


class RunContext(Protocol):
    """The run as its parts see it."""

    proc: Procedure
    references: dict[str, set[str]]  # proc's: what each step's templates read
    workdir: Path
    dry_run: bool
    offline: bool
    yes: bool
    limit: str | None
    forks: int | None
    inventory_path: str | None
    accept_new_hosts: bool
    known_hosts: str | None
    expected_actions: Any
    ask: Any
    wants_output: bool
    redactor: Redactor
    taint: Taint
    resources: Resources
    results: dict[str, StepResult]
    unknown: set[str]
    undo_order: list[str]
    not_undone: list[str]
    stop: threading.Event
    journal: NullJournal
    completed_hosts: dict[str, dict[str, dict[str, Any]]]
    rollback_cancel: threading.Event
    _phase_cancel: threading.Event

    @property
    def cancel(self) -> threading.Event: ...

    @property
    def log_dir(self) -> Path: ...

    def emit(self, event: Event) -> None: ...

    def output(self, step_id: str, stream: str, text: str, host: str | None) -> None: ...

    def progress(self, step_id: str, message: str, host: str | None) -> None: ...

    def retrying(self, step_id: str, attempt: int, delay: float, error: str | None,
                 host: str | None = None) -> None: ...

    def namespace(self, **extra: Any) -> dict[str, Any]: ...

    def run_child(self, file: str, params: dict[str, Any], *, dry_run: bool = False,
                  parent_step: str | None = None, cancel: threading.Event | None = None) -> RunResult: ...
