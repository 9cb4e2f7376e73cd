"""The Alertmanager receiver (docs/web.md "Alerts start runs"): rules checked as the server
starts (located problems, exit 2), one real run per alert group while it fires (a repeat, or
the same notification posted twice at once, starts nothing; a resolved group that fires again
starts a new run), clear 4xx for bad payloads, and the seed's incident procedures as the
example's rules. In the browser: a payload posted twice starts incident-triage once, and the
run shows on the runs page."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from engine.errors import ProcedureError
from engine.web import tokens
from engine.web.alerts import load_rules
from engine.web.app import Settings
from tests.helpers.cli import RUNPROC, child_env, write
from tests.helpers.web import LOOPBACK, History, TestClient, app_client, serving
from tests.web.test_web_browser import WAIT_MS, browser  # noqa: F401 - the module's browser fixture

ROOT = Path(__file__).resolve().parents[2]

PAGE = """
procedure: page-oncall
params:
  service: {type: str, pattern: "^[a-z-]+$"}
  severity: {type: str, choices: [critical, warning], default: warning}
  summary: {type: str, default: ""}
  pager_key: {type: str, secret: true, default: ""}
steps:
  - id: say
    shell: echo paging for {{ params.service }}
"""

RULES = """
alertmanager:
  - name: service-down
    match: {alertname: ServiceDown}
    match_re: {service: "[a-z-]+"}
    procedure: page-oncall
    params:
      service: "{{ labels.service }}"
      severity: "{{ labels.severity | default('warning') }}"
      summary: "{{ annotations.summary | default('') }}"
      pager_key: pk-c4n4ry-31337
"""


def payload(status: str = "firing", key: str = '{}:{alertname="ServiceDown", service="billing"}',
            **labels: str) -> dict[str, Any]:
    common = {"alertname": "ServiceDown", "service": "billing", "severity": "critical", **labels}
    alert = {"status": status, "labels": common, "annotations": {"summary": "billing is down"},
             "startsAt": "2026-12-04T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
             "generatorURL": "http://prometheus.example.invalid/graph", "fingerprint": "c0ffee"}
    return {"version": "4", "status": status, "receiver": "runproc", "groupKey": key, "truncatedAlerts": 0,
            "groupLabels": {"alertname": "ServiceDown"}, "commonLabels": common,
            "commonAnnotations": {"summary": "billing is down"}, "externalURL": "http://alertmanager.example.invalid",
            "alerts": [alert]}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str], History]]:
    (tmp_path / "procedures").mkdir()
    write(tmp_path / "procedures", PAGE, "page-oncall.yml")
    rules = write(tmp_path, RULES, "triggers.yml")
    file = str(tmp_path / "tokens.yml")
    bearer = {role: {"authorization": f"Bearer {tokens.add_token(file, f'{role}-1', role)}"}
              for role in ("operator", "viewer")}
    history = History(tmp_path, tmp_path / "procedures")
    with app_client(Settings(state=history.state, procedures=history.procedures, tokens=file,
                             triggers=str(rules))) as client:
        yield client, {"operator": bearer["operator"]["authorization"], "viewer": bearer["viewer"]["authorization"]}, \
            history


def _post(client: TestClient, auth: str, body: Any, query: str = "") -> Any:
    return client.post(f"{LOOPBACK}/api/v1/alertmanager{query}", json=body, headers={"authorization": auth})


def test_one_run_per_alert_group_while_it_fires(served: tuple[TestClient, dict[str, str], History]) -> None:
    client, auth, history = served
    first = _post(client, auth["operator"], payload())
    assert first.status_code == 201, first.text
    started = first.json()
    assert started["action"] == "started" and started["rule"] == "service-down" and started["run_id"]
    assert started["params"] == {"service": "billing", "severity": "critical", "summary": "billing is down",
                                 "pager_key": "***"}
    repeat = _post(client, auth["operator"], payload())  # Alertmanager's repeat_interval, or its HA peer
    assert repeat.status_code == 200 and repeat.json()["action"] == "deduplicated"
    assert repeat.json()["run_id"] == started["run_id"]
    runs = history.sql('SELECT id, "user" FROM runs')
    assert runs == [(started["run_id"], "alertmanager:service-down")]
    resolved = _post(client, auth["operator"], payload("resolved"))
    assert resolved.status_code == 200 and resolved.json()["action"] == "resolved"
    assert _post(client, auth["operator"], payload("resolved")).json()["action"] == "ignored"
    again = _post(client, auth["operator"], payload())  # it fires anew: a new run
    assert again.status_code == 201 and again.json()["run_id"] != started["run_id"]
    groups = client.get(f"{LOOPBACK}/api/v1/alertmanager", headers={"authorization": auth["viewer"]}).json()
    assert [(g["rule"], g["status"], g["run_id"]) for g in groups["groups"]] == \
        [("service-down", "firing", again.json()["run_id"])]
    assert "billing" not in json.dumps(groups["groups"])  # a group is named by its key's hash, not its labels
    assert groups["rules"][0]["params"]["pager_key"] == "***" and "pk-c4n4ry" not in json.dumps(groups)
    assert "pk-c4n4ry" not in client.get(f"{LOOPBACK}/schedules", headers={"authorization": auth["viewer"]}).text
    assert "pk-c4n4ry" not in first.text and first.json()["params"]["pager_key"] == "***"
    audit = client.get(f"{LOOPBACK}/api/v1/audit", headers={"authorization": auth["viewer"]}).json()["audit"]
    assert [(a["action"], a["result"], a["user"], a["new_run"]) for a in audit] == [
        ("alert", "started", "operator-1", again.json()["run_id"]), ("alert", "started", "operator-1", started["run_id"])]


def test_the_same_notification_posted_twice_at_once_starts_one_run(
        served: tuple[TestClient, dict[str, str], History]) -> None:
    client, auth, history = served
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def post() -> None:
        barrier.wait()
        answers.append(_post(client, auth["operator"], payload(key="{}:{race}")).status_code)
    threads = [threading.Thread(target=post) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(answers) == [200, 201]
    assert len(history.sql("SELECT id FROM runs")) == 1


def test_a_dry_run_and_a_group_no_rule_matches_start_nothing(served: tuple[TestClient, dict[str, str], History]) -> None:
    client, auth, history = served
    would = _post(client, auth["operator"], payload(), "?dry_run=true")
    assert would.status_code == 200 and would.json()["action"] == "would_start"
    other = _post(client, auth["operator"], {**payload(), "commonLabels": {"alertname": "DiskFull"}})
    assert other.status_code == 200 and other.json()["action"] == "ignored" and "DiskFull" in other.json()["reason"]
    assert history.sql("SELECT count(*) FROM runs") == [(0,)]
    assert history.sql("SELECT count(*) FROM alert_groups") == [(0,)]


@pytest.mark.parametrize(("body", "status", "words"), [
    ("not json", 400, "not JSON"),
    ({**payload(), "version": "3"}, 400, 'version "4"'),
    ({**payload(), "groupKey": ""}, 400, "groupKey"),
    ({**payload(), "alerts": []}, 400, "alerts"),
    ({**payload(), "status": "pending"}, 400, "status"),
    ({**payload(), "commonLabels": {"alertname": 3}}, 400, "commonLabels"),
    (payload(service="Bill ing!"), 200, "ignored"),  # match_re does not hold: no rule
    ({**payload(), "commonLabels": {"alertname": "ServiceDown", "service": "billing", "severity": "fatal"}},
     422, "severity"),
    ({**payload(), "commonAnnotations": None, "commonLabels": {"alertname": "ServiceDown", "service": "x"}}, 201,
     "started"),
])
def test_bad_payloads_get_a_clear_4xx(served: tuple[TestClient, dict[str, str], History], body: Any, status: int,
                                      words: str) -> None:
    client, auth, _ = served
    if isinstance(body, str):
        r = client.post(f"{LOOPBACK}/api/v1/alertmanager", content=body,
                        headers={"authorization": auth["operator"], "content-type": "application/json"})
    else:
        r = _post(client, auth["operator"], body)
    assert r.status_code == status, r.text
    said = r.json()["error"]["message"] if status >= 400 else r.text
    assert words in said and "Traceback" not in r.text
    if status == 422:  # a refused start is audited, with why
        audit = client.get(f"{LOOPBACK}/api/v1/audit", headers={"authorization": auth["viewer"]}).json()["audit"]
        assert [(a["action"], a["result"]) for a in audit] == [("alert", "refused (422)")] and words in audit[0]["detail"]


def test_who_may_post_and_what_is_too_big(served: tuple[TestClient, dict[str, str], History], tmp_path: Path) -> None:
    client, auth, _ = served
    assert client.post(f"{LOOPBACK}/api/v1/alertmanager", json=payload()).status_code == 401
    assert _post(client, auth["viewer"], payload()).status_code == 403
    r = client.post(f"{LOOPBACK}/api/v1/alertmanager", content="x" * (1024 * 1024 + 1),
                    headers={"authorization": auth["operator"], "content-type": "application/json"})
    assert r.status_code == 413 and "1048576" in r.json()["error"]["message"]
    big = {**payload(), "alerts": payload()["alerts"] * 60}  # over the other endpoints' 16 KiB: taken here
    assert len(json.dumps(big)) > 16 * 1024
    assert _post(client, auth["operator"], big).status_code == 201
    with app_client(Settings(state=f"sqlite:///{tmp_path}/other.db", procedures=tmp_path / "procedures",
                             tokens=str(tmp_path / "tokens.yml"))) as bare:
        r = bare.post(f"{LOOPBACK}/api/v1/alertmanager", json=payload(), headers={"authorization": auth["operator"]})
        assert r.status_code == 404 and "--triggers" in r.json()["error"]["message"]


BAD_RULES = """
alertmanager:
  - name: Bad Name
    match: {alertname: [1]}
    procedure: page-oncal
    params: {service: "{{ labels.service "}
  - name: ok
    procedure: page-oncall
    dry_run: maybe
    sevrity: high
"""


def test_a_bad_triggers_file_is_located_problems_and_serve_exits_2(tmp_path: Path) -> None:
    write(tmp_path, PAGE, "page-oncall.yml")
    bad = write(tmp_path, BAD_RULES, "triggers.yml")
    with pytest.raises(ProcedureError) as caught:
        load_rules(str(bad), {"page-oncall"})
    shown = [str(p) for p in caught.value.problems]
    assert [s.split(": ")[0] for s in shown] == [f"{bad}:2:11", f"{bad}:3:24", f"{bad}:4:16", f"{bad}:5:23",
                                                f"{bad}:6:5", f"{bad}:8:14", f"{bad}:9:5"], shown
    assert "did you mean 'page-oncall'" in shown[2] and "needs match or match_re" in shown[4]
    assert "unknown key 'sevrity'" in shown[6]
    import subprocess

    done = subprocess.run([*RUNPROC, "serve", "--bind", "127.0.0.1:0", "--state", f"sqlite:///{tmp_path}/s.db",
                           "--procedures", str(tmp_path), "--triggers", str(bad)], cwd=tmp_path, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and f"{bad}:2:11" in done.stderr and "Traceback" not in done.stderr


def test_the_examples_rules_map_alerts_to_the_seeds_incident_procedures() -> None:
    from engine.api import load

    names = {load(p).procedure for p in (ROOT / "procedures").glob("*.yml")}
    rules = load_rules(str(ROOT / "examples" / "alertmanager" / "triggers.yml.example"), names)
    assert [(r.name, r.procedure) for r in rules] == [("api-down", "outage-response"),
                                                      ("api-triage", "incident-triage")]
    assert rules[1].matches({"severity": "page", "service": "unjucks-web"}) and not rules[0].matches({})


TRIAGE_RULES = """
alertmanager:
  - name: api-triage
    match: {severity: [critical, page]}
    procedure: incident-triage
    params:
      platform: "{{ labels.platform | default('all') }}"
      deployment: "{{ labels.deployment | default('unjucks-api') }}"
"""


@contextlib.contextmanager
def _stopped_at_the_end(history: History) -> Iterator[None]:
    """incident-triage waits hours for an acknowledgement: its run is stopped (SIGTERM, as a
    Ctrl-C) when the test ends, not left running after the suite."""
    try:
        yield
    finally:
        for (pid,) in history.sql("SELECT pid FROM runs WHERE status = 'running'"):
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.kill(int(pid), signal.SIGTERM)  # type: ignore[arg-type]


def test_an_alertmanager_payload_starts_the_incident_procedure_exactly_once(
        browser: Browser, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    import httpx

    monkeypatch.setenv("DB_PASSWORD", "triage-db-password")  # incident-triage's secret, from the server's env
    rules = write(tmp_path, TRIAGE_RULES, "triggers.yml")
    file = str(tmp_path / "tokens.yml")
    token = tokens.add_token(file, "alertmanager", "operator")
    viewer = tokens.add_token(file, "oncall", "viewer")
    body = payload(key='{}:{severity="critical"}', platform="systemd", deployment="unjucks-api")
    history = History(tmp_path, ROOT / "procedures")
    with serving(history, "--tokens", file, "--triggers", str(rules), "--no-scheduler") as base, \
            _stopped_at_the_end(history):
        answers = [httpx.post(f"{base}/api/v1/alertmanager", json=body, timeout=60,
                              headers={"authorization": f"Bearer {token}"}) for _ in range(2)]
        assert [a.status_code for a in answers] == [201, 200], [a.text for a in answers]
        run_id = answers[0].json()["run_id"]
        assert answers[1].json() == {**answers[1].json(), "action": "deduplicated", "run_id": run_id}
        page = browser.new_page()
        page.goto(f"{base}/login?next=/runs")
        page.fill("input[name=token]", viewer)
        page.click("button[type=submit]")
        rows = page.locator("table.runs tbody tr")
        expect(rows.first).to_contain_text(run_id, timeout=WAIT_MS)
        expect(rows.first).to_contain_text("alertmanager:api-triage")
        expect(rows).to_have_count(1)
        page.click(f"text={run_id}")
        expect(page.locator("body")).to_contain_text("incident-triage", timeout=WAIT_MS)
        page.goto(f"{base}/schedules#alerts")
        expect(page.locator("table.groups")).to_contain_text(run_id, timeout=WAIT_MS)
        page.close()


def test_one_run_per_alert_group_on_a_postgresql_state(tmp_path: Path, pg_db: str) -> None:
    (tmp_path / "procedures").mkdir()
    write(tmp_path / "procedures", PAGE, "page-oncall.yml")
    rules = write(tmp_path, RULES, "triggers.yml")
    file = str(tmp_path / "tokens.yml")
    auth = f"Bearer {tokens.add_token(file, 'am', 'operator')}"
    with app_client(Settings(state=pg_db, procedures=tmp_path / "procedures", tokens=file,
                             triggers=str(rules))) as client:
        answers = [_post(client, auth, payload()) for _ in range(2)]
        assert [a.status_code for a in answers] == [201, 200] and answers[1].json()["action"] == "deduplicated"
        assert _post(client, auth, payload("resolved")).json()["action"] == "resolved"
        assert _post(client, auth, payload()).status_code == 201
        for _ in range(600):  # the runs end before their database is dropped (a bound on a hang)
            runs = client.get(f"{LOOPBACK}/api/v1/runs", headers={"authorization": auth}).json()["runs"]
            if all(r["status"] != "running" for r in runs):
                break
            time.sleep(0.05)
        assert len(runs) == 2 and {(r["user"], r["status"]) for r in runs} == {("alertmanager:service-down", "ok")}
