"""What the caller of a run chose, as one frozen value: the CLI's flags, an embedder's keywords.

``RunOptions`` is checked when it is made, so a bad choice (``forks=0``, a ``limit`` pattern
that does not parse, a report folder that cannot be created) is invalid input before
anything runs, for the CLI and an embedder alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import Problem, ProcedureError


@dataclass(frozen=True)
class RunOptions:
    """Every choice a caller makes about one run (not the procedure, its params or services).

    - ``dry_run``: plan: readonly steps and checks run, writes are shown, never made.
    - ``offline``: plan without connecting to anything (implies ``dry_run``).
    - ``yes``: answer yes to every ``confirm``.
    - ``no_rollback``: on failure, leave completed steps as they are.
    - ``only``: run only these step ids (and nothing else).
    - ``limit``: restrict fanned-out steps to hosts matching this pattern.
    - ``inventory``: the Ansible inventory (overrides the procedure's).
    - ``state``: the state URL (``sqlite:///path``); None: ``$RUNPROC_STATE`` or the XDG state dir.
    - ``journal``: record the run in the state store.
    - ``ignore_window``: run outside the procedure's maintenance window.
    - ``report_dir``: where a report listener writes (step logs are spooled below it).
    - ``log_dir``: where full outputs are spooled (default: ``report_dir``/logs, else next to the state).
    - ``forks``: hosts at a time in fanned-out steps (default 20).
    - ``accept_new_hosts``: accept and record unknown SSH host keys.
    - ``known_hosts``: the SSH known_hosts file.
    - ``expected_actions``: the actions a saved plan showed (``runproc apply``), by step id.
    """

    dry_run: bool = False
    offline: bool = False
    yes: bool = False
    no_rollback: bool = False
    only: tuple[str, ...] = ()
    limit: str | None = None
    inventory: str | None = None
    state: str | None = None
    journal: bool = True
    ignore_window: bool = False
    report_dir: str | None = None
    log_dir: str | None = None
    forks: int | None = None
    accept_new_hosts: bool = False
    known_hosts: str | None = None
    expected_actions: Mapping[str, str | None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.offline and not self.dry_run:
            object.__setattr__(self, "dry_run", True)  # --offline plans
        if not isinstance(self.only, tuple):
            object.__setattr__(self, "only", tuple(self.only or ()))
        if self.log_dir is None and self.report_dir:
            object.__setattr__(self, "log_dir", str(Path(self.report_dir) / "logs"))
        problems = []
        if self.forks is not None and (isinstance(self.forks, bool) or not isinstance(self.forks, int)
                                       or self.forks < 1):
            problems.append(Problem("--forks", 0, 0, f"must be at least 1, got {self.forks}"))
        if self.report_dir:
            try:
                Path(self.report_dir).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                problems.append(Problem("--report-dir", 0, 0,
                                        f"cannot create {self.report_dir}: {exc.strerror or exc}"))
        if self.limit:
            from ..inventory import InventoryError
            from ..inventory.patterns import check_pattern

            try:
                check_pattern(self.limit)
            except InventoryError as exc:
                problems.append(Problem("--limit", 0, 0, str(exc)))
        if problems:
            raise ProcedureError(problems)

    @classmethod
    def from_keywords(cls, options: RunOptions | None = None, **keywords: Any) -> RunOptions:
        """``engine.run(proc, dry_run=True)``: keywords over ``options``; an unknown one is a TypeError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(keywords) - names)
        if unknown:
            raise TypeError(f"unknown run option(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        if options is None:
            return cls(**keywords)
        from dataclasses import replace

        return replace(options, **keywords) if keywords else options
