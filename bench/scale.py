#!/usr/bin/env python3
"""How validate, plan and run grow with the number of steps (issue 14, must-haves 1 and 5).

    python3 bench/scale.py                         # 1k/5k/10k steps, 3 rounds
    python3 bench/scale.py --sizes 500,1000,2000 --rounds 5 --timeout 60
    python3 bench/scale.py --commands validate,plan

Two shapes of ``n`` ``shell: 'true'`` steps, one step in ten with a ``rollback`` (so a plan
describes undos and a run keeps them ready):

chain   each step ``needs`` the one before it: every step has all earlier ones upstream.
fan-in  ``n - 1`` steps with ``needs: []``, then one step that needs all of them.

Three commands, each a child process of its own, measured from ``wait4`` (wall time and
peak RSS of the child):

validate  ``runproc validate FILE``
plan      ``runproc FILE --dry-run --offline``
run       ``runproc FILE --state sqlite:///TMP/state-K.db`` (a fresh state file per run;
          run state and logs in a temporary XDG_STATE_HOME)

Each round runs every case once, in turn (shapes, commands and sizes interleaved), so a
burst of load on a shared machine hits all of them alike; the table shows the median over
the rounds, min-max, the median CPU time (user + sys, steadier than wall time when other work
shares the CPUs), the peak RSS, and the growth factor from one size to the next (of wall time,
then of CPU time) beside the size ratio: a linear command grows by about the size ratio, less
while its fixed start-up cost (~0.3 s) still weighs. A case that exceeds
``--timeout`` is killed, shown as ``>T``, and not run again in later rounds.

The children run this checkout (its root is put first on PYTHONPATH) through the real
console script when there is one (a pyenv shim would add ~150 ms to every call), with
bytecode caching on; one warm-up run of ``runproc --version`` precedes the rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).parent / "runproc"
RUNPROC = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "engine.cli"]
ROLLBACK_EVERY = 10  # one step in ten has an undo


def chain(n: int) -> str:
    """``n`` steps, each needing the previous one."""
    lines = ["procedure: scale-chain", "steps:"]
    for i in range(n):
        lines += [f"  - id: s{i}", "    shell: 'true'"]
        if i:
            lines.append(f"    needs: [s{i - 1}]")
        if i % ROLLBACK_EVERY == 0:
            lines.append("    rollback: {shell: 'true'}")
    return "\n".join(lines) + "\n"


def fan_in(n: int) -> str:
    """``n - 1`` independent steps, then one that needs all of them."""
    lines = ["procedure: scale-fan-in", "steps:"]
    for i in range(n - 1):
        lines += [f"  - id: s{i}", "    shell: 'true'", "    needs: []"]
        if i % ROLLBACK_EVERY == 0:
            lines.append("    rollback: {shell: 'true'}")
    lines += ["  - id: last", "    shell: 'true'", "    needs: [" + ", ".join(f"s{i}" for i in range(n - 1)) + "]"]
    return "\n".join(lines) + "\n"


SHAPES: dict[str, Callable[[int], str]] = {"chain": chain, "fan-in": fan_in}
COMMANDS = ("validate", "plan", "run")


@dataclass
class Case:
    shape: str
    command: str
    size: int
    file: Path
    walls: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    timed_out: bool = False

    def argv(self, state: Path) -> list[str]:
        if self.command == "validate":
            return [*RUNPROC, "validate", str(self.file)]
        if self.command == "plan":
            return [*RUNPROC, str(self.file), "--dry-run", "--offline"]
        return [*RUNPROC, str(self.file), "--state", f"sqlite:///{state}"]


def measure(case: Case, env: dict[str, str], state: Path, timeout: float) -> None:
    """One run of ``case``: wall time and peak RSS from ``wait4`` (per child, in kB on Linux)."""
    err_path = state.with_suffix(".stderr")
    with err_path.open("wb") as err:  # a file, not a pipe: a chatty child never blocks on it
        started = time.perf_counter()
        child = subprocess.Popen(case.argv(state), env=env, stdout=subprocess.DEVNULL, stderr=err,
                                 start_new_session=True)  # its own group: a timeout kills its steps too
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                os.killpg(child.pid, signal.SIGKILL)
                os.wait4(child.pid, 0)
                child.returncode = -signal.SIGKILL
                case.timed_out = True
                return
            time.sleep(0.005)
        wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        text = err_path.read_text(errors="replace")
        raise SystemExit(f"{case.shape} {case.command} {case.size}: exit {child.returncode}:\n{text[-2000:]}")
    case.walls.append(wall)
    case.rss_mb.append(usage.ru_maxrss / 1024)
    case.cpus.append(usage.ru_utime + usage.ru_stime)  # with the steps' processes it waited for


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,10000", help="step counts, comma-separated (default 1000,5000,10000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="chain,fan-in (default both)")
    parser.add_argument("--commands", default=",".join(COMMANDS), help="validate,plan,run (default all)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds before a case is killed (default 120)")
    ns = parser.parse_args()
    sizes = sorted({int(s) for s in ns.sizes.split(",") if s.strip()})
    shapes = [s.strip() for s in ns.shapes.split(",") if s.strip()]
    commands = [c.strip() for c in ns.commands.split(",") if c.strip()]
    bad = [s for s in shapes if s not in SHAPES] + [c for c in commands if c not in COMMANDS]
    if bad or not sizes or min(sizes) < 2:
        parser.error(f"unknown shape or command {bad}, or a size below 2" if bad else "sizes must be >= 2")
    with tempfile.TemporaryDirectory(prefix="runproc-scale-") as tmp:
        folder = Path(tmp)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "RUNPROC_STATE")}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        env["XDG_STATE_HOME"] = str(folder / "xdg")
        cases: list[Case] = []
        for shape in shapes:
            for size in sizes:
                file = folder / f"{shape}-{size}.yml"
                file.write_text(SHAPES[shape](size))
                cases += [Case(shape, command, size, file) for command in commands]
        subprocess.run([*RUNPROC, "--version"], env=env, stdout=subprocess.DEVNULL, check=True)  # warm bytecode
        runs = 0
        for _ in range(ns.rounds):
            for case in cases:
                if case.timed_out:
                    continue
                runs += 1
                measure(case, env, folder / f"state-{runs}.db", ns.timeout)
    print(f"{ns.rounds} rounds, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the end, "
          f"Python {platform.python_version()}, {platform.machine()}")
    print("wall: median s (min-max); cpu: median user+sys s of the command and the processes it ran "
          "(steadier than wall on a shared machine); RSS: peak MB over the rounds; growth: wall(n) / "
          "wall(previous n) (and the same of cpu), beside n / previous n")
    header = ["shape", "command"]
    for i, size in enumerate(sizes):
        header += [f"{size:,} wall", "min-max", "cpu", "RSS"]
        if i:
            header.append(f"growth (x{size / sizes[i - 1]:g})")
    rows = [header]
    for shape in shapes:
        for command in commands:
            row = [shape, command]
            previous: float | None = None
            previous_cpu: float | None = None
            for i, size in enumerate(sizes):
                case = next(c for c in cases if (c.shape, c.command, c.size) == (shape, command, size))
                cpu: float | None = None
                if case.walls:
                    wall = statistics.median(case.walls)
                    cpu = statistics.median(case.cpus)
                    row += [f"{wall:.2f}", f"{min(case.walls):.2f}-{max(case.walls):.2f}",
                            f"{cpu:.2f}", f"{max(case.rss_mb):.0f}"]
                else:
                    wall = None
                    row += [f">{ns.timeout:g}", "", "", ""]
                if i:
                    grew = f"x{wall / previous:.1f}" if wall is not None and previous else ""
                    if cpu is not None and previous_cpu:
                        grew += f" (cpu x{cpu / previous_cpu:.1f})"
                    row.append(grew)
                previous, previous_cpu = wall, cpu
            rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
