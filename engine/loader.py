"""YAML file to a validated Procedure, with every problem located at file:line:col.

Validation happens in passes that each collect problems rather than stopping at the first:
1. yamlsrc: syntax, duplicate keys, alias bombs, size;
2. bodies: each step, check and rollback has its executor key split off and validated by the
   executor's own Options model (short form, long form, options beside the key);
3. pydantic: the rest of the format, strictly typed;
4. semantics (checks.py): ids, needs, cycles, connections, expressions and their names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from . import executors
from .errors import ExecutorError, Problem, ProcedureError
from .model import CONNECTION_KINDS, Action, Body, Check, Procedure, Step
from .suggest import did_you_mean
from .yamlsrc import Path_, Source, read_file

_BODY_KINDS: dict[str, type[Body]] = {"step": Step, "check": Check, "rollback": Body}


def load(path: str | Path) -> Procedure:
    """Load and validate a procedure file; raise ProcedureError listing every problem."""
    source = read_file(path)
    proc = from_source(source)
    proc._path = Path(path).resolve()
    return proc


def from_source(source: Source) -> Procedure:
    from .checks import check_semantics

    data = source.data
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "empty"
        raise ProcedureError(source.problem((), f"a procedure is a YAML mapping with 'procedure:' and "
                                                f"'steps:'; this document is a {_kind(kind)}"))
    problems: list[Problem] = []
    data = _split_bodies(data, source, problems)
    data = _split_connections(data, source, problems)
    try:
        proc = Procedure.model_validate(data)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, source, ()))
        raise ProcedureError(_unique(problems)) from None
    proc._source = source
    problems.extend(check_semantics(proc, source))
    if problems:
        raise ProcedureError(_unique(problems))
    return proc


def _kind(name: str) -> str:
    return {"list": "list", "str": "string", "int": "number", "float": "number"}.get(name, name)


def _unique(problems: list[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


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
    if len(exec_keys) > 1:
        problems.append(source.problem((*path, exec_keys[1]), f"{label}: more than one executor "
                                       f"({', '.join(repr(k) for k in exec_keys)}); a step does one "
                                       "thing: split it into steps", key=True))
        out["action"] = None
        return out
    if not exec_keys:
        unknown = [k for k in others]
        names = sorted(executors.known_names())
        if unknown:
            for k in unknown:
                problems.append(source.problem(
                    (*path, k), f"{label}: unknown key {k!r}{did_you_mean(k, [*names, *common])}",
                    key=True, hint=None if did_you_mean(k, [*names, *common]) else
                    f"a {kind} needs one executor key: {', '.join(names)}"))
        else:
            problems.append(source.problem(path, f"{label}: no executor key; use one of {', '.join(names)}"))
        out["action"] = None
        return out
    key = exec_keys[0]
    try:
        cls = executors.get_executor(key)
    except ExecutorError as exc:
        problems.append(source.problem((*path, key), f"{label}: {exc}", key=True))
        out["action"] = None
        return out
    action = _build_action(cls, key, raw, path, others, common, source, problems, label)
    out["action"] = action
    return out


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
            suggestion = did_you_mean(opt, [*fields, *common])
            problems.append(source.problem(
                option_paths[opt], f"{label}: unknown key {opt!r}{suggestion}", key=True,
                hint=None if suggestion else f"{key} takes: {', '.join(fields)}"))
            del options[opt]
            ok = False
    try:
        validated = cls.Options.model_validate(options)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            base = option_paths.get(loc[0], (*path, key)) if loc else (*path, key)
            problems.extend(_error_problems(err, source, (*base, *loc[1:]), path_label=label))
        return None
    if not ok:
        return None
    action = Action(key, validated)
    action.paths = option_paths  # type: ignore[attr-defined]
    return action


def _label(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# ---------------------------------------------------------------- connections


def _split_connections(data: dict[str, Any], source: Source, problems: list[Problem]) -> dict[str, Any]:
    conns = data.get("connections")
    if not isinstance(conns, dict):
        return data
    out: dict[str, Any] = {}
    for name, raw in conns.items():
        path = ("connections", name)
        built = split_connection(raw, path, source, problems)
        if built is not None:
            out[name] = built
    return {**data, "connections": out}


def split_connection(raw: Any, path: Path_, source: Source, problems: list[Problem]) -> BaseModel | None:
    label = _label(path)
    if not isinstance(raw, dict):
        problems.append(source.problem(path, f"{label}: expected a mapping such as "
                                       "{postgres: DSN} or {http: {base_url: URL}}"))
        return None
    kinds = [k for k in raw if k in CONNECTION_KINDS]
    if len(kinds) != 1:
        unknown = [k for k in raw if k not in CONNECTION_KINDS]
        if not kinds and unknown:
            k = unknown[0]
            problems.append(source.problem((*path, k), f"{label}: unknown connection kind {k!r}"
                                           f"{did_you_mean(k, CONNECTION_KINDS)}", key=True,
                                           hint=f"one of {', '.join(CONNECTION_KINDS)}"))
        else:
            problems.append(source.problem(path, f"{label}: a connection has exactly one kind of "
                                           f"{', '.join(CONNECTION_KINDS)}"))
        return None
    kind = kinds[0]
    model = CONNECTION_KINDS[kind]
    value = raw[kind]
    options: dict[str, Any] = dict(value) if isinstance(value, dict) else {model.main: value}
    paths = {k: (*path, kind, k) for k in options} if isinstance(value, dict) else {model.main: (*path, kind)}
    for k, v in raw.items():
        if k != kind:
            options[k] = v
            paths[k] = (*path, k)
    for k in list(options):
        if k not in model.model_fields:
            problems.append(source.problem(paths[k], f"{label}: unknown key {k!r} for a {kind} "
                                           f"connection{did_you_mean(k, model.model_fields)}", key=True))
            del options[k]
    try:
        conn = model.model_validate(options)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            base = paths.get(loc[0], (*path, kind)) if loc else (*path, kind)
            problems.extend(_error_problems(err, source, (*base, *loc[1:]), path_label=label))
        return None
    conn.__dict__["_paths"] = paths
    return conn


# ---------------------------------------------------------------- pydantic errors


def pydantic_problems(exc: ValidationError, source: Source, prefix: Path_) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p and "]" in p))
        out.extend(_error_problems(err, source, (*prefix, *loc)))
    return out


_YAML11_WORDS = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF"}


def _error_problems(err: Any, source: Source, path: Path_, path_label: str | None = None) -> list[Problem]:
    kind = err["type"]
    if path and path[-1] == "action":
        return []  # already reported by the body pass
    value = err.get("input")
    if kind == "extra_forbidden":
        parent, key = path[:-1], path[-1]
        allowed = _allowed_keys(parent)
        return [source.problem(path, f"{_label(parent) or 'procedure'}: unknown key {key!r}"
                               f"{did_you_mean(str(key), allowed)}", key=True)]
    if kind == "missing":
        parent, key = path[:-1], path[-1]
        return [source.problem(parent, f"{_label(parent) or 'procedure'}: missing required key {key!r}")]
    hint = None
    message = err["msg"]
    if isinstance(value, str) and kind in ("bool_type", "int_type", "float_type", "bool_parsing"):
        message = f"expected {_type_word(kind)}, got the string {value!r}"
        if value in _YAML11_WORDS:
            hint = f"runproc reads YAML 1.2, where {value!r} is a string; write true or false"
        elif value.lstrip("-").startswith("0") and value.lstrip("-")[1:].isdigit():
            hint = "a leading zero is not octal in YAML 1.2: write 0o755 for octal, or drop the zero"
        elif kind != "bool_type":
            hint = "remove the quotes to make it a number"
    elif kind in ("string_type", "int_type", "float_type", "bool_type", "list_type", "dict_type"):
        message = f"expected {_type_word(kind)}, got {_describe(value)}"
    elif message.startswith("Value error, "):
        message = message[len("Value error, "):]
    return [source.problem(path, f"{_label(path) or 'procedure'}: {message}", hint=hint)]


def _type_word(kind: str) -> str:
    return {"bool_type": "true or false", "bool_parsing": "true or false", "int_type": "an integer",
            "float_type": "a number", "string_type": "a string", "list_type": "a list",
            "dict_type": "a mapping"}.get(kind, kind)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _allowed_keys(parent: Path_) -> list[str]:
    from .model import Param, Retry, Secret

    names: list[str] = []
    if not parent:
        return [f.alias or n for n, f in Procedure.model_fields.items()]
    if parent[0] == "params" and len(parent) == 2:
        return list(Param.model_fields)
    if parent[0] == "secrets" and len(parent) == 2:
        return list(Secret.model_fields)
    if parent[-1] == "retry":
        return list(Retry.model_fields)
    if parent[0] in ("steps", "finally", "on_failure"):
        return sorted(Step.COMMON)
    return names
