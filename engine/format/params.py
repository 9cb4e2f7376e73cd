"""Typed params from ``-p name=value`` and ``--params-file``, and secrets from env, file or a store."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, Problem, ProcedureError
from .model import Param, Procedure, Secret
from .suggest import did_you_mean

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def parse_cli_params(items: list[str]) -> dict[str, str]:
    """``-p name=value`` items to a mapping; a malformed item is a ProcedureError."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ProcedureError(Problem("-p", 0, 0, f"expected name=value, got {item!r}"))
        out[name.strip()] = value
    return out


class ParamsFile(dict[str, Any]):
    """Values read from ``--params-file``, remembering where each was written."""

    source: Any = None


def read_params_file(path: str) -> dict[str, Any]:
    from .yamlsrc import read_file

    source = read_file(path)  # JSON is YAML, so one reader serves both
    if not isinstance(source.data, dict):
        raise ProcedureError(Problem(path, 1, 1, "a params file is a mapping of name: value"))
    out = ParamsFile(source.data)
    out.source = source
    return out


def _where(proc: Procedure, name: str) -> tuple[str, int, int]:
    src = proc._source
    file = src.file if src else "<params>"
    line, col = src.where(("params", name), key=True) if src else (0, 0)
    return file, line, col


def _declarations(proc: Procedure) -> tuple[str, int, int]:
    """The procedure's ``params:`` key, or its ``procedure:`` key when it declares none."""
    src = proc._source
    if src is None:
        return "<params>", 0, 0
    key = "params" if isinstance(src.data, dict) and "params" in src.data else "procedure"
    line, col = src.where((key,), key=True)
    return src.file, line, col


def coerce(name: str, spec: Param, value: Any, *, from_text: bool) -> Any:
    """Convert and check one value; raise ValueError with what was expected."""
    t = spec.type
    if from_text and isinstance(value, str):
        text = value.strip()
        try:
            if t == "int":
                value = int(text)
            elif t == "float":
                value = float(text)
            elif t == "bool":
                if text.lower() not in _TRUE | _FALSE:
                    raise ValueError
                value = text.lower() in _TRUE
            elif t == "list":
                value = json.loads(text) if text.startswith("[") else [v.strip() for v in text.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"expected {_word(t)}, got {value!r}") from None
    ok = {"str": isinstance(value, str), "int": isinstance(value, int) and not isinstance(value, bool),
          "float": isinstance(value, int | float) and not isinstance(value, bool),
          "bool": isinstance(value, bool), "list": isinstance(value, list)}[t]
    if not ok:
        raise ValueError(f"expected {_word(t)}, got {value!r}")
    if t == "float":
        value = float(value)
    if spec.pattern is not None and t == "str" and not re.search(spec.pattern, value):
        raise ValueError(f"{value!r} does not match the pattern {spec.pattern}")
    if spec.min is not None and t in ("int", "float") and value < spec.min:
        raise ValueError(f"{value} is below the minimum {spec.min}")
    if spec.max is not None and t in ("int", "float") and value > spec.max:
        raise ValueError(f"{value} is above the maximum {spec.max}")
    if spec.choices is not None and value not in spec.choices:
        raise ValueError(f"{value!r} is not one of {', '.join(map(repr, spec.choices))}")
    return value


def _word(t: str) -> str:
    return {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
            "list": "a list (a,b,c or a JSON list)"}[t]


def resolve_params(proc: Procedure, cli: dict[str, str] | None = None,
                   values: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge file/API values and CLI text (CLI wins) with defaults; all problems at once.

    A problem with a value from ``--params-file`` points into that file; one with a ``-p``
    value points at the param's declaration and says it came from ``-p``.
    """
    problems: list[Problem] = []
    values_source = getattr(values, "source", None)
    given: dict[str, tuple[Any, bool]] = {k: (v, False) for k, v in (values or {}).items()}
    given.update({k: (v, True) for k, v in (cli or {}).items()})
    out: dict[str, Any] = {}

    def origin(name: str, *, key: bool = False) -> tuple[str, int, int, str]:
        if not given[name][1] and values_source is not None:
            line, col = values_source.where((name,), key=key)
            return values_source.file, line, col, ""
        file, line, col = _where(proc, name)
        return file, line, col, " (from -p)" if given[name][1] else ""

    for name in given:
        if name not in proc.params:
            suggestion = did_you_mean(name, proc.params)
            file, line, col, how = origin(name, key=True)
            if how:  # from -p, so in no file: where the procedure declares its params (or would)
                file, line, col = _declarations(proc)
            declared = ", ".join(proc.params) or "none"
            problems.append(Problem(file, line, col, f"unknown param {name!r}{how}{suggestion}",
                                    None if suggestion else f"this procedure declares: {declared}"))
    for name, spec in proc.params.items():
        if name in given:
            value, from_text = given[name]
            try:
                out[name] = coerce(name, spec, value, from_text=from_text)
            except ValueError as exc:
                file, line, col, how = origin(name)
                problems.append(Problem(file, line, col, f"param {name!r}{how}: {exc}",
                                        _hint(spec, value, from_text)))
        elif spec.required:
            file, line, col = _where(proc, name)
            problems.append(Problem(file, line, col, f"param {name!r} is required ({_word(spec.type)})",
                                    f"pass -p {name}=VALUE" + (f"; {spec.help}" if spec.help else "")))
        elif spec.default is not None:
            out[name] = coerce(name, spec, spec.default, from_text=False)  # checked at load time
        else:
            out[name] = None
    if problems:
        raise ProcedureError(problems)
    return out


def _hint(spec: Param, value: Any, from_text: bool) -> str | None:
    if spec.help:
        return spec.help
    if from_text:
        return None
    if spec.type == "str" and isinstance(value, int | float | bool):
        return "quote it to make it a string"
    if spec.type == "bool" and isinstance(value, str) and value.lower() in _TRUE | _FALSE:
        return f"params files are read as YAML 1.2, where {value!r} is a string; write true or false"
    return None


class SecretUnavailable(InvalidInputError):
    """A secret store could not give a secret. The message names the source and the reason
    (permission denied, path missing, key missing), never a value; ``absent`` says the secret
    is not there at all, which ``optional: true`` allows (a refusal or an outage it does not).
    resolve_secrets turns it into a ProcedureError at the secret's declaration (exit 2)."""

    def __init__(self, reason: str, *, absent: bool = False) -> None:
        super().__init__(reason)
        self.absent = absent


# reads a store secret (vault, aws_secretsmanager, aws_ssm): engine/executors/secretstores.py
# gives one per run (format reads nothing over the network itself)
SecretReader = Callable[[Secret], str]


def resolve_secrets(proc: Procedure, *, allow_missing: bool = False,
                    read: SecretReader | None = None) -> dict[str, str | None]:
    """Read every secret; a missing one is an error before anything runs. With
    ``allow_missing`` (a dry run) a missing one is None, for the runner to treat as unknown.
    ``read`` reads the secrets kept in a store; without it such a secret is missing."""
    problems: list[Problem] = []
    out: dict[str, str | None] = {}
    for name, spec in proc.secrets.items():
        value: str | None = None
        absent = True
        if spec.store is not None:
            missing = f"secret {name!r}: {spec.store} secrets are read only by a run"
            if read is not None:
                try:
                    value = read(spec)
                except SecretUnavailable as exc:
                    missing, absent = f"secret {name!r}: {exc}", exc.absent
        elif spec.env is not None:
            value = os.environ.get(spec.env)
            missing = f"secret {name!r}: environment variable {spec.env} is not set"
        else:
            path = Path(spec.file or "")
            if not path.is_absolute():
                path = proc.workdir / path
            missing = f"secret {name!r}: file {path} cannot be read"
            try:
                value = path.read_text().rstrip("\n")
            except OSError as exc:
                missing += f" ({exc.strerror})"
            except ValueError:  # not UTF-8 text
                missing += " (not UTF-8 text)"
        if value is None:
            if spec.optional and absent:
                out[name] = ""
                continue
            if allow_missing:
                out[name] = None
                continue
            # located only now: a position is read from the file's text when first asked for
            src = proc._source
            line, col = src.where(("secrets", name), key=True) if src else (0, 0)
            problems.append(Problem(src.file if src else "<secrets>", line, col, missing))
        else:
            out[name] = value
    if problems:
        raise ProcedureError(problems)
    return out
