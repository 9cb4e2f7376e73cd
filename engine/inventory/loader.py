"""``load_inventory``: the one entry point, from a path to a finished ``Inventory``.

The steps run in Ansible's order and each belongs to another module: read every source into
one builder (``sources``, ``ini``, ``yamlfile``), reconcile the groups (``builder``), then
merge variables including group_vars/host_vars (``precedence``). Keeping the sequence here,
apart from those steps, is what lets each of them be read and tested on its own.
"""

from __future__ import annotations

from pathlib import Path

from .builder import Builder
from .inventory import Inventory
from .model import InventoryError
from .precedence import build
from .sources import parse_dir, parse_file


def load_inventory(path: str | Path) -> Inventory:
    """Read an Ansible inventory file or directory (see the package docstring for what is supported).

    group_vars/ and host_vars/ are looked up beside the file (or inside the directory).
    Raises InventoryError, with ``path`` and ``line`` where known, for anything Ansible
    would reject and for a few things it silently accepts (reversed host ranges).
    """
    source = Path(path)
    if not source.exists():
        raise InventoryError("inventory not found", source)
    b = Builder()
    if source.is_dir():
        parse_dir(source, b)
        vars_base = source
    else:
        parse_file(source, b)
        vars_base = source.parent
    b.path, b.line = source, None
    b.reconcile()
    return build(b, vars_base.resolve(), [source])
