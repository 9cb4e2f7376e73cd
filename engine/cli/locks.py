"""The commands on locks: locks (who holds what, and the audit with --history) and unlock
(break one after confirmation, recorded with who broke it).

A lock is a lease its run renews every lease/4 seconds. A holder whose process is gone (same
host) or whose lease ran out (any host) is *stale*: the next run that wants the lock takes it
over, and the takeover is recorded. ``runproc unlock`` is for a lock that must go before then.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from .common import STATE_HELP, Parser, is_tty

EXIT_REFUSED = 3


def _locks(argv: list[str]) -> int:
    p = Parser(prog="runproc locks",
               description="List the locks held: the run, procedure, user, host and pid holding each, since when, "
                           "its last heartbeat and lease, and whether the holder is alive or gone (stale: the next "
                           "run takes it over). With --history: the audit of acquisitions, releases, takeovers "
                           "and breaks.")
    p.add_argument("name", nargs="?", help="with --history: only this lock's events")
    p.add_argument("--history", action="store_true",
                   help="show the audit (acquired, released, taken_over, broken), newest first")
    p.add_argument("-n", "--limit", type=int, default=50, metavar="N", help="with --history: the N newest events")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--output", choices=("text", "json"), default="text")
    ns = p.parse_args(argv)
    if ns.name is not None and not ns.history:
        from ..errors import UsageError

        raise UsageError(f"runproc locks: a lock name goes with --history (runproc locks --history {ns.name})")
    if ns.limit < 1:
        from ..errors import UsageError

        raise UsageError(f"runproc locks: -n: expected a whole number of at least 1, got {ns.limit}")
    from ..state.opening import open_store

    store = open_store(ns.state)
    try:
        if ns.history:
            return _history(store.lock_events(ns.name, ns.limit), ns.output, ns.name)
        now = store.clock()
        holders = [_holder_json(h, now) for h in store.locks()]
    finally:
        store.close()
    if ns.output == "json":
        print(json.dumps(holders, indent=2))
        return 0
    if not holders:
        print("no lock is held", file=sys.stderr)
        return 0
    for h in holders:
        print(holder_line(h))
    return 0


def _holder_json(holder: Any, now: float) -> dict[str, Any]:
    out: dict[str, Any] = holder.to_json()
    age = None if holder.heartbeat_at is None else max(0.0, now - float(holder.heartbeat_at))
    out["heartbeat_age"] = None if age is None else round(age, 3)
    out["stale"] = not holder.alive
    return out


def holder_line(h: dict[str, Any]) -> str:
    """One lock: its name, whether its holder lives, who holds it, since when, its heartbeat."""
    state = "held " if h["alive"] else "STALE"
    beat = "no heartbeat" if h.get("heartbeat_age") is None else f"heartbeat {_age(h['heartbeat_age'])}"
    lease = f", lease {h['lease']:g}s" if h.get("lease") else ""
    gone = "" if h["alive"] else " (holder gone: the next run that wants it takes it over)"
    return (f"{h['name']:<20} {state}  run {h['run_id']} of {h['procedure']} by {h['user']} on {h['host']} "
            f"(pid {h['pid']}), since {h['since']}, {beat}{lease}{gone}")


def _age(seconds: float) -> str:
    """``3s ago``, ``5m ago``, ``2h ago``."""
    if seconds < 60:
        return f"{seconds:.0f}s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f}h ago"
    return f"{seconds / 86400:.1f}d ago"


def _history(events: list[dict[str, Any]], output: str, name: str | None) -> int:
    if output == "json":
        print(json.dumps(events, indent=2))
        return 0
    if not events:
        print("no lock events" + (f" for {name!r}" if name else ""), file=sys.stderr)
        return 0
    for e in events:
        run = f"run {e['run_id']}" if e.get("run_id") else "-"
        detail = f"  {e['detail']}" if e.get("detail") else ""
        print(f"{e['at']}  {e['name']:<20} {e['event']:<11} {run:<16} by {e.get('user') or '?'}@"
              f"{e.get('host') or '?'}{detail}")
    return 0


def _unlock(argv: list[str]) -> int:
    p = Parser(prog="runproc unlock",
               description="Break a lock whoever holds it, after confirmation; recorded with who broke it "
                           "(runproc locks --history). The run that held it is not killed: the step it is running "
                           "goes on, and another run may take the lock at once.")
    p.add_argument("name", help="the lock (runproc locks lists them)")
    p.add_argument("--yes", action="store_true", help="break it without asking")
    p.add_argument("--state", help=STATE_HELP)
    p.add_argument("--output", choices=("text", "json"), default="text")
    ns = p.parse_args(argv)
    from ..execution.store import user_name
    from ..state.opening import open_store

    store = open_store(ns.state)
    try:
        held = {h.name: h for h in store.locks()}
        holder = held.get(ns.name)
        if holder is None:
            from ..errors import UsageError

            others = f"locks held: {', '.join(sorted(held))}" if held else "no lock is held"
            raise UsageError(f"runproc unlock: lock {ns.name!r} is not held, nothing to break ({others})")
        alive = ("its holder is ALIVE: it is not killed (the step it is running goes on), and another run may "
                 "take the lock at once" if holder.alive else "its holder is gone: the next run would take it over "
                 "anyway")
        if not ns.yes:
            if not is_tty(sys.stdin):
                print(f"runproc unlock: refusing to break lock {ns.name!r} (held by {holder}) without confirmation: "
                      "no terminal to ask on; pass --yes", file=sys.stderr)
                return EXIT_REFUSED
            print(f"lock {ns.name!r} is held by {holder}; {alive}", file=sys.stderr)
            if not _confirm(f"Break lock {ns.name!r}?"):
                print("runproc unlock: not broken", file=sys.stderr)
                return EXIT_REFUSED
        by = user_name()
        broken = store.break_lock(ns.name, by=by)
    finally:
        store.close()
    if broken is None:
        print(f"runproc unlock: lock {ns.name!r} was released meanwhile: nothing broken", file=sys.stderr)
        return 0
    if ns.output == "json":
        print(json.dumps({"name": ns.name, "broken": True, "by": by, "holder": broken.to_json()}, indent=2))
    else:
        print(f"broke lock {ns.name!r}, held by {broken} ({'alive' if broken.alive else 'gone'}); "
              f"recorded as broken by {by} (runproc locks --history {ns.name})")
    return 0


def _confirm(question: str) -> bool:
    """Ask on the terminal (the question on stderr: stdout may be read by a script)."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    try:
        answer = sys.stdin.readline()
    except (OSError, KeyboardInterrupt):
        sys.stderr.write("\n")
        return False
    return answer.strip().lower() in ("y", "yes")


# the commands of this module by name, for engine.cli's dispatcher
COMMANDS: dict[str, Callable[[list[str]], int]] = {"locks": _locks, "unlock": _unlock}
