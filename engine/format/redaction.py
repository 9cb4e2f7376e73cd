"""Redaction: every secret value, and the forms it takes once quoted or encoded, replaced by ***."""

from __future__ import annotations

import json
import re
import shlex
import weakref
from collections.abc import Iterable
from typing import Any

from .expressions import to_text


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
