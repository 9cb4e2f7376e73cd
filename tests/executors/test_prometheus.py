"""The prometheus executor against a real Prometheus scraping an exporter on loopback
(tests/servers/prometheus.py, one server for the session).

Each test gives its series a label value of its own (``Exporter.unique()``), so what another
test exported never matters; after changing the exporter, a test waits (``wait_for``) until
Prometheus has scraped the change before it runs a procedure. Procedures run in-process
through ``engine.run``; the CLI runs once for an error as a user meets it, and once for the
shipped blue-green procedure whose gate reads Prometheus.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import engine
from engine.execution.events import Event, StepRetrying
from engine.executors.base import Effect
from engine.executors.prometheus import PrometheusExecutor, PrometheusOptions
from engine.executors.promql import QueryValueError, build_query, parse_time, shape
from engine.format.expressions import SqlIdent, SqlParam
from tests.helpers.cli import RUNPROC, child_env
from tests.servers._common import free_port
from tests.servers.http import HttpServer
from tests.servers.kube import KubeApi

if TYPE_CHECKING:
    from tests.servers.prometheus import PrometheusServer

# the session's Prometheus (tests/conftest.py lists the fixtures every test module shares)
pytest_plugins = ["tests.servers.prometheus"]

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = "http_requests_total"


def run(tmp_path: Path, text: str, **options: Any) -> engine.RunResult:
    path = tmp_path / "proc.yml"
    path.write_text(textwrap.dedent(text))
    return engine.run(path, state=f"sqlite:///{tmp_path}/state.db", **options)


def proc(prom: PrometheusServer, steps: str, *, params: str = "") -> str:
    """A procedure with one prometheus connection ``metrics``; ``steps`` is the steps list."""
    return (f"procedure: prom-test\n{params}connections:\n  metrics: {{prometheus: \"{prom.url}\"}}\n"
            + "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  "))


def error_ratio(app: str, window: str = "2s") -> str:
    return (f'sum(rate({REQUESTS}{{app="{app}",code="500"}}[{window}])) '
            f'/ sum(rate({REQUESTS}{{app="{app}"}}[{window}]))')


def traffic(prom: PrometheusServer, app: str, *, ok: float, errors: float) -> None:
    """Requests per scrape for ``app``, answered 200 or 500."""
    prom.exporter.counter(REQUESTS, {"app": app, "code": "200"}, ok)
    prom.exporter.counter(REQUESTS, {"app": app, "code": "500"}, errors)


# ---------------------------------------------------------------- queries


def test_instant_query_value_and_series(tmp_path: Path, prometheus_server: PrometheusServer) -> None:
    prom = prometheus_server
    room = prom.exporter.unique()
    prom.exporter.gauge("temperature_celsius", {"room": room, "sensor": "a"}, 21.5)
    prom.exporter.gauge("temperature_celsius", {"room": room, "sensor": "b"}, 19)
    prom.wait_for(f'count(temperature_celsius{{room="{room}"}}) == 2')
    result = run(tmp_path, proc(prom, f"""
        - id: one
          prometheus: temperature_celsius{{room="{room}", sensor="a"}}
        - id: both
          prometheus: {{query: 'temperature_celsius{{room="{room}"}}', connection: metrics}}
        - id: none
          prometheus: temperature_celsius{{room="no-such-room"}}
        - id: scalar
          prometheus: scalar(max(temperature_celsius{{room="{room}"}}))
        - id: later
          assert: steps.one.value == 21.5 and steps.both.count == 2 and steps.none.value is none
        """))
    assert result.status == "ok", result.error
    one = result.steps["one"].fields
    assert one["value"] == 21.5 and one["count"] == 1 and one["result_type"] == "vector"
    assert one["series"][0]["labels"]["sensor"] == "a"
    both = result.steps["both"].fields
    assert both["value"] is None  # two series: no single value
    assert sorted((s["labels"]["sensor"], s["value"]) for s in both["series"]) == [("a", 21.5), ("b", 19.0)]
    assert result.steps["none"].fields["series"] == [] and result.steps["none"].fields["value"] is None
    assert result.steps["scalar"].fields["value"] == 21.5
    assert result.steps["one"].description == f'prometheus[metrics]: temperature_celsius{{room="{room}", sensor="a"}}'


def test_range_query_series(tmp_path: Path, prometheus_server: PrometheusServer) -> None:
    prom = prometheus_server
    room = prom.exporter.unique()
    prom.exporter.gauge("temperature_celsius", {"room": room}, 7)
    prom.wait_for(f'count_over_time(temperature_celsius{{room="{room}"}}[10s]) >= 6')  # 3 s of samples: points at two 1 s steps
    result = run(tmp_path, proc(prom, f"""
        - id: history
          prometheus:
            query: temperature_celsius{{room="{room}"}}
            range: {{start: now-10s, end: now, step: 1s}}
        - id: short
          prometheus: {{query: 'temperature_celsius{{room="{room}"}}', range: 10s}}
        """))
    assert result.status == "ok", result.error
    fields = result.steps["history"].fields
    assert fields["result_type"] == "matrix" and fields["count"] == 1 and fields["value"] is None
    series = fields["series"][0]
    assert series["labels"]["room"] == room
    assert len(series["values"]) >= 2
    assert all(isinstance(t, float) and v == 7.0 for t, v in series["values"])
    assert series["last"] == series["min"] == series["max"] == 7.0
    assert result.steps["history"].description.endswith("(range now-10s to now, step 1s)")
    assert result.steps["short"].fields["series"][0]["values"]


# ---------------------------------------------------------------- gates


GATED = """
    - id: deploy
      shell: echo deployed >> {log}
      verify:
        - name: error rate under 1%
          prometheus: '{query}'
          expect: result.value < 0.01
      rollback:
        shell: echo rolled back >> {log}
    """


def test_a_check_gates_a_step_and_a_high_error_rate_rolls_it_back(tmp_path: Path,
                                                                  prometheus_server: PrometheusServer) -> None:
    prom = prometheus_server
    app = prom.exporter.unique("app")
    traffic(prom, app, ok=100, errors=0)
    prom.wait_for(error_ratio(app), lambda v: v == 0.0)
    log = tmp_path / "deploy.log"
    text = proc(prom, GATED.format(log=log, query=error_ratio(app)))
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    assert log.read_text().split("\n")[:-1] == ["deployed"]

    traffic(prom, app, ok=100, errors=50)
    prom.wait_for(error_ratio(app), lambda v: v is not None and v > 0.01)
    result = run(tmp_path, text)
    assert result.status == "failed" and result.exit_code == 1
    step = result.steps["deploy"]
    assert step.status == "failed" and step.error_kind == "assertion"
    assert step.rollback is not None and step.rollback.status == "ok"  # the gate undid the change
    assert step.error == "verify failed: error rate under 1%: expected result.value < 0.01"
    assert log.read_text().split("\n")[:-1] == ["deployed", "deployed", "rolled back"]


def test_retry_until_waits_for_the_error_rate_to_fall(tmp_path: Path, prometheus_server: PrometheusServer) -> None:
    prom = prometheus_server
    app = prom.exporter.unique("app")
    traffic(prom, app, ok=100, errors=50)
    prom.wait_for(error_ratio(app), lambda v: v is not None and v > 0.01)
    retries: list[int] = []

    def on_event(event: Event) -> None:
        # the first attempt saw the high error rate: now the service recovers
        if isinstance(event, StepRetrying):
            if not retries:
                traffic(prom, app, ok=100, errors=0)
            retries.append(event.attempt)

    result = run(tmp_path, proc(prom, f"""
        - id: healthy
          prometheus: '{error_ratio(app)}'
          retry: {{attempts: 300, delay: 100ms, until: result.value is number and result.value < 0.01}}
        """), on_event=on_event)
    assert result.status == "ok", result.error
    step = result.steps["healthy"]
    assert step.attempts >= 2 and retries[0] == 1
    assert step.fields["value"] < 0.01


# ---------------------------------------------------------------- errors


def test_a_promql_syntax_error_is_one_line(tmp_path: Path, prometheus_server: PrometheusServer) -> None:
    path = tmp_path / "proc.yml"
    path.write_text(proc(prometheus_server, """
        - id: broken
          prometheus: sum(rate(http_requests_total[5m])
        """))
    out = subprocess.run([*RUNPROC, str(path), "--output", "json"], capture_output=True, text=True,
                         env=child_env({"RUNPROC_STATE": f"sqlite:///{tmp_path}/state.db"}), timeout=60)
    assert out.returncode == 1, out.stderr
    assert "Traceback" not in out.stderr
    step = json.loads(out.stdout)["steps"][0]
    assert step["status"] == "failed"
    error = step["error"]
    assert error.startswith(f"prometheus {prometheus_server.url}: bad_data: ")
    assert error.endswith("(query: sum(rate(http_requests_total[5m]))")
    assert "\n" not in error


def test_unreachable_server_and_a_url_without_prometheus_are_one_line(tmp_path: Path,
                                                                      prometheus_server: PrometheusServer) -> None:
    port = free_port()
    result = run(tmp_path, f"""
        procedure: prom-errors
        steps:
          - id: nobody
            prometheus: {{query: up, url: "http://127.0.0.1:{port}"}}
            continue_on_error: true
          - id: elsewhere
            prometheus: {{query: up, url: "{prometheus_server.url}/not-the-api"}}
            continue_on_error: true
        """)
    nobody = result.steps["nobody"]
    assert nobody.status == "failed" and nobody.error_kind == "environment"
    assert nobody.error.startswith(f"prometheus http://127.0.0.1:{port}: cannot connect: ")
    elsewhere = result.steps["elsewhere"]
    assert elsewhere.status == "failed" and elsewhere.error_kind == "environment"
    assert elsewhere.error.startswith(f"prometheus {prometheus_server.url}/not-the-api: HTTP 404 ")
    assert "not a Prometheus API answer" in elsewhere.error
    assert "\n" not in nobody.error + elsewhere.error


def test_a_slow_query_ends_at_the_step_timeout(tmp_path: Path, http: HttpServer) -> None:
    # a stand-in that answers too late: a real Prometheus cannot be made slow on demand
    http.set_route("GET", "/api/v1/query", json={"status": "success", "data": {"resultType": "vector",
                                                                                "result": []}}, delay=5)
    result = run(tmp_path, f"""
        procedure: prom-slow
        steps:
          - id: slow
            prometheus: {{query: up, url: "{http.url}"}}
            timeout: 300ms
        """)
    step = result.steps["slow"]
    assert step.status == "timed_out"
    assert step.error == f"prometheus {http.url}: timed out (step timeout)"
    sent = http.requests_to("/api/v1/query")[0].query
    assert sent["query"] == ["up"] and 0 < float(sent["timeout"][0]) <= 0.3  # Prometheus stops too


def test_credentials_in_the_url_never_show(tmp_path: Path, prometheus_server: PrometheusServer) -> None:
    port = prometheus_server.port
    result = run(tmp_path, f"""
        procedure: prom-credentials
        steps:
          - id: ok
            prometheus: {{query: vector(1), url: "http://ops:pw-7f3e9a@127.0.0.1:{port}"}}
          - id: nobody
            prometheus: {{query: vector(1), url: "http://ops:pw-7f3e9a@127.0.0.1:{free_port()}"}}
            continue_on_error: true
        """)
    assert result.steps["ok"].status == "ok" and result.steps["ok"].fields["value"] == 1.0
    assert result.steps["ok"].description == f"prometheus[http://ops:***@127.0.0.1:{port}]: vector(1)"
    assert result.steps["nobody"].status == "failed"
    assert "pw-7f3e9a" not in json.dumps(result.to_json(), default=str)


# ---------------------------------------------------------------- dry run


def test_a_dry_run_runs_queries_and_gates_but_changes_nothing(tmp_path: Path,
                                                              prometheus_server: PrometheusServer) -> None:
    prom = prometheus_server
    app = prom.exporter.unique("app")
    traffic(prom, app, ok=100, errors=50)
    prom.wait_for(error_ratio(app), lambda v: v is not None and v > 0.01)
    marker = tmp_path / "changed"
    text = proc(prom, f"""
        - id: rate
          prometheus: '{error_ratio(app)}'
        - id: change
          shell: touch {marker}
          preconditions:
            - name: error rate under 1% before the change
              prometheus: '{error_ratio(app)}'
              expect: result.value < 0.01
        """)
    result = run(tmp_path, text, dry_run=True)
    assert result.steps["rate"].status == "ok"
    assert result.steps["rate"].fields["value"] > 0.01  # the query ran in the dry run
    change = result.steps["change"]
    assert change.status == "failed"  # so did the gate: the plan says the change would be refused
    assert change.error == ("precondition failed: error rate under 1% before the change: "
                            "expected result.value < 0.01")
    assert not marker.exists()
    assert PrometheusExecutor().effect(PrometheusOptions(query="up")) == Effect.READ

    traffic(prom, app, ok=100, errors=0)
    prom.wait_for(error_ratio(app), lambda v: v == 0.0)
    result = run(tmp_path, text, dry_run=True)
    assert result.status == "planned", result.error
    assert result.steps["change"].status == "planned" and not marker.exists()


# ---------------------------------------------------------------- values never become PromQL


def test_values_are_data_in_the_query(tmp_path: Path, prometheus_server: PrometheusServer) -> None:
    prom = prometheus_server
    room = prom.exporter.unique()
    prom.exporter.gauge("temperature_celsius", {"room": room}, 3)
    prom.wait_for(f'temperature_celsius{{room="{room}"}}')
    sneaky = f'{room}"}} or vector(1) #'
    params = (f"params:\n  room: {{default: '{sneaky}'}}\n  plain: {{default: '{room}'}}\n"
              f"  window: {{default: 1m}}\n  clause: {{default: 'or vector(1)'}}\n"
              f"  whole: {{default: 'temperature_celsius{{room=\"{room}\"}}'}}\n")
    result = run(tmp_path, proc(prom, """
        - id: quoted
          prometheus: 'temperature_celsius{room="{{ params.room }}"}'
        - id: window
          prometheus: 'max_over_time(temperature_celsius{room="{{ params.plain }}"}[{{ params.window }}])'
        - id: whole
          prometheus: "{{ params.whole }}"
        - id: clause
          prometheus: 'temperature_celsius {{ params.clause }}'
          continue_on_error: true
        """, params=params))
    quoted = result.steps["quoted"]
    assert quoted.status == "ok" and quoted.fields["count"] == 0  # a label value that matches nothing
    assert quoted.description == f'prometheus[metrics]: temperature_celsius{{room="{room}\\"}} or vector(1) #"}}'
    assert result.steps["window"].fields["value"] == 3.0
    assert result.steps["whole"].fields["value"] == 3.0
    clause = result.steps["clause"]
    assert clause.status == "failed"
    assert clause.error == ("prometheus: a value outside a quoted string must be a number, a duration or a "
                            "name, got 'or vector(1)' (put it inside quotes to match it as a label value, "
                            "or make the whole query one value)")


def test_build_query_places_each_value_for_where_it_lands() -> None:
    def q(*parts: Any) -> str:
        """Literal text and values in turn: text, value, text, ..."""
        return build_query([p if i % 2 == 0 or isinstance(p, SqlIdent) else SqlParam(p) for i, p in enumerate(parts)])

    assert q('up{job="', 'a"b\\c\nd', '"}') == 'up{job="a\\"b\\\\c\\nd"}'
    assert q("up{job='", "it's", "'}") == "up{job='it\\'s'}"
    assert q("up{job=`", 'a"b', "`}") == 'up{job=`a"b`}'
    assert q("rate(x[", "5m", "]) > ", 0.25, " * ", 1e-05) == "rate(x[5m]) > 0.25 * 1e-05"
    assert q("", SqlIdent("http_requests_total"), "{}") == "http_requests_total{}"
    assert q("x # ", "note", "\n+ 1") == "x # note\n+ 1"
    assert q(" ", "sum(up) by (job)", "\n") == "sum(up) by (job)"  # the whole query is the value
    assert q('up{job="a\\"', "b", '"}') == 'up{job="a\\"b"}'  # an escaped quote does not end the string
    for bad in ("or", "1 or vector(1)", "x)", "a b"):
        with pytest.raises(QueryValueError):
            q("up ", bad)
    with pytest.raises(QueryValueError):
        q("up{job=`", "a`b", "`}")
    with pytest.raises(QueryValueError):
        q("x # ", "two\nlines", "\n")


def test_times_and_sample_values() -> None:
    now = 1_700_000_000.0
    assert parse_time("now", now) == now
    assert parse_time("now-30m", now) == parse_time("-30m", now) == now - 1800
    assert parse_time("now - 1h30m", now) == now - 5400
    assert parse_time(1_600_000_000, now) == 1_600_000_000.0
    assert parse_time("2024-03-20T14:30:00Z", now) == parse_time("2024-03-20T14:30:00", now) == 1710945000.0
    assert parse_time("2024-03-20T15:30:00+01:00", now) == 1710945000.0
    with pytest.raises(ValueError, match="expected a time such as now"):
        parse_time("yesterday", now)
    fields = shape({"resultType": "vector", "result": [{"metric": {}, "value": [now, "NaN"]}]})
    assert fields["value"] == "NaN"  # JSON (and a PostgreSQL journal) cannot hold NaN as a number
    fields = shape({"resultType": "matrix", "result": [{"metric": {"a": "b"}, "values": [[1, "2"], [2, "+Inf"]]}]})
    assert fields["series"][0] == {"labels": {"a": "b"}, "values": [[1.0, 2.0], [2.0, "+Inf"]],
                                   "last": "+Inf", "min": 2.0, "max": 2.0}


# ---------------------------------------------------------------- loading


@pytest.mark.parametrize(("step", "message"), [
    ("prometheus: {query: up, time: now, range: 5m}", "give 'time' (an instant query) or 'range'"),
    ("prometheus: {query: up, time: yesterday}", "expected a time such as now"),
    ("prometheus: {query: up, range: {start: now-1h, step: 0s}}", "step must be more than 0"),
    ("prometheus: {query: up, url: 'http://x', connection: metrics}", "give 'url' or 'connection', not both"),
    ("prometheus: {query: up, connection: api}", "connection 'api' is http; prometheus needs prometheus"),
    ("prometheus: {query: up, ranges: 5m}", "ranges"),
])
def test_option_mistakes_are_located_errors_before_anything_runs(tmp_path: Path, step: str, message: str) -> None:
    path = tmp_path / "proc.yml"
    path.write_text("procedure: p\nconnections:\n  metrics: {prometheus: 'http://127.0.0.1:9'}\n"
                    f"  api: {{http: 'http://127.0.0.1:9'}}\nsteps:\n  - id: q\n    {step}\n")
    with pytest.raises(engine.ProcedureError) as info:
        engine.load(path)
    text = str(info.value)
    assert message in text and f"{path}:7:" in text


def test_loading_the_executor_does_not_import_httpx() -> None:
    code = ("import sys, engine.executors.prometheus as m; m.PrometheusExecutor(); "
            "assert 'httpx' not in sys.modules, 'httpx imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# ---------------------------------------------------------------- the docs' example and the blue-green gate


def test_the_docs_example_gates_a_change_on_prometheus_own_error_rate(tmp_path: Path,
                                                                    prometheus_server: PrometheusServer) -> None:
    prom = prometheus_server
    prom.wait_for('sum(rate(prometheus_http_requests_total{job="prometheus"}[1m])) > 0')
    example = ROOT / "examples" / "prometheus" / "error-rate-gate.yml"
    params = {"prometheus_url": prom.url}
    state = f"sqlite:///{tmp_path}/state.db"
    plan = engine.run(example, params=params, dry_run=True, state=state)
    assert plan.status == "planned", plan.error
    assert plan.steps["targets"].status == plan.steps["error_rate"].status == "ok"
    assert plan.steps["change"].status == "planned" and plan.steps["history"].status == "ok"
    result = engine.run(example, params=params, state=state)
    assert result.status == "ok", result.error
    assert result.steps["error_rate"].fields["value"] == 0.0
    assert result.steps["history"].fields["series"][0]["values"]
    assert result.steps["change"].fields["stdout"] == "the change goes here (error rate before it 0.0)\n"



def test_blue_green_deploy_passes_its_metric_gate(tmp_path: Path, prometheus_server: PrometheusServer,
                                                  kube: KubeApi, http: HttpServer) -> None:
    prom = prometheus_server
    app = prom.exporter.unique("web-")
    for colour in ("blue", "green"):
        kube.seed_deployment(f"{app}-{colour}", replicas=1, containers={"web": "web:1.0.0"},
                             labels={"app": app, "version": colour})
    kube.seed_service(app, selector={"app": app, "version": "blue"}, port=3000)
    labels = {"app": app, "version": "green"}
    prom.exporter.counter(REQUESTS, {**labels, "status": "200"}, 100)
    prom.exporter.counter(REQUESTS, {**labels, "status": "500"}, 0)
    for le, count in (("0.1", 90), ("0.25", 100), ("+Inf", 100)):  # p95 = 0.175 s
        prom.exporter.counter("http_request_duration_seconds_bucket", {**labels, "le": le}, count)
    # the gate's own queries (procedures/blue-green-deploy.yml) answer before the run starts: a
    # first attempt that found no data would wait out the gate's 30 s retry delay
    matcher = f'app="{app}", version="green"'
    prom.wait_for(f'max_over_time((sum(rate({REQUESTS}{{{matcher}, status=~"5.."}}[1m])) '
                  f"/ sum(rate({REQUESTS}{{{matcher}}}[1m])))[5m:])", lambda v: v == 0.0)
    prom.wait_for(f"max_over_time(histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket"
                  f"{{{matcher}}}[1m])))[5m:])", lambda v: v is not None and v < 0.5)
    values = {"version": "1.1.0", "app": app, "container": "web", "image": "web", "kube_context": "test",
              "smoke_dir": str(tmp_path), "health_cmd": "true", "smoke_cmd": "true", "public_url": http.url,
              "prometheus_url": prom.url}
    args = [arg for k, v in values.items() for arg in ("-p", f"{k}={v}")]
    out = subprocess.run([*RUNPROC, str(ROOT / "procedures" / "blue-green-deploy.yml"), *args, "--yes",
                          "--output", "json"], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                         env=child_env({**kube.env(), "RUNPROC_STATE": f"sqlite:///{tmp_path}/state.db"}))
    assert out.returncode == 0, (out.stderr[-2000:], out.stdout[-2000:])
    steps = {s["id"]: s for s in json.loads(out.stdout)["steps"]}
    assert steps["error_rate"]["status"] == "ok" and steps["error_rate"]["value"] == 0.0
    assert steps["latency"]["status"] == "ok" and 0.1 < steps["latency"]["value"] < 0.25
    assert kube.get("service", "unjucks-prod", app)["spec"]["selector"]["version"] == "green"
