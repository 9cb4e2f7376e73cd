"""The in-progress inventory that the format readers fill in (mirrors ``InventoryData``).

INI and YAML readers both end up calling the same few operations (add a group, add a host,
make a group a child of another, set a variable), and Ansible enforces its invariants
there: ``all`` and ``ungrouped`` always exist, a child cannot create a loop, a ``:port``
only counts where a host is first seen, ``ansible_group_priority`` is a group setting and
not a variable. Keeping those rules in one builder is what makes a directory mixing INI and
YAML files merge exactly as Ansible merges it. Variables here are still unmerged; the
precedence rules are applied afterwards by ``precedence.build``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .model import InventoryError


@dataclass
class _GroupData:
    name: str
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1


@dataclass
class _HostData:
    name: str
    vars: dict[str, Any] = field(default_factory=dict)


class Builder:
    """Accumulates hosts and groups in creation order, with Ansible's invariants."""

    def __init__(self) -> None:
        self.groups: dict[str, _GroupData] = {}
        self.hosts: dict[str, _HostData] = {}
        self.warnings: list[str] = []
        self.path: Path | None = None  # file currently being parsed, for messages
        self.line: int | None = None
        # Ansible always has these two, with ungrouped under all.
        self.add_group("all")
        self.add_group("ungrouped")
        self.add_child("all", "ungrouped")

    def error(self, message: str, line: int | None = None) -> InventoryError:
        return InventoryError(message, self.path, line if line is not None else self.line)

    def add_group(self, name: Any) -> str:
        if not isinstance(name, str):
            raise self.error(f"invalid group name {name!r}: expected a string, got {type(name).__name__}")
        if not name:
            raise self.error("invalid empty group name")
        if name not in self.groups:
            self.groups[name] = _GroupData(name)
        return name

    def add_host(self, name: str, group: str | None = None, port: int | None = None) -> None:
        if not name:
            raise self.error("invalid empty host name")
        host = self.hosts.get(name)
        if host is None:
            host = self.hosts[name] = _HostData(name)
            # As Ansible: a :port only counts where the host is first seen.
            if port:
                host.vars["ansible_port"] = int(port)
        if group is not None:
            members = self.groups[group].hosts
            if name not in members:
                members.append(name)

    def set_group_var(self, group: str, key: Any, value: Any) -> None:
        if key == "ansible_group_priority":
            # A group setting, not a variable (Group.set_variable in Ansible).
            try:
                self.groups[group].priority = int(value)
            except (TypeError, ValueError):
                raise self.error(
                    f"ansible_group_priority for group {group!r} must be an integer, got {value!r}"
                ) from None
            return
        self.groups[group].vars[key] = value

    def set_host_var(self, host: str, key: Any, value: Any) -> None:
        self.hosts[host].vars[key] = value

    def ancestors(self, group: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[group].parents)
        while todo:
            g = todo.pop()
            if g not in seen:
                seen.add(g)
                todo.extend(self.groups[g].parents)
        return seen

    def add_child(self, parent: str, child: str, line: int | None = None) -> None:
        pgroup = self.groups[parent]
        if child in self.groups:
            if child == parent:
                raise self.error(f"group {child!r} cannot be a child of itself", line)
            if child in pgroup.children:
                return
            if child in self.ancestors(parent):
                raise self.error(
                    f"adding group {child!r} as child to {parent!r} creates a recursive dependency loop", line
                )
            pgroup.children.append(child)
            self.groups[child].parents.append(parent)
        elif child in self.hosts:
            if child not in pgroup.hosts:  # Ansible lets a host stand in for a child group
                pgroup.hosts.append(child)
        else:
            raise self.error(f"{child!r} is not a known host nor group", line)

    def reconcile(self) -> None:
        """Ansible's reconcile_inventory: tie loose groups to all, fix up ungrouped."""
        for name in list(self.groups):
            if name != "all" and not self.groups[name].parents:
                self.add_child("all", name)
        direct: dict[str, set[str]] = {h: set() for h in self.hosts}
        for group in self.groups.values():
            for member in group.hosts:
                direct[member].add(group.name)
        ungrouped = self.groups["ungrouped"]
        for host, groups in direct.items():
            mine = set(groups)
            for gname in groups:
                mine |= self.ancestors(gname)
            if "ungrouped" in mine:
                if mine - {"all", "ungrouped"} and host in ungrouped.hosts:
                    ungrouped.hosts.remove(host)
            elif not mine - {"all"}:
                ungrouped.hosts.append(host)

    def depths(self) -> dict[str, int]:
        """Longest path from all, which is what Ansible's incremental depth ends up as."""
        depth: dict[str, int] = {}

        def visit(name: str) -> int:
            if name not in depth:
                parents = self.groups[name].parents
                depth[name] = 1 + max(visit(p) for p in parents) if parents else 0
            return depth[name]

        for name in self.groups:
            visit(name)
        return depth
