"""Read a YAML file into plain Python values, remembering where every node came from.

Why not ``yaml.safe_load``: it forgets positions, silently keeps the last of two duplicate
keys, expands aliases without bound, and applies YAML 1.1's surprises (``on``/``yes``/``no``
become booleans, ``0755`` an octal int, ``1:30`` the int 90). We compose the node graph with
PyYAML (its C parser when present) and construct values ourselves with YAML 1.2 core rules:
only ``true``/``false`` are booleans, only decimal, ``0o`` and ``0x`` forms are ints; anything
else plain is a string, so the schema reports it instead of coercing it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Problem, ProcedureError

try:  # the C parser is several times faster on large files
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_EXPANDED_NODES = 500_000  # after alias expansion; a 10,000-step file has ~100,000

Path_ = tuple[Any, ...]

_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_NULLS = {"", "~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {".inf": math.inf, "+.inf": math.inf, "-.inf": -math.inf, ".nan": math.nan,
                   ".Inf": math.inf, "-.Inf": -math.inf, ".NaN": math.nan}

_STR_TAG = "tag:yaml.org,2002:str"
_KNOWN_TAGS = {_STR_TAG, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float",
               "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null", "tag:yaml.org,2002:map",
               "tag:yaml.org,2002:seq", "tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:merge",
               "tag:yaml.org,2002:binary"}


@dataclass
class Source:
    """A parsed document: its data and the position of every value and mapping key."""

    file: str
    data: Any
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)

    def where(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Position of the node at ``path`` (its key when ``key``), else its nearest parent."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: Path_, message: str, *, key: bool = False, hint: str | None = None) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, message, hint)


def scalar_value(node: yaml.ScalarNode) -> Any:
    """YAML 1.2 core schema for plain scalars; quoted scalars are always strings."""
    text = node.value
    if node.tag == _STR_TAG and node.style not in (None, ""):
        return text
    if node.style not in (None, ""):
        return text
    if node.tag == _STR_TAG and not _looks_typed(text):
        return text
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.match(text):
        return int(text)
    if text.startswith(("0x", "0X")) and re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return int(text, 16)
    if text.startswith(("0o", "0O")) and re.fullmatch(r"0[oO][0-7]+", text):
        return int(text, 8)
    if _FLOAT.match(text) and any(c in text for c in ".eE"):
        return float(text)
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    return text


def _looks_typed(text: str) -> bool:
    return text in _NULLS or text in _BOOLS or bool(_INT.match(text)) or bool(_FLOAT.match(text))


def _expanded_size(node: yaml.Node, memo: dict[int, int], limit: int) -> int:
    """Number of nodes once aliases are expanded, computed in linear time over the graph."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # guards against recursive aliases
    total = 1
    if isinstance(node, yaml.SequenceNode):
        for child in node.value:
            total += _expanded_size(child, memo, limit)
            if total > limit:
                break
    elif isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            total += _expanded_size(k, memo, limit) + _expanded_size(v, memo, limit)
            if total > limit:
                break
    memo[key] = total
    return total


class _Builder:
    def __init__(self, file: str) -> None:
        self.source = Source(file, None)
        self.problems: list[Problem] = []
        self.stack: set[int] = set()

    def at(self, node: yaml.Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.source.values[path] = self.at(node)
        if node.tag not in _KNOWN_TAGS and not node.tag.startswith("tag:yaml.org,2002:"):
            line, col = self.at(node)
            self.problems.append(Problem(self.source.file, line, col,
                                         f"unsupported YAML tag {node.tag!r}"))
            return None
        if isinstance(node, yaml.ScalarNode):
            return scalar_value(node)
        if id(node) in self.stack:
            line, col = self.at(node)
            self.problems.append(Problem(self.source.file, line, col, "recursive YAML alias"))
            return None
        self.stack.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
            return self.build_mapping(node, path)
        finally:
            self.stack.discard(id(node))

    def build_mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        first_seen: dict[Any, int] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                merged.update(self._merge_source(value_node, path))
                continue
            if not isinstance(key_node, yaml.ScalarNode):
                line, col = self.at(key_node)
                self.problems.append(Problem(self.source.file, line, col,
                                             "mapping keys must be plain scalars"))
                continue
            key = scalar_value(key_node)
            if isinstance(key, float | bool) or key is None:
                key = key_node.value  # keys are names: keep their text
            line, col = self.at(key_node)
            if key in first_seen:
                self.problems.append(Problem(
                    self.source.file, line, col,
                    f"duplicate key {key!r} (first defined at line {first_seen[key]})",
                    "YAML keeps only one of them; remove or rename one"))
                continue
            first_seen[key] = line
            self.source.keys[(*path, key)] = (line, col)
            out[key] = self.build(value_node, (*path, key))
        for key, value in merged.items():
            out.setdefault(key, value)
        return out

    def _merge_source(self, node: yaml.Node, path: Path_) -> dict[Any, Any]:
        sources = node.value if isinstance(node, yaml.SequenceNode) else [node]
        result: dict[Any, Any] = {}
        for src in reversed(sources):
            if isinstance(src, yaml.MappingNode):
                result.update(self.build_mapping(src, path))
        return result


def parse_text(text: str, file: str) -> Source:
    """Parse YAML text; raise ProcedureError with located problems."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            message += f" ({exc.context})"
        raise ProcedureError(Problem(file, line, col, message)) from None
    except yaml.YAMLError as exc:
        raise ProcedureError(Problem(file, 1, 1, f"YAML error: {exc}")) from None
    if node is None:
        raise ProcedureError(Problem(file, 1, 1, "the file is empty; a procedure is a YAML mapping"))
    size = _expanded_size(node, {}, MAX_EXPANDED_NODES)
    if size > MAX_EXPANDED_NODES:
        raise ProcedureError(Problem(
            file, 1, 1, f"YAML expands to more than {MAX_EXPANDED_NODES:,} nodes",
            "too many aliases (an 'alias bomb'?); write the values out or use fewer anchors"))
    builder = _Builder(file)
    data = builder.build(node, ())
    if builder.problems:
        raise ProcedureError(builder.problems)
    builder.source.data = data
    return builder.source


def read_file(path: str | Path, *, display: str | None = None) -> Source:
    """Read and parse a YAML file, refusing oversized ones before parsing."""
    p = Path(path)
    name = display or str(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise ProcedureError(Problem(name, 0, 0, "no such file")) from None
    except OSError as exc:
        raise ProcedureError(Problem(name, 0, 0, f"cannot read: {exc.strerror}")) from None
    if p.is_dir():
        raise ProcedureError(Problem(name, 0, 0, "is a directory, not a procedure file"))
    if size > MAX_FILE_BYTES:
        raise ProcedureError(Problem(name, 1, 1, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}"))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProcedureError(Problem(name, 1, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})")) from None
    except OSError as exc:
        raise ProcedureError(Problem(name, 0, 0, f"cannot read: {exc.strerror}")) from None
    return parse_text(text, name)
