"""The dispatcher of one run: what to send for an event, sent off the run's critical path.

An entry's templates are rendered on the caller's thread (they read the run's namespace as
it is at the event), its content is passed through the run's redactor, and the send goes to
a small pool of threads: a slow or dead receiver costs the run nothing until its end, when
``close`` waits for what is in flight (each send is bounded by its timeout, so the wait is
too) and returns one record per send for the run's report. A send that fails, a template
that does not render, a receiver that answers 500: each is a record with ``ok: false`` and
its error, and a warning through ``note``; none raises.

Escalation clocks (``start_clock``/``stop_clock``) are daemon timers: a run that ends stops
them, and a process that exits is never held up by one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any

from ..format.expressions import ExpressionError
from ..format.notifications import DEFAULT_TIMEOUT
from .channels import Outgoing, build, send
from .templates import Facts, default_message

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from ..format.notifications import Escalation, Notification

# options used as given: where to send and how to sign in. Everything else an entry renders
# is content (the message, a title, a subject, a JSON body) and is redacted before it leaves.
CREDENTIALS = frozenset({"url", "headers", "routing_key", "user", "password", "host", "port", "from", "to",
                         "verify", "starttls", "method", "timeout", "format", "severity"})
WORKERS = 4
# what close() waits beyond a send's own timeout (connection set-up, a slow TLS handshake)
GRACE = 2.0

Render = Callable[[Any, Facts], Any]


class _Unrendered(Exception):  # noqa: N818 - private: an option's template failed, said in one line
    pass
Evaluate = Callable[[str, Facts], Any]


class Dispatcher:
    """Sends the notifications of one run and keeps their records."""

    def __init__(self, *, render: Render, evaluate: Evaluate, redact: Callable[[str], str],
                 note: Callable[[str], None], levels: Sequence[Escalation] = ()) -> None:
        """``render(value, facts)``: templates inside ``value`` rendered with the run's names
        and ``event``; ``evaluate(expression, facts)``: a ``when``; ``redact``: the run's
        redactor; ``note``: how a warning reaches the operator; ``levels``: the escalation."""
        self._render = render
        self._evaluate = evaluate
        self._redact = redact
        self._note = note
        self._levels = list(levels)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future[None]] = []
        # the last send of each entry: the next one waits for it, so that one receiver gets the
        # events of a run in their order (a PagerDuty resolve never overtakes its trigger)
        self._last: dict[int, Future[None]] = {}
        self._due: dict[int, float] = {}  # when the last send of each entry will have ended, at the latest
        self._records: list[dict[str, Any]] = []
        self._wait_until = 0.0
        self._clocks: dict[str, list[threading.Timer]] = {}
        self._closed = False

    # ------------------------------------------------------------ sending

    def notify(self, entry: Notification, facts: Facts) -> None:
        """Send ``entry`` for ``facts`` unless its ``when`` is false; never raises."""
        record: dict[str, Any] = {"channel": entry.channel, "event": facts.name, "ok": None, "error": None}
        if facts.own_step and facts.step:
            record["step"] = facts.step
        if facts.name == "escalation":
            record.update(cause=facts.cause, after=facts.after)
        try:
            if entry.when and not self._evaluate(entry.when, facts):
                return
            out = self._outgoing(entry, facts, record)
        except Exception as exc:  # noqa: BLE001 - a template or a when that fails: recorded, not raised
            said = str(exc) if isinstance(exc, _Unrendered | ExpressionError) else f"{type(exc).__name__}: {exc}"
            self._failed(record, f"when: {said}" if isinstance(exc, ExpressionError) else said)
            return
        record["target"] = self._redact(out.target)
        with self._lock:
            if self._closed:
                return
            self._records.append(record)
            # a send starts once the entry's previous one ended: its deadline follows that one's
            due = max(self._due.get(id(entry), 0.0), time.monotonic()) + out.timeout + GRACE
            self._due[id(entry)] = due
            self._wait_until = max(self._wait_until, due)
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="notify")
            future = self._pool.submit(self._deliver, out, record, self._last.get(id(entry)))
            self._last[id(entry)] = future
            self._futures.append(future)

    def _outgoing(self, entry: Notification, facts: Facts, record: dict[str, Any]) -> Outgoing:
        facts = self._redacted(facts)
        given = entry.options.model_dump(by_alias=True)
        options: dict[str, Any] = {}
        for key, value in given.items():
            if key == "message" or value is None:
                continue
            try:
                rendered = self._render(value, facts)
            except Exception as exc:  # noqa: BLE001 - named, so the operator knows which option
                raise _Unrendered(f"{key}: {exc}") from None
            options[key] = rendered if key in CREDENTIALS else self._deep_redact(rendered)
        message = facts.summary
        if given.get("message"):
            try:
                message = str(self._render(given["message"], facts))
            except Exception as exc:  # noqa: BLE001 - an incident still gets a message: the default
                record["warning"] = self._redact(f"message: {exc}; the default message was sent")
                self._note(f"notification {self._what(record)}: {record['warning']}")
        timeout = float(given.get("timeout") or DEFAULT_TIMEOUT)
        return build(entry.channel, options, facts, self._redact(message), timeout)

    def _redacted(self, facts: Facts) -> Facts:
        changes: dict[str, Any] = {}
        for f in fields(facts):
            value = getattr(facts, f.name)
            if isinstance(value, str):
                changes[f.name] = self._redact(value)
            elif isinstance(value, list):
                changes[f.name] = [self._redact(v) if isinstance(v, str) else v for v in value]
        return replace(facts, **changes)

    def _deep_redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._redact(value)
        if isinstance(value, dict):
            return {k: self._deep_redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._deep_redact(v) for v in value]
        return value

    def _deliver(self, out: Outgoing, record: dict[str, Any], before: Future[None] | None) -> None:
        if before is not None:
            # submitted earlier, so already taken by a worker of this FIFO pool: it ends within
            # its own timeout, and this wait with it
            before.exception()
        sent = send(out)
        error = self._redact(sent.error) if sent.error else None
        with self._lock:
            if record["ok"] is not None:  # close() gave up on it already
                return
            record["ok"] = sent.ok
            record["error"] = error
            if sent.status_code is not None:
                record["status_code"] = sent.status_code
        if not sent.ok:
            self._note(f"notification {self._what(record)} failed: {error}")

    def _failed(self, record: dict[str, Any], error: str) -> None:
        record.update(ok=False, error=self._redact(error))
        with self._lock:
            if self._closed:
                return
            self._records.append(record)
        self._note(f"notification {self._what(record)} not sent: {record['error']}")

    @staticmethod
    def _what(record: dict[str, Any]) -> str:
        step = f" of step {record['step']}" if record.get("step") else ""
        return f"{record['channel']} on {record['event']}{step}"

    # ------------------------------------------------------------ escalation

    def start_clock(self, key: str, facts: Facts) -> None:
        """Start the levels that wait after ``facts.name`` (failure, approval_needed); each fires
        once after its ``after`` unless ``stop_clock(key)`` comes first."""
        for level in self._levels:
            if facts.name not in level.events:
                continue
            timer = threading.Timer(level.after, self._escalate, args=(key, level, facts))
            timer.daemon = True  # never keeps a process alive
            timer.name = f"notify-escalation-{key}"
            with self._lock:
                if self._closed:
                    return
                self._clocks.setdefault(key, []).append(timer)
            timer.start()

    def stop_clock(self, key: str) -> None:
        """The wait ``key`` is over (an approval was answered, the run recovered or ended)."""
        with self._lock:
            timers = self._clocks.pop(key, [])
        for timer in timers:
            timer.cancel()

    def _escalate(self, key: str, level: Escalation, facts: Facts) -> None:
        with self._lock:
            timers = self._clocks.get(key, [])
            if threading.current_thread() not in timers:
                return  # stopped as it fired
            timers.remove(threading.current_thread())  # type: ignore[arg-type]
        escalated = replace(facts, name="escalation", cause=facts.name, after=level.after, summary="")
        escalated.summary = default_message(escalated)
        self.notify(level, escalated)

    # ------------------------------------------------------------ the end

    def close(self) -> list[dict[str, Any]]:
        """Stop the clocks, wait for the sends in flight (bounded: each by its timeout) and
        return every record, in the order the sends were made."""
        with self._lock:
            keys = list(self._clocks)
        for key in keys:
            self.stop_clock(key)
        with self._lock:
            self._closed = True
            futures = list(self._futures)
            wait_until = self._wait_until
            pool = self._pool
        if futures:
            from concurrent.futures import wait

            wait(futures, timeout=max(0.0, wait_until - time.monotonic()))
        late: list[dict[str, Any]] = []
        with self._lock:
            for record in self._records:
                if record["ok"] is None:
                    record.update(ok=False, error="no answer before the run ended: given up")
                    late.append(record)
            records = [dict(r) for r in self._records]
        for record in late:
            self._note(f"notification {self._what(record)} failed: {record['error']}")
        if pool is not None:
            pool.shutdown(wait=False)
        return records
