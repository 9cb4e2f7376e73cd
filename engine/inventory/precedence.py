"""Variable precedence: the merged variables every host ends up with.

Getting a single value wrong here means a runbook connects to the wrong port or deploys the
wrong version, so the order is exactly Ansible's default ``VARIABLE_PRECEDENCE``, lowest
first:

1. ``all`` vars written in the inventory,
2. every other group's inventory vars, groups sorted by (depth, ``ansible_group_priority``,
   name) so children beat parents and, at equal depth, higher priority then later names win,
3. ``group_vars/all``,
4. ``group_vars/<group>`` for the host's groups in the same sorted order. Note: *any*
   group_vars file beats *any* inventory group var, even a child group's,
5. the host's own inventory vars (inline, or under ``hosts:`` in YAML; a host listed twice
   keeps the last value),
6. ``host_vars/<host>``.

Merging is Ansible's default ``hash_behaviour=replace``: a dict value replaces, never merges.
``ansible_group_priority`` set in the inventory is a group setting, not a host var; set in a
group_vars file it is just an ordinary variable (both as Ansible does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .builder import Builder
from .inventory import Inventory
from .model import Group, Host
from .varsdirs import load_vars_files


def build(b: Builder, vars_base: Path, sources: list[Path]) -> Inventory:
    """Compute depths, memberships and merged vars: the reconciled, final inventory."""
    b.path, b.line = None, None
    depths = b.depths()
    cache: dict[Path, dict[str, Any]] = {}
    group_vars_dir, host_vars_dir = vars_base / "group_vars", vars_base / "host_vars"
    warn: list[str] = list(b.warnings)
    for d in (group_vars_dir, host_vars_dir):
        if d.exists() and not d.is_dir():
            warn.append(f"found {d} that is not a directory, skipping")
    group_files = {name: load_vars_files(group_vars_dir, name, cache) for name in b.groups}

    groups: dict[str, Group] = {}
    for name, g in b.groups.items():
        own = {**g.vars, **group_files[name]}
        if g.priority != 1:
            own["ansible_group_priority"] = g.priority
        groups[name] = Group(
            name, list(g.hosts), list(g.children), own, list(g.parents), depths[name], g.priority
        )

    memberships: dict[str, set[str]] = {h: set() for h in b.hosts}
    for group in b.groups.values():
        for member in group.hosts:
            memberships[member].add(group.name)
    ancestors = {name: b.ancestors(name) for name in b.groups}

    hosts: dict[str, Host] = {}
    for name, host in b.hosts.items():
        mine: set[str] = set()
        for gname in memberships[name]:
            mine |= {gname} | ancestors[gname]
        mine.discard("all")
        # Ansible's sort_groups: parents before children, then by priority, then by name.
        ordered = sorted(mine, key=lambda n: (depths[n], b.groups[n].priority, n))
        merged: dict[str, Any] = dict(b.groups["all"].vars)
        for gname in ordered:
            merged.update(b.groups[gname].vars)
        merged.update(group_files["all"])
        for gname in ordered:
            merged.update(group_files[gname])
        merged.update(host.vars)
        merged.update(load_vars_files(host_vars_dir, name, cache))
        hosts[name] = Host(name, merged, sorted(mine))
    return Inventory(hosts, groups, sources=sources, warnings=warn)
