"""The command line: parse, call the library, map outcomes to exit codes.

Exit codes: 0 done; 1 a step failed and rollback completed; 2 invalid input; 3 refused before
any change; 4 rollback incomplete; 70 an internal error (a bug: one line and a crash file with
the traceback); 130 interrupted; 141 a listing command's reader went away
(``runproc runs | head``), as for ``git log | head``. Heavy modules are imported per command,
so ``runproc --version`` costs little more than starting Python.

This module is the entry point and the run path (``runproc FILE``); the other commands live in
``engine.cli`` (one module per group) and are imported only when named, which is what
keeps ``--version`` and ``validate`` from paying for the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..version import describe
from .common import (
    EXIT_BROKEN_PIPE,
    EXIT_INTERNAL,
    EXIT_INVALID,
    OTEL_HELP,
    Parser,
    console_sink,
    crashed,
    deliver,
    drive,
    no_empty_engine,
    print_problems,
    silence_stdout,
)

SUBCOMMANDS = ("validate", "graph", "schema", "list", "inventory", "runs", "show", "locks", "unlock", "prune",
               "state", "schedule")
# commands that run something (not listings: their output is a run's, not a reader's)
RUN_COMMANDS = ("apply", "resume", "rollback", "worker", "approve", "serve", "scheduler")
# the engine.cli module of each command: imported on use, so a command pays only for its own
_COMMAND_MODULES = {"validate": "inspect", "graph": "inspect", "schema": "inspect", "list": "inspect",
                    "inventory": "inspect", "runs": "history", "show": "history", "apply": "plan",
                    "resume": "replay", "rollback": "replay", "locks": "locks", "unlock": "locks",
                    "prune": "upkeep", "state": "upkeep", "worker": "distributed", "approve": "distributed",
                    "serve": "serve", "schedule": "schedule", "scheduler": "schedule"}
# starting out (docs/install.md): a starter procedure, and the shell's completion code
SUBCOMMANDS += ("init", "completion")
_COMMAND_MODULES.update({"init": "scaffold", "completion": "completion"})
# bringing what operators have: runproc import ansible|shell FILE (docs/import.md)
SUBCOMMANDS += ("import",)
_COMMAND_MODULES["import"] = "importing"
# re-exported: embedders and older callers read the exit codes here
__all__ = ["EXIT_BROKEN_PIPE", "EXIT_INTERNAL", "EXIT_INVALID", "RUN_COMMANDS", "SUBCOMMANDS", "main", "main_entry"]


def _run_parser(prog: str = "runproc") -> argparse.ArgumentParser:
    p = Parser(prog=prog, description="Run a procedure (a YAML runbook), or plan it with --dry-run. "
                                       "`runproc run FILE` is the same as `runproc FILE`.",
                epilog=f"other commands: {', '.join((*SUBCOMMANDS, *RUN_COMMANDS))} (runproc COMMAND --help)")
    p.add_argument("file", help="the procedure file")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a param")
    p.add_argument("--params-file", help="params from a YAML or JSON file (-p wins)")
    p.add_argument("-i", "--inventory", default=os.environ.get("RUNPROC_INVENTORY") or None,
                   help="Ansible inventory (overrides the procedure's); default $RUNPROC_INVENTORY")
    p.add_argument("--limit", help="restrict fanned-out steps to hosts matching this pattern")
    p.add_argument("--forks", type=int, help="hosts at a time in fanned-out steps (default 20)")
    p.add_argument("--accept-new-hosts", action="store_true", help="accept and record unknown SSH host keys")
    p.add_argument("--known-hosts", metavar="FILE",
                   help="SSH known_hosts file (default ~/.ssh/known_hosts; an inventory's "
                        "ansible_ssh_known_hosts_file wins)")
    p.add_argument("--dry-run", action="store_true", help="run checks and readonly steps; show the rest")
    p.add_argument("--offline", action="store_true", help="with --dry-run: plan only, connect to nothing")
    p.add_argument("--yes", action="store_true", help="approve every confirm step")
    p.add_argument("--no-rollback", action="store_true", help="on failure, do not roll back")
    p.add_argument("--only", action="append", default=[], metavar="ID", help="run only these steps")
    p.add_argument("--ignore-window", action="store_true", help="run outside the procedure's window")
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--state", help="state URL (sqlite:///path); default $RUNPROC_STATE or XDG state dir")
    p.add_argument("--report-dir", help="write report.json, junit.xml and step logs here")
    p.add_argument("--save-plan", metavar="PLAN",
                   help="with --dry-run: save the plan to PLAN (JSON), to run later with runproc apply PLAN")
    p.add_argument("-v", "--verbose", action="store_true", help="show step output as it arrives")
    p.add_argument("--otel", action="store_true", help=OTEL_HELP)
    p.add_argument("--engine", default=os.environ.get("RUNPROC_ENGINE") or None,
                   help="run on Temporal: temporal://HOST:PORT[/NAMESPACE] (default $RUNPROC_ENGINE; none: here)")
    p.add_argument("--detach", action="store_true", help="with --engine: print the run id and return")
    p.add_argument("--queue", default=os.environ.get("RUNPROC_QUEUE") or None,
                   help="with --engine: the default task queue (default $RUNPROC_QUEUE or runproc)")
    p.add_argument("--schedule-to-start", type=float, default=60.0, metavar="SECONDS",
                   help="with --engine: how long a step may wait for a worker on its queue (default 60)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` names and return its exit code (never raises SystemExit: embeddable)."""
    args = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        # a command's output may hold anything; a C locale must not turn it into a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    if args and args[0] in ("--version", "-V"):
        print(f"runproc {describe()}")
        return 0
    # after the version: engine.errors imports dataclasses, ~10 ms that --version need not pay
    from ..errors import ProcedureError, RunprocError, UsageError, exit_code_for

    try:
        if args and args[0] in SUBCOMMANDS:
            return _listing(args[0], args[1:])
        if args and args[0] in RUN_COMMANDS:
            return _command(args[0])(args[1:])
        prog = "runproc"
        if args and args[0] == "run":  # `runproc run FILE` reads as other tools' `run` verbs do
            prog, args = "runproc run", args[1:]
        if not args or args[0] in ("-h", "--help"):
            _run_parser(prog).print_help()
            return 0 if args else EXIT_INVALID
        if _not_a_file(args[0]):
            return _unknown_command(args[0])
        return _run(_run_parser(prog).parse_args(args))
    # exit codes by class, in this one place (engine/errors.py groups them by what to do)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return exc.exit_code
    except ProcedureError as exc:  # invalid input met by any command: a bad --state, a file
        print_problems(exc)
        return exc.exit_code
    except RunprocError as exc:
        print(f"runproc: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except SystemExit as exc:  # argparse --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main_entry() -> None:
    """The command run here (cold): main() on sys.argv, then exit without interpreter teardown.
    The console script is engine.cli.main_entry, which tries a warm server first."""
    # the shell asks for completions (runproc completion SHELL); both variables, so that a stray
    # _ARGCOMPLETE left in someone's environment does not turn every command into a silent exit
    if "_ARGCOMPLETE" in os.environ and "COMP_LINE" in os.environ:
        from .completion import complete

        complete()  # answers and exits
    os._exit(run_command(sys.argv[1:]))


# set by run_command: this process ends with the command (the console script, a warm
# start's child), so what it loaded may be frozen out of the garbage collector's passes
_ENDS_WITH_COMMAND = False


def run_command(argv: list[str]) -> int:
    """main() as the console script runs it: a crash is one line, output flushed at the end."""
    global _ENDS_WITH_COMMAND
    _ENDS_WITH_COMMAND = True
    try:
        code = main(argv)
    except BrokenPipeError:  # a reader gone while a run wrote (the console itself copes)
        silence_stdout()
        code = EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - the last resort: no user ever sees a raw traceback
        code = crashed(exc)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # the reader went away; the exit code still tells
            stream.flush()
    # The caller then ends with os._exit: tearing down the interpreter (freeing pydantic's and
    # Jinja's module state) costs 30-150 ms after the work is done and flushed. main() itself
    # returns normally, for callers that embed the CLI.
    return code


def _listing(name: str, argv: list[str]) -> int:
    """A command that prints for a reader: ``| head`` ends it quietly with 141, no traceback."""
    try:
        code = _subcommand(name, argv)
        sys.stdout.flush()  # the write that fails is often this one, for a short output
        return code
    except BrokenPipeError:
        silence_stdout()  # else the interpreter's own last flush fails again, loudly
        return EXIT_BROKEN_PIPE


def _not_a_file(word: str) -> bool:
    """A first word that is no option, no existing path and does not look like a file name:
    a mistyped command (``runproc lsit``) rather than a procedure that cannot be found."""
    return (not word.startswith("-") and "/" not in word and not Path(word).exists()
            and not word.endswith((".yml", ".yaml", ".json")))


def _unknown_command(word: str) -> int:
    import difflib

    commands = ("run", *SUBCOMMANDS, *RUN_COMMANDS)
    close = difflib.get_close_matches(word, commands, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    print(f"runproc: {word!r} is not a command or a file{hint}\n"
          f"commands: {', '.join(commands)}; runproc FILE runs a procedure (runproc --help)", file=sys.stderr)
    return EXIT_INVALID


def _command(name: str) -> Callable[[list[str]], int]:
    """The function of command ``name``, its module imported now and not at startup."""
    module = importlib.import_module(f".{_COMMAND_MODULES[name]}", __package__)
    command: Callable[[list[str]], int] = module.COMMANDS[name]
    return command


# ---------------------------------------------------------------- run


def _run(ns: argparse.Namespace) -> int:
    """``runproc FILE``: load the procedure and its params, then execute (or plan) it."""
    from ..api import load
    from ..errors import ProcedureError
    from ..format.params import parse_cli_params, read_params_file

    if ns.offline:
        ns.dry_run = True
    if ns.save_plan is not None:
        problem = _save_plan_problem(ns)
        if problem:
            print(f"runproc: --save-plan: {problem}", file=sys.stderr)
            return EXIT_INVALID
    try:
        proc = load(ns.file)
        cli_params = parse_cli_params(ns.param)
        file_params = read_params_file(ns.params_file) if ns.params_file else None
        return _execute(proc, ns, cli_params, file_params)
    except ProcedureError as exc:
        print_problems(exc)
        return EXIT_INVALID


def _save_plan_problem(ns: argparse.Namespace) -> str | None:
    """Why ``--save-plan`` cannot be honoured, found before a long dry run rather than after it."""
    if not ns.dry_run:
        return ("needs --dry-run: a plan is what a dry run shows (runproc FILE --dry-run --save-plan PLAN, "
                "then runproc apply PLAN)")
    folder = Path(ns.save_plan).parent
    if not folder.is_dir():
        return f"{ns.save_plan}: folder {folder} does not exist"
    if Path(ns.save_plan).is_dir():
        return f"{ns.save_plan} is a directory"
    return None


def _options(ns: argparse.Namespace) -> Any:
    """The command line's choices as one RunOptions: checked now (exit 2), before anything runs."""
    from ..execution.options import RunOptions

    return RunOptions(dry_run=ns.dry_run, offline=ns.offline, yes=ns.yes, no_rollback=ns.no_rollback,
                      only=tuple(ns.only or ()), limit=ns.limit, inventory=ns.inventory, state=ns.state,
                      ignore_window=ns.ignore_window, report_dir=ns.report_dir, forks=ns.forks,
                      accept_new_hosts=ns.accept_new_hosts, known_hosts=ns.known_hosts)


def _execute(proc: Any, ns: argparse.Namespace, cli_params: dict[str, str], file_params: Any) -> int:
    from .. import api

    no_empty_engine(ns.engine)
    if ns.engine:
        return _execute_on_engine(proc, ns, cli_params, file_params)

    options = _options(ns)
    sink, ask, stop = console_sink(ns)
    run = api.prepare(proc, file_params, cli_params=cli_params, options=options, on_event=sink, ask=ask)
    stop.append(run.stop)
    if _ENDS_WITH_COMMAND:
        import gc

        # the loaded procedure lives until the process ends: the collector's full passes
        # during the run would walk it again and again (~30 ms each at 1,000 steps, more as
        # results grow). Only where the process ends with the command: in an embedding
        # process frozen objects would never be collected.
        gc.freeze()
    fingerprint: Any = None
    if ns.save_plan is not None:
        from ..state import fingerprints

        # hashed now, before the dry run, as close as can be to when the procedure was read
        inventory = str(Path(ns.inventory).resolve()) if ns.inventory else None
        fingerprint = (inventory, *fingerprints.fingerprint(proc, inventory, run.namespace()))
    result = drive(run, ns)
    if fingerprint is not None:
        return _save_plan(run, result, ns.save_plan, *fingerprint) or result.exit_code
    return result.exit_code


def _execute_on_engine(proc: Any, ns: argparse.Namespace, cli_params: dict[str, str], file_params: Any) -> int:
    """``--engine temporal://…``: validated here, run by the workflow and the workers, followed here."""
    import signal
    import threading

    from .. import api
    from ..errors import UsageError
    from .common import engine_interrupt, left_running

    for flag, given in (("--offline", ns.offline), ("--save-plan", ns.save_plan), ("--only", ns.only)):
        if given:
            raise UsageError(f"runproc: {flag} does not work with --engine yet")
    if ns.detach and ns.dry_run:
        raise UsageError("runproc: --detach with --dry-run: a plan is read as it is made; drop --detach")
    sink = console_sink(ns)[0]
    if hasattr(sink, "bind_procedure"):  # traced (--otel): the spans name each step's executor
        sink.bind_procedure(proc)
    report = api.run_on_engine(proc, file_params, cli_params=cli_params, engine=ns.engine, dry_run=ns.dry_run,
                               yes=ns.yes, no_rollback=ns.no_rollback, queue=ns.queue,
                               schedule_to_start=ns.schedule_to_start, detach=ns.detach,
                               ignore_window=ns.ignore_window, inventory=ns.inventory, limit=ns.limit,
                               forks=ns.forks, accept_new_hosts=ns.accept_new_hosts, known_hosts=ns.known_hosts,
                               on_event=sink, stop=(stop := threading.Event()),
                               leave=(leave := threading.Event()),
                               signals=lambda: signal.signal(signal.SIGINT, engine_interrupt(stop, leave)))
    if ns.detach:
        print(report["run_id"])
        return 0
    if report.get("detached"):
        return left_running(report, ns.engine)
    from ..distributed.events import run_result

    result = run_result(report)
    deliver(result, ns)
    return int(result.exit_code)


def _save_plan(run: Any, result: Any, path: str, inventory: str | None, files: dict[str, Any],
               warnings: list[str]) -> int:
    """Write the plan of a clean dry run; 0, or exit 2 when it cannot be written."""
    from ..state import plans

    if result.exit_code != 0:
        # a plan that failed or was refused is not a plan anyone should apply
        print(f"runproc: plan not saved to {path}: the dry run ended {result.status} (exit {result.exit_code}); "
              "fix that and plan again", file=sys.stderr)
        return 0
    plan = plans.build(run, result, inventory=inventory, files=files, warnings=warnings, cwd=os.getcwd())
    try:
        plans.write(path, plan)
    except OSError as exc:
        print(f"runproc: plan not saved to {path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    for warning in warnings:
        print(f"runproc: warning: {warning}", file=sys.stderr)
    fixed = plans.expected_actions(plan)
    loose = _not_fixed(plan["steps"])
    shown = f"; known only at run time (not compared): {', '.join(loose)}" if loose else ""
    print(f"runproc: plan saved to {path}: {len(files)} files fingerprinted, {len(fixed)} actions fixed{shown}. "
          f"Run it with: runproc apply {path}", file=sys.stderr)
    return 0


def _not_fixed(entries: list[dict[str, Any]], prefix: str = "") -> list[str]:
    """Ids of planned steps whose action apply cannot hold to the plan (child steps as parent/child)."""
    out = []
    for e in entries:
        key = prefix + e["id"]
        if e.get("not_fixed") and e.get("phase") != "on_failure" and e.get("status") != "skipped":
            out.append(key)
        out += _not_fixed(e.get("steps") or [], key + "/")
    return out


# ---------------------------------------------------------------- listing commands


def _subcommand(name: str, argv: list[str]) -> int:
    """A listing command, with a state or file that cannot be opened reported as invalid input."""
    import sqlite3

    command = _command(name)
    try:
        return command(argv)
    except (OSError, sqlite3.Error) as exc:  # a state or file path that cannot be opened
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"runproc {name}: {exc}", file=sys.stderr)
        return EXIT_INVALID


if __name__ == "__main__":
    main_entry()
