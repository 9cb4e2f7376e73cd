#!/usr/bin/env python3
"""Startup and validation cost, measured side by side, as a table.

    python3 bench/startup.py            # 15 rounds
    python3 bench/startup.py --runs 31

Each round runs every command once, in turn, so a burst of load on a shared machine hits
all of them alike; the table shows medians over the rounds. ``python -c pass`` is the floor
(interpreter start plus site-packages, the editable-install finder included). Wall time is
what a user waits; CPU time (user + sys of the child, from ``wait4``) is what the command
costs, and is steadier when other work shares the CPUs. Peak RSS is per child, also from
``wait4``. Targets come from issue 2.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PYTHON = sys.executable
_SCRIPT = Path(sys.executable).parent / "runproc"
# the real console script, not a pyenv shim on PATH (a shim adds ~200 ms to every call)
RUNPROC = [str(_SCRIPT)] if _SCRIPT.exists() else [PYTHON, "-m", "engine.cli"]

TEN_STEPS = """\
procedure: ten-steps
description: a small, realistic procedure
owner: platform
params:
  version: {type: str, default: v1.2, pattern: '^v\\d+\\.\\d+$'}
  replicas: {type: int, default: 3, min: 1, max: 20}
vars:
  dir: /tmp/ten
secrets:
  token: {env: TOKEN}
steps:
  - id: prepare
    shell: mkdir -p {{ vars.dir }}
  - id: fetch
    shell: echo fetching {{ params.version }} > {{ vars.dir }}/version
    timeout: 30s
  - id: check
    assert: params.replicas > 0
  - id: build
    shell: echo build {{ params.version }}
    retry: {attempts: 3, delay: 1s, until: result.rc == 0}
  - id: test
    shell: echo test
    verify:
      - shell: test -f {{ vars.dir }}/version
        expect: result.rc == 0
  - id: gate
    when: steps.test.rc == 0
    shell: echo gate
  - id: deploy
    shell: echo deploy {{ params.replicas }} {{ secrets.token }}
    rollback:
      shell: echo undo
  - id: pause
    wait: 1s
  - id: smoke
    shell: echo smoke
    readonly: true
  - id: done
    shell: echo "done {{ steps.smoke.stdout | trim }}"
"""


def big(n: int) -> str:
    """A chain of ``n`` steps, each with a template, a timeout, and a reference upstream."""
    lines = ["procedure: big", "params:", "  env: {type: str, default: prod}", "steps:"]
    for i in range(n):
        lines.append(f"  - id: s{i}")
        ref = f" {{{{ steps.s{i - 1}.rc }}}}" if i else ""
        lines.append(f"    shell: echo step {i} {{{{ params.env }}}}{ref}")
        lines.append("    timeout: 5m")
    return "\n".join(lines) + "\n"


@dataclass
class Case:
    label: str
    argv: list[str]
    wall_target: float | None = None
    rss_target_mb: float | None = None
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def measure(self, cwd: Path) -> None:
        started = time.perf_counter()
        child = subprocess.Popen(self.argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(child.pid, 0)
        self.walls.append(time.perf_counter() - started)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            raise SystemExit(f"{self.label}: exit {child.returncode}: {child.stderr.read().decode()}")
        child.stderr.close()
        self.cpus.append(usage.ru_utime + usage.ru_stime)
        self.rss_mb.append(usage.ru_maxrss / 1024)  # kilobytes on Linux

    def row(self) -> list[str]:
        wall = statistics.median(self.walls)
        verdict = ""
        if self.wall_target is not None:
            ok = wall <= self.wall_target and (self.rss_target_mb is None or max(self.rss_mb) <= self.rss_target_mb)
            verdict = "ok" if ok else "MISSED"
        target = "" if self.wall_target is None else f"<= {self.wall_target:.2f} s"
        if self.rss_target_mb is not None:
            target += f", <= {self.rss_target_mb:.0f} MB"
        return [self.label, f"{wall:.3f}", f"{min(self.walls):.3f}", f"{statistics.median(self.cpus):.3f}",
                f"{max(self.rss_mb):.0f}", target, verdict]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="rounds (default 15)")
    parser.add_argument("--steps", type=int, default=10_000, help="steps in the large file (default 10000)")
    ns = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="runproc-bench-") as tmp:
        folder = Path(tmp)
        (folder / "ten.yml").write_text(TEN_STEPS)
        (folder / "big.yml").write_text(big(ns.steps))
        cases = [
            Case("python -c pass", [PYTHON, "-c", "pass"]),
            Case("runproc --version", [*RUNPROC, "--version"], 0.10),
            Case("runproc validate ten.yml (10 steps)", [*RUNPROC, "validate", "ten.yml"], 0.35),
            Case(f"runproc validate big.yml ({ns.steps:,} steps)", [*RUNPROC, "validate", "big.yml"], 2.0, 300),
        ]
        for case in cases:  # warm the bytecode caches; not counted
            case.measure(folder)
            case.walls.clear(), case.cpus.clear(), case.rss_mb.clear()
        for _ in range(ns.runs):
            for case in cases:
                case.measure(folder)
    header = ["command", "wall median s", "wall min s", "cpu median s", "peak RSS MB", "target", ""]
    rows = [header, *(case.row() for case in cases)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    print(f"{ns.runs} rounds, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, {sys.version.split()[0]}")
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths, strict=True))))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    return 1 if any(case.row()[-1] == "MISSED" for case in cases) else 0


if __name__ == "__main__":
    sys.exit(main())
