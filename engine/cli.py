"""The command line: parse, call the library, map outcomes to exit codes.

Exit codes: 0 done; 1 a step failed and rollback completed; 2 invalid input; 3 refused before
any change; 4 rollback incomplete; 130 interrupted; 141 a listing command's reader went away
(``runproc runs | head``), as for ``git log | head``. Heavy modules are imported per command,
so ``runproc --version`` costs little more than starting Python.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import __version__

SUBCOMMANDS = ("validate", "graph", "schema", "list", "inventory", "runs", "show")
# commands that run something (not listings: their output is a run's, not a reader's)
RUN_COMMANDS = ("apply", "resume", "rollback")
EXIT_INVALID = 2
# 128 + SIGPIPE: what a shell reports for `git log | head` (git dies of the signal), so a
# pipeline under `set -o pipefail` behaves the same with runproc in it
EXIT_BROKEN_PIPE = 141


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # usage errors are exit 2, as for invalid input
        self.print_usage(sys.stderr)
        raise _UsageError(f"{self.prog}: error: {message}")


class _UsageError(Exception):
    pass


def _run_parser(prog: str = "runproc") -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description="Run a procedure (a YAML runbook), or plan it with --dry-run. "
                                       "`runproc run FILE` is the same as `runproc FILE`.",
                epilog=f"other commands: {', '.join((*SUBCOMMANDS, *RUN_COMMANDS))} (runproc COMMAND --help)")
    p.add_argument("file", help="the procedure file")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="set a param")
    p.add_argument("--params-file", help="params from a YAML or JSON file (-p wins)")
    p.add_argument("-i", "--inventory", help="Ansible inventory (overrides the procedure's)")
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
    return p


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    for stream in (sys.stdout, sys.stderr):
        # a command's output may hold anything; a C locale must not turn it into a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")
    if args and args[0] in ("--version", "-V"):
        print(f"runproc {__version__}")
        return 0
    try:
        if args and args[0] in SUBCOMMANDS:
            return _listing(args[0], args[1:])
        if args and args[0] == "apply":
            return _apply(args[1:])
        if args and args[0] == "resume":
            return _resume(args[1:])
        if args and args[0] == "rollback":
            return _rollback(args[1:])
        prog = "runproc"
        if args and args[0] == "run":  # `runproc run FILE` reads as other tools' `run` verbs do
            prog, args = "runproc run", args[1:]
        if not args or args[0] in ("-h", "--help"):
            _run_parser(prog).print_help()
            return 0 if args else EXIT_INVALID
        if _not_a_file(args[0]):
            return _unknown_command(args[0])
        return _run(_run_parser(prog).parse_args(args))
    except _UsageError as exc:
        print(exc, file=sys.stderr)
        return EXIT_INVALID
    except SystemExit as exc:  # argparse --help
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main_entry() -> None:
    try:
        code = main()
    except BrokenPipeError:  # a reader gone while a run wrote (the console itself copes)
        _silence_stdout()
        code = EXIT_BROKEN_PIPE
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):  # the reader went away; the exit code still tells
            stream.flush()
    # Tearing down the interpreter (freeing pydantic's and Jinja's module state) costs
    # 30-150 ms after the work is done and flushed; the console script skips it. main()
    # itself returns normally, for callers that embed the CLI.
    os._exit(code)


def _listing(name: str, argv: list[str]) -> int:
    """A command that prints for a reader: ``| head`` ends it quietly with 141, no traceback."""
    try:
        code = _subcommand(name, argv)
        sys.stdout.flush()  # the write that fails is often this one, for a short output
        return code
    except BrokenPipeError:
        _silence_stdout()  # else the interpreter's own last flush fails again, loudly
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


def _print_problems(exc: Any) -> None:
    for problem in exc.problems:
        print(str(problem), file=sys.stderr)


# ---------------------------------------------------------------- run


def _run(ns: argparse.Namespace) -> int:
    from .errors import ProcedureError
    from .loader import load
    from .params import parse_cli_params, read_params_file

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
        _print_problems(exc)
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


def _sink(ns: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """(event consumer, confirm asker or None, the list the asker watches for a stop event)."""
    sink: Any
    if ns.output == "text":
        from .console import ConsoleView

        sink = ConsoleView(verbose=ns.verbose)
    else:
        from .console import NoticeSink

        sink = NoticeSink()  # stdout carries the JSON document alone
    stop: list[Any] = []
    ask = _asker(sink, stop) if _is_tty(sys.stdin) else None
    return sink, ask, stop


def _check_run_options(ns: argparse.Namespace) -> None:
    """Options that would only fail after steps ran are invalid input now (exit 2)."""
    from .errors import Problem, ProcedureError

    problems = []
    if ns.forks is not None and ns.forks < 1:
        problems.append(Problem("--forks", 0, 0, f"must be at least 1, got {ns.forks}"))
    if ns.report_dir:
        try:
            Path(ns.report_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            problems.append(Problem("--report-dir", 0, 0, f"cannot create {ns.report_dir}: {exc.strerror}"))
    if ns.limit:
        from .inventory import InventoryError
        from .inventory.patterns import check_pattern

        try:
            check_pattern(ns.limit)
        except InventoryError as exc:
            problems.append(Problem("--limit", 0, 0, str(exc)))
    if problems:
        raise ProcedureError(problems)


def _execute(proc: Any, ns: argparse.Namespace, cli_params: dict[str, str], file_params: Any) -> int:
    from .runner import Run

    _check_run_options(ns)
    sink, ask, stop = _sink(ns)
    run = Run(proc, params=file_params, cli_params=cli_params, dry_run=ns.dry_run, offline=ns.offline,
              yes=ns.yes, no_rollback=ns.no_rollback, only=ns.only, limit=ns.limit, inventory=ns.inventory,
              state=ns.state, ignore_window=ns.ignore_window, on_event=sink, ask=ask,
              log_dir=Path(ns.report_dir) / "logs" if ns.report_dir else None, forks=ns.forks,
              accept_new_hosts=ns.accept_new_hosts, known_hosts=ns.known_hosts)
    stop.append(run.stop)
    if not run.dry_run:
        _capture_inputs(run, ns.inventory)
    fingerprint: Any = None
    if ns.save_plan is not None:
        from . import plans

        # hashed now, before the dry run, as close as can be to when the procedure was read
        inventory = str(Path(ns.inventory).resolve()) if ns.inventory else None
        fingerprint = (inventory, *plans.fingerprint(proc, inventory, run.namespace()))
    result = _drive(run, ns)
    if fingerprint is not None:
        return _save_plan(run, result, ns.save_plan, *fingerprint) or result.exit_code
    return result.exit_code


def _save_plan(run: Any, result: Any, path: str, inventory: str | None, files: dict[str, Any],
               warnings: list[str]) -> int:
    """Write the plan of a clean dry run; 0, or exit 2 when it cannot be written."""
    from . import plans

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


def _drive(run: Any, ns: argparse.Namespace) -> Any:
    """Execute a built run with the signals routed to it; write the report and the JSON."""
    import signal

    def on_signal(signum: int, frame: Any) -> None:
        run.interrupt()  # sets events and emits; the main thread only waits (see Run.execute)

    # SIGHUP too: a closed terminal or ssh session must not leave a change half done
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        result = run.execute()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if ns.report_dir:
        from .report import write_bundle

        try:
            write_bundle(result, ns.report_dir)
        except OSError as exc:  # the run is over: its outcome, not the report's, is the exit code
            print(f"runproc: could not write the report to {ns.report_dir}: {exc}", file=sys.stderr)
    if ns.output == "json":
        from .report import to_json_text

        try:
            sys.stdout.write(to_json_text(result) + "\n")
            sys.stdout.flush()
        except OSError:
            _silence_stdout()
    return result


def _capture_inputs(run: Any, inventory: str | None, cwd: str | None = None) -> None:
    """Record with a real run what `runproc resume/rollback RUN` will need (engine/replay.py)."""
    from . import replay

    inventory = str(Path(inventory).resolve()) if inventory else None
    try:
        run.journal_inputs = replay.capture(run, inventory, cwd or os.getcwd())
    except Exception as exc:  # noqa: BLE001 - the run itself must not fail for its history
        print(f"runproc: warning: run inputs not recorded (resume/rollback will refuse it): {exc}", file=sys.stderr)


# ---------------------------------------------------------------- resume and rollback


def _replay_parser(verb: str, description: str) -> argparse.ArgumentParser:
    p = _Parser(prog=f"runproc {verb}", description=description)
    p.add_argument("run", help="a run id, or its first characters (runproc runs lists them)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a param declared secret: true, again (the journal keeps only a hash of it)")
    p.add_argument("--params-file", help="secret params from a YAML or JSON file (-p wins)")
    p.add_argument("--yes", action="store_true",
                   help="roll back without asking" if verb == "rollback" else "approve every confirm step")
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("--state", help=_STATE_HELP)
    return p


def _replay_load(verb: str, ns: argparse.Namespace, journal: Any) -> Any:
    """The recorded run, checked; replay.Refused (with its exit code) when it cannot be replayed."""
    from . import replay
    from .errors import ProcedureError
    from .params import parse_cli_params, read_params_file

    try:
        given = parse_cli_params(ns.param)
        from_file = dict(read_params_file(ns.params_file)) if ns.params_file else {}
    except ProcedureError as exc:
        raise replay.Refused("\n".join(str(p) for p in exc.problems), EXIT_INVALID) from None
    from_file.update(given)
    return replay.load(journal, ns.run, verb, given, from_file)


def _refuse_replay(verb: str, ns: argparse.Namespace, exc: Any) -> int:
    if ns.output == "json" and exc.code == 3:
        print(json.dumps({"run_id": None, "of_run": ns.run, "kind": verb, "status": "refused", "exit_code": 3,
                          "error": str(exc), "steps": []}, indent=2))
    print(f"runproc {verb}: {'refused, nothing was run: ' if exc.code == 3 else ''}{exc}", file=sys.stderr)
    return int(exc.code)


def _rollback(argv: list[str]) -> int:
    ns = _replay_parser("rollback", "Undo a recorded run: the rollback of each step it completed and that "
                                    "was not undone yet, most recent first, with the recorded results as "
                                    "steps.<id>. Refused (exit 3) if the procedure changed since the run. "
                                    "Exit 0 all undone, 4 an undo failed.").parse_args(argv)
    from . import replay
    from .errors import ProcedureError
    from .journal import Journal

    ns.state = _absolute_state(ns.state)
    journal = Journal(ns.state)
    try:
        rec = _replay_load("rollback", ns, journal)
        plan = replay.undo_plan(rec)
    except replay.Refused as exc:
        return _refuse_replay("rollback", ns, exc)
    finally:
        journal.close()
    if not plan.undo:
        kept = f"; kept (no rollback defined): {', '.join(plan.kept)}" if plan.kept else ""
        print(f"runproc rollback: run {rec.run_id}: nothing to undo{kept}", file=sys.stderr)
        return 0
    print(f"runproc rollback: run {rec.run_id} ({rec.proc.procedure}): will undo {', '.join(plan.undo)} "
          "in this order" + (f"; kept (no rollback defined): {', '.join(plan.kept)}" if plan.kept else ""),
          file=sys.stderr)
    if not ns.yes:
        if not _is_tty(sys.stdin):
            print("runproc rollback: refused, nothing was run: no terminal to ask; give --yes to roll back",
                  file=sys.stderr)
            return 3
        if not _asker(None, [])("Roll back?"):
            print("runproc rollback: not confirmed: nothing was undone", file=sys.stderr)
            return 3
    import signal

    here = replay.chdir_to(rec)
    try:
        run = replay.build_run(rec, state=ns.state, yes=True)

        def on_signal(signum: int, frame: Any) -> None:
            run.rollback_cancel.set()  # the undo running is stopped; the others are listed not undone

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            report, code = replay.roll_back(rec, plan, run)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    except ProcedureError as exc:
        _print_problems(exc)
        return EXIT_INVALID
    except replay.Refused as exc:
        return _refuse_replay("rollback", ns, exc)
    finally:
        if here is not None:
            os.chdir(here)
    if ns.output == "json":
        print(json.dumps(report, indent=2, default=str))
        return code
    steps = {s["id"]: s for s in report["steps"]}
    print(f"rollback of run {rec.run_id} ({rec.proc.procedure}): {report['status']} (run {report['run_id']})")
    for sid in plan.undo:
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
    p.add_argument("--ignore-window", action="store_true", help="run outside the procedure's window")
    p.add_argument("--accept-new-hosts", action="store_true", help="accept and record unknown SSH host keys")
    p.add_argument("--known-hosts", metavar="FILE", help="SSH known_hosts file (default ~/.ssh/known_hosts)")
    p.add_argument("--report-dir", help="write report.json, junit.xml and step logs here")
    p.add_argument("-v", "--verbose", action="store_true", help="show step output as it arrives")
    ns = p.parse_args(argv)
    from . import replay
    from .errors import ProcedureError
    from .journal import Journal

    ns.state = _absolute_state(ns.state)
    if ns.report_dir:
        ns.report_dir = str(Path(ns.report_dir).resolve())
    journal = Journal(ns.state)
    try:
        rec = _replay_load("resume", ns, journal)
        done = replay.resume_steps(rec)
    except replay.Refused as exc:
        return _refuse_replay("resume", ns, exc)
    finally:
        journal.close()
    print(f"runproc resume: run {rec.run_id} ({rec.proc.procedure}): "
          f"{', '.join(done) if done else 'no step'} done before, not run again", file=sys.stderr)
    here = replay.chdir_to(rec)
    try:
        sink, ask, stop = _sink(ns)
        run = replay.build_run(rec, state=ns.state, yes=ns.yes, ignore_window=ns.ignore_window, on_event=sink,
                               ask=ask, log_dir=Path(ns.report_dir) / "logs" if ns.report_dir else None,
                               accept_new_hosts=ns.accept_new_hosts, known_hosts=ns.known_hosts, completed=done)
        stop.append(run.stop)
        run.journal_inputs = replay.inputs_of_replay(rec, "resume")
        result = _drive(run, ns)
    except ProcedureError as exc:
        _print_problems(exc)
        return EXIT_INVALID
    finally:
        if here is not None:
            os.chdir(here)
    return int(result.exit_code)


# ---------------------------------------------------------------- apply


def _apply_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="runproc apply",
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
    from . import plans
    from .errors import ProcedureError
    from .loader import load
    from .params import parse_cli_params, read_params_file

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
        state = _absolute_state(ns.state)
        sink, ask, stop = _sink(ns)
        from .runner import Run

        run = Run(proc, params=values, cli_params=given, yes=ns.yes, no_rollback=bool(options.get("no_rollback")),
                  only=options.get("only") or [], limit=options.get("limit"), inventory=options.get("inventory"),
                  state=state, ignore_window=ns.ignore_window, on_event=sink, ask=ask,
                  log_dir=Path(ns.report_dir).resolve() / "logs" if ns.report_dir else None,
                  forks=options.get("forks"), accept_new_hosts=ns.accept_new_hosts, known_hosts=ns.known_hosts,
                  expected_actions=plans.expected_actions(plan))
        stop.append(run.stop)
        _capture_inputs(run, options.get("inventory"), cwd=plan["cwd"])
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
        _print_problems(exc)
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
        result = _drive(run, ns)
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


def _absolute_state(url: str | None) -> str:
    """The state URL with an absolute path: apply may change directory before it is opened."""
    from .errors import ProcedureError
    from .journal import default_state_url, state_path

    url = url or default_state_url()
    try:
        return f"sqlite:///{state_path(url).expanduser().resolve()}"
    except ProcedureError:
        return url  # malformed: the run reports it as invalid input, in its own words


def _refuse_apply(ns: argparse.Namespace, plan: dict[str, Any], changes: list[Any]) -> int:
    """Exit 3 before anything ran, naming every difference (as text, or as the one JSON document)."""
    from .stepexec import now_iso

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


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _silence_stdout() -> None:
    """The reader of stdout went away (``| head``): exit quietly, as cat does."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _asker(view: Any, stop: list[Any]) -> Any:
    """Ask on the terminal; the prompt goes to stderr (as ``read -p``), stdout may be a report.

    It polls stdin so that an interrupt while a question waits ends the wait (the answer is
    then no): a thread blocked in ``input()`` could never be stopped.
    """
    import select

    def ask(message: str) -> bool:
        # the table so far stays on the screen above the question (the operator approves
        # having seen the checks), and a fresh live table follows the answer
        pause, resume = getattr(view, "pause", None), getattr(view, "resume", None)
        if pause is not None:
            pause()
        try:
            sys.stderr.write(f"{message} [y/N] ")
            sys.stderr.flush()
            while True:
                if stop and stop[0].is_set():
                    sys.stderr.write("\n")
                    return False
                readable, _, _ = select.select([sys.stdin], [], [], 0.2)
                if readable:
                    answer = sys.stdin.readline().strip().lower()
                    return answer in ("y", "yes")
        finally:
            if resume is not None:
                resume()
    return ask


# ---------------------------------------------------------------- subcommands


def _subcommand(name: str, argv: list[str]) -> int:
    import sqlite3

    command = {"validate": _validate, "graph": _graph, "schema": _schema, "list": _list,
               "inventory": _inventory, "runs": _runs, "show": _show}[name]
    try:
        return command(argv)
    except (OSError, sqlite3.Error) as exc:  # a state or file path that cannot be opened
        if isinstance(exc, BrokenPipeError):
            raise
        print(f"runproc {name}: {exc}", file=sys.stderr)
        return EXIT_INVALID


def _validate(argv: list[str]) -> int:
    p = _Parser(prog="runproc validate", description="Check procedures: schema, references, cycles, expressions.")
    p.add_argument("files", nargs="+")
    p.add_argument("--output", choices=("text", "json"), default="text")
    ns = p.parse_args(argv)
    from .errors import ProcedureError
    from .loader import load

    report = []
    bad = False
    for file in ns.files:
        try:
            proc = load(file)
            report.append({"file": file, "ok": True, "procedure": proc.procedure, "problems": []})
        except ProcedureError as exc:
            bad = True
            report.append({"file": file, "ok": False, "problems": [p.as_dict() for p in exc.problems]})
            if ns.output == "text":
                _print_problems(exc)
    if ns.output == "json":
        print(json.dumps({"ok": not bad, "files": report}, indent=2))
    elif not bad:
        for item in report:
            print(f"{item['file']}: ok ({item['procedure']})")
    return EXIT_INVALID if bad else 0


def _graph(argv: list[str]) -> int:
    p = _Parser(prog="runproc graph", description="Print the step DAG.")
    p.add_argument("file")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    ns = p.parse_args(argv)
    from . import graph
    from .errors import ProcedureError
    from .loader import load

    try:
        proc = load(ns.file)
    except ProcedureError as exc:
        _print_problems(exc)
        return EXIT_INVALID
    dag = graph.build(proc.steps)
    labels = {s.id: s.name or s.id for s in proc.steps}
    out = graph.to_dot(dag, labels, proc.procedure) if ns.format == "dot" else graph.to_mermaid(dag, labels)
    sys.stdout.write(out)
    return 0


def _schema(argv: list[str]) -> int:
    p = _Parser(prog="runproc schema", description="Print the JSON Schema of the procedure format.")
    p.parse_args(argv)
    from .schema import json_schema

    print(json.dumps(json_schema(), indent=2))
    return 0


def _list(argv: list[str]) -> int:
    p = _Parser(prog="runproc list",
                description="List procedures with file, description, owner and params: the *.yml and *.yaml "
                            "files of DIR and of its subfolders one level down (examples/local/*.yml).")
    p.add_argument("dir", nargs="?", help="the folder (default: ./procedures if it exists, else .)")
    p.add_argument("--output", choices=("text", "json"), default="text")
    ns = p.parse_args(argv)
    from .errors import ProcedureError
    from .loader import load

    folder = Path(ns.dir or ("procedures" if Path("procedures").is_dir() else "."))
    if not folder.is_dir():
        print(f"runproc list: {folder}: not a directory", file=sys.stderr)
        return EXIT_INVALID
    rows = []
    for path in _procedure_files(folder):
        try:
            proc = load(path)
            params = ", ".join(f"{n}{'*' if s.required else ''}:{s.type}" for n, s in proc.params.items())
            rows.append({"file": str(path), "procedure": proc.procedure, "description": proc.description or "",
                         "owner": proc.owner or "", "params": params, "ok": True})
        except ProcedureError as exc:
            rows.append({"file": str(path), "procedure": path.stem, "description": f"INVALID: {exc.problems[0]}",
                         "owner": "", "params": "", "ok": False})
    if ns.output == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not _is_tty(sys.stdout):
        _list_plain(rows)
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"procedures in {folder}")
    for col in ("file", "procedure", "description", "owner", "params"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(r["file"], r["procedure"], r["description"], r["owner"], r["params"])
    Console(no_color=bool(os.environ.get("NO_COLOR"))).print(table)
    return 0


def _procedure_files(folder: Path) -> list[Path]:
    """The folder's procedure files, then its subfolders' (one level: examples/local/*.yml).
    Hidden folders (.git, a procedure's .state) are not looked into."""
    def yaml_in(d: Path) -> list[Path]:
        return sorted([*d.glob("*.yml"), *d.glob("*.yaml")])

    files = yaml_in(folder)
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files += yaml_in(sub)
    return files


def _list_plain(rows: list[dict[str, Any]]) -> None:
    """For a pipe or a file: whole words, one line a procedure (grep finds it by file, name or
    owner), the description on an indented line below."""
    fw = max((len(r["file"]) for r in rows), default=0)
    nw = max((len(r["procedure"]) for r in rows), default=0)
    for r in rows:
        line = f"{r['file']:<{fw}}  {r['procedure']:<{nw}}"
        if r["owner"]:
            line += f"  owner: {r['owner']}"
        if r["params"]:
            line += f"  params: {r['params']}"
        print(line.rstrip())
        if r["description"]:
            print(f"    {' '.join(r['description'].split())}")


def _inventory(argv: list[str]) -> int:
    p = _Parser(prog="runproc inventory", description="Print an inventory as ansible-inventory does.")
    p.add_argument("-i", "--inventory", required=True)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--list", action="store_true")
    group.add_argument("--host")
    ns = p.parse_args(argv)
    from .inventory import InventoryError, load_inventory

    try:
        inv = load_inventory(ns.inventory)
        if ns.list:
            data = inv.to_ansible_list()
        else:
            if ns.host not in inv.hosts:
                print(f"runproc inventory: no host {ns.host!r} in {ns.inventory}", file=sys.stderr)
                return EXIT_INVALID
            data = inv.host_vars_json(ns.host)
    except InventoryError as exc:
        print(f"runproc inventory: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(json.dumps(data, indent=4, sort_keys=True, default=str))
    return 0


_STATE_HELP = "state URL (sqlite:///path); default $RUNPROC_STATE or the XDG state dir"


def _runs(argv: list[str]) -> int:
    p = _Parser(prog="runproc runs", description="List recorded runs, newest first.")
    p.add_argument("--state", help=_STATE_HELP)
    p.add_argument("--output", choices=("text", "json"), default="text")
    p.add_argument("-n", type=int, default=50, metavar="N", help="show the N newest runs (default 50)")
    ns = p.parse_args(argv)
    from .journal import Journal

    runs = Journal(ns.state).runs(ns.n)
    if ns.output == "json":
        print(json.dumps(runs, indent=2))
    else:
        for r in runs:
            dry = " (dry run)" if r["dry_run"] else ""
            print(f"{r['id']}  {r['started_at']}  {r['procedure']:<28} {r['status']}{dry}")
    return 0


def _show(argv: list[str]) -> int:
    p = _Parser(prog="runproc show", description="Show a recorded run: a summary, or its whole JSON report.")
    p.add_argument("run", help="a run id, or its first characters (runproc runs lists them)")
    p.add_argument("--state", help=_STATE_HELP)
    # default: text for a person at a terminal, the JSON report for a pipe (as before text
    # existed: `runproc show ID | jq` keeps working)
    p.add_argument("--output", choices=("text", "json"),
                   help="text: status, each step, root cause, what was not undone; json: the whole report "
                        "(default: text on a terminal, json when piped)")
    ns = p.parse_args(argv)
    from .journal import Journal

    report = Journal(ns.state).show(ns.run)
    if report is None:
        print(f"runproc show: no run {ns.run!r}", file=sys.stderr)
        return EXIT_INVALID
    if (ns.output or ("text" if _is_tty(sys.stdout) else "json")) == "json":
        print(json.dumps(report, indent=2))
    else:
        from .console import show_report

        show_report(report)
    return 0


if __name__ == "__main__":
    main_entry()
