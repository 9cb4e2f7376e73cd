"""The apply command: run exactly a plan saved by ``runproc FILE --dry-run --save-plan PLAN``.
Refused (exit 3) before anything runs when a file the plan fingerprinted changed; saving the
plan is part of the run path (engine/cli.py), the plan format is engine/plans.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import EXIT_INVALID, OTEL_HELP, Parser, absolute_state, console_sink, deliver, print_problems


def _apply_parser() -> argparse.ArgumentParser:
    p = Parser(prog="runproc apply",
                description="Run exactly a plan saved by `runproc FILE --dry-run --save-plan PLAN`, with its "
                            "params and options. Refused (exit 3) before anything runs if the procedure, a "
                            "child procedure or the inventory changed since; a step whose action would now "
                            "render otherwise than planned fails before it executes.")
    p.add_argument("plan", help="the plan file")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a param declared secret: true, again (the plan keeps only a hash of it); "
                        "other params are the plan's")
    p.add_argument("--params-file", help="secret params from a YAML or JSON file (-p wins)")
    p.add_argument("--yes", action="store_true", help="approve every confirm step")
    p.add_argument("--ignore-window", action="store_true", help="run outside the procedure's window")
    p.add_argument("--accept-new-hosts", action="store_true", help="accept and record unknown SSH host keys")
    p.add_argument("--known-hosts", metavar="FILE", help="SSH known_hosts file (default ~/.ssh/known_hosts)")
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--state", help="state URL (sqlite:///path); default $RUNPROC_STATE or XDG state dir")
    p.add_argument("--report-dir", help="write report.json, junit.xml and step logs here")
    p.add_argument("-v", "--verbose", action="store_true", help="show step output as it arrives")
    p.add_argument("--otel", action="store_true", help=OTEL_HELP)
    return p


def _apply(argv: list[str]) -> int:
    ns = _apply_parser().parse_args(argv)
    from .. import api
    from ..errors import ProcedureError
    from ..format.params import parse_cli_params, read_params_file
    from ..state import plans
    from ..ui.logs import route_library_logs

    route_library_logs(verbose=ns.verbose)
    if ns.report_dir:
        ns.report_dir = str(Path(ns.report_dir).resolve())
    sink, ask, stop = console_sink(ns)
    try:
        given = parse_cli_params(ns.param)
        from_file = dict(read_params_file(ns.params_file)) if ns.params_file else {}
        result = api.apply(ns.plan, from_file, cli_params=given, on_event=sink, ask=ask, watch=stop,
                           say=lambda text: print(f"runproc apply: {text}", file=sys.stderr), handle_signals=True,
                           state=absolute_state(ns.state), yes=ns.yes, ignore_window=ns.ignore_window,
                           report_dir=ns.report_dir, accept_new_hosts=ns.accept_new_hosts,
                           known_hosts=ns.known_hosts)
    except plans.PlanError as exc:
        print(f"runproc apply: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except api.PlanChanged as exc:
        return _refuse_apply(ns, exc.plan, exc.changes)
    except ProcedureError as exc:
        if len(exc.problems) == 1 and exc.problems[0].file == ns.plan and not exc.problems[0].line:
            print(f"runproc apply: {exc.problems[0].message}", file=sys.stderr)
        else:
            print_problems(exc)
        return EXIT_INVALID
    deliver(result, ns)
    return int(result.exit_code)


def _refuse_apply(ns: argparse.Namespace, plan: dict[str, Any], changes: list[Any]) -> int:
    """Exit 3 before anything ran, naming every difference (as text, or as the one JSON document)."""
    from ..execution.journal import now_iso

    proc = plan["procedure"]
    error = f"the plan no longer matches: {len(changes)} difference(s) since it was saved"
    if ns.output == "json":
        doc = {"procedure": proc.get("name"), "run_id": None, "status": "refused", "exit_code": 3,
               "dry_run": False, "started_at": now_iso(), "duration": 0.0, "error": error,
               "plan": str(ns.plan), "changes": [c.as_dict() for c in changes], "steps": []}
        print(json.dumps(doc, indent=2))
    else:
        print(f"runproc apply: refused, nothing was run: {error}:", file=sys.stderr)
    for change in changes:
        print(f"  {change}", file=sys.stderr)
    print(f"save a new plan: runproc {proc.get('path')} --dry-run --save-plan {ns.plan} ...", file=sys.stderr)
    return 3


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"apply": _apply}
