"""The commands that read the journal of past runs: runs (the list, filtered and paged) and
show (one run: who, where, params, each step with timings, hosts, approvals and rollbacks).
Neither changes anything; both open the state the runs were recorded in.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from .common import EXIT_INVALID, STATE_HELP, Parser, is_tty, no_empty_engine

# every status a recorded run can have (engine/execution/outcome.py, and the journal's own)
STATUSES = ("ok", "failed", "refused", "rollback_incomplete", "interrupted", "running", "planned")
DEFAULT_LIMIT = 50


def _runs(argv: list[str]) -> int:
    p = Parser(prog="runproc runs",
               description="List recorded runs, newest first. Filters narrow the list; -n and --page page it.",
               epilog="examples: runproc runs --status failed --since 7d; runproc runs --procedure deploy "
                      "--user alice --page 2; runproc runs --output json | jq '.[].id'")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--output", choices=("text", "json"), default="text",
                   help="json: a list of runs (id, procedure, status, started_at, duration, exit_code, dry_run, "
                        "user, host, kind)")
    p.add_argument("-n", "--limit", dest="n", default=str(DEFAULT_LIMIT), metavar="N",
                   help=f"show the N newest runs that match (default {DEFAULT_LIMIT})")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--page", metavar="K", help="show page K (1 is the newest N runs)")
    where.add_argument("--offset", metavar="M", help="skip the M newest runs that match")
    p.add_argument("--procedure", metavar="NAME", help="only runs of this procedure (its `procedure:` name)")
    p.add_argument("--status", metavar="STATUS", help=f"only runs that ended so: {', '.join(STATUSES)}")
    p.add_argument("--since", metavar="WHEN",
                   help="only runs started at or after WHEN: an ISO date or time (2024-05-01, "
                        "2024-05-01T14:00; local time unless it says Z or +HH:MM) or a time ago (7d, 12h, 30m)")
    p.add_argument("--user", metavar="NAME", help="only runs started by this OS user")
    p.add_argument("--engine", default=os.environ.get("RUNPROC_ENGINE") or None,
                   help="list the runs of a Temporal engine: temporal://HOST:PORT[/NAMESPACE] "
                        "(default $RUNPROC_ENGINE; without it: the runs of --state)")
    ns = p.parse_args(argv)
    from ..execution.store import RunFilter

    no_empty_engine(ns.engine)
    if ns.engine:
        return _runs_on_engine(ns)

    limit, offset, since = _page_and_filters(ns)
    from ..state.opening import open_store

    store = open_store(ns.state)
    try:
        # one more than the page holds: whether there is a next page is then known, not guessed
        found = store.runs(limit + 1, RunFilter(procedure=ns.procedure, status=ns.status, since=since,
                                                user=ns.user, limit=limit + 1, offset=offset))
    finally:
        store.close()
    runs, more = found[:limit], len(found) > limit
    if ns.output == "json":
        print(json.dumps(runs, indent=2))
        return 0
    for r in runs:
        print(run_line(r))
    if not runs:
        filtered = any(v is not None for v in (ns.procedure, ns.status, ns.since, ns.user))
        print("no runs" + (" match" if filtered else " recorded") + (" on this page" if offset else ""),
              file=sys.stderr)
    if more:
        page = offset // limit + 2 if offset % limit == 0 else None
        following = f"--page {page}" if page is not None else f"--offset {offset + limit}"
        print(f"-- more: {_again(argv)} {following}")
    return 0


def run_line(r: dict[str, Any]) -> str:
    """One run in one line: id, start (UTC), procedure, status, duration, who@where, what kind."""
    started = (r.get("started_at") or "?")[:19].replace("T", " ")
    status = r["status"] + (f" (exit {r['exit_code']})" if r.get("exit_code") not in (None, 0) else "")
    from ..format.durations import format_duration

    took = format_duration(float(r["duration"])) if r.get("duration") is not None else "-"
    who = f"{r.get('user') or '?'}@{r.get('host') or '?'}"
    extra = " (dry run)" if r.get("dry_run") else ""
    if r.get("kind") not in (None, "run"):
        extra += f" ({r['kind']})"
    return f"{r['id']}  {started}Z  {r['procedure'] or '?':<24} {status:<24} {took:>8}  {who}{extra}"


def _again(argv: list[str]) -> str:
    """The command as given, without its paging: the next page's line to copy."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--page", "--offset"):
            skip = True
            continue
        if arg.startswith(("--page=", "--offset=")):
            continue
        out.append(arg)
    return shlex.join(["runproc", "runs", *out])


def _count(option: str, text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        _bad(option, f"expected a whole number of at least {minimum}, got {text!r}")
    return value


def _bad(option: str, message: str, hint: str | None = None) -> None:
    """Invalid input: one line, exit 2."""
    from ..errors import UsageError

    raise UsageError(f"runproc: {option}: {message}" + (f" ({hint})" if hint else ""))


def parse_since(text: str) -> str:
    """``--since``: an ISO date/time (local unless it names its zone) or a time ago (``7d``), as
    the UTC ISO text runs are recorded with (``2024-05-01T12:00:00.000Z``)."""
    from datetime import UTC, datetime, timedelta

    from ..format.durations import parse_duration

    value = text.strip()
    try:
        ago = parse_duration(value)
    except ValueError:
        ago = None
    if ago is not None and not value.isdigit():  # a bare number reads better as a year than as seconds
        when = datetime.now(UTC) - timedelta(seconds=ago)
    else:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            _bad("--since", f"cannot read {text!r} as a date, a time or a time ago",
                 "e.g. 2024-05-01, 2024-05-01T14:00, 2024-05-01T14:00Z, 7d, 12h, 30m")
        if when.tzinfo is None:
            when = when.astimezone()  # as the person typing it reads a clock: local time
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- show


def _page_and_filters(ns: Any) -> tuple[int, int, str | None]:
    """(limit, offset, since) from ``runs``' options, each bad one said in one line (exit 2);
    the same for the state's runs and an engine's."""
    limit = _count("-n", ns.n, minimum=1)
    offset = 0
    if ns.page is not None:
        offset = (_count("--page", ns.page, minimum=1) - 1) * limit
    elif ns.offset is not None:
        offset = _count("--offset", ns.offset, minimum=0)
    if ns.status is not None and ns.status not in STATUSES:
        _bad("--status", f"unknown status {ns.status!r}", f"one of: {', '.join(STATUSES)}")
    return limit, offset, parse_since(ns.since) if ns.since is not None else None


def _runs_on_engine(ns: Any) -> int:
    """The runs of a Temporal engine (workflows of runproc's interpreter), newest first."""
    from ..distributed.client import RunQuery, list_runs, parse_engine

    limit, offset, since = _page_and_filters(ns)
    runs = list_runs(parse_engine(ns.engine), RunQuery(limit=limit, offset=offset, procedure=ns.procedure,
                                                       status=ns.status, since=since, user=ns.user))
    if ns.output == "json":
        print(json.dumps(runs, indent=2))
        return 0
    for r in runs:
        dry = " (dry run)" if r.get("dry_run") else ""
        print(f"{r['id']}  {r['started_at']}  {r.get('procedure') or '?':<28} {r.get('status')}{dry}  "
              f"{r.get('user') or ''}")
    if not runs:
        print("no runs recorded", file=sys.stderr)
    return 0


def _show(argv: list[str]) -> int:
    p = Parser(prog="runproc show",
               description="Show a recorded run: who ran it where, its params, each step with its timings, "
                           "hosts, approvals and rollbacks; or its whole JSON report with its journal.")
    p.add_argument("run", help="a run id, or its first characters (runproc runs lists them)")
    p.add_argument("--state", help=STATE_HELP)
    # default: text for a person at a terminal, the JSON report for a pipe (as before text
    # existed: `runproc show ID | jq` keeps working)
    p.add_argument("--output", choices=("text", "json"),
                   help="text: who, where, params, each step, approvals, rollbacks, root cause; json: the whole "
                        "report with its journal and approvals (default: text on a terminal, json when piped)")
    p.add_argument("--engine", default=os.environ.get("RUNPROC_ENGINE") or None,
                   help="a run on a Temporal engine: temporal://HOST:PORT[/NAMESPACE] (default $RUNPROC_ENGINE)")
    ns = p.parse_args(argv)
    from ..state.opening import open_store

    no_empty_engine(ns.engine)
    if ns.engine:
        from ..distributed.client import parse_engine, show_run

        report = show_run(parse_engine(ns.engine), ns.run)
        if (ns.output or ("text" if is_tty(sys.stdout) else "json")) == "json":
            print(json.dumps(report, indent=2, default=str))
        else:
            from ..ui.recorded import show_report

            show_report(report)
        return 0

    store = open_store(ns.state)
    try:
        report = store.show(ns.run)
        if report is None:
            print(f"runproc show: no run {ns.run!r} in this state (runproc runs lists them; a run on Temporal: add "
                  "--engine temporal://HOST:PORT or set RUNPROC_ENGINE)", file=sys.stderr)
            return EXIT_INVALID
        report = enrich(store, report)
    finally:
        store.close()
    if (ns.output or ("text" if is_tty(sys.stdout) else "json")) == "json":
        print(json.dumps(report, indent=2, default=str))
    else:
        from ..ui.recorded import show_report

        show_report(report)
    return 0


def enrich(store: Any, report: dict[str, Any]) -> dict[str, Any]:
    """The report with what the state knows beside it (engine/state/records.py: who, where,
    what kind of run, the params, the approvals) and the journal in order."""
    from ..state.records import with_records

    out, journal, _ = with_records(store, report)
    out["journal"] = journal
    return out


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"runs": _runs, "show": _show}
