#!/usr/bin/env python3
"""Fifty live viewers of one run (issue 15: "50 concurrent live viewers of one run: step
transitions delivered <= 1 s, server CPU stays under one core").

    python3 bench/web_viewers.py                      # SQLite, 50 viewers, 20 steps of 0.2 s
    python3 bench/web_viewers.py --viewers 100 --steps 40
    python3 bench/web_viewers.py --postgres          # a throw-away PostgreSQL server on loopback
    python3 bench/web_viewers.py --state postgresql://USER@127.0.0.1:PORT/DB

A real ``runproc serve`` (a process of its own, on a free loopback port) and a real run of
``--steps`` steps, each printing a line and then sleeping ``--step-seconds``. The viewers are
``httpx`` clients, each streaming ``/api/v1/runs/ID/events`` on a thread of its own, connected
before the run's first step is let go (the run waits for a file). Each journal entry's delay is
measured from its commit time (its ``at``) to its arrival at each viewer: step transitions
(step_started, step_finished) and, apart, the output a running step printed (``output``
entries of a last step that prints a line every 0.25 s for 2 s, each line saying when it was
printed: their delay is from the print to the viewer). Server CPU is the server process's user + system
time (``/proc/PID/stat``) over the run, as a share of one core. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGET = 1.0  # seconds: a step transition reaches every viewer within it
BOUND = 120.0  # a bound on a hang of this script, not a measure


def _runproc() -> list[str]:
    script = Path(sys.executable).parent / "runproc"
    return [str(script)] if script.exists() else [sys.executable, "-m", "engine.cli"]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _procedure(steps: int, seconds: float, go: Path) -> str:
    lines = ["procedure: viewers", "steps:",
             "  - id: start", f"    shell: \"while [ ! -e '{go}' ]; do sleep 0.02; done\""]
    for n in range(steps):
        lines += [f"  - id: s{n:02d}", f"    shell: \"echo step {n} says hello; sleep {seconds}\""]
    # a step that talks for 2 s, each line saying when it was printed: output's delay, print to viewer
    lines += ["  - id: talk", "    shell: \"for i in 1 2 3 4 5 6 7 8; do echo printed=$(date +%s.%N); sleep 0.25; done\""]
    return "\n".join(lines) + "\n"


class Viewer(threading.Thread):
    """One browser's worth of stream: every journal entry, with its arrival time."""

    def __init__(self, base: str, run_id: str, ready: threading.Barrier) -> None:
        super().__init__(daemon=True)
        self.url = f"{base}/api/v1/runs/{run_id}/events"
        self.ready = ready
        self.got: list[tuple[float, dict[str, Any]]] = []
        self.error: str | None = None

    def run(self) -> None:
        import httpx

        try:
            with httpx.Client(timeout=BOUND) as client, client.stream("GET", self.url) as r:
                self.ready.wait(BOUND)
                name = ""
                for line in r.iter_lines():
                    if line.startswith("event:"):
                        name = line[6:].strip()
                    elif line.startswith("data:") and name == "journal":
                        self.got.append((time.time(), json.loads(line[5:])))
                    elif line.startswith("data:") and name == "end":
                        return
        except Exception as exc:  # noqa: BLE001 - said in the results, not raised from a thread
            self.error = f"{type(exc).__name__}: {exc}"


def _serve(state: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([*_runproc(), "serve", "--bind", "127.0.0.1:0", "--state", state],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "runproc serve: http://127.0.0.1:PORT/ (...)"
    if not first.startswith("runproc serve: http://"):
        proc.kill()
        raise SystemExit(f"runproc serve did not start: {first}{proc.communicate()[1]}")
    return proc, first.split()[2].rstrip("/")


def _stats(delays: list[float]) -> str:
    if not delays:
        return "none"
    ordered = sorted(delays)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return (f"{len(delays):6,d} deliveries, median {statistics.median(ordered) * 1000:5.0f} ms, "
            f"p95 {p95 * 1000:5.0f} ms, max {ordered[-1] * 1000:5.0f} ms")


def bench(state: str | None, viewers: int, steps: int, seconds: float) -> int:
    from engine.state.opening import open_store

    work = Path(tempfile.mkdtemp(prefix="runproc-viewers-"))
    state = state or f"sqlite:///{work}/state.db"
    go = work / "go"
    path = work / "viewers.yml"
    path.write_text(_procedure(steps, seconds, go))
    server, base = _serve(state)
    run = subprocess.Popen([*_runproc(), str(path), "--state", state], cwd=work, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        store = open_store(state)
        deadline = time.monotonic() + BOUND
        run_id = None
        while run_id is None:
            if time.monotonic() > deadline or run.poll() is not None:
                raise SystemExit(f"the run did not start: {run.communicate()[1] if run.poll() is not None else ''}")
            found = [r for r in store.runs(5) if r["procedure"] == "viewers" and r["status"] == "running"]
            run_id = found[0]["id"] if found else None
            time.sleep(0.05)
        store.close()
        ready = threading.Barrier(viewers + 1)
        watchers = [Viewer(base, run_id, ready) for _ in range(viewers)]
        for w in watchers:
            w.start()
        ready.wait(BOUND)  # every viewer connected
        time.sleep(0.5)  # their first answers (the backlog) are in
        cpu0, t0 = _cpu_seconds(server.pid), time.monotonic()
        released = time.time()
        go.touch()
        run.wait(BOUND)
        for w in watchers:
            w.join(BOUND)
        cpu = (_cpu_seconds(server.pid) - cpu0) / max(1e-9, time.monotonic() - t0)
    finally:
        go.touch()
        if run.poll() is None:
            run.kill()
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    errors = [w.error for w in watchers if w.error]
    transitions: list[float] = []
    output: list[float] = []
    for w in watchers:
        for arrived, entry in w.got:
            at = _at(entry["at"])
            if at < released:
                continue  # committed before the viewers were measured
            if entry["event"] in ("step_started", "step_finished"):
                transitions.append(arrived - at)
            elif entry["event"] == "output":
                for line in str((entry.get("data") or {}).get("text") or "").splitlines():
                    if line.startswith("printed="):
                        output.append(arrived - float(line[len("printed="):]))
    worst = max(transitions, default=0.0)
    print(f"runproc serve, {viewers} viewers of one run of {steps} steps of {seconds:g}s; state {state.split(':')[0]}")
    print(f"  step transitions: {_stats(transitions)}")
    print(f"  running output:   {_stats(output)} (from the line's print)")
    print(f"  server CPU while the run went on: {cpu * 100:.1f}% of one core")
    if errors:
        print(f"  viewers that failed: {len(errors)}: {errors[0]}")
    ok = worst <= TARGET and cpu < 1.0 and not errors and transitions
    print(f"  target (<= {TARGET:g} s a transition, under one core): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--state", help="a state URL (default: a new SQLite file); postgresql://... for PostgreSQL")
    ap.add_argument("--postgres", action="store_true",
                    help="a throw-away PostgreSQL server on 127.0.0.1 (tests/servers/postgres.py) as the state")
    ap.add_argument("--viewers", type=int, default=50)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--step-seconds", type=float, default=0.2)
    ns = ap.parse_args()
    if ns.postgres:
        from bench.web import _postgres

        with _postgres(None) as dsn:
            return bench(dsn, ns.viewers, ns.steps, ns.step_seconds)
    return bench(ns.state, ns.viewers, ns.steps, ns.step_seconds)


if __name__ == "__main__":
    sys.exit(main())
