"""The exceptions runproc raises, as one tree.

    RunprocError
    ├── ProcedureError (ValueError)   invalid input: file, schema, references, params, secrets
    │                                  carries a list of located Problems; CLI exit 2
    ├── RefusedError                   refused before any change: lock, window, approval; exit 3
    └── ExecutorError                  an executor could not be loaded or misbehaved

Like pyinfra's errors, ProcedureError also inherits the matching builtin, so callers that
catch ValueError keep working.
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


class ProcedureError(RunprocError, ValueError):
    """The procedure, its params or its secrets are invalid; nothing was run."""

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("<input>", 0, 0, problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = sorted(problems, key=lambda p: (p.file, p.line, p.col))
        super().__init__("\n".join(str(p) for p in self.problems))


class RefusedError(RunprocError):
    """The run was refused before anything changed (lock held, outside the window, ...)."""


class ExecutorError(RunprocError):
    """An executor could not be found or loaded."""
