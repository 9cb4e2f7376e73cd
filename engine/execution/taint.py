"""Values derived from secrets, found by rendering twice, and masked wherever they go.

A filter chain can turn a secret into text that no list of encodings foresees
(``{{ secrets.t | to_json | upper }}``, a slice, a concatenation, a URL built around it).
Instead of teaching every filter about secrets, each template that can reach a secret is
rendered a second time in a *shadow* namespace where every protected value is replaced by a
twin of the same shape (each letter and digit rotated, punctuation kept, so ``| int``,
``| from_json``, slicing and case changes behave alike). Every value the template emitted
(each ``{{ }}`` after its filters, each SQL bind parameter, each shell value) that differs
between the two renderings depends on a secret: it is *tainted*, added to the run's
Redactor (with its encodings) and remembered with its twin, so a ``vars`` entry or a child
procedure's param built from a secret is protected in turn.

What this cannot see: a secret that only steers control flow (``{% if %}`` over literal
text) leaks that one bit; booleans and values shorter than three characters are never
masked (masking ``true`` everywhere would destroy output and reveal nothing); a program
that receives a secret may still encode it in a way the Redactor does not know (docs/running.md).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from ..format import expressions as ex
from ..format.redaction import Redactor

# Namespace roots that can hold a protected value. ``steps`` (already-redacted results) and
# ``run`` never do; leaving them out keeps the shadow namespace cheap on large runs.
_ROOTS = ("secrets", "params", "vars", "env", "host", "item", "result")
_NEVER_TAINTED = frozenset({"", "true", "false", "True", "False", "None", "null"})


def twin(value: Any) -> Any:
    """A value of the same shape that differs wherever ``value`` has a letter or a digit."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 2 + 1
    if not isinstance(value, str):
        return value
    out = []
    for c in value:
        if "a" <= c <= "z":
            out.append(chr((ord(c) - 97 + 1) % 26 + 97))
        elif "A" <= c <= "Z":
            out.append(chr((ord(c) - 65 + 1) % 26 + 65))
        elif "0" <= c <= "9":
            out.append(chr((ord(c) - 48 + 1) % 10 + 48))
        else:
            out.append(c)
    made = "".join(out)
    if made == value:  # no letter or digit: rotate the other characters instead
        made = "".join(chr(ord(c) + 1) if not c.isspace() else c for c in value)
    return made


class Taint:
    """The protected values of one run, their twins, and the rendering that finds derivations."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        self._twins: dict[str, Any] = {}  # protected text -> its twin
        self._pattern: re.Pattern[str] | None = None  # any protected text, longest first
        self._lock = threading.Lock()  # steps render on several threads

    def __bool__(self) -> bool:
        return bool(self._twins)

    def protect(self, value: Any, shadow: Any = None) -> None:
        """Mask ``value`` from now on; ``shadow`` is what it reads as in the shadow namespace."""
        if isinstance(value, ex.Unknown | bool) or value is None:
            return
        if isinstance(value, Mapping):
            for k, v in value.items():
                self.protect(v, shadow.get(k) if isinstance(shadow, Mapping) else None)
            return
        if isinstance(value, list | tuple):
            for i, v in enumerate(value):
                self.protect(v, shadow[i] if isinstance(shadow, list | tuple) and i < len(shadow) else None)
            return
        text = ex.to_text(value)
        if text in _NEVER_TAINTED:
            return
        self.redactor.add(text)
        if len(text) < 3:
            return
        with self._lock:
            if text not in self._twins:
                made = shadow if shadow is not None and shadow != value else twin(value)
                self._twins[text] = made
                self._pattern = re.compile("|".join(re.escape(t) for t in sorted(self._twins, key=len, reverse=True)))

    def pairs(self) -> Iterator[tuple[str, Any]]:
        """Protected values and their twins (a child procedure inherits them)."""
        with self._lock:
            return iter(list(self._twins.items()))

    # ------------------------------------------------------------ the shadow namespace

    def _swap(self, value: Any) -> tuple[Any, bool]:
        """``value`` with every protected text replaced by its twin; (shadow, changed).

        A text that only contains a protected value (``vars.dsn`` built around a password)
        has the twin spliced in, so what a template derives from it differs too.
        """
        if isinstance(value, str):
            if value in self._twins:
                return self._twins[value], True
            if self._pattern is None or self._pattern.search(value) is None:
                return value, False
            return self._pattern.sub(lambda m: str(self._twins[m.group(0)]), value), True
        if isinstance(value, Mapping):
            out: dict[Any, Any] = {}
            changed = False
            for k, v in value.items():
                out[k], c = self._swap(v)
                changed = changed or c
            return (out, True) if changed else (value, False)
        if isinstance(value, list | tuple):
            items = [self._swap(v) for v in value]
            if any(c for _, c in items):
                return [v for v, _ in items], True
            return value, False
        if isinstance(value, int | float) and not isinstance(value, bool) and str(value) in self._twins:
            return twin(value), True
        return value, False

    def shadow(self, ns: Mapping[str, Any]) -> dict[str, Any] | None:
        """The shadow namespace, or None when no protected value is reachable from ``ns``."""
        out = dict(ns)
        changed = False
        for root in _ROOTS:
            if root in ns:
                out[root], c = self._swap(ns[root])
                changed = changed or c
        return out if changed else None

    # ------------------------------------------------------------ rendering

    def run(self, render: Any, ns: Mapping[str, Any], *args: Any) -> Any:
        """``render(*args, ns)`` once for real and once in the shadow; taint what differs.

        ``render`` is one of the expressions module's renderers (or a wrapper around one):
        every value it emits is recorded (``expressions.emitted``) and compared in order.
        """
        if not self._twins:
            return render(*args, ns)
        with ex.emitted() as real_emitted:
            result = render(*args, ns)
        if not real_emitted:
            return result
        shadow_ns = self.shadow(ns)
        if shadow_ns is None:
            return result
        try:
            with ex.emitted() as shadow_emitted:
                render(*args, shadow_ns)
        except Exception:  # noqa: BLE001 - the twin broke a filter: whatever was emitted may be secret
            self._taint_all(real_emitted)
            return result
        if len(real_emitted) != len(shadow_emitted):  # the secret steered a loop or a branch
            self._taint_all(real_emitted)
            return result
        for real, other in zip(real_emitted, shadow_emitted, strict=True):
            if real != other:
                self.protect(real, other)
        return result

    def _taint_all(self, emitted: list[Any]) -> None:
        for value in emitted:
            self.protect(value)
