"""Loops in the format: ``foreach:`` and ``matrix:`` on a step, checked at load time.

A loop step runs its body (action, ``when``, checks, retries, rollback) once per item; the
item is ``item`` in its templates, or the name ``as:`` gives. What is checked here, before
anything runs (each problem at its file:line:col):

- ``foreach`` and ``matrix`` together, a loop with ``on:`` (a step loops over items or fans
  out over hosts, not both), ``as``/``concurrency``/``fail_fast`` without a loop, an ``as``
  name that would hide a name templates already have (``params``, ``steps``...);
- a matrix without axes, an axis with no values, an ``exclude`` entry naming an axis that
  does not exist or a value the axis does not have;
- the names templates read: ``item`` outside a loop, ``item`` where ``as:`` renamed it, a
  misspelt ``as`` name, and ``item.<field>`` where the fields are known (a matrix's axes, an
  inventory host's fields, the keys of a literal list of mappings).

The ``foreach``/``matrix`` expressions themselves are checked by checks.py like any other
(their ``steps.x`` must be upstream of the step); they cannot read the item.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from .suggest import did_you_mean

if TYPE_CHECKING:
    from ..errors import Problem
    from .analysis import Reference
    from .model import Procedure, Step
    from .yamlsrc import Path_, Source

ITEM = "item"
EXCLUDE = "exclude"
_AXIS = re.compile(r"^[a-z_][a-z0-9_]*$")
# what a mapping item answers besides its keys (``item.items()`` in a template)
_MAPPING_METHODS = frozenset({"items", "keys", "values", "get"})


class ForeachHosts(BaseModel):
    """``foreach: {hosts: PATTERN}``: one iteration per inventory host the pattern selects, run
    where runproc runs (``on:`` runs a step *on* each host; this loops *over* them)."""

    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)
    hosts: str


def foreach_shape(value: Any) -> Any:
    """The mapping form of ``foreach`` is ``{hosts: PATTERN}`` and nothing else: said in one line
    (the union's three messages for ``{host: web}`` would bury the typo)."""
    if isinstance(value, dict):
        extra = [k for k in value if k != "hosts"]
        if extra:
            raise ValueError(f"unknown key {str(extra[0])!r}{did_you_mean(str(extra[0]), ['hosts'])}: a mapping "
                             "here is {hosts: PATTERN} (a loop over inventory hosts)")
        if not isinstance(value.get("hosts"), str):
            raise ValueError("a mapping here is {hosts: PATTERN}, the pattern a string such as 'web' or 'db-*'")
    return value


@dataclass(frozen=True)
class LoopScope:
    """What a loop step's templates may call its item, and the item's fields when known."""

    name: str  # "item", or the ``as:`` name
    fields: frozenset[str] | None  # None: not known before the run (a param, a step's result)
    what: str  # how a field is called in messages: "axis", "host field", "key"
    # the schema refused this step's loop keys (reported there): names are not judged again
    lenient: bool = False


def loop_name(step: Step) -> str:
    return step.as_ or ITEM


def axes(step: Step) -> list[str]:
    """A matrix's axes, in the order written (``exclude`` is not one)."""
    return [k for k in (step.matrix or {}) if k != EXCLUDE]


def loop_scope(step: Step) -> LoopScope:
    from .expressions import HOST_FIELDS

    name = loop_name(step)
    if step.matrix is not None:
        return LoopScope(name, frozenset(axes(step)), "axis")
    if isinstance(step.foreach, ForeachHosts):
        return LoopScope(name, HOST_FIELDS, "host field")
    items = step.foreach
    if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
        return LoopScope(name, frozenset(str(k) for i in items for k in i), "key")
    return LoopScope(name, None, "field")


def refused_loop_scope(raw: Any) -> LoopScope | None:
    """For a step whose ``foreach``/``matrix``/``as`` the schema refused (and the loader's repair
    removed): a scope that accepts its item's names, so the refusal is reported once, not again
    at every ``item`` the step reads."""
    if not isinstance(raw, dict) or not any(k in raw for k in ("foreach", "matrix", "as")):
        return None
    name = raw.get("as")
    return LoopScope(name if isinstance(name, str) and _AXIS.match(name) else ITEM, None, "field", lenient=True)


def loop_sources(step: Step, path: Path_) -> Iterator[tuple[Path_, str, bool]]:
    """(path, text, is_expression) of the expressions and templates that make the items."""
    from .expressions import is_template

    def value(p: Path_, v: Any) -> Iterator[tuple[Path_, str, bool]]:
        if isinstance(v, str):
            # a string where a list is due is an expression (``params.regions``), as ``when``
            yield p, v, not is_template(v)
        elif isinstance(v, list):
            for j, x in enumerate(v):
                if isinstance(x, str) and is_template(x):
                    yield (*p, j), x, False

    if isinstance(step.foreach, ForeachHosts):
        if is_template(step.foreach.hosts):
            yield (*path, "foreach", "hosts"), step.foreach.hosts, False
    elif step.foreach is not None:
        yield from value((*path, "foreach"), step.foreach)
    for axis in axes(step):
        yield from value((*path, "matrix", axis), (step.matrix or {})[axis])
    exclude = (step.matrix or {}).get(EXCLUDE)
    for j, entry in enumerate(exclude if isinstance(exclude, list) else []):
        for key, v in (entry.items() if isinstance(entry, dict) else ()):
            if isinstance(v, str) and is_template(v):
                yield (*path, "matrix", EXCLUDE, j, key), v, False


def reference_problem(ref: Reference, loop: LoopScope | None, roots: frozenset[str]) -> tuple[bool, str | None]:
    """(handled, problem) for a name a template reads: the loop's own names are judged here,
    everything else is left to checks.py (handled False)."""
    root = ref.root
    if loop is not None and loop.lenient:
        return (True, None) if root == ITEM or root not in roots else (False, None)
    if loop is None:
        if root == ITEM:
            return True, "'item' is only defined in a step with 'foreach:' or 'matrix:' (a loop)"
        return False, None
    if root == loop.name:
        if (ref.name is not None and loop.fields is not None and ref.name not in loop.fields
                and ref.name not in _MAPPING_METHODS):
            known = ", ".join(sorted(loop.fields)) or "none"
            suggestion = did_you_mean(ref.name, loop.fields)
            return True, (f"{loop.name} has no {loop.what} {ref.name!r}{suggestion}"
                          + ("" if suggestion else f" (its {loop.what}s: {known})"))
        return True, None
    if root == ITEM:
        return True, f"this loop names its item {loop.name!r} (as: {loop.name}); 'item' is not defined here"
    if root not in roots:
        return True, f"unknown name {root!r}{did_you_mean(root, [*roots, loop.name])}"
    return False, None


# ---------------------------------------------------------------- structure


def check_loops(proc: Procedure, source: Source) -> list[Problem]:
    """The loop keys of every step, beyond what the schema says (see the module docstring)."""
    from .checks import JINJA_GLOBALS
    from .expressions import ROOT_NAMES

    out: list[Problem] = []
    reserved = ROOT_NAMES | JINJA_GLOBALS | {"loop"}
    for section, steps in (("steps", proc.steps), ("finally", proc.finally_), ("on_failure", proc.on_failure)):
        for i, step in enumerate(steps):
            path: Path_ = (section, i)
            label = f"{section}[{i}]"

            def problem(where: Path_, message: str, hint: str | None = None, *, key: bool = False,
                        label: str = label) -> None:
                out.append(source.problem(where, f"{label}: {message}", hint=hint, key=key))

            if not step.loops:
                for key in ("as", "concurrency", "fail_fast"):
                    field = "as_" if key == "as" else key
                    if field in step.model_fields_set:
                        problem((*path, key), f"{key!r} applies to a loop; this step has no 'foreach:' or "
                                              "'matrix:'", key=True)
                continue
            kind = "matrix" if step.matrix is not None else "foreach"
            if step.foreach is not None and step.matrix is not None:
                problem((*path, "matrix"), "a step loops with 'foreach:' or with 'matrix:', not both",
                        hint="a matrix over one axis is a foreach; a foreach over several lists is a matrix",
                        key=True)
            if step.on is not None:
                problem((*path, kind), f"a '{kind}:' step cannot also fan out with 'on:': it loops over items "
                                       "or runs on each host, not both",
                        hint="to loop over inventory hosts from here write 'foreach: {hosts: PATTERN}'; to "
                             "run on each host keep 'on:' alone; or split it into two steps", key=True)
            if step.as_ is not None and step.as_ in reserved:
                problem((*path, "as"), f"as: {step.as_!r} would hide the name templates already have; "
                                       "choose another name")
            if step.matrix is not None:
                _check_matrix(step, path, problem)
            for where, value in _lists(step, path):
                _check_param_list(proc, where, value, problem)
    return out


_PARAM = re.compile(r"^\s*(?:\{\{\s*)?params\.([a-z_][a-z0-9_]*)\s*(?:\}\}\s*)?$")


def _lists(step: Step, path: Path_) -> Iterator[tuple[Path_, Any]]:
    """Where a list is due: ``foreach`` (unless hosts) and each matrix axis."""
    if step.foreach is not None and not isinstance(step.foreach, ForeachHosts):
        yield (*path, "foreach"), step.foreach
    for axis in axes(step):
        yield (*path, "matrix", axis), (step.matrix or {})[axis]


def _check_param_list(proc: Procedure, where: Path_, value: Any, problem: Any) -> None:
    """``foreach: params.x`` where x is declared, but not as a list: known before any run."""
    m = _PARAM.match(value) if isinstance(value, str) else None
    param = proc.params.get(m.group(1)) if m else None
    if m and param is not None and param.type != "list":
        problem(where, f"params.{m.group(1)} is a {param.type} param; a loop needs a list",
                hint=f"declare it '{{type: list}}' (-p {m.group(1)}=a,b or a JSON list), or split it in an "
                     f"expression: params.{m.group(1)}.split(',')")


def _check_matrix(step: Step, path: Path_, problem: Any) -> None:
    matrix = step.matrix or {}
    names = axes(step)
    if not names:
        problem((*path, "matrix"), "a matrix needs at least one axis (name: [values])")
    for axis in names:
        if not _AXIS.match(axis):
            problem((*path, "matrix", axis), f"matrix axis {axis!r}: a name is [a-z_][a-z0-9_]* (it is read "
                                             f"as item.{axis})", key=True)
        values = matrix[axis]
        if isinstance(values, list) and not values:
            problem((*path, "matrix", axis), f"matrix axis {axis!r} has no values: the matrix would have no "
                                             "iterations")
    if EXCLUDE not in matrix:
        return
    exclude = matrix[EXCLUDE]
    if not isinstance(exclude, list):
        problem((*path, "matrix", EXCLUDE), "matrix.exclude: expected a list of mappings such as "
                                            "{region: us, tier: db}")
        return
    for j, entry in enumerate(exclude):
        where = (*path, "matrix", EXCLUDE, j)
        if not isinstance(entry, dict) or not entry:
            problem(where, "matrix.exclude: each entry is a mapping of axis: value, such as {region: us}")
            continue
        for key, value in entry.items():
            if key not in names:
                problem((*where, key), f"matrix.exclude: {key!r} is not an axis{did_you_mean(str(key), names)}",
                        key=True, hint=None if did_you_mean(str(key), names) else f"axes: {', '.join(names)}")
                continue
            values = matrix[key]
            if isinstance(values, list) and value not in values and not _template(value) \
                    and not any(_template(v) for v in values):
                shown = ", ".join(map(str, values[:10]))
                problem((*where, key), f"matrix.exclude: {key} {value!r} is not one of the axis' values "
                                       f"({shown}){did_you_mean(str(value), [str(v) for v in values])}")


def _template(value: Any) -> bool:
    """A template's value is known at run time only: it is not compared with an axis' values."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


# ---------------------------------------------------------------- items (used at run time)


def combinations(matrix: dict[str, list[Any]], exclude: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cartesian product of the axes, first axis slowest (as GitHub Actions orders a
    matrix), without the combinations an ``exclude`` entry matches (all of its keys)."""
    out: list[dict[str, Any]] = [{}]
    for axis, values in matrix.items():
        out = [{**combo, axis: v} for combo in out for v in values]
    return [c for c in out if not any(all(c.get(k) == v for k, v in e.items()) for e in exclude)]


_LABEL_MAX = 40


def labels(items: list[Any], matrix: bool) -> list[str]:
    """Each iteration's name in output, the journal and reports: the item itself when it is a
    short scalar (``eu``), a mapping's ``name``/``id`` (a host's name), a matrix's values
    (``region=eu,tier=web``); else its position (``#3``). Names are unique: when two would be
    the same, every name is prefixed by its position (``0:eu``)."""
    out: list[str] = []
    for index, item in enumerate(items):
        if matrix and isinstance(item, dict):
            parts = [(k, _scalar(v)) for k, v in item.items()]
            text = ",".join(f"{k}={v}" for k, v in parts) if all(v is not None for _, v in parts) else ""
        elif isinstance(item, dict):
            key = next((item[k] for k in ("name", "id") if _scalar(item.get(k)) is not None), None)
            text = _scalar(key) or ""
        else:
            text = _scalar(item) or ""
        out.append(text if text and len(text) <= _LABEL_MAX * 2 and "\n" not in text else f"#{index}")
    if len(set(out)) < len(out):
        out = [f"{i}:{t}" if not t.startswith("#") else t for i, t in enumerate(out)]
    return out


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        text = str(value)
        return text if len(text) <= _LABEL_MAX and "\n" not in text else None
    return None
