"""Rendering of run events: a rich live view on a terminal, plain lines elsewhere.

The console decides nothing: it only draws what the events say. Colour and the live view
are used only when the stream is a terminal and NO_COLOR is unset; plain mode does not
import rich at all (it costs ~40 ms of a run's start) and strips escape sequences from
what commands print, so a log file or a pipe gets text only.
"""

from __future__ import annotations

import os
import re
import sys
import time
from typing import IO, Any

from . import events as ev
from .durations import format_duration
from .results import RunResult, StepResult

ICONS = {"ok": "✔", "failed": "✖", "timed_out": "⏱", "skipped": "↷", "planned": "○", "cancelled": "⊘",
         "rolled_back": "↺", "rollback_failed": "‼", "running": "…", "pending": " "}
STYLES = {"ok": "green", "failed": "red", "timed_out": "red", "skipped": "dim", "planned": "cyan",
          "cancelled": "yellow", "rolled_back": "magenta", "rollback_failed": "bold red", "running": "blue",
          "pending": "dim"}
INTERRUPTS = {
    1: "interrupted: stopping the running steps, then rolling back (Ctrl-C again to abandon the rollbacks)",
    2: "interrupted again: abandoning the rollbacks (Ctrl-C again to abandon on_failure and finally)",
    3: "interrupted a third time: abandoning on_failure and finally",
}
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


class ConsoleView:
    """An ``on_event`` consumer for people: live table on a terminal, plain lines elsewhere."""

    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False,
                 force_plain: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.fancy = not force_plain and use_colour(self.stream)
        self.verbose = verbose
        self.wants_output = verbose  # the runner spares decoding output nobody shows
        self.console: Any = None
        if self.fancy:
            from rich.console import Console

            self.console = Console(file=self.stream, highlight=False, force_terminal=True)
        self.rows: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.live: Any = None
        self.dry_run = False

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
        self.order = [sid for sid, _ in e.steps]
        self.rows = {sid: {"name": name, "status": "pending", "note": ""} for sid, name in e.steps}
        mode = " (offline plan)" if e.offline else " (dry run)" if e.dry_run else ""
        if self.fancy:
            from rich.live import Live
            from rich.text import Text

            self.console.print(Text.assemble((e.procedure, "bold"), f"{mode}  run {e.run_id}"))
            self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=True)
            self.live.start()
        else:
            self._line(f"{e.procedure}{mode}  run {e.run_id}")

    def on_PreconditionChecked(self, e: ev.PreconditionChecked) -> None:  # noqa: N802
        mark = "?" if e.unknown else ("✔" if e.ok else "✖")
        text = "not checked (offline)" if e.unknown else ("passed" if e.ok else f"FAILED: {e.error}")
        self._line(f"  precondition {mark} {e.name}: {text}")

    def on_StepStarted(self, e: ev.StepStarted) -> None:  # noqa: N802
        row = self.rows.setdefault(e.step_id, {"name": e.step_id, "note": ""})
        row.update(status="running", t0=time.monotonic(), hosts=e.hosts)
        self._refresh()

    def on_StepOutput(self, e: ev.StepOutput) -> None:  # noqa: N802
        if self.verbose:
            prefix = f"[{e.step_id}{'@' + e.host if e.host else ''}] "
            for line in e.text.splitlines():
                self._line(prefix + line)

    def on_StepProgress(self, e: ev.StepProgress) -> None:  # noqa: N802
        row = self.rows.get(e.step_id)
        if row is not None:
            row["note"] = e.message
            self._refresh()

    def on_StepRetrying(self, e: ev.StepRetrying) -> None:  # noqa: N802
        row = self.rows.get(e.step_id)
        if row is not None:
            row["note"] = f"attempt {e.attempt} failed, retrying in {format_duration(e.delay)}"
            self._refresh()
        if self.verbose:
            self._line(f"  retry {e.step_id}: attempt {e.attempt} failed: {_one_line(e.error or '')}")

    def on_StepFinished(self, e: ev.StepFinished) -> None:  # noqa: N802
        r = e.result
        row = self.rows.setdefault(e.step_id, {"name": e.step_id})
        row.update(status=r.status, result=r)
        if self.fancy:
            self._refresh()
        else:
            self._line(self._plain_row(e.step_id, row))

    def on_RollbackStarted(self, e: ev.RollbackStarted) -> None:  # noqa: N802
        self._line(f"  rolling back {e.step_id} ...")

    def on_RollbackFinished(self, e: ev.RollbackFinished) -> None:  # noqa: N802
        text = "undone" if e.ok else f"ROLLBACK FAILED: {_one_line(e.error or '')}"
        row = self.rows.get(e.step_id)
        if row is not None and row.get("result") is not None:
            row["status"] = row["result"].status
            self._refresh()
        self._line(f"  rollback {e.step_id}: {text}")

    def on_Interrupted(self, e: ev.Interrupted) -> None:  # noqa: N802
        self._line("  " + INTERRUPTS.get(e.count, INTERRUPTS[3]))

    def on_Note(self, e: ev.Note) -> None:  # noqa: N802
        if e.level == "child" and not self.verbose:
            return
        self._line(f"  {e.level}: {e.text}")

    def on_RunFinished(self, e: ev.RunFinished) -> None:  # noqa: N802
        for sid, r in e.result.steps.items():  # steps never started end as cancelled
            row = self.rows.setdefault(sid, {"name": sid, "note": ""})
            row["status"] = r.status
            if r.status != "cancelled" or r.started_at:
                row["result"] = r
            else:
                row["note"] = _one_line(r.error or "")
        if self.live is not None:
            self.live.stop()
            self.live = None
            self.console.print(self._table())
            if e.result.dry_run:
                self._plan(e.result)
        self.summary(e.result)

    def _plan(self, result: RunResult) -> None:
        """After the live table (one line a step), the planned actions in full."""
        planned = [s for s in result.steps.values() if s.status == "planned" and s.description]
        if planned:
            self._print("plan:", "bold")
        for s in planned:
            action = s.description.rstrip("\n").splitlines() if s.description else []
            self._print(f"  {s.id}:", "cyan")
            for ln in action:
                self._print(f"      {ln}")

    # ------------------------------------------------------------ drawing

    def _line(self, text: str) -> None:
        """One line of user text, never read as markup."""
        if self.fancy:
            from rich.text import Text

            target = self.live.console if self.live is not None else self.console
            target.print(Text(text), soft_wrap=True)
        else:
            try:
                self.stream.write(clean(text) + "\n")
                self.stream.flush()  # a pipe reader (tail -f, CI log) sees each line as it happens
            except (OSError, ValueError):
                pass  # the reader went away; the run goes on and its outcome is its exit code

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._table())

    def _plain_row(self, sid: str, row: dict[str, Any]) -> str:
        r: StepResult | None = row.get("result")
        status = row.get("status", "pending")
        parts = [f"  {ICONS.get(status, '?')} {status:<15} {sid}"]
        if r is not None:
            parts.append(f"({format_duration(r.duration)})")
            if r.attempts > 1:
                parts.append(f"attempts={r.attempts}")
            if r.hosts is not None:
                ok = sum(1 for h in r.hosts.values() if h.status == "ok")
                parts.append(f"{ok}/{len(r.hosts)} hosts ok")
            if r.error and status != "ok":
                parts.append(f"- {_one_line(r.error)}")
            parts.extend(f"[{n}]" for n in r.notes)
            if status == "planned" and r.description:
                # a plan shows the whole action as it would run, line for line
                action = r.description.rstrip("\n").splitlines() or [""]
                if len(action) == 1 and len(action[0]) <= 100:
                    parts.insert(2, f"would run: {action[0]}")
                else:
                    return " ".join(parts) + "\n      would run:\n" + "\n".join(f"        {ln}" for ln in action)
        return " ".join(parts)

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        idw = max((len(sid) for sid in self.order), default=4)
        fixed = 2 + idw + 15 + 7 + 5 + 5 + 2 * 6  # the columns before detail, and their padding
        for col, width in (("", 1), ("step", idw), ("status", 15), ("time", 7), ("tries", 5), ("hosts", 5)):
            table.add_column(col, no_wrap=True, min_width=width)
        # the detail gets what is left of the line, cut with an ellipsis: one row per step
        table.add_column("detail", no_wrap=True, overflow="ellipsis",
                         max_width=max(20, self.console.width - fixed))
        for sid in self.order:
            row = self.rows[sid]
            status = row.get("status", "pending")
            r: StepResult | None = row.get("result")
            if r is not None:
                took = format_duration(r.duration)
            elif status == "running":
                took = format_duration(time.monotonic() - row.get("t0", time.monotonic()))
            else:
                took = ""
            hosts = ""
            if r is not None and r.hosts is not None:
                hosts = f"{sum(1 for h in r.hosts.values() if h.status == 'ok')}/{len(r.hosts)}"
            elif row.get("hosts"):
                hosts = str(row["hosts"])
            detail = row.get("note", "")
            if r is not None:
                if status == "planned" and r.description:
                    detail = _one_line(r.description)
                elif r.error:
                    detail = _one_line(r.error)
                elif r.notes:
                    detail = _one_line("; ".join(r.notes))
            style = STYLES.get(status, "")
            table.add_row(Text(ICONS.get(status, "?"), style=style), Text(sid), Text(status, style=style), took,
                          str(r.attempts) if r is not None and r.attempts > 1 else "", hosts, Text(detail))
        return table

    def _print(self, text: str, style: str | None = None) -> None:
        if self.fancy:
            from rich.text import Text

            self.console.print(Text(text, style=style or ""), soft_wrap=True)
        else:
            self._line(text)

    def summary(self, result: RunResult) -> None:
        counts: dict[str, int] = {}
        for s in result.steps.values():
            counts[s.status] = counts.get(s.status, 0) + 1
        if result.root_cause and result.root_cause in result.steps:
            self._failure_panel(result.steps[result.root_cause])
        elif result.error and result.status in ("refused", "interrupted") and result.error != result.status:
            self._print(f"{result.status}: {result.error}", "bold red")
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
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
                s = result.steps[sid]
                if s.rollback is not None and s.rollback.status != "ok":
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
            # a command's error repeats its last lines, shown below in full
            error = step.error.splitlines()[:1] if streams else step.error.splitlines()
            lines.append(f"error: {error[0] if error else ''}")
            lines.extend(f"  {ln}" for ln in error[1:])
        for name, text in streams:
            lines.append(f"last lines of {name}:")
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


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(clean(str(text)).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
