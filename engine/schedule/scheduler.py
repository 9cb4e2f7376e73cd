"""The scheduler: which slots of which schedules are due, and firing them (docs/web.md "Schedules").

Each evaluation (a *tick*) is a function of the time it is given, so tests hand it any time
instead of waiting for minutes to pass. For each schedule it walks the cron slots after the
newest one the state has a row for (``schedule_fires``) up to now:

- a slot at most ``GRACE`` old is on time: it fires, unless the schedule's previous run is
  still going, when ``overlap`` decides: ``skip`` records it skipped, ``queue`` keeps it until
  that run ends (at most ``MAX_QUEUED`` waiting), ``cancel_previous`` interrupts that run
  (SIGINT, as Ctrl-C would: it stops and rolls back) and queues the slot behind it;
- older slots were missed (no scheduler ran then): ``catch_up`` decides: ``skip`` records them
  as missed and runs none, ``latest`` runs the newest one (unless an on-time slot runs now
  anyway), ``all`` runs each of them in order (the last ``MAX_CATCH_UP``).

A slot fires only for the scheduler whose insert of its row won (the row's key is (schedule,
slot)), so two schedulers on one state never fire it twice. A schedule nobody has seen before
(a procedure's ``schedule:`` read for the first time) starts from the time it is first seen:
it has no history to catch up. A stored schedule starts from when it was added.

The run is started by the launcher the caller gives (``runproc serve`` and ``runproc
scheduler`` start an ordinary ``runproc FILE`` process), recorded as started by user
``schedule:NAME``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import ProcedureError, RunprocError
from ..state.sqlstore import pid_alive
from .slots import next_fires, parse_slot, slot_name, slots_between

GRACE = 60.0  # seconds: a slot evaluated later than this after its time was missed
MAX_QUEUED = 5  # slots a `queue` schedule keeps waiting behind a run; more are skipped
MAX_CATCH_UP = 10  # missed slots `catch_up: all` runs at most (the newest)
MAX_SLEEP = 5.0  # the loop looks at the schedules at least this often (added, removed, edited)
HISTORY = 1000  # slots kept per schedule in the state (its newest; the page and list show the last 5)
USER_PREFIX = "schedule:"

# (file, params, user) -> (run id or None when not recorded yet, pid); raises a RunprocError
Launch = Callable[[str, dict[str, Any], str], tuple[str | None, int]]


@dataclass(frozen=True)
class Definition:
    """One schedule, from a procedure's ``schedule:`` (source ``file``) or the state (``state``)."""

    name: str
    file: str
    procedure: str
    cron: str
    timezone: str
    params: dict[str, Any]
    overlap: str
    catch_up: str
    source: str
    created_at: str | None = None
    created_by: str | None = None
    problem: str | None = None  # why it cannot fire (its file is unreadable, its name is taken...)
    secret_params: frozenset[str] = frozenset()


@dataclass
class Decision:
    """What a tick did (or, in a dry run, would do) with one slot of one schedule."""

    schedule: str
    slot: str
    action: str  # fired, failed, skipped, queued, missed, registered, taken, cancelling
    detail: str = ""
    run_id: str | None = None

    def line(self) -> str:
        shown = f" run {self.run_id}" if self.run_id else ""
        return f"{self.schedule} {self.slot}: {self.action}{shown}{': ' + self.detail if self.detail else ''}"


@dataclass
class _Loaded:
    key: tuple[int, int, int]
    proc: Any = None
    problem: str | None = None


@dataclass
class Scheduler:
    store: Any
    launch: Launch | None = None
    files: Callable[[], Iterable[Path | str]] = lambda: []
    log: Callable[[str], None] = field(default=lambda line: print(f"runproc scheduler: {line}", file=sys.stderr,
                                                                  flush=True))
    _cache: dict[str, _Loaded] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------ what is scheduled

    def _load(self, file: str) -> _Loaded:
        try:
            st = Path(file).stat()
        except OSError as exc:
            return _Loaded((0, 0, 0), problem=f"{file}: {exc.strerror or exc}")
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            cached = self._cache.get(file)
            if cached is not None and cached.key == key:
                return cached
        from ..api import load

        try:
            loaded = _Loaded(key, proc=load(file))
        except ProcedureError as exc:
            problems = list(getattr(exc, "problems", []) or [])
            loaded = _Loaded(key, problem=" ".join(str(problems[0] if problems else exc).split()))
        with self._lock:
            self._cache[file] = loaded
        return loaded

    def definitions(self) -> list[Definition]:
        """Every schedule: the stored ones, then the procedure files' (a name taken by a stored
        schedule, or by an earlier file, is listed with that problem and never fires)."""
        from ..format.schedules import schedules_of

        out: list[Definition] = []
        taken: dict[str, str] = {}
        for row in self.store.schedules():
            loaded = self._load(row["file"])
            proc = loaded.proc
            out.append(Definition(row["name"], row["file"], proc.procedure if proc else "?", row["cron"],
                                  row["timezone"], row["params"], row["overlap"], row["catch_up"], "state",
                                  row["created_at"], row["created_by"], loaded.problem, _secrets(proc)))
            taken[row["name"]] = "a stored schedule (runproc schedule list)"
        for path in self.files():
            file = str(Path(path).resolve())
            loaded = self._load(file)
            if loaded.proc is None:
                continue  # an invalid file: its catalogue entry says why; nothing of it is scheduled
            for name, item in schedules_of(loaded.proc):
                problem = f"the name {name!r} is taken by {taken[name]}" if name in taken else None
                out.append(Definition(name, file, loaded.proc.procedure, item.cron, item.timezone, dict(item.params),
                                      item.overlap, item.catch_up, "file", problem=problem,
                                      secret_params=_secrets(loaded.proc)))
                taken.setdefault(name, file)
        return out

    # ------------------------------------------------------------ one evaluation

    def tick(self, now: datetime, *, dry_run: bool = False) -> list[Decision]:
        """Deal with every schedule's due slots at ``now``; with ``dry_run``, only say what
        would be done (nothing is claimed, recorded, started or cancelled)."""
        now = now.astimezone(UTC).replace(microsecond=0)
        out: list[Decision] = []
        for d in self.definitions():
            if d.problem is not None:
                continue
            try:
                dealt = self._evaluate(d, now, apply=not dry_run)
                if dealt and not dry_run:
                    self.store.trim_fires(d.name, HISTORY)
                out += dealt
            except RunprocError as exc:  # croniter missing, say: this schedule, not the others
                out.append(Decision(d.name, slot_name(now), "failed", " ".join(str(exc).split())))
        if not dry_run:
            for decision in out:
                if decision.action != "registered":
                    self.log(decision.line())
        return out

    def _cursor(self, d: Definition, now: datetime, apply: bool) -> datetime | None:
        newest = self.store.fires(d.name, limit=1)
        seen = parse_slot(newest[0]["slot"]) if newest else None
        if d.created_at:  # a stored schedule starts when it was added (again: the old slots are history)
            added = _parse_time(d.created_at)
            return added if seen is None or seen < added else seen
        return seen

    def _evaluate(self, d: Definition, now: datetime, apply: bool) -> list[Decision]:
        cursor = self._cursor(d, now, apply)
        if cursor is None:  # first sight of a file's schedule: its history starts now
            if apply:
                self.store.claim_slot(d.name, slot_name(now), "registered", f"first seen in {d.file}")
            return [Decision(d.name, slot_name(now), "registered", f"first seen in {d.file}")]
        out: list[Decision] = []
        going = self._going(d)
        if going is None:
            started = self._run_queued(d, apply)
            if started is not None:
                out.append(started)
                going = self._going(d)
        count, last = slots_between(d.cron, d.timezone, cursor, now, keep=MAX_CATCH_UP)
        if not count:
            return out
        on_time = [s for s in last if (now - s).total_seconds() <= GRACE]
        missed = [s for s in last if s not in on_time]
        n_missed = count - len(on_time)
        due: list[tuple[datetime, str]] = []
        if n_missed:
            first = f"{n_missed} slot{'s' if n_missed > 1 else ''} missed while no scheduler ran"
            if d.catch_up == "all":
                older = n_missed - len(missed)
                due += [(s, f"catch-up ({older} older missed slots not run)" if older and i == 0 else "catch-up")
                        for i, s in enumerate(missed)]
            elif d.catch_up == "latest" and not on_time:
                due.append((missed[-1], f"catch-up: the latest of {first}"))
            else:
                slot = slot_name(missed[-1])
                detail = f"{first} (catch_up: {d.catch_up})"
                if apply:
                    self.store.claim_slot(d.name, slot, "missed", detail)
                out.append(Decision(d.name, slot, "missed", detail))
        due += [(s, "") for s in on_time]
        for slot, why in due:
            decision = self._slot(d, slot_name(slot), going, why, apply)
            out.append(decision)
            if decision.action == "fired":
                going = self._going(d)  # a run that ended at once leaves the next slot free
        return out

    def _slot(self, d: Definition, slot: str, going: str | None, why: str, apply: bool) -> Decision:
        if going is not None:
            if d.overlap == "skip":
                return self._record(d, slot, "skipped", _join(f"run {going} of this schedule is still going "
                                                              "(overlap: skip)", why), apply)
            queued = self.store.fires(d.name, limit=MAX_QUEUED, outcome="queued")
            if len(queued) >= MAX_QUEUED:
                return self._record(d, slot, "skipped", _join(f"{MAX_QUEUED} slots wait already", why), apply)
            if d.overlap == "cancel_previous":
                said = self._cancel(d, apply)
                return self._record(d, slot, "queued", _join(said, why), apply)
            return self._record(d, slot, "queued", _join(f"behind run {going} (overlap: queue)", why), apply)
        if not apply:
            return Decision(d.name, slot, "fired", _join("would start", why))
        if not self.store.claim_slot(d.name, slot, "firing", why or None):
            return Decision(d.name, slot, "taken", "another scheduler on this state has this slot")
        return self._fire(d, slot, why)

    def _record(self, d: Definition, slot: str, outcome: str, detail: str, apply: bool) -> Decision:
        if apply and not self.store.claim_slot(d.name, slot, outcome, detail):
            return Decision(d.name, slot, "taken", "another scheduler on this state has this slot")
        return Decision(d.name, slot, outcome, detail)

    def _run_queued(self, d: Definition, apply: bool) -> Decision | None:
        """The oldest queued slot, started now that nothing of the schedule runs."""
        queued = self.store.fires(d.name, limit=MAX_QUEUED + 1, outcome="queued")
        if not queued:
            return None
        slot = queued[-1]["slot"]  # newest first: the last is the oldest
        if not apply:
            return Decision(d.name, slot, "fired", "would start (queued)")
        if not self.store.update_fire(d.name, slot, "firing", detail="queued", expect="queued"):
            return None  # another scheduler took it
        return self._fire(d, slot, "queued")

    def _fire(self, d: Definition, slot: str, why: str) -> Decision:
        if self.launch is None:
            raise RunprocError("this scheduler has no way to start runs")
        try:
            run_id, pid = self.launch(d.file, dict(d.params), USER_PREFIX + d.name)
        except RunprocError as exc:
            problems = list(getattr(exc, "problems", []) or [])
            detail = "; ".join(" ".join(str(p).split()) for p in problems) or " ".join(str(exc).split())
            self.store.update_fire(d.name, slot, "failed", detail=_join(detail, why))
            return Decision(d.name, slot, "failed", _join(detail, why))
        self.store.update_fire(d.name, slot, "fired", run_id=run_id, pid=pid, detail=why or None)
        return Decision(d.name, slot, "fired", why, run_id)

    # ------------------------------------------------------------ overlap

    def _previous(self, d: Definition) -> dict[str, Any] | None:
        fired = self.store.fires(d.name, limit=1, outcome="fired")
        return fired[0] if fired else None

    def _going(self, d: Definition) -> str | None:
        """The schedule's last run, when it still goes: its id (or pid before it is recorded)."""
        prev = self._previous(d)
        if prev is None:
            return None
        if prev["run_id"]:
            return prev["run_id"] if self.store.run_going(prev["run_id"]) else None
        if prev["pid"] and prev["host"] == self.store.host and pid_alive(int(prev["pid"])):
            return f"(pid {prev['pid']})"
        return None

    def _cancel(self, d: Definition, apply: bool) -> str:
        prev = self._previous(d)
        assert prev is not None
        shown = prev["run_id"] or f"pid {prev['pid']}"
        if prev["host"] != self.store.host or not prev["pid"]:
            return f"run {shown} is on {prev['host']}, where this scheduler cannot stop it; queued behind it"
        if apply:
            try:
                os.kill(int(prev["pid"]), signal.SIGINT)  # as Ctrl-C: the run stops and rolls back
            except OSError as exc:
                return f"could not interrupt run {shown}: {exc.strerror or exc}; queued behind it"
        return f"interrupting run {shown} (overlap: cancel_previous); queued behind it"

    # ------------------------------------------------------------ what the pages and list show

    def listing(self, now: datetime, count: int = 3) -> list[dict[str, Any]]:
        """Each schedule with its next ``count`` fire times and its last slots."""
        out = []
        for d in self.definitions():
            try:
                upcoming = [slot_name(t) for t in next_fires(d.cron, d.timezone, now, count)]
                problem = d.problem
            except RunprocError as exc:
                upcoming, problem = [], str(exc)
            last = [f for f in self.store.fires(d.name, limit=5) if f["outcome"] != "registered"]
            out.append({"name": d.name, "procedure": d.procedure, "file": d.file, "source": d.source,
                        "cron": d.cron, "timezone": d.timezone,
                        "params": {k: ("***" if k in d.secret_params else v) for k, v in d.params.items()},
                        "overlap": d.overlap, "catch_up": d.catch_up, "next": upcoming, "problem": problem,
                        "created_at": d.created_at, "created_by": d.created_by,
                        "user": USER_PREFIX + d.name, "last": last})
        return out

    def next_due(self, now: datetime) -> datetime | None:
        """The soonest slot of any schedule after ``now`` (when the loop wakes next)."""
        soonest = None
        for d in self.definitions():
            if d.problem is not None:
                continue
            try:
                t = next_fires(d.cron, d.timezone, now)[0]
            except RunprocError:
                continue
            soonest = t if soonest is None or t < soonest else soonest
        return soonest

    # ------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Tick until ``stop`` is set: at each due slot, and every MAX_SLEEP seconds at least
        (a schedule added or a file edited counts within that). A tick that fails (the state
        away for a moment) is one line in the log, and the next tick tries again."""
        while not stop.is_set():
            now = clock()
            try:
                self.tick(now)
                due = self.next_due(now)
            except Exception as exc:  # noqa: BLE001 - the loop outlives a bad moment of the state
                self.log(f"tick failed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")
                due = None
            wait = MAX_SLEEP if due is None else min(MAX_SLEEP, (due - clock()).total_seconds() + 0.05)
            stop.wait(max(0.05, wait))


def _secrets(proc: Any) -> frozenset[str]:
    if proc is None:
        return frozenset()
    return frozenset(name for name, spec in proc.params.items() if getattr(spec, "secret", False))


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a and b else a or b


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


__all__ = ["GRACE", "MAX_CATCH_UP", "MAX_QUEUED", "USER_PREFIX", "Decision", "Definition", "Scheduler"]
