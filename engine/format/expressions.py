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
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache, lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes, pass_eval_context
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


def _make_env(finalize: Any) -> _Environment:
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
    try:
        return environment(mode).from_string(source)
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


# ---------------------------------------------------------------- static analysis


@dataclass(frozen=True)
class Reference:
    root: str
    name: str | None  # the first attribute or constant key, when static


@dataclass(frozen=True)
class Analysis:
    roots: frozenset[str]
    references: tuple[Reference, ...]
    error: str | None = None
    error_line: int = 1  # 1-based, within the analysed text


# A template made only of ``{{ }}`` tags is analysed tag by tag, each tag cached: a large
# procedure repeats the same few expressions (``{{ params.env }}``) inside text that differs
# from step to step, and parsing 10,000 distinct templates whole costs seconds.
_TAG = re.compile(r"\{\{.*?\}\}", re.S)
# Names a template binds for itself: loop bodies see ``loop``, macros ``caller``/``varargs``/``kwargs``.
_IMPLICIT = frozenset({"loop", "caller", "varargs", "kwargs"})


def analyse(source: str, *, expression: bool) -> Analysis:
    """Parse without rendering: syntax, unknown filters/tests, and the names used.

    An expression (``when``, ``expect``, ``until``, ``assert``) is parsed exactly as
    ``compile_expression`` will at run time, so what passes here also compiles there.
    """
    if expression:
        return _analyse_expression(source)
    if "{%" in source or "{#" in source:
        return _analyse_template(source)
    tags = _TAG.findall(source)
    if len(tags) != source.count("{{"):
        return _analyse_template(source)  # an unclosed tag: let the full parse say where
    roots: set[str] = set()
    refs: dict[Reference, None] = {}
    for tag in tags:
        part = _analyse_tag(tag)
        if part.error:
            # the whole parse gives the right line, and a "}}" inside a string literal may
            # have cut this tag short where Jinja's lexer would not
            return _analyse_template(source)
        roots |= part.roots
        refs.update(dict.fromkeys(part.references))
    return Analysis(frozenset(roots), tuple(refs))


# The common tag, ``{{ steps.build.stdout | trim }}``: a name, attributes or constant keys,
# argument-less filters. Read by a regular expression instead of Jinja's lexer and parser,
# which cost ~100 us a tag (a 10,000-step file with a distinct tag per step spent a second
# there). Anything else, or any doubt, goes to the real parser.
_SIMPLE_TAG = re.compile(
    r"\{\{-?\s*([A-Za-z_][A-Za-z0-9_]*)"
    r"((?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:'[^'\\]*'|\"[^\"\\]*\"|[0-9]+)\s*\])*)"
    r"((?:\s*\|\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*-?\}\}")
_FIRST_ACCESS = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*(?:'([^']*)'|\"([^\"]*)\"|[0-9]+)\s*\]")
# Words Jinja's parser reads as literals or operators, never as a variable
_NOT_NAMES = frozenset({"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is",
                        "if", "else", "recursive"})


@lru_cache(maxsize=16384)
def _analyse_tag(tag: str) -> Analysis:
    m = _SIMPLE_TAG.fullmatch(tag)
    if m is None or m.group(1) in _NOT_NAMES:
        return _analyse_template(tag)
    known = environment("text").filters
    if any(name not in known for name in m.group(3).replace("|", " ").split()):
        return _analyse_template(tag)  # the parser words the error
    root = m.group(1)
    first = _FIRST_ACCESS.match(m.group(2))
    name: str | None = None  # a bare name, or an integer key first
    if first is not None:
        name = next((g for g in first.groups() if g is not None), None)
    return Analysis(frozenset({root}), (Reference(root, name),))


@lru_cache(maxsize=16384)
def _analyse_expression(source: str) -> Analysis:
    from jinja2.parser import Parser

    env = environment("text")
    try:
        parser = Parser(env, source, state="variable")
        tree = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            return Analysis(frozenset(), (), f"syntax error: unexpected {token.value!r} after the expression",
                            token.lineno)
    except TemplateSyntaxError as exc:
        return Analysis(frozenset(), (), f"syntax error: {exc.message}", exc.lineno or 1)
    return _walk(tree, env)


@lru_cache(maxsize=16384)
def _analyse_template(source: str) -> Analysis:
    env = environment("text")
    try:
        tree = env.parse(source)
    except TemplateSyntaxError as exc:
        return Analysis(frozenset(), (), f"syntax error: {exc.message}", exc.lineno or 1)
    return _walk(tree, env)


def _walk(tree: nodes.Node, env: _Environment) -> Analysis:
    """One pass over the tree: names read, names bound, attribute roots, filters and tests.

    ``jinja2.meta.find_undeclared_variables`` would run the code generator's frame analysis,
    ten times the cost of this walk; binding is approximated per template (a name bound
    anywhere counts as bound everywhere), which can only hide a problem, never invent one.
    """
    loaded: set[str] = set()
    bound: set[str] = set()
    refs: dict[Reference, None] = {}
    stack: list[nodes.Node] = [tree]
    implicit = False
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is nodes.Name:
            (loaded if node.ctx == "load" else bound).add(node.name)
        elif kind is nodes.Getattr or kind is nodes.Getitem:
            target = node.node
            if type(target) is nodes.Name and target.ctx == "load":
                if kind is nodes.Getattr:
                    refs[Reference(target.name, node.attr)] = None
                elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                    refs[Reference(target.name, node.arg.value)] = None
                else:
                    refs[Reference(target.name, None)] = None
        elif kind is nodes.Filter or kind is nodes.Test:
            table = env.filters if kind is nodes.Filter else env.tests
            if node.name not in table:
                from .suggest import did_you_mean

                word = "filter" if kind is nodes.Filter else "test"
                return Analysis(frozenset(), (), f"no {word} named '{node.name}'"
                                f"{did_you_mean(node.name, table)}", node.lineno)
        elif kind in (nodes.For, nodes.Macro, nodes.CallBlock):
            implicit = True
        stack.extend(node.iter_child_nodes())
    if implicit:
        bound |= _IMPLICIT
    roots = loaded - bound
    out = [r for r in refs if r.root in roots]
    named = {r.root for r in out}
    out.extend(Reference(name, None) for name in sorted(roots - named))
    return Analysis(frozenset(roots), tuple(out))


def step_references(sources: Iterable[str]) -> set[str]:
    """Ids of steps named as ``steps.<id>`` in the given expressions/templates."""
    out: set[str] = set()
    for src in sources:
        for ref in analyse(src, expression=not is_template(src)).references:
            if ref.root == "steps" and ref.name:
                out.add(ref.name)
    return out


# ---------------------------------------------------------------- redaction


def encodings(text: str) -> set[str]:
    """The forms a secret takes when a program or a library passes it on: as is, shell-quoted,
    JSON-escaped, URL-encoded (``%20`` and form-encoded ``+``), base64 (with and without the
    newline ``echo`` adds), and in upper or lower case."""
    import base64
    from urllib.parse import quote, quote_plus

    forms = {text, text.upper(), text.lower()}
    for form in list(forms):
        forms.update({shlex.quote(form), json.dumps(form)[1:-1], quote(form, safe=""), quote_plus(form)})
    raw = text.encode("utf-8", "surrogateescape")
    for data in (raw, raw + b"\n"):
        forms.add(base64.b64encode(data).decode("ascii"))
        forms.add(base64.urlsafe_b64encode(data).decode("ascii"))
    # a base64 form without its padding is what JWTs and URLs carry
    forms.update({f.rstrip("=") for f in list(forms) if f.endswith("=")})
    return {f for f in forms if len(f) >= 3}


# every Redactor of this process, for the last-resort crash report (engine.cli.common.crashed)
_REDACTORS: weakref.WeakSet[Redactor] = weakref.WeakSet()


def redact_everywhere(text: str) -> str:
    """``text`` masked by every live Redactor: what a crash report may show."""
    for redactor in list(_REDACTORS):
        text = redactor(text)
    return text


class Redactor:
    """Replaces every secret value, and the forms it takes once quoted or encoded, by ***."""

    MASK = "***"

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        _REDACTORS.add(self)
        self._added: set[str] = set()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for s in secrets:
            self.add(s)

    def add(self, secret: Any) -> None:
        text = secret if isinstance(secret, str) else to_text(secret)
        if len(text) < 3 or text in self._added:  # masking "a" everywhere would destroy output and reveal nothing
            return
        self._added.add(text)
        self._forms.update(encodings(text))
        self._forms.discard("")
        alternatives = sorted(self._forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(re.escape(f) for f in alternatives))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not isinstance(text, str):
            return text
        return self._pattern.sub(self.MASK, text)

    def file(self, path: str, chunk: int = 1 << 20) -> None:
        """Rewrite a (spooled output) file with every secret masked, in bounded memory.

        Chunks overlap: text that could be the start of a secret is carried into the next
        chunk, and a cut never falls inside a match, so no secret escapes at a boundary.
        """
        import os

        if self._pattern is None:
            return
        hold = max(len(f) for f in self._forms) - 1
        tmp = f"{path}.redacting"
        with open(path, encoding="utf-8", errors="surrogateescape", newline="") as src, \
                open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="") as dst:
            carry = ""
            while True:
                data = src.read(chunk)
                buf = carry + data
                if not data:
                    dst.write(self._pattern.sub(self.MASK, buf))
                    break
                cut = max(0, len(buf) - hold)
                for m in self._pattern.finditer(buf):
                    if m.start() < cut < m.end():
                        cut = m.end()
                dst.write(self._pattern.sub(self.MASK, buf[:cut]))
                carry = buf[cut:]
        os.replace(tmp, path)

    def deep(self, value: Any) -> Any:
        """Redact every string inside a JSON-like value."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.deep(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.deep(v) for v in value]
        return value
