"""Runner benchmarks, each beside its floor, measured in one sitting (medians of N runs).

    python3 bench/runner.py [--repeat 9] [--runproc PATH]

W1  100 sequential ``/bin/true`` steps: per-step cost above a bash loop of the same execs.
    per step = (wall(100 steps) - wall(1 step)) / 99, so the fixed start-up cost cancels;
    floor     = wall(bash loop of 100 /bin/true) / 100; overhead = per step - floor, taken in
    each round (floor and both commands back to back) and the median of the rounds reported.
    The target (issue 14: <= 0.3 ms "on the run path") is judged on the run's own ``duration``
    in its report / 100 - floor: the run from its start to its outcome (the store opened and
    the journal begun, spread over the 100 steps; the journal's last commit and the report's
    record come after, a cost of the run, not of its steps), without the interpreter's start
    or the loading and checking of the file; the whole command's figure is printed beside it.
W2  20 ``sleep 0.5`` steps, ``needs: []``, ``concurrency: 20``: makespan (the run's own
    ``duration`` in the JSON report, and the whole command); floor: 20 background sleeps in bash.
W3  ``--dry-run`` of a 10-step procedure, the whole command; floors: the interpreter alone,
    ``runproc --version`` and ``runproc validate`` of the same file.

Every command is the real console script (not a pyenv shim), with the output going to a
pipe (the plain console, as in CI; W1 and W2 print their JSON report, to read its
``duration``) and run state in a temporary directory. Bytecode caching
is left on (PYTHONDONTWRITEBYTECODE is removed), as it is for an installed runproc; one
warm-up run of each command precedes the measured ones.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# W1: issue 14's per-step overhead over the exec itself (an older target allowed 2 ms)
TARGETS = {"W1": 0.0003, "W2": 0.6, "W3": 0.35}


def runproc_script() -> str:
    """The console script next to this interpreter (a pyenv shim on PATH adds ~200 ms a call)."""
    here = Path(sys.executable).parent / "runproc"
    if here.exists():
        return str(here)
    found = shutil.which("runproc")
    if found is None:
        sys.exit("runproc is not installed (pip install -e .)")
    return found


def bench_env(tmp: Path) -> dict[str, str]:
    """This environment with bytecode caching on, as for an installed runproc; run state in ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "NO_COLOR")}
    env["RUNPROC_STATE"] = f"sqlite:///{tmp}/state.db"
    return env


def wall(argv: list[str], env: dict[str, str], cwd: Path, timeout: float | None = None) -> tuple[float, str]:
    """Wall time of one command and its stdout; a failure (or ``timeout``) ends the bench, loud."""
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        sys.exit(f"{' '.join(argv)} took more than {timeout:.0f} s")
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return took, proc.stdout


def _median(argv: list[str], env: dict[str, str], cwd: Path, n: int) -> tuple[float, list[float], str]:
    wall(argv, env, cwd)  # warm-up: page cache, bytecode cache
    samples = []
    out = ""
    for _ in range(n):
        took, out = wall(argv, env, cwd)
        samples.append(took)
    return statistics.median(samples), samples, out


def procedures(tmp: Path, steps: int = 100, sleeps: int = 20, seconds: float = 0.5) -> dict[str, Path]:
    """W1 (``steps`` x /bin/true in sequence, and one step), W2 (``sleeps`` x sleep ``seconds``
    in parallel) and W3 as runproc files in ``tmp``; bench/compare.py asks for smaller ones."""
    files = {}
    w1 = ["procedure: w1", "steps:"] + [f"  - id: s{i}\n    shell: /bin/true" for i in range(steps)]
    files["w1"] = tmp / "w1.yml"
    files["w1"].write_text("\n".join(w1) + "\n")
    files["w1_one"] = tmp / "w1_one.yml"
    files["w1_one"].write_text("procedure: w1-one\nsteps:\n  - id: s0\n    shell: /bin/true\n")
    w2 = ["procedure: w2", f"concurrency: {sleeps}", "steps:"]
    w2 += [f"  - id: s{i}\n    needs: []\n    shell: sleep {seconds:g}" for i in range(sleeps)]
    files["w2"] = tmp / "w2.yml"
    files["w2"].write_text("\n".join(w2) + "\n")
    files["w3"] = tmp / "w3.yml"
    files["w3"].write_text(W3)
    return files


W3 = """\
procedure: w3-ten
description: ten steps (and a finally), as a dry run plans them
params:
  version: {type: str, default: "1.2.3", pattern: '^\\d+\\.\\d+\\.\\d+$'}
  replicas: {type: int, default: 3, min: 1, max: 20}
vars:
  dir: /tmp/w3-{{ params.version }}
steps:
  - id: probe
    readonly: true
    shell: /bin/true
  - id: s1
    shell: mkdir -p {{ vars.dir }}
    rollback:
      shell: rm -rf {{ vars.dir }}
  - id: s2
    shell: echo {{ params.version }} > {{ vars.dir }}/version
  - id: s3
    needs: [s1]
    shell: echo {{ params.replicas }} > {{ vars.dir }}/replicas
  - id: s4
    needs: [s2, s3]
    shell: cat {{ vars.dir }}/version
    retry: {attempts: 3, delay: 1s}
  - id: s5
    when: params.replicas > 1
    shell: echo scale to {{ params.replicas }}
  - id: s6
    shell: echo "{{ steps.s4.stdout }}"
    verify:
      - shell: test -d {{ vars.dir }}
  - id: s7
    assert: params.replicas >= 1
  - id: s8
    wait: 1s
  - id: s9
    shell: echo done
finally:
  - id: tidy
    shell: rm -rf {{ vars.dir }}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--runproc", default=None, help="the runproc script (default: next to this python)")
    ns = parser.parse_args()
    runproc = ns.runproc or runproc_script()
    n = ns.repeat
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory(prefix="runproc-bench-") as d:
        tmp = Path(d)
        env = bench_env(tmp)
        files = procedures(tmp)

        # interleaved: each round times the floor and both runproc commands back to back, so
        # a burst of load from elsewhere on the machine hits a whole round, not one column
        loop = ["bash", "-c", "for i in $(seq 100); do /bin/true; done"]
        hundred = [runproc, str(files["w1"]), "--output", "json"]
        one = [runproc, str(files["w1_one"]), "--output", "json"]
        for argv in (loop, hundred, one):
            wall(argv, env, tmp)
        bash_s, w1_s, one_s, inrun_s, over_s = [], [], [], [], []
        for _ in range(n):
            b, _ = wall(loop, env, tmp)
            h, out = wall(hundred, env, tmp)
            o, _ = wall(one, env, tmp)
            bash_s.append(b)
            w1_s.append(h)
            one_s.append(o)
            inrun_s.append(json.loads(out)["duration"] / 100 - b / 100)
            over_s.append((h - o) / 99 - b / 100)
        bash, w1, w1_one = statistics.median(bash_s), statistics.median(w1_s), statistics.median(one_s)
        floor = bash / 100
        over = statistics.median(over_s)
        inrun = statistics.median(inrun_s)
        rows += [
            ("W1", "floor: bash loop, 100 x /bin/true", f"{bash * 1000:.0f} ms", f"{floor * 1000:.2f} ms/exec"),
            ("W1", "runproc, 1 step (fixed cost)", f"{w1_one * 1000:.0f} ms", ""),
            ("W1", "runproc, 100 sequential steps", f"{w1 * 1000:.0f} ms",
             f"{(w1 - w1_one) / 99 * 1000:.2f} ms/step"),
            # issue 14 asks for the overhead "on the run path": the run's own duration (its
            # store opened and journal begun included), not the loading and checking
            # of the 100 steps' file (must-have 1's business) nor the interpreter's start
            ("W1", "overhead per step on the run path", f"{inrun * 1000:.2f} ms",
             _verdict(inrun <= TARGETS["W1"], "<= 0.3 ms")),
            ("W1", "  same, whole command", f"{over * 1000:.2f} ms", "(+ loading 100 steps, the report)"),
        ]

        sleeps, _, _ = _median(["bash", "-c", "for i in $(seq 20); do sleep 0.5 & done; wait"], env, tmp, n)
        makespans = []
        walls = []
        wall([runproc, str(files["w2"]), "--output", "json"], env, tmp)
        for _ in range(n):
            took, out = wall([runproc, str(files["w2"]), "--output", "json"], env, tmp)
            walls.append(took)
            makespans.append(json.loads(out)["duration"])
        makespan = statistics.median(makespans)
        rows += [
            ("W2", "floor: bash, 20 x sleep 0.5 in background", f"{sleeps * 1000:.0f} ms", ""),
            ("W2", "runproc makespan (report duration)", f"{makespan * 1000:.0f} ms",
             _verdict(makespan <= TARGETS["W2"], "<= 600 ms")),
            ("W2", "runproc, whole command", f"{statistics.median(walls) * 1000:.0f} ms", ""),
        ]

        py, _, _ = _median([sys.executable, "-c", "pass"], env, tmp, n)
        version, _, _ = _median([runproc, "--version"], env, tmp, n)
        validate, _, _ = _median([runproc, "validate", str(files["w3"])], env, tmp, n)
        dry, _, out = _median([runproc, str(files["w3"]), "--dry-run"], env, tmp, n)
        assert "planned (exit 0)" in out, out
        rows += [
            ("W3", "floor: python3 -c pass", f"{py * 1000:.0f} ms", ""),
            ("W3", "floor: runproc --version", f"{version * 1000:.0f} ms", ""),
            ("W3", "floor: runproc validate (load + checks)", f"{validate * 1000:.0f} ms", ""),
            ("W3", "runproc --dry-run, 10 steps", f"{dry * 1000:.0f} ms",
             _verdict(dry <= TARGETS["W3"], "<= 350 ms")),
        ]

    print(f"runner benchmarks: median of {n} runs each; {machine()}")
    print(f"command: python3 bench/runner.py --repeat {n}   (runproc = {runproc})")
    width = max(len(r[1]) for r in rows)
    print(f"{'':4} {'what':<{width}}  {'time':>10}  note")
    for w, what, t, note in rows:
        print(f"{w:4} {what:<{width}}  {t:>10}  {note}")
    return 0


def _verdict(ok: bool, target: str) -> str:
    return f"target {target}: {'met' if ok else 'MISSED'}"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    with contextlib.suppress(OSError):
        load = "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {load}"


if __name__ == "__main__":
    sys.exit(main())
