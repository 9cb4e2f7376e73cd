"""Secrets never leak, in any form: every value derived from a secret is masked in every sink.

Each form below derives text from a secret in a different way (a filter chain, slicing,
concatenation, a ``vars`` entry, base64, the process echoing it back). The procedure runs for
real with a report dir, again with ``--output json``, as a dry run, and through ``runproc
show``; then every sink is searched for every recognisable piece of the secret, including the
raw bytes of the state database and the spooled logs next to it.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from tests.helpers.cli import runproc, write
from tests.servers.http import HttpServer

SECRET = "can'ary XYZ-hunter42"


def _needles(secret: str) -> set[str]:
    """Pieces of the secret, as the forms below would show them."""
    pieces = {"XYZ-hunt", "XYZ-HUNT", "xyz-hunt", "ary XYZ", "ARY XYZ"}
    for text in (secret, "pre-" + secret, secret + "\n", secret.upper() + "\n"):
        raw = text.encode()
        pieces.add(base64.b64encode(raw).decode()[:16])
        pieces.add(base64.urlsafe_b64encode(raw).decode()[:16])
    pieces.update({quote(secret, safe="")[4:20], quote_plus(secret)[4:20]})
    return pieces


NEEDLES = _needles(SECRET)

# (name, how the step uses the secret); every one of them must be masked everywhere
FORMS = [
    ("raw", "echo {{ secrets.t }}"),
    ("to_json", "echo {{ secrets.t | to_json }}"),
    ("upper", "echo {{ secrets.t | upper }}"),
    ("lower", "echo {{ secrets.t | lower }}"),
    ("filter-chain", "echo {{ secrets.t | to_json | upper | trim }}"),
    ("quote", "echo {{ secrets.t | quote }}"),
    ("urlencode", "echo {{ secrets.t | urlencode }}"),
    ("slice", "echo {{ secrets.t[7:16] }}"),
    ("concat", "echo {{ 'pre-' ~ secrets.t ~ '-post' }}"),
    ("b64encode", "echo {{ secrets.t | b64encode }}"),
    ("vars-derived", "echo {{ vars.derived | b64encode }}"),
    ("vars-upper", "echo {{ vars.shout | lower }}"),
    ("secret-param", "echo {{ params.token | upper }}; echo {{ params.token | b64encode }}"),
    ("process-base64", "printf '%s\\n' {{ secrets.t }} | base64"),
    ("process-upper", "printf '%s\\n' {{ secrets.t }} | tr a-z A-Z"),
    ("process-urlencode", "python3 -c 'import sys, urllib.parse as u; print(u.quote_plus(sys.argv[1]), "
                          "u.quote(sys.argv[1], safe=\"\"))' {{ secrets.t }}"),
    ("process-json", "python3 -c 'import sys, json; print(json.dumps(sys.argv[1]))' {{ secrets.t }}"),
]


def _procedure(cmd: str) -> str:
    body = json.dumps(cmd)
    return f"""
        procedure: canary
        params:
          token: {{type: str, secret: true}}
        secrets:
          t: {{env: CANARY}}
        vars:
          derived: "pre-{{{{ secrets.t }}}}"
          shout: "{{{{ secrets.t | upper }}}}"
        steps:
          - id: show
            shell: {body}
          - id: fail
            needs: [show]
            shell: {json.dumps(cmd + " >&2; exit 3")}
            rollback: {{shell: {body}}}
    """


def _hits(text: str) -> list[str]:
    return sorted(n for n in NEEDLES if n in text)


def _sink_files(tmp: Path) -> list[Path]:
    return [p for p in tmp.rglob("*") if p.is_file() and p.name not in ("proc.yml",)]


@pytest.mark.parametrize(("name", "cmd"), FORMS, ids=[f[0] for f in FORMS])
def test_no_sink_shows_a_value_derived_from_a_secret(tmp_path: Path, name: str, cmd: str) -> None:
    write(tmp_path, _procedure(cmd))
    env = {"CANARY": SECRET}
    token = ["-p", f"token={SECRET}"]
    real = runproc(tmp_path, "proc.yml", *token, "--report-dir", "rep", env=env)
    assert real.rc == 1, real.stderr  # the second step fails on purpose: errors are a sink too
    as_json = runproc(tmp_path, "proc.yml", *token, "--output", "json", env=env)
    assert as_json.rc == 1
    run_id = as_json.json["run_id"]
    show = runproc(tmp_path, "show", run_id, "--state", f"sqlite:///{tmp_path}/state.db")
    assert show.rc == 0, show.stderr
    plan = runproc(tmp_path, "proc.yml", *token, "--dry-run", env=env)
    plan_json = runproc(tmp_path, "proc.yml", *token, "--dry-run", "--output", "json", env=env)
    assert plan.rc == 0 and plan_json.rc == 0, plan.stdout + plan.stderr
    # the proof that the step did see the secret: the masks are there
    assert "***" in as_json.step("show")["stdout"]

    outputs = {"console": real.stdout + real.stderr, "json": as_json.stdout + as_json.stderr,
               "show": show.stdout + show.stderr, "plan": plan.stdout + plan.stderr,
               "plan-json": plan_json.stdout + plan_json.stderr}
    leaks = {sink: _hits(text) for sink, text in outputs.items() if _hits(text)}
    files = _sink_files(tmp_path)
    assert any(p.name == "state.db" for p in files) and any(p.name == "junit.xml" for p in files)
    for path in files:  # report.json, junit.xml, step logs, the state database and its WAL, spooled logs
        found = _hits(path.read_bytes().decode("latin-1"))
        if found:
            leaks[str(path.relative_to(tmp_path))] = found
    assert leaks == {}


def test_an_http_query_value_from_a_secret_is_masked_form_encoded(tmp_path: Path, http: HttpServer) -> None:
    # an API that echoes the request back, as httpbin's /get does: the value comes back form-encoded
    http.set_route("GET", "/echo", status=200, json={"url": f"/echo?q={quote_plus(SECRET)}"})
    write(tmp_path, f"""
        procedure: canary-http
        secrets:
          t: {{env: CANARY}}
        steps:
          - id: ask
            http: {{url: "{http.url_for('/echo')}", params: {{q: "{{{{ secrets.t }}}}"}}}}
            readonly: true
    """)
    done = runproc(tmp_path, "proc.yml", "--report-dir", "rep", "--output", "json", env={"CANARY": SECRET})
    assert done.rc == 0, done.stderr
    seen = http.requests_to("/echo")
    assert [r.query for r in seen] == [{"q": [SECRET]}]  # the server did receive it
    leaks = {str(p): _hits(p.read_bytes().decode("latin-1")) for p in _sink_files(tmp_path)}
    leaks["stdout"] = _hits(done.stdout + done.stderr)
    assert {k: v for k, v in leaks.items() if v} == {}


def test_connection_credentials_are_masked(tmp_path: Path, http: HttpServer) -> None:
    """A password written in a URL and an Authorization header never show, even when the
    server echoes them back."""
    http.set_route("GET", "/whoami", status=200, body="Bearer tok-XYZ-hunter42 and pw XYZ-hunter99")
    write(tmp_path, f"""
        procedure: canary-conn
        connections:
          api: {{http: {{base_url: "{http.url}", headers: {{Authorization: "Bearer tok-XYZ-hunter42"}}}}}}
          db: {{postgres: "postgresql://app:XYZ-hunter99@127.0.0.1:1/x"}}
        steps:
          - id: ask
            http: {{path: /whoami, connection: api}}
            readonly: true
          - id: query
            needs: [ask]
            sql: SELECT 1
            connection: db
            readonly: true
    """)
    done = runproc(tmp_path, "proc.yml", "--report-dir", "rep", env={})
    assert done.rc == 1  # nothing listens on port 1
    text = done.stdout + done.stderr + "".join(p.read_bytes().decode("latin-1") for p in _sink_files(tmp_path))
    assert re.findall(r"XYZ-hunter\d\d", text) == []
