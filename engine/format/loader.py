"""YAML file to a validated Procedure, with every problem located at file:line:col.

Validation happens in passes that each collect problems rather than stopping at the first:
1. yamlsrc: syntax, duplicate keys, alias bombs, size;
2. bodies: each step, check and rollback has its executor key split off and validated by the
   executor's own Options model (short form, long form, options beside the key);
3. pydantic: the rest of the format, strictly typed;
4. semantics (checks.py): ids, needs, cycles, connections, expressions and their names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import executors
from ..errors import ExecutorError, Problem, ProcedureError
from .model import CONNECTION_KINDS, Action, Body, Check, Procedure, Step
from .problems import _data_path, _describe, _get, _label, map_errors, pydantic_problems
from .suggest import did_you_mean
from .yamlsrc import Path_, Source, read_file

_BODY_KINDS: dict[str, type[Body]] = {"step": Step, "check": Check, "rollback": Body}



def load(path: str | Path) -> Procedure:
    """Load and validate a procedure file; raise ProcedureError listing every problem."""
    try:
        source = read_file(path, keep_going=True)
    except ProcedureError as exc:
        ini = _ini_inventory(path, exc)
        if ini is not None:
            raise ProcedureError(ini) from None
        raise
    try:
        proc = from_source(source)
    except ProcedureError as exc:
        # an INI file can read as YAML too (a string, when a comment comes first)
        inventory = _ini_inventory(path, exc) or _yaml_inventory(path, source)
        if inventory is not None:
            raise ProcedureError(inventory) from None
        raise
    proc._path = Path(path).resolve()
    return proc


# An Ansible inventory given where the procedure goes (``runproc validate inventory.yml``, or
# the two swapped): one problem saying so, rather than the procedure's missing keys or an INI
# file's YAML syntax error.
_INI_SECTION = re.compile(r"^\[[A-Za-z0-9_.:-]+\]\s*(?:[#;].*)?$")
_INVENTORY_GROUP_KEYS = frozenset({"hosts", "children", "vars"})


def _inventory_problem(path: str | Path, file: str, line: int, col: int, kind: str) -> Problem:
    return Problem(file, line, col, f"this is {kind}, not a procedure",
                   f"a procedure names its inventory with 'inventory: {Path(path).name}', "
                   f"or give it on the command line: runproc PROCEDURE -i {path}")


def _ini_inventory(path: str | Path, error: ProcedureError) -> Problem | None:
    """The file YAML could not read starts, after its comments, with an INI ``[group]``."""
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024).decode("utf-8", errors="replace")
    except OSError:
        return None
    for number, line in enumerate(head.splitlines(), 1):
        text = line.strip()
        if not text or text.startswith(("#", ";")):
            continue
        if not _INI_SECTION.match(text):
            return None
        file = error.problems[0].file if error.problems else str(path)
        return _inventory_problem(path, file, number, 1, "an INI Ansible inventory")
    return None


def _yaml_inventory(path: str | Path, source: Source) -> Problem | None:
    """The document is a mapping of Ansible groups (``all:``, or groups of hosts, children
    and vars) with neither ``procedure:`` nor ``steps:``."""
    data = source.data
    if not isinstance(data, dict) or not data or "procedure" in data or "steps" in data:
        return None
    groups = [v for v in data.values() if isinstance(v, dict)]
    if not (isinstance(data.get("all"), dict)
            or (len(groups) == len(data) and all(set(g) & _INVENTORY_GROUP_KEYS for g in groups))):
        return None
    line, col = source.where((next(iter(data)),), key=True)
    return _inventory_problem(path, source.file, line, col, "a YAML Ansible inventory")


def from_source(source: Source) -> Procedure:
    """Validate parsed YAML; every problem of every pass is reported together.

    When the schema pass fails, the semantic pass still runs on a repaired copy (bad values
    dropped, required ones given placeholders), so a typo in one step does not hide an unknown
    ``needs`` in another. What the repair touched is remembered in a ``Lenience`` so the
    semantic pass does not report its side effects (a dropped var is not an unknown var).
    """
    from .checks import Lenience, check_semantics

    data = source.data
    problems: list[Problem] = list(source.problems)  # duplicate keys and the like, from the reader
    if not isinstance(data, dict):
        problems.append(source.problem((), f"a procedure is a YAML mapping with 'procedure:' and "
                                           f"'steps:'; this document is {_describe(data)}"))
        raise ProcedureError(problems)
    lenience = Lenience()
    data = _split_bodies(data, source, problems)
    data = _split_connections(data, source, problems, lenience)
    proc: Procedure | None
    try:
        proc = Procedure.model_validate(data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, source, ()))
        proc = _repaired(data, exc, lenience)
    if proc is not None:
        proc._source = source
        problems.extend(check_semantics(proc, source, lenience))
    if problems:
        raise ProcedureError(_unique(problems))
    assert proc is not None
    return proc


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


# ---------------------------------------------------------------- repair after schema errors

_SECTIONS = ("steps", "finally", "on_failure", "preconditions")
_PLACEHOLDER = {"secrets": {"env": "RUNPROC_UNSET"}, "params": {}}


def _repaired(data: dict[str, Any], exc: ValidationError, lenience: Any) -> Procedure | None:
    """A Procedure from ``data`` with the values pydantic refused removed, or None."""
    owned: set[int] = set()
    data = _own(data, owned)
    for _ in range(4):  # each round fixes what the previous validation reported
        # locate every error before changing anything: one repair may drop another's parent
        located = [(_data_path(data, err), err["type"]) for err in exc.errors()]
        for path, kind in located:
            if not _repair(data, path, kind, lenience, owned):
                return None
        try:
            return Procedure.model_validate(data)
        except ValidationError as again:
            exc = again
    return None


def _own(value: Any, owned: set[int]) -> Any:
    """A shallow copy we may change (the parsed source is shared and must stay intact)."""
    if id(value) in owned:
        return value
    copy = dict(value) if isinstance(value, dict) else list(value)
    owned.add(id(copy))
    return copy


def _repair(data: dict[str, Any], path: Path_, kind: str, lenience: Any, owned: set[int]) -> bool:
    """Drop or replace the value at ``path``; False when nothing sensible remains to check."""
    if not path:
        return False
    head = path[0]
    if head == "steps" and len(path) == 1:
        return False  # no steps to check
    if head in ("params", "secrets", "vars", "connections") and len(path) == 1:
        lenience.roots.add(head)
    if head in _SECTIONS and len(path) >= 3 and path[2] == "id" and head != "preconditions":
        raw = _get(data, path)
        if isinstance(raw, str):
            lenience.steps.add(raw)
        return _set(data, path, f"_invalid_{head}_{path[1]}", owned)
    if head in _SECTIONS and len(path) >= 3 and path[2] == "needs":
        lenience.needs.add((head, path[1]))
        return _set(data, path[:3], [], owned)
    if kind == "missing":
        placeholder = {"procedure": "invalid"}.get(str(path[-1])) if len(path) == 1 else None
        return placeholder is not None and _set(data, path, placeholder, owned)
    if len(path) == 2 and head in _PLACEHOLDER:
        return _set(data, path, _PLACEHOLDER[head], owned)  # keep the name declared
    if len(path) == 2 and head in _SECTIONS:
        body = {} if head == "preconditions" else {"id": f"_invalid_{head}_{path[1]}"}
        return _set(data, path, body, owned)
    if len(path) == 1 and head == "procedure":
        return _set(data, path, "invalid", owned)
    parent = _parent(data, path, owned)
    if parent is _GONE:
        return True
    if isinstance(parent, dict):
        parent.pop(path[-1], None)  # absent: an earlier error at the same place removed it
        return True
    if isinstance(parent, list):
        # dropping one item would shift the indexes other errors point at: drop the list
        return _repair(data, path[:-1], kind, lenience, owned)
    return False




_GONE = object()  # an earlier repair already removed this part of the data


def _parent(data: Any, path: Path_, owned: set[int]) -> Any:
    """The container holding ``path[-1]``, copied along the way so the source stays intact."""
    node = data
    for part in path[:-1]:
        if isinstance(node, dict) and part not in node:
            return _GONE
        child = node[part]
        if not isinstance(child, dict | list):
            return _GONE
        if id(child) not in owned:
            child = _own(child, owned)
            node[part] = child
        node = child
    return node


def _set(data: Any, path: Path_, value: Any, owned: set[int]) -> bool:
    parent = _parent(data, path, owned)
    if parent is not _GONE:
        parent[path[-1]] = value
    return True




# ---------------------------------------------------------------- pass 2: executor bodies


def _split_bodies(data: dict[str, Any], source: Source, problems: list[Problem]) -> dict[str, Any]:
    data = dict(data)
    data["preconditions"] = _map_list(data.get("preconditions"), ("preconditions",), "check", source, problems)
    for section in ("steps", "finally", "on_failure"):
        data[section] = _map_list(data.get(section), (section,), "step", source, problems)
    if data["preconditions"] is None:
        del data["preconditions"]
    for section in ("steps", "finally", "on_failure"):
        if data[section] is None:
            del data[section]
    return data


def _map_list(items: Any, path: Path_, kind: str, source: Source, problems: list[Problem]) -> Any:
    if not isinstance(items, list):
        return items
    return [split_body(item, (*path, i), kind, source, problems) for i, item in enumerate(items)]


def split_body(raw: Any, path: Path_, kind: str, source: Source, problems: list[Problem]) -> Any:
    """Replace a body's executor key (and options beside it) by a validated Action."""
    if not isinstance(raw, dict):
        return raw  # pydantic reports the wrong type
    model = _BODY_KINDS[kind]
    common = model.COMMON
    out: dict[str, Any] = {k: v for k, v in raw.items() if k in common}
    if kind == "step":
        for nested in ("preconditions", "verify"):
            if nested in out:
                out[nested] = _map_list(out[nested], (*path, nested), "check", source, problems)
        if "rollback" in out:
            out["rollback"] = split_body(out["rollback"], (*path, "rollback"), "rollback", source, problems)
    others = [k for k in raw if k not in common]
    exec_keys = [k for k in others if isinstance(k, str) and executors.is_executor(k)]
    label = _label(path)
    out["action"] = None
    if len(exec_keys) > 1:
        problems.append(source.problem((*path, exec_keys[1]), f"{label}: more than one executor "
                                       f"({', '.join(repr(k) for k in exec_keys)}); a step does one "
                                       "thing: split it into steps", key=True))
        return out
    if not exec_keys:
        if kind == "check" and "expect" in out and not others:
            _self_check(out, path, source, problems, label)
            return out
        _no_executor(others, path, kind, common, source, problems, label)
        return out
    key = exec_keys[0]
    try:
        cls = executors.get_executor(key)
    except ExecutorError as exc:
        problems.append(source.problem((*path, key), f"{label}: {exc}", key=True))
        return out
    out["action"] = _build_action(cls, key, raw, path, others, common, source, problems, label)
    return out


def _self_check(out: dict[str, Any], path: Path_, source: Source, problems: list[Problem], label: str) -> None:
    """A check with ``expect`` and no executor judges the step's own result (no second execution).

    Only a verification has such a result: a precondition runs before its step, so it would
    judge nothing."""
    if len(path) < 2 or path[-2] != "verify":
        problems.append(source.problem(path, f"{label}: a precondition without an executor has no result to "
                                             "judge", hint="give it an executor (for example "
                                             "'sql: ...' with 'expect:'), or use 'assert: EXPR' for a "
                                             "condition on params and earlier steps"))
        return
    extra = sorted(k for k in out if k not in ("expect", "name", "action"))
    for key in extra:
        problems.append(source.problem((*path, key), f"{label}: {key!r} means nothing on a check without an "
                                       "executor: it judges the step's own result, which is not run again",
                                       key=True))


def _no_executor(others: list[Any], path: Path_, kind: str, common: frozenset[str], source: Source,
                 problems: list[Problem], label: str) -> None:
    names = sorted(executors.known_names())
    listed = ", ".join(names)
    near_executor = False
    for k in others:
        suggestion = did_you_mean(str(k), [*names, *common])
        near_executor |= any(f"'{n}'" in suggestion for n in names)
        problems.append(source.problem((*path, k), f"{label}: unknown key {str(k)!r}{suggestion}", key=True,
                                       hint=None if suggestion else f"a {kind} needs one executor key: {listed}"))
    if not near_executor:  # a misspelt executor already says what is missing
        problems.append(source.problem(path, f"{label}: no executor key; use one of {listed}"))


def _build_action(cls: Any, key: str, raw: dict[str, Any], path: Path_, others: list[Any],
                  common: frozenset[str], source: Source, problems: list[Problem], label: str) -> Action | None:
    value = raw[key]
    options: dict[str, Any] = {}
    option_paths: dict[str, Path_] = {}
    if isinstance(value, dict):
        for opt, v in value.items():
            options[opt] = v
            option_paths[opt] = (*path, key, opt)
    else:
        options[cls.main_option] = value
        option_paths[cls.main_option] = (*path, key)
    fields = cls.Options.model_fields
    ok = True
    for opt in others:
        if opt == key:
            continue
        if opt in options:
            problems.append(source.problem((*path, opt), f"{label}: {opt!r} is given both inside "
                                           f"{key!r} and beside it; keep one", key=True))
            ok = False
            continue
        options[opt] = raw[opt]
        option_paths[opt] = (*path, opt)
    for opt in list(options):
        if opt not in fields:
            suggestion = did_you_mean(str(opt), [*fields, *common])
            hint = None if suggestion else f"{key} takes: {', '.join(fields)}"
            if opt in ("expect", "until") and "id" in common:
                hint = ("a step has no 'expect': put the check under 'verify:' (a list of checks "
                        "with expect), or retry until it holds with 'retry: {until: ...}'")
            problems.append(source.problem(
                option_paths[opt], f"{label}: unknown key {str(opt)!r}{suggestion}", key=True, hint=hint))
            del options[opt]
            ok = False
    try:
        validated = cls.Options.model_validate(options)
    except ValidationError as exc:
        problems.extend(map_errors(exc, source, options, lambda loc: (
            *option_paths.get(loc[0], (*path, key, loc[0])), *loc[1:]) if loc else (*path, key)))
        return None
    if not ok:
        return None
    action = Action(key, validated)
    action.paths = option_paths  # type: ignore[attr-defined]
    return action




# ---------------------------------------------------------------- connections


def _split_connections(data: dict[str, Any], source: Source, problems: list[Problem],
                       lenience: Any) -> dict[str, Any]:
    conns = data.get("connections")
    if not isinstance(conns, dict):
        return data
    out: dict[str, Any] = {}
    for name, raw in conns.items():
        built = split_connection(raw, ("connections", name), source, problems)
        if built is None:
            lenience.connections.add(name)  # reported here; steps naming it are not wrong too
        else:
            out[name] = built
    return {**data, "connections": out}


def split_connection(raw: Any, path: Path_, source: Source, problems: list[Problem]) -> BaseModel | None:
    """A connection is one kind key (short or long form) with the kind's options."""
    label = _label(path)
    kinds_list = ", ".join(CONNECTION_KINDS)
    if not isinstance(raw, dict):
        problems.append(source.problem(path, f"{label}: expected a mapping such as {{postgres: DSN}} or "
                                       f"{{http: {{base_url: URL}}}}, got {_describe(raw)}"))
        return None
    kinds = [k for k in raw if k in CONNECTION_KINDS]
    if len(kinds) != 1:
        unknown = [k for k in raw if k not in CONNECTION_KINDS]
        if not kinds and unknown:
            k = unknown[0]
            suggestion = did_you_mean(str(k), CONNECTION_KINDS)
            problems.append(source.problem((*path, k), f"{label}: unknown connection kind {str(k)!r}{suggestion}",
                                           key=True, hint=None if suggestion else f"one of {kinds_list}"))
        elif kinds:
            problems.append(source.problem((*path, kinds[1]), f"{label}: more than one kind "
                                           f"({', '.join(map(repr, kinds))}); a connection has one", key=True))
        else:
            problems.append(source.problem(path, f"{label}: a connection needs one kind key: {kinds_list}"))
        return None
    kind = kinds[0]
    model = CONNECTION_KINDS[kind]
    value = raw[kind]
    options: dict[str, Any] = dict(value) if isinstance(value, dict) else {model.main: value}
    paths = {k: (*path, kind, k) for k in options} if isinstance(value, dict) else {model.main: (*path, kind)}
    ok = True
    for k, v in raw.items():
        if k == kind:
            continue
        if k in options:
            problems.append(source.problem((*path, k), f"{label}: {k!r} is given both inside {kind!r} and "
                                           "beside it; keep one", key=True))
            ok = False
            continue
        options[k] = v
        paths[k] = (*path, k)
    for k in list(options):
        if k not in model.model_fields:
            suggestion = did_you_mean(str(k), model.model_fields)
            problems.append(source.problem(paths[k], f"{label}: unknown key {str(k)!r} for a {kind} "
                                           f"connection{suggestion}", key=True,
                                           hint=None if suggestion else f"{kind} takes: {', '.join(model.model_fields)}"))
            del options[k]
            ok = False
    try:
        conn = model.model_validate(options)
    except ValidationError as exc:
        problems.extend(map_errors(exc, source, options, lambda loc: (
            *paths.get(loc[0], (*path, kind, loc[0])), *loc[1:]) if loc else (*path, kind)))
        return None
    if not ok:
        return None
    conn.__dict__["_paths"] = paths
    return conn
