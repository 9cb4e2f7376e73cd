#!/usr/bin/env python3
"""One step that prints a lot: runproc's peak memory and the log it leaves (issue 14, must-have 5).

    python3 bench/output.py                 # one step printing 1 GB (~25 s here)
    python3 bench/output.py --size 200MB --cap 20MB

The step pipes ``--size`` bytes of text (100-byte lines) to its stdout. runproc runs it with a
fresh SQLite state in a temporary folder, once as the state's first run and once as its second
(the first run of a state marks its logs folder; both must hold the cap), each a child process
measured from ``wait4``: wall time and peak RSS (ru_maxrss). The table also gives the bytes of
the step's log on disk beside ``RUNPROC_LOG_RUN_CAP`` (``--cap``, default runproc's 100MB) and
the state file's size. Targets: peak RSS <= 60 MB; log <= the cap.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SCRIPT = Path(sys.executable).parent / "runproc"
RUNPROC = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "engine.cli"]
UNITS = {"KB": 1000, "MB": 1000**2, "GB": 1000**3}


def size(text: str) -> int:
    for unit, factor in UNITS.items():
        if text.upper().endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def measure(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in KiB and the exit code of one child."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if proc.stderr is not None:
        err = proc.stderr.read().decode(errors="replace")
        if err.strip():
            print(err.strip(), file=sys.stderr)
    return wall, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1GB", help="bytes the step prints (default 1GB)")
    parser.add_argument("--cap", default=None, help="RUNPROC_LOG_RUN_CAP (default: runproc's, 100MB)")
    ns = parser.parse_args()
    n = size(ns.size)
    with tempfile.TemporaryDirectory(prefix="runproc-bench-output-") as d:
        tmp = Path(d)
        (tmp / "flood.yml").write_text(
            "procedure: flood\nsteps:\n  - id: flood\n"
            f"    shell: head -c {n} /dev/zero | tr '\\0' 'x' | fold -w 99\n")
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["RUNPROC_STATE"] = f"sqlite:///{tmp}/state.db"
        if ns.cap:
            env["RUNPROC_LOG_RUN_CAP"] = ns.cap
        print(f"one step printing {n:,} bytes; RUNPROC_LOG_RUN_CAP={ns.cap or '100MB (default)'}")
        print(f"{'run':<8} {'wall s':>8} {'peak RSS MB':>12} {'log MB':>8} {'state MB':>9} exit")
        worst = 0
        for label in ("first", "second"):
            wall, rss_kib, rc = measure([*RUNPROC, str(tmp / "flood.yml")], env, tmp)
            logs = sorted((tmp / "logs").glob("*/flood-stdout-*.log"), key=lambda p: p.stat().st_mtime)
            log = logs[-1].stat().st_size if logs else 0
            state = sum(p.stat().st_size for p in tmp.glob("state.db*"))
            worst = max(worst, rss_kib)
            print(f"{label:<8} {wall:>8.2f} {rss_kib / 1024:>12.1f} {log / 1e6:>8.1f} {state / 1e6:>9.2f} {rc}")
        print(f"peak RSS {worst / 1024:.1f} MB (target <= 60 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
