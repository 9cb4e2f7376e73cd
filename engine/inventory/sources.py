"""Inventory sources: which files are inventories and which format each one is read as.

A source is a file or a directory of files merged in sorted order, as Ansible does. The
format is picked like Ansible's plugin chain (YAML by extension, INI otherwise, extensionless
files tried as YAML first), so the same file means the same inventory to both tools. What
is refused on purpose (plugin configs, TOML, dynamic inventory scripts) is refused here with
a message that says so, rather than surfacing as a confusing parse error.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .builder import Builder
from .ini import parse_ini
from .model import InventoryError
from .yamlfile import YAML_EXTENSIONS, YamlInventory, load_data

_YAML_INVENTORY_EXTENSIONS = frozenset(YAML_EXTENSIONS)
# Entries of an inventory directory that Ansible never treats as inventory sources.
_IGNORED_DIR_ENTRY = re.compile(
    r"^\.|^host_vars$|^group_vars$|^vars_plugins$"
    r"|(?:\.pyc|\.pyo|\.swp|\.bak|~|\.rpm|\.md|\.txt|\.rst|\.orig|\.cfg|\.retry)$"
)


def read_text(path: Path) -> str:
    """A source or vars file as text; unreadable or non-UTF-8 files become an InventoryError naming the file."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InventoryError(f"not valid UTF-8 ({exc.reason} at byte {exc.start})", path) from None
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", path) from None


def parse_file(path: Path, b: Builder) -> None:
    """Pick the format like Ansible's plugin chain: YAML by extension, INI otherwise.

    Files without an extension are tried as YAML first and read as INI when they are not a
    YAML mapping. Unlike Ansible, a .yml/.yaml/.json file is never re-tried as INI, so a
    YAML typo is reported as such instead of as a confusing INI error.
    """
    b.path, b.line = path, None
    suffix = path.suffix.lower()
    if suffix == ".toml":
        raise InventoryError("TOML inventories are not supported", path)
    text = read_text(path)
    if suffix in _YAML_INVENTORY_EXTENSIONS or not suffix:
        try:
            data, key_lines = load_data(text, path)
        except InventoryError:
            if suffix:
                raise
            data, key_lines = None, {}
        if isinstance(data, dict) and data:
            if data.get("plugin"):
                raise InventoryError(
                    "inventory plugin configuration files are not supported, only static inventories", path
                )
            YamlInventory(b, key_lines).parse(data)
            return
        if suffix:
            if data is None or data == {}:
                return  # empty or comments only: an empty inventory, as Ansible ends up with
            raise InventoryError(
                f"YAML inventory has invalid structure, it should be a mapping, got {type(data).__name__}",
                path,
            )
    try:
        parse_ini(text, b)
    except InventoryError as exc:
        if os.access(path, os.X_OK) and not suffix.startswith(".ini"):
            exc.message += " (executable dynamic inventory scripts are not supported)"
        raise


def parse_dir(directory: Path, b: Builder) -> None:
    """Every inventory file below ``directory``, in sorted order, since later files may extend earlier groups."""
    for entry in sorted(os.listdir(directory)):
        if _IGNORED_DIR_ENTRY.search(entry):
            continue
        path = directory / entry
        if path.is_dir():
            parse_dir(path, b)
        else:
            parse_file(path, b)
