"""The arithmetic of fan-out, shared by the local run and the Temporal workflow: batches
(``serial``), the failure tolerance (``max_fail``) and the step's summary of its hosts.

Pure functions over plain values (no I/O, no clock): the Temporal interpreter calls them
while it replays a history, so they must decide the same way every time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

FAILED = ("failed", "timed_out")


def batch_sizes(total: int, serial: int | str | None) -> list[int]:
    """Ansible's serial: a number or percent of all hosts, rounded down, at least 1; 0/None = all."""
    if total == 0:
        return []
    size = total
    if isinstance(serial, str) and serial.endswith("%"):
        size = int(int(serial[:-1]) / 100.0 * total) or 1
    elif serial:
        size = int(serial)
    size = total if size <= 0 else min(size, total)
    return [size] * (total // size) + ([total % size] if total % size else [])


def too_many_failures(failed: int, batch: int, max_fail: int | str | None) -> bool:
    """Ansible's max_fail_percentage: stop when failures are *more than* the tolerance.

    ``max_fail`` is a number of hosts or a percent of the batch (default 0: any failure);
    a batch where every host failed always stops, as in Ansible.
    """
    if failed == 0:
        return False
    if failed >= batch:
        return True
    if isinstance(max_fail, str) and max_fail.endswith("%"):
        return failed / batch > int(max_fail[:-1]) / 100.0
    return failed > int(max_fail or 0)


def stop_reason(number: int, failed: int, batch: int, max_fail: int | str | None) -> str:
    return (f"batch {number} had {failed} failed host(s) of {batch}, more than "
            f"max_fail {max_fail if max_fail is not None else 0} allows")


@dataclass
class HostsSummary:
    """What a fanned-out step is, given its hosts: its status (None: keep the step's own),
    error, error kind and the notes to add."""

    status: str | None
    error: str | None = None
    error_kind: str | None = None
    notes: list[str] = field(default_factory=list)


def summarise(hosts: Sequence[tuple[str, str, str | None, str | None]], *, stopped: str | None, tolerated: int,
              max_fail: Any) -> HostsSummary:
    """``hosts``: (name, status, error, error_kind) in inventory order; ``stopped``: why later
    batches did not start; ``tolerated``: failures within ``max_fail``."""
    failures = [(name, status, error, kind) for name, status, error, kind in hosts if status in FAILED]
    statuses = [status for _, status, _, _ in hosts]
    summary = ""
    error_kind = None
    if failures:
        kinds = {kind for *_, kind in failures}
        # one unreachable host is enough to call the environment broken for this step
        error_kind = "environment" if "environment" in kinds else ("assertion" if "assertion" in kinds else None)
        shown = "; ".join(f"{name}: {(error or status).splitlines()[0]}" for name, status, error, _ in failures[:3])
        more = f" (and {len(failures) - 3} more)" if len(failures) > 3 else ""
        summary = f"{len(failures)} of {len(hosts)} hosts failed: {shown}{more}"
    if stopped is not None:
        status = "timed_out" if all(s == "timed_out" for _, s, _, _ in failures) else "failed"
        note = f"later hosts not started: {stopped}" if "cancelled" in statuses else stopped
        return HostsSummary(status, summary, error_kind, [note])
    if "cancelled" in statuses:
        return HostsSummary("cancelled", "interrupted before every host finished", error_kind)
    if "planned" in statuses:
        return HostsSummary("planned", None, error_kind)
    notes = [f"{summary}; tolerated by max_fail {max_fail}"] if tolerated else []
    return HostsSummary("ok", None, error_kind, notes)
