"""The commands that read the journal of past runs: runs (the list) and show (one run).
Neither changes anything; both open the state the runs were recorded in.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from .common import EXIT_INVALID, STATE_HELP, Parser, is_tty


def _runs(argv: list[str]) -> int:
    p = Parser(prog="runproc runs", description="List recorded runs, newest first.")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("-n", type=int, default=50, metavar="N", help="show the N newest runs (default 50)")
    ns = p.parse_args(argv)
    from ..state.opening import open_store

    runs = open_store(ns.state).runs(ns.n)
    if ns.output == "json":
        print(json.dumps(runs, indent=2))
    else:
        for r in runs:
            dry = " (dry run)" if r["dry_run"] else ""
            print(f"{r['id']}  {r['started_at']}  {r['procedure']:<28} {r['status']}{dry}")
    return 0


def _show(argv: list[str]) -> int:
    p = Parser(prog="runproc show", description="Show a recorded run: a summary, or its whole JSON report.")
    p.add_argument("run", help="a run id, or its first characters (runproc runs lists them)")
    p.add_argument("--state", help=STATE_HELP)
    # default: text for a person at a terminal, the JSON report for a pipe (as before text
    # existed: `runproc show ID | jq` keeps working)
    p.add_argument("--output", choices=("text", "json"),
                   help="text: status, each step, root cause, what was not undone; json: the whole report "
                        "(default: text on a terminal, json when piped)")
    ns = p.parse_args(argv)
    from ..state.opening import open_store

    report = open_store(ns.state).show(ns.run)
    if report is None:
        print(f"runproc show: no run {ns.run!r}", file=sys.stderr)
        return EXIT_INVALID
    if (ns.output or ("text" if is_tty(sys.stdout) else "json")) == "json":
        print(json.dumps(report, indent=2))
    else:
        from ..ui.recorded import show_report

        show_report(report)
    return 0


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"runs": _runs, "show": _show}
