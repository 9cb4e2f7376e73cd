"""The executor interface: what a plugin declares and implements.

An executor declares a pydantic ``Options`` model (validated when the procedure is loaded,
so an option typo is a file:line error before anything runs) and implements:

- ``effect(options)``: ``Effect.READ`` when the call changes nothing, so a dry run may
  execute it; ``Effect.WRITE`` otherwise.
- ``describe(options, ctx)``: the rendered action, as a plan shows it.
- ``execute(options, ctx)``: does it, honouring ``ctx.deadline`` and ``ctx.cancel``.
  An expected failure is a returned ``Result(ok=False, ...)``; an unexpected one is an
  exception, which the runner records as the step's error.
- ``rehearse(options, ctx)`` (optional): a safe stand-in for a write during a dry run
  (kubectl ``--dry-run=server``, a SQL statement rolled back); ``None`` means "planned".

Rollback, verify and preconditions are not executor methods: they are more step bodies.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict


class Effect(StrEnum):
    READ = "read"
    WRITE = "write"


class Options(BaseModel):
    """Base for executor options: unknown keys are errors, types are strict."""

    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass
class Result:
    """What one execution produced: ``fields`` are the executor's result fields (rc, rows, ...)."""

    ok: bool
    fields: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    timed_out: bool = False
    cancelled: bool = False
    planned: bool = False  # a dry run showed the action without executing it
    note: str | None = None  # what a rehearsal established, in the executor's words
    # why it failed: ENVIRONMENT (the target could not be reached or used: a real run would
    # fail the same way) or ASSERTION (the target answered, and not as expected); None: unknown
    error_kind: str | None = None


ENVIRONMENT = "environment"
ASSERTION = "assertion"


def environment_error(exc: BaseException) -> bool:
    """Whether an exception says the environment is broken (unreachable, refused, no name,
    TLS, no such program), rather than that a target answered unexpectedly."""
    import socket
    import ssl

    if type(exc).__name__ in ("SshError", "UnknownHostKey", "ChangedHostKey"):
        return True
    return isinstance(exc, ConnectionError | socket.gaierror | ssl.SSLError | TimeoutError | FileNotFoundError
                      | PermissionError)



@dataclass
class StepContext:
    """Everything an executor may use: plain values plus run-scoped services.

    The render functions close over the template namespace; ``resources`` is the run's
    cache of open connections, so a connection is opened once per run and closed at its end.
    """

    step_id: str
    workdir: Path
    dry_run: bool = False
    offline: bool = False
    deadline: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    env: dict[str, str] = field(default_factory=dict)
    connections: dict[str, Any] = field(default_factory=dict)
    resources: Any = None
    log_dir: Path | None = None
    host: Any = None
    yes: bool = False
    interactive: bool = False
    readonly: bool = False
    render: Callable[[Any], Any] = lambda value: value
    render_shell: Callable[[str], str] = lambda text: text  # a command as a plan shows it
    # a command as it runs, and the environment variables that carry its values
    render_shell_exec: Callable[[str], tuple[str, dict[str, str]]] = lambda text: (text, {})
    # literal SQL text, SqlParam and SqlIdent parts (expressions.render_sql)
    render_sql: Callable[[str], list[Any]] = lambda text: [text]
    evaluate: Callable[[str], Any] = lambda expr: None
    redact: Callable[[str], str] = lambda text: text
    # a secret an executor meets on its own (a password inside a DSN, an Authorization header):
    # masked from then on, with every value derived from it
    protect: Callable[[Any], None] = lambda value: None
    on_output: Callable[[str, str], None] | None = None
    on_progress: Callable[[str], None] | None = None
    ask: Callable[[str], bool] | None = None
    run_child: Callable[..., Any] | None = None

    def remaining(self) -> float | None:
        """Seconds left before the step's deadline, or None when it has none."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def progress(self, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(message)

    def connection(self, name: str | None, kinds: tuple[str, ...]) -> tuple[str, Any]:
        """(name, connection model) of the named connection, or of the only one of ``kinds``."""
        if name is None:
            matching = [n for n, c in self.connections.items() if c.kind in kinds]
            if len(matching) != 1:
                raise ValueError(f"name a connection of kind {' or '.join(kinds)} with 'connection:'")
            name = matching[0]
        conn = self.connections[name]
        if conn.kind not in kinds:
            raise ValueError(f"connection {name!r} is {conn.kind}, expected {' or '.join(kinds)}")
        return name, conn


class Executor(ABC):
    """Base class of executors; subclasses set the class attributes and implement execute."""

    name: ClassVar[str]
    main_option: ClassVar[str]
    Options: ClassVar[type[Options]]
    connection_kinds: ClassVar[tuple[str, ...]] = ()
    result_fields: ClassVar[tuple[str, ...]] = ()
    # options holding bare expressions (like ``assert: EXPR``) rather than {{ }} templates
    expression_options: ClassVar[tuple[str, ...]] = ()
    # True when even a real execution changes nothing outside runproc (confirm, wait), though
    # a dry run only shows it: such a step has nothing to roll back
    stateless: ClassVar[bool] = False
    # True when ``effect`` knows from the options whether the call writes (an HTTP method, a
    # kubectl verb, an S3 op); a dry run then skips checks whose effect is a write. shell and
    # sql cannot tell, and their checks are trusted to read (sql checks run read-only).
    knows_effect: ClassVar[bool] = False
    # True when ``rehearse`` is safe even offline (a child procedure plans offline too)
    plans_offline: ClassVar[bool] = False

    def uses_connection(self, options: Any) -> bool:
        """Whether this call needs one of ``connection_kinds`` (for the load-time check)."""
        return bool(self.connection_kinds)

    def effect(self, options: Any) -> Effect:
        return Effect.WRITE

    def describe(self, options: Any, ctx: StepContext) -> str:
        main = getattr(options, self.main_option, None)
        return f"{self.name}: {ctx.render(main) if isinstance(main, str) else main}"

    @abstractmethod
    def execute(self, options: Any, ctx: StepContext) -> Result:
        """Do it, honouring ``ctx.deadline`` and ``ctx.cancel``; an expected failure is a
        returned ``Result(ok=False)``, an unexpected one an exception the runner records."""

    def rehearse(self, options: Any, ctx: StepContext) -> Result | None:
        return None
