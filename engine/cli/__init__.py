"""The command line: ``app`` parses and runs a procedure; one module per group of other commands
(``inspect``, ``history``, ``replay``, ``plan``), imported only when its command is named, so that
``runproc --version`` and ``validate`` pay for nothing else; ``common`` is what they share."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INVALID", "RUN_COMMANDS", "SUBCOMMANDS", "main", "main_entry"]


def __getattr__(name: str) -> Any:
    # engine.cli.main and friends live in .app, imported on first use
    if name in __all__:
        return getattr(import_module(".app", __name__), name)
    raise AttributeError(f"module 'engine.cli' has no attribute {name!r}")
