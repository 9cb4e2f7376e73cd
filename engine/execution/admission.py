"""A run's admission, before any step: the state store, the lock, the maintenance window and
the procedure's preconditions. A base class of the scheduler's ``Run``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from .. import process
from . import events as ev
from .step import StepRunner
from .store import StateStore, user_name


class Admission:
    """Whether a run may start; every refusal is said in words the operator can act on."""

    def store(self) -> StateStore:
        """The state store, opened on first use (a ProcedureError when it cannot be)."""
        with self._store_lock:  # the hosts of a fan-out may ask at once
            if self._journal_obj is None:
                assert self._store_arg is not None, "a run without a store takes no lock and records nothing"
                store = self._store_arg
                self._journal_obj = store if isinstance(store, StateStore) else store()
            return self._journal_obj

    def _take_lock(self) -> tuple[str | None, bool]:
        """(refusal, taken). A dry run only looks: it warns where a real run would be refused."""
        name = self.proc.lock or ""
        if self._store_arg is None:  # an embedder's run without a state store: nothing to lock in
            self.emit(ev.Note("warning", f"lock {name!r} not taken: this run has no state store"))
            return None, False
        try:
            journal = self.store()
            if self.dry_run:
                holder = journal.holder(name)
                if holder is not None:
                    self.emit(ev.Note("warning", f"lock {name!r} is held by {holder}: a real run would be refused"))
                return None, False
            holder = journal.holder(name)
            if holder is not None and holder.pid == process.pid() and holder.run_id in self._ancestors():
                return None, False  # a child procedure under the same lock as its parent: held by us
            holder = journal.acquire(name, self.run_id, self.proc.procedure, user_name(), self.started_at)
        except Exception as exc:  # noqa: BLE001 - whatever the store raised: the lock was not taken
            # without the lock nothing may run; with no state at all a dry run may still plan
            if self.dry_run:
                self.emit(ev.Note("warning", f"cannot check lock {name!r}: {exc}"))
                return None, False
            where = self.state_url or "the default run state"
            return f"cannot take lock {name!r} in {where}: {exc}", False
        if holder is not None:
            return f"lock {name!r} is held by {holder}", False
        # the journal's heartbeat renews the lease from now on (a child procedure's lock: its
        # top run's journal, since a child run journals nothing itself)
        self._top().journal.hold(name, self.run_id)
        return None, True

    def _top(self) -> Any:
        run: Any = self
        while run.parent is not None:
            run = run.parent
        return run

    def _ancestors(self) -> set[str]:
        out: set[str] = set()
        run = self.parent
        while run is not None:
            out.add(run.run_id)
            run = run.parent
        return out

    def _check_window(self) -> str | None:
        text = self.proc.window_times
        if not text:
            return None
        from ..format.window import clock_now, parse_window

        window = parse_window(text)
        now = clock_now()
        if window.contains(now):
            return None
        if self.ignore_window:
            self.emit(ev.Note("warning", f"outside the window {text!r}; --ignore-window given"))
            return None
        opens = window.next_opening(now)
        if self.dry_run:
            would = (f"a real run would wait until {_shown(opens)}" if self.proc.window_waits
                     else "a real run would be refused")
            self.emit(ev.Note("warning", f"outside the window {text!r}: {would}"))
            return None
        if self.proc.window_waits:
            # window.wait: true, locally: this process sleeps (Ctrl-C stops it; on the Temporal
            # engine the wait is a durable timer instead, docs/distributed.md)
            self.emit(ev.Note("info", f"outside the window {text!r}: waiting until {_shown(opens)} "
                                      "(window.wait)"))
            if self.stop.wait(max(0.0, (opens - now).total_seconds())):
                return f"interrupted while waiting for the window {text!r}"
            return None
        return (f"outside the maintenance window {text!r}, next open {_shown(opens)} (use --ignore-window to "
                "override, or window: {times: ..., wait: true} to wait for it)")

    def _preconditions(self) -> str | None:
        stepper = StepRunner(self)
        for check in self.proc.preconditions:
            name = check.name or stepper._default_name(check)
            if self.offline:
                self.emit(ev.PreconditionChecked(name, True, unknown=True))
                continue
            passed, reason, _ = stepper.check("preconditions", check, self.namespace())
            self.emit(ev.PreconditionChecked(name, passed, reason))
            if self.interrupted:
                return "interrupted"
            if not passed:
                return f"precondition failed: {reason}"
        return None


def _shown(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
