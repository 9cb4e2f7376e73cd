"""Splitting a rendered ``sql`` query into statements, and showing one without running it.

Several statements in one ``query`` are split by a small lexer that knows quotes, dollar
quotes, comments, ``BEGIN ATOMIC`` bodies (PostgreSQL) and trigger bodies (SQLite, through
``sqlite3.complete_statement``). PostgreSQL receives a query without values as one string (the
server splits it, so the lexer only has to be right about the checks below); with values each
statement is sent on its own, because server-side binding takes one statement at a time.

This module knows SQL text only, no database: the sessions (``sqlpostgres``, ``sqlsqlite``)
turn its statements into calls, and the executor (``sql``) checks them before any is sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..errors import FailedError
from ..format.expressions import SqlIdent, SqlParam
from .base import StepContext

Part = str | SqlParam | SqlIdent

# first words of statements that end or start transactions: a step is already one transaction,
# so a COMMIT inside it would defeat max_rows, dry_run: transaction and the rollback on error
TRANSACTION_WORDS = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})


class SqlError(FailedError):
    """A query that cannot be sent as written (a value inside quotes, a COMMIT in a step)."""


# ---------------------------------------------------------------- splitting statements


@dataclass
class Statement:
    parts: list[Part]
    words: list[str]  # the first few keywords, upper-cased, for the transaction check

    @property
    def has_params(self) -> bool:
        return any(isinstance(p, SqlParam) for p in self.parts)


_WORD = re.compile(r"[A-Za-z0-9_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*")
_DOLLAR = re.compile(r"\$([A-Za-z_\x80-\U0010ffff][A-Za-z0-9_\x80-\U0010ffff]*)?\$")
_STATE_NAMES = {"squote": "a quoted string", "estring": "a quoted string", "dquote": "a quoted identifier",
                "dollar": "a dollar-quoted string", "line": "a comment", "block": "a comment",
                "backtick": "a quoted identifier", "bracket": "a quoted identifier"}


class _Lexer:
    """Just enough of the SQL lexical grammar to find the ``;`` that end statements."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgres"
        self.mode = "code"
        self.tag = ""  # the current dollar quote's delimiter
        self.depth = 0  # nested block comments (PostgreSQL nests them, SQLite does not)
        self.atomic = 0  # inside BEGIN ATOMIC ... END: its ``;`` do not end the statement
        self.last_word = ""
        self.words: list[str] = []  # the current statement's first keywords
        self.code_seen = False  # the current statement holds more than blanks and comments

    def take(self) -> tuple[list[str], bool]:
        """The current statement's keywords and whether it has code; starts the next one."""
        out = (self.words, self.code_seen)
        self.words, self.code_seen = [], False
        return out

    def scan(self, text: str) -> Iterator[int]:
        """Yield the offsets of the ``;`` in ``text`` that may end a statement."""
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            mode = self.mode
            if mode == "code" and not c.isspace() and c != ";" and not text.startswith(("--", "/*"), i):
                self.code_seen = True
            if mode == "code":
                if c == ";":
                    if self.atomic:
                        i += 1
                        continue
                    self.last_word = ""
                    yield i
                    i += 1
                elif text.startswith("--", i):
                    self.mode = "line"
                    i += 2
                elif text.startswith("/*", i):
                    self.mode, self.depth = "block", 1
                    i += 2
                elif c == "'":
                    self.mode = "squote"
                    i += 1
                elif c == '"':
                    self.mode = "dquote"
                    i += 1
                elif c == "`" and not self.pg:
                    self.mode = "backtick"
                    i += 1
                elif c == "[" and not self.pg:
                    self.mode = "bracket"
                    i += 1
                elif c == "$" and self.pg and (m := _DOLLAR.match(text, i)):
                    self.mode, self.tag = "dollar", m.group(0)
                    i = m.end()
                elif m := _WORD.match(text, i):
                    word = m.group(0)
                    i = m.end()
                    if self.pg and word in ("E", "e") and text.startswith("'", i):
                        self.mode = "estring"  # E'...': backslash escapes
                        i += 1
                        continue
                    self._word(word.upper())
                else:
                    i += 1
            elif mode in ("squote", "estring"):
                j = text.find("'", i) if mode == "squote" else self._estring_end(text, i)
                if j < 0:
                    return
                if text.startswith("''", j):
                    i = j + 2
                else:
                    self.mode, i = "code", j + 1
            elif mode in ("dquote", "backtick", "bracket"):
                j = text.find({"dquote": '"', "backtick": "`", "bracket": "]"}[mode], i)
                if j < 0:
                    return
                self.mode, i = "code", j + 1
            elif mode == "dollar":
                j = text.find(self.tag, i)
                if j < 0:
                    return
                self.mode, i = "code", j + len(self.tag)
            elif mode == "line":
                j = text.find("\n", i)
                if j < 0:
                    return
                self.mode, i = "code", j + 1
            else:  # block comment
                if text.startswith("*/", i):
                    self.depth -= 1
                    i += 2
                    if self.depth == 0 or not self.pg:
                        self.mode = "code"
                elif self.pg and text.startswith("/*", i):
                    self.depth += 1
                    i += 2
                else:
                    i += 1

    @staticmethod
    def _estring_end(text: str, i: int) -> int:
        while i < len(text):
            if text[i] == "\\":
                i += 2
            elif text[i] == "'":
                return i
            else:
                i += 1
        return -1

    def _word(self, word: str) -> None:
        if len(self.words) < 3:
            self.words.append(word)
        if self.pg:
            # as psql does: BEGIN ATOMIC opens a body closed by END; CASE ... END nests inside it
            if (word == "ATOMIC" and self.last_word == "BEGIN") or (self.atomic and word == "CASE"):
                self.atomic += 1
            elif self.atomic and word == "END":
                self.atomic -= 1
        self.last_word = word

    def value(self) -> None:
        if self.mode != "code":
            what = _STATE_NAMES.get(self.mode, "a quoted string")
            raise SqlError(f"a {{{{ }}}} value is inside {what}; values are sent as bind parameters, "
                           "so write them without quotes: WHERE name = {{ params.name }}")
        self.last_word = ""
        self.code_seen = True


def render_parts(ctx: StepContext, text: str) -> list[Part]:
    """The query as literal text, bind parameters and identifiers (``expressions.render_sql``)."""
    return list(ctx.render_sql(text))


def split_statements(parts: list[Part], dialect: str) -> list[Statement]:
    """Split rendered parts into statements; blank or comment-only statements are dropped."""
    import sqlite3

    lexer = _Lexer(dialect)
    out: list[Statement] = []
    current: list[Part] = []

    def flush() -> None:
        nonlocal current
        words, code = lexer.take()
        if code:
            out.append(Statement(current, words))
        current = []

    for part in parts:
        if not isinstance(part, str):
            lexer.value()
            current.append(part)
            continue
        start = 0
        for cut in lexer.scan(part):
            piece = part[start:cut + 1]
            if dialect == "sqlite":
                # a trigger body holds ``;``: SQLite itself says when a statement is complete
                so_far = "".join(p if isinstance(p, str) else "?" for p in current) + piece
                if not sqlite3.complete_statement(so_far):
                    continue
            current.append(piece)
            start = cut + 1
            flush()
        if part[start:]:
            current.append(part[start:])
    flush()
    return out


def transaction_control(stmt: Statement) -> str | None:
    """The keyword when a statement begins or ends a transaction (SAVEPOINTs are fine)."""
    w = stmt.words
    if not w or w[0] not in TRANSACTION_WORDS:
        return None
    if w[0] == "ROLLBACK" and "TO" in w[1:]:
        return None  # ROLLBACK [TRANSACTION] TO SAVEPOINT stays inside the transaction
    return " ".join(w[:2]) if w[0] == "START" else w[0]


# ---------------------------------------------------------------- showing a statement


def display_value(value: Any) -> str:
    """A bound value as a SQL literal, for showing a statement (never for running one)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    from ..format.expressions import to_text

    return "'" + to_text(value).replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    """A double-quoted identifier: how ``| ident`` values reach SQLite, and how they are shown."""
    return '"' + name.replace('"', '""') + '"'


def display_sql(parts: list[Part]) -> str:
    """The statement as a reader would write it, values inlined, for plans and step descriptions."""
    out = []
    for p in parts:
        if isinstance(p, SqlParam):
            out.append(display_value(p.value))
        elif isinstance(p, SqlIdent):
            out.append(p.name if re.fullmatch(r"[a-z_][a-z0-9_]*", p.name) else quote_ident(p.name))
        else:
            out.append(p)
    return "".join(out)
