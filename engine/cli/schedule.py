"""``runproc schedule add|list|remove`` (schedules kept in the state) and ``runproc scheduler``
(the scheduler alone, without the web server); docs/web.md "Schedules".

croniter is imported when a schedule is evaluated (``add`` checks the expression, ``list``
shows the next fire times), never for ``runproc --version``.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .common import STATE_HELP, Parser

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
USAGE = ("usage: runproc schedule add NAME FILE --cron EXPR [--timezone ZONE] [-p NAME=VALUE]... [--overlap ...] "
         "[--catch-up ...] [--dry-run]\n"
         "       runproc schedule list [--procedures DIR] [--output json]\n"
         "       runproc schedule remove NAME [--dry-run]")


def _schedule(argv: list[str]) -> int:
    from ..errors import UsageError

    verbs = ("add", "list", "remove")
    if not argv:
        raise UsageError("runproc schedule: a command is needed: add, list or remove (runproc schedule --help)")
    if argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if argv[0] not in verbs:
        raise UsageError(f"runproc schedule: unknown command {argv[0]!r} (add, list or remove)")
    verb, rest = argv[0], argv[1:]
    p = Parser(prog=f"runproc schedule {verb}")
    if verb != "list":
        p.add_argument("name", help="the schedule's name (lower-case letters, digits and -)")
    if verb == "add":
        p.add_argument("file", help="the procedure file it runs")
        p.add_argument("--cron", required=True, metavar="EXPR",
                       help="minute hour day-of-month month day-of-week (a 6th field: seconds), e.g. '0 3 * * *'")
        p.add_argument("--timezone", default="UTC", metavar="ZONE", help="the zone the cron reads in (default UTC)")
        p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE", help="a param of its runs")
        p.add_argument("--params-file", help="params from a YAML or JSON file (-p wins)")
        p.add_argument("--overlap", default="skip", metavar="skip|queue|cancel_previous",
                       help="when its previous run still goes: skip the slot (default), queue it, or interrupt "
                            "that run and queue")
        p.add_argument("--catch-up", default="skip", metavar="skip|latest|all",
                       help="slots missed while no scheduler ran: skip them (default), run the latest, or run all")
    if verb == "list":
        p.add_argument("--procedures", metavar="DIR", help="also the schedule: of the procedure files of DIR")
        p.add_argument("--output", choices=("text", "json"), default="text")
    if verb != "list":
        p.add_argument("--dry-run", action="store_true", help="say what would change, change nothing")
    p.add_argument("--state", help=STATE_HELP)
    ns = p.parse_args(rest)
    if verb == "list":
        return _list(ns)
    if not NAME.match(ns.name):
        raise UsageError(f"runproc schedule {verb}: {ns.name!r}: a schedule's name is lower-case letters, digits "
                         "and '-', starting with a letter or digit")
    return _add(ns) if verb == "add" else _remove(ns)


def _add(ns: Any) -> int:
    from ..api import load
    from ..errors import RefusedError, UsageError
    from ..format.params import parse_cli_params, read_params_file, resolve_params
    from ..format.schedules import CATCH_UP, OVERLAP, cron_problem, zone_problem
    from ..state.opening import open_store

    for flag, value, allowed in (("--overlap", ns.overlap, OVERLAP), ("--catch-up", ns.catch_up, CATCH_UP)):
        if value not in allowed:
            raise UsageError(f"runproc schedule add: {flag} {value!r}: expected one of {', '.join(allowed)}")
    problem = cron_problem(ns.cron, need_croniter=True)
    if problem:
        raise UsageError(f"runproc schedule add: --cron: {problem}")
    problem = zone_problem(ns.timezone)
    if problem:
        raise UsageError(f"runproc schedule add: --timezone: {problem}")
    file = str(Path(ns.file).resolve())
    proc = load(file)  # a bad file: its problems, located (exit 2)
    cli = parse_cli_params(ns.param)
    from_file = read_params_file(ns.params_file) if ns.params_file else {}
    resolved = resolve_params(proc, cli=cli, values=from_file)  # the run's own checks and words (exit 2)
    given = {**(from_file or {}), **cli}
    secret = sorted(k for k in given if getattr(proc.params.get(k), "secret", False))
    if secret:
        raise UsageError(f"runproc schedule add: param {secret[0]!r} is a secret: a schedule keeps its params in "
                         "the state in clear; give the secret a source in the procedure (secrets:) instead")
    params = {k: resolved[k] for k in given}
    row = {"name": ns.name, "file": file, "cron": ns.cron, "timezone": ns.timezone, "params": params,
           "overlap": ns.overlap, "catch_up": ns.catch_up, "created_by": _user()}
    store = open_store(ns.state)
    try:
        if any(s["name"] == ns.name for s in store.schedules()):
            raise RefusedError(f"schedule add: a schedule named {ns.name!r} exists already "
                               f"(runproc schedule remove {ns.name} first)")
        upcoming = _next(ns.cron, ns.timezone)
        if ns.dry_run:
            print(f"runproc schedule add: would add {ns.name}: {proc.procedure} ({file}) at {ns.cron!r} "
                  f"{ns.timezone}, next {upcoming}; nothing changed (dry run)", file=sys.stderr)
            return 0
        if not store.add_schedule(row):
            raise RefusedError(f"schedule add: a schedule named {ns.name!r} exists already")
    finally:
        store.close()
    print(f"runproc schedule: added {ns.name}: {proc.procedure} at {ns.cron!r} {ns.timezone}, next {upcoming}; "
          "runproc serve or runproc scheduler fires it", file=sys.stderr)
    return 0


def _remove(ns: Any) -> int:
    from ..errors import UsageError
    from ..state.opening import open_store

    store = open_store(ns.state)
    try:
        if not any(s["name"] == ns.name for s in store.schedules()):
            raise UsageError(f"runproc schedule remove: no stored schedule {ns.name!r} (runproc schedule list; a "
                             "procedure's own schedule: is removed from its file)")
        if ns.dry_run:
            print(f"runproc schedule remove: would remove {ns.name}; nothing changed (dry run)", file=sys.stderr)
            return 0
        store.remove_schedule(ns.name)
    finally:
        store.close()
    print(f"runproc schedule: removed {ns.name} (its past fires stay in the state's history)", file=sys.stderr)
    return 0


def _list(ns: Any) -> int:
    from ..schedule.scheduler import Scheduler
    from ..state.opening import open_store

    folder = _folder(ns.procedures, "schedule list")
    store = open_store(ns.state)
    try:
        items = Scheduler(store, files=lambda: procedure_files(folder)).listing(datetime.now(UTC))
    finally:
        store.close()
    if ns.output == "json":
        print(json.dumps(items, indent=2, default=str))
        return 0
    if not items:
        print("no schedules (runproc schedule add, or schedule: in a procedure with --procedures DIR)",
              file=sys.stderr)
        return 0
    for s in items:
        last = s["last"][0] if s["last"] else None
        shown = f"last {last['slot']} {last['outcome']}{' run ' + last['run_id'] if last['run_id'] else ''}" \
            if last else "never fired"
        nxt = s["next"][0] if s["next"] else "-"
        print(f"{s['name']:<20} {s['procedure']:<20} {s['cron']!r:<16} {s['timezone']:<14} next {nxt}  {shown}"
              f"{'  PROBLEM: ' + s['problem'] if s['problem'] else ''}")
    return 0


# ---------------------------------------------------------------- runproc scheduler


def _scheduler(argv: list[str]) -> int:
    p = Parser(prog="runproc scheduler",
               description="Fire the schedules (runproc schedule add, and the schedule: of the procedures of "
                           "--procedures DIR) as their slots come, each as an ordinary runproc run recorded as "
                           "started by schedule:NAME. runproc serve runs the same scheduler; run this one alone "
                           "when no web server is wanted. Two schedulers on one state never fire a slot twice.")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--procedures", metavar="DIR", help="the procedure files whose schedule: is fired")
    p.add_argument("--once", action="store_true", help="deal with the slots due now, then exit")
    p.add_argument("--at", metavar="TIME", help="with --once: as if it were TIME (ISO, UTC unless it names a zone; "
                                                "at most a minute ahead, unless with --dry-run)")
    p.add_argument("--dry-run", action="store_true",
                   help="with --once: say what would fire, start and record nothing")
    ns = p.parse_args(argv)
    from ..errors import UsageError

    if (ns.at or ns.dry_run) and not ns.once:
        raise UsageError("runproc scheduler: --at and --dry-run go with --once")
    now = _when(ns.at) if ns.at else datetime.now(UTC)
    if ns.at and not ns.dry_run and (now - datetime.now(UTC)).total_seconds() > 60:
        # its slots would be marked dealt with before they come, and never fire then
        raise UsageError(f"runproc scheduler: --at {ns.at}: more than a minute ahead; a time to come goes with "
                         "--dry-run only")
    folder = _folder(ns.procedures, "scheduler")
    from ..schedule.scheduler import Scheduler
    from ..state.opening import open_store

    store = open_store(ns.state)
    try:
        scheduler = Scheduler(store, launch=launcher(store, ns.state), files=lambda: procedure_files(folder))
        if ns.once:
            for decision in scheduler.tick(now, dry_run=ns.dry_run):
                if ns.dry_run and decision.action != "registered":
                    print(f"{decision.line()} (dry run)")
            return 0
        stop = threading.Event()
        _on_signals(stop)
        count = len(scheduler.definitions())
        print(f"runproc scheduler: {count} schedule{'s' if count != 1 else ''}; Ctrl-C stops it", file=sys.stderr,
              flush=True)
        scheduler.run(stop)
    finally:
        store.close()
    return 0


def launcher(store: Any, state: str | None) -> Callable[[str, dict[str, Any], str], tuple[str | None, int]]:
    """Start a scheduled run as runproc serve starts one: a runproc process of its own, params
    on its stdin, recorded as started by ``user``."""
    from ..state.opening import default_state_url
    from ..web import starts

    path = getattr(store, "path", None)
    url = f"sqlite:///{Path(path).resolve()}" if path is not None else str(getattr(store, "url", None) or state
                                                                          or default_state_url())

    def launch(file: str, params: dict[str, Any], user: str) -> tuple[str | None, int]:
        checked = starts.check_params(file, params, from_text=False)
        started = starts.start(file, checked, state_url=url, user=user, dry_run=False, store=store)
        return started.run_id, started.pid
    return launch


def procedure_files(folder: Path | None) -> list[Path]:
    """The *.yml and *.yaml files of ``folder`` and of its subfolders one level down."""
    if folder is None:
        return []

    def yaml_in(d: Path) -> list[Path]:
        return sorted(p for p in d.iterdir() if p.is_file() and p.suffix in (".yml", ".yaml"))
    try:
        found = yaml_in(folder)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            found += yaml_in(sub)
    except OSError:
        return []
    return found


def _folder(given: str | None, command: str) -> Path | None:
    from ..errors import UsageError

    if given is None:
        return None
    if not Path(given).is_dir():
        raise UsageError(f"runproc {command}: --procedures {given}: not a directory")
    return Path(given).resolve()


def _when(text: str) -> datetime:
    from ..errors import UsageError

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"runproc scheduler: --at {text!r}: expected an ISO time, e.g. 2026-12-04T03:00:00Z") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _next(cron: str, zone: str) -> str:
    from ..schedule.slots import next_fires, slot_name

    return slot_name(next_fires(cron, zone, datetime.now(UTC))[0])


def _user() -> str:
    from ..execution.store import user_name

    return user_name()


def _on_signals(stop: threading.Event) -> None:
    import signal

    def handler(signum: int, frame: Any) -> None:
        stop.set()
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, handler)


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"schedule": _schedule, "scheduler": _scheduler}
