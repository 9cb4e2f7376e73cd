"""Ansible inventories, read the way Ansible reads them.

Runbooks usually target machines that are already described by an Ansible inventory, so
runproc reads those files as they are instead of asking for a second copy in another
format. "As they are" is the point of this module: the same hosts, the same groups, the
same merged variables and the same host-pattern semantics as ``ansible-inventory`` (checked
against ansible-core 2.19 by ``tests/unit/test_inventory.py``), without importing Ansible.

Supported sources
-----------------
* INI inventories (Ansible's ``ini`` plugin): ``[g]``, ``[g:children]``, ``[g:vars]``,
  inline host vars, ``host:port``, host ranges (``web[01:20]``, ``db-[a:c]``,
  ``n[1:10:2]``), ``#``/``;`` comment lines.
* YAML/JSON inventories (Ansible's ``yaml`` plugin): ``all: {hosts, children, vars}``,
  nested groups, ranges in host keys.
* ``group_vars/`` and ``host_vars/`` beside the inventory (the ``host_group_vars`` plugin):
  ``<name>``, ``<name>.yml``, ``<name>.yaml``, ``<name>.json`` or a ``<name>/`` directory.
* A directory of inventory files, merged in sorted file order as Ansible does.

Not supported, on purpose: inventory plugin configs (``plugin: aws_ec2``), executing dynamic
inventory scripts, vault decryption (a ``!vault`` value stays as its ciphertext string) and
Jinja templating (values are returned as written, e.g. ``"{{ x }}"``).

Value typing (verified against ansible-inventory 2.19)
------------------------------------------------------
* INI inline host vars *and* ``[g:vars]`` values both go through ``ast.literal_eval``:
  ``1`` -> int, ``2.5`` -> float, ``True`` -> bool, ``None`` -> null, ``[1, 'x']`` -> list,
  ``0x10`` -> 16, while ``yes``, ``01`` and ``hello world`` stay strings. Host lines are
  split with shlex first (so ``d="a b"`` is the string ``a b`` and ``e='[1, 2]'`` becomes a
  list); ``[g:vars]`` lines are split on the first ``=`` only, so an inline ``# text`` after
  a string value is kept as part of the value.
* YAML values follow YAML 1.1 (PyYAML SafeLoader): ``yes``/``on`` -> true, ``010`` -> 8.
  Dates stay Python dates in ``Host.vars`` and become ISO strings in the JSON views.

Variable precedence (Ansible's default ``VARIABLE_PRECEDENCE``), lowest first
-------------------------------------------------------------------------------
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

import ast
import contextlib
import copy
import fnmatch
import os
import re
import shlex
import string
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Group", "Host", "Inventory", "InventoryError", "UnsafeText", "VaultedText", "load_inventory"]

# Variables ansible-inventory never prints because Ansible owns them (C.INTERNAL_STATIC_VARS).
_INTERNAL_VARS = frozenset(
    {
        "ansible_async_path",
        "ansible_collection_name",
        "ansible_config_file",
        "ansible_dependent_role_names",
        "ansible_diff_mode",
        "ansible_facts",
        "ansible_forks",
        "ansible_inventory_sources",
        "ansible_limit",
        "ansible_play_batch",
        "ansible_play_hosts",
        "ansible_play_hosts_all",
        "ansible_play_role_names",
        "ansible_playbook_python",
        "ansible_role_name",
        "ansible_role_names",
        "ansible_run_tags",
        "ansible_skip_tags",
        "ansible_verbosity",
        "ansible_version",
        "inventory_dir",
        "inventory_file",
        "inventory_hostname",
        "inventory_hostname_short",
        "groups",
        "group_names",
        "hostvars",
        "playbook_dir",
        "play_hosts",
        "role_name",
        "role_names",
        "role_path",
        "role_uuid",
    }
)

_VARS_EXTENSIONS = (".yml", ".yaml", ".json")  # C.YAML_FILENAME_EXTENSIONS
_YAML_INVENTORY_EXTENSIONS = frozenset(_VARS_EXTENSIONS)
# Entries of an inventory directory that Ansible never treats as inventory sources.
_IGNORED_DIR_ENTRY = re.compile(
    r"^\.|^host_vars$|^group_vars$|^vars_plugins$"
    r"|(?:\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry)$"
)
_PROFILE = "inventory_legacy"  # what ansible-core 2.19 prints as _meta.profile


class UnsafeText(str):
    """A string written with YAML ``!unsafe``: Ansible never templates it, so neither should we.

    ``ansible-inventory --list`` prints such values as ``{"__ansible_unsafe": ...}``.
    """


class VaultedText(str):
    """The ciphertext of a YAML ``!vault`` value. We do not decrypt; the runner must not use it as is."""


class InventoryError(Exception):
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


# --------------------------------------------------------------------------------------
# Host addresses and ranges
# --------------------------------------------------------------------------------------

# A [begin:end(:step)] range as Ansible accepts it inside a hostname label.
_ALNUM_RANGE = r"\[(?:[a-z]:[a-z]|[0-9]+:[0-9]+)(?::[0-9]+)?\]"
_NUM_RANGE = r"\[[0-9]+:[0-9]+(?::[0-9]+)?\]"
_HEX_RANGE = re.compile(r"\[[0-9a-f]+:[0-9a-f]+(?::[0-9]+)?\]", re.I)
_LABEL = rf"(?:\w|{_ALNUM_RANGE})(?:[\w-]|{_ALNUM_RANGE})*(?<![_-])"
_HOSTNAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$", re.I)
_IPV4_PART = rf"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]{{1,2}}|{_NUM_RANGE})"
_IPV4 = re.compile(rf"^(?:{_IPV4_PART}\.){{3}}{_IPV4_PART}$")
_BRACKETED_HOSTPORT = re.compile(r"^\[(.+)\]:([0-9]+)$")
# host:port where the host part may contain complete [..] range expressions.
_HOSTPORT = re.compile(r"^((?:[^:\[\]]|\[[^\]]*\])*):([0-9]+)$")
_DIGITS = re.compile(r"^[0-9]+$")  # str.isdigit() would also accept "²"


def _is_ipv6(address: str) -> bool:
    if ":" not in address or "%" in address:
        return False
    import ipaddress  # only for the rare IPv6 host; keeps module import cheap

    try:
        ipaddress.IPv6Address(_HEX_RANGE.sub("0", address))
    except ValueError:
        return False
    return True


def _split_address(address: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` the way Ansible's parse_address does; ValueError if not a host."""
    port: int | None = None
    m = _BRACKETED_HOSTPORT.match(address)
    if m:
        address, port = m.group(1), int(m.group(2))
    m = _HOSTPORT.match(address)
    if m:
        address, port = m.group(1), int(m.group(2))
    if not (_IPV4.match(address) or _is_ipv6(address) or _HOSTNAME.match(address)):
        raise ValueError(f"not a valid network hostname: {address}")
    return address, port


def _expand_ranges(name: str) -> list[str]:
    """Expand the first ``[a:b(:step)]`` in ``name`` and recurse for later ones.

    Deliberately stricter than Ansible in one place: a range whose begin is after its end
    is an error here, where Ansible silently produces no hosts at all.
    """
    start, end_ = name.find("["), name.find("]")
    if end_ < start or "|" in name:
        raise ValueError(f"malformed host range in {name!r}")
    head, body, tail = name[:start], name[start + 1 : end_], name[end_ + 1 :]
    bounds = body.split(":")
    if len(bounds) not in (2, 3):
        raise ValueError(f"host range must be begin:end or begin:end:step, got [{body}]")
    beg, end = bounds[0] or "0", bounds[1]
    if not end:
        raise ValueError(f"host range must specify end value, got [{body}]")
    step_text = bounds[2] if len(bounds) == 3 else "1"
    if not _DIGITS.match(step_text) or int(step_text) < 1:
        raise ValueError(f"host range step must be a positive integer, got [{body}]")
    step = int(step_text)
    width = 0
    if beg[0] == "0" and len(beg) > 1:  # zero padding is kept, so both ends must agree on it
        width = len(beg)
        if len(end) != width:
            raise ValueError(f"host range must specify equal-length begin and end formats, got [{body}]")
    items: Iterable[str]
    letters = string.ascii_letters
    if len(beg) == 1 and len(end) == 1 and beg in letters and end in letters:
        i_beg, i_end = letters.index(beg), letters.index(end)
        if i_beg > i_end:
            raise ValueError(f"host range must have begin <= end, got [{body}]")
        items = letters[i_beg : i_end + 1 : step]
    elif _DIGITS.match(beg) and _DIGITS.match(end):
        if int(beg) > int(end):
            raise ValueError(f"host range must have begin <= end, got [{body}]")
        items = (str(i).zfill(width) for i in range(int(beg), int(end) + 1, step))
    else:
        raise ValueError(f"host range must be numeric or single letters, got [{body}]")
    out: list[str] = []
    for item in items:
        expanded = f"{head}{item}{tail}"
        out.extend(_expand_ranges(expanded) if "[" in expanded else [expanded])
    return out


def _expand_hostpattern(pattern: str) -> tuple[list[str], int | None]:
    """``web[01:03]:2222`` -> (['web01', 'web02', 'web03'], 2222)."""
    try:
        name, port = _split_address(pattern)
    except ValueError:
        # Ansible keeps going with the raw text: odd names are allowed, only ranges matter.
        name, port = pattern, None
    return (_expand_ranges(name) if "[" in name else [name]), port


# --------------------------------------------------------------------------------------
# INI values
# --------------------------------------------------------------------------------------


def _coerce_ini_value(value: Any) -> Any:
    """Normalise what literal_eval produced to the types Ansible keeps for INI values."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="surrogateescape")
    if isinstance(value, list | tuple | set):
        return [_coerce_ini_value(v) for v in value]
    if isinstance(value, dict):
        return {k: _coerce_ini_value(v) for k, v in value.items()}
    if value is ...:
        return "..."
    if isinstance(value, complex):
        return str(value)
    return value


def _ini_value(raw: str) -> Any:
    """Type an INI value as Ansible does: a Python literal if it is one, else the text."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SyntaxWarning)
            value: Any = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    except Exception as exc:  # e.g. {[1]: 2} -> TypeError; Ansible fails the parse too
        raise ValueError(f"cannot evaluate value {raw!r}: {exc}") from None
    return _coerce_ini_value(value)


# --------------------------------------------------------------------------------------
# Building (mirrors ansible.inventory.data.InventoryData)
# --------------------------------------------------------------------------------------


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


class _Builder:
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


# --------------------------------------------------------------------------------------
# INI parsing (mirrors ansible.plugins.inventory.ini)
# --------------------------------------------------------------------------------------

_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def _parse_ini(text: str, b: _Builder) -> None:
    # Groups named in [x:children] or [x:vars] before they are declared; declared later is fine.
    pending: dict[str, dict[str, Any]] = {}

    def add_pending_children(group: str) -> None:
        for parent in pending[group]["parents"]:
            b.add_child(parent, group)
            if parent in pending and pending[parent]["state"] == "children":
                add_pending_children(parent)
        del pending[group]

    group, state = "ungrouped", "hosts"  # lines before any section are ungrouped hosts
    for lineno, raw in enumerate(text.splitlines(), 1):
        b.line = lineno
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        m = _SECTION.match(line)
        if m:
            group, state = m.group(1), m.group(2) or "hosts"
            if state not in ("hosts", "children", "vars"):
                raise b.error(
                    f"section [{group}:{state}] has unknown type: {state} (expected children or vars)"
                )
            if group not in b.groups:
                # [g:vars] alone does not declare a group; remember to check it gets declared.
                if state == "vars" and group not in pending:
                    pending[group] = {"line": lineno, "state": "vars", "parents": []}
                b.add_group(group)
            if group in pending and state != "vars":
                if pending[group]["state"] == "children":
                    add_pending_children(group)
                else:
                    del pending[group]
            continue
        if line.startswith("[") and line.endswith("]"):
            raise b.error(
                f"invalid section entry: {line!r}; make sure there are no spaces in the section entry "
                "and no other invalid characters"
            )
        if state == "hosts":
            _parse_ini_host_line(line, group, b)
        elif state == "vars":
            if "=" not in line:
                raise b.error(f"expected key=value, got: {line}")
            key, value = (part.strip() for part in line.split("=", 1))
            try:
                b.set_group_var(group, key, _ini_value(value))
            except ValueError as exc:
                raise b.error(str(exc)) from None
        else:  # children
            cm = _GROUP_NAME.match(line)
            if not cm:
                raise b.error(f"expected group name, got: {line}")
            child = cm.group(1)
            if child in b.groups:
                b.add_child(group, child)
            elif child in pending:
                pending[child]["parents"].append(group)
            else:
                pending[child] = {"line": lineno, "state": "children", "parents": [group]}
    for name, decl in pending.items():
        if decl["state"] == "vars":
            raise b.error(f"section [{name}:vars] not valid for undefined group {name!r}", decl["line"])
        raise b.error(
            f"section [{decl['parents'][-1]}:children] includes undefined group {name!r}", decl["line"]
        )


def _parse_ini_host_line(line: str, group: str, b: _Builder) -> None:
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise b.error(f"error parsing host definition {line!r}: {exc}") from None
    if not tokens:
        return
    pattern = tokens[0]
    try:
        names, port = _expand_hostpattern(pattern)
    except ValueError as exc:
        raise b.error(str(exc)) from None
    if pattern.strip().endswith(":") and port is None:
        raise b.error(f"invalid host pattern {pattern!r}: ending in ':' is reserved for a port")
    if "---" in (n.strip() for n in names):
        raise b.error(f"invalid host pattern {pattern!r}: '---' is normally a sign this is a YAML file")
    variables: dict[str, Any] = {}
    for token in tokens[1:]:
        if "=" not in token:
            raise b.error(f"expected key=value host variable assignment, got: {token}")
        key, value = token.split("=", 1)
        try:
            variables[key] = _ini_value(value)
        except ValueError as exc:
            raise b.error(str(exc)) from None
    for name in names:
        b.add_host(name, group, port)
        for key, value in variables.items():
            b.set_host_var(name, key, value)


# --------------------------------------------------------------------------------------
# YAML parsing (mirrors ansible.plugins.inventory.yaml)
# --------------------------------------------------------------------------------------

_BaseLoader: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc, valid-type]
    """SafeLoader that also records the line of every mapping key, for file:line errors."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.key_lines: dict[int, dict[Any, int]] = {}
        self.unsafe_depth = 0  # > 0 while building a value tagged !unsafe


def _construct_map(loader: _Loader, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
    data: dict[Any, Any] = {}
    yield data
    data.update(loader.construct_mapping(node))
    lines: dict[Any, int] = {}
    for key_node, _ in node.value:  # flattened by construct_mapping, so merges are included
        with contextlib.suppress(TypeError):  # unhashable keys were already rejected by PyYAML
            lines[loader.construct_object(key_node)] = key_node.start_mark.line + 1
    # Keyed by id(): the dict lives as long as the parsed document we hand back.
    loader.key_lines[id(data)] = lines


def _construct_str(loader: _Loader, node: yaml.ScalarNode) -> str:
    value = loader.construct_scalar(node)
    return UnsafeText(value) if loader.unsafe_depth else value


def _construct_unsafe(loader: _Loader, node: yaml.Node) -> Any:
    # As Ansible: the tag only marks strings (at any depth) as untemplatable; the value is
    # typed as if untagged, so `!unsafe 12` is still the int 12.
    plain = copy.copy(node)
    plain.tag = loader.resolve(type(node), node.value, (True, False))
    loader.unsafe_depth += 1
    try:
        return loader.construct_object(plain, deep=True)
    finally:
        loader.unsafe_depth -= 1


def _construct_vault(loader: _Loader, node: yaml.Node) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        raise yaml.constructor.ConstructorError(
            None, None, "the '!vault' tag requires a string value", node.start_mark
        )
    return VaultedText(loader.construct_scalar(node))


_Loader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_Loader.add_constructor("tag:yaml.org,2002:str", _construct_str)
_Loader.add_constructor("!unsafe", _construct_unsafe)
_Loader.add_constructor("!vault", _construct_vault)


def _load_data(text: str, path: Path) -> tuple[Any, dict[int, dict[Any, int]]]:
    """JSON first, then YAML, like Ansible's DataLoader (it matters: JSON reads 1e3 as a float)."""
    import json

    try:
        return json.loads(text), {}
    except ValueError:
        pass
    loader = _Loader(text)
    try:
        return loader.get_single_data(), loader.key_lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p)
        raise InventoryError(f"invalid YAML: {problem}", path, mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"invalid YAML: {exc}", path) from None
    finally:
        loader.dispose()


class _YamlInventory:
    def __init__(self, b: _Builder, key_lines: dict[int, dict[Any, int]]) -> None:
        self.b = b
        self.key_lines = key_lines

    def line_of(self, mapping: Any, key: Any, default: int | None) -> int | None:
        return self.key_lines.get(id(mapping), {}).get(key, default) if _hashable(key) else default

    def parse(self, data: dict[Any, Any]) -> None:
        for name, group_data in data.items():
            self.group(name, group_data, self.line_of(data, name, None))

    def group(self, name: Any, data: Any, line: int | None) -> Any:
        b = self.b
        b.line = line
        if not isinstance(data, dict | None):
            b.warnings.append(f"{b.path}:{line}: skipping {name!r}: not a valid group definition")
            return name
        name = b.add_group(name)
        if data is None:
            return name
        sections: dict[str, Any] = {}
        for key, value in data.items():
            key_line = self.line_of(data, key, line)
            if key in ("vars", "children", "hosts"):
                if isinstance(value, str):  # `hosts: web1` is shorthand for {web1: null}
                    value = {value: None}
                if not isinstance(value, dict | None):
                    raise b.error(
                        f'invalid "{key}" entry for "{name}" group, requires a dictionary, '
                        f'found "{type(value).__name__}" instead',
                        key_line,
                    )
            elif value is not None and not isinstance(value, dict):
                b.warnings.append(
                    f"{b.path}:{key_line}: skipping key {key!r} in group {name!r}: not a mapping"
                )
                continue
            sections[key] = (value, key_line)
        for key, (value, key_line) in sections.items():
            if value is None:
                continue
            if key == "vars":
                for var, var_value in value.items():
                    b.line = self.line_of(value, var, key_line)
                    b.set_group_var(name, var, var_value)
            elif key == "children":
                for child, child_data in value.items():
                    child_line = self.line_of(value, child, key_line)
                    child = self.group(child, child_data, child_line)
                    b.line = child_line
                    if not isinstance(child, str):
                        raise b.error(f"invalid group name {child!r}: expected a string")
                    b.add_child(name, child)
            elif key == "hosts":
                for pattern, host_vars in value.items():
                    b.line = self.line_of(value, pattern, key_line)
                    self.hosts(name, pattern, host_vars)
            else:
                b.warnings.append(
                    f"{b.path}:{key_line}: skipping unexpected key {key!r} in group {name!r}, "
                    'only "vars", "children" and "hosts" are valid'
                )
        return name

    def hosts(self, group: str, pattern: Any, host_vars: Any) -> None:
        b = self.b
        if not isinstance(pattern, str):
            raise b.error(
                f"host pattern {pattern!r} must be a string; enclose integers/floats in quotation marks"
            )
        try:
            names, port = _expand_hostpattern(pattern)
        except ValueError as exc:
            raise b.error(str(exc)) from None
        host_vars = host_vars or {}
        if not isinstance(host_vars, dict):
            raise b.error(f"vars of host {pattern!r} must be a mapping, got {type(host_vars).__name__}")
        for host in names:
            b.add_host(host, group, port)
            for key, value in host_vars.items():
                b.set_host_var(host, key, value)


def _hashable(value: Any) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


# --------------------------------------------------------------------------------------
# Sources and vars files
# --------------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path) from None
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", path) from None


def _parse_file(path: Path, b: _Builder) -> None:
    """Pick the format like Ansible's plugin chain: YAML by extension, INI otherwise.

    Files without an extension are tried as YAML first and read as INI when they are not a
    YAML mapping. Unlike Ansible, a .yml/.yaml/.json file is never re-tried as INI, so a
    YAML typo is reported as such instead of as a confusing INI error.
    """
    b.path, b.line = path, None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        raise InventoryError("TOML inventories are not supported", path)
    text = _read_text(path)
    if suffix in _YAML_INVENTORY_EXTENSIONS or not suffix:
        try:
            data, key_lines = _load_data(text, path)
        except InventoryError:
            if suffix:
                raise
            data, key_lines = None, {}
        if isinstance(data, dict) and data:
            if data.get("plugin"):
                raise InventoryError(
                    "inventory plugin configuration files are not supported, only static inventories", path
                )
            _YamlInventory(b, key_lines).parse(data)
            return
        if suffix:
            if data is None or data == {}:
                return  # empty or comments only: an empty inventory, as Ansible ends up with
            raise InventoryError(
                f"YAML inventory has invalid structure, it should be a mapping, got {type(data).__name__}",
                path,
            )
    try:
        _parse_ini(text, b)
    except InventoryError as exc:
        if os.access(path, os.X_OK) and not suffix.startswith(".ini"):
            exc.message += " (executable dynamic inventory scripts are not supported)"
        raise


def _parse_dir(directory: Path, b: _Builder) -> None:
    for entry in sorted(os.listdir(directory)):
        if _IGNORED_DIR_ENTRY.search(entry):
            continue
        path = directory / entry
        if path.is_dir():
            _parse_dir(path, b)
        else:
            _parse_file(path, b)


def _vars_dir_files(directory: Path) -> list[Path]:
    found: list[Path] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        path = directory / entry
        ext = os.path.splitext(entry)[1]
        if path.is_dir() and not ext:
            found.extend(_vars_dir_files(path))
        elif path.is_file() and (not ext or ext in _VARS_EXTENSIONS):
            found.append(path)
    return found


def _find_vars_files(base: Path, name: str) -> list[Path]:
    """group_vars/<name>: the bare name first (file or directory), then .yml/.yaml/.json; first hit wins."""
    for ext in ("", *_VARS_EXTENSIONS):
        path = base / f"{name}{ext}"
        if path.exists():
            return _vars_dir_files(path) if path.is_dir() else [path]
    return []


def _load_vars_files(base: Path, name: str, cache: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    if not base.is_dir() or name.startswith(os.sep):
        return {}
    merged: dict[str, Any] = {}
    for path in _find_vars_files(base, name):
        if path not in cache:
            data, _ = _load_data(_read_text(path), path)
            if data and not isinstance(data, dict):
                raise InventoryError(f"vars file must contain a mapping, got {type(data).__name__}", path)
            cache[path] = data or {}
        merged.update(cache[path])
    return merged


# --------------------------------------------------------------------------------------
# Host patterns (mirrors ansible.inventory.manager)
# --------------------------------------------------------------------------------------

_COLON_PARTS = re.compile(r"(?:[^\s:\[\]]|\[[^\]]*\])+")
_BALANCED_BRACKETS = re.compile(r"^(?:[^\[\]]|\[[^\[\]]*\])*$")
_SUBSCRIPT = re.compile(r"^(.+)\[(?:(-?[0-9]+)|([0-9]+)([:-])([0-9]*))\]$")


def _split_pattern(pattern: str) -> list[str]:
    """Split a host pattern into parts: commas, else colons outside [..] (IPv6 stays whole)."""
    if "," in pattern:
        parts = pattern.split(",")
    else:
        try:
            _split_address(pattern)
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


# --------------------------------------------------------------------------------------
# The inventory
# --------------------------------------------------------------------------------------


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
        if not isinstance(pattern, str) or not pattern.strip():
            raise InventoryError(f"empty host pattern {pattern!r}")
        parts = _split_pattern(pattern)
        if not parts:
            raise InventoryError(f"malformed host pattern {pattern!r}: nothing to match")
        regular = [p for p in parts if p[0] not in "&!"]
        ordered = (regular or ["all"]) + [p for p in parts if p[0] == "&"] + [p for p in parts if p[0] == "!"]
        selected: dict[str, None] = {}
        for part in ordered:
            if part in self.hosts:
                selected[part] = None
                continue
            found = self._match_one(part[1:] if part[0] in "&!" else part, pattern)
            if part[0] == "!":
                drop = set(found)
                selected = {h: None for h in selected if h not in drop}
            elif part[0] == "&":
                keep = set(found)
                selected = {h: None for h in selected if h in keep}
            else:
                selected.update(dict.fromkeys(found))
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

    def _subset(self, keep: set[str]) -> Inventory:
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
        return [self.hosts[h] for h in self._group_host_names(name)]

    def _group_host_names(self, name: str) -> list[str]:
        # Breadth-first from the group, as Ansible's Group.get_hosts walks it.
        order: list[str] = []
        seen: set[str] = {name}
        queue: list[str] = [name]
        while queue:
            g = queue.pop(0)
            order.append(g)
            for child in self.groups[g].children:
                if child not in seen:
                    seen.add(child)
                    queue.append(child)
        names: dict[str, None] = {}
        for g in order:
            names.update(dict.fromkeys(h for h in self.groups[g].hosts if h in self.hosts))
        return list(names)

    def _match_one(self, expr: str, whole: str) -> list[str]:
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
        matched_groups = [g for g in self.groups if regex.match(g)]
        for g in matched_groups:
            results.extend(self._group_host_names(g))
        if not matched_groups or expr[0] == "~" or any(c in expr for c in ".?*["):
            results.extend(h for h in self.hosts if regex.match(h))
        if subscript and results:
            start, end = subscript
            try:
                if end:  # Ansible treats [x:0] like [x]
                    results = results[start : (len(results) - 1 if end == -1 else end) + 1]
                else:
                    results = [results[start]]
            except IndexError:
                raise InventoryError(
                    f"no hosts matched the subscripted pattern {part!r} in {whole!r}"
                ) from None
        return results

    # -- ansible-inventory views --------------------------------------------------------

    def to_ansible_list(self) -> dict[str, Any]:
        """What ``ansible-inventory -i INV --list`` prints (with ``--limit``, for a limited copy)."""
        result: dict[str, Any] = {}
        seen: set[str] = set()

        def emit(name: str) -> None:
            group = self.groups[name]
            entry: dict[str, Any] = {}
            if name != "all":
                entry["hosts"] = [h for h in group.hosts if h in self.hosts]
            entry["children"] = list(group.children)
            for child in group.children:
                if child not in seen:
                    seen.add(child)
                    emit(child)
            entry = {k: v for k, v in entry.items() if v}
            if entry:  # Ansible drops groups with neither hosts nor children (still listed as children)
                result[name] = entry

        emit("all")
        hostvars = {
            name: _json_value(v, mark_unsafe=True)
            for name in self.hosts
            if (v := _public_vars(self.hosts[name].vars))
        }
        result["_meta"] = {"hostvars": hostvars, "profile": _PROFILE}
        return result

    def host_vars_json(self, name: str) -> dict[str, Any]:
        """What ``ansible-inventory -i INV --host NAME`` prints."""
        if name not in self.hosts:
            raise InventoryError(f"unknown host {name!r}")
        return _json_value(_public_vars(self.hosts[name].vars), mark_unsafe=False)


def _public_vars(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if k not in _INTERNAL_VARS}


def _json_value(value: Any, *, mark_unsafe: bool) -> Any:
    """``value`` as ansible-inventory's JSON encoder would print it, already parsed back.

    Vaulted values always print as ``{"__ansible_vault": ...}``; ``!unsafe`` strings print as
    ``{"__ansible_unsafe": ...}`` only inside ``--list`` hostvars (``--host`` shows them plain).
    """
    if isinstance(value, VaultedText):
        return {"__ansible_vault": str(value)}
    if isinstance(value, UnsafeText) and mark_unsafe:
        return {"__ansible_unsafe": str(value)}
    if isinstance(value, str):
        return str(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, dict):
        return {_json_key(k): _json_value(v, mark_unsafe=mark_unsafe) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v, mark_unsafe=mark_unsafe) for v in value]
    if hasattr(value, "isoformat"):  # YAML dates and timestamps
        return value.isoformat()
    if isinstance(value, bytes):  # YAML !!binary
        return value.decode("utf-8", errors="replace")
    return str(value)


def _json_key(key: Any) -> str:
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, bool | int | float):
        import json

        return json.dumps(key)  # what json.dumps does to a non-string key: True -> "true", 1 -> "1"
    return str(key)


def _build(b: _Builder, vars_base: Path, sources: list[Path]) -> Inventory:
    """Compute depths, memberships and merged vars: the reconciled, final inventory."""
    b.path, b.line = None, None
    depths = b.depths()
    cache: dict[Path, dict[str, Any]] = {}
    group_vars_dir, host_vars_dir = vars_base / "group_vars", vars_base / "host_vars"
    warn: list[str] = list(b.warnings)
    for d in (group_vars_dir, host_vars_dir):
        if d.exists() and not d.is_dir():
            warn.append(f"found {d} that is not a directory, skipping")
    group_files = {name: _load_vars_files(group_vars_dir, name, cache) for name in b.groups}

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
        merged.update(_load_vars_files(host_vars_dir, name, cache))
        hosts[name] = Host(name, merged, sorted(mine))
    return Inventory(hosts, groups, sources=sources, warnings=warn)


def load_inventory(path: str | Path) -> Inventory:
    """Read an Ansible inventory file or directory (see the module docstring for what is supported).

    group_vars/ and host_vars/ are looked up beside the file (or inside the directory).
    Raises InventoryError, with ``path`` and ``line`` where known, for anything Ansible
    would reject and for a few things it silently accepts (reversed host ranges).
    """
    source = Path(path)
    if not source.exists():
        raise InventoryError("inventory not found", source)
    b = _Builder()
    if source.is_dir():
        _parse_dir(source, b)
        vars_base = source
    else:
        _parse_file(source, b)
        vars_base = source.parent
    b.path, b.line = source, None
    b.reconcile()
    return _build(b, vars_base.resolve(), [source])
