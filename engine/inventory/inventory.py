"""The loaded inventory: hosts and groups with their final variables, and the ways to query it.

Everything the rest of runproc does with an inventory goes through this class (pick hosts by
pattern, narrow with ``--limit``, print the ansible-inventory views), so it stays a thin
facade: the pattern semantics live in ``patterns`` and the JSON shapes in ``export``, and
loading (``loader.load_inventory``) builds an instance from already merged hosts and groups.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from .export import ansible_host, ansible_list
from .model import Group, Host, InventoryError
from .patterns import group_host_names, select


class Inventory:
    """Hosts and groups of one inventory source, with Ansible's merged variables.

    ``hosts`` is in inventory (file) order. ``match`` evaluates Ansible host patterns;
    ``limit`` returns a narrowed copy, which is how ``--limit`` is meant to be applied
    (``inventory.limit(args.limit).match(procedure_hosts)``), exactly like Ansible's subset.
    """

    def __init__(
        self,
        hosts: dict[str, Host],
        groups: dict[str, Group],
        *,
        sources: list[Path] | None = None,
        warnings: list[str] | None = None,
    ) -> None:
        self.hosts = hosts
        self.groups = groups
        self.sources = sources or []
        self.warnings = warnings or []
        self._order = {name: i for i, name in enumerate(hosts)}

    def __repr__(self) -> str:
        return f"<Inventory {len(self.hosts)} hosts, {len(self.groups)} groups from {[str(s) for s in self.sources]}>"

    # -- patterns ---------------------------------------------------------------------

    def match(self, pattern: str) -> list[Host]:
        """Hosts matching an Ansible host pattern, in inventory order, without duplicates.

        ``all``/``*``, host and group names, globs (``web*``, ``db-?``), ``~regex``,
        subscripts (``web[0]``, ``web[1:3]``), unions (``a:b``, ``a,b``), intersections
        (``a:&b``) and exclusions (``a:!b``). As in Ansible the parts are applied unions
        first, then intersections, then exclusions, whatever order they are written in, and
        a pattern of only ``&``/``!`` parts starts from ``all``. An exact host name wins over
        a group of the same name. Names that match nothing contribute nothing (no error).

        Differences from Ansible, on purpose: the result is in inventory order (Ansible
        lists the hosts of each pattern part in turn), there is no implicit ``localhost``,
        and an empty or malformed pattern raises InventoryError instead of meaning ``all``.
        """
        selected = select(self.hosts, self.groups, pattern)
        return [self.hosts[name] for name in sorted(selected, key=self._order.__getitem__)]

    def limit(self, pattern: str) -> Inventory:
        """A copy restricted to the hosts matching ``pattern`` (Ansible's ``--limit``).

        Groups keep their structure (a group may end up with no hosts). ``@file`` reads one
        pattern per line from a file, as ``--limit @retry_file`` does in Ansible.
        """
        if pattern.startswith("@"):
            lines = Path(pattern[1:]).read_text(encoding="utf-8").split("\n")
            pattern = ",".join(line.strip() for line in lines if line.strip())
            if not pattern:
                return self._subset(set())
        return self._subset({h.name for h in self.match(pattern)})

    def targets(self, on: str, limit: str | None = None) -> tuple[list[Host], str | None]:
        """The hosts a step's ``on:`` pattern (rendered) picks, narrowed by ``--limit``, and a
        note when none is left: an optional pattern (``?web``) that matches nothing, or a
        limit that leaves none of its hosts. A run and a plan sent to Temporal choose alike.

        Raises InventoryError for a pattern that matches nothing (unless optional), a limit
        that matches no host of the inventory, or a pattern the inventory cannot read.
        """
        optional = on.startswith("?")
        pattern = on.removeprefix("?").strip()
        matched = self.match(pattern)
        selected = matched
        if limit:
            limited = self.limit(limit)
            if not limited.hosts:
                raise InventoryError(f"--limit {limit!r} matches no host in the inventory")
            selected = limited.match(pattern)
        if not matched:
            if not optional:
                raise InventoryError(f"no host in the inventory matches {pattern!r} "
                                     f"(write on: \"?{pattern}\" if that may be normal)")
            return [], f"no host matches the optional pattern {pattern!r}"
        if not selected:
            return [], f"--limit {limit!r} leaves none of the {len(matched)} host(s) of {pattern!r}"
        return selected, None

    def _subset(self, keep: set[str]) -> Inventory:
        """A copy with only ``keep``; hosts and groups are copied so the original never changes."""
        hosts = {
            name: replace(h, vars=dict(h.vars), groups=list(h.groups))
            for name, h in self.hosts.items()
            if name in keep
        }
        groups = {
            name: replace(
                g,
                hosts=[h for h in g.hosts if h in keep],
                children=list(g.children),
                vars=dict(g.vars),
                parents=list(g.parents),
            )
            for name, g in self.groups.items()
        }
        return Inventory(hosts, groups, sources=list(self.sources), warnings=list(self.warnings))

    def group_hosts(self, name: str) -> list[Host]:
        """Hosts of group ``name`` and all its descendants, in Ansible's group order."""
        if name not in self.groups:
            raise InventoryError(f"unknown group {name!r}")
        return [self.hosts[h] for h in group_host_names(self.hosts, self.groups, name)]

    # -- ansible-inventory views --------------------------------------------------------

    def to_ansible_list(self) -> dict[str, Any]:
        """What ``ansible-inventory -i INV --list`` prints (with ``--limit``, for a limited copy)."""
        return ansible_list(self.hosts, self.groups)

    def host_vars_json(self, name: str) -> dict[str, Any]:
        """What ``ansible-inventory -i INV --host NAME`` prints."""
        if name not in self.hosts:
            raise InventoryError(f"unknown host {name!r}")
        return ansible_host(self.hosts[name])
