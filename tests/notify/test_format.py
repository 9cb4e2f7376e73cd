"""``notify:`` and ``escalate:`` are checked when the file is loaded: an unknown channel, event or
option, two channels in one entry, a template's unknown name, each at file:line:col with a
"did you mean"; and the command line as a user meets it (exit 2 for a bad file; a run whose
receiver fails ends 0 with the failure in its JSON and a warning on stderr)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import engine

BAD = """\
procedure: bad-notify
secrets:
  hook: {env: HOOK}
notify:
  - on: [failure, sucess]
    slak: {url: "{{ secrets.hook }}"}
  - slack: {url: "{{ secrets.hook }}", chanel: "#ops"}
  - webhook: "{{ secrets.hok }}"
    email: {host: smtp.example.com, from: a@example.com, to: b@example.com}
  - teams: {url: "{{ secrets.hook }}", message: "{{ event.stauts }}"}
escalate:
  - after: 15m
    on: [start]
    pagerduty: {routing_key: "{{ secrets.hook }}"}
steps:
  - id: work
    shell: "true"
    notify:
      - on: approval_needed
        webhook: "{{ secrets.hook }}"
"""

EXPECTED = [
    (5, 19, "notify[0].on[1]: expected one of 'start', 'success', 'failure', 'rollback' or 'approval_needed', "
            "got 'sucess' (did you mean 'success'?)"),
    (6, 5, "notify[0]: unknown key 'slak' (did you mean 'slack'?)"),
    (7, 40, "notify[1].slack: unknown key 'chanel' (did you mean 'channel'?)"),
    (8, 5, "notify[2]: one channel per entry, got webhook and email: write one entry for each"),
    (12, 5, "escalate[0]: an escalation waits after failure or approval_needed, not 'start'"),
    # a schema problem does not hide the others: the semantic pass runs on what remains
    (19, 13, "steps[0].notify[0]: 'approval_needed' is only for a confirm step: this step asks nobody"),
]


def _problems(tmp_path: Path, text: str) -> list[tuple[int, int, str]]:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(engine.ProcedureError) as caught:
        engine.load(path)
    return [(p.line, p.col, p.message) for p in caught.value.problems]


def test_schema_problems_are_located_with_suggestions(tmp_path):
    assert _problems(tmp_path, BAD) == EXPECTED


def test_templates_and_step_events_are_checked_once_the_schema_holds(tmp_path):
    fixed = (BAD.replace("sucess", "success").replace("slak", "slack").replace("chanel", "channel")
             .replace("    email: {host: smtp.example.com, from: a@example.com, to: b@example.com}\n", "")
             .replace("on: [start]", "on: [failure]"))
    assert _problems(tmp_path, fixed) == [
        (8, 14, "notify[2].webhook.url: undeclared secret 'hok' (did you mean 'hook'?)"),
        (9, 49, "notify[3].teams.message: event has no field 'stauts' (did you mean 'status'?)"),
        (18, 13, "steps[0].notify[0]: 'approval_needed' is only for a confirm step: this step asks nobody"),
    ]


def test_a_valid_entry_loads_with_its_defaults(tmp_path):
    path = tmp_path / "ok.yml"
    path.write_text("""\
procedure: ok-notify
notify:
  - webhook: https://hooks.example.com/x
  - pagerduty: {routing_key: abc}
  - on: start
    email: {host: smtp.example.com, from: a@example.com, to: b@example.com}
escalate:
  - after: 15m
    slack: {url: https://hooks.example.com/y}
steps:
  - id: work
    shell: "true"
""")
    proc = engine.load(path)
    webhook, pagerduty, email = proc.notify
    assert webhook.channel == "webhook" and webhook.webhook is not None
    assert webhook.webhook.url == "https://hooks.example.com/x" and webhook.events == ("failure",)
    assert pagerduty.events == ("failure", "approval_needed", "rollback", "success")
    assert email.events == ("start",) and email.email is not None and email.email.to == ["b@example.com"]
    assert email.email.port == 587 and email.email.starttls is True
    [level] = proc.escalate
    assert level.after == 900.0 and level.events == ("failure", "approval_needed")


def _cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, "RUNPROC_STATE": f"sqlite:///{cwd}/state.db", **(env or {})},
                          timeout=60)


def test_the_command_line_refuses_a_bad_file_in_one_line_each(tmp_path):
    (tmp_path / "bad.yml").write_text(BAD)
    done = _cli("validate", "bad.yml", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    hint = " (hint: at the procedure's level, approval_needed hears every confirm step)"
    assert done.stderr.splitlines() == [f"bad.yml:{line}:{col}: {message}" + (hint if "asks nobody" in message else "")
                                        for line, col, message in EXPECTED]


def test_a_run_whose_receiver_fails_ends_ok_with_the_failure_in_its_report(http, tmp_path):
    http.set_route("POST", "/hook", status=500, json={"error": "boom"})
    (tmp_path / "run.yml").write_text("""\
procedure: end-to-end
secrets:
  hook: {env: HOOK_URL}
notify:
  - on: [start, success]
    slack: {url: "{{ secrets.hook }}", channel: "#ops"}
steps:
  - id: work
    shell: echo done
""")
    done = _cli("run.yml", "--output", "json", "--report-dir", "report", cwd=tmp_path,
                env={"HOOK_URL": http.url_for("/hook")})
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["status"] == "ok"
    assert [(n["event"], n["ok"], n["status_code"]) for n in doc["notifications"]] == [("start", False, 500),
                                                                                       ("success", False, 500)]
    assert doc["notifications"][0]["error"] == f"{http.url} #ops answered 500 Internal Server Error: " \
                                               '{"error": "boom"}'
    assert (f"warning: notification slack on success failed: {http.url} #ops answered 500 Internal Server Error"
            in done.stderr)
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["notifications"] == doc["notifications"]
    assert "/hook" not in done.stdout + done.stderr
    assert len(http.requests_to("/hook", "POST")) == 2
