"""Which settings of a procedure are credentials: a password in a DSN or URL, a sensitive header.

Used where a run starts (credentials written in connections are protected before anything
renders) and by executors that meet credentials at run time (a rendered DSN, a header).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from . import expressions as ex

# header names whose values are credentials (the http executor hides them in plans too)
SENSITIVE_NAME = re.compile(r"auth|cookie|token|secret|passw|api[-_]?key|session|signature|credential", re.I)
_CONNINFO_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")


def credentials_in(text: str, name: str = "") -> list[str]:
    """The credentials inside one setting: a URL's or a conninfo's password, a sensitive
    header's value (after its scheme word: ``Bearer abc`` gives ``abc``)."""
    from urllib.parse import unquote, urlsplit

    out: list[str] = []
    if name and SENSITIVE_NAME.search(name):
        scheme, _, rest = text.partition(" ")
        # "Bearer abc" keeps its scheme word readable: "Bearer ***"
        out.append(rest.strip() if rest.strip() and scheme.isalpha() else text)
    if "://" in text and "@" in text:
        try:
            password = urlsplit(text.strip()).password
        except ValueError:
            password = None
        if password:
            out.extend({password, unquote(password)})
    m = _CONNINFO_PASSWORD.search(text)
    if m:
        value = m.group(1)
        out.append(value[1:-1].replace("\\'", "'") if value.startswith("'") else value)
    return out


def connection_secrets(connections: Mapping[str, Any]) -> list[str]:
    """Credentials written literally in a procedure's connections (templated ones are found
    when they render: a template that reads a secret is tainted, and executors protect what
    they parse out of a rendered DSN or header)."""
    out: list[str] = []

    def walk(value: Any, name: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, str) and not ex.is_template(value):
            out.extend(credentials_in(value, name))

    for conn in connections.values():
        dump = conn.model_dump() if hasattr(conn, "model_dump") else conn
        walk(dump, "")
    return out
