"""The JSON that ``ansible-inventory --list`` and ``--host`` print, built from our inventory.

``runproc inventory`` prints these shapes so existing tooling keeps working, and the parity
tests compare them with the real ``ansible-inventory`` output, which makes them the contract
for everything upstream (parsing, precedence). So this module copies Ansible's quirks on
purpose: Ansible-owned variables are hidden, groups with neither hosts nor children are left
out of the listing, ``!vault`` and ``!unsafe`` values print as their marker objects, and
dates print as ISO strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import Group, Host, UnsafeText, VaultedText

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

_PROFILE = "inventory_legacy"  # what ansible-core 2.19 prints as _meta.profile


def ansible_list(hosts: Mapping[str, Host], groups: Mapping[str, Group]) -> dict[str, Any]:
    """``--list``: groups walked from ``all`` depth-first, then ``_meta.hostvars`` for every host."""
    result: dict[str, Any] = {}
    seen: set[str] = set()

    def emit(name: str) -> None:
        group = groups[name]
        entry: dict[str, Any] = {}
        if name != "all":
            entry["hosts"] = [h for h in group.hosts if h in hosts]
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
        name: _json_value(v, mark_unsafe=True) for name in hosts if (v := _public_vars(hosts[name].vars))
    }
    result["_meta"] = {"hostvars": hostvars, "profile": _PROFILE}
    return result


def ansible_host(host: Host) -> dict[str, Any]:
    """``--host NAME``: the host's public variables, ``!unsafe`` strings shown plain."""
    return _json_value(_public_vars(host.vars), mark_unsafe=False)


def _public_vars(values: dict[str, Any]) -> dict[str, Any]:
    """Without the variables Ansible owns, which ansible-inventory never prints."""
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
    """A dict key as JSON would write it: YAML allows non-string keys, JSON objects do not."""
    if isinstance(key, str):
        return str(key)
    if key is None or isinstance(key, bool | int | float):
        import json

        return json.dumps(key)  # what json.dumps does to a non-string key: True -> "true", 1 -> "1"
    return str(key)
