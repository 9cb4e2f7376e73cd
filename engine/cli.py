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
                epilog=f"other commands: {', '.join(SUBCOMMANDS)} (runproc COMMAND --help)")
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

    commands = ("run", *SUBCOMMANDS)
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
    try:
        proc = load(ns.file)
        cli_params = parse_cli_params(ns.param)
        file_params = read_params_file(ns.params_file) if ns.params_file else None
        return _execute(proc, ns, cli_params, file_params)
    except ProcedureError as exc:
        _print_problems(exc)
        return EXIT_INVALID


def _execute(proc: Any, ns: argparse.Namespace, cli_params: dict[str, str], file_params: Any) -> int:
    import signal

    from .runner import Run

    sink: Any
    if ns.output == "text":
        from .console import ConsoleView

        sink = ConsoleView(verbose=ns.verbose)
    else:
        from .console import NoticeSink

        sink = NoticeSink()  # stdout carries the JSON document alone
    stop: list[Any] = []
    ask = _asker(sink, stop) if _is_tty(sys.stdin) else None
    run = Run(proc, params=file_params, cli_params=cli_params, dry_run=ns.dry_run, offline=ns.offline,
              yes=ns.yes, no_rollback=ns.no_rollback, only=ns.only, limit=ns.limit, inventory=ns.inventory,
              state=ns.state, ignore_window=ns.ignore_window, on_event=sink, ask=ask,
              log_dir=Path(ns.report_dir) / "logs" if ns.report_dir else None, forks=ns.forks,
              accept_new_hosts=ns.accept_new_hosts, known_hosts=ns.known_hosts)
    stop.append(run.stop)

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

        write_bundle(result, ns.report_dir)
    if ns.output == "json":
        from .report import to_json_text

        try:
            sys.stdout.write(to_json_text(result) + "\n")
            sys.stdout.flush()
        except OSError:
            _silence_stdout()
    return result.exit_code


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
    return {"validate": _validate, "graph": _graph, "schema": _schema, "list": _list,
            "inventory": _inventory, "runs": _runs, "show": _show}[name](argv)


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
