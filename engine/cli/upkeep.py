"""The commands that look after the state: prune (old runs and their logs) and state
(info: size, retention; sync: upload a spooled journal)."""

from __future__ import annotations

from collections.abc import Callable

# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {}
