"""The commands on locks: locks (who holds what) and unlock (break one, recorded)."""

from __future__ import annotations

from collections.abc import Callable

# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {}
