"""What the console shows, as text: icons and styles, escape-free text, the cells of a row."""

from __future__ import annotations

import os
import re
import time
from typing import IO, Any

from ..execution.results import StepResult
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
KEPT_NOTES = ("no rollback defined", "not rolled back")
# the runner's forwarded child step, before it sent StepFinished events: "child-name/step: status"
CHILD_NOTE = re.compile(r"^(?P<sid>[^\s/]+/\S+): (?P<status>[a-z_]+)$")
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


def settled(row: dict[str, Any]) -> bool:
    return row.get("status") not in ("pending", "running") and not row.get("undoing")


def status_of(row: dict[str, Any]) -> str:
    return "rolling back" if row.get("undoing") else str(row.get("status", "pending"))


def label_of(sid: str, row: dict[str, Any]) -> str:
    return str(row.get("label") or sid)


def took(row: dict[str, Any]) -> str:
    r: StepResult | None = row.get("result")
    if row.get("undoing") or (r is None and row.get("status") == "running"):
        return format_duration(time.monotonic() - row.get("t0", time.monotonic()))
    return format_duration(r.duration) if r is not None else ""


def tries_cell(row: dict[str, Any]) -> str:
    r: StepResult | None = row.get("result")
    if r is not None:
        return str(r.attempts) if r.attempts > 1 else ""
    return str(row["attempt"]) if row.get("status") == "running" and row.get("attempt") else ""


def hosts_cell(row: dict[str, Any]) -> str:
    r: StepResult | None = row.get("result")
    if r is not None and r.hosts is not None:
        if r.status == "planned":
            return f"{len(r.hosts)} planned"
        return f"{sum(1 for h in r.hosts.values() if h.status == 'ok')}/{len(r.hosts)}"
    return str(row["hosts"]) if row.get("hosts") else ""


def hosts_text(r: StepResult) -> str:
    """A fanned-out step's hosts in words: ``16 hosts planned`` in a plan, ``3/4 hosts ok`` after a run
    (a loop's iterations likewise: ``2/3 iterations ok``)."""
    assert r.hosts is not None
    n = len(r.hosts)
    word = unit_of(r)
    planned = sum(1 for h in r.hosts.values() if h.status == "planned")
    if r.status == "planned" or (planned and planned == n):
        return f"{n} {word}{'s' if n != 1 else ''} planned"
    ok = sum(1 for h in r.hosts.values() if h.status == "ok")
    return f"{ok}/{n} {word}s ok"


def unit_of(r: StepResult) -> str:
    """What a step's ``hosts`` entries are: a fan-out's hosts or a loop's iterations."""
    return "iteration" if r.loop else "host"


ITERATIONS_SHOWN = 20  # a loop's iterations listed under its row; the rest are counted


def iteration_lines(r: StepResult, pad: str) -> list[str]:
    """A loop's iterations one per line under its row: status, label, and its planned action
    or its error."""
    if not r.loop or not r.hosts:
        return []
    out: list[str] = []
    for label, h in list(r.hosts.items())[:ITERATIONS_SHOWN]:
        line = f"{pad}{ICONS.get(h.status, '?')} {h.status:<11} {label}"
        action = h.description.rstrip("\n").splitlines() if h.status == "planned" and h.description else []
        if len(action) == 1 and len(action[0]) <= 100:
            line += f": would run: {action[0]}"
        elif action:  # as a step's plan shows it: line for line (joined, an if/fi read as one command)
            out.append(f"{line}: would run:")
            out.extend(f"{pad}    {ln}" for ln in action)
            continue
        elif h.error and h.status != "ok":
            line += f": {one_line(h.error, 200)}"
        out.append(line)
    if len(r.hosts) > ITERATIONS_SHOWN:
        out.append(f"{pad}... and {len(r.hosts) - ITERATIONS_SHOWN} more iterations")
    return out


def detail(row: dict[str, Any]) -> str:
    r: StepResult | None = row.get("result")
    if row.get("undoing"):
        return "running its rollback"
    if r is None or row.get("status") == "running":
        return str(row.get("note") or row.get("last") or "")
    if r.rollback is not None and r.rollback.status != "ok":
        return f"rollback failed: {first_line(r.rollback.error or '')}"
    if r.status == "planned" and r.description:
        return one_line(r.description, 500)
    if r.error and r.status != "ok":
        return first_line(r.error)  # the command's last output is in the root cause panel
    notes = [n for n in r.notes if not n.startswith(KEPT_NOTES)]  # the summary lists kept steps
    return one_line("; ".join(notes), 500)


def error_lines(r: StepResult, pad: str) -> list[str]:
    """A failed step's error under its row: the whole first line, then what the command said."""
    lines = clean(r.error or "").strip("\n").splitlines() or [""]
    out = [f"{pad}error: {lines[0]}"]
    if len(lines) > 1:
        if "rc" in r.fields:  # a command's error is its exit code, then its last output lines
            stream = "stderr" if str(r.fields.get("stderr") or "").strip() else "stdout"
            out.append(f"{pad}last output ({stream}):")
        out.extend(f"{pad}  {ln}" for ln in lines[1:])
    return out


def first_line(text: str) -> str:
    lines = clean(str(text)).strip().splitlines()
    return one_line(lines[0], 500) if lines else ""


def one_line(text: str, width: int = 100) -> str:
    flat = " ".join(clean(str(text)).split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
