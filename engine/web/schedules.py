"""Schedules in ``runproc serve``: the scheduler running beside the server (unless
``--no-scheduler``), starting its runs as the start form does (engine/web/starts.py), and what
the schedules page and ``/api/v1/schedules`` show (docs/web.md "Schedules")."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ..schedule.scheduler import Launch, Scheduler


def launcher(store: Any, state_url: Callable[[], str]) -> Launch:
    """A scheduled run: a ``runproc FILE`` process of its own, params on its stdin, recorded as
    started by ``schedule:NAME``; its params checked first with the command line's checks."""
    from . import starts

    def launch(file: str, params: dict[str, Any], user: str) -> tuple[str | None, int]:
        checked = starts.check_params(file, params, from_text=False)
        started = starts.start(file, checked, state_url=state_url(), user=user, dry_run=False, store=store)
        return started.run_id, started.pid
    return launch


class Running:
    """The scheduler's thread while the server runs; stopped (within a tick) with the server."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.stop = threading.Event()
        self.thread = threading.Thread(target=scheduler.run, args=(self.stop,), name="scheduler", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
