"""runproc: a declarative runbook engine.

    import engine
    proc = engine.load("procedures/db-migration.yml")      # engine.ProcedureError, with locations
    result = engine.plan(proc, {...}, offline=True, on_event=print)
    result.ok, result.exit_code, result.steps["migrate"].status

The public names are ``__all__`` (docs/api.md).

Names are imported on first use, so ``runproc --version`` and embedding stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["Executor", "Problem", "Procedure", "ProcedureError", "RefusedError", "RunOptions", "RunResult",
           "RunprocError", "StateStore", "StepResult", "__version__", "apply", "events", "execute", "load", "plan",
           "prepare", "register_executor", "resume", "rollback_run", "run", "validate"]

_LAZY = {
    "load": "engine.api",
    "validate": "engine.api",
    "prepare": "engine.api",
    "execute": "engine.api",
    "run": "engine.api",
    "plan": "engine.api",
    "apply": "engine.api",
    "resume": "engine.api",
    "rollback_run": "engine.api",
    "RunOptions": "engine.execution.options",
    "StateStore": "engine.execution.store",
    "Procedure": "engine.format.model",
    "RunResult": "engine.execution.results",
    "StepResult": "engine.execution.results",
    "Executor": "engine.executors.base",
    "register_executor": "engine.executors",
    "Problem": "engine.errors",
    "ProcedureError": "engine.errors",
    "RefusedError": "engine.errors",
    "RunprocError": "engine.errors",
}
_MODULES = {"events": "engine.execution.events"}  # names that are modules

if TYPE_CHECKING:
    from .api import apply, execute, load, plan, prepare, resume, rollback_run, run, validate
    from .errors import Problem, ProcedureError, RefusedError, RunprocError
    from .execution import events
    from .execution.options import RunOptions
    from .execution.results import RunResult, StepResult
    from .execution.store import StateStore
    from .executors import register_executor
    from .executors.base import Executor
    from .format.model import Procedure


def __getattr__(name: str) -> Any:
    if name in _LAZY or name in _MODULES:
        value = import_module(_MODULES[name]) if name in _MODULES else getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
