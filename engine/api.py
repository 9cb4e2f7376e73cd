"""The public functions: what the CLI calls, and what any embedder calls the same way.

    import engine
    proc = engine.load("procedures/db-migration.yml")
    result = engine.plan(proc, {"migration_version": "20260101000000"}, offline=True)
    result = engine.run(proc, {"migration_version": "20260101000000"}, yes=True, on_event=print)

Every function takes the caller's choices as a ``RunOptions`` (``options=``) or as its field
names as keywords (``dry_run=True``, ``forks=5``); a bad choice is a ``ProcedureError`` before
anything runs, as the CLI's exit 2.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import Problem, ProcedureError

if TYPE_CHECKING:
    from .execution.events import Event
    from .execution.options import RunOptions
    from .execution.results import RunResult
    from .execution.scheduler import Run
    from .execution.store import StateStore, StoreOpener
    from .format.model import Procedure

EventSink = Callable[["Event"], None]
Asker = Callable[[str], bool]


def load(path: str | Path) -> Procedure:
    """Read and validate a procedure file; ``ProcedureError`` lists every problem, located."""
    from .format.loader import load as _load

    return _load(path)


def validate(*paths: str | Path) -> dict[str, list[Problem]]:
    """Each file's problems (an empty list: the file is valid). Never raises for a bad file."""
    out: dict[str, list[Problem]] = {}
    for path in paths:
        try:
            load(path)
            out[str(path)] = []
        except ProcedureError as exc:
            out[str(path)] = list(exc.problems)
    return out


def prepare(procedure: Procedure | str | Path, params: dict[str, Any] | None = None, *,
            options: RunOptions | None = None, cli_params: dict[str, str] | None = None,
            on_event: EventSink | None = None, ask: Asker | None = None,
            store: StateStore | StoreOpener | None = None, cwd: str | None = None, **keywords: Any) -> Run:
    """A run ready to ``execute()``: params resolved, secrets read, the state store checked.

    ``params`` are typed values (a params file), ``cli_params`` text as from ``-p``. ``store``:
    by default the store at ``options.state`` (``$RUNPROC_STATE``, the XDG state dir), opened
    when first needed. A real run records what ``resume``/``rollback_run`` will need.
    """
    from .execution.options import RunOptions
    from .execution.scheduler import Run
    from .state.sqlite import store_opener

    chosen = RunOptions.from_keywords(options, **keywords)
    proc = procedure if not isinstance(procedure, str | Path) else load(procedure)
    run = Run(proc, params=params, cli_params=cli_params, options=chosen, on_event=on_event, ask=ask,
              store=store if store is not None else store_opener(chosen.state))
    if not run.dry_run and chosen.journal:
        _record_inputs(run, chosen.inventory, cwd)
    return run


def _record_inputs(run: Run, inventory: str | None, cwd: str | None) -> None:
    """What `runproc resume/rollback RUN` will need, taken before the run starts."""
    from .execution.events import Note
    from .state import replay

    inventory = str(Path(inventory).resolve()) if inventory else None
    try:
        run.journal_inputs = replay.capture(run, inventory, cwd or os.getcwd())
    except Exception as exc:  # noqa: BLE001 - the run itself must not fail for its history
        run.emit(Note("warning", f"run inputs not recorded (resume/rollback will refuse it): {exc}"))


@contextmanager
def signals_to(run: Run) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP interrupt ``run`` (first: roll back, second: abandon undos,
    third: abandon cleanup) while the block runs; the previous handlers come back after."""
    def on_signal(signum: int, frame: Any) -> None:
        run.interrupt()  # sets events and emits; the main thread only waits (Run.execute)

    # SIGHUP too: a closed terminal or ssh session must not leave a change half done
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def execute(run: Run, *, handle_signals: bool = False) -> RunResult:
    """Execute a prepared run; with ``handle_signals`` (the main thread only) signals interrupt it."""
    if not handle_signals:
        return run.execute()
    with signals_to(run):
        return run.execute()


def run(procedure: Procedure | str | Path, params: dict[str, Any] | None = None, *,
        handle_signals: bool = False, **kwargs: Any) -> RunResult:
    """Run a procedure (``dry_run=True``: plan it); the keywords are ``prepare``'s."""
    return execute(prepare(procedure, params, **kwargs), handle_signals=handle_signals)


def plan(procedure: Procedure | str | Path, params: dict[str, Any] | None = None, **kwargs: Any) -> RunResult:
    """A dry run: checks and readonly steps run, writes are shown (``offline=True``: nothing runs)."""
    kwargs.setdefault("dry_run", True)
    if not kwargs["dry_run"]:
        raise ProcedureError(Problem("plan", 0, 0, "a plan is a dry run: dry_run=False is run()'s"))
    return run(procedure, params, **kwargs)
