"""A real Prometheus (Debian's ``prometheus`` binary) on 127.0.0.1, scraping an exporter the
fixture serves itself on loopback every 500 ms.

Fixtures:
  prometheus_server -> PrometheusServer (session): .url .exporter .query(promql) .wait_for(promql, pred)

The exporter (``Exporter``) serves Prometheus' text format from values a test sets:
``gauge(name, labels, value)`` and ``counter(name, labels, per_scrape)``. A counter grows by
``per_scrape`` each time Prometheus scrapes it, so ``rate()`` of it is steady and a test
changes a rate by changing ``per_scrape``. The server is shared by the session: a test uses
label values of its own (``Exporter.unique()``) so that what another test set never matters.
A change is visible after the next scrape; ``wait_for`` polls the HTTP API until a query
says so (a readiness wait, not a timed assertion).

Prometheus listens on 127.0.0.1 only (``--web.listen-address``) and keeps its data in a
temporary directory that is removed at the end of the session.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

from ._common import QuietThreadingHTTPServer, ServerStartError, free_port, log_tail, wait_for_port

SCRAPE_INTERVAL = "500ms"
JOB = "exporter"


def find_prometheus() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None)
    if found is None:
        raise ServerStartError("no prometheus binary on PATH: install Debian's 'prometheus' package "
                               "(scripts/test does)")
    return found


def _labels_text(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return "{" + inner + "}"


class Exporter:
    """Serves /metrics from the gauges and counters a test sets (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (name, sorted labels) -> [kind, value, per_scrape]
        self._metrics: dict[tuple[str, tuple[tuple[str, str], ...]], list[Any]] = {}
        self.scrapes = 0
        self._httpd = QuietThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.port = int(self._httpd.server_address[1])
        self.address = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="prom-exporter", daemon=True)

    @staticmethod
    def unique(prefix: str = "t") -> str:
        """A label value no other test uses."""
        return f"{prefix}{uuid.uuid4().hex[:10]}"

    def gauge(self, name: str, labels: Mapping[str, str], value: float) -> None:
        with self._lock:
            self._metrics[(name, tuple(sorted(labels.items())))] = ["gauge", float(value), 0.0]

    def counter(self, name: str, labels: Mapping[str, str], per_scrape: float) -> None:
        """A counter growing by ``per_scrape`` at each scrape (kept when only the rate changes)."""
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            current = self._metrics.get(key)
            value = current[1] if current is not None else 0.0
            self._metrics[key] = ["counter", value, float(per_scrape)]

    def render(self) -> str:
        with self._lock:
            self.scrapes += 1
            types: dict[str, str] = {}
            lines: list[str] = []
            for (name, labels), entry in sorted(self._metrics.items()):
                kind = entry[0]
                if kind == "counter":
                    entry[1] += entry[2]
                types.setdefault(name, kind)
                lines.append(f"{name}{_labels_text(dict(labels))} {entry[1]!r}")
        head = [f"# TYPE {name} {kind}" for name, kind in types.items()]
        # the exposition format wants a metric's TYPE line before its samples; one block is fine
        return "\n".join(head + lines) + "\n"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                body = exporter.render().encode() if self.path.startswith("/metrics") else b"not found\n"
                self.send_response(200 if self.path.startswith("/metrics") else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature
                return

        return Handler

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@dataclass
class PrometheusServer:
    host: str
    port: int
    exporter: Exporter
    data_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant query's result list, straight from the HTTP API (for test set-up)."""
        with urlopen(f"{self.url}/api/v1/query?{urlencode({'query': promql})}", timeout=10) as resp:
            doc = json.loads(resp.read())
        if doc.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {doc}")
        return list(doc["data"]["result"])

    def value(self, promql: str) -> float | None:
        """The one sample's value of an instant query, None when it has no sample."""
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def wait_ready(self, timeout: float) -> None:
        """Until /-/ready answers 200 (the API answers 503 while the storage opens)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urlopen(f"{self.url}/-/ready", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:  # URLError and HTTPError (503) are OSErrors
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def wait_for(self, promql: str, predicate: Callable[[float | None], bool] = lambda v: v is not None,
                 timeout: float = 20.0) -> float | None:
        """Poll until ``predicate(value(promql))`` holds: set-up waiting for a scrape to land."""
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.value(promql)
            if predicate(value):
                return value
            time.sleep(0.1)
        raise ServerStartError(f"prometheus: {promql!r} never satisfied the condition within {timeout}s "
                               f"(last value {value})\n{log_tail(self.log_path)}")


_CONFIG = """\
global:
  scrape_interval: {interval}
  scrape_timeout: {interval}
  evaluation_interval: 1s  # the resolution of a subquery written [5m:]
scrape_configs:
  - job_name: {job}
    static_configs:
      - targets: ["{target}"]
  - job_name: prometheus  # itself, as its default configuration does (examples/prometheus)
    static_configs:
      - targets: ["{own}"]
"""


def start_prometheus(exporter: Exporter) -> tuple[PrometheusServer, subprocess.Popen[bytes]]:
    binary = find_prometheus()
    base = Path(tempfile.mkdtemp(prefix="runproc-prom-"))
    config, data_dir, log_path = base / "prometheus.yml", base / "data", base / "prometheus.log"
    port = free_port()
    config.write_text(_CONFIG.format(interval=SCRAPE_INTERVAL, job=JOB, target=exporter.address,
                                     own=f"127.0.0.1:{port}"))
    cmd = [binary, f"--config.file={config}", f"--storage.tsdb.path={data_dir}",
           f"--web.listen-address=127.0.0.1:{port}",  # loopback only
           "--storage.tsdb.retention.time=1h", "--log.level=warn"]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=base)
    server = PrometheusServer("127.0.0.1", port, exporter, data_dir, log_path)
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        server.wait_ready(timeout=30)
        server.wait_for(f'up{{job="{JOB}"}}', lambda v: v == 1.0, timeout=30)
    except Exception as exc:
        proc.terminate()
        proc.wait(timeout=10)
        raise ServerStartError(f"prometheus on 127.0.0.1:{port} did not come up: {exc}\n{log_tail(log_path)}") from exc
    return server, proc


@pytest.fixture(scope="session")
def prometheus_server() -> Iterator[PrometheusServer]:
    exporter = Exporter()
    exporter.start()
    try:
        server, proc = start_prometheus(exporter)
        try:
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            shutil.rmtree(server.data_dir.parent, ignore_errors=True)
    finally:
        exporter.stop()
