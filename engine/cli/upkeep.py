"""The commands that look after the state: prune (old runs, their journal, inputs and logs)
and state (info: what the state holds, its size, the logs and the retention policy in force;
sync: upload journals spooled while the state could not be reached)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import EXIT_INVALID, STATE_HELP, Parser, is_tty

EXIT_REFUSED = 3


def _bad(message: str) -> None:
    from ..errors import UsageError

    raise UsageError(message)


# ---------------------------------------------------------------- prune


def _prune(argv: list[str]) -> int:
    p = Parser(prog="runproc prune",
               description="Delete the runs started before a cutoff, with their journal, recorded inputs and step "
                           "logs. A run still going is never deleted. Asks first on a terminal; --yes does not ask.",
               epilog="example: runproc prune --older-than 90d --dry-run, then runproc prune --older-than 90d --yes")
    p.add_argument("--older-than", required=True, metavar="AGE",
                   help="delete runs started more than AGE ago (90d, 12h, 30m)")
    p.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    p.add_argument("--yes", action="store_true", help="delete without asking")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--output", choices=("text", "json"), default="text")
    ns = p.parse_args(argv)
    from datetime import UTC, datetime, timedelta

    from ..format.durations import parse_duration

    try:
        age = parse_duration(ns.older_than)
    except ValueError:
        _bad(f"runproc prune: --older-than: cannot read {ns.older_than!r} as an age (e.g. 90d, 12h, 30m)")
    cutoff = (datetime.now(UTC) - timedelta(seconds=age)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    from ..state import retention
    from ..state.opening import open_store

    store = open_store(ns.state)
    try:
        logs_dir = store.logs_dir()
        planned = store.prune(cutoff, dry_run=True)
        folders, log_bytes = retention.remove_run_logs(logs_dir, planned["run_ids"], dry_run=True)
        if ns.dry_run or not planned["run_ids"]:
            return _pruned(planned, folders, log_bytes, cutoff, ns.older_than, ns.output, dry_run=True)
        if not ns.yes:
            what = (f"{planned['runs']} runs started before {cutoff} ({planned['journal_entries']} journal "
                    f"entries, {folders} log folders, {retention.format_size(log_bytes)} of logs)")
            if not is_tty(sys.stdin):
                print(f"runproc prune: refusing to delete {what} without confirmation: no terminal to ask on; "
                      "pass --yes (or --dry-run to list them)", file=sys.stderr)
                return EXIT_REFUSED
            from .locks import _confirm

            if not _confirm(f"Delete {what}?"):
                print("runproc prune: nothing deleted", file=sys.stderr)
                return EXIT_REFUSED
        done = store.prune(cutoff)
        folders, log_bytes = retention.remove_run_logs(logs_dir, done["run_ids"])
    finally:
        store.close()
    return _pruned(done, folders, log_bytes, cutoff, ns.older_than, ns.output, dry_run=False)


def _pruned(counts: dict[str, Any], folders: int, log_bytes: int, cutoff: str, older_than: str, output: str, *,
            dry_run: bool) -> int:
    from ..state.retention import format_size

    if output == "json":
        out = {"cutoff": cutoff, "older_than": older_than, "dry_run": dry_run,
               **{k: counts[k] for k in ("runs", "journal_entries", "run_inputs", "db_bytes", "running_kept",
                                         "run_ids")},
               "log_folders": folders, "log_bytes": log_bytes}
        print(json.dumps(out, indent=2))
        return 0
    verb = "would delete" if dry_run else "deleted"
    if dry_run:
        for r in counts["listed"]:
            print(f"{verb} {r['id']}  {(r['started_at'] or '?')[:19].replace('T', ' ')}Z  {r['procedure'] or '?':<24} "
                  f"{r['status']}")
    kept = (f"; kept {counts['running_kept']} still going" if counts["running_kept"] else "")
    if not counts["runs"]:
        print(f"nothing to prune: no run started before {cutoff}{kept}")
        return 0
    print(f"{verb} {counts['runs']} runs started before {cutoff}: {counts['journal_entries']} journal entries, "
          f"{counts['run_inputs']} recorded inputs, {folders} log folders; "
          f"{'frees' if dry_run else 'freed'} {format_size(log_bytes)} of logs and "
          f"{format_size(counts['db_bytes'])} of database rows{kept}")
    return 0


# ---------------------------------------------------------------- state info / sync


def _state(argv: list[str]) -> int:
    p = Parser(prog="runproc state", description="Look after the run state: info, or sync spooled journals.")
    sub = p.add_subparsers(dest="command", metavar="{info,sync}", parser_class=Parser)
    info = sub.add_parser("info", help="what the state holds, its size, the logs and the retention policy",
                          description="What the state holds (runs by status, journal entries, locks), its size, "
                                      "the logs folder and the retention policy in force, and the journals "
                                      "spooled while the state could not be reached.")
    info.add_argument("--state", help=STATE_HELP)
    info.add_argument("--output", choices=("text", "json"), default="text")
    sync = sub.add_parser("sync", help="upload journals spooled while the state could not be reached",
                          description="Upload journals spooled while the state could not be reached (a run "
                                      "names its spool file when that happens; runproc state info lists them).")
    sync.add_argument("files", nargs="+", metavar="FILE", help="a spool file (SPOOL_DIR/RUN_ID.jsonl)")
    sync.add_argument("--state", help="the state to upload into (default: the one the file was spooled from; "
                                      "a PostgreSQL password comes from PGPASSWORD or ~/.pgpass then)")
    sync.add_argument("--output", choices=("text", "json"), default="text")
    ns = p.parse_args(argv)
    if ns.command is None:
        _bad("runproc state: say which: runproc state info, or runproc state sync FILE...")
    if ns.command == "info":
        return _info(ns)
    return _sync(ns)


def _info(ns: Any) -> int:
    from ..execution.journal import spool_dir
    from ..state import retention
    from ..state.opening import default_state_url, open_store, shown_url

    url = ns.state or default_state_url()
    store = open_store(url)
    try:
        held = store.info()
        logs_dir = store.logs_dir()
    finally:
        store.close()
    policy = retention.policy()
    spool = spool_dir()
    try:
        waiting = sorted(spool.glob("*.jsonl")) if spool.is_dir() else []
    except OSError:
        waiting = []
    out: dict[str, Any] = {
        "state": shown_url(url), **held, "logs": retention.usage(logs_dir), "retention": policy.to_json(),
        "spool": {"dir": str(spool), "count": len(waiting),
                  "files": [{"path": str(f), "bytes": _size(f)} for f in waiting]},
    }
    if ns.output == "json":
        print(json.dumps(out, indent=2))
        return 0
    size = retention.format_size
    runs = ", ".join(f"{status} {n:,}" for status, n in held["runs"].items())
    span = f"; oldest {held['oldest_run']}, newest {held['newest_run']}" if held["runs_total"] else ""
    db = held["database"]
    files = ", ".join(f"{Path(f).name} {size(n)}" for f, n in (db.get("files") or {}).items())
    logs = out["logs"]
    values = policy.values
    lines = [
        f"state:          {out['state']}",
        f"schema version: {held['schema_version']}",
        f"runs:           {held['runs_total']:,}" + (f" ({runs})" if runs else "") + span,
        f"journal:        {held['journal_entries']:,} entries",
        f"locks:          {held['locks_held']} held; {held['lock_events']:,} lock events (runproc locks --history)",
        f"database:       {size(db['bytes']) if db.get('bytes') is not None else 'size unknown'}"
        + (f" ({files})" if files else ""),
        f"logs:           {logs['dir']}: {size(logs['bytes'])} in {logs['run_folders']} run folders",
        "retention:      "
        f"per run {size(policy.run_cap)} (RUNPROC_LOG_RUN_CAP={values['RUNPROC_LOG_RUN_CAP']}), "
        f"all logs {size(policy.total_cap)} (RUNPROC_LOG_TOTAL_CAP={values['RUNPROC_LOG_TOTAL_CAP']}), "
        f"logs kept {_days(policy.max_age)} (RUNPROC_LOG_MAX_AGE={values['RUNPROC_LOG_MAX_AGE']}), "
        f"stored output {size(policy.output_cap)} a stream (RUNPROC_OUTPUT_CAP={values['RUNPROC_OUTPUT_CAP']})",
        f"spool:          {spool}: {len(waiting)} journal{'s' if len(waiting) != 1 else ''} waiting"
        + (" (runproc state sync FILE uploads one)" if waiting else ""),
    ]
    lines += [f"  {f}" for f in waiting]
    lines += [f"warning: {problem}" for problem in policy.problems]
    print("\n".join(lines))
    return 0


def _days(seconds: float | None) -> str:
    if seconds is None:
        return "forever"
    from ..format.durations import format_duration

    return f"{seconds / 86400:g} days" if seconds >= 86400 else format_duration(seconds)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _sync(ns: Any) -> int:
    missing = [f for f in ns.files if not Path(f).is_file()]
    if missing:
        print(f"runproc state sync: {missing[0]}: no such spool file (runproc state info lists those waiting)",
              file=sys.stderr)
        return EXIT_INVALID
    from ..state import spool
    from ..state.opening import open_store

    # the state each file was spooled from, unless --state says otherwise (a PostgreSQL
    # password is not in the file: give it in --state, PGPASSWORD or ~/.pgpass)
    url = ns.state or spool.state_of(Path(ns.files[0]))
    store = open_store(url, upload_spool=False)  # these files, not every one waiting
    summaries: list[dict[str, Any]] = []
    try:
        for f in ns.files:
            try:
                summaries.append(spool.upload(store, Path(f)))
            except NotImplementedError:
                print("runproc state sync: this runproc cannot upload spooled journals yet", file=sys.stderr)
                return EXIT_INVALID
    finally:
        store.close()
    if ns.output == "json":
        print(json.dumps(summaries, indent=2, default=str))
        return 0
    for s in summaries:
        print(spool.note(s))
    return 0


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"prune": _prune, "state": _state}
