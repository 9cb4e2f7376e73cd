"""The Jinja2 sandbox: expressions, templates, quoting for shell and SQL, unknowns, redaction.

Values never become code. Each rendering mode has its own environment whose ``finalize``
turns every ``{{ }}`` value into data for its target: shell-quoted text (``| raw`` opts out),
SQL bind parameters (``| ident`` quotes an identifier), or plain text. All environments are
sandboxed with ``StrictUndefined``: a misspelled name is an error, never an empty string.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

from jinja2 import FileSystemBytecodeCache, StrictUndefined, pass_eval_context
from jinja2.exceptions import TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from ..errors import InvalidInputError

ROOT_NAMES = frozenset({"params", "vars", "secrets", "env", "steps", "run", "host", "result", "now"})
# run.dir is the procedure file's folder: commands already run there, but paths handed to
# other programs (a SQLite VACUUM INTO, a kubectl -f) need it spelled out
RUN_FIELDS = frozenset({"id", "dry_run", "started_at", "error", "procedure", "dir", "offline"})
HOST_FIELDS = frozenset({"name", "address", "port", "user", "vars", "groups"})


class ExpressionError(InvalidInputError):
    """An expression or template failed to compile or to evaluate."""


class UnknownValueError(ExpressionError):
    """An expression needed the result of a step that a dry run only planned."""

    def __init__(self, unknown: Unknown) -> None:
        self.unknown = unknown
        super().__init__(f"unknown until the run: {unknown.label}")


class Unknown:
    """Stands for a result a dry run cannot know. Reading it is fine; deciding on it is not."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def __getattr__(self, name: str) -> Unknown:
        # the sandbox probes these on every callable-looking value: they are not the user's names
        if name.startswith("_") or name in ("unsafe_callable", "alters_data", "jinja_pass_arg"):
            raise AttributeError(name)
        return Unknown(f"{self.label}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Unknown:
        # `steps.x.stdout.strip()` is as unknown as stdout; the call is shown as written
        shown = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
        return Unknown(f"{self.label}({', '.join(shown)})")

    def __getitem__(self, key: Any) -> Unknown:
        return Unknown(f"{self.label}[{key!r}]")

    def __str__(self) -> str:
        return f"<unknown: {self.label}>"

    __repr__ = __str__

    def _decide(self, *_: Any) -> Any:
        raise UnknownValueError(self)

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _decide  # type: ignore[assignment]
    __iter__ = __len__ = __contains__ = __int__ = __float__ = _decide  # type: ignore[assignment]
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __truediv__ = _decide  # type: ignore[assignment]
    __hash__ = object.__hash__


@dataclass(frozen=True)
class RawValue:
    """A value the author chose to insert into a shell command unquoted (``| raw``)."""

    value: Any


@dataclass(frozen=True)
class SqlIdent:
    """An identifier to quote as such in SQL (``| ident``)."""

    name: str


@dataclass(frozen=True)
class SqlParam:
    value: Any


# Set while an executor executes: an unknown value (a planned step's result, a secret a dry
# run does not have) must then stop the action rather than be sent as placeholder text.
# Plans (describe) leave it unset and show `<unknown: ...>` in place.
_executing: contextvars.ContextVar[bool] = contextvars.ContextVar("executing", default=False)


@contextlib.contextmanager
def executing() -> Iterator[None]:
    token = _executing.set(True)
    try:
        yield
    finally:
        _executing.reset(token)


def _refuse_unknown(value: Any) -> None:
    if isinstance(value, Unknown) and _executing.get():
        raise UnknownValueError(value)


# Set while engine.execution.taint renders a template twice: every value a template emits is recorded,
# so that the values that differ between the real and the shadow rendering can be masked.
_emitted: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("emitted", default=None)


@contextlib.contextmanager
def emitted() -> Iterator[list[Any]]:
    """Record every value emitted by renders inside the block (see ``engine.execution.taint``)."""
    values: list[Any] = []
    token = _emitted.set(values)
    try:
        yield values
    finally:
        _emitted.reset(token)


def _emit(value: Any) -> None:
    values = _emitted.get()
    if values is not None:
        values.append(value)


def to_text(value: Any) -> str:
    """How a value reads when inserted in text: JSON for containers, lower-case booleans."""
    if isinstance(value, RawValue):
        value = value.value
    _refuse_unknown(value)
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, dict | list | tuple):
        text = json.dumps(value, default=str)
    else:
        text = str(value)
    _emit(text)
    return text


_sql_parts: contextvars.ContextVar[list[Any]] = contextvars.ContextVar("sql_parts")
_SQL_TOKEN = re.compile(r"\x00(\d+)\x00")


def _finalize_text(value: Any) -> str:
    return to_text(value)


def _finalize_shell(value: Any) -> str:
    if isinstance(value, RawValue | Unknown):
        return to_text(value)
    return shlex.quote(to_text(value))


@pass_eval_context
def _finalize_sql(eval_ctx: Any, value: Any) -> str:
    # pass_eval_context keeps Jinja from folding a constant {{ 9 }} at compile time: this
    # finalize records a bind parameter as a side effect, which must happen on every render
    if isinstance(value, Unknown):
        _refuse_unknown(value)
        return str(value)
    parts = _sql_parts.get()
    if isinstance(value, RawValue):  # in SQL even a raw value stays a bind parameter
        value = value.value
    _emit(value.name if isinstance(value, SqlIdent) else value)
    parts.append(value if isinstance(value, SqlIdent) else SqlParam(value))
    return f"\x00{len(parts) - 1}\x00"


class _Environment(SandboxedEnvironment):
    """Sandbox where ``a.b`` on a mapping reads the key first, so ``json.items`` is data."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _b64encode(value: Any) -> str:
    import base64

    return base64.b64encode(to_text(value).encode()).decode("ascii")


def _b64decode(value: Any) -> str:
    import base64

    return base64.b64decode(to_text(value).encode("ascii"), validate=True).decode()


def _now(fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return datetime.now(UTC).strftime(fmt)


class _TemplateCache(FileSystemBytecodeCache):
    """Jinja2's own cache of compiled templates, in its default private folder (created 0700,
    owner and mode checked: a compiled template is code): a procedure's templates are compiled
    once, not by every run (~0.5 ms each: most of a short dry run's own time). A cache that
    cannot be read or written (a full disk, a read-only folder) is no cache, never an error."""

    def load_bytecode(self, bucket: Any) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged or unreadable entry: compile instead
            bucket.reset()

    def dump_bytecode(self, bucket: Any) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


@cache
def _template_cache(mode: str, tmp: str) -> _TemplateCache | None:
    """The cache for one quoting mode under this process's temporary folder ``tmp``. Compiled
    code depends on this module (finalize folds constants at compile time) and on Jinja2:
    both are in the files' names."""
    import os
    import zlib

    from jinja2 import __version__ as jinja_version

    try:
        st = os.stat(__file__)
        key = zlib.crc32(repr((jinja_version, st.st_mtime_ns, st.st_size)).encode())
        return _TemplateCache(pattern=f"__runproc_{mode}_{key:08x}_%s.cache")
    except (OSError, RuntimeError):  # no safe folder: templates are compiled every time
        return None


def _make_env(finalize: Any) -> _Environment:
    # no loader: {% include %}, {% import %} and {% extends %} have nothing to load (a value
    # naming a "template" must never be compiled as one)
    env = _Environment(undefined=StrictUndefined, finalize=finalize, autoescape=False,
                       keep_trailing_newline=True)
    env.filters.update({
        "raw": RawValue,
        "ident": lambda v: SqlIdent(str(v)),
        "to_json": lambda v: json.dumps(v, default=str),
        "from_json": json.loads,
        # already quoted: raw, so that a command's own quoting does not quote it twice
        "quote": lambda v: RawValue(shlex.quote(to_text(v))),
        "to_text": to_text,
        "b64encode": _b64encode,
        "b64decode": _b64decode,
    })
    env.globals["now"] = _now
    return env


@cache
def environment(mode: str = "text") -> _Environment:
    finalize = {"text": _finalize_text, "shell": _finalize_shell, "sql": _finalize_sql}[mode]
    return _make_env(finalize)


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


_WHOLE = re.compile(r"^\{\{(.*)\}\}$", re.S)


@lru_cache(maxsize=4096)
def _compiled_template(mode: str, source: str) -> Any:
    """``source`` compiled in ``mode``'s environment, through the bytecode cache: as
    Environment.from_string, with the compiled code kept between processes."""
    import tempfile

    env = environment(mode)
    try:
        bcc = _template_cache(mode, tempfile.gettempdir())
        if bcc is None:
            return env.from_string(source)
        bucket = bcc.get_bucket(env, source, None, source)
        if bucket.code is None:
            bucket.code = env.compile(source)
            bcc.set_bucket(bucket)
        return env.template_class.from_code(env, bucket.code, env.make_globals(None))
    except TemplateError as exc:
        raise ExpressionError(f"template error: {exc}") from None


@lru_cache(maxsize=4096)
def _compiled_expression(source: str) -> Any:
    try:
        return environment("text").compile_expression(source, undefined_to_none=False)
    except TemplateError as exc:
        raise ExpressionError(f"expression error: {exc}") from None


@contextlib.contextmanager
def _as_user_error(source: str) -> Iterator[None]:
    """Whatever a user's expression raises becomes an ExpressionError quoting the expression."""
    try:
        yield
    except (UnknownValueError, ExpressionError):
        raise
    except UndefinedError as exc:
        raise ExpressionError(f"in `{source.strip()}`: {exc.message}") from None
    except Exception as exc:  # noqa: BLE001 - anything a user's expression can raise
        raise ExpressionError(f"in `{source.strip()}`: {type(exc).__name__}: {exc}") from None


def evaluate(source: str, namespace: Mapping[str, Any]) -> Any:
    """Evaluate an expression (``when``, ``expect``, ``until``, ``assert``)."""
    with _as_user_error(source):
        return _compiled_expression(source)(**namespace)


def render(source: str, namespace: Mapping[str, Any], mode: str = "text") -> str:
    if not is_template(source):
        return source
    with _as_user_error(source):
        return _compiled_template(mode, source).render(**namespace)


def render_value(value: Any, namespace: Mapping[str, Any]) -> Any:
    """Render templates inside a value; a string that is one ``{{ expr }}`` keeps its type."""
    if isinstance(value, str):
        if not is_template(value):
            return value
        whole = _WHOLE.match(value.strip())
        if whole and "{{" not in whole.group(1) and "}}" not in whole.group(1):
            result = evaluate(whole.group(1), namespace)
            _refuse_unknown(result)
            result = result.value if isinstance(result, RawValue) else result
            _emit(result)
            return result
        return render(value, namespace)
    if isinstance(value, dict):
        return {render_value(k, namespace): render_value(v, namespace) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(v, namespace) for v in value]
    return value


def render_sql(source: str, namespace: Mapping[str, Any]) -> list[str | SqlParam | SqlIdent]:
    """Split a SQL template into literal text, bind parameters and identifiers."""
    if not is_template(source):
        return [source]
    parts: list[Any] = []
    token = _sql_parts.set(parts)
    try:
        text = render(source, namespace, mode="sql")
    finally:
        _sql_parts.reset(token)
    out: list[str | SqlParam | SqlIdent] = []
    pos = 0
    for m in _SQL_TOKEN.finditer(text):
        if m.start() > pos:
            out.append(text[pos:m.start()])
        out.append(parts[int(m.group(1))])
        pos = m.end()
    if pos < len(text):
        out.append(text[pos:])
    return out
