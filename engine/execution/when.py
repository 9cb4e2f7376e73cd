"""A step's ``when:``, decided for the step or for one iteration of its loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..format import expressions as ex


def judge_when(when: str | None, ns: dict[str, Any], result: Any, redact: Callable[[str], str],
               subject: str) -> tuple[bool, list[str]]:
    """Whether to go on, and the unknown values that leave ``when`` undecided in a dry run.

    False when ``when`` is false (``result`` is then skipped, with a note) or cannot be evaluated
    (``result`` failed, the error redacted: a secret may be in what the expression met). In a
    dry run a ``when`` that reads a planned step's result is undecided: the note says the
    ``subject`` (a step, an iteration) may run or be skipped, and the plan goes on."""
    if not when:
        return True, []
    try:
        if not ex.evaluate(when, ns):
            result.status = "skipped"
            result.notes.append(f"when false: {when.strip()}")
            return False, []
    except ex.UnknownValueError as exc:
        result.notes.append(f"when undecided in a dry run ({exc.unknown.label} is unknown): "
                            f"the {subject} may run or be skipped")
        return True, [exc.unknown.label]
    except ex.ExpressionError as exc:
        result.status, result.error = "failed", f"when: {redact(str(exc))}"
        return False, []
    return True, []
