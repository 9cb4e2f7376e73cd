"""Starting a run from runproc serve (issue 15, must-haves 2 and 7): the form generated from the
param declarations (types, choices, bounds, a secret as a password field never echoed back), the
CLI's own errors for bad params, a run or a dry run started as a ``runproc`` process recorded as
started by the token's holder, and ``POST /api/v1/procedures/{name}/runs`` behind an operator's
token (401 with no tokens configured)."""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

from engine.web import tokens
from engine.web.app import Settings
from tests.helpers.cli import write
from tests.helpers.web import TestClient, app_client

SECRET = "sEcReT-start-4b1d"

TYPED = f"""
procedure: typed
description: Every kind of param
params:
  version: {{type: str, required: true, pattern: "^v[0-9]+$", help: the release}}
  replicas: {{type: int, default: 2, min: 1, max: 9}}
  canary: {{type: bool, default: false}}
  region: {{type: str, choices: [eu, us], default: eu}}
  hosts: {{type: list, default: [a, b]}}
  token: {{type: str, secret: true, default: "{SECRET}"}}
steps:
  - id: show
    shell: "echo {{{{ params.version }}}} x{{{{ params.replicas }}}} {{{{ params.region }}}} {{{{ params.token }}}}"
"""


def _setup(tmp_path: Path) -> tuple[Settings, dict[str, str]]:
    procedures = tmp_path / "procedures"
    procedures.mkdir()
    write(procedures, TYPED, "typed.yml")
    file = str(tmp_path / "tokens.yml")
    keys = {name: tokens.add_token(file, name, role) for name, role in (("olga", "operator"), ("vic", "viewer"))}
    return Settings(state=f"sqlite:///{tmp_path}/state.db", procedures=procedures, tokens=file), keys


def _client(settings: Settings, token: str | None) -> TestClient:
    client = app_client(settings)
    if token:
        client.headers["authorization"] = f"Bearer {token}"
    return client


def _until_ended(client: TestClient, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60  # a bound on a hang, not a measure
    while time.monotonic() < deadline:
        run = client.get(f"/api/v1/runs/{run_id}").json()
        if run["status"] != "running":
            return dict(run)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


def _post(client: TestClient, fields: dict[str, str]) -> Any:
    form = client.get("/procedures/typed/start").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf
    return client.post("/procedures/typed/runs", data={"csrf": csrf.group(1), **fields}, follow_redirects=False)


def test_the_form_is_made_from_the_param_declarations_and_never_shows_a_secret(tmp_path: Path) -> None:
    settings, keys = _setup(tmp_path)
    with _client(settings, keys["olga"]) as c:
        html = c.get("/procedures/typed/start").text
        assert 'href="/procedures/typed/start"' in c.get("/procedures/typed").text
        assert re.search(r'<input type="text" id="f-version" name="param.version" value="" placeholder="" required>',
                         html)
        assert re.search(r'<input type="number" id="f-replicas" name="param.replicas" value="" min="1" max="9"', html)
        assert '<option value="us">us</option>' in html and '<option value="true">true</option>' in html
        assert '<input type="password" id="f-token" name="param.token" value=""' in html
        assert SECRET not in html and "matches ^v[0-9]+$" in html
        assert 'value="dry_run"' in html and "disabled" not in html
    with _client(settings, keys["vic"]) as viewer:
        html = viewer.get("/procedures/typed/start").text
        assert "may not start runs" in html and "disabled" in html


def test_bad_params_get_the_clis_errors_and_the_secret_is_not_echoed(tmp_path: Path) -> None:
    settings, keys = _setup(tmp_path)
    with _client(settings, keys["olga"]) as c:
        r = _post(c, {"param.version": "1.0", "param.replicas": "twelve", "param.token": "typed-secret-9",
                      "mode": "run"})
        assert r.status_code == 400
        text = html.unescape(r.text)
        assert "param 'version' (from -p): '1.0' does not match the pattern ^v[0-9]+$" in text
        assert "param 'replicas' (from -p): expected an integer, got 'twelve'" in text
        assert "typed-secret-9" not in r.text and 'value="1.0"' in r.text  # the rest is kept for a retry
        r = _post(c, {"param.versoin": "v1", "mode": "run"})
        text = html.unescape(r.text)
        assert r.status_code == 400 and "unknown param 'versoin'" in text and "did you mean 'version'" in text
        assert c.get("/api/v1/runs").json()["runs"] == []  # nothing was started


def test_the_form_starts_a_run_and_a_dry_run_as_the_tokens_holder(tmp_path: Path) -> None:
    settings, keys = _setup(tmp_path)
    with _client(settings, keys["olga"]) as c:
        r = _post(c, {"param.version": "v7", "param.replicas": "3", "param.token": "typed-secret-9", "mode": "run"})
        assert r.status_code == 303, r.text
        run_id = r.headers["location"].removeprefix("/runs/")
        run = _until_ended(c, run_id)
        assert run["status"] == "ok" and run["user"] == "olga" and run["dry_run"] is False
        assert run["params"] == {"version": "v7", "replicas": 3, "canary": False, "region": "eu",
                                 "hosts": ["a", "b"], "token": "***"}
        assert run["steps"][0]["fields"]["stdout"] == "v7 x3 eu ***\n"
        r = _post(c, {"param.version": "v8", "mode": "dry_run"})
        assert r.status_code == 303
        planned = _until_ended(c, r.headers["location"].removeprefix("/runs/"))
        assert planned["status"] == "planned" and planned["dry_run"] is True and planned["user"] == "olga"
        for url in (f"/runs/{run_id}", f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/events"):
            assert "typed-secret-9" not in c.get(url).text and SECRET not in c.get(url).text


def test_the_api_starts_a_run_with_an_operators_token_only(tmp_path: Path) -> None:
    settings, keys = _setup(tmp_path)
    url = "/api/v1/procedures/typed/runs"
    with _client(Settings(state=settings.state, procedures=settings.procedures), None) as open_client:
        r = open_client.post(url, json={"params": {"version": "v1"}})
        assert r.status_code == 401 and "token" in r.json()["error"]["message"]
        page = open_client.get("/procedures/typed/start")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf and "none are configured" in page.text
        form = open_client.post("/procedures/typed/runs", data={"csrf": csrf.group(1), "param.version": "v1"},
                                follow_redirects=False)
        assert form.status_code == 401
    with _client(settings, keys["vic"]) as viewer:
        assert viewer.post(url, json={"params": {"version": "v1"}}).status_code == 403
    with _client(settings, keys["olga"]) as c:
        for body, words in (({"params": {"version": 1}}, "param 'version': expected a string"),
                            ({"params": {}}, "param 'version' is required"),
                            ({"params": [], "dry_run": False}, "params"),
                            ({"param": {}}, "param: unknown field")):
            r = c.post(url, json=body)
            assert r.status_code == 400 and words in r.json()["error"]["message"], (body, r.text)
        assert c.post("/api/v1/procedures/nothing/runs", json={"params": {}}).status_code == 404
        r = c.post(url, json={"params": {"version": "v3", "replicas": 4, "canary": True}})
        assert r.status_code == 201, r.text
        started = r.json()
        assert started["page"] == f"/runs/{started['run_id']}" and started["dry_run"] is False
        run = _until_ended(c, started["run_id"])
        assert run["status"] == "ok" and run["user"] == "olga" and run["params"]["replicas"] == 4
