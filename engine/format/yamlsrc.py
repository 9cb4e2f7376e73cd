"""Read a YAML file into plain Python values, remembering where every node came from.

Why not ``yaml.safe_load``: it forgets positions, silently keeps the last of two duplicate
keys, expands aliases without bound, and applies YAML 1.1's surprises (``on``/``yes``/``no``
become booleans, ``0755`` an octal int, ``1:30`` the int 90). We read PyYAML's event stream
(its C parser when present) and build values ourselves with YAML 1.2 core rules: only
``true``/``false`` are booleans, only decimal, ``0o`` and ``0x`` forms are ints; anything else
plain is a string, so the schema reports it instead of coercing it.

Why events and not ``yaml.compose``: composing is recursive (the C composer segfaults on a few
hundred thousand nested ``[``, the Python one hits RecursionError), and it materialises a node
graph we would walk a second time. Here one loop with an explicit stack builds the values,
bounds nesting depth, and counts alias expansion as it goes, so an alias bomb is refused
after reading it once and an alias is never copied: it shares the anchored value.
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import Problem, ProcedureError

try:  # the C parser is several times faster on large files
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover - depends on how PyYAML was built
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

MAX_FILE_BYTES = 8 * 1024 * 1024
MAX_EXPANDED_NODES = 500_000  # after alias expansion; a 10,000-step file has ~100,000
MAX_DEPTH = 100  # a procedure nests ~10 deep; deeper input only exists to crash parsers

Path_ = tuple[Any, ...]

_INT = re.compile(r"[-+]?[0-9]+$")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_HEX = re.compile(r"0x[0-9a-fA-F]+$")
_OCT = re.compile(r"0o[0-7]+$")
_NULLS = {"~", "null", "Null", "NULL"}
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}
_SPECIAL_FLOATS = {".inf": math.inf, ".Inf": math.inf, ".INF": math.inf, "+.inf": math.inf,
                   "+.Inf": math.inf, "+.INF": math.inf, "-.inf": -math.inf, "-.Inf": -math.inf,
                   "-.INF": -math.inf, ".nan": math.nan, ".NaN": math.nan, ".NAN": math.nan}
_TYPED_START = frozenset("0123456789+-.~tTfFnN")  # a plain scalar starting otherwise is a string

_TAG = "tag:yaml.org,2002:"
_STR = object()  # "this plain scalar is a string" (None is a value: null)
_AS_KEY = object()  # path element of a collection used as a mapping key (refused)


class _Refused(Exception):
    """Stops reading: the input is unsafe to read further (bomb, depth, undefined alias)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem


@dataclass
class Positions:
    """Where every value and mapping key of a document is, by path: (line, column), 1-based."""

    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    # literal block scalars (``|``): where their first line of text starts
    blocks: dict[Path_, tuple[int, int]] = field(default_factory=dict)


@dataclass
class Source:
    """A parsed document: its data and the position of every value and mapping key.

    Positions are only asked for to locate a problem, yet keeping one per node cost a third
    of a large file's memory (17 MB of a 10,000-step validate) and a tenth of its reading
    time. So the first read keeps the text, and the first question about a position reads the
    text again recording them (the same parser on the same text: the same positions).
    """

    file: str
    data: Any
    # problems that left the data usable (a duplicate key keeps its first value, an unknown
    # tag reads as null), so that a loader can report them with the schema's problems
    problems: list[Problem] = field(default_factory=list)
    text: str = ""
    _positions: Positions | None = field(default=None, repr=False, compare=False)

    @property
    def positions(self) -> Positions:
        if self._positions is None:
            builder = _Builder(self.file, self.text, record=True)
            loader = _Loader(self.text)
            try:
                with contextlib.suppress(_Refused, yaml.YAMLError):  # the first read of this text passed
                    builder.run(loader)
            finally:
                loader.dispose()
            self._positions = builder.positions
        return self._positions

    @property
    def values(self) -> dict[Path_, tuple[int, int]]:
        return self.positions.values

    @property
    def keys(self) -> dict[Path_, tuple[int, int]]:
        return self.positions.keys

    @property
    def blocks(self) -> dict[Path_, tuple[int, int]]:
        return self.positions.blocks

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

    def where_in_text(self, path: Path_, line: int) -> tuple[int, int]:
        """Position of the 1-based ``line`` of the string at ``path``.

        Exact for literal blocks (``|``), whose lines are the file's lines; a plain, quoted or
        folded scalar joins or folds its lines, so the scalar's own position is reported.
        """
        if path in self.blocks:
            first, col = self.blocks[path]
            return first + line - 1, col
        return self.where(path)

    def problem(self, path: Path_, message: str, *, key: bool = False, hint: str | None = None) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, line, col, message, hint)


def core_scalar(text: str) -> Any:
    """YAML 1.2 core schema resolution of a plain scalar; ``_STR`` when it is a string.

    One deliberate departure: an integer with a leading zero (``0755``, ``08``) stays a
    string. YAML 1.1 reads it as octal and YAML 1.2 as decimal; a file that means either
    should say so (``0o755`` or ``755``), and the schema's error tells the author how.
    """
    if not text:
        return None
    if text[0] not in _TYPED_START:
        return _STR
    if text in _NULLS:
        return None
    if text in _BOOLS:
        return _BOOLS[text]
    if _INT.match(text):
        digits = text.lstrip("+-")
        return _STR if len(digits) > 1 and digits[0] == "0" else int(text)
    if text.startswith("0x") and _HEX.match(text):
        return int(text, 16)
    if text.startswith("0o") and _OCT.match(text):
        return int(text[2:], 8)
    if text in _SPECIAL_FLOATS:
        return _SPECIAL_FLOATS[text]
    if _FLOAT.match(text) and any(c in text for c in ".eE"):
        return float(text)
    return _STR


def _explicit(tag: str, text: str) -> Any:
    """Apply an explicit ``!!type`` tag; raise ValueError for one runproc does not read."""
    kind = tag[len(_TAG):] if tag.startswith(_TAG) else None
    if tag == "!" or kind == "str":
        return text
    value = core_scalar(text)
    expected = {"int": int, "float": float, "bool": bool, "null": type(None)}.get(kind or "")
    if expected is None:
        raise ValueError(f"unsupported YAML tag {tag!r}")
    if kind == "float" and type(value) is int:
        return float(value)
    if type(value) is not expected:
        raise ValueError(f"{text!r} is not a valid {tag!r}")
    return value


class _Frame:
    """An open mapping or sequence while its events arrive."""

    __slots__ = ("value", "path", "as_key", "anchor", "start", "key", "key_pos", "skip", "merged", "seen")

    def __init__(self, value: Any, path: Path_, anchor: str | None, start: int, as_key: bool = False) -> None:
        self.value = value
        self.path = path  # only while recording positions
        self.as_key = as_key  # a mapping or sequence used as a mapping key (refused)
        self.anchor = anchor
        self.start = start  # expanded-node count when it opened, for the anchor's size
        self.key: Any = _STR  # _STR: waiting for a key; otherwise the pending key
        self.key_pos: tuple[int, int] = (0, 0)
        self.skip = False  # the pending key was refused: drop its value
        self.merged: list[Any] = []  # values of '<<' merge keys, applied at the end
        self.seen: dict[Any, int] = {}  # key -> line, for duplicate-key messages


class _Builder:
    def __init__(self, file: str, text: str, *, record: bool = False) -> None:
        self.file = file
        self.text = text
        self.record = record  # keep the position of every node (Source.positions)
        self.positions = Positions()
        self.problems: list[Problem] = []
        self.anchors: dict[str, Any] = {}
        self.sizes: dict[str, int] = {}
        self.open_anchors: set[str] = set()
        self.expanded = 0
        self.stack: list[_Frame] = []
        self.root: Any = None
        self.documents = 0
        self._lines: list[str] | None = None

    def _line(self, index: int) -> str:
        if self._lines is None:  # split once, and only for files with literal blocks
            self._lines = self.text.splitlines()
        return self._lines[index] if index < len(self._lines) else ""

    def _at(self, mark: Any) -> tuple[int, int]:
        return mark.line + 1, mark.column + 1

    def _problem(self, mark: Any, message: str, hint: str | None = None) -> None:
        line, col = self._at(mark)
        self.problems.append(Problem(self.file, line, col, message, hint))

    def _count(self, n: int, mark: Any) -> None:
        self.expanded += n
        if self.expanded > MAX_EXPANDED_NODES:
            line, col = self._at(mark)
            raise _Refused(Problem(
                self.file, line, col, f"YAML expands to more than {MAX_EXPANDED_NODES:,} nodes",
                "too many aliases (an 'alias bomb'?); write the values out or use fewer anchors"))

    def _wants_key(self) -> bool:
        """Whether the node about to arrive is a mapping key."""
        if not self.stack:
            return False
        top = self.stack[-1]
        return top.key is _STR and not isinstance(top.value, list)

    def _child_path(self) -> Path_:
        """Path of the value about to arrive (not a key)."""
        if not self.stack:
            return ()
        top = self.stack[-1]
        if isinstance(top.value, list):
            return (*top.path, len(top.value))
        return (*top.path, top.key)

    def run(self, loader: Any) -> None:
        while loader.check_event():
            ev = loader.get_event()
            kind = type(ev)
            if kind is yaml.ScalarEvent:
                self.scalar(ev)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                self.open(ev, {} if kind is yaml.MappingStartEvent else [])
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                self.close(ev)
            elif kind is yaml.AliasEvent:
                self.alias(ev)
            elif kind is yaml.DocumentStartEvent:
                self.documents += 1
                if self.documents > 1:
                    line, col = self._at(ev.start_mark)
                    raise _Refused(Problem(self.file, line, col, "more than one YAML document in the file",
                                           "a procedure is one document; remove the second '---'"))

    def scalar(self, ev: yaml.ScalarEvent) -> None:
        self._count(1, ev.start_mark)
        text = ev.value
        if ev.tag is not None and ev.tag != "!":
            try:
                value: Any = _explicit(ev.tag, text)
            except ValueError as exc:
                self._problem(ev.start_mark, str(exc))
                value = text  # reported; the text keeps the schema from piling on
        elif ev.style or ev.tag == "!":
            value = text  # quoted or block: always a string
        else:
            value = core_scalar(text)
            if value is _STR:
                value = text
        if self._wants_key():
            self.key(ev.start_mark, value, text, merge=ev.tag is None and not ev.style and text == "<<")
            return
        if self.record:
            path = self._child_path()
            self.positions.values[path] = self._at(ev.start_mark)
            if ev.style == "|":
                first = ev.start_mark.line + 1  # 0-based: the text starts on the line after the '|'
                line = self._line(first)
                self.positions.blocks[path] = (first + 1, len(line) - len(line.lstrip(" ")) + 1)
        if ev.anchor is not None:
            self.anchors[ev.anchor] = value
            self.sizes[ev.anchor] = 1
        self.emit(value)

    def key(self, mark: Any, value: Any, text: str, *, merge: bool = False) -> None:
        top = self.stack[-1]
        line, col = self._at(mark)
        top.key_pos = (line, col)
        if merge:
            top.key, top.skip = "<<", False
            return
        if isinstance(value, float | bool) or value is None:
            value = text  # keys are names: keep their text
        if value in top.seen:
            self.problems.append(Problem(
                self.file, line, col, f"duplicate key {value!r} (first defined at line {top.seen[value]})",
                "YAML keeps only one of them; remove or rename one"))
            top.key, top.skip = value, True
            return
        top.seen[value] = line
        top.key, top.skip = value, False
        if self.record:
            self.positions.keys[(*top.path, value)] = (line, col)

    def open(self, ev: Any, value: Any) -> None:
        self._count(1, ev.start_mark)
        if ev.tag is not None and ev.tag not in ("!", f"{_TAG}map", f"{_TAG}seq", f"{_TAG}omap"):
            self._problem(ev.start_mark, f"unsupported YAML tag {ev.tag!r}")
        if len(self.stack) >= MAX_DEPTH:
            line, col = self._at(ev.start_mark)
            raise _Refused(Problem(self.file, line, col, f"YAML nested more than {MAX_DEPTH} levels deep"))
        as_key = self._wants_key()
        path: Path_ = ()
        if as_key:  # a mapping or sequence used as a key
            self._problem(ev.start_mark, "mapping keys must be plain scalars")
            if self.record:  # its nodes are recorded apart, under a path no value has
                path = (*self.stack[-1].path, _AS_KEY)
        elif self.record:
            path = self._child_path()
            self.positions.values[path] = self._at(ev.start_mark)
        if ev.anchor is not None:
            self.open_anchors.add(ev.anchor)
        self.stack.append(_Frame(value, path, ev.anchor, self.expanded, as_key))

    def close(self, ev: Any) -> None:
        frame = self.stack.pop()
        # keys written in the mapping win over merged ones; among merged mappings the
        # first listed wins (YAML merge-key spec), hence setdefault in list order
        for source in frame.merged:
            for k, v in source.items():
                frame.value.setdefault(k, v)
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self.anchors[frame.anchor] = frame.value
            self.sizes[frame.anchor] = self.expanded - frame.start
        if frame.as_key:
            top = self.stack[-1]
            top.key, top.skip = _AS_KEY, True  # drop the value of the refused key
            return
        self.emit(frame.value)

    def alias(self, ev: yaml.AliasEvent) -> None:
        name = ev.anchor
        if name in self.open_anchors:
            line, col = self._at(ev.start_mark)
            raise _Refused(Problem(self.file, line, col, f"recursive YAML alias *{name}"))
        if name not in self.anchors:
            line, col = self._at(ev.start_mark)
            raise _Refused(Problem(self.file, line, col, f"undefined YAML alias *{name}",
                                   f"define it first with &{name}"))
        self._count(self.sizes[name], ev.start_mark)
        if self._wants_key():
            value = self.anchors[name]
            if isinstance(value, dict | list):
                self._problem(ev.start_mark, "mapping keys must be plain scalars")
                self.stack[-1].key, self.stack[-1].skip = _AS_KEY, True
            else:
                self.key(ev.start_mark, value, str(value))
            return
        if self.record:
            self.positions.values[self._child_path()] = self._at(ev.start_mark)
        self.emit(self.anchors[name])

    def emit(self, value: Any) -> None:
        """Hand a finished value to the collection that contains it."""
        if not self.stack:
            self.root = value
            return
        top = self.stack[-1]
        if isinstance(top.value, list):
            top.value.append(value)
            return
        key, skip = top.key, top.skip
        top.key, top.skip = _STR, False
        if skip:
            return
        if key == "<<":
            sources = value if isinstance(value, list) else [value]
            if not all(isinstance(s, dict) for s in sources):
                line, col = top.key_pos
                self.problems.append(Problem(self.file, line, col,
                                             "a merge key '<<' takes a mapping or a list of mappings"))
                return
            top.merged.extend(sources)
            return
        top.value[key] = value


def parse_text(text: str, file: str, *, keep_going: bool = False) -> Source:
    """Parse YAML text; raise ProcedureError with located problems.

    With ``keep_going``, problems that leave usable data (duplicate keys, unknown tags) are
    returned in ``Source.problems`` instead, for the caller to report with its own.
    """
    builder = _Builder(file, text)
    loader = _Loader(text)
    try:
        builder.run(loader)
    except _Refused as exc:
        raise ProcedureError(exc.problem) from None
    except yaml.MarkedYAMLError as exc:
        _refuse_if_too_deep(text, file)
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        if exc.context and exc.problem:
            message += f" ({exc.context})"
        hint = None
        if exc.problem and ("mapping values are not allowed" in exc.problem
                            or "found unexpected ':'" in exc.problem):
            # `shell: echo a: b` and `shell: echo {a: b}` are commands, not YAML structure
            hint = "a value containing ': ' or starting with { or [ must be quoted: shell: 'echo a: b'"
        raise ProcedureError(Problem(file, line, col, message, hint)) from None
    except yaml.YAMLError as exc:
        raise ProcedureError(Problem(file, 1, 1, f"YAML error: {exc}")) from None
    finally:
        loader.dispose()
    if builder.problems and not keep_going:
        raise ProcedureError(builder.problems)
    if builder.root is None:  # no document, or one with no content (only comments, '---', '~')
        raise ProcedureError(Problem(file, 1, 1, "the file is empty; a procedure is a YAML mapping"))
    return Source(file, builder.root, builder.problems, text)


def _refuse_if_too_deep(text: str, file: str) -> None:
    """Report nesting too deep in runproc's own words, wherever libyaml's scanner gave up.

    libyaml scans a flow collection's tokens ahead of its events and has a nesting limit of its
    own (newer releases), so ``[[[[...`` can fail inside the scanner before the builder sees the
    depth. Only for input that can nest that deep, the pure-Python parser (which yields events as
    it goes) is run through a builder to find where the nesting passes MAX_DEPTH.
    """
    if text.count("[") + text.count("{") < MAX_DEPTH - 1:
        return
    builder = _Builder(file, text)
    loader = yaml.SafeLoader(text)
    try:
        builder.run(loader)
    except _Refused as refused:
        raise ProcedureError(refused.problem) from None
    except yaml.YAMLError:
        return  # some other error: the first parser's report stands
    finally:
        loader.dispose()


def read_file(path: str | Path, *, display: str | None = None, keep_going: bool = False) -> Source:
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
        raise ProcedureError(Problem(name, 1, 1, f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}",
                                     "split it into procedures that call each other with 'procedure:'"))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ProcedureError(Problem(name, 1, 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})")) from None
    except OSError as exc:
        raise ProcedureError(Problem(name, 0, 0, f"cannot read: {exc.strerror}")) from None
    return parse_text(text, name, keep_going=keep_going)
