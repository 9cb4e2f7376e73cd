"""Journal overhead per step: no journal, the SQLite journal, the PostgreSQL journal (loopback),
side by side in one sitting (medians of N alternating rounds).

    python3 bench/journal.py [--repeat 9] [--pg-dsn postgresql://USER@127.0.0.1:PORT/DB]

J1  100 sequential ``/bin/true`` steps, run in this process with the library
    (``engine.run(path, state=..., journal=...)``), so that interpreter start-up is not in it:
    per step  = (wall(100 steps) - wall(1 step)) / 99: the fixed cost of a run (opening the
                store, migrating, begin and record) cancels, what is left is what each step costs;
    overhead  = per step (journal) - per step (no journal), taken within each round (the three
                variants back to back, their order rotating) and the median of the rounds reported.

    (a) no journal: ``journal=False`` (no store is opened: no lock, no record, no journal);
    (b) SQLite: the default store, a WAL file in a temporary folder (synchronous=NORMAL);
    (c) PostgreSQL: a throw-away server started here with initdb in a temporary folder
        (tests/servers/postgres.py's start_postgres), on 127.0.0.1, or ``--pg-dsn``'s.

Each journaled step commits two entries before going on (step started with its action, step
finished with its result): two commits a step, each one round trip to PostgreSQL. The
benchmark also counts the statements the server ran (pg_stat_statements when the server has
it) to show where the time goes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = {"sqlite": 0.001, "postgresql": 0.003}  # overhead per step over no journal, seconds
STEPS = 100


def _procedures(tmp: Path) -> tuple[Path, Path]:
    hundred = ["procedure: j1", "steps:"] + [f"  - id: s{i}\n    shell: /bin/true" for i in range(STEPS)]
    many = tmp / "j1.yml"
    many.write_text("\n".join(hundred) + "\n")
    one = tmp / "j1_one.yml"
    one.write_text("procedure: j1-one\nsteps:\n  - id: s0\n    shell: /bin/true\n")
    return many, one


@contextlib.contextmanager
def _postgres(dsn: str | None) -> Iterator[tuple[str, Any]]:
    """A database for the benchmark: a new one on ``dsn``'s server, or a throw-away server."""
    if dsn is not None:
        yield dsn, None
        return
    from tests.servers.postgres import start_postgres, stop_postgres

    server = start_postgres()
    try:
        name = f"bench_{uuid.uuid4().hex[:8]}"
        server.psql(f'CREATE DATABASE "{name}"')
        with contextlib.suppress(RuntimeError):  # counts statements, where the server has it
            server.psql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements", dbname=name)
        yield server.dsn_for(name), server
    finally:
        stop_postgres(server)


def _run(path: Path, state: str | None) -> float:
    """Wall time of one run in this process; exits on anything but ok."""
    import engine

    t0 = time.perf_counter()
    result = engine.run(path, state=state, journal=state is not None, yes=True)
    took = time.perf_counter() - t0
    if result.exit_code != 0:
        sys.exit(f"the run of {path} ended {result.status}: {result.error}")
    return took


def _statements(server: Any, db: str) -> list[tuple[str, int, float]]:
    """The statements the server ran in ``db`` (query, calls, total ms), busiest first."""
    if server is None:
        return []
    try:
        rows = server.psql("SELECT calls, round(total_exec_time::numeric, 3), regexp_replace(query, '\\s+', ' ', 'g') "
                           "FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid "
                           f"WHERE d.datname = '{db}' ORDER BY calls DESC LIMIT 8", dbname=db)
    except RuntimeError:
        return []
    out = []
    for line in rows.splitlines():
        calls, ms, query = line.split("|", 2)
        out.append((query, int(calls), float(ms)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9, help="rounds (default 9)")
    parser.add_argument("--pg-dsn", default=None,
                        help="a PostgreSQL database to use (default: start a throw-away server)")
    ns = parser.parse_args()
    n = ns.repeat
    logging.getLogger("psycopg").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="runproc-bench-journal-") as d, _postgres(ns.pg_dsn) as (dsn, server):
        tmp = Path(d)
        os.environ["XDG_STATE_HOME"] = str(tmp / "xdg")  # step logs and spool in the temporary folder
        os.chdir(tmp)
        many, one = _procedures(tmp)
        states: dict[str, str | None] = {"none": None, "sqlite": f"sqlite:///{tmp}/state.db", "postgresql": dsn}
        names = list(states)
        for name in names:  # warm-up: imports, bytecode, the schemas, the page cache
            _run(many, states[name])
            _run(one, states[name])
        if server is not None:
            with contextlib.suppress(RuntimeError):
                server.psql("SELECT pg_stat_statements_reset()", dbname=dsn.rsplit("/", 1)[1])
        per_step: dict[str, list[float]] = {name: [] for name in names}
        over: dict[str, list[float]] = {name: [] for name in names if name != "none"}
        for r in range(n):
            order = names[r % len(names):] + names[:r % len(names)]  # rotate: no variant always goes first
            got: dict[str, float] = {}
            for name in order:
                t100 = _run(many, states[name])
                t1 = _run(one, states[name])
                got[name] = (t100 - t1) / (STEPS - 1)
            for name in names:
                per_step[name].append(got[name])
                if name != "none":
                    over[name].append(got[name] - got["none"])
        statements = _statements(server, dsn.rsplit("/", 1)[1])

    from bench.runner import _machine

    print(f"journal benchmark: {STEPS} sequential /bin/true steps, median of {n} alternating rounds; {_machine()}")
    print(f"command: python3 bench/journal.py --repeat {n}")
    print(f"{'':4} {'journal':<38} {'per step':>10} {'over none':>10}  target")
    labels = {"none": "(a) none (journal=False)", "sqlite": "(b) SQLite (WAL, synchronous=NORMAL)",
              "postgresql": "(c) PostgreSQL, loopback"}
    for name in names:
        step = statistics.median(per_step[name]) * 1000
        if name == "none":
            print(f"J1   {labels[name]:<38} {step:>7.2f} ms {'':>10}")
            continue
        extra = statistics.median(over[name])
        verdict = f"<= {TARGETS[name] * 1000:g} ms/step: {'met' if extra <= TARGETS[name] else 'MISSED'}"
        print(f"J1   {labels[name]:<38} {step:>7.2f} ms {extra * 1000:>7.2f} ms  {verdict}")
    if statements:
        rounds = n * (STEPS + 1)  # the steps of the measured PostgreSQL runs
        print(f"PostgreSQL statements over the measured runs ({rounds} steps), busiest first:")
        for query, calls, ms in statements:
            print(f"  {calls:>6} calls {ms / max(calls, 1) * 1000:>7.1f} us/call  {query[:90]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
