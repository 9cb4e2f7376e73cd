"""The Temporal engine beside the local one, in one sitting on one machine (issue 13).

    python3 bench/temporal.py [--rounds 5] [--tuned] [--dynamic-config KEY=VALUE ...]
                              [--sqlite-pragma P=V ...] [--no-floor]

Starts its own ``temporal server start-dev`` on loopback (tests/servers/temporal.py) and one
``runproc worker --concurrency 24`` (steps and workflows), warms both engines up, then runs
rounds that alternate the engines, command after command, so a burst of load from elsewhere
hits a round, not an engine. Medians of the rounds.

T1  100 sequential ``/bin/true`` steps, the real console script (``runproc FILE --output json``,
    with ``--engine temporal://...`` for Temporal). Per step = (wall(100 steps) - wall(1 step)) / 99,
    so start-up, connecting and starting the workflow cancel out; also the report's own
    ``duration`` / 100. Overhead per step = Temporal's per step - the local engine's.
    Target: <= 25 ms.
T2  20 ``sleep 0.5`` steps, ``needs: []``, ``concurrency: 20``: makespan (the report's
    ``duration``: the workflow's own clock on Temporal) and the whole command. Target: <= 0.8 s.
T3  where T1's time goes on Temporal: the mean gaps between the events of one step in the
    workflow's history (``temporal workflow show``), for the last measured 100-step run.
T4  (unless --no-floor) Temporal's own floor on this server: a bare workflow (no runproc code)
    running 100 ``/bin/true`` as regular activities, then as local activities (no server
    round trip per step); ms per step from the workflow's clock. What runproc's interpreter
    costs above T4's regular line is runproc's; what T4's regular line costs is the server's.

``--dynamic-config`` and ``--sqlite-pragma`` go to the dev server (``temporal server start-dev
--help``), e.g. ``--dynamic-config matching.numTaskqueueReadPartitions=1``: to try server
settings; they apply to this bench's server only. ``--tuned`` adds the two that matter on a
dev server (measured: 2 CPUs, temporal 1.9.1 = server 1.32.0):

- ``history.transferProcessorMaxPollRPS=1000``: the history service polls its transfer queue
  (which hands a new workflow task to matching) at most 20 times a second by default, so a
  workflow that schedules one task at a time waits up to 50 ms for each: the bare floor (T4)
  is 50.0 ms a step by default, ~15 ms with this.
- ``--sqlite-pragma journal_mode=wal``: no rollback-journal fsyncs per history write (WAL is as
  durable against a process crash); ~15 -> ~10 ms a step.

Neither partitions (``matching.numTaskqueue{Read,Write}Partitions=1``) nor eager activities
(on by default in the SDK; ``system.enableActivityEagerExecution``) changed anything here.
"""

from __future__ import annotations

import argparse
import asyncio
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
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.servers._common import free_port  # noqa: E402
from tests.servers.temporal import (  # noqa: E402
    HOST,
    TemporalServer,
    find_temporal_binary,
    start_temporal_server,
    start_worker,
    stop_worker,
    teardown_temporal_server,
)

TARGET_OVERHEAD = 0.025  # s per sequential step, above the local engine
TARGET_MAKESPAN = 0.8  # s, 20 parallel sleep 0.5
TUNED_CONFIG = ["history.transferProcessorMaxPollRPS=1000"]
TUNED_PRAGMAS = ["journal_mode=wal"]


@dataclass
class TunedServer(TemporalServer):
    """The tests' dev server, with extra ``start-dev`` flags."""

    extra: tuple[str, ...] = ()

    def command(self) -> list[str]:
        return [*super().command(), *self.extra]


def _server(extra: list[str]) -> TemporalServer:
    if not extra:
        return start_temporal_server()
    base = Path(tempfile.mkdtemp(prefix="runproc-bench-temporal-"))
    server = TunedServer(binary=find_temporal_binary(), port=free_port(HOST), db_path=base / "temporal.db",
                         log_path=base / "temporal.log", extra=tuple(extra))
    server.start()
    return server


def _script() -> str:
    here = Path(sys.executable).parent / "runproc"
    if here.exists():
        return str(here)
    found = shutil.which("runproc")
    if found is None:
        sys.exit("runproc is not installed (pip install -e '.[temporal]')")
    return found


def _procedures(tmp: Path) -> dict[str, Path]:
    files = {"seq100": tmp / "seq100.yml", "seq1": tmp / "seq1.yml", "par20": tmp / "par20.yml"}
    files["seq100"].write_text("procedure: t1\nsteps:\n" + "".join(
        f"  - id: s{i}\n    shell: /bin/true\n" for i in range(100)))
    files["seq1"].write_text("procedure: t1-one\nsteps:\n  - id: s0\n    shell: /bin/true\n")
    files["par20"].write_text("procedure: t2\nconcurrency: 20\nsteps:\n" + "".join(
        f"  - id: s{i}\n    needs: []\n    shell: sleep 0.5\n" for i in range(20)))
    return files


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, dict[str, Any]]:
    """(wall seconds, the JSON report) of one command; exits the bench when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return took, json.loads(proc.stdout)


# ---------------------------------------------------------------- T3: the history of one run


def _when(event: dict[str, Any]) -> datetime:
    text = str(event["eventTime"]).replace("Z", "+00:00")
    head, _, tail = text.partition(".")
    if tail:  # nanoseconds: keep microseconds for fromisoformat
        frac, _, zone = tail.partition("+")
        text = f"{head}.{frac[:6]:0<6}+{zone}"
    return datetime.fromisoformat(text)


def _where_the_time_goes(server: TemporalServer, run_id: str) -> list[tuple[str, float, int]]:
    """Mean gap (s) between consecutive events, by the pair of event types, in run_id's history."""
    data = json.loads(server.workflow_show_json(run_id))
    events = data.get("events") or data.get("history", {}).get("events") or []
    gaps: dict[str, list[float]] = {}
    for before, after in zip(events, events[1:], strict=False):
        key = f"{_short(before['eventType'])} -> {_short(after['eventType'])}"
        gaps.setdefault(key, []).append((_when(after) - _when(before)).total_seconds())
    rows = [(key, statistics.mean(values), len(values)) for key, values in gaps.items() if len(values) >= 10]
    return sorted(rows, key=lambda r: -r[1] * r[2])


def _short(kind: str) -> str:
    return kind.removeprefix("EVENT_TYPE_").replace("_", " ").title().replace(" ", "")


# ---------------------------------------------------------------- T4: Temporal's own floor


@activity.defn(name="bench.true")
def bare_true() -> int:
    return subprocess.run(["/bin/true"], check=False).returncode


@workflow.defn(name="bench.floor", sandboxed=False)
class Floor:
    """One activity per step, nothing else: what any workflow on this server pays."""

    @workflow.run
    async def run(self, n: int, local: bool) -> float:
        t0 = workflow.now()
        for _ in range(n):
            if local:
                await workflow.execute_local_activity("bench.true", start_to_close_timeout=timedelta(seconds=30))
            else:
                await workflow.execute_activity("bench.true", start_to_close_timeout=timedelta(seconds=30))
        return (workflow.now() - t0).total_seconds()


def _floor(server: TemporalServer, steps: int, rounds: int) -> tuple[float, float]:
    """Median ms per step of a bare workflow: (regular activities, local activities)."""
    return asyncio.run(_floor_async(server, steps, rounds))


async def _floor_async(server: TemporalServer, steps: int, rounds: int) -> tuple[float, float]:
    from concurrent.futures import ThreadPoolExecutor

    from temporalio.client import Client
    from temporalio.runtime import Runtime, TelemetryConfig
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    client = await Client.connect(server.address, runtime=Runtime(telemetry=TelemetryConfig(logging=None)))
    queue = f"bench-floor-{uuid.uuid4().hex[:6]}"
    out: dict[bool, list[float]] = {False: [], True: []}
    with ThreadPoolExecutor(24) as pool:
        async with Worker(client, task_queue=queue, workflows=[Floor], activities=[bare_true], activity_executor=pool,
                          max_concurrent_activities=24, workflow_runner=UnsandboxedWorkflowRunner()):
            for i in range(rounds + 1):  # the first round warms up
                for local in (False, True):
                    took = await client.execute_workflow("bench.floor", args=[steps, local], id=f"{queue}-{i}-{local}",
                                                         task_queue=queue)
                    if i:
                        out[local].append(took / steps * 1000)
    return statistics.median(out[False]), statistics.median(out[True])


# ---------------------------------------------------------------- the bench


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dynamic-config", action="append", default=[], metavar="KEY=VALUE",
                        help="a dev-server dynamic config value (repeatable)")
    parser.add_argument("--sqlite-pragma", action="append", default=[], metavar="PRAGMA=VALUE",
                        help="a dev-server SQLite pragma (repeatable)")
    parser.add_argument("--tuned", action="store_true",
                        help=f"dev-server settings: {', '.join(TUNED_CONFIG + TUNED_PRAGMAS)} (see above)")
    parser.add_argument("--no-floor", action="store_true", help="skip T4 (Temporal's own floor)")
    ns = parser.parse_args()
    if ns.tuned:
        ns.dynamic_config = [*TUNED_CONFIG, *ns.dynamic_config]
        ns.sqlite_pragma = [*TUNED_PRAGMAS, *ns.sqlite_pragma]
    extra = [a for kv in ns.dynamic_config for a in ("--dynamic-config-value", kv)]
    extra += [a for kv in ns.sqlite_pragma for a in ("--sqlite-pragma", kv)]
    runproc = _script()
    t_start = time.perf_counter()
    server = _server(extra)
    worker = None
    try:
        with tempfile.TemporaryDirectory(prefix="runproc-bench-") as d:
            tmp = Path(d)
            queue = f"bench-{uuid.uuid4().hex[:6]}"
            worker = start_worker(server.address, queue, name="bench", cwd=tmp, extra_args=["--concurrency", "24"])
            server.wait_for_pollers(queue, identity_contains="bench", proc=worker)
            env = {k: v for k, v in os.environ.items()
                   if k not in ("PYTHONDONTWRITEBYTECODE", "NO_COLOR", "RUNPROC_ENGINE") and not k.startswith("TEMPORAL_")}
            env["RUNPROC_STATE"] = f"sqlite:///{tmp}/state.db"
            files = _procedures(tmp)
            engines = {"local": [], "temporal": ["--engine", server.engine_url, "--queue", queue]}

            def cmd(engine: str, name: str) -> list[str]:
                return [runproc, str(files[name]), "--output", "json", *engines[engine]]

            for _ in range(2):  # warm-up: page cache, bytecode, the server's first workflows
                for engine in engines:
                    for name in files:
                        _run(cmd(engine, name), env, tmp)
            per_step: dict[str, list[float]] = {e: [] for e in engines}
            in_run: dict[str, list[float]] = {e: [] for e in engines}
            overhead: list[float] = []
            overhead_in_run: list[float] = []
            makespan: dict[str, list[float]] = {e: [] for e in engines}
            wall20: dict[str, list[float]] = {e: [] for e in engines}
            last_run = ""
            for _ in range(ns.rounds):
                seen: dict[str, float] = {}
                for engine in engines:
                    hundred, report = _run(cmd(engine, "seq100"), env, tmp)
                    one, _ = _run(cmd(engine, "seq1"), env, tmp)
                    seen[engine] = (hundred - one) / 99
                    per_step[engine].append(seen[engine])
                    in_run[engine].append(report["duration"] / 100)
                    if engine == "temporal":
                        last_run = report["run_id"]
                overhead.append(seen["temporal"] - seen["local"])
                overhead_in_run.append(in_run["temporal"][-1] - in_run["local"][-1])
                for engine in engines:
                    took, report = _run(cmd(engine, "par20"), env, tmp)
                    wall20[engine].append(took)
                    makespan[engine].append(report["duration"])
            gaps = _where_the_time_goes(server, last_run)
            floor = _floor(server, 100, ns.rounds) if not ns.no_floor else None
    finally:
        if worker is not None:
            stop_worker(worker)
        teardown_temporal_server(server)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:.1f} ms"

    over = statistics.median(overhead)
    span = statistics.median(makespan["temporal"])
    print(f"Temporal engine vs local: median of {ns.rounds} alternating rounds; {_machine()}")
    print(f"command: python3 bench/temporal.py --rounds {ns.rounds}" + (" --tuned" if ns.tuned else "")
          + "".join(f" --dynamic-config {kv}" for kv in ns.dynamic_config if not ns.tuned or kv not in TUNED_CONFIG)
          + "".join(f" --sqlite-pragma {kv}" for kv in ns.sqlite_pragma if not ns.tuned or kv not in TUNED_PRAGMAS)
          + (" --no-floor" if ns.no_floor else "")
          + f"   (temporal {_temporal_version()}, temporalio {_sdk_version()})")
    rows = [
        ("T1", "local: per sequential step (100 - 1 steps)", ms(per_step["local"]),
         f"in-run {ms(in_run['local'])}"),
        ("T1", "temporal: per sequential step (100 - 1 steps)", ms(per_step["temporal"]),
         f"in-run {ms(in_run['temporal'])}"),
        ("T1", "overhead per step, temporal - local", f"{over * 1000:.1f} ms",
         f"target <= {TARGET_OVERHEAD * 1000:.0f} ms: {'met' if over <= TARGET_OVERHEAD else 'MISSED'}"
         f" (in-run {statistics.median(overhead_in_run) * 1000:.1f} ms)"),
        ("T2", "local: 20 x sleep 0.5 makespan", ms(makespan["local"]), f"whole command {ms(wall20['local'])}"),
        ("T2", "temporal: 20 x sleep 0.5 makespan", ms(makespan["temporal"]),
         f"target <= {TARGET_MAKESPAN * 1000:.0f} ms: {'met' if span <= TARGET_MAKESPAN else 'MISSED'}"
         f"; whole command {ms(wall20['temporal'])}"),
    ]
    width = max(len(r[1]) for r in rows)
    for t, what, value, note in rows:
        print(f"{t:3} {what:<{width}}  {value:>10}  {note}")
    print(f"T3  where a temporal step's time goes (mean gap between history events, run {last_run}):")
    for key, mean, count in gaps[:8]:
        print(f"      {key:<58} {mean * 1000:7.1f} ms  x{count}")
    if floor is not None:
        print(f"T4  Temporal's floor, bare workflow, 100 x /bin/true: regular activities {floor[0]:.1f} ms/step, "
              f"local activities {floor[1]:.1f} ms/step")
    print(f"(bench took {time.perf_counter() - t_start:.0f} s)")
    return 0


def _temporal_version() -> str:
    with contextlib.suppress(Exception):
        out = subprocess.run([str(find_temporal_binary()), "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.strip().removeprefix("temporal version ")
    return "?"


def _sdk_version() -> str:
    with contextlib.suppress(Exception):
        import temporalio

        return str(temporalio.__version__)
    return "?"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ""
    with contextlib.suppress(OSError):
        load = "load " + " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return f"{cpu}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {platform.system()} {load}"


if __name__ == "__main__":
    sys.exit(main())
