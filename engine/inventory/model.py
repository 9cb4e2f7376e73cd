"""The vocabulary every other inventory module shares: hosts, groups, errors, tagged strings.

This module imports nothing from the rest of the package, so parsers, the precedence merge,
pattern matching and the JSON views can all depend on it without import cycles. The
``Inventory`` that ties hosts and groups together lives in ``inventory.py`` because it
needs pattern matching and the ansible-inventory views, which in turn need these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError


class UnsafeText(str):
    """A string written with YAML ``!unsafe``: Ansible never templates it, so neither should we.

    ``ansible-inventory --list`` prints such values as ``{"__ansible_unsafe": ...}``.
    """


class VaultedText(str):
    """The ciphertext of a YAML ``!vault`` value. We do not decrypt; the runner must not use it as is."""


class InventoryError(InvalidInputError):
    """An inventory that cannot be read, or a host pattern that cannot be evaluated.

    ``path`` and ``line`` say where, when known, so the message reads ``file:line: ...``.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None) -> None:
        self.message = message
        self.path = str(path) if path is not None else None
        self.line = line
        super().__init__(message)

    def __str__(self) -> str:
        if self.path and self.line:
            return f"{self.path}:{self.line}: {self.message}"
        if self.path:
            return f"{self.path}: {self.message}"
        return self.message


@dataclass
class Host:
    """One inventory host with its final, merged variables.

    ``groups`` is Ansible's ``group_names``: every group the host belongs to, directly or
    through a child group, sorted, without ``all``. Values in ``vars`` are untemplated.
    """

    name: str
    vars: dict[str, Any] = field(default_factory=dict)
    groups: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        """Where to connect: ``ansible_host`` if set, else the inventory name."""
        return str(self.vars.get("ansible_host", self.name))

    @property
    def port(self) -> int:
        """``ansible_port`` as an int (22 when unset)."""
        value = self.vars.get("ansible_port", 22)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise InventoryError(f"host {self.name!r}: ansible_port {value!r} is not a port number") from None

    @property
    def user(self) -> str | None:
        """``ansible_user`` if set; None means "whatever the connection defaults to"."""
        value = self.vars.get("ansible_user")
        return None if value is None else str(value)


@dataclass
class Group:
    """One inventory group.

    ``hosts`` are the direct members only (use ``Inventory.match(name)`` for everything
    below the group); ``vars`` is the group's own view as ``ansible-inventory --export``
    prints it: inventory vars, then group_vars files, plus ``ansible_group_priority`` when
    it is not the default 1.
    """

    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    parents: list[str] = field(default_factory=list)
    depth: int = 0
    priority: int = 1
