"""YAML and JSON: the data loader Ansible uses, and the YAML inventory format.

Two jobs that share one loader. ``load_data`` reads any YAML/JSON file (inventories and
group_vars/host_vars alike) the way Ansible's DataLoader does: JSON first, then YAML 1.1 via
PyYAML's SafeLoader (``yes``/``on`` -> true, ``010`` -> 8; dates stay Python dates), with
``!unsafe`` and ``!vault`` understood and the line of every mapping key recorded so errors
can say ``file:line``. ``YamlInventory`` then walks ``all: {hosts, children, vars}`` like
``ansible.plugins.inventory.yaml``, nested groups and ranges in host keys included.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from .builder import Builder
from .hostnames import expand_hostpattern
from .model import InventoryError, UnsafeText, VaultedText

YAML_EXTENSIONS = (".yml", ".yaml", ".json")  # C.YAML_FILENAME_EXTENSIONS

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


def load_data(text: str, path: Path) -> tuple[Any, dict[int, dict[Any, int]]]:
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


class YamlInventory:
    """Walks a parsed YAML inventory into a Builder, using the recorded key lines for errors.

    Like Ansible, a group whose definition is not a mapping, or an unknown key in a group,
    is skipped with a warning rather than failing the whole inventory.
    """

    def __init__(self, b: Builder, key_lines: dict[int, dict[Any, int]]) -> None:
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
            names, port = expand_hostpattern(pattern)
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
