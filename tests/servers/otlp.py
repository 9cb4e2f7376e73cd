"""An OTLP/HTTP trace receiver on 127.0.0.1: what a collector gets from ``runproc --otel``.

Fixtures:
  otlp_receiver -> OtlpReceiver (module): .endpoint (the base URL, as OTEL_EXPORTER_OTLP_ENDPOINT)
                   .spans(run_id) .bodies .headers

It accepts ``POST /v1/traces`` with a protobuf ``ExportTraceServiceRequest`` (gzip or
deflate ``Content-Encoding`` too) and decodes it with ``opentelemetry-proto``, the
collector's own message definitions: a span is kept as a ``ReceivedSpan`` with its resource's
attributes. The raw bodies are kept too, so a test can say a value appears in no byte sent.
A test reads only its own run's spans (``spans(run_id)``: the spans whose ``runproc.run_id``
attribute, or whose trace's root's, is that run's), so tests sharing the receiver never see
each other's. ``wait_for`` polls for spans to arrive (a readiness wait, not a timed assertion).
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from ._common import QuietThreadingHTTPServer, read_request_body


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    status: str  # UNSET | OK | ERROR
    message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    start: int
    end: int
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind) if kind else None


def _attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


def decode(body: bytes) -> list[ReceivedSpan]:
    """The spans of one ExportTraceServiceRequest."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.trace.v1.trace_pb2 import Status

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    out: list[ReceivedSpan] = []
    for rs in request.resource_spans:
        resource = _attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(ReceivedSpan(
                    name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                    parent_span_id=s.parent_span_id.hex(),
                    status=Status.StatusCode.Name(s.status.code).removeprefix("STATUS_CODE_"),
                    message=s.status.message, attributes=_attributes(s.attributes), resource=resource,
                    start=s.start_time_unix_nano, end=s.end_time_unix_nano,
                    events=[(e.name, _attributes(e.attributes)) for e in s.events]))
    return out


class OtlpReceiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.received: list[ReceivedSpan] = []
        self.bodies: list[bytes] = []  # decompressed, as sent
        self.headers: list[dict[str, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return

            def do_POST(self) -> None:  # noqa: N802
                body = read_request_body(self)
                encoding = (self.headers.get("Content-Encoding") or "").lower()
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if self.path != "/v1/traces":
                    self.send_response(404)
                    self.end_headers()
                    return
                try:
                    spans = decode(body)
                except Exception:  # noqa: BLE001 - not OTLP: the exporter's bug, a 400 as a collector says
                    self.send_response(400)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.bodies.append(body)
                    receiver.headers.append({k.lower(): v for k, v in self.headers.items()})
                    receiver.received.extend(spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")  # an empty ExportTraceServiceResponse
                self.end_headers()

        self._httpd = QuietThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._httpd.server_address[1])
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="otlp-receiver", daemon=True)
        self._thread.start()

    def spans(self, run_id: str) -> list[ReceivedSpan]:
        """The spans of one run's trace (its root carries the run id)."""
        with self._lock:
            spans = list(self.received)
        traces = {s.trace_id for s in spans if s.attributes.get("runproc.run_id") == run_id}
        return [s for s in spans if s.trace_id in traces]

    def bodies_of(self, run_id: str) -> list[bytes]:
        with self._lock:
            return [b for b in self.bodies if run_id.encode() in b]

    def wait_for(self, run_id: str, name_prefix: str = "run ", timeout: float = 15.0) -> list[ReceivedSpan]:
        """The run's spans once its root has arrived (the root ends last)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(run_id)
            if any(s.name.startswith(name_prefix) and not s.parent_span_id for s in spans):
                return spans
            if time.monotonic() > deadline:
                return spans
            time.sleep(0.02)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture(scope="module")
def otlp_receiver() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    try:
        yield receiver
    finally:
        receiver.close()
