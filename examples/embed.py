#!/usr/bin/env python3
"""Embed runproc in your own program: load a procedure, plan it, watch the events.

    python3 examples/embed.py                       # dry run of examples/quickstart.yml
    python3 examples/embed.py --run                 # really run it
    python3 examples/embed.py path/to/proc.yml -p version=2.0.0

The library prints nothing: everything the console shows arrives as typed events
(``engine.execution.events``) through ``on_event``, and the outcome is a ``RunResult``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import engine
from engine.execution import events as ev

HERE = Path(__file__).resolve().parent


def on_event(event: ev.Event) -> None:
    """Called from the runner's threads, one event at a time, as things happen."""
    if isinstance(event, ev.RunStarted):
        mode = "dry run" if event.dry_run else "run"
        print(f"> {event.procedure}: {mode} {event.run_id}, {len(event.steps)} steps")
    elif isinstance(event, ev.PreconditionChecked):
        print(f"  precondition {event.name}: {'ok' if event.ok else event.error}")
    elif isinstance(event, ev.StepStarted):
        print(f"  started  {event.step_id}")
    elif isinstance(event, ev.StepRetrying):
        print(f"  retrying {event.step_id} (attempt {event.attempt} failed: {event.error})")
    elif isinstance(event, ev.StepFinished):
        r = event.result
        detail = r.description if r.status == "planned" else (r.error or "")
        print(f"  {r.status:<8} {event.step_id}  {' '.join(str(detail).split())[:80]}")
    elif isinstance(event, ev.RollbackFinished):
        print(f"  rollback {event.step_id}: {'undone' if event.ok else event.error}")
    elif isinstance(event, ev.Note):
        print(f"  {event.level}: {event.text}")
    elif isinstance(event, ev.RunFinished):
        print(f"< {event.result.status} (exit {event.result.exit_code})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", nargs="?", default=str(HERE / "quickstart.yml"))
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--run", action="store_true", help="run for real instead of a dry run")
    args = p.parse_args(argv)

    try:
        proc = engine.load(args.file)  # every problem at once, each with file:line:col
    except engine.ProcedureError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2
    print(f"{proc.procedure}: {proc.description}")
    for name, spec in proc.params.items():
        print(f"  param {name} ({spec.type}, default {spec.default!r}): {spec.help or ''}")

    # params given as text are converted by their declared type, as -p does on the command line
    params = dict(item.split("=", 1) for item in args.param)
    try:
        result = engine.run(proc, cli_params=params, dry_run=not args.run, on_event=on_event, journal=False)
    except engine.ProcedureError as exc:  # a bad param value: nothing ran
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return 2

    print("\nfinal statuses:")
    for step_id, step in result.steps.items():
        print(f"  {step_id:<10} {step.status:<12} attempts={step.attempts}")
    print(f"ok={result.ok} status={result.status} exit_code={result.exit_code}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
