"""The command line: ``app`` parses and runs a procedure; one module per group of other commands
(``inspect``, ``history``, ``replay``, ``plan``), imported only when its command is named, so that
``runproc --version`` and ``validate`` pay for nothing else; ``common`` is what they share."""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INVALID", "RUN_COMMANDS", "SUBCOMMANDS", "main", "main_entry"]


def main_entry() -> None:
    """The console script: the command goes to the warm server if there is one (engine/cli/warm.py:
    it has the engine imported already), else it runs here. Nothing heavy is imported first."""
    import os
    import sys

    # the shell asking for completions is answered here, by app's main_entry
    if not ("_ARGCOMPLETE" in os.environ and "COMP_LINE" in os.environ):
        from .warm import run_warm

        code = run_warm(sys.argv[1:])
        if code is not None:
            os._exit(code)
    from .app import main_entry as here

    here()


def __getattr__(name: str) -> Any:
    # engine.cli.main and friends live in .app, imported on first use
    if name in __all__ and name != "main_entry":
        return getattr(import_module(".app", __name__), name)
    raise AttributeError(f"module 'engine.cli' has no attribute {name!r}")
