"""The commands that act again on a recorded run: resume (continue one that did not end ok)
and rollback (undo what it completed). The procedure and params come from the journal
(engine/replay.py); both refuse (exit 3) when the procedure changed since the run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, RefusedError
from .common import (
    EXIT_INVALID,
    OTEL_HELP,
    STATE_HELP,
    Parser,
    absolute_state,
    asker,
    console_sink,
    deliver,
    is_tty,
    no_empty_engine,
    print_problems,
    trace_sink,
)


def _replay_parser(verb: str, description: str) -> argparse.ArgumentParser:
    p = Parser(prog=f"runproc {verb}", description=description)
    p.add_argument("run", help="a run id, or its first characters (runproc runs lists them)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a param declared secret: true, again (the journal keeps only a hash of it)")
    p.add_argument("--params-file", help="secret params from a YAML or JSON file (-p wins)")
    p.add_argument("--yes", action="store_true",
                   help="roll back without asking, a step that was in flight when the runner stopped included"
                   if verb == "rollback" else "approve every confirm step, and run again a step that was in flight "
                   "when the runner stopped")
    p.add_argument("--rerun-inflight", action="store_true",
                   help="a step that was in flight when the runner stopped: "
                   + ("undo it too" if verb == "rollback" else "run it again")
                   + " (as --yes does, without --yes's other answers)")
    p.add_argument("--skip-inflight", action="store_true",
                   help="a step that was in flight when the runner stopped: "
                   + ("leave it as it is (do not undo it)" if verb == "rollback" else "treat it as done"))
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--otel", action="store_true", help=OTEL_HELP)
    p.add_argument("--engine", default=os.environ.get("RUNPROC_ENGINE") or None,
                   help="a run of a Temporal engine: temporal://HOST:PORT[/NAMESPACE] (default $RUNPROC_ENGINE); "
                        f"the {verb} is a new run there")
    return p


def _not_with_engine(verb: str, ns: argparse.Namespace, *flags: str) -> None:
    """Options of a local replay that mean nothing for a Temporal run: said, not ignored."""
    from ..errors import UsageError

    for flag in flags:
        if getattr(ns, {"--from": "from_step"}.get(flag, flag.lstrip("-").replace("-", "_")), None):
            why = ("a secret param does not run on the Temporal engine" if flag in ("--param", "--params-file")
                   else "not with --engine yet")
            raise UsageError(f"runproc {verb}: {flag} with --engine: {why}")


def _refuse_replay(verb: str, ns: argparse.Namespace, exc: Any) -> int:
    if ns.output == "json" and exc.exit_code == 3:
        print(json.dumps({"run_id": None, "of_run": ns.run, "kind": verb, "status": "refused", "exit_code": 3,
                          "error": str(exc), "steps": []}, indent=2))
    print(f"runproc {verb}: {'refused, nothing was run: ' if exc.exit_code == 3 else ''}{exc}", file=sys.stderr)
    return exc.exit_code


def _inflight(ns: argparse.Namespace) -> str:
    """What to do with a step that was in flight when the runner stopped: ask, again or skip
    (--skip-inflight wins over --yes, which also approves confirm steps or the rollback)."""
    return "skip" if ns.skip_inflight else "again" if ns.yes or ns.rerun_inflight else "ask"


def _terminal_confirm() -> Any:
    """A yes/no question on the terminal; None without one (the API then refuses, naming the flags)."""
    if not is_tty(sys.stdin):
        return None
    return asker(None, [])


def _params(ns: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """(params from --params-file, -p text): secret params given again."""
    from ..errors import ProcedureError
    from ..format.params import parse_cli_params, read_params_file

    try:
        given = parse_cli_params(ns.param)
        from_file = dict(read_params_file(ns.params_file)) if ns.params_file else {}
    except ProcedureError as exc:
        raise InvalidInputError("\n".join(str(p) for p in exc.problems)) from None
    return from_file, given


def _rollback(argv: list[str]) -> int:
    ns = _replay_parser("rollback", "Undo a recorded run: the rollback of each step it completed and that "
                                    "was not undone yet, most recent first, with the recorded results as "
                                    "steps.<id>. Refused (exit 3) if the procedure changed since the run. "
                                    "Exit 0 all undone, 4 an undo failed.").parse_args(argv)
    from .. import api
    from ..errors import ProcedureError

    ns.state = absolute_state(ns.state)

    def say(text: str) -> None:
        print(f"runproc rollback: {text}", file=sys.stderr)

    def confirm(question: str) -> bool:
        if ns.yes:
            return True
        if not is_tty(sys.stdin):
            raise RefusedError("no terminal to ask; give --yes to roll back")
        return bool(asker(None, [])(question))

    try:
        no_empty_engine(ns.engine)
        if ns.engine:
            _not_with_engine("rollback", ns, "--param", "--params-file")
            report, code = api.rollback_on_engine(ns.run, engine=ns.engine, confirm=confirm, say=say,
                                                  inflight=_inflight(ns))
        else:
            params, given = _params(ns)
            inflight = _inflight(ns)
            report, code = api.rollback_run(ns.run, params, cli_params=given, state=ns.state, confirm=confirm,
                                            say=say, handle_signals=True, inflight=inflight,
                                            on_event=trace_sink(ns, None))
    except ProcedureError as exc:
        print_problems(exc)
        return EXIT_INVALID
    except (InvalidInputError, RefusedError) as exc:
        return _refuse_replay("rollback", ns, exc)
    if report.get("run_id") is None:  # nothing to undo: said above
        return code
    if ns.output == "json":
        print(json.dumps(report, indent=2, default=str))
        return code
    steps = {s["id"]: s for s in report["steps"]}
    print(f"rollback of run {report['of_run']} ({report['procedure']}): {report['status']} (run {report['run_id']})")
    for sid in report["undo"]:
        undo = steps[sid].get("rollback") or {}
        line = f"  {sid}: {steps[sid]['status']}"
        if undo.get("error"):
            line += f": {undo['error']}"
        print(line)
    if report["kept"]:
        print(f"  kept (no rollback defined): {', '.join(report['kept'])}")
    if report["not_undone"]:
        print(f"  NOT undone: {', '.join(report['not_undone'])}: a person must look")
    return code


def _resume(argv: list[str]) -> int:
    p = _replay_parser("resume", "Continue a recorded run that did not end ok (typically one run with "
                                 "--no-rollback, after fixing the cause): the procedure runs again with the "
                                 "recorded params and options; steps recorded ok are not run again, their "
                                 "recorded results are steps.<id>. Refused (exit 3) if the procedure changed "
                                 "since, or if the run's steps were rolled back.")
    p.add_argument("--from", dest="from_step", metavar="STEP",
                   help="retry from STEP: it and every step that needs it run again, even if recorded ok "
                        "(a run that ended ok may be resumed so)")
    p.add_argument("--ignore-window", action="store_true", help="run outside the procedure's window")
    p.add_argument("--accept-new-hosts", action="store_true", help="accept and record unknown SSH host keys")
    p.add_argument("--known-hosts", metavar="FILE", help="SSH known_hosts file (default ~/.ssh/known_hosts)")
    p.add_argument("--report-dir", help="write report.json, junit.xml and step logs here")
    p.add_argument("-v", "--verbose", action="store_true", help="show step output as it arrives")
    ns = p.parse_args(argv)
    from .. import api
    from ..errors import ProcedureError
    from ..ui.logs import route_library_logs

    ns.state = absolute_state(ns.state)
    if ns.report_dir:
        ns.report_dir = str(Path(ns.report_dir).resolve())
    route_library_logs(verbose=ns.verbose)
    sink, ask, stop = console_sink(ns)
    no_empty_engine(ns.engine)
    if ns.engine:
        return _resume_on_engine(ns, sink)
    try:
        params, given = _params(ns)
        result = api.resume(ns.run, params, cli_params=given, on_event=sink, ask=ask, watch=stop,
                            inflight=_inflight(ns), confirm=_terminal_confirm(), from_step=ns.from_step,
                            say=lambda text: print(f"runproc resume: {text}", file=sys.stderr),
                            handle_signals=True, state=ns.state, yes=ns.yes, ignore_window=ns.ignore_window,
                            report_dir=ns.report_dir, accept_new_hosts=ns.accept_new_hosts,
                            known_hosts=ns.known_hosts)
    except ProcedureError as exc:
        print_problems(exc)
        return EXIT_INVALID
    except (InvalidInputError, RefusedError) as exc:
        return _refuse_replay("resume", ns, exc)
    deliver(result, ns)
    return int(result.exit_code)


def _resume_on_engine(ns: argparse.Namespace, sink: Any) -> int:
    import signal
    import threading

    from .. import api
    from ..distributed.events import run_result
    from .common import engine_interrupt, left_running

    try:
        _not_with_engine("resume", ns, "--param", "--params-file", "--report-dir", "--accept-new-hosts",
                         "--known-hosts", "--from")
        stop, leave = threading.Event(), threading.Event()
        report = api.resume_on_engine(ns.run, engine=ns.engine, yes=ns.yes, ignore_window=ns.ignore_window,
                                      on_event=sink, stop=stop, leave=leave,
                                      signals=lambda: signal.signal(signal.SIGINT, engine_interrupt(stop, leave)),
                                      say=lambda text: print(f"runproc resume: {text}", file=sys.stderr),
                                      inflight=_inflight(ns), confirm=_terminal_confirm())
    except RefusedError as exc:
        return _refuse_replay("resume", ns, exc)
    if report.get("detached"):
        return left_running(report, ns.engine)
    result = run_result(report)
    deliver(result, ns)
    return int(result.exit_code)


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"resume": _resume, "rollback": _rollback}
