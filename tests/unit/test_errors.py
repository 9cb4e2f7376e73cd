"""One exception tree: every error runproc defines derives from RunprocError, in exactly one
group, and the group says the exit code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import engine
from engine import errors

GROUPS = {errors.InvalidInputError: 2, errors.RefusedError: 3, errors.FailedError: 1,
          errors.RollbackIncompleteError: 4, errors.Cancelled: 130}


def _engine_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(engine.__path__, "engine."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
                    and not name.startswith("_")):
                found[f"{module.__name__}.{name}"] = obj
    return found


def test_every_error_is_in_one_group_with_its_exit_code() -> None:
    exceptions = _engine_exceptions()
    assert len(exceptions) >= 15
    for name, cls in exceptions.items():
        assert issubclass(cls, errors.RunprocError), f"{name} is outside the tree"
        if cls is errors.RunprocError:
            continue
        groups = [g for g in GROUPS if issubclass(cls, g)]
        assert len(groups) == 1, f"{name}: in {groups}"
        assert cls.exit_code == GROUPS[groups[0]], name
        assert errors.exit_code_for(cls.__new__(cls)) == cls.exit_code


def test_the_named_errors_sit_where_the_docs_say() -> None:
    from engine.executors.sqlsessions import StatementFailed
    from engine.executors.sqlsplit import SqlError
    from engine.format.expressions import ExpressionError
    from engine.format.window import WindowError
    from engine.inventory import InventoryError
    from engine.state.plans import PlanError
    from engine.transports.sshconfig import SshError

    for cls in (errors.ProcedureError, errors.UsageError, ExpressionError, WindowError, InventoryError, PlanError):
        assert issubclass(cls, errors.InvalidInputError), cls
    for cls in (errors.ExecutorError, SshError, SqlError, StatementFailed):
        assert issubclass(cls, errors.FailedError), cls
    assert issubclass(errors.ProcedureError, ValueError) and issubclass(WindowError, ValueError)
    assert errors.exit_code_for(RuntimeError("a bug")) == 70
