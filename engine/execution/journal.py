"""The write-ahead journal of one real run: what the state store knows before each side effect.

``begin`` records the run before its first step (who, where, what: the procedure and its
hashes, params with secrets redacted, runproc's version). Each transition is then committed
before the run goes on: a step's action is journaled with its rendered, redacted text before
it runs, its result before any step that needs it starts. A heartbeat renews the run and
its locks every lease/4 seconds, so that a run on another machine that stops renewing is
known to be gone.

When the store stops answering (PostgreSQL down, the network to it cut), nothing is lost:
the journal goes on in a local spool file (``spool_dir()``), the run stops scheduling new
steps, lets running ones finish and rolls back, and the spool is uploaded on the next
contact (``runproc state sync``). engine/state/recovery.py reads the journal back.
"""

from __future__ import annotations

import fcntl
import json
import os
import queue
import socket
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import process
from .store import state_home, user_name

if TYPE_CHECKING:
    from .results import StepResult
    from .store import StateStore


_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text


def now_iso() -> str:
    """The time as the journal and results write it, UTC to the millisecond
    (``2026-12-04T15:42:47.133Z``). Asked three times a step: the date and time of day are
    formatted once a second (a tuple, replaced whole: safe across threads)."""
    global _second
    now = time.time()
    whole = int(now)
    cached = _second  # read once: another thread may replace it meanwhile
    if whole != cached[0]:
        cached = _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{cached[1]}.{int((now - whole) * 1000):03d}Z"


def spool_dir() -> Path:
    """Where journals go while the state store is unreachable: ``$RUNPROC_SPOOL_DIR``, else
    ``$XDG_STATE_HOME/runproc/spool`` (``~/.local/state/runproc/spool``)."""
    env = os.environ.get("RUNPROC_SPOOL_DIR")
    if env:
        return Path(env)
    return state_home() / "spool"


DEFAULT_STORE_TIMEOUT = 10.0


def store_timeout(url: str) -> float | None:
    """How long a journal write or heartbeat may wait for a state server before the run treats
    it as gone: ``RUNPROC_STATE_TIMEOUT`` seconds (``0``: wait as long as it takes), default 10 s
    for a PostgreSQL state. A server that froze, or a network that drops packets, never refuses
    anything: without this bound a write would wait for minutes (TCP's retransmissions). A
    SQLite file has no bound here: it is local, and its busy timeout bounds a writer waiting
    for another (a long ``runproc prune`` must not make a run give up its state)."""
    text = os.environ.get("RUNPROC_STATE_TIMEOUT")
    if text:
        try:
            seconds = float(text)
        except ValueError:
            seconds = DEFAULT_STORE_TIMEOUT
        return seconds if seconds > 0 else None
    return DEFAULT_STORE_TIMEOUT if url.split("://", 1)[0] in ("postgresql", "postgres") else None


class _Deadline:
    """Calls into the store, each given at most ``seconds`` (None: unbounded, called in place).

    A bounded call runs on one worker thread and the caller waits for it; a call that does not
    return in time raises TimeoutError and the run goes on without the store (the spool). The
    worker stays stuck in that call, which is why the journal never asks the store anything
    once it is lost. A write that commits after all is in the spool too: the upload skips it.
    """

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._jobs: queue.SimpleQueue[tuple[Any, tuple[Any, ...], list[Any], threading.Event]] = queue.SimpleQueue()
        self._worker: threading.Thread | None = None

    def __call__(self, fn: Any, *args: Any) -> Any:
        if self.seconds is None:
            return fn(*args)
        if self._worker is None:
            self._worker = threading.Thread(target=self._work, name="journal-store", daemon=True)
            self._worker.start()
        box: list[Any] = []
        done = threading.Event()
        self._jobs.put((fn, args, box, done))
        if not done.wait(self.seconds):
            raise TimeoutError(f"no answer in {self.seconds:g}s (RUNPROC_STATE_TIMEOUT)")
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def _work(self) -> None:
        while True:
            fn, args, box, done = self._jobs.get()
            try:
                box.append((True, fn(*args)))
            except BaseException as exc:  # noqa: BLE001 - raised again on the caller's thread
                box.append((False, exc))
            done.set()


# live output (runproc serve shows a running step's output as it arrives): a step's lines wait
# in memory until they are LIVE_AGE old, then go into the journal as ``output`` entries, one per
# (step, host, stream) per flush, all of one flush in one transaction. A step shorter than that
# writes none (its result carries its output), so quick steps cost no extra write; a chatty one
# costs at most one write every LIVE_AGE + LIVE_TICK seconds. What one stream of one step puts in
# the journal stops at RUNPROC_OUTPUT_CAP (64 KiB, the state's cap on a step's output), with a
# marker: a step printing a gigabyte adds 64 KiB to the journal, and its log file has the rest.
LIVE_AGE = 0.4
LIVE_TICK = 0.2
_LIVE_CAP_DEFAULT = 64 * 1024


def live_output_cap() -> int | None:
    """RUNPROC_OUTPUT_CAP in bytes (None: no limit), its default when it cannot be read."""
    from ..transports.output import parse_size

    try:
        return parse_size(os.environ.get("RUNPROC_OUTPUT_CAP") or "64KiB")
    except ValueError:
        return _LIVE_CAP_DEFAULT


class _Live:
    """One stream of one step (on one host): what waits to be journaled, and how much was taken."""

    __slots__ = ("first_at", "parts", "taken", "capped")

    def __init__(self) -> None:
        self.first_at = 0.0
        self.parts: list[str] = []
        self.taken = 0  # bytes accepted for the journal so far
        self.capped = False


# an entry as the journal commits it: event, step, host, data (redacted), when (None: now)
_Item = tuple[str, "str | None", "str | None", "dict[str, Any] | None", "str | None"]


class NullJournal:
    """A run that journals nothing (a dry run, a child procedure, a run without a store)."""

    active = False
    lost: str | None = None

    def output(self, step_id: str, stream: str, text: str, host: str | None) -> None:
        """A line (or piece) a step printed, redacted already: journaled while the step runs."""

    def step_started(self, step_id: str, phase: str, action: str | None) -> bool:
        return True

    def host_started(self, step_id: str, host: str, action: str | None) -> None: ...

    def host_finished(self, step_id: str, host: str, hsr: StepResult) -> None: ...

    def step_finished(self, sr: StepResult, *, hold: bool = False) -> None: ...

    def flush(self) -> None: ...

    def rollback_started(self, step_id: str) -> None: ...

    def rollback_finished(self, step_id: str, sr: StepResult) -> None: ...

    def approval(self, step_id: str, approved: bool, by: str | None, how: str, comment: str | None = None,
                 role: str | None = None) -> None: ...

    def waiting(self, step_id: str, request: dict[str, Any]) -> int | None:
        """A confirm step starts waiting for an answer; the entry's seq names the request."""
        return None

    started_by: str | None = None

    def answer(self, step_id: str, request: int, answer: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        raise ConnectionError("this run keeps no journal: no answer can be recorded")

    def answer_of(self, step_id: str, request: int) -> dict[str, Any] | None:
        return None

    def hold(self, lock: str, run_id: str | None = None) -> None: ...

    def unhold(self, lock: str, run_id: str | None = None) -> None: ...

    def close(self) -> None: ...


class Journal(NullJournal):
    """The journal of one run, in its state store (or its spool file once the store is gone)."""

    active = True

    def __init__(self, run: Any, store: StateStore, *, on_lost: Any, on_lock_lost: Any = None) -> None:
        self.run = run
        self.store = store
        # called once when the store stops answering: (reason, the spool file or None, why the
        # spool file could not be written or None)
        self.on_lost = on_lost
        # called with a lock's name when the heartbeat finds it taken over or broken
        self.on_lock_lost = on_lock_lost or (lambda name: None)
        self.seq = 0
        self.lost: str | None = None
        self.spool: Path | None = None
        # the spool file, open for the rest of the run and flock'ed: an upload (the next contact,
        # ``runproc state sync``) leaves a journal alone while its run may still write to it
        self._spool_file: IO[str] | None = None
        self._lock = threading.Lock()
        self._locks: list[tuple[str, str]] = []  # (lock, the run that holds it) to renew
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._header: dict[str, Any] = {}
        self._inputs: dict[str, Any] | None = None
        self._call = _Deadline(store_timeout(getattr(store, "url", "")))
        self._live: dict[tuple[str, str | None, str], _Live] = {}
        self._live_lock = threading.Lock()  # the step's reader threads take only this one
        self._live_cap = live_output_cap()
        self._flusher: threading.Thread | None = None
        # fault injection for the crash tests: ``EVENT:STEP[@HOST]`` (``step_finished:deploy``)
        # kills this process with SIGKILL right after that entry is committed
        self._kill_after = os.environ.get("RUNPROC_TEST_KILL_AFTER")
        # steps' ends waiting to be committed with the next entry (see step_finished)
        self._held: list[_Item] = []

    # ------------------------------------------------------------ the run

    def begin(self, header: dict[str, Any], inputs: dict[str, Any] | None) -> None:
        """Record the run as it starts; a store that cannot is the caller's error (nothing ran)."""
        self._header, self._inputs = header, inputs
        self._call(self.store.begin, header, inputs)
        interval = max(0.2, float(getattr(self.store, "lease", 60.0)) / 4)
        self._beat = threading.Thread(target=self._heartbeat, args=(interval,), name="journal-heartbeat",
                                      daemon=True)
        self._beat.start()

    def hold(self, lock: str, run_id: str | None = None) -> None:
        """The run (or a child procedure's run, ``run_id``) holds this lock now: the heartbeat
        renews it too."""
        with self._lock:
            self._locks.append((lock, run_id or self.run.run_id))

    def unhold(self, lock: str, run_id: str | None = None) -> None:
        with self._lock:
            key = (lock, run_id or self.run.run_id)
            if key in self._locks:
                self._locks.remove(key)

    def _heartbeat(self, interval: float) -> None:
        while not self._stop.wait(interval):
            if self.lost is not None:
                return
            try:
                with self._lock:
                    held = list(self._locks)
                by_run: dict[str, list[str]] = {self.run.run_id: []}
                for name, holder in held:
                    by_run.setdefault(holder, []).append(name)
                for holder, names in by_run.items():
                    lost = self._call(self.store.renew, holder, names) or []
                    for name in lost:
                        self.unhold(name, holder)
                        self.on_lock_lost(name)
            except Exception as exc:  # noqa: BLE001 - the store is gone: the run must stop
                if self._stop.is_set():
                    return  # the run ended (and recorded its end) while this renewal waited
                with self._lock:
                    self._lose(exc)
                return

    def finish(self, report: dict[str, Any], inputs: dict[str, Any] | None) -> None:
        with self._lock:
            if self._held:
                self._commit_locked([])
            if self.lost is None:
                try:
                    self._call(self.store.record, report, inputs)
                    return
                except Exception as exc:  # noqa: BLE001 - keep it in the spool instead
                    self._lose(exc)
            self._spool({"type": "report", "report": report, "inputs": inputs})

    def close(self) -> None:
        self.flush()
        self._stop.set()
        if self._beat is not None and self._beat is not threading.current_thread():
            self._beat.join(timeout=5)
        if self._flusher is not None and self._flusher is not threading.current_thread():
            self._flusher.join(timeout=5)
        with self._lock:
            if self._spool_file is not None:
                self._spool_file.close()  # the run is over: its spool may be uploaded now
                self._spool_file = None

    # ------------------------------------------------------------ live output

    def output(self, step_id: str, stream: str, text: str, host: str | None) -> None:
        if self.lost is not None or not text:
            return
        key = (step_id, host, stream)
        with self._live_lock:
            live = self._live.get(key)
            if live is None:
                live = self._live[key] = _Live()
            if live.capped:
                return
            size = len(text.encode("utf-8", errors="replace"))
            if self._live_cap is not None and live.taken + size > self._live_cap:
                keep = text.encode("utf-8", errors="replace")[:max(0, self._live_cap - live.taken)]
                text = keep.decode("utf-8", errors="ignore") + (
                    "\n[... runproc: live output stops here (RUNPROC_OUTPUT_CAP); the step's result and its "
                    "log file keep the rest ...]\n")
                live.capped = True
            live.taken += size
            if not live.parts:
                live.first_at = time.monotonic()
            live.parts.append(text)
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_live, name="journal-output", daemon=True)
                self._flusher.start()

    def _flush_live(self) -> None:
        while not self._stop.wait(LIVE_TICK):
            if self.lost is not None:
                return
            with self._lock:  # taken before the pieces: a step's end is journaled after its output
                ripe = time.monotonic() - LIVE_AGE
                with self._live_lock:
                    due = [(key, "".join(live.parts)) for key, live in self._live.items()
                           if live.parts and live.first_at <= ripe]
                    for key, _ in due:
                        self._live[key].parts = []
                if due:
                    self._write_locked([("output", step, host, {"stream": stream, "text": text})
                                        for (step, host, stream), text in due])

    def _end_live(self, step_id: str, host: str | None = None, every_host: bool = False) -> None:
        """A step (or host) ended: its output not yet journaled is in its result; drop it."""
        with self._live_lock:
            for key in [k for k in self._live if k[0] == step_id and (every_host or k[1] == host)]:
                del self._live[key]

    # ------------------------------------------------------------ transitions

    def step_started(self, step_id: str, phase: str, action: str | None) -> bool:
        """Record that the step starts. False when this very write found the store gone and
        the step is one of the run's steps: it must not start then (the run starts nothing
        once the store is gone, and a held end of the previous step is what failed); the
        caller journals its end, ``cancelled``, not started. A ``finally`` or ``on_failure``
        step runs whatever the store does (docs/state-outage.md)."""
        data = self.run.redactor.deep({"phase": phase, **({"action": action} if action else {})})
        with self._lock:
            was_up = self.lost is None
            self._commit_locked([("step_started", step_id, None, data, None)])
            return not (was_up and self.lost is not None and phase == "step")

    def host_started(self, step_id: str, host: str, action: str | None) -> None:
        self._write("host_started", step_id, host, {"action": action} if action else None)

    def host_finished(self, step_id: str, host: str, hsr: StepResult) -> None:
        if self._flusher is not None:
            self._end_live(step_id, host)
        entry = {k: v for k, v in hsr.to_json().items() if k != "id"}
        self._write("host_finished", step_id, host, {"entry": entry, "changed": hsr.changed})

    def step_finished(self, sr: StepResult, *, hold: bool = False) -> None:
        """The step's end. ``hold``: the caller starts its next step at once, so this entry is
        committed in one transaction with that step's ``step_started`` (or whatever the journal
        writes next, or ``flush``) instead of in its own: one commit a step instead of two
        (docs/performance.md). Nothing runs in between (``flush`` is called before a check, a
        thread or a wait), so the entry is still on disk before the next side effect; a crash
        in between leaves the step in flight, as a crash just before this call would."""
        # completed: the step ran to its end (whatever its status), so it is in the completion
        # order rollbacks reverse; changed: it failed after its action did (its verify failed)
        if self._flusher is not None:
            self._end_live(sr.id, every_host=True)
        data = {"entry": sr.to_json(), "completed": sr.completed_at is not None, "changed": sr.changed}
        # the crash tests' kill point needs the entry committed alone
        if hold and self._kill_after != f"step_finished:{sr.id}":
            data = self.run.redactor.deep(data)
            with self._lock:
                self._held.append(("step_finished", sr.id, None, data, now_iso()))
            return
        self._write("step_finished", sr.id, None, data)

    def flush(self) -> None:
        """Commit a held step end now (step_finished's ``hold``)."""
        if not self._held:
            return
        with self._lock:
            if self._held:
                self._commit_locked([])

    def rollback_started(self, step_id: str) -> None:
        self._write("rollback_started", step_id, None, None)

    def rollback_finished(self, step_id: str, sr: StepResult) -> None:
        if self._flusher is not None:
            self._end_live(step_id, every_host=True)
        undo = sr.rollback
        entry = {k: v for k, v in undo.to_json().items() if k != "id"} if undo is not None else None
        hosts = ({h: r.status for h, r in sr.hosts.items()} if sr.hosts is not None else None)
        self._write("rollback_finished", step_id, None, {"ok": undo is not None and undo.status == "ok",
                                                         "error": undo.error if undo else None, "entry": entry,
                                                         "hosts": hosts})

    def approval(self, step_id: str, approved: bool, by: str | None, how: str, comment: str | None = None,
                 role: str | None = None) -> None:
        extra = {k: v for k, v in (("comment", comment), ("role", role)) if v}
        self._write("approval", step_id, None, {"approved": approved, "by": by, "how": how, **extra})

    def waiting(self, step_id: str, request: dict[str, Any]) -> int | None:
        """A confirm step waits for an answer (runproc approve, the web page, the terminal): the
        request ({message, approvers, four_eyes, started_by, until}) that answers are checked
        against; its seq names it. None when the store is gone (only the terminal can answer)."""
        seq = self._write("waiting", step_id, None, request)
        return seq if self.lost is None else None

    @property
    def started_by(self) -> str | None:
        """The user the run was recorded as started by (four_eyes keeps them from approving it)."""
        return self._header.get("user")

    def answer(self, step_id: str, request: int, answer: dict[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Record the terminal's answer unless one came from elsewhere first: (this one stands,
        the one that stands)."""
        return self._store_call(self.store.answer, self.run.run_id, step_id, request, answer)

    def answer_of(self, step_id: str, request: int) -> dict[str, Any] | None:
        """The answer given to a request beside the terminal (runproc approve, the web page)."""
        return self._store_call(self.store.answer_of, self.run.run_id, step_id, request)

    def _store_call(self, fn: Any, *args: Any) -> Any:
        if self.lost is not None:
            raise ConnectionError(f"the state store is gone ({self.lost})")
        return self._call(fn, *args)

    def _write_locked(self, items: list[tuple[str, str | None, str | None, dict[str, Any] | None]]) -> None:
        """Commit entries in one transaction (the lock is held); spooled once the store is gone."""
        self._commit_locked([(event, step, host, self.run.redactor.deep(data) if data is not None else None, None)
                             for event, step, host, data in items])

    def _write(self, event: str, step: str | None, host: str | None, data: dict[str, Any] | None) -> int:
        """Commit one entry (or spool it once the store is gone); its seq."""
        if data is not None:
            data = self.run.redactor.deep(data)  # the journal never holds a secret
        with self._lock:
            return self._commit_locked([(event, step, host, data, None)])

    def _commit_locked(self, items: list[_Item]) -> int:
        """Commit held step ends and ``items`` (redacted already) in one transaction, or spool
        them once the store is gone (the lock is held); the last one's seq."""
        if self._held:
            items = [*self._held, *items]
            self._held = []
        entries = []
        for event, step, host, data, at in items:
            self.seq += 1
            entries.append({"seq": self.seq, "at": at or now_iso(), "event": event, "step": step, "host": host,
                            "data": data})
        if self.lost is None:
            try:
                self._call(self.store.append, self.run.run_id, entries)
            except Exception as exc:  # noqa: BLE001 - the store is gone: spool, and stop the run
                self._lose(exc)
        if self.lost is not None:
            for entry in entries:
                self._spool({"type": "entry", **entry})
        if self._kill_after:
            for entry in entries:
                host = entry["host"]
                if self._kill_after == f"{entry['event']}:{entry['step']}" + (f"@{host}" if host else ""):
                    import signal

                    os.kill(os.getpid(), signal.SIGKILL)
        return self.seq

    # ------------------------------------------------------------ the store gone

    def _lose(self, exc: BaseException) -> None:
        """Switch to the spool file (the lock is held) and tell the run, once."""
        if self.lost is not None:
            return
        reason = " ".join(str(exc).split()) or type(exc).__name__
        # which store: the operator checks that one (its URL without the password)
        self.lost = self.run.redactor(f"{_without_password(self.store.url)}: {reason}")
        folder = spool_dir()
        self.spool = folder / f"{self.run.run_id}.jsonl"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self._spool_file = self.spool.open("a", encoding="utf-8")
            fcntl.flock(self._spool_file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if self._spool_file is not None:
                self._spool_file.close()
                self._spool_file = None
            self.on_lost(self.lost, None, f"{self.spool}: {err.strerror or err}")
            return
        self._spool({"type": "header", "state": _without_password(self.store.url), "header": self._header,
                     "inputs": self._inputs, "host": socket.gethostname(), "pid": process.pid(),
                     "user": user_name()})
        self.on_lost(self.lost, self.spool, None)

    def _spool(self, record: dict[str, Any]) -> None:
        if self._spool_file is None:
            return  # it could not be opened: the run said so when the store went away
        try:
            self._spool_file.write(json.dumps(record, default=str) + "\n")
            self._spool_file.flush()
            os.fsync(self._spool_file.fileno())  # each entry on disk before the next side effect
        except OSError:
            pass


def _without_password(url: str) -> str:
    """A state URL as a spool file may keep it: ``state sync`` asks for the password again."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    netloc, slash, tail = rest.partition("/")
    if "@" not in netloc:
        return url
    creds, at_host = netloc.rsplit("@", 1)
    return f"{scheme}://{creds.split(':', 1)[0]}@{at_host}{slash}{tail}"
