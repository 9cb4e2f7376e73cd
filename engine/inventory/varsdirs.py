"""``group_vars/`` and ``host_vars/`` beside an inventory (Ansible's ``host_group_vars`` plugin).

Inventories rarely keep all their variables inline; most live in these directories, so
reading them exactly as Ansible does is what makes our merged host variables match. For a
group or host ``<name>`` the first of ``<name>``, ``<name>.yml``, ``<name>.yaml``,
``<name>.json`` that exists is used; a ``<name>/`` directory contributes all its files in
sorted order (subdirectories included), later files overriding earlier ones. Where these
values rank against inventory variables is ``precedence``'s business, not this module's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .model import InventoryError
from .sources import read_text
from .yamlfile import YAML_EXTENSIONS, load_data


def _vars_dir_files(directory: Path) -> list[Path]:
    """A ``<name>/`` vars directory's files, sorted and recursive; hidden and backup files skipped."""
    found: list[Path] = []
    for entry in sorted(os.listdir(directory)):
        if entry.startswith(".") or entry.endswith("~"):
            continue
        path = directory / entry
        ext = os.path.splitext(entry)[1]
        if path.is_dir() and not ext:
            found.extend(_vars_dir_files(path))
        elif path.is_file() and (not ext or ext in YAML_EXTENSIONS):
            found.append(path)
    return found


def _find_vars_files(base: Path, name: str) -> list[Path]:
    """group_vars/<name>: the bare name first (file or directory), then .yml/.yaml/.json; first hit wins."""
    for ext in ("", *YAML_EXTENSIONS):
        path = base / f"{name}{ext}"
        if path.exists():
            return _vars_dir_files(path) if path.is_dir() else [path]
    return []


def load_vars_files(base: Path, name: str, cache: dict[Path, dict[str, Any]]) -> dict[str, Any]:
    """The merged variables ``base/<name>*`` defines ({} if none).

    ``cache`` is shared across one load so a file is parsed once however many times it is
    asked for. A name that looks like an absolute path is ignored rather than joined to ``base``.
    """
    if not base.is_dir() or name.startswith(os.sep):
        return {}
    merged: dict[str, Any] = {}
    for path in _find_vars_files(base, name):
        if path not in cache:
            data, _ = load_data(read_text(path), path)
            if data and not isinstance(data, dict):
                raise InventoryError(f"vars file must contain a mapping, got {type(data).__name__}", path)
            cache[path] = data or {}
        merged.update(cache[path])
    return merged
