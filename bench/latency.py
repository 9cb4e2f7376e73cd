"""Scheduler latency, in process (no interpreter start-up): what used to be timed test asserts.

    python3 bench/latency.py [--repeat 5]

L1  200 trivial ``assert`` steps through ``engine.run``: ms per step (target < 2.5 ms).
L2  a diamond of 0.05 s waits whose critical path is 0.20 s (a, b, d, then finally f):
    the run's duration; a scheduler that waited on its 0.5 s signal-polling timeout
    would show > 0.5 s (target < 0.35 s).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import engine  # noqa: E402

DIAMOND = """
procedure: timing
steps:
  - id: a
    wait: 0.05s
  - id: b
    wait: 0.05s
  - id: c
    needs: []
    wait: 0.12s
  - id: d
    needs: [b, c]
    wait: 0.05s
finally:
  - id: f
    wait: 0.05s
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        many = Path(tmp) / "many.yml"
        many.write_text("procedure: quick\nsteps:\n" + "".join(
            f"  - id: s{i}\n    assert: 'true'\n" for i in range(200)))
        diamond = Path(tmp) / "diamond.yml"
        diamond.write_text(textwrap.dedent(DIAMOND).lstrip())
        rows = []
        proc = engine.load(many)
        engine.run(proc, journal=False)  # warm imports
        samples = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            assert engine.run(proc, journal=False).ok
            samples.append((time.perf_counter() - t0) * 1000 / 200)
        rows.append(("L1 ms per trivial step", statistics.median(samples), min(samples), max(samples), 2.5))
        proc = engine.load(diamond)
        engine.run(proc, journal=False)
        samples = [engine.run(proc, journal=False).duration for _ in range(args.repeat)]
        rows.append(("L2 diamond makespan, s (critical path 0.20)", statistics.median(samples), min(samples),
                     max(samples), 0.35))
    print(f"{'benchmark':46} {'median':>8} {'min':>8} {'max':>8} {'target':>8}")
    for name, median, low, high, target in rows:
        flag = "" if median <= target else "  OVER TARGET"
        print(f"{name:46} {median:8.3f} {low:8.3f} {high:8.3f} {target:8.3f}{flag}")


if __name__ == "__main__":
    main()
