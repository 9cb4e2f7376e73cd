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

import os
import re
import sys
import threading
import time
from typing import IO, Any

from ..execution import events as ev
from ..execution.results import RunResult, StepResult
from ..format.durations import format_duration

ICONS = {"ok": "✔", "failed": "✖", "timed_out": "⏱", "skipped": "↷", "planned": "○", "cancelled": "⊘",
         "rolled_back": "↺", "rollback_failed": "‼", "running": "…", "pending": " ", "rolling back": "↺"}
STYLES = {"ok": "green", "failed": "red", "timed_out": "red", "skipped": "dim", "planned": "cyan",
          "cancelled": "yellow", "rolled_back": "magenta", "rollback_failed": "bold red", "running": "blue",
          "pending": "dim", "rolling back": "magenta"}
INTERRUPTS = {
    1: "interrupted: stopping the running steps, then rolling back (Ctrl-C again to abandon the rollbacks)",
    2: "interrupted again: abandoning the rollbacks (Ctrl-C again to abandon on_failure and finally)",
    3: "interrupted a third time: abandoning on_failure and finally",
}
# notes that say a change was kept: the summary's "kept" line lists those steps once
_KEPT_NOTES = ("no rollback defined", "not rolled back")
# the runner's forwarded child step, before it sent StepFinished events: "child-name/step: status"
_CHILD_NOTE = re.compile(r"^(?P<sid>[^\s/]+/\S+): (?P<status>[a-z_]+)$")
# CSI/OSC escape sequences and the other C0 controls but tab and newline
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?|[\x00-\x08\x0b-\x1f\x7f]")


def clean(text: str) -> str:
    """Text as a plain log may hold it: no escape sequences, no control characters."""
    return _ESCAPES.sub("", text.replace("\r\n", "\n"))


def use_colour(stream: IO[str]) -> bool:
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def not_needed(step: StepResult) -> bool:
    """An on_failure step of a run that did not fail (or of a dry run): it never came up."""
    return step.phase == "on_failure" and step.status == "skipped" and not step.started_at


class ConsoleView:
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
            last = _one_line(tail[tail.rfind("\n") + 1:], 200) if tail else ""
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
            self._line(f"  retry {e.step_id}: attempt {e.attempt} failed: {_one_line(e.error or '')}")

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
        text = "undone" if e.ok else f"ROLLBACK FAILED: {_one_line(e.error or '')}"
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
            m = _CHILD_NOTE.match(e.text)
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
                    row["note"] = _one_line(r.error or "")
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

    # ------------------------------------------------------------ the live table

    def _start_live(self) -> None:
        from rich.live import Live

        # get_renderable: the table is rebuilt on each refresh, so a running step's time ticks
        self.live = Live(get_renderable=self._render, console=self.console, refresh_per_second=8,
                         transient=True)
        self.live.start()

    def _stop_live(self) -> None:
        live, self.live = self.live, None
        if live is not None:
            live.stop()  # transient: erases the rows still moving; the settled ones stay

    def pause(self) -> None:
        """Before a question: the table so far printed for good, then nothing live below it.

        The operator answers looking at what happened (health checks, smoke tests...). After
        the answer ``resume`` starts a fresh live table for the remaining steps: restarting
        the old one would redraw it over the lines printed meanwhile (the prompt, the answer).
        """
        if not self.fancy or self.paused:
            return
        self.paused = True
        try:
            self._stop_live()
            self._settle()
        except OSError:
            self.live = None

    def resume(self) -> None:
        if not self.fancy or not self.paused:
            return
        self.paused = False
        if not self.finished:
            try:
                self._start_live()
            except OSError:
                self.live = None

    def _settle(self, *, everything: bool = False, prefix_only: bool = False) -> None:
        """Print the finished rows not printed yet for good (``everything``: all the rows left)."""
        with self._lock:
            entries: list[tuple[str, dict[str, Any]]] = []
            for sid in self.order:
                if sid in self.printed:
                    continue
                row = self.rows[sid]
                if not (everything or _settled(row)):
                    if prefix_only:
                        break
                    continue
                parent = row.get("parent")
                if parent and parent not in self.printed and not everything:
                    # a child's row settles before its parent finishes: the parent as it is now
                    # goes above, once, so that the child rows are not read as another step's
                    prow = self.rows.get(parent)
                    if prow is not None and not prow.get("headed"):
                        prow["headed"] = True
                        entries.append((parent, dict(prow)))
                self.printed.add(sid)
                if not row.get("hidden"):
                    entries.append((sid, row))
            if not entries:
                return
            table = self._table(entries, header=not self.header_shown)
            self.header_shown = True
        self.console.print(table)
        if self.live is not None:
            self.live.refresh()  # the live part drops the rows just printed

    def _settle_if_too_tall(self) -> None:
        """A live table taller than the screen is cut: settle the finished rows at its top."""
        with self._lock:
            left = sum(1 for sid in self.order if sid not in self.printed)
        if left > self.console.height - 4:
            self._settle(prefix_only=True)

    def _render(self) -> Any:
        with self._lock:
            entries = [(sid, self.rows[sid]) for sid in self.order
                       if sid not in self.printed and not self.rows[sid].get("hidden")]
            return self._table(entries, header=not self.header_shown) if entries else ""

    def _table(self, entries: list[tuple[str, dict[str, Any]]], *, header: bool) -> Any:
        from rich.table import Table
        from rich.text import Text

        # widths from every row, not just these: the pieces printed at different times line up
        rows = [self.rows[sid] for sid in self.order]
        idw = max((len(_label(sid, self.rows[sid])) for sid in self.order), default=4)
        sw = max([11, *(len(_status(row)) for row in rows)])
        tries = any(_tries(row) for row in rows)
        hosts = any(_hosts(row) for row in rows)
        cols: list[tuple[str, int]] = [("", 1), ("step", idw), ("status", sw), ("time", 7)]
        if tries:  # columns empty for every row only take the detail's room
            cols.append(("tries", 5))
        if hosts:
            cols.append(("hosts", max(5, *(len(_hosts(row)) for row in rows))))
        table = Table(show_header=header, header_style="bold", box=None, pad_edge=False)
        for col, width in cols:
            table.add_column(col, no_wrap=True, width=width, overflow="ellipsis")
        fixed = sum(w for _, w in cols) + 2 * len(cols)  # and two spaces between columns
        # the detail gets what is left of the line, cut with an ellipsis: one row per step
        table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=max(20, self.console.width - fixed))
        for sid, row in entries:
            status = _status(row)
            style = STYLES.get(status, "")
            took = "" if self.dry_run and row.get("result") is not None else _took(row)
            cells: list[Any] = [Text(ICONS.get(status, "?"), style=style), Text(_label(sid, row)),
                                Text(status, style=style), took]
            if tries:
                cells.append(_tries(row))
            if hosts:
                cells.append(_hosts(row))
            cells.append(Text(_detail(row)))
            table.add_row(*cells)
        return table

    def _plan(self, result: RunResult) -> None:
        """After the live table (one line a step), the planned actions in full, a child
        procedure's under the step that runs it."""
        with self._lock:
            planned = [(sid, row["result"]) for sid in self.order
                       if (row := self.rows[sid]).get("result") is not None and row["result"].status == "planned"
                       and row["result"].description]
        if planned:
            self._print("plan:", "bold")
        for sid, s in planned:
            indent = "    " if "/" in sid else "  "
            self._print(f"{indent}{sid}:", "cyan")
            for ln in s.description.rstrip("\n").splitlines():
                self._print(f"{indent}    {ln}")
            if s.rollback_action:
                self._print(f"{indent}  undo ready: {_one_line(s.rollback_action, 300)}", "dim")

    # ------------------------------------------------------------ drawing

    def _line(self, text: str) -> None:
        """One line of user text, never read as markup."""
        if self.fancy:
            from rich.text import Text

            # what finished before this line is printed above it: the screen stays in order
            self._settle()
            self.console.print(Text(text), soft_wrap=True)
        else:
            try:
                self.stream.write(clean(text) + "\n")
                self.stream.flush()  # a pipe reader (tail -f, CI log) sees each line as it happens
            except (OSError, ValueError):
                pass  # the reader went away; the run goes on and its outcome is its exit code

    def _plain_row(self, sid: str, row: dict[str, Any], indent: str = "  ") -> str:
        r: StepResult | None = row.get("result")
        status = row.get("status", "pending")
        parts = [f"{indent}{ICONS.get(status, '?')} {status:<15} {sid}"]
        more: list[str] = []  # lines under the row, indented past its icon
        pad = " " * (len(indent) + 4)
        if r is not None:
            if not self.dry_run:  # a plan's timings say nothing about the run it plans
                parts.append(f"({format_duration(r.duration)})")
            if r.attempts > 1:
                parts.append(f"attempts={r.attempts}")
            if r.hosts is not None:
                parts.append(hosts_text(r))
            if r.error and status != "ok":
                more = _error_lines(r, pad)
            # a kept change is said once, in the summary's "kept" line
            parts.extend(f"[{n}]" for n in r.notes if not n.startswith(_KEPT_NOTES))
            if status == "planned" and r.description:
                # a plan shows the whole action as it would run, line for line
                action = r.description.rstrip("\n").splitlines() or [""]
                if len(action) == 1 and len(action[0]) <= 100:
                    parts.insert(2, f"would run: {action[0]}")
                else:
                    more = [f"{pad}would run:", *(f"{pad}  {ln}" for ln in action), *more]
            if status == "planned" and r.rollback_action:
                more.append(f"{pad}undo ready: {_one_line(r.rollback_action, 300)}")
        return "\n".join([" ".join(parts), *more])

    def _print(self, text: str, style: str | None = None) -> None:
        if self.fancy:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""), soft_wrap=True)
        else:
            self._line(text)

    def summary(self, result: RunResult) -> None:
        counts: dict[str, int] = {}
        spared = [sid for sid, s in result.steps.items() if not_needed(s)]
        for s in result.steps.values():
            if not not_needed(s):
                counts[s.status] = counts.get(s.status, 0) + 1
        if result.root_cause and result.root_cause in result.steps:
            self._failure_panel(result.steps[result.root_cause])
        elif result.error and result.status in ("refused", "interrupted") and result.error != result.status:
            self._print(f"{result.status}: {result.error}", "bold red")
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        unjudged = sum(1 for s in result.steps.values() if s.unjudged)
        if unjudged:
            tally += (f", {unjudged} {'check' if unjudged == 1 else 'checks'} could not be judged against "
                      "today's state")
        if spared:
            # the rows do not show them: counted apart, so the tally matches the rows
            why = "not planned in a dry run" if result.dry_run else "not needed"
            tally += f"; {len(spared)} on_failure {'step' if len(spared) == 1 else 'steps'} {why}"
        self._print(f"{result.status} (exit {result.exit_code}) in {format_duration(result.duration)}: {tally}",
                    "green" if result.exit_code == 0 else "bold red")
        not_run = [sid for sid, s in result.steps.items() if s.status == "cancelled" and not s.started_at]
        if not_run and not self.fancy:  # the live table already shows them
            self._print(f"not run: {', '.join(not_run)}")
        if result.rolled_back:
            self._print(f"rolled back: {', '.join(result.rolled_back)}")
        if result.not_undone:
            self._print(f"NOT UNDONE (a person must look): {', '.join(result.not_undone)}", "bold red")
            for sid in result.not_undone:
                s = result.steps.get(sid)
                if s is None:  # a child procedure's step: its own run said why
                    why = "its rollback did not complete in the child procedure"
                elif s.rollback is not None and s.rollback.status != "ok":
                    why = f"its rollback failed: {_one_line(s.rollback.error or 'failed')}"
                    if s.rollback.description:
                        why += f" (rollback: {_one_line(s.rollback.description)})"
                else:
                    why = "; ".join(s.notes) or "its rollback did not run"
                self._print(f"  {sid}: {why}")
        if result.kept:
            self._print(f"kept (no rollback ran): {', '.join(result.kept)}")

    def _failure_panel(self, step: StepResult) -> None:
        lines = [f"step: {step.id} ({step.status})"]
        if step.description:
            action = step.description.rstrip("\n").splitlines() or [""]
            lines.append(f"action: {action[0]}")
            lines.extend(f"        {ln}" for ln in action[1:])
        if "rc" in step.fields:
            lines.append(f"exit code: {step.fields.get('rc')}")
        streams = [(name, str(step.fields.get(name) or "").strip()) for name in ("stdout", "stderr")]
        streams = [(name, text) for name, text in streams if text]
        if step.error:
            # a command's error repeats its last lines, shown below in full under their stream
            error = step.error.splitlines()[:1] if streams else step.error.splitlines()
            lines.append(f"error: {error[0] if error else ''}")
            lines.extend(f"  {ln}" for ln in error[1:])
        for name, text in streams:
            lines.append(f"last output ({name}):")
            lines.extend("  " + ln for ln in text.splitlines()[-10:])
        if step.hosts:
            for host, h in step.hosts.items():
                if h.status not in ("ok", "skipped"):
                    lines.append(f"host {host}: {h.status}: {_one_line(h.error or '')}")
        if step.rollback is not None:
            lines.append(f"its rollback: {step.rollback.status}")
        text = "\n".join(lines)
        if self.fancy:
            from rich.panel import Panel
            from rich.text import Text

            self.console.print(Panel(Text(clean(text)), title="root cause", title_align="left",
                                     border_style="red"))
        else:
            self._line("--- root cause " + "-" * 40 + "\n" + text + "\n" + "-" * 55)


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


# ---------------------------------------------------------------- a recorded run (runproc show)


def show_report(report: dict[str, Any], stream: IO[str] | None = None) -> None:
    """A recorded run's JSON report as text: what it was, each step's line, the summary."""
    view = ConsoleView(stream, force_plain=True)
    result = result_from_json(report)
    mode = " (dry run)" if result.dry_run else ""
    view._line(f"procedure: {result.procedure}")
    view._line(f"run:       {result.run_id}{mode}")
    view._line(f"status:    {result.status} (exit {result.exit_code})")
    view._line(f"started:   {result.started_at}")
    view._line(f"duration:  {format_duration(result.duration)}")
    view._line("steps:")
    for sid, s in result.steps.items():
        if not_needed(s) or (s.status == "cancelled" and not s.started_at):
            continue  # the summary lists them in one line
        view._line(view._plain_row(sid, {"status": s.status, "result": s}))
    view.summary(result)


def result_from_json(report: dict[str, Any]) -> RunResult:
    steps = {d["id"]: _step_from_json(d) for d in report.get("steps") or []}
    return RunResult(report.get("procedure", "?"), report.get("run_id", "?"), report.get("status", "?"),
                     int(report.get("exit_code") or 0), bool(report.get("dry_run")),
                     report.get("started_at") or "", float(report.get("duration") or 0.0), steps,
                     error=report.get("error"), root_cause=report.get("root_cause"),
                     rolled_back=list(report.get("rolled_back") or []),
                     not_undone=list(report.get("not_undone") or []), kept=list(report.get("kept") or []))


_STEP_KEYS = {"id", "status", "phase", "started_at", "duration", "attempts", "error", "action", "notes",
              "hosts", "rollback"}


def _step_from_json(d: dict[str, Any]) -> StepResult:
    s = StepResult(str(d.get("id", "?")), status=d.get("status", "?"), phase=d.get("phase", "step"),
                   started_at=d.get("started_at"), duration=float(d.get("duration") or 0.0),
                   attempts=int(d.get("attempts") or 0), error=d.get("error"), description=d.get("action"),
                   notes=list(d.get("notes") or []))
    s.fields = {k: v for k, v in d.items() if k not in _STEP_KEYS}
    if isinstance(d.get("hosts"), dict):
        s.hosts = {h: _step_from_json({"id": h, **v}) for h, v in d["hosts"].items()}
    if isinstance(d.get("rollback"), dict):
        s.rollback = _step_from_json({"id": s.id, **d["rollback"]})
    return s


# ---------------------------------------------------------------- cells


def _settled(row: dict[str, Any]) -> bool:
    return row.get("status") not in ("pending", "running") and not row.get("undoing")


def _status(row: dict[str, Any]) -> str:
    return "rolling back" if row.get("undoing") else str(row.get("status", "pending"))


def _label(sid: str, row: dict[str, Any]) -> str:
    return str(row.get("label") or sid)


def _took(row: dict[str, Any]) -> str:
    r: StepResult | None = row.get("result")
    if row.get("undoing") or (r is None and row.get("status") == "running"):
        return format_duration(time.monotonic() - row.get("t0", time.monotonic()))
    return format_duration(r.duration) if r is not None else ""


def _tries(row: dict[str, Any]) -> str:
    r: StepResult | None = row.get("result")
    if r is not None:
        return str(r.attempts) if r.attempts > 1 else ""
    return str(row["attempt"]) if row.get("status") == "running" and row.get("attempt") else ""


def _hosts(row: dict[str, Any]) -> str:
    r: StepResult | None = row.get("result")
    if r is not None and r.hosts is not None:
        if r.status == "planned":
            return f"{len(r.hosts)} planned"
        return f"{sum(1 for h in r.hosts.values() if h.status == 'ok')}/{len(r.hosts)}"
    return str(row["hosts"]) if row.get("hosts") else ""


def hosts_text(r: StepResult) -> str:
    """A fanned-out step's hosts in words: ``16 hosts planned`` in a plan, ``3/4 hosts ok`` after a run."""
    assert r.hosts is not None
    n = len(r.hosts)
    planned = sum(1 for h in r.hosts.values() if h.status == "planned")
    if r.status == "planned" or (planned and planned == n):
        return f"{n} host{'s' if n != 1 else ''} planned"
    ok = sum(1 for h in r.hosts.values() if h.status == "ok")
    return f"{ok}/{n} hosts ok"


def _detail(row: dict[str, Any]) -> str:
    r: StepResult | None = row.get("result")
    if row.get("undoing"):
        return "running its rollback"
    if r is None or row.get("status") == "running":
        return str(row.get("note") or row.get("last") or "")
    if r.rollback is not None and r.rollback.status != "ok":
        return f"rollback failed: {_first_line(r.rollback.error or '')}"
    if r.status == "planned" and r.description:
        return _one_line(r.description, 500)
    if r.error and r.status != "ok":
        return _first_line(r.error)  # the command's last output is in the root cause panel
    notes = [n for n in r.notes if not n.startswith(_KEPT_NOTES)]  # the summary lists kept steps
    return _one_line("; ".join(notes), 500)


def _error_lines(r: StepResult, pad: str) -> list[str]:
    """A failed step's error under its row: the whole first line, then what the command said."""
    lines = clean(r.error or "").strip("\n").splitlines() or [""]
    out = [f"{pad}error: {lines[0]}"]
    if len(lines) > 1:
        if "rc" in r.fields:  # a command's error is its exit code, then its last output lines
            stream = "stderr" if str(r.fields.get("stderr") or "").strip() else "stdout"
            out.append(f"{pad}last output ({stream}):")
        out.extend(f"{pad}  {ln}" for ln in lines[1:])
    return out


def _first_line(text: str) -> str:
    lines = clean(str(text)).strip().splitlines()
    return _one_line(lines[0], 500) if lines else ""


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(clean(str(text)).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
