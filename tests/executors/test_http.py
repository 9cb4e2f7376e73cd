"""The http executor against a recording HTTP server on loopback (tests/servers/http.py).

Procedures are written to ``tmp_path`` and run through ``engine.run``; assertions read what the
server received (``http.requests``) and the RunResult as a user sees it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.executors.base import Effect
from engine.executors.http import HttpExecutor, HttpOptions, join_url, status_ranges
from tests.servers._common import free_port
from tests.servers.http import HttpServer

TOKEN = "tok-9f8e7d6c5b4a"


def run(tmp_path: Path, text: str, **options: Any) -> engine.RunResult:
    path = tmp_path / "proc.yml"
    path.write_text(textwrap.dedent(text))
    return engine.run(path, state=f"sqlite:///{tmp_path}/state.db", **options)


def proc(http: HttpServer, steps: str, *, extra: str = "", conn: str = "") -> str:
    """A procedure with an http connection ``api`` on the test server; ``steps`` is the steps list."""
    conn = conn or f"  api: {{http: {{base_url: \"{http.url}\"}}}}\n"
    return (f"procedure: http-test\n{extra}connections:\n{conn}"
            + "steps:\n" + textwrap.indent(textwrap.dedent(steps), "  "))


# ---------------------------------------------------------------- dry run


def test_dry_run_sends_reads_and_never_writes(tmp_path: Path, http: HttpServer) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        http.set_route(method, "/things", status=200, json={"done": True})
    text = proc(http, """
        - id: health
          http: {path: /health}
        - id: create
          http: {method: POST, path: /things, json: {name: x}}
        - id: replace
          http: {method: PUT, path: /things, body: "x"}
        - id: remove
          http: {method: DELETE, path: /things}
        - id: tweak
          http: {method: patch, path: /things}
        """)
    result = run(tmp_path, text, dry_run=True)
    assert result.status == "planned", result.error
    assert [(r.method, r.path) for r in http.requests] == [("GET", "/health")]
    assert result.steps["health"].status == "ok"
    assert result.steps["health"].fields["json"] == {"status": "ok"}
    for sid in ("create", "replace", "remove", "tweak"):
        assert result.steps[sid].status == "planned"
        assert result.steps[sid].fields == {}
    assert result.steps["create"].description == f'POST {http.url}/things json {{"name": "x"}}'
    assert result.steps["tweak"].description == f"PATCH {http.url}/things"


def test_loading_the_executor_does_not_import_httpx() -> None:
    code = ("import sys, engine.executors.http as m; m.HttpExecutor(); "
            "assert 'httpx' not in sys.modules, 'httpx imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])


def test_effect_by_method() -> None:
    ex = HttpExecutor()
    for method in ("GET", "head", "OPTIONS"):
        assert ex.effect(HttpOptions(url="http://x", method=method)) == Effect.READ
    for method in ("POST", "PUT", "PATCH", "DELETE", "{{ params.method }}"):
        assert ex.effect(HttpOptions(url="http://x", method=method)) == Effect.WRITE


# ---------------------------------------------------------------- status and retry


def test_retry_a_503_until_200(tmp_path: Path, http: HttpServer) -> None:
    http.set_route("GET", "/ready", sequence=[(503, "warming up"), (503, "warming up"), (200, {"status": "ok"})])
    text = proc(http, """
        - id: ready
          http: {path: /ready}
          retry: {attempts: 5, delay: 50ms}
        """)
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    step = result.steps["ready"]
    assert step.attempts == 3
    assert step.fields["status_code"] == 200
    assert len(http.requests_to("/ready")) == 3


def test_retries_exhausted_report_the_status_and_body(tmp_path: Path, http: HttpServer) -> None:
    http.set_route("GET", "/ready", status=503, body="warming up, try later")
    text = proc(http, """
        - id: ready
          http: {path: /ready}
          retry: {attempts: 2, delay: 10ms}
        """)
    result = run(tmp_path, text)
    step = result.steps["ready"]
    assert step.status == "failed"
    assert step.attempts == 2
    assert step.error == (f"GET {http.url}/ready: HTTP 503 Service Unavailable (expected 2xx or 3xx): "
                          "warming up, try later")
    assert step.fields["status_code"] == 503


@pytest.mark.parametrize(("status", "expect", "ok"), [
    (201, "201", True),
    (200, "201", False),
    (404, "[200, 404]", True),
    (409, "[200, 404]", False),
    (204, "'2xx'", True),
    (302, "'2xx'", False),
    (302, None, True),  # the default: 2xx and (unfollowed) 3xx
    (404, None, False),
    (500, "[200, '5xx']", True),
])
def test_expect_status(tmp_path: Path, http: HttpServer, status: int, expect: str | None, ok: bool) -> None:
    http.set_route("POST", "/op", status=status, json={"status": status})
    expect_line = f"expect_status: {expect}\n" if expect is not None else ""
    text = proc(http, "- id: op\n  http: {method: POST, path: /op}\n" + textwrap.indent(expect_line, "  "))
    result = run(tmp_path, text)
    step = result.steps["op"]
    assert step.status == ("ok" if ok else "failed"), step.error
    assert step.fields["status_code"] == status
    if not ok:
        assert f"HTTP {status}" in step.error and "(expected " in step.error


def test_expect_status_is_checked_when_the_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "proc.yml"
    path.write_text("procedure: bad\nsteps:\n  - id: x\n    http: http://example.invalid/\n    expect_status: 2x\n")
    with pytest.raises(engine.ProcedureError, match="a class such as '2xx'"):
        engine.load(path)


def test_status_ranges() -> None:
    assert status_ranges(None) == [(200, 399)]
    assert status_ranges("4xx") == [(400, 499)]
    assert status_ranges([200, "204"]) == [(200, 200), (204, 204)]


# ---------------------------------------------------------------- results in expressions


def test_json_fields_in_verify_and_later_steps(tmp_path: Path, http: HttpServer) -> None:
    http.set_route("GET", "/status", json={"status": "ok", "version": "1.4.2", "items": [1, 2, 3]})
    text = proc(http, """
        - id: status
          http: {path: /status}
          verify:
            - http: {path: /status}
              expect: result.json.status == 'ok' and result.status_code == 200
        - id: check
          assert:
            - steps.status.json.version == '1.4.2'
            - steps.status.json['items'] | length == 3
            - steps.status.headers['content-type'] == 'application/json'
        """)
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    fields = result.steps["status"].fields
    assert fields["json"]["status"] == "ok"
    assert json.loads(fields["text"]) == fields["json"]
    assert isinstance(fields["elapsed"], float)


def test_failed_verify_on_json(tmp_path: Path, http: HttpServer) -> None:
    http.set_route("GET", "/status", json={"status": "degraded"})
    text = proc(http, """
        - id: status
          http: {path: /status}
          verify:
            - name: service is ok
              http: {path: /status}
              expect: result.json.status == 'ok'
        """)
    result = run(tmp_path, text)
    assert result.steps["status"].status == "failed"
    assert result.steps["status"].error == "verify failed: service is ok: expected result.json.status == 'ok'"


# ---------------------------------------------------------------- secrets


def test_a_secret_in_an_authorization_header_never_shows(tmp_path: Path, http: HttpServer,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPROC_TEST_API_TOKEN", TOKEN)
    # a careless server echoes the token back: the result must still not hold it
    http.set_route("POST", "/deploy", status=500, json={"error": "boom", "seen": f"Bearer {TOKEN}"},
                   headers={"Set-Cookie": "session=abc123; HttpOnly"})
    conn = (f"  api: {{http: {{base_url: \"{http.url}\", "
            "headers: {Authorization: \"Bearer {{ secrets.token }}\"}}}\n")
    text = proc(http, """
        - id: deploy
          http:
            method: POST
            path: /deploy
            headers: {X-Deploy-Token: "{{ secrets.token }}", X-Request-Id: abc-1}
            json: {note: "token is {{ secrets.token }}"}
        """, extra="secrets:\n  token: {env: RUNPROC_TEST_API_TOKEN}\n", conn=conn)
    result = run(tmp_path, text)
    assert result.status == "failed"
    sent = http.requests_to("/deploy")[0]
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"  # the server did get it
    assert sent.headers["x-deploy-token"] == TOKEN
    assert sent.json() == {"note": f"token is {TOKEN}"}
    dumped = json.dumps(result.to_json())
    assert TOKEN not in dumped
    step = result.steps["deploy"]
    assert "X-Deploy-Token: ***" in step.description and "X-Request-Id: abc-1" in step.description
    assert step.fields["headers"]["set-cookie"] == "***"
    assert step.fields["json"]["seen"] == "Bearer ***"
    assert "HTTP 500" in step.error and "Bearer ***" in step.error


# ---------------------------------------------------------------- connections and URLs


def test_path_is_joined_to_base_url_with_connection_headers(tmp_path: Path, http: HttpServer) -> None:
    http.set_route("GET", "/api/v1/items/a%2Fb%3Fx%3D1", json={"found": True})
    http.set_route("POST", "/api/v1/items", status=201, json={"id": 7})
    conn = (f"  api: {{http: {{base_url: \"{http.url}/api/v1/\", timeout: 5s, "
            "headers: {Accept: application/json, X-Team: platform}}}\n")
    text = proc(http, """
        - id: get
          http:
            path: /items/{{ params.name }}
            params: {limit: 10, tag: [a, b], q: "x&y"}
        - id: create
          http:
            method: POST
            path: items
            headers: {X-Team: override}
            json: {name: "{{ params.name }}", count: "{{ params.count }}"}
        """, extra="params:\n  name: {default: 'a/b?x=1'}\n  count: {type: int, default: 3}\n", conn=conn)
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    get, create = http.requests
    assert get.path == "/api/v1/items/a%2Fb%3Fx%3D1"  # the value could not add segments or a query
    assert get.query == {"limit": ["10"], "tag": ["a", "b"], "q": ["x&y"]}
    assert get.headers["accept"] == "application/json" and get.headers["x-team"] == "platform"
    assert create.path == "/api/v1/items"
    assert create.headers["x-team"] == "override"
    assert create.json() == {"name": "a/b?x=1", "count": 3}  # a whole {{ }} keeps its type
    assert result.steps["create"].fields["json"] == {"id": 7}


def test_url_short_form_and_a_templated_base(tmp_path: Path, http: HttpServer) -> None:
    text = f"""
        procedure: short
        vars:
          base: "{http.url}"
        steps:
          - id: health
            http: "{{{{ vars.base }}}}/health"
        """
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    assert result.steps["health"].description == f"GET {http.url}/health"
    assert http.requests[0].path == "/health"


def test_unreachable_server_is_a_clear_failure(tmp_path: Path, http: HttpServer) -> None:
    port = free_port()
    text = f"""
        procedure: down
        steps:
          - id: ping
            http: http://127.0.0.1:{port}/health
        """
    result = run(tmp_path, text)
    step = result.steps["ping"]
    assert step.status == "failed"
    assert step.error.startswith(f"GET http://127.0.0.1:{port}/health: cannot connect:")


def test_step_timeout_while_the_server_is_slow(tmp_path: Path, http: HttpServer) -> None:
    http.set_route("GET", "/slow", json={}, delay=3)
    text = proc(http, """
        - id: slow
          http: {path: /slow}
          timeout: 500ms
        """)
    t0 = time.monotonic()
    result = run(tmp_path, text)
    assert time.monotonic() - t0 < 2.5
    assert result.steps["slow"].status == "timed_out"


def test_request_timeout_is_a_retryable_failure(tmp_path: Path, http: HttpServer) -> None:
    http.set_route("GET", "/slow", json={}, delay=2)
    text = proc(http, """
        - id: slow
          http: {path: /slow, timeout: 300ms}
        """)
    result = run(tmp_path, text)
    step = result.steps["slow"]
    assert step.status == "failed"
    assert step.error == f"GET {http.url}/slow: no response within 300ms (ReadTimeout)"


def test_redirects_are_not_followed_unless_asked(tmp_path: Path, http: HttpServer) -> None:
    http.set_route("GET", "/old", status=301, headers={"Location": "/health"})
    text = proc(http, """
        - id: as_is
          http: {path: /old}
        - id: followed
          http: {path: /old, follow_redirects: true, expect_status: 200}
        """)
    result = run(tmp_path, text)
    assert result.status == "ok", result.error
    assert result.steps["as_is"].fields["status_code"] == 301
    assert result.steps["as_is"].fields["headers"]["location"] == "/health"
    assert result.steps["followed"].fields["json"] == {"status": "ok"}


def test_join_url() -> None:
    assert join_url("https://api.example.com/v1/", "/items") == "https://api.example.com/v1/items"
    assert join_url("https://api.example.com", "items?x=1") == "https://api.example.com/items?x=1"
    assert join_url("https://api.example.com/v1", "") == "https://api.example.com/v1"
