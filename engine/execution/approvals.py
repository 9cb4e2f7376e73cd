"""Answers to ``confirm`` steps from anywhere: the run's terminal, ``runproc approve RUN STEP``
(against the state) and ``runproc serve``'s run page. docs/executors/confirm.md.

A confirm step of a journaled run says in its journal that it waits (a ``waiting`` entry: the
message, ``approvers``, ``four_eyes``, who started the run, until when); the entry's seq names
the request. Whoever answers from elsewhere checks the request and writes the answer into the
state's ``approvals`` table, keyed by (run, step, request): the first answer stands, a second is
refused. The waiting run polls the table (every POLL seconds) while its terminal, if it has one,
asks too; the terminal's answer goes through the same table, so the two cannot both win. The
run then journals the answer that stood as its ``approval`` entry (who, how, when, comment).

Rules: ``four_eyes: true``: the user who started the run may not approve it (``--yes`` is that
user approving in advance, so it does not approve such a step either). ``approvers: [...]``:
only these users, or holders of these roles (``runproc serve``'s token roles), may approve.
Rejecting stops a change and never makes one: anyone who may answer at all may reject.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInputError, RefusedError

# how a confirm step says, as its progress, that it waits for an answer from anywhere (the
# notifier reads it to send approval_needed: one text, in one place)
WAITING = "waiting for an answer"

if TYPE_CHECKING:
    from .journal import NullJournal

POLL = 0.25  # how often a waiting run looks for an answer: one query by primary key
MAX_COMMENT = 1000
# how long a confirm step without a timeout waits for an answer when nobody is at a terminal
# (0, the default: it is refused at once, as it always was; a step's own timeout counts first)
WAIT_ENV = "RUNPROC_APPROVAL_WAIT"


class NotWaiting(RefusedError):
    """The run does not wait on that step (it ended, or the step is not asking), or it was
    answered already: the answer came too late (a web page answers 409)."""


class NotAllowed(RefusedError):
    """The step's rules refuse this answer from this person (four_eyes, approvers): a 403."""


def refusal(request: dict[str, Any], *, by: str | None, role: str | None, approved: bool) -> str | None:
    """Why ``by`` (with ``role``, if any) may not give this answer; None: they may."""
    if not approved:
        return None
    if request.get("four_eyes") and by is not None and by == request.get("started_by"):
        return (f"four_eyes: {by} started this run and may not approve it; someone else must "
                "(they may reject it)")
    approvers = [str(a) for a in request.get("approvers") or []]
    if approvers and by not in approvers and (role is None or role not in approvers):
        who = f"{by} ({role})" if role else str(by)
        return f"{who} is not among the approvers of this step: {', '.join(approvers)}"
    return None


def pending(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The confirm steps of a journal still waiting for an answer: step -> its request, with
    ``request`` (the waiting entry's seq) and ``since``."""
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        step = e.get("step")
        if step is None:
            continue
        if e.get("event") == "waiting":
            out[step] = {**(e.get("data") or {}), "request": int(e["seq"]), "since": e.get("at")}
        elif e.get("event") in ("approval", "step_finished"):
            out.pop(step, None)
    return out


def clean_comment(comment: str | None) -> str | None:
    """A comment as it is recorded: one paragraph, at most MAX_COMMENT characters."""
    if comment is None:
        return None
    text = " ".join(str(comment).split())
    if len(text) > MAX_COMMENT:
        raise InvalidInputError(f"the comment is {len(text)} characters long; at most {MAX_COMMENT}")
    return text or None


def give(store: Any, run_id: str, step: str, *, approved: bool, by: str, role: str | None, how: str,
         comment: str | None, request: int | None = None) -> dict[str, Any]:
    """Answer a confirm step that a run waits on, as ``by`` (``role``) through ``how``; the
    answer as recorded. An unknown run is invalid input; a run that does not wait on that
    step (or no longer on ``request``, the question a page showed), or a step answered
    already is NotWaiting; an answer the step's rules refuse is NotAllowed."""
    comment = clean_comment(comment)
    meta = store.run_meta(run_id)
    if meta is None:
        found = store.show(run_id) if run_id else None  # an id prefix
        if not found:
            raise InvalidInputError(f"no run {run_id!r} in this state (runproc runs lists them)")
        run_id = str(found["run_id"])
        meta = store.run_meta(run_id) or {}
    if meta.get("status") == "running" and run_id in store.settle():
        meta = {**meta, "status": "interrupted"}
    if meta.get("status") != "running":
        raise NotWaiting(f"run {run_id} has ended ({meta.get('status')}): nothing waits for an approval")
    waits = pending(store.journal(run_id))
    if step not in waits:
        waiting = ", ".join(sorted(waits)) or "none"
        raise NotWaiting(f"step {step!r} of run {run_id} is not waiting for an approval (waiting: {waiting})")
    asked = waits[step]
    if request is not None and request != asked["request"]:
        raise NotWaiting(f"run {run_id}, step {step} asks again since that page was loaded: reload it and answer "
                         "the question it shows now")
    why = refusal(asked, by=by, role=role, approved=approved)
    if why is not None:
        raise NotAllowed(f"run {run_id}, step {step}: {why}")
    stood, standing = store.answer(run_id, step, asked["request"],
                                   {"approved": approved, "by": by, "role": role, "how": how, "comment": comment})
    if not stood:
        verdict = "approved" if standing["approved"] else "rejected"
        raise NotWaiting(f"run {run_id}, step {step} was already {verdict} by {standing['by']} "
                           f"({standing['how']}) at {standing['at']}")
    return {"run_id": run_id, "step": step, **standing}


def wait_default() -> float | None:
    """RUNPROC_APPROVAL_WAIT in seconds, or None (unset, 0 or unreadable)."""
    text = os.environ.get(WAIT_ENV)
    if not text:
        return None
    from ..format.durations import parse_duration

    try:
        seconds = float(parse_duration(text))
    except Exception:  # noqa: BLE001 - a bad value must not stop a run: no wait, as without it
        return None
    return seconds if seconds > 0 else None


class Gate:
    """What a confirm step of a journaled run asks through (``StepContext.ask``): called with a
    message it is the terminal's plain yes/no; ``decide`` waits for the first answer from the
    terminal, ``runproc approve`` or the web page, within the step's rules and deadline."""

    def __init__(self, journal: NullJournal, step_id: str, terminal: Callable[..., bool] | None,
                 cancel: threading.Event, run_id: str) -> None:
        self.journal = journal
        self.step_id = step_id
        self.terminal = terminal
        self.cancel = cancel
        self.run_id = run_id

    def __call__(self, message: str) -> bool:
        return bool(self.terminal(message)) if self.terminal is not None else False

    def decide(self, message: str, *, approvers: list[str], four_eyes: bool, yes: bool, deadline: float | None,
               say: Callable[[str], None]) -> dict[str, Any]:
        """{approved, by, how, comment, role} once answered; else {error, timed_out | cancelled}
        (no ``approved``: nobody answered)."""
        starter = getattr(self.journal, "started_by", None)
        request: dict[str, Any] = {"message": message, "approvers": list(approvers), "four_eyes": four_eyes,
                                   "started_by": starter}
        if yes:
            why = refusal(request, by=starter, role=None, approved=True)
            if why is None:
                return {"approved": True, "by": "--yes", "how": "--yes"}
            say(f"--yes does not approve this step: {why}")
        not_mine = refusal(request, by=starter, role=None, approved=True)
        # the terminal answers only if its user may approve; a person there may still interrupt
        terminal = self.terminal if not_mine is None else None
        if deadline is None and self.terminal is None:
            wait = wait_default()
            deadline = time.monotonic() + wait if wait is not None else None
        if deadline is None and self.terminal is None:  # nobody here, and no bound on waiting for others
            if not_mine is not None:
                error = (f"approval needed ({message}) from someone else ({not_mine}), and this run has no "
                         f"bound to wait for it: give the step a timeout (or set {WAIT_ENV})")
            else:
                error = (f"approval needed ({message}) but there is no terminal to ask; pass --yes, or give the "
                         f"step a timeout (or set {WAIT_ENV}) to wait for runproc approve or the web page")
            return {"error": error, "refused": True}
        if deadline is not None:
            request["until"] = (datetime.now(UTC) + timedelta(seconds=max(0.0, deadline - time.monotonic()))
                                ).isoformat(timespec="seconds").replace("+00:00", "Z")
        seq = self.journal.waiting(self.step_id, request)
        if seq is None:  # no state to wait on: the terminal alone
            if terminal is None:
                why = not_mine or "the state store is gone and there is no terminal to ask"
                return {"error": f"approval needed ({message}) and nobody may give it here: {why}", "refused": True}
            return self._terminal_only(terminal, message, starter)
        say(f"{WAITING}: runproc approve {self.run_id} {self.step_id} [--reject], or the run's page"
            + (", or here" if terminal is not None else ""))
        return self._wait(seq, terminal, message, starter, deadline)

    def _terminal_only(self, terminal: Callable[..., bool], message: str, starter: str | None) -> dict[str, Any]:
        approved = bool(terminal(message))
        return {"approved": approved, "by": starter, "how": "terminal"}

    def _wait(self, seq: int, terminal: Callable[..., bool] | None, message: str, starter: str | None,
              deadline: float | None) -> dict[str, Any]:
        answered = threading.Event()  # stops the terminal's question once an answer came from elsewhere
        said: list[bool] = []
        if terminal is not None:
            def ask() -> None:
                try:
                    if getattr(terminal, "stoppable", False):
                        said.append(bool(terminal(message, stop=answered)))
                    else:  # an asker of the library's caller: it answers, or is left behind
                        said.append(bool(terminal(message)))
                except Exception:  # noqa: BLE001 - a broken terminal: the other ways still answer
                    pass
            threading.Thread(target=ask, name=f"confirm-{self.step_id}", daemon=True).start()
        try:
            while True:
                if said and not answered.is_set():
                    _, standing = self.journal.answer(self.step_id, seq, {
                        "approved": said[0], "by": starter, "how": "terminal"})
                    return _answered(standing)
                stored = self.journal.answer_of(self.step_id, seq)
                if stored is not None:
                    return _answered(stored)
                if self.cancel.is_set():
                    return {"error": "interrupted while waiting for an approval", "cancelled": True}
                if deadline is not None and time.monotonic() >= deadline:
                    return {"error": f"no answer within the step's timeout: {message}", "timed_out": True}
                self.cancel.wait(POLL)
        except Exception as exc:  # noqa: BLE001 - the state went away while waiting: say so, end the step
            return {"error": f"the state store stopped answering while waiting for an approval: {exc}"}
        finally:
            answered.set()


def _answered(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: answer.get(k) for k in ("approved", "by", "how", "comment", "role")}
