"""The executor registry.

Executors register under the entry-point group ``runproc.executors``, built-ins included
(see pyproject.toml). Scanning entry points costs ~20 ms, so the built-in names are also
listed here and the scan happens only when a step uses a name that is not built in; a test
checks that this table and the installed entry points agree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ExecutorError

if TYPE_CHECKING:
    from .base import Executor

GROUP = "runproc.executors"

BUILTIN: dict[str, str] = {
    "shell": "engine.executors.shell:ShellExecutor",
    "assert": "engine.executors.assertion:AssertExecutor",
    "confirm": "engine.executors.confirm:ConfirmExecutor",
    "wait": "engine.executors.wait:WaitExecutor",
    "procedure": "engine.executors.procedure:ProcedureExecutor",
    "sql": "engine.executors.sql:SqlExecutor",
    "http": "engine.executors.http:HttpExecutor",
    "kubectl": "engine.executors.kubectl:KubectlExecutor",
    "s3": "engine.executors.s3:S3Executor",
    "prometheus": "engine.executors.prometheus:PrometheusExecutor",
    "aws": "engine.executors.aws:AwsExecutor",
}

_registered: dict[str, type[Executor]] = {}
_loaded: dict[str, type[Executor]] = {}
_plugins: dict[str, str] | None = None


def register_executor(cls: type[Executor]) -> type[Executor]:
    """Register an executor class in-process (for embedding); usable as a decorator."""
    _registered[cls.name] = cls
    _loaded.pop(cls.name, None)
    return cls


def plugin_table() -> dict[str, str]:
    """Entry points of the group, scanned once per process."""
    global _plugins
    if _plugins is None:
        from importlib.metadata import entry_points

        _plugins = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    return _plugins


def reset_plugins() -> None:
    """Forget the entry points read so far (a warm server's child: one may have been installed
    since the server read them); built-in executors stay loaded."""
    global _plugins
    _plugins = None
    for name in [n for n in _loaded if n not in BUILTIN]:
        del _loaded[name]


def is_executor(name: str) -> bool:
    return name in _registered or name in BUILTIN or name in plugin_table()


def known_names(*, scan: bool = True) -> set[str]:
    names = set(BUILTIN) | set(_registered)
    return names | set(plugin_table()) if scan else names


def get_executor(name: str) -> type[Executor]:
    """The executor class for a step key, imported on first use."""
    if name in _registered:
        return _registered[name]
    if name in _loaded:
        return _loaded[name]
    target = BUILTIN.get(name) or plugin_table().get(name)
    if target is None:
        raise ExecutorError(f"no executor named {name!r}")
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ExecutorError(f"executor {name!r} ({target}) cannot be loaded: {exc}") from exc
    _loaded[name] = cls
    return cls
