"""pydantic's validation errors as runproc's located problems: the YAML path and position of
each error, in the user's words ("expected an integer, got the string '5m'"), with hints."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from ..errors import Problem
from .model import Body, Check, Procedure, Step
from .suggest import did_you_mean
from .yamlsrc import Path_, Source

_BODY_KINDS: dict[str, type[Body]] = {"step": Step, "check": Check, "rollback": Body}




def pydantic_problems(exc: ValidationError, source: Source, prefix: Path_) -> list[Problem]:
    """Problems for a validation of ``source.data`` (at ``prefix``)."""
    data = _get(source.data, prefix) if prefix else source.data
    return map_errors(exc, source, data, lambda loc: (*prefix, *loc))


def map_errors(exc: ValidationError, source: Source, data: Any, to_source: Any) -> list[Problem]:
    """Locate pydantic's errors in the YAML, in words a person acts on.

    ``data`` is what was validated (to strip union-member tags from locations) and
    ``to_source`` maps a location in it to a path in the source. The errors pydantic gives for
    each member of a union (``str | int``) become one: "expected a string or an integer".
    """
    grouped: dict[Path_, list[Any]] = {}
    for err in exc.errors():
        loc = _data_path(data, err)
        if loc and loc[-1] == "action":
            continue  # the body pass reported it
        grouped.setdefault(loc, []).append(err)
    out: list[Problem] = []
    for loc, errs in grouped.items():
        types = [e for e in errs if e["type"] in _TYPE_WORDS]
        if len(types) > 1 and len(types) == len(errs):
            words = list(dict.fromkeys(_TYPE_WORDS[e["type"]] for e in types))
            expected = ", ".join(words[:-1]) + " or " + words[-1]
            path = to_source(loc)
            out.append(source.problem(path, f"{_label(path) or 'procedure'}: expected {expected}, "
                                      f"got {_describe(types[0].get('input'))}"))
            continue
        for err in errs[:1] if types else errs:
            out.append(_problem(err, source, to_source(loc)))
    return out


_YAML11_WORDS = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF",
                 "Y", "N"}
_TYPE_WORDS = {"bool_type": "true or false", "bool_parsing": "true or false", "int_type": "an integer",
               "float_type": "a number", "string_type": "a string", "list_type": "a list",
               "dict_type": "a mapping", "model_type": "a mapping", "int_from_float": "an integer"}
_NAME_RULES = {"procedure": ("procedure name", "lower-case letters, digits and '-', starting with a letter "
                             "or digit"),
               "id": ("step id", "lower-case letters, digits and '_', not starting with a digit")}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _problem(err: Any, source: Source, path: Path_) -> Problem:
    kind = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    where = _label(path) or "procedure"
    if kind == "extra_forbidden":
        parent, key = path[:-1], path[-1]
        # `{help: a, b}` is a classic: the comma ends the value and ' b' becomes a key
        hint = ("a comma inside {...} starts a new key: quote the value before it"
                if isinstance(key, str) and " " in key.strip() else None)
        return source.problem(path, f"{_label(parent) or 'procedure'}: unknown key {str(key)!r}"
                              f"{did_you_mean(str(key), _allowed_keys(parent))}", key=True, hint=hint)
    if kind == "missing":
        parent, key = path[:-1], path[-1]
        return source.problem(parent, f"{_label(parent) or 'procedure'}: missing required key {key!r}")
    hint = None
    if isinstance(value, str) and kind in ("bool_type", "int_type", "float_type", "bool_parsing"):
        message = f"expected {_TYPE_WORDS[kind]}, got the string {value!r}"
        digits = value.lstrip("+-")
        if value in _YAML11_WORDS:
            hint = f"runproc reads YAML 1.2, where {value!r} is a string; write true or false"
        elif len(digits) > 1 and digits[0] == "0" and digits.isdigit():
            hint = "a leading zero is ambiguous (octal in YAML 1.1): write 0o755 for octal, or drop the zero"
        elif kind != "bool_type" and _is_number(value):
            hint = "remove the quotes to make it a number"
    elif kind in _TYPE_WORDS:
        message = f"expected {_TYPE_WORDS[kind]}, got {_describe(value)}"
        if path and path[0] == "secrets" and len(path) == 2:
            hint = "a secret is {env: VARIABLE} or {file: PATH}"
    elif kind == "string_pattern_mismatch":
        what, rule = _NAME_RULES.get(str(path[-1]) if path else "", ("value", f"the pattern {ctx.get('pattern')}"))
        message = f"{value!r} is not a valid {what}: use {rule}"
    elif kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {"greater_than_equal": ("at least", "ge"), "greater_than": ("more than", "gt"),
                 "less_than_equal": ("at most", "le"), "less_than": ("less than", "lt")}[kind]
        message = f"must be {bound[0]} {ctx.get(bound[1])}, got {value!r}"
    elif kind == "literal_error":
        choices = [c.strip().strip("'") for c in str(ctx.get("expected", "")).replace(" or ", ", ").split(",")]
        message = f"expected one of {ctx.get('expected')}, got {value!r}{did_you_mean(str(value), choices)}"
    elif kind == "too_short" and path == ("steps",):
        message = "a procedure needs at least one step"
    elif kind == "value_error":
        message = str(ctx.get("error", err["msg"]))
    else:
        message = err["msg"]
    return source.problem(path, f"{where}: {message}", hint=hint)


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
    return f"the string {value!r}"


def _allowed_keys(parent: Path_) -> list[str]:
    from .model import Param, Retry, Secret
    from .notifications import allowed_keys

    notification_keys = allowed_keys(parent)  # inside notify/escalate, a step's included
    if notification_keys is not None:
        return notification_keys
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
    return []


def _get(data: Any, path: Path_) -> Any:
    """The value at ``path``, or None when it is not there."""
    for part in path:
        if not ((isinstance(data, dict) and part in data) or
                (isinstance(data, list) and isinstance(part, int) and part < len(data))):
            return None
        data = data[part]
    return data


def _data_path(data: Any, err: Any) -> Path_:
    """The error's location as a path into ``data``, without pydantic's union-member tags.

    ``env: {A: [1]}`` against ``dict[str, str | int]`` is reported at ``('env', 'A', 'str')``
    and ``('env', 'A', 'int')``; both are the value at ``('env', 'A')``.
    """
    loc = err["loc"]
    out: list[Any] = []
    node = data
    for i, part in enumerate(loc):
        if (isinstance(node, dict) and part in node) or (
                isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
            out.append(part)
        elif err["type"] == "missing" and i == len(loc) - 1:
            out.append(part)
    return tuple(out)


def _label(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
