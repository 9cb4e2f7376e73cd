"""runproc: a declarative runbook engine.

    import engine
    proc = engine.load("procedures/db-migration.yml")      # engine.ProcedureError, with locations
    result = engine.run(proc, params={...}, dry_run=True, on_event=print)
    result.ok, result.exit_code, result.steps["migrate"].status

Names are imported on first use, so ``runproc --version`` and embedding stay fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["Executor", "Procedure", "ProcedureError", "RunResult", "StepResult", "load", "register_executor",
           "run", "__version__"]

_LAZY = {
    "load": "engine.api",
    "run": "engine.api",
    "Procedure": "engine.format.model",
    "RunResult": "engine.execution.results",
    "StepResult": "engine.execution.results",
    "Executor": "engine.executors.base",
    "register_executor": "engine.executors",
    "ProcedureError": "engine.errors",
}

if TYPE_CHECKING:
    from .api import load, run
    from .errors import ProcedureError
    from .execution.results import RunResult, StepResult
    from .executors import register_executor
    from .executors.base import Executor
    from .format.model import Procedure


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'engine' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
