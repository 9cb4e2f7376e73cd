"""The procedures ``runproc serve --procedures DIR`` offers: each file's name, description,
owner, params and step graph, read with the same loader as ``runproc validate`` (an invalid
file is listed with its first problem, never hidden).

Files are read again only when they change (their size, mtime or inode), so the catalogue
follows edits without a restart and a page view costs a ``stat`` per file, not a parse.
The same cache reads the file a recorded run names, for its graph.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# a default that is a secret's is never shown, whatever it holds
MASK = "***"


@dataclass(frozen=True)
class Entry:
    """One procedure file as the pages show it."""

    file: str
    name: str
    ok: bool
    problem: str | None = None  # the first problem of an invalid file
    problems: int = 0
    description: str = ""
    owner: str = ""
    params: tuple[dict[str, Any], ...] = ()
    steps: tuple[tuple[str, str], ...] = ()  # (id, label): the main steps, in file order
    needs: dict[str, list[str]] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # step id -> its executor (shell, confirm...)
    phases: dict[str, list[str]] = field(default_factory=dict)  # finally, on_failure -> their step ids
    lock: str | None = None
    window: str | None = None
    sha256: str = ""

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "ok": self.ok, "problem": self.problem,
                "description": self.description, "owner": self.owner, "params": list(self.params)}

    def detail(self) -> dict[str, Any]:
        steps = [{"id": sid, "name": label, "executor": self.kinds.get(sid), "needs": self.needs.get(sid, [])}
                 for sid, label in self.steps]
        return {**self.summary(), "steps": steps, "phases": self.phases, "lock": self.lock, "window": self.window,
                "sha256": self.sha256}


class Catalogue:
    """The procedure files of a folder and its subfolders one level down (as ``runproc list``
    reads them); ``folder`` None: no catalogue, but recorded runs' files are still read."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._cache: dict[str, tuple[tuple[int, int, int], Entry]] = {}
        self._lock = threading.Lock()

    def files(self) -> list[Path]:
        if self.folder is None:
            return []
        from ..api import procedure_files

        try:
            files = procedure_files(self.folder)
        except OSError:
            return []  # the folder went away: an empty catalogue, said on the page
        return files

    def entries(self) -> list[Entry]:
        found = [self.load(str(path)) for path in self.files()]
        return [e for e in found if e is not None]

    def find(self, name: str) -> Entry | None:
        """The first valid procedure named ``name`` (its ``procedure:``), in file order."""
        for entry in self.entries():
            if entry.ok and entry.name == name:
                return entry
        return None

    def load(self, path: str) -> Entry | None:
        """The entry of the file at ``path``, read again only when it changed; None when there
        is no such file."""
        file = Path(path)
        try:
            st = file.stat()
        except OSError:
            return None
        if not file.is_file():
            return None
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            cached = self._cache.get(path)
        if cached is not None and cached[0] == key:
            return cached[1]
        entry = _read(file)
        with self._lock:
            self._cache[path] = (key, entry)
        return entry


def _read(file: Path) -> Entry:
    from ..api import load
    from ..errors import ProcedureError

    try:
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
    except OSError as exc:
        return Entry(str(file), file.stem, False, f"{file}: cannot read it: {exc.strerror or exc}", 1)
    try:
        proc = load(file)
    except ProcedureError as exc:
        problems = list(exc.problems)
        first = str(problems[0]) if problems else str(exc)
        return Entry(str(file), file.stem, False, first, len(problems), sha256=digest)
    except Exception as exc:  # noqa: BLE001 - one odd file must not take the catalogue down
        return Entry(str(file), file.stem, False, f"{file}: cannot load it: {type(exc).__name__}: {exc}", 1,
                     sha256=digest)
    return _entry(file, proc, digest)


def _entry(file: Path, proc: Any, digest: str) -> Entry:
    from ..format import graph

    try:
        needs = {k: list(v) for k, v in graph.build(proc.steps).needs.items()}
    except Exception:  # noqa: BLE001 - a loaded procedure has no cycle; this is only belt and braces
        needs = {}
    kinds = {s.id: s.action.kind for s in [*proc.steps, *proc.finally_, *proc.on_failure] if s.action is not None}
    window = proc.window_times  # one window, or several joined by "; "
    return Entry(
        file=str(file), name=proc.procedure, ok=True, description=(proc.description or "").strip(),
        owner=proc.owner or "", params=tuple(_param(name, spec) for name, spec in proc.params.items()),
        steps=tuple((s.id, s.name or s.id) for s in proc.steps), needs=needs, kinds=kinds,
        phases={"finally": [s.id for s in proc.finally_], "on_failure": [s.id for s in proc.on_failure]},
        lock=proc.lock, window=window, sha256=digest)


def _param(name: str, spec: Any) -> dict[str, Any]:
    default, choices = spec.default, list(spec.choices) if spec.choices is not None else None
    if spec.secret:  # a secret's default, or the few values it may take, are secrets too
        default = MASK if default is not None else None
        choices = None
    return {"name": name, "type": spec.type, "required": bool(spec.required), "default": default,
            "choices": choices, "pattern": spec.pattern,
            "min": spec.min, "max": spec.max, "help": spec.help or "", "secret": bool(spec.secret)}
