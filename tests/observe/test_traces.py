"""Traces (docs/traces.md): one OpenTelemetry trace per run, exported over OTLP/HTTP to a
receiver on loopback that decodes what it gets with the collector's own protobuf messages
(tests/servers/otlp.py).

Runs go in-process through ``engine.run`` with a ``TraceSink`` as their consumer, as the command
line wires it; the CLI runs as a subprocess for what a user meets only there: ``--otel`` with
the standard environment (service name, resource attributes, headers), resume and rollback traced, the
SDK missing, and ``--version`` and an untraced run never importing the SDK.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import engine
from engine.execution import events as ev
from engine.observe import shown_endpoint, traces_endpoint, tracing_wanted
from engine.observe.tracing import TraceSink
from tests.helpers.cli import RUNPROC, child_env
from tests.servers._common import free_port

if TYPE_CHECKING:
    from tests.servers.otlp import OtlpReceiver, ReceivedSpan

pytest_plugins = ["tests.servers.otlp"]

CANARY = "cAnArY-7f3e9d-tr4ce"

INVENTORY = """\
[web]
web-1 ansible_connection=local
web-2 ansible_connection=local
"""

# a plain step, a step that succeeds on its second try, a fanned-out step whose every host
# retries once and that has an undo, a failing step whose action and message carry the canary
# (and a value derived from it), and a finally step
TRACED = """\
procedure: traced
inventory: hosts.ini
secrets:
  token: {env: TRACE_CANARY}
vars:
  backwards: "{{ secrets.token[::-1] }}"
steps:
  - id: first
    shell: echo hello
  - id: flaky
    shell: test -f flaky.mark || { touch flaky.mark; echo "no $TOKEN" >&2; exit 1; }
    env: {TOKEN: "{{ secrets.token }}"}
    retry: {attempts: 3, delay: 0.05s}
  - id: fan
    needs: [first]
    on: web
    shell: test -f {{ host.name }}.mark || { touch {{ host.name }}.mark; exit 4; }
    retry: {attempts: 2, delay: 0.05s}
    rollback:
      shell: echo undo {{ host.name }}
  - id: boom
    needs: [fan, flaky]
    assert: "false"
    message: "token {{ secrets.token }} or {{ vars.backwards }} was refused"
finally:
  - id: tidy
    shell: echo "done with {{ secrets.token }}"
"""


def _write(tmp_path: Path, text: str, name: str = "proc.yml") -> Path:
    (tmp_path / "hosts.ini").write_text(INVENTORY)
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _traced_run(tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch, endpoint: str,
                **options: Any) -> tuple[engine.RunResult, TraceSink, list[str]]:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.chdir(tmp_path)
    said: list[str] = []
    sink = TraceSink(None, say=said.append)
    result = engine.run(_write(tmp_path, text), state=f"sqlite:///{tmp_path}/state.db", on_event=sink, **options)
    return result, sink, said


def _one(spans: list[ReceivedSpan], name: str, parent: ReceivedSpan | None = None) -> ReceivedSpan:
    found = [s for s in spans if s.name == name and (parent is None or s.parent_span_id == parent.span_id)]
    assert len(found) == 1, f"{name}: {[(s.name, s.parent_span_id) for s in spans]}"
    return found[0]


# ---------------------------------------------------------------- a run's trace


@pytest.fixture(scope="module")
def failed_run(otlp_receiver: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory
               ) -> tuple[engine.RunResult, list[ReceivedSpan], list[str]]:
    tmp_path = tmp_path_factory.mktemp("traced")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRACE_CANARY", CANARY)
        result, _, said = _traced_run(tmp_path, TRACED, mp, otlp_receiver.endpoint)
    return result, otlp_receiver.wait_for(result.run_id), said


def test_a_run_is_one_trace_a_span_per_step_host_attempt_and_rollback(failed_run: Any) -> None:
    result, spans, said = failed_run
    assert result.exit_code == 1 and said == []
    assert len({s.trace_id for s in spans}) == 1
    root = _one(spans, "run traced")
    assert root.parent_span_id == ""
    assert root.status == "ERROR" and root.message.startswith("boom: ")
    assert root.attributes["runproc.run_id"] == result.run_id
    assert root.attributes["runproc.status"] == "failed" and root.attributes["runproc.exit_code"] == 1
    assert root.attributes["runproc.root_cause"] == "boom" and root.attributes["runproc.rolled_back"] == ["fan"]
    assert root.resource["service.name"] == "runproc"

    first = _one(spans, "step first", root)
    assert first.status == "OK"
    assert first.attributes["runproc.executor"] == "shell" and first.attributes["runproc.step.id"] == "first"
    assert first.attributes["runproc.dry_run"] is False and first.attributes["runproc.run_id"] == result.run_id

    flaky = _one(spans, "step flaky", root)
    assert flaky.status == "OK" and flaky.attributes["runproc.attempts"] == 2
    one, two = _one(spans, "attempt 1", flaky), _one(spans, "attempt 2", flaky)
    assert (one.status, two.status) == ("ERROR", "OK") and one.message == "command exited with 1"
    assert one.attributes["runproc.attempt"] == 1 and two.attributes["runproc.attempt"] == 2
    assert one.end <= two.start  # the wait lies between them

    fan = _one(spans, "step fan", root)
    assert fan.attributes["runproc.hosts"] == 2
    for name in ("web-1", "web-2"):
        host = _one(spans, f"host {name}", fan)
        assert host.status == "OK" and host.attributes["runproc.host"] == name
        assert host.attributes["runproc.attempts"] == 2
        retried = _one(spans, "attempt 1", host)
        assert retried.status == "ERROR" and retried.attributes["runproc.host"] == name
        assert _one(spans, "attempt 2", host).status == "OK"
        assert fan.start <= host.start <= host.end <= fan.end

    boom = _one(spans, "step boom", root)
    assert boom.status == "ERROR" and boom.attributes["runproc.executor"] == "assert"
    assert "***" in boom.message and "refused" in boom.message

    undo = _one(spans, "rollback fan", root)
    assert undo.status == "OK" and undo.attributes["runproc.step.phase"] == "rollback"
    assert boom.end <= undo.start

    tidy = _one(spans, "step tidy", root)
    assert tidy.status == "OK" and tidy.attributes["runproc.step.phase"] == "finally"
    for span in spans:  # every span lies within the run's
        assert root.start <= span.start <= span.end <= root.end, span.name


def test_no_secret_nor_a_value_derived_from_one_leaves_in_a_span(failed_run: Any,
                                                                  otlp_receiver: OtlpReceiver) -> None:
    result, spans, _ = failed_run
    bodies = otlp_receiver.bodies_of(result.run_id)
    assert bodies
    for form in (CANARY, CANARY[::-1], CANARY.upper()):
        assert not any(form.encode() in body for body in bodies), form
    shown = [s for s in spans if "***" in str(s.attributes.get("runproc.action", "")) or "***" in s.message]
    assert {s.name for s in shown} >= {"step boom", "step tidy"}  # masked, not dropped


def test_a_dry_run_is_traced_as_one(otlp_receiver: OtlpReceiver, tmp_path: Path,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    text = """\
    procedure: planned
    steps:
      - id: look
        shell: echo looking
        readonly: true
      - id: change
        shell: echo changing
    """
    result, _, said = _traced_run(tmp_path, text, monkeypatch, otlp_receiver.endpoint, dry_run=True)
    assert result.status == "planned" and said == []
    spans = otlp_receiver.wait_for(result.run_id)
    root = _one(spans, "run planned")
    assert root.status == "OK" and root.attributes["runproc.dry_run"] is True
    change = _one(spans, "step change", root)
    assert change.attributes["runproc.status"] == "planned" and change.attributes["runproc.dry_run"] is True
    assert _one(spans, "step look", root).attributes["runproc.status"] == "ok"


def test_an_unreachable_collector_is_one_warning_and_never_fails_the_run(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "0.3")  # the standard bound of the end's wait
    text = """\
    procedure: lonely
    steps:
      - id: only
        shell: echo hi
    """
    result, _, said = _traced_run(tmp_path, text, monkeypatch, f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 0
    assert len(said) == 1 and said[0].startswith("traces not exported to http://127.0.0.1:")


def test_a_temporal_run_is_traced_from_the_events_it_is_followed_by(otlp_receiver: OtlpReceiver,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``--engine``: the command that follows the workflow hears its events translated
    (engine/distributed/events.py) and traces them the same way."""
    from engine.distributed.events import Translator

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_receiver.endpoint)
    sink = TraceSink(None)
    follow = Translator(sink)
    run_id = "temporal-" + free_port().__str__()
    entry = {"id": "deploy", "status": "failed", "phase": "step", "started_at": "2026-12-04T10:00:00.000Z",
             "duration": 0.5, "attempts": 1, "error": "exit 1"}
    follow({"kind": "run_started", "run_id": run_id, "procedure": "remote", "dry_run": False,
            "steps": [["deploy", "deploy"]], "started_at": "2026-12-04T10:00:00.000Z"})
    follow({"kind": "step_started", "step": "deploy", "phase": "step"})
    follow({"kind": "step_finished", "step": "deploy", "entry": entry})
    follow({"kind": "run_finished", "report": {"procedure": "remote", "run_id": run_id, "status": "failed",
                                               "exit_code": 1, "dry_run": False, "started_at": entry["started_at"],
                                               "duration": 0.6, "steps": [entry], "error": "step deploy failed",
                                               "root_cause": "deploy"}})
    spans = otlp_receiver.wait_for(run_id)
    root = _one(spans, "run remote")
    step = _one(spans, "step deploy", root)
    assert (root.status, step.status, step.message) == ("ERROR", "ERROR", "exit 1")


def test_a_grpc_protocol_in_the_environment_is_said_once_and_http_is_used(otlp_receiver: OtlpReceiver,
                                                                          tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    text = "procedure: grpc-asked\nsteps:\n  - id: only\n    shell: echo hi\n"
    result, _, said = _traced_run(tmp_path, text, monkeypatch, otlp_receiver.endpoint)
    assert len(said) == 1 and "OTEL_EXPORTER_OTLP_PROTOCOL=grpc" in said[0] and "http/protobuf" in said[0]
    assert _one(otlp_receiver.wait_for(result.run_id), "run grpc-asked").status == "OK"


# ---------------------------------------------------------------- when tracing is on


def test_tracing_is_on_with_the_flag_or_the_standard_environment() -> None:
    assert tracing_wanted(True, {})
    assert not tracing_wanted(False, {})
    assert tracing_wanted(False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing_wanted(False, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing_wanted(False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"})
    assert not tracing_wanted(False, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"})
    assert tracing_wanted(True, {"OTEL_SDK_DISABLED": "true"})  # the operator asked for this run
    assert traces_endpoint({}) == "http://localhost:4318/v1/traces"
    assert traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/"}) == "https://c:4318/v1/traces"
    assert traces_endpoint({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT":
                            "https://t/x"}) == "https://t/x"
    assert shown_endpoint("https://user:pw@c:4318/v1/traces") == "https://c:4318/v1/traces"


# ---------------------------------------------------------------- the command line


def _cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None,
         pythonpath: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in child_env(env).items() if not k.startswith("OTEL_")}
    clean.update({k: v for k, v in (env or {}).items()})
    if pythonpath is not None:
        clean["PYTHONPATH"] = pythonpath
    return subprocess.run([*RUNPROC, *args], cwd=tmp_path, env=clean, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_otel_flag_exports_with_the_standard_environment_and_resume_and_rollback_are_traced(
        otlp_receiver: OtlpReceiver, tmp_path: Path) -> None:
    import json

    path = _write(tmp_path, """\
    procedure: cli-traced
    steps:
      - id: change
        shell: echo change
        rollback:
          shell: echo undo
      - id: breaks
        shell: test -f fixed
    """)
    state = f"sqlite:///{tmp_path}/state.db"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": otlp_receiver.endpoint, "OTEL_SERVICE_NAME": "payments-runbooks",
           "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=staging",
           "OTEL_EXPORTER_OTLP_HEADERS": "x-trace-key=k-123"}
    done = _cli(tmp_path, str(path), "--otel", "--no-rollback", "--output", "json", "--state", state, env=env)
    assert done.returncode == 1, done.stderr
    assert "trace" not in done.stderr  # exported: nothing to say
    run_id = json.loads(done.stdout)["run_id"]
    root = _one(otlp_receiver.wait_for(run_id), "run cli-traced")
    assert root.resource["service.name"] == "payments-runbooks"
    assert root.resource["deployment.environment"] == "staging"
    assert any(h.get("x-trace-key") == "k-123" for h in otlp_receiver.headers)

    (tmp_path / "fixed").write_text("")
    resumed = _cli(tmp_path, "resume", run_id, "--otel", "--output", "json", "--state", state, env=env)
    assert resumed.returncode == 0, resumed.stderr
    again = json.loads(resumed.stdout)["run_id"]
    spans = otlp_receiver.wait_for(again)
    assert _one(spans, "step breaks").status == "OK"
    assert _one(spans, "step change").attributes["runproc.recorded"] is True  # not run again

    undone = _cli(tmp_path, "rollback", again, "--yes", "--otel", "--output", "json", "--state", state, env=env)
    assert undone.returncode == 0, undone.stderr
    spans = otlp_receiver.wait_for(json.loads(undone.stdout)["run_id"])
    assert _one(spans, "run cli-traced").attributes["runproc.replay"] == "rollback"
    assert _one(spans, "rollback change").status == "OK"


def test_otel_without_the_sdk_is_refused_and_the_environment_alone_only_warns(tmp_path: Path) -> None:
    stub = tmp_path / "stub"
    (stub / "opentelemetry").mkdir(parents=True)
    # a regular package first on the path hides the installed namespace package
    (stub / "opentelemetry" / "__init__.py").write_text("raise ImportError('no SDK here', name='opentelemetry')\n")
    path = _write(tmp_path, "procedure: plain\nsteps:\n  - id: only\n    shell: echo hi\n")
    state = f"sqlite:///{tmp_path}/state.db"
    refused = _cli(tmp_path, str(path), "--otel", "--state", state, pythonpath=str(stub))
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--otel" in lines[0] and "runproc[otel]" in lines[0]
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    warned = _cli(tmp_path, str(path), "--state", state, "--output", "json", env=env, pythonpath=str(stub))
    assert warned.returncode == 0
    assert [line for line in warned.stderr.splitlines() if "trace" in line] == [warned.stderr.strip()]
    assert "runproc[otel]" in warned.stderr


def test_version_and_an_untraced_run_never_import_the_sdk(tmp_path: Path) -> None:
    path = _write(tmp_path, "procedure: plain\nsteps:\n  - id: only\n    shell: echo hi\n")
    code = textwrap.dedent(f"""
        import sys
        from engine.cli.app import main
        assert main(["--version"]) == 0
        assert main([{str(path)!r}, "--state", "sqlite:///{tmp_path}/state.db", "--output", "json"]) == 0
        loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
        print("LOADED", loaded, file=sys.stderr)
        sys.exit(3 if loaded else 0)
    """)
    env = {k: v for k, v in child_env().items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_the_event_stream_says_which_host_retried() -> None:
    """A fanned-out step's retry names its host (StepRetrying.host), so a host's attempts are its own spans."""
    assert ev.StepRetrying("s", 1, 0.0, None, "web-1").host == "web-1"
    assert ev.StepRetrying("s", 1, 0.0, None).host is None


def test_the_example_collector_prints_the_example_release_as_a_tree(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/traces.md's "Try it": examples/traces/collector.py gets examples/traces/release.yml's trace."""
    root = Path(__file__).resolve().parents[2] / "examples" / "traces"
    collector = subprocess.Popen([sys.executable, str(root / "collector.py"), "0"], stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
    try:
        assert collector.stdout is not None
        first = collector.stdout.readline()
        assert first.startswith("listening on http://127.0.0.1:"), first
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", first.split()[-1])
        monkeypatch.setenv("TMPDIR", str(tmp_path))  # the example's marker file
        monkeypatch.setenv("TRACE_TOKEN", CANARY)
        monkeypatch.chdir(tmp_path)
        sink = TraceSink(None)
        result = engine.run(root / "release.yml", {"smoke_fails": True}, state=f"sqlite:///{tmp_path}/state.db",
                            on_event=sink)
        assert result.exit_code == 1
        # the collector answered every export, after printing: its lines are there to read
        assert sink.exported > 0 and sink.failed_exports == 0
        lines: list[str] = []
        while not any(line.lstrip().startswith("step tidy") for line in lines):
            line = collector.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
    finally:
        collector.terminate()
        collector.wait(timeout=10)
    shown = "".join(lines)
    assert f"run {result.run_id})" in shown and "run traced-release  [ERROR: smoke: " in shown
    assert "\n    attempt 1  [ERROR: command exited with 1]" in shown and "\n    host web-2  [OK]" in shown
    assert "\n  rollback deploy  [OK]" in shown and CANARY not in shown
