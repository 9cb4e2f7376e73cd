"""What both importers share: the result, step ids, YAML comments of the source, and the
final check that the procedure validates (a step the loader refuses becomes a TODO)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .emit import TODO, Procedure, Step, dump, render

_SECRET_NAME = re.compile(r"(pass(word|wd)?|secret|token|api_?key|private_?key|credential)", re.I)


def looks_secret(name: str) -> bool:
    """A variable whose name says it holds a credential: a secret from the environment."""
    return bool(_SECRET_NAME.search(name))


@dataclass
class Imported:
    """An import's outcome: the procedure's text and what a person must know about it."""

    text: str
    name: str
    steps: int
    todos: list[str] = field(default_factory=list)  # "file:line: what was not translated"
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # validation problems left (a bug if any)


def slug(text: str, default: str = "step") -> str:
    """A step id or param name from free text: ``[a-z_][a-z0-9_]*``, at most 40 characters."""
    out = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:40].strip("_")
    if not out:
        return default
    return out if re.match(r"[a-z_]", out) else f"_{out}"


class Ids:
    """Unique step ids across the procedure's sections."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def new(self, wanted: str) -> str:
        base = slug(wanted)
        out, n = base, 2
        while out in self.taken:
            out = f"{base}_{n}"
            n += 1
        self.taken.add(out)
        return out


def placeholder(step: Step, reason: str, original: Any = None) -> None:
    """Turn ``step`` into a TODO: a step that fails with the reason, the original in a comment.

    It fails rather than doing nothing: a run must not go past a task nobody translated as if
    it had been done. Its ``when`` is kept when it was translated, so it only fails where the
    task would have run.
    """
    when = step.body.get("when")
    name = step.body.get("name")
    step.body = {**({"name": name} if name else {}), **({"when": when} if when else {}),
                 "assert": {"that": "false", "message": f"{TODO}: not translated: {_inert(reason)}"}}
    step.todo = reason
    step.comments.append(f"{TODO}: {reason}")
    if original is not None:
        step.comments.append("the original, for reference:")
        step.comments.extend(f"  {line}" for line in dump(original).splitlines())


def _inert(text: str) -> str:
    """Text for a template field that shows ``{{ x }}`` rather than rendering it."""
    return text.replace("{{", "{ {").replace("}}", "} }").replace("{%", "{ %").replace("%}", "% }")


def finish(proc: Procedure, file: str, originals: dict[str, Any], notes: list[str]) -> Imported:
    """Render, validate, and make TODOs of the steps the loader refuses, until it accepts."""
    from ..errors import ProcedureError
    from ..format.loader import from_source
    from ..format.yamlsrc import parse_text

    problems: list[str] = []
    for _ in range(20):  # each round removes at least one refused step
        rendered = render(proc)
        try:
            from_source(parse_text(rendered.text, file, keep_going=True))
            problems = []
            break
        except ProcedureError as exc:
            by_step: dict[str, list[str]] = {}
            problems = []
            for problem in exc.problems:
                owner = next((sid for sid, (a, b) in rendered.spans.items() if a <= problem.line <= b), None)
                if owner is None:
                    problems.append(str(problem))
                else:
                    by_step.setdefault(owner, []).append(problem.message)
            steps = {s.id: s for s in proc.all_steps()}
            fixed = False
            for sid, messages in by_step.items():
                step = steps[sid]
                if step.todo is None:
                    placeholder(step, "; ".join(messages), originals.get(sid))
                    fixed = True
                elif "when" in step.body:  # the kept condition was the trouble
                    del step.body["when"]
                    fixed = True
            if not fixed:
                break
    todos = [f"{s.origin}: step '{s.id}': {s.todo}" for s in proc.all_steps() if s.todo]
    todos += [f"{s.origin}: step '{s.id}': review: {r}" for s in proc.all_steps() for r in s.reviews]
    return Imported(rendered.text, proc.name, len(proc.all_steps()), todos, notes, problems)
