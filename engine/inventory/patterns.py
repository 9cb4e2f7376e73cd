"""Ansible host patterns (mirrors ``ansible.inventory.manager``): which hosts a pattern means.

Procedures name their targets with the same patterns people already pass to ``ansible
-l``, so the semantics must be Ansible's, including the surprising ones (parts are applied
unions first, then ``&`` intersections, then ``!`` exclusions, whatever order they are
written in; an exact host name beats a group of the same name). These are plain functions
over the final hosts and groups; ``Inventory.match`` and ``Inventory.limit`` are the public
entry points and document the deliberate differences from Ansible.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

from .hostnames import split_address
from .model import Group, Host, InventoryError

_COLON_PARTS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_BALANCED_BRACKETS = re.compile(r"^(?:[^\[\]]|\[[^\[\]]*\])*$")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")


def _split_pattern(pattern: str) -> list[str]:
    """Split a host pattern into parts: commas, else colons outside [..] (IPv6 stays whole)."""
    if "," in pattern:
        parts = pattern.split(",")
    else:
        try:
            split_address(pattern)
            parts = [pattern]
        except ValueError:
            parts = _COLON_PARTS.findall(pattern)
        if _COLON_PARTS.sub("", pattern).strip(": \t\n"):
            # Ansible silently drops such characters (e.g. an unclosed '['); we refuse.
            raise InventoryError(f"malformed host pattern {pattern!r}: unbalanced brackets")
    parts = [p.strip() for p in parts if p.strip()]
    for part in parts:
        body = part[1:] if part[0] in "&!" else part
        if not body:
            raise InventoryError(f"malformed host pattern {pattern!r}: {part!r} has nothing to match")
        if body[0] != "~" and not _BALANCED_BRACKETS.match(body):
            raise InventoryError(f"malformed host pattern {pattern!r}: unbalanced brackets in {part!r}")
    return parts


def check_pattern(pattern: str) -> None:
    """Raise ValueError (InventoryError) for a pattern that cannot match anything as written,
    before any inventory is read: ``--limit`` is checked before a run starts."""
    for part in _split_pattern(pattern):
        body = part.lstrip("&!")
        if body.startswith("~"):
            try:
                re.compile(body[1:])
            except re.error as exc:
                raise InventoryError(f"invalid host pattern {body!r} in {pattern!r}: {exc}") from None


def select(hosts: Mapping[str, Host], groups: Mapping[str, Group], pattern: str) -> list[str]:
    """Names of the hosts ``pattern`` selects, without duplicates (the caller puts them in order).

    Raises InventoryError for an empty or malformed pattern, or a subscript out of range.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise InventoryError(f"empty host pattern {pattern!r}")
    parts = _split_pattern(pattern)
    if not parts:
        raise InventoryError(f"malformed host pattern {pattern!r}: nothing to match")
    regular = [p for p in parts if p[0] not in "&!"]
    ordered = (regular or ["all"]) + [p for p in parts if p[0] == "&"] + [p for p in parts if p[0] == "!"]
    selected: dict[str, None] = {}
    for part in ordered:
        if part in hosts:
            selected[part] = None
            continue
        found = _match_one(hosts, groups, part[1:] if part[0] in "&!" else part, pattern)
        if part[0] == "!":
            drop = set(found)
            selected = {h: None for h in selected if h not in drop}
        elif part[0] == "&":
            keep = set(found)
            selected = {h: None for h in selected if h in keep}
        else:
            selected.update(dict.fromkeys(found))
    return list(selected)


def group_host_names(hosts: Mapping[str, Host], groups: Mapping[str, Group], name: str) -> list[str]:
    """Hosts of group ``name`` and all its descendants, in the order Ansible's Group.get_hosts gives."""
    # Breadth-first from the group, as Ansible's Group.get_hosts walks it.
    order: list[str] = []
    seen: set[str] = {name}
    queue: list[str] = [name]
    while queue:
        g = queue.pop(0)
        order.append(g)
        for child in groups[g].children:
            if child not in seen:
                seen.add(child)
                queue.append(child)
    names: dict[str, None] = {}
    for g in order:
        names.update(dict.fromkeys(h for h in groups[g].hosts if h in hosts))
    return list(names)


def _match_one(hosts: Mapping[str, Host], groups: Mapping[str, Group], expr: str, whole: str) -> list[str]:
    """One pattern part without its ``&``/``!``: groups and hosts by glob or ``~regex``, then any subscript."""
    subscript: tuple[int, int | None] | None = None
    part = expr
    if expr[0] != "~":
        m = _SUBSCRIPT.match(expr)
        if m:
            expr, index, start, _sep, end = m.groups()
            subscript = (int(index), None) if index else (int(start), int(end) if end else -1)
    try:
        regex = re.compile(expr[1:]) if expr[0] == "~" else re.compile(fnmatch.translate(expr))
    except re.error as exc:
        raise InventoryError(f"invalid host pattern {expr!r} in {whole!r}: {exc}") from None
    results: list[str] = []
    matched_groups = [g for g in groups if regex.match(g)]
    for g in matched_groups:
        results.extend(group_host_names(hosts, groups, g))
    if not matched_groups or expr[0] == "~" or any(c in expr for c in ".?*["):
        results.extend(h for h in hosts if regex.match(h))
    if subscript and results:
        start, end = subscript
        try:
            results = (
                results[start : (len(results) - 1 if end == -1 else end) + 1]
                if end  # Ansible treats [x:0] like [x]
                else [results[start]]
            )
        except IndexError:
            raise InventoryError(f"no hosts matched the subscripted pattern {part!r} in {whole!r}") from None
    return results
