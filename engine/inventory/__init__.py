"""Ansible inventories, read the way Ansible reads them.

Runbooks usually target machines that are already described by an Ansible inventory, so
runproc reads those files as they are instead of asking for a second copy in another
format. "As they are" is the point of this package: the same hosts, the same groups, the
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

Modules, in the order a load runs through them
----------------------------------------------
* ``loader`` -- ``load_inventory``, the entry point that runs the steps below.
* ``sources`` -- which files are inventories and which format each is read as.
* ``ini`` / ``yamlfile`` -- the two formats (INI value typing is documented in ``ini``,
  YAML typing in ``yamlfile``); both use ``hostnames`` for ``host:port`` and ranges.
* ``builder`` -- the in-progress hosts and groups, with Ansible's invariants.
* ``varsdirs`` -- reading ``group_vars/`` and ``host_vars/``.
* ``precedence`` -- merging all variables in Ansible's order (documented there).
* ``inventory`` -- the resulting ``Inventory``; it queries through ``patterns`` (host
  patterns) and prints through ``export`` (the ansible-inventory JSON shapes).
* ``model`` -- ``Host``, ``Group``, ``InventoryError`` and the ``!unsafe``/``!vault`` strings.
"""

from __future__ import annotations

from .inventory import Inventory
from .loader import load_inventory
from .model import Group, Host, InventoryError, UnsafeText, VaultedText

__all__ = ["Group", "Host", "Inventory", "InventoryError", "UnsafeText", "VaultedText", "load_inventory"]
