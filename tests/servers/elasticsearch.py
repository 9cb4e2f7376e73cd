"""A small Elasticsearch ``_search`` stand-in on 127.0.0.1: it answers the queries and
aggregations the runbook's log analysis sends, computed from documents a test indexes.

Fixtures:
  es_server -> SearchServer (session): ``.url``, ``.index(name, docs)``, ``.requests``
  es        -> SearchServer (function): same server, indices and recorded requests forgotten

Supported, as Elasticsearch answers them (``POST|GET /<index or pattern>/_search``):
- queries: ``match_all``, ``bool`` (``must``, ``filter``, ``must_not``, ``should``), ``term``,
  ``terms``, ``exists``, ``range`` (``gt``/``gte``/``lt``/``lte`` on numbers, ISO dates and date
  math ``now``, ``now-1h``, ``now-30m``, ``now-7d``);
- aggregations: ``terms`` (by count, then key; ``size``; sub-aggregations), ``avg``, ``min``,
  ``max``, ``sum``, ``value_count``, ``histogram`` (``interval``; empty buckets between the first
  and the last, as ``min_doc_count: 0``), ``percentiles`` (``percents``; linear interpolation
  between closest ranks: exact on small sets where Elasticsearch's t-digest is approximate);
- ``field.keyword`` reads ``field``; dotted names read nested objects.

Anything else is answered 400 with Elasticsearch's error shape, so a query the stand-in does not
know fails loudly instead of matching everything.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

import pytest

from ._common import QuietThreadingHTTPServer, read_request_body

Doc = dict[str, Any]


class Unsupported(ValueError):
    """A query or aggregation the stand-in does not implement (answered 400)."""


@dataclass
class SearchRequest:
    method: str
    path: str
    body: dict[str, Any]


_MATH = re.compile(r"^now(?:-(\d+)([smhdw]))?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def _date(value: Any, now: datetime) -> datetime:
    if isinstance(value, str) and (m := _MATH.match(value)):
        if not m.group(1):
            return now
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    if isinstance(value, str):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise Unsupported(f"not a date: {value!r}")


def _field(doc: Doc, name: str) -> Any:
    if name.endswith(".keyword"):
        name = name[: -len(".keyword")]
    value: Any = doc
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _compare(value: Any, bound: Any, op: str, now: datetime) -> bool:
    if value is None:
        return False
    if isinstance(value, str) or (isinstance(bound, str) and not _is_number(bound)):
        left, right = _date(value, now), _date(bound, now)
    else:
        left, right = float(value), float(bound)
    return {"gt": left > right, "gte": left >= right, "lt": left < right, "lte": left <= right}[op]


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def matches(doc: Doc, query: dict[str, Any], now: datetime) -> bool:
    if len(query) != 1:
        raise Unsupported(f"a query has one kind, got {sorted(query)}")
    [(kind, spec)] = query.items()
    if kind == "match_all":
        return True
    if kind == "bool":
        def clauses(key: str) -> list[dict[str, Any]]:
            c = spec.get(key, [])
            return c if isinstance(c, list) else [c]
        unknown = set(spec) - {"must", "filter", "must_not", "should", "minimum_should_match"}
        if unknown:
            raise Unsupported(f"bool: {sorted(unknown)}")
        should = clauses("should")
        return (all(matches(doc, q, now) for q in clauses("must") + clauses("filter"))
                and not any(matches(doc, q, now) for q in clauses("must_not"))
                and (not should or any(matches(doc, q, now) for q in should)))
    [(name, arg)] = spec.items()
    value = _field(doc, name)
    if kind == "term":
        return bool(value == (arg["value"] if isinstance(arg, dict) else arg))
    if kind == "terms":
        return value in arg
    if kind == "exists":
        return _field(doc, spec["field"]) is not None
    if kind == "range":
        return all(_compare(value, bound, op, now) for op, bound in arg.items() if op in ("gt", "gte", "lt", "lte"))
    raise Unsupported(f"query {kind!r}")


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = pct / 100 * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def aggregate(docs: list[Doc], aggs: dict[str, Any], now: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in aggs.items():
        sub = spec.get("aggs") or spec.get("aggregations") or {}
        kinds = [k for k in spec if k not in ("aggs", "aggregations", "meta")]
        if len(kinds) != 1:
            raise Unsupported(f"aggregation {name!r}: one kind, got {kinds}")
        kind, opts = kinds[0], spec[kinds[0]]
        numbers = [float(v) for d in docs if isinstance(v := _field(d, opts.get("field", "")), int | float)]
        if kind == "terms":
            groups: dict[Any, list[Doc]] = {}
            for d in docs:
                if (key := _field(d, opts["field"])) is not None:
                    groups.setdefault(key, []).append(d)
            ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), str(kv[0])))
            shown = ranked[: int(opts.get("size", 10))]
            out[name] = {"doc_count_error_upper_bound": 0,
                         "sum_other_doc_count": sum(len(g) for _, g in ranked[len(shown):]),
                         "buckets": [{"key": k, "doc_count": len(g), **aggregate(g, sub, now)} for k, g in shown]}
        elif kind in ("avg", "min", "max", "sum"):
            fn = {"avg": lambda v: sum(v) / len(v), "min": min, "max": max, "sum": sum}[kind]
            out[name] = {"value": fn(numbers) if numbers or kind == "sum" else None}
        elif kind == "value_count":
            out[name] = {"value": len(numbers)}
        elif kind == "histogram":
            interval = float(opts["interval"])
            counts: dict[float, list[Doc]] = {}
            for d in docs:
                if isinstance(v := _field(d, opts["field"]), int | float):
                    counts.setdefault(math.floor(v / interval) * interval, []).append(d)
            keys = sorted(counts)
            filled = [keys[0] + i * interval for i in range(int(round((keys[-1] - keys[0]) / interval)) + 1)] if keys else []
            out[name] = {"buckets": [{"key": k, "doc_count": len(counts.get(k, [])),
                                      **aggregate(counts.get(k, []), sub, now)} for k in filled]}
        elif kind == "percentiles":
            percents = opts.get("percents", [1, 5, 25, 50, 75, 95, 99])
            out[name] = {"values": {f"{float(p)}": (percentile(numbers, float(p)) if numbers else None)
                                    for p in percents}}
        else:
            raise Unsupported(f"aggregation {kind!r}")
    return out


class SearchServer:
    def __init__(self) -> None:
        self.indices: dict[str, list[Doc]] = {}
        self.requests: list[SearchRequest] = []
        self._lock = threading.Lock()
        self._httpd = QuietThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="test-es", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self.indices.clear()
            self.requests.clear()

    def index(self, name: str, docs: list[Doc]) -> None:
        with self._lock:
            self.indices.setdefault(name, []).extend(docs)

    def search(self, pattern: str, body: dict[str, Any], now: datetime | None = None) -> tuple[int, dict[str, Any]]:
        now = now or datetime.now(UTC)
        with self._lock:
            names = [n for n in self.indices if any(fnmatch.fnmatchcase(n, p) for p in pattern.split(","))]
            docs = [d for n in names for d in self.indices[n]]
        if not names and "*" not in pattern:
            return 404, {"error": {"type": "index_not_found_exception", "reason": f"no such index [{pattern}]"},
                         "status": 404}
        try:
            hits = [d for d in docs if matches(d, body.get("query", {"match_all": {}}), now)]
            aggs = aggregate(hits, body.get("aggs") or body.get("aggregations") or {}, now)
        except (Unsupported, KeyError, TypeError, ValueError) as exc:
            return 400, {"error": {"type": "parsing_exception", "reason": f"the stand-in does not support: {exc}"},
                         "status": 400}
        size = int(body.get("size", 10))
        answer: dict[str, Any] = {
            "took": 1, "timed_out": False, "_shards": {"total": len(names), "successful": len(names), "failed": 0},
            "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": None,
                     "hits": [{"_index": "stand-in", "_source": d} for d in hits[:size]]}}
        if aggs:
            answer["aggregations"] = aggs
        return 200, answer


def _make_handler(server: SearchServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _search(self) -> None:
            raw = read_request_body(self)
            path = unquote(self.path.split("?", 1)[0])  # as Elasticsearch: /unjucks-%2A/ is unjucks-*
            parts = path.strip("/").split("/")
            if len(parts) != 2 or parts[1] != "_search":
                self._answer(404, {"error": {"type": "not_found", "reason": f"{self.command} {path}"}, "status": 404})
                return
            try:
                body = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                self._answer(400, {"error": {"type": "parse_exception", "reason": str(exc)}, "status": 400})
                return
            with server._lock:
                server.requests.append(SearchRequest(self.command, path, body))
            self._answer(*server.search(parts[0], body))

        do_GET = do_POST = _search

    return Handler


@pytest.fixture(scope="session")
def es_server() -> Iterator[SearchServer]:
    server = SearchServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def es(es_server: SearchServer) -> SearchServer:
    es_server.reset()
    return es_server
