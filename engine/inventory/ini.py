"""INI inventories (mirrors ``ansible.plugins.inventory.ini``), including how values are typed.

Sections are ``[g]`` (hosts), ``[g:children]`` and ``[g:vars]``; lines starting with ``#``
or ``;`` are comments; host lines take inline ``key=value`` vars, ``host:port`` and host
ranges (``web[01:20]``, ``db-[a:c]``, ``n[1:10:2]``, expanded by ``hostnames``). A group
named in ``[x:children]`` or ``[x:vars]`` may be declared further down the file, as in
Ansible; one never declared at all is an error.

Value typing (verified against ansible-inventory 2.19): inline host vars *and* ``[g:vars]``
values both go through ``ast.literal_eval``: ``1`` -> int, ``2.5`` -> float, ``True`` ->
bool, ``None`` -> null, ``[1, 'x']`` -> list, ``0x10`` -> 16, while ``yes``, ``01`` and
``hello world`` stay strings. Host lines are split with shlex first (so ``d="a b"`` is the
string ``a b`` and ``e='[1, 2]'`` becomes a list); ``[g:vars]`` lines are split on the
first ``=`` only, so an inline ``# text`` after a string value is kept as part of the value.
"""

from __future__ import annotations

import ast
import re
import shlex
import warnings
from typing import Any

from .builder import Builder
from .hostnames import expand_hostpattern


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


_SECTION = re.compile(r"^\[([^:\]\s]+)(?::(\w+))?\]\s*(?:#.*)?$")
_GROUP_NAME = re.compile(r"^([^:\]\s]+)\s*(?:#.*)?$")


def parse_ini(text: str, b: Builder) -> None:
    """Read INI ``text`` into ``b``; ``b.line`` tracks the line so every error says where."""
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


def _parse_ini_host_line(line: str, group: str, b: Builder) -> None:
    """One ``pattern [key=value ...]`` line: every host the pattern expands to gets the vars."""
    try:
        tokens = shlex.split(line, comments=True)
    except ValueError as exc:
        raise b.error(f"error parsing host definition {line!r}: {exc}") from None
    if not tokens:
        return
    pattern = tokens[0]
    try:
        names, port = expand_hostpattern(pattern)
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
