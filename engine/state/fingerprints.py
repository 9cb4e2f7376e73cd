"""What a saved plan or a recorded run depends on: the files it read (the procedure, its
children, the inventory and its vars folders), fingerprinted, and how they changed since."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..format.model import Body, Procedure

PLAN_FORMAT = "runproc-plan"
PLAN_VERSION = 1
# params declared `secret: true` are kept as a salted, slow hash: enough to tell that apply was
# given the same value, without a plan file turning into a cheap dictionary attack on it
_SECRET_ITERATIONS = 100_000
# template parts whose value is only known when the real run starts: the run's id and start
# time, whether it is a dry run, the clock. An action using them cannot be fixed by a plan.
_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)
_RUN_VALUES = re.compile(r"(?<![\w.])now\s*\(|(?<![\w.])run\s*(?:\.\s*(?!procedure\b|dir\b)[A-Za-z_]|\[)")
_VAR_NAME = re.compile(r"\bvars\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")



@dataclass(frozen=True)
class Change:
    """One way the world differs from the plan: a file changed, appeared or went away, a param."""

    what: str  # "procedure", "child procedure", "inventory", "param"
    name: str  # a path, or a param's name
    old: str | None  # sha256 (None: the file did not exist / was not read then)
    new: str | None
    detail: str | None = None

    def __str__(self) -> str:
        if self.detail is not None:
            return f"{self.what} {self.name}: {self.detail}"
        if self.old is None:
            return f"{self.what} {self.name}: read now, not when the plan was saved (sha256 {_short(self.new)})"
        if self.new is None:
            return f"{self.what} {self.name}: missing now (sha256 was {_short(self.old)})"
        return f"{self.what} {self.name}: changed (sha256 {_short(self.old)} -> {_short(self.new)})"

    def as_dict(self) -> dict[str, Any]:
        return {"what": self.what, "name": self.name, "old_sha256": self.old, "new_sha256": self.new,
                "message": str(self)}


def _short(digest: str | None) -> str:
    return f"{digest[:12]}…" if digest else "none"


# ---------------------------------------------------------------- fingerprints


def sha256_file(path: Path) -> str | None:
    """The SHA-256 of a file's bytes; None when it cannot be read (gone, a directory)."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 16), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def inventory_files(path: Path) -> list[Path]:
    """The files the inventory loader may read for ``path``.

    A file: itself plus everything under ``group_vars/`` and ``host_vars/`` beside it. A
    directory: every file below it (its group_vars/host_vars included). Hidden entries are
    left out, as the loader leaves them out. This errs towards too many files: a new file
    where the loader would look refuses an apply rather than slipping in unnoticed.
    """
    if path.is_dir():
        return sorted(_files_below(path))
    found = [path]
    for sub in ("group_vars", "host_vars"):
        folder = path.parent / sub
        if folder.is_dir():
            found.extend(sorted(_files_below(folder)))
    return found


def _files_below(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith("."):
                yield Path(root) / name


def _bodies(proc: Procedure) -> Iterator[tuple[str, Body]]:
    """Every executor call in a procedure, with the id of the step it belongs to."""
    for check in proc.preconditions:
        yield "preconditions", check
    for step in proc.all_steps():
        yield step.id, step
        if step.rollback is not None:
            yield step.id, step.rollback
        for check in (*step.preconditions, *step.verify):
            yield step.id, check


def child_file(body: Body, workdir: Path) -> Path | None:
    """A ``procedure:`` body's file, when it is written literally (a template is known only at run time)."""
    from ..format.expressions import is_template

    if body.action is None or body.action.kind != "procedure":
        return None
    file = str(getattr(body.action.options, "file", ""))
    if not file or is_template(file):
        return None
    path = Path(file).expanduser()
    return (path if path.is_absolute() else workdir / path).resolve()


def fingerprint(proc: Procedure, inventory: str | None, namespace: Mapping[str, Any]
                ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """(files, warnings): every file the run's definition comes from, path -> {what, sha256}.

    ``inventory`` is ``-i`` (absolute), which also holds for child procedures; without it
    each procedure's own ``inventory:`` counts, rendered with ``namespace`` when it is a
    template (the top procedure's params, vars and env). Warnings name what could not be
    fingerprinted (a templated child file or child inventory).
    """
    from ..errors import ProcedureError
    from ..format import expressions as ex
    from ..format.loader import load

    files: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []

    def add(path: Path, what: str) -> None:
        key = str(path)
        if key not in files:
            files[key] = {"what": what, "sha256": sha256_file(path)}

    def add_inventory(path: Path) -> None:
        for p in inventory_files(path):
            add(p, "inventory")

    if inventory:
        add_inventory(Path(inventory))
    seen: set[Path] = set()

    def walk(p: Procedure, top: bool) -> None:
        assert p.path is not None
        seen.add(p.path)
        add(p.path, "procedure" if top else "child procedure")
        if not inventory and p.inventory:
            try:
                rendered = str(ex.render_value(p.inventory, namespace)) if ex.is_template(p.inventory) \
                    else p.inventory
            except ex.ExpressionError as exc:
                warnings.append(f"{p.path}: inventory {p.inventory!r} not fingerprinted: {exc}")
            else:
                where = Path(rendered).expanduser()
                add_inventory((where if where.is_absolute() else p.workdir / where).resolve())
        for step_id, body in _bodies(p):
            if body.action is None or body.action.kind != "procedure":
                continue
            path = child_file(body, p.workdir)
            if path is None:
                warnings.append(f"{p.path}: step {step_id}: a templated procedure file is not fingerprinted")
                continue
            if path in seen:
                continue
            try:
                child = load(path)
            except ProcedureError:  # its run will fail on it; its bytes still count
                seen.add(path)
                add(path, "child procedure")
                continue
            walk(child, False)

    walk(proc, True)
    return files, warnings


def diff_files(saved: Mapping[str, Mapping[str, Any]], now: Mapping[str, Mapping[str, Any]]) -> list[Change]:
    """What differs between two fingerprints: changed, gone, newly read, no longer read."""
    changes: list[Change] = []
    for path, entry in saved.items():
        old = entry.get("sha256")
        new = now[path].get("sha256") if path in now else sha256_file(Path(path))
        if path not in now and new is not None and old == new:
            changes.append(Change(str(entry.get("what")), path, old, new,
                                  "no longer read (the procedure or its inventory now points elsewhere)"))
        elif old != new:
            changes.append(Change(str(entry.get("what")), path, old, new))
    for path, entry in now.items():
        if path not in saved:
            changes.append(Change(str(entry.get("what")), path, None, entry.get("sha256")))
    return changes


def changed_files(plan: Mapping[str, Any]) -> list[Change]:
    """The plan's files whose bytes differ now (nothing is loaded: a broken file is a change too)."""
    out = []
    for path, entry in plan["files"].items():
        new = sha256_file(Path(path))
        if new != entry.get("sha256"):
            out.append(Change(str(entry.get("what")), path, entry.get("sha256"), new))
    return out


