"""The exceptions runproc raises, as one tree, grouped by what the user must do.

    RunprocError                        exit_code: what the CLI exits with (exit_code_for)
    ├── InvalidInputError          2    fix the input: nothing was run
    │   ├── ProcedureError (ValueError) the file, schema, references, params, secrets, a bad --state
    │   │                               (carries a list of located Problems)
    │   ├── UsageError                  the command line (argparse's words)
    │   ├── ExpressionError             a template or expression (format.expressions)
    │   ├── WindowError (ValueError)    a maintenance window spec (format.window)
    │   ├── InventoryError              an inventory (inventory.model)
    │   └── PlanError                   a saved plan file that cannot be used (state.plans)
    ├── RefusedError               3    a person decides: a lock, a window, a recorded run that
    │                                   cannot be resumed, a plan that no longer matches
    ├── FailedError                1    something failed (what ran was rolled back)
    │   ├── ExecutorError               an executor could not be loaded or misbehaved
    │   ├── SshError                    a host could not be reached or refused us (transports)
    │   ├── SqlError                    a sql step's text (executors.sqlsplit)
    │   └── StatementFailed             a statement or connection (executors.sqlsessions)
    ├── RollbackIncompleteError    4    an undo did not complete: a person must look
    └── Cancelled                130    interrupted

Like pyinfra's errors, ProcedureError and WindowError also inherit ValueError, so callers
that catch ValueError keep working. A run's outcome is its RunResult, not an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the input, located in its file (line and col are 1-based)."""

    file: str
    line: int
    col: int
    message: str
    hint: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        text = f"{where}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "col": self.col, "message": self.message,
                "hint": self.hint}


class RunprocError(Exception):
    """Base of every error runproc raises on purpose."""

    exit_code: int = 1


class InvalidInputError(RunprocError):
    """The input is wrong (file, params, options, state URL): fix it; nothing was run."""

    exit_code = 2


class RefusedError(RunprocError):
    """Refused before anything changed (lock held, outside the window, a replay that cannot be)."""

    exit_code = 3


class FailedError(RunprocError):
    """Something failed while running; what ran was rolled back."""

    exit_code = 1


class RollbackIncompleteError(RunprocError):
    """An undo did not complete: a person must look."""

    exit_code = 4


class Cancelled(RunprocError):
    """Interrupted (raised inside an executor when its cancel event was set while it waited)."""

    exit_code = 130


class UsageError(InvalidInputError):
    """A command line argparse refused; its message is printed as argparse would."""


class ExecutorError(FailedError):
    """An executor could not be found or loaded."""


def exit_code_for(exc: BaseException) -> int:
    """The CLI's exit code for an exception: its group's, else 70 (an internal error)."""
    return exc.exit_code if isinstance(exc, RunprocError) else 70


class ProcedureError(InvalidInputError, ValueError):
    """The procedure, its params or its secrets are invalid; nothing was run."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("<input>", 0, 0, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))
