"""The procedure an importer builds, and its YAML text with comments.

PyYAML cannot write comments, and the point of an import is a file a person reads and
finishes (the ``# TODO(import)`` markers, the playbook's own comments), so the layout is
ours: each top-level section and each step is dumped on its own by PyYAML and the comments
are written between them. Knowing where each step starts in the text also lets the
importer map a validation problem back to the step that caused it (validate.py).

Scalars are written so that runproc's YAML 1.2 reader reads back what was meant: PyYAML
quotes everything YAML 1.1 would retype (``yes``, ``0755``, ``1:30``), which is a superset
of YAML 1.2's retyping except for ``0o17``, which it is taught here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

TODO = "TODO(import)"


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes what YAML 1.2 would not read as a string, and keeps key order."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # lists inside mappings indented under their key, as people write them
        super().increase_indent(flow, False)


# ``0o17`` is an integer in YAML 1.2 but a plain string to YAML 1.1: quote it
_Dumper.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^[-+]?0o[0-7]+$"), list("-+0"))


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # a multi-line command reads best as a literal block (PyYAML falls back to quotes itself
    # when a line ends in spaces or holds characters a block cannot carry)
    style = "|" if "\n" in value.strip("\n") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


class _FlowDict(dict):  # type: ignore[type-arg]
    """A small mapping written on one line: ``retry: {attempts: 5, delay: 2s}``."""


class _FlowList(list):  # type: ignore[type-arg]
    """A small list written on one line: ``expect_status: [200, 204]``."""


_Dumper.add_representer(_FlowDict, lambda d, v: d.represent_mapping("tag:yaml.org,2002:map", v.items(),
                                                                    flow_style=True))
_Dumper.add_representer(_FlowList, lambda d, v: d.represent_sequence("tag:yaml.org,2002:seq", v,
                                                                     flow_style=True))
_FLOW_WIDTH = 72


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float) or (isinstance(value, str) and "\n" not in value)


def _flowed(value: Any, depth: int) -> Any:
    """Collections of short scalars below the top two levels become one-line flow collections."""
    if isinstance(value, dict):
        inner = {k: _flowed(v, depth + 1) for k, v in value.items()}
        if depth >= 2 and value and all(_scalar(v) for v in value.values()) and \
                len(repr(value)) <= _FLOW_WIDTH:
            return _FlowDict(inner)
        return inner
    if isinstance(value, list):
        inner_list = [_flowed(v, depth + 1) for v in value]
        if depth >= 2 and all(_scalar(v) for v in value) and len(repr(value)) <= _FLOW_WIDTH:
            return _FlowList(inner_list)
        return inner_list
    return value


_QUOTED_ON = re.compile(r"^(\s*(?:- )?)'on':", re.M)


def dump(value: Any, *, flow_from: int = 2) -> str:
    """``value`` as YAML text, in blocks, with small collections of scalars on one line."""
    text: str = yaml.dump(_flowed(value, 2 - flow_from), Dumper=_Dumper, sort_keys=False,
                          default_flow_style=False, allow_unicode=True, width=100)
    # PyYAML quotes the key `on` (a YAML 1.1 boolean); runproc reads YAML 1.2, where it is a key
    return _QUOTED_ON.sub(r"\1on:", text)


@dataclass
class Step:
    """One step of the result, with the comments written above it."""

    id: str
    body: dict[str, Any]
    comments: list[str] = field(default_factory=list)
    # where it came from (``playbook.yml:12``), for the summary
    origin: str = ""
    # set when the step stands for something not translated: the reason
    todo: str | None = None
    # translated, but it behaves otherwise than the original: each is a TODO(import) to review
    reviews: list[str] = field(default_factory=list)

    def review(self, text: str) -> None:
        self.comments.append(f"{TODO}: {text}")
        self.reviews.append(text)


@dataclass
class Procedure:
    """What an importer produced, before it is written out."""

    name: str
    description: str | None = None
    header: list[str] = field(default_factory=list)  # comment lines at the top of the file
    params: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, Any] = field(default_factory=dict)
    vars: dict[str, Any] = field(default_factory=dict)
    connections: dict[str, Any] = field(default_factory=dict)
    inventory: str | None = None
    steps: list[Step] = field(default_factory=list)
    finally_: list[Step] = field(default_factory=list)
    on_failure: list[Step] = field(default_factory=list)
    trailer: list[str] = field(default_factory=list)  # comments with nowhere else to go

    def sections(self) -> list[tuple[str, list[Step]]]:
        return [("steps", self.steps), ("finally", self.finally_), ("on_failure", self.on_failure)]

    def all_steps(self) -> list[Step]:
        return [*self.steps, *self.finally_, *self.on_failure]


@dataclass
class Rendered:
    """The YAML text and the line span of each step in it (1-based, inclusive)."""

    text: str
    spans: dict[str, tuple[int, int]]


def _comment_lines(lines: list[str], indent: str) -> list[str]:
    out = []
    for line in lines:
        for part in line.splitlines() or [""]:
            out.append(f"{indent}# {part}".rstrip() if part else f"{indent}#")
    return out


def render(proc: Procedure) -> Rendered:
    """The procedure as YAML text, comments included."""
    out: list[str] = _comment_lines(proc.header, "")
    top: dict[str, Any] = {"procedure": proc.name}
    if proc.description:
        top["description"] = proc.description
    out.extend(dump(top).splitlines())
    for key, value in (("inventory", proc.inventory), ("params", proc.params), ("secrets", proc.secrets),
                       ("vars", proc.vars), ("connections", proc.connections)):
        if value:
            out.append("")
            out.extend(dump({key: value}).splitlines())
    spans: dict[str, tuple[int, int]] = {}
    for section, steps in proc.sections():
        if not steps:
            continue
        out.append("")
        out.append(f"{section}:")
        for step in steps:
            if step is not steps[0] and (step.comments or "\n" in dump(step.body).strip()):
                out.append("")
            out.extend(_comment_lines(step.comments, "  "))
            first = len(out) + 1
            body = {"id": step.id, **step.body}
            for line in dump([body]).splitlines():
                out.append(f"  {line}" if line else "")
            spans[step.id] = (first, len(out))
    if proc.trailer:
        out.append("")
        out.extend(_comment_lines(proc.trailer, ""))
    return Rendered("\n".join(out) + "\n", spans)
