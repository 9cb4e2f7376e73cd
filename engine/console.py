"""Rich rendering of run events: a live view on a terminal, plain lines elsewhere.

The console decides nothing: it only draws what the events say. Colour and the live view
are used only when stdout is a terminal and NO_COLOR is unset.
"""

from __future__ import annotations

import os
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


class ConsoleView:
    def __init__(self, stream: IO[str] | None = None, *, verbose: bool = False,
                 force_plain: bool = False) -> None:
        from rich.console import Console

        self.stream = stream or sys.stdout
        self.fancy = (not force_plain and self.stream.isatty() and not os.environ.get("NO_COLOR"))
        self.console = Console(file=self.stream, highlight=False, no_color=not self.fancy,
                               force_terminal=self.fancy, soft_wrap=not self.fancy)
        self.verbose = verbose
        self.rows: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.live: Any = None
        self.started = time.monotonic()
        self.dry_run = False

    # ------------------------------------------------------------ event sink

    def __call__(self, event: ev.Event) -> None:
        handler = getattr(self, "on_" + type(event).__name__, None)
        if handler is not None:
            handler(event)

    def on_RunStarted(self, e: ev.RunStarted) -> None:  # noqa: N802 - named after the event
        self.dry_run = e.dry_run
        self.order = [sid for sid, _ in e.steps]
        self.rows = {sid: {"name": name, "status": "pending", "note": ""} for sid, name in e.steps}
        mode = " (offline plan)" if e.offline else " (dry run)" if e.dry_run else ""
        self.console.print(f"[bold]{e.procedure}[/bold]{mode}  run {e.run_id}")
        if self.fancy:
            from rich.live import Live

            self.live = Live(self._table(), console=self.console, refresh_per_second=8, transient=True)
            self.live.start()

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
                self._line(prefix + line, markup=False)

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
        if not self.fancy and self.verbose:
            self._line(f"  retry {e.step_id}: attempt {e.attempt} failed: {e.error}", markup=False)

    def on_StepFinished(self, e: ev.StepFinished) -> None:  # noqa: N802
        r = e.result
        row = self.rows.setdefault(e.step_id, {"name": e.step_id})
        row.update(status=r.status, result=r)
        if not self.fancy:
            self._line(self._plain_row(e.step_id, row), markup=False)
        self._refresh()

    def on_RollbackStarted(self, e: ev.RollbackStarted) -> None:  # noqa: N802
        self._line(f"  rolling back {e.step_id} ...", markup=False)

    def on_RollbackFinished(self, e: ev.RollbackFinished) -> None:  # noqa: N802
        text = "undone" if e.ok else f"ROLLBACK FAILED: {e.error}"
        self._line(f"  rollback {e.step_id}: {text}", markup=False)

    def on_Interrupted(self, e: ev.Interrupted) -> None:  # noqa: N802
        self._line("  interrupted: stopping, then rolling back (Ctrl-C again to abandon rollbacks)")

    def on_Note(self, e: ev.Note) -> None:  # noqa: N802
        if e.level == "child" and not self.verbose:
            return
        self._line(f"  {e.level}: {e.text}", markup=False)

    def on_RunFinished(self, e: ev.RunFinished) -> None:  # noqa: N802
        if self.live is not None:
            self.live.stop()
            self.live = None
            from rich.console import Group

            self.console.print(Group(self._table()))
        self.summary(e.result)

    # ------------------------------------------------------------ drawing

    def _line(self, text: str, markup: bool = True) -> None:
        if self.live is not None:
            self.live.console.print(text, markup=markup, highlight=False)
        else:
            self.console.print(text, markup=markup, highlight=False)

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
            if status == "planned" and r.description:
                parts.append(f"would run: {_one_line(r.description)}")
            if r.error and status not in ("ok",):
                parts.append(f"- {_one_line(r.error)}")
            parts.extend(f"[{n}]" for n in r.notes)
        return " ".join(parts)

    def _table(self) -> Any:
        from rich.table import Table

        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for col in ("", "step", "status", "time", "tries", "hosts", "detail"):
            table.add_column(col)
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
            style = STYLES.get(status, "")
            table.add_row(f"[{style}]{ICONS.get(status, '?')}[/]", sid, f"[{style}]{status}[/]", took,
                          str(r.attempts) if r is not None and r.attempts > 1 else "", hosts, detail)
        return table

    def summary(self, result: RunResult) -> None:
        counts: dict[str, int] = {}
        for s in result.steps.values():
            counts[s.status] = counts.get(s.status, 0) + 1
        if result.root_cause and result.root_cause in result.steps:
            self._failure_panel(result.steps[result.root_cause])
        elif result.error and result.status in ("refused", "interrupted"):
            self.console.print(f"[bold red]{result.status}:[/] {result.error}", markup=self.fancy)
        tally = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        style = "green" if result.exit_code == 0 else "red"
        self.console.print(f"[{style}]{result.status}[/] (exit {result.exit_code}) in "
                           f"{format_duration(result.duration)}: {tally}")
        if result.rolled_back:
            self.console.print(f"rolled back: {', '.join(result.rolled_back)}")
        if result.not_undone:
            self.console.print(f"[bold red]NOT UNDONE[/] (a person must look): {', '.join(result.not_undone)}")
            for sid in result.not_undone:
                s = result.steps[sid]
                why = s.rollback.error if s.rollback else "; ".join(s.notes)
                self.console.print(f"  {sid}: {why}", markup=False)
        if result.kept:
            self.console.print(f"kept (no rollback defined): {', '.join(result.kept)}")

    def _failure_panel(self, step: StepResult) -> None:
        from rich.panel import Panel

        lines = [f"step: {step.id} ({step.status})"]
        if step.description:
            lines.append(f"action: {step.description}")
        if "rc" in step.fields:
            lines.append(f"exit code: {step.fields.get('rc')}")
        if step.error:
            lines.append(f"error: {step.error}")
        out = (step.fields.get("stderr") or "").strip() or (step.fields.get("stdout") or "").strip()
        if out:
            lines.append("last output:")
            lines.extend("  " + ln for ln in str(out).splitlines()[-10:])
        if step.hosts:
            for host, h in step.hosts.items():
                if h.status not in ("ok", "skipped"):
                    lines.append(f"host {host}: {h.status}: {_one_line(h.error or '')}")
        text = "\n".join(lines)
        if self.fancy:
            from rich.text import Text

            self.console.print(Panel(Text(text), title="root cause", border_style="red"))
        else:
            self.console.print("--- root cause ---\n" + text + "\n------------------", markup=False)


def _one_line(text: str, width: int = 100) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
