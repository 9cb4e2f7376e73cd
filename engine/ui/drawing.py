"""How the console draws: the live table on a terminal, plain lines elsewhere, the plan and the
summary. ``ConsoleView`` (console.py) handles the events and keeps the rows; this base class
turns the rows into output."""

from __future__ import annotations

import threading
from typing import IO, Any

from ..execution.results import RunResult, StepResult, count_unjudged
from ..format.durations import format_duration
from .cells import (
    ICONS,
    ITERATIONS_SHOWN,
    KEPT_NOTES,
    STYLES,
    clean,
    detail,
    error_lines,
    hosts_cell,
    hosts_text,
    iteration_lines,
    label_of,
    not_needed,
    one_line,
    settled,
    status_of,
    took,
    tries_cell,
    unit_of,
)


class Drawing:
    """The drawing half of ConsoleView: it reads the rows the event handlers keep."""

    # set by ConsoleView.__init__
    stream: IO[str]
    fancy: bool
    console: Any
    rows: dict[str, dict[str, Any]]
    order: list[str]
    printed: set[str]
    live: Any
    dry_run: bool
    header_shown: bool
    paused: bool
    finished: bool
    _lock: threading.RLock

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
                if not (everything or settled(row)):
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
        idw = max((len(label_of(sid, self.rows[sid])) for sid in self.order), default=4)
        sw = max([11, *(len(status_of(row)) for row in rows)])
        tries = any(tries_cell(row) for row in rows)
        hosts = any(hosts_cell(row) for row in rows)
        cols: list[tuple[str, int]] = [("", 1), ("step", idw), ("status", sw), ("time", 7)]
        if tries:  # columns empty for every row only take the detail's room
            cols.append(("tries", 5))
        if hosts:
            cols.append(("hosts", max(5, *(len(hosts_cell(row)) for row in rows))))
        table = Table(show_header=header, header_style="bold", box=None, pad_edge=False)
        for col, width in cols:
            table.add_column(col, no_wrap=True, width=width, overflow="ellipsis")
        fixed = sum(w for _, w in cols) + 2 * len(cols)  # and two spaces between columns
        # the detail gets what is left of the line, cut with an ellipsis: one row per step
        table.add_column("detail", no_wrap=True, overflow="ellipsis", max_width=max(20, self.console.width - fixed))
        for sid, row in entries:
            status = status_of(row)
            style = STYLES.get(status, "")
            elapsed = "" if self.dry_run and row.get("result") is not None else took(row)
            cells: list[Any] = [Text(ICONS.get(status, "?"), style=style), Text(label_of(sid, row)),
                                Text(status, style=style), elapsed]
            if tries:
                cells.append(tries_cell(row))
            if hosts:
                cells.append(hosts_cell(row))
            cells.append(Text(detail(row)))
            table.add_row(*cells)
            self._iteration_rows(table, row, len(cols))
        return table

    @staticmethod
    def _iteration_rows(table: Any, row: dict[str, Any], columns: int) -> None:
        """A finished loop step's iterations, a row each under its own: the status in its
        column, the label (and its planned action or its error) as the detail."""
        from rich.text import Text

        r: StepResult | None = row.get("result")
        if r is None or not r.loop or not r.hosts:
            return
        shown = list(r.hosts.items())[:ITERATIONS_SHOWN]
        for label, h in shown:
            style = STYLES.get(h.status, "")
            what = (f": would run: {one_line(h.description, 200)}" if h.status == "planned" and h.description
                    else f": {one_line(h.error, 200)}" if h.error and h.status != "ok" else "")
            table.add_row(Text(""), Text(f"  {ICONS.get(h.status, '?')}", style=style), Text(h.status, style=style),
                          *[Text("") for _ in range(columns - 3)], Text(f"{label}{what}"))
        if len(r.hosts) > len(shown):
            table.add_row(*[Text("") for _ in range(columns)], Text(f"... and {len(r.hosts) - len(shown)} more"))

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
            for ln in ([] if s.loop and s.hosts else s.description.rstrip("\n").splitlines()):
                self._print(f"{indent}    {ln}")
            for ln in iteration_lines(s, f"{indent}    "):
                self._print(ln)
            if s.rollback_action:
                self._print(f"{indent}  undo ready: {one_line(s.rollback_action, 300)}", "dim")

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
                more = error_lines(r, pad)
            # a kept change is said once, in the summary's "kept" line
            parts.extend(f"[{n}]" for n in r.notes if not n.startswith(KEPT_NOTES))
            if status == "planned" and r.description and not (r.loop and r.hosts):
                # a plan shows the whole action as it would run, line for line
                # (a loop's, iteration by iteration below)
                action = r.description.rstrip("\n").splitlines() or [""]
                if len(action) == 1 and len(action[0]) <= 100:
                    parts.insert(2, f"would run: {action[0]}")
                else:
                    more = [f"{pad}would run:", *(f"{pad}  {ln}" for ln in action), *more]
            if status == "planned" and r.rollback_action:
                more.append(f"{pad}undo ready: {one_line(r.rollback_action, 300)}")
            more.extend(iteration_lines(r, pad))
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
        elif result.error and result.status in ("refused", "interrupted", "failed") and result.error != result.status:
            self._print(f"{result.status}: {result.error}", "bold red")
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        unjudged = count_unjudged(result.steps.values())
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
                    why = f"its rollback failed: {one_line(s.rollback.error or 'failed')}"
                    if s.rollback.description:
                        why += f" (rollback: {one_line(s.rollback.description)})"
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
                    why = f": {one_line(h.error)}" if h.error else ""
                    lines.append(f"{unit_of(step)} {host}: {h.status}{why}")
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


