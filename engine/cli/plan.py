"""The apply command: run exactly a plan saved by ``runproc FILE --dry-run --save-plan PLAN``.
Refused (exit 3) before anything runs when a file the plan fingerprinted changed; saving the
plan is part of the run path (engine/cli.py), the plan format is engine/plans.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import EXIT_INVALID, Parser, absolute_state, console_sink, drive, print_problems


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
    return p


def _apply(argv: list[str]) -> int:
    ns = _apply_parser().parse_args(argv)
    from ..errors import ProcedureError
    from ..format.loader import load
    from ..format.params import parse_cli_params, read_params_file
    from ..state import plans

    try:
        plan = plans.read(ns.plan)
    except plans.PlanError as exc:
        print(f"runproc apply: {exc}", file=sys.stderr)
        return EXIT_INVALID
    # the files first, from their bytes alone: an edited procedure may not even load any more
    changes = plans.changed_files(plan)
    if changes:
        return _refuse_apply(ns, plan, changes)
    options = plan["options"]
    try:
        proc = load(plan["procedure"]["path"])
        given = parse_cli_params(ns.param)
        from_file = dict(read_params_file(ns.params_file)) if ns.params_file else {}
        problem = _apply_params_problem(plan, proc, {*given, *from_file})
        if problem:
            print(f"runproc apply: {problem}", file=sys.stderr)
            return EXIT_INVALID
        # the plan's values as it resolved them (typed: JSON keeps them), then the secret ones again
        values = {k: v for k, v in plan["params"].items() if v is not None}
        values.update(from_file)
        state = absolute_state(ns.state)
        sink, ask, stop = console_sink(ns)
        from .. import api
        from ..execution.options import RunOptions

        chosen = RunOptions(yes=ns.yes, no_rollback=bool(options.get("no_rollback")),
                            only=tuple(options.get("only") or ()), limit=options.get("limit"),
                            inventory=options.get("inventory"), state=state, ignore_window=ns.ignore_window,
                            report_dir=str(Path(ns.report_dir).resolve()) if ns.report_dir else None,
                            forks=options.get("forks"), accept_new_hosts=ns.accept_new_hosts,
                            known_hosts=ns.known_hosts, expected_actions=plans.expected_actions(plan))
        run = api.prepare(proc, values, cli_params=given, options=chosen, on_event=sink, ask=ask, cwd=plan["cwd"])
        stop.append(run.stop)
        for name, stored in plan["secret_params"].items():
            value = run.params.get(name)
            same = value is None if stored is None else (value is not None and plans.secret_matches(stored, value))
            if not same:
                changes.append(plans.Change("param", name, None, None,
                                            "secret: not the value the plan was saved with"))
        # then what the procedure reads now: a templated inventory may point elsewhere, a new
        # host_vars file may have appeared
        now, _ = plans.fingerprint(proc, options.get("inventory"), run.namespace())
        changes += plans.diff_files(plan["files"], now)
    except ProcedureError as exc:
        print_problems(exc)
        return EXIT_INVALID
    if changes:
        return _refuse_apply(ns, plan, changes)
    fixed = plans.expected_actions(plan)
    print(f"runproc apply: {plan['procedure']['name']}, planned {plan.get('created_at', '?')} by "
          f"{plan.get('created_by', '?')}: {len(plan['files'])} files unchanged, {len(fixed)} actions held "
          "to the plan", file=sys.stderr)
    if ns.report_dir:
        ns.report_dir = str(Path(ns.report_dir).resolve())
    # the plan's actions were rendered in its folder (a child procedure's path is shown relative
    # to it): run from there, so that the same procedure renders the same actions
    here = os.getcwd()
    there = plan["cwd"]
    moved = there != here and Path(there).is_dir()
    if moved:
        os.chdir(there)
    try:
        result = drive(run, ns)
    finally:
        if moved:
            os.chdir(here)
    return int(result.exit_code)


def _apply_params_problem(plan: dict[str, Any], proc: Any, given: set[str]) -> str | None:
    secret = plan["secret_params"]
    fixed = sorted(n for n in given if n not in secret)
    if fixed and fixed[0] not in plan["params"]:
        return f"unknown param {fixed[0]!r}: the plan's procedure declares no such param"
    if fixed:
        return (f"param {fixed[0]!r} is fixed by the plan (it was planned with "
                f"{fixed[0]}={plan['params'].get(fixed[0])!r}); to change it, save a new plan. "
                "Only params declared secret: true are given again")
    for name, stored in secret.items():
        spec = proc.params.get(name)
        if stored is not None and name not in given and (spec is None or spec.default is None):
            return (f"param {name!r} is secret: the plan keeps only a hash of it; give it again with "
                    f"-p {name}=VALUE or --params-file")
    return None


def _refuse_apply(ns: argparse.Namespace, plan: dict[str, Any], changes: list[Any]) -> int:
    """Exit 3 before anything ran, naming every difference (as text, or as the one JSON document)."""
    from ..execution.step import now_iso

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
