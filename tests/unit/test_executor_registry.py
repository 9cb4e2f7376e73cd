"""The built-in executor table and the installed `runproc.executors` entry points agree.

``engine.executors.BUILTIN`` exists so that validating a file never pays for scanning entry
points; this test is what keeps it honest against pyproject.toml.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from engine import executors
from engine.errors import ExecutorError
from engine.executors.base import Executor


def _runproc_entry_points() -> dict[str, str]:
    # other distributions may register executors too (that is the point of the group)
    return {ep.name: ep.value for ep in entry_points(group=executors.GROUP)
            if ep.dist is not None and ep.dist.name == "runproc"}


def test_builtin_table_equals_installed_entry_points() -> None:
    assert _runproc_entry_points() == executors.BUILTIN


@pytest.mark.parametrize("name", ["shell", "assert", "confirm", "wait", "procedure"])
def test_core_executors_load_and_declare_the_interface(name: str) -> None:
    cls = executors.get_executor(name)
    assert issubclass(cls, Executor)
    assert cls.name == name
    assert cls.main_option in cls.Options.model_fields


def test_unknown_executor() -> None:
    assert not executors.is_executor("no-such-executor")
    with pytest.raises(ExecutorError, match="no executor named 'no-such-executor'"):
        executors.get_executor("no-such-executor")


def test_every_installed_executor_is_a_known_name() -> None:
    assert {ep.name for ep in entry_points(group=executors.GROUP)} <= executors.known_names()
