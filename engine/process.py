"""Who this process is, for the records: the pid a run, a lock or a schedule's run is held by
(checked for liveness with its start time, signalled to cancel), and when it started.

It is ``os.getpid()`` and this interpreter's start, except in a warm server's child
(engine/cli/warm.py): there the run stands for the command that handed it over, the process
the operator started and sees. That command stays alive exactly as long as its run (it waits
for it; killed with SIGKILL, the server kills the run), and passes every signal on, so its
pid is the one to record, to check and to signal. This module imports only ``os`` and
``time``: every layer may ask it.
"""

from __future__ import annotations

import os
import time

_started = time.monotonic()
_pid: int | None = None


def pid() -> int:
    """The pid that stands for this process's runs."""
    return _pid if _pid is not None else os.getpid()


def started() -> float:
    """When this process (or the command it stands for) started, on time.monotonic()'s clock."""
    return _started


def stand_for(command_pid: int, command_started: float) -> None:
    """In a warm server's child: from now on, the command ``command_pid`` is who runs here."""
    global _pid, _started
    _pid = command_pid
    _started = command_started
