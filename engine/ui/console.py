"""Rendering of run events: a rich live view on a terminal, plain lines elsewhere.

The console decides nothing: it only draws what the events say. Colour and the live view
are used only when the stream is a terminal and NO_COLOR is unset; plain mode does not
import rich at all (it costs ~40 ms of a run's start) and strips escape sequences from
what commands print, so a log file or a pipe gets text only.

On a terminal the screen reads top to bottom in the order things happened: finished rows
are printed for good ("settled") whenever something else has to be printed (a notice, a
rollback of a settled row, a question), and the live table below holds only the rows still
moving. Nothing once printed is redrawn or erased.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import IO, Any

from ..execution import events as ev
from ..execution.results import StepResult
from ..format.durations import format_duration
from .cells import CHILD_NOTE, ICONS, INTERRUPTS, clean, not_needed, one_line, use_colour
from .drawing import Drawing


class ConsoleView(Drawing):
    """An ``on_event`` consumer for people: live table on a terminal, plain lines elsewhere."""

    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False,
                 force_plain: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.fancy = not force_plain and use_colour(self.stream)
        self.verbose = verbose
        # the runner spares decoding output nobody shows; the live table shows a running
        # step's last line (output events are redacted already)
        self.wants_output = verbose or self.fancy
        self.console: Any = None
        if self.fancy:
            from rich.console import Console

            self.console = Console(file=self.stream, highlight=False, force_terminal=True)
        self.rows: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.top: set[str] = set()  # the run's own steps (not a child procedure's)
        self.live: Any = None
        self.dry_run = False
        # Events arrive serialised (the runner's emit lock), but rich's refresh thread reads
        # the rows concurrently and a confirm question pauses the view from a step's thread.
        # Rule: this lock is never held while calling rich (rich's Live lock is taken around
        # get_renderable, so the opposite order would deadlock).
        self._lock = threading.RLock()
        self.printed: set[str] = set()  # rows printed for good
        self.header_shown = False
        self.paused = False
        self.finished = False
        # child procedure name -> (the step running it, whether that is certain)
        self.parents: dict[str, tuple[str | None, bool]] = {}
        self.announced: set[str] = set()  # child procedures whose parent line is printed (plain)
        self.deferred: dict[str, list[str]] = {}  # a plan's child rows, printed after their parent's

    # ------------------------------------------------------------ event sink

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, "on_" + type(event).__name__, None)
        if handler is not None:
            try:
                handler(event)
            except OSError:
                # the terminal or pipe went away (SIGHUP, a closed ssh session, `| head`):
                # drawing stops, the run and its rollbacks do not
                self.live = None

    def on_RunStarted(self, e: ev.RunStarted) -> None:  # noqa: N802 - named after the event
        self.dry_run = e.dry_run
        with self._lock:
            self.order = [sid for sid, _ in e.steps]
            self.top = set(self.order)
            self.rows = {sid: {"name": name, "status": "pending", "note": ""} for sid, name in e.steps}
        mode = " (offline plan)" if e.offline else " (dry run)" if e.dry_run else ""
        if self.fancy:
            from rich.text import Text

            self.console.print(Text.assemble((e.procedure, "bold"), f"{mode}  run {e.run_id}"))
            self._start_live()
        else:
            self._line(f"{e.procedure}{mode}  run {e.run_id}")

    def on_PreconditionChecked(self, e: ev.PreconditionChecked) -> None:  # noqa: N802
        mark = "?" if e.unknown else ("✔" if e.ok else "✖")
        text = "not checked (offline)" if e.unknown else ("passed" if e.ok else f"FAILED: {e.error}")
        self._line(f"  precondition {mark} {e.name}: {text}")

    def on_StepStarted(self, e: ev.StepStarted) -> None:  # noqa: N802
        with self._lock:
            row = self._row(e.step_id)
            row.update(status="running", t0=time.monotonic(), hosts=e.hosts, note="", last="")

    def on_StepOutput(self, e: ev.StepOutput) -> None:  # noqa: N802
        if self.verbose:
            prefix = f"[{e.step_id}{'@' + e.host if e.host else ''}] "
            for line in e.text.splitlines():
                self._line(prefix + line)
        elif self.fancy:
            # only the last non-empty line of the chunk: a step printing megabytes costs a split
            tail = e.text.rstrip()
            last = one_line(tail[tail.rfind("\n") + 1:], 200) if tail else ""
            if not last:
                return
            with self._lock:
                row = self.rows.get(e.step_id)
                if row is None and "/" in e.step_id:  # a child procedure's step: on its parent's row
                    name, child_step = e.step_id.split("/", 1)
                    parent, _ = self._parent_of(name)
                    row = self.rows.get(parent) if parent else None
                    last = f"{child_step}: {last}"
                if row is not None:
                    row["last"] = last

    def on_StepProgress(self, e: ev.StepProgress) -> None:  # noqa: N802
        with self._lock:
            row = self.rows.get(e.step_id)
            if row is not None:
                row["note"] = e.message

    def on_StepRetrying(self, e: ev.StepRetrying) -> None:  # noqa: N802
        with self._lock:
            row = self.rows.get(e.step_id)
            if row is not None:
                row["note"] = f"attempt {e.attempt} failed, retrying in {format_duration(e.delay)}"
                row["attempt"] = e.attempt + 1
        if self.verbose:
            self._line(f"  retry {e.step_id}: attempt {e.attempt} failed: {one_line(e.error or '')}")

    def on_StepFinished(self, e: ev.StepFinished) -> None:  # noqa: N802
        if e.step_id not in self.top and (e.phase.startswith("child") or "/" in e.step_id):
            if e.phase.startswith("child:") and "/" in e.step_id:
                # the runner may name the step running the child: "child:<parent step id>"
                with self._lock:
                    self.parents.setdefault(e.step_id.split("/", 1)[0], (e.phase[len("child:"):], True))
            self._child_finished(e.step_id, e.result.status, e.result)
            return
        r = e.result
        with self._lock:
            row = self._row(e.step_id)
            # a progress or retry note is about the step while it ran; its outcome replaces it
            row.update(status=r.status, result=r, note="", last="")
        if self.fancy:
            self._settle_if_too_tall()
        else:
            self._line(self._plain_row(e.step_id, row))
            for line in self.deferred.pop(e.step_id, []):
                self._line(line)

    def on_RollbackStarted(self, e: ev.RollbackStarted) -> None:  # noqa: N802
        if self.fancy:
            with self._lock:
                row = self.rows.get(e.step_id)
                in_table = row is not None and e.step_id not in self.printed
                if in_table:
                    assert row is not None
                    row.update(undoing=True, t0=time.monotonic())
            if in_table:
                return  # the row shows it; a line would land above the table, out of order
        self._line(f"  rolling back {e.step_id} ...")

    def on_RollbackFinished(self, e: ev.RollbackFinished) -> None:  # noqa: N802
        text = "undone" if e.ok else f"ROLLBACK FAILED: {one_line(e.error or '')}"
        in_table = False
        with self._lock:
            row = self.rows.get(e.step_id)
            if row is not None:
                row["undoing"] = False
                if row.get("result") is not None:
                    row["status"] = row["result"].status
                in_table = e.step_id not in self.printed
        if not (self.fancy and in_table):
            self._line(f"  rollback {e.step_id}: {text}")

    def on_Interrupted(self, e: ev.Interrupted) -> None:  # noqa: N802
        self._line("  " + INTERRUPTS.get(e.count, INTERRUPTS[3]))

    def on_Note(self, e: ev.Note) -> None:  # noqa: N802
        if e.level == "child":
            # how the runner forwarded a child procedure's finished step before StepFinished
            m = CHILD_NOTE.match(e.text)
            if m:
                self._child_finished(m["sid"], m["status"], None)
            elif self.verbose:
                self._line(f"  child: {e.text}")
            return
        self._line(f"  {e.level}: {e.text}")

    def on_RunFinished(self, e: ev.RunFinished) -> None:  # noqa: N802
        with self._lock:
            self.finished = True
            for sid, r in e.result.steps.items():  # steps never started end as cancelled
                row = self._row(sid)
                row.update(status=r.status, undoing=False, note="", last="")
                if not_needed(r):
                    row["hidden"] = True  # the summary says so in one line
                if r.status != "cancelled" or r.started_at:
                    row["result"] = r
                else:
                    row["note"] = one_line(r.error or "")
        if self.fancy:
            self._stop_live()
            self._settle(everything=True)
            if e.result.dry_run:
                self._plan(e.result)
        self.summary(e.result)

    # ------------------------------------------------------------ child procedures

    def _child_finished(self, sid: str, status: str, result: StepResult | None) -> None:
        """A child procedure's step, as an indented row under the step that runs the child."""
        name, child_step = sid.split("/", 1)
        with self._lock:
            first = name not in self.announced
            self.announced.add(name)
            parent, certain = self._parent_of(name)
            row = self.rows.get(sid)
            if row is None:
                row = self.rows[sid] = {"name": sid, "child": True, "parent": parent}
                # the row goes after the parent's other children (or the parent), in event order
                after = parent
                for other in self.order:
                    if other.split("/", 1)[0] == name and self.rows[other].get("child"):
                        after = other
                at = self.order.index(after) + 1 if after in self.order else len(self.order)
                self.order.insert(at, sid)
            # the parent's id already says where the row belongs; else the whole name does
            row["label"] = f"└ {child_step}" if parent and certain else f"└ {sid}"
            row.update(status=status, result=result)
            parent_row = self.rows.get(parent) if parent else None
            if parent_row is not None:
                parent_row["last"] = ""
        if self.fancy:
            self._settle_if_too_tall()
            return
        line = self._plain_row(sid, row, indent="    └ ")
        if self.dry_run and parent is not None and parent in self.top:
            # a plan is quick: its child's rows follow the parent's own row, which appears once
            self.deferred.setdefault(parent, []).append(line)
            return
        if first:
            # plain lines come as steps finish, the parent's last: name it above its children
            who = f"{parent} (child procedure {name})" if parent else f"child procedure {name}"
            self._line(f"  {ICONS['running']} {'running':<15} {who}")
        self._line(line)

    def _parent_of(self, name: str) -> tuple[str | None, bool]:
        """The step running child procedure ``name`` (the step of that id, else the running
        step), and whether that is certain.

        The events name the child procedure, not the step that runs it; only a running step
        can be emitting its child's steps. With several running, the latest started is a
        guess, and the rows then carry the child's whole name.
        """
        if name not in self.parents:
            if name in self.top:
                self.parents[name] = (name, True)
            else:
                running = [sid for sid in self.top if self.rows[sid].get("status") == "running"]
                running.sort(key=lambda sid: self.rows[sid].get("t0", 0.0))
                self.parents[name] = (running[-1] if running else None, len(running) == 1)
        return self.parents[name]

    def _row(self, sid: str) -> dict[str, Any]:
        row = self.rows.get(sid)
        if row is None:
            row = self.rows[sid] = {"name": sid, "status": "pending", "note": ""}
            self.order.append(sid)
        return row


class NoticeSink:
    """The ``--output json`` consumer: stdout is the report's alone, so a person running it
    still learns on stderr about interrupts and warnings (nothing else)."""

    wants_output = False

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.Interrupted):
            self._write(INTERRUPTS.get(event.count, INTERRUPTS[3]))
        elif isinstance(event, ev.Note) and event.level == "warning":
            self._write(f"warning: {event.text}")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(clean(text) + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass
