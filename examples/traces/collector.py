"""A stand-in OpenTelemetry collector for trying --otel on this machine: it takes OTLP/HTTP
traces (POST /v1/traces, protobuf) on loopback and prints each trace as a tree of spans, with
their status and runproc.* attributes.

    python3 examples/traces/collector.py 4318      # 0: any free port (printed first)
    runproc examples/traces/release.yml --otel      # the default endpoint: http://localhost:4318

It needs opentelemetry-proto, which runproc's otel extra brings (pip install 'runproc[otel]').
A real collector (the OpenTelemetry Collector, Jaeger, Grafana Tempo) takes the same requests.
"""

from __future__ import annotations

import contextlib
import gzip
import sys
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

try:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Status
except ImportError:  # one line, as runproc says it, rather than a traceback
    sys.exit("collector.py needs opentelemetry-proto, which runproc's otel extra brings: "
             "pip install 'runproc[otel]'")

# spans of a trace wait here until its root (the run) arrives, which ends last
_pending: dict[bytes, list[Any]] = {}


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


def _show(spans: list[Any], service: str) -> None:
    children: dict[bytes, list[Any]] = {}
    for s in spans:
        children.setdefault(s.parent_span_id, []).append(s)
    root = children[b""][0]

    def line(s: Any, depth: int) -> None:
        status = Status.StatusCode.Name(s.status.code).removeprefix("STATUS_CODE_")
        millis = (s.end_time_unix_nano - s.start_time_unix_nano) / 1e6
        attrs = {kv.key.removeprefix("runproc."): _value(kv.value) for kv in s.attributes
                 if kv.key not in ("runproc.run_id", "runproc.dry_run", "runproc.step.id")}
        said = f": {s.status.message}" if s.status.message else ""
        print(f"{'  ' * depth}{s.name}  [{status}{said}] {millis:.0f} ms  {attrs}", flush=True)
        for child in sorted(children.get(s.span_id, []), key=lambda c: c.start_time_unix_nano):
            line(child, depth + 1)

    run_id = next((_value(kv.value) for kv in root.attributes if kv.key == "runproc.run_id"), "?")
    print(f"--- trace {root.trace_id.hex()} (service {service}, run {run_id})", flush=True)
    line(root, 0)


class Collector(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = (self.headers.get("Content-Encoding") or "").lower()
        body = gzip.decompress(body) if encoding == "gzip" else zlib.decompress(body) if encoding == "deflate" else body
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for rs in request.resource_spans:
            service = next((_value(kv.value) for kv in rs.resource.attributes if kv.key == "service.name"), "?")
            for ss in rs.scope_spans:
                for span in ss.spans:
                    _pending.setdefault(span.trace_id, []).append(span)
                    if not span.parent_span_id:  # the run's span: the trace is complete
                        _show(_pending.pop(span.trace_id), str(service))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # the traces are the log


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 4318
    server = ThreadingHTTPServer(("127.0.0.1", port), Collector)
    print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it quietly
        server.serve_forever()


if __name__ == "__main__":
    main()
