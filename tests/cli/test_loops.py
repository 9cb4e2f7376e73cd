"""Loops (docs/format.md#loops): foreach over a param, a literal, an upstream step's JSON result
and inventory hosts; matrix with exclude; concurrency and fail_fast; per-iteration retries and
rollback; dry runs; load-time errors; resume. In process through the library, but for the
errors a user meets on the command line and one run end to end."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

import engine
from engine.execution import events as ev
from tests.helpers.cli import runproc, write


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNPROC_STATE", f"sqlite:///{tmp_path}/state.db")
    monkeypatch.chdir(tmp_path)


def _changed(folder: Path) -> list[str]:
    """Files a step of the dry-run test would have made."""
    return [p.name for p in folder.iterdir() if p.name.startswith(("made-", "svc-", "discovered"))]


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


SOURCES = """
procedure: sources
params:
  regions: {type: list, default: [eu, us]}
steps:
  - id: discover
    readonly: true
    shell: |
      echo '{"services": [{"name": "api", "port": 8080}, {"name": "web", "port": 80}]}'
  - id: per_region
    foreach: params.regions
    shell: echo "region {{ item }}" >> seen
  - id: literal
    foreach: [a, "{{ params.regions[0] }}-x"]
    as: word
    shell: echo "literal {{ word }}" >> seen
  - id: per_service
    needs: [discover, literal]
    foreach: steps.discover.json.services
    as: svc
    shell: echo "{{ svc.name }}:{{ svc.port }}"
  - id: joined
    shell: echo "{{ steps.per_service.results | map(attribute='stdout') | map('trim') | join(',') }}"
"""


def test_foreach_over_a_param_a_literal_and_an_upstream_result(tmp_path: Path) -> None:
    path = write(tmp_path, SOURCES)
    seen: list[Any] = []
    result = engine.run(path, on_event=seen.append)
    assert result.ok, result.error
    assert _lines(tmp_path / "seen") == ["region", "eu", "region", "us", "literal", "a", "literal", "eu-x"]
    services = result.steps["per_service"]
    # each iteration its own result, labelled by the item's name, in item order
    assert list(services.hosts or {}) == ["api", "web"] and services.loop
    assert [r["stdout"] for r in services.fields["results"]] == ["api:8080\n", "web:80\n"]
    assert services.fields["items"][1] == {"name": "web", "port": 80}
    assert result.steps["joined"].stdout == "api:8080,web:80\n"
    assert list(result.steps["literal"].hosts or {}) == ["a", "eu-x"]
    # output is told per iteration
    outputs = {(e.host, e.text.strip()) for e in seen if isinstance(e, ev.StepOutput) and e.step_id == "per_service"}
    assert ("api", "api:8080") in outputs and ("web", "web:80") in outputs
    # another list given at run time loops over it
    again = engine.run(path, params={"regions": ["ap"]})
    assert list(again.steps["per_region"].hosts or {}) == ["ap"]
    empty = engine.run(path, params={"regions": []})  # (the literal then has no regions[0])
    assert empty.steps["per_region"].status == "skipped" and empty.steps["per_region"].fields["results"] == []


def test_foreach_over_inventory_hosts(tmp_path: Path) -> None:
    (tmp_path / "inv.yml").write_text(textwrap.dedent("""
        all:
          children:
            web:
              hosts:
                web-1: {ansible_host: 10.0.0.1, http_port: 8080}
                web-2: {ansible_host: 10.0.0.2, http_port: 8081}
            db:
              hosts:
                db-1: {ansible_host: 10.0.0.9}
    """))
    path = write(tmp_path, """
        procedure: hosts-loop
        inventory: inv.yml
        steps:
          - id: check
            foreach: {hosts: web}
            shell: echo "{{ item.name }} {{ item.address }}:{{ item.vars.http_port }}"
    """)
    result = engine.run(path)
    check = result.steps["check"]
    assert result.ok and list(check.hosts or {}) == ["web-1", "web-2"]
    assert [r["stdout"] for r in check.fields["results"]] == ["web-1 10.0.0.1:8080\n", "web-2 10.0.0.2:8081\n"]
    limited = engine.run(path, limit="web-2")
    assert list(limited.steps["check"].hosts or {}) == ["web-2"]


def test_matrix_with_exclude(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: grid
        params:
          skip: {type: str, default: none}
        steps:
          - id: grid
            matrix:
              region: [eu, us]
              tier: [web, db]
              exclude:
                - {region: us, tier: db}
                - {region: "{{ params.skip }}"}
            shell: echo "{{ item.region }}/{{ item.tier }}"
    """)
    grid = engine.run(path).steps["grid"]
    assert list(grid.hosts or {}) == ["region=eu,tier=web", "region=eu,tier=db", "region=us,tier=web"]
    assert [r["stdout"].strip() for r in grid.fields["results"]] == ["eu/web", "eu/db", "us/web"]
    assert grid.fields["items"][2] == {"region": "us", "tier": "web"}
    # an exclude entry may be a template: known at run time
    assert list(engine.run(path, params={"skip": "eu"}).steps["grid"].hosts or {}) == ["region=us,tier=web"]


FAIL_ON_B = """
procedure: ff
steps:
  - id: each
    foreach: [a, b, c]
    shell: echo {{ item }} >> order; test {{ item }} != b
"""


def test_one_at_a_time_and_fail_fast_by_default(tmp_path: Path) -> None:
    path = write(tmp_path, FAIL_ON_B)
    result = engine.run(path)
    each = result.steps["each"]
    assert result.exit_code == 1 and each.status == "failed"
    assert _lines(tmp_path / "order") == ["a", "b"]  # in item order, c never started
    statuses = {k: v.status for k, v in (each.hosts or {}).items()}
    assert statuses == {"a": "ok", "b": "failed", "c": "cancelled"}
    assert "fail_fast" in (each.hosts or {})["c"].error and each.error.startswith("1 of 3 iterations failed: b:")


def test_fail_fast_false_runs_every_iteration(tmp_path: Path) -> None:
    path = write(tmp_path, FAIL_ON_B.replace("    foreach:", "    fail_fast: false\n    foreach:"))
    result = engine.run(path)
    assert _lines(tmp_path / "order") == ["a", "b", "c"]
    each = result.steps["each"]
    assert each.status == "failed" and [r["status"] for r in each.fields["results"]] == ["ok", "failed", "ok"]


def test_concurrency_runs_iterations_at_once(tmp_path: Path) -> None:
    # each iteration waits for the other to have started: only iterations running together
    # both finish (one at a time, the first would give up waiting and fail)
    path = write(tmp_path, """
        procedure: together
        steps:
          - id: pair
            foreach: [x, y]
            concurrency: 2
            shell: |
              touch started-{{ item }}
              other={{ 'y' if item == 'x' else 'x' }}
              for i in $(seq 400); do test -e started-$other && exit 0; sleep 0.05; done
              exit 1
    """)
    result = engine.run(path)
    assert result.ok, result.error
    assert [r["status"] for r in result.steps["pair"].fields["results"]] == ["ok", "ok"]


def test_each_iteration_retries_on_its_own(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: retries
        steps:
          - id: flaky
            foreach: [a, b]
            retry: {attempts: 3}
            # fails the first attempt of each item, then succeeds
            shell: echo {{ item }} >> tries-{{ item }}; test $(wc -l < tries-{{ item }}) -ge 2
    """)
    result = engine.run(path)
    flaky = result.steps["flaky"]
    assert result.ok and [h.attempts for h in (flaky.hosts or {}).values()] == [2, 2]
    assert _lines(tmp_path / "tries-a") == ["a", "a"] and _lines(tmp_path / "tries-b") == ["b", "b"]


def test_completed_iterations_are_rolled_back_most_recent_first(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: undo
        steps:
          - id: first
            shell: "true"
            rollback:
              shell: echo first >> undone
          - id: each
            foreach: [a, b, c, d]
            shell: echo {{ item }} >> done; test {{ item }} != d
            verify:
              - expect: result.rc == 0
            rollback:
              shell: echo {{ item }} >> undone
    """)
    result = engine.run(path)
    assert result.exit_code == 1
    assert _lines(tmp_path / "undone") == ["c", "b", "a", "first"]  # d failed: nothing to undo
    each = result.steps["each"]
    assert {k: v.status for k, v in (each.hosts or {}).items()} == {
        "a": "rolled_back", "b": "rolled_back", "c": "rolled_back", "d": "failed"}
    assert (each.hosts or {})["a"].rollback.description == "echo a >> undone"
    assert result.rolled_back == ["each", "first"]


def test_dry_run_plans_each_known_item_shows_unknown_items_and_changes_nothing(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: plan
        params:
          regions: {type: list, default: [eu, us]}
        steps:
          - id: per_region
            foreach: params.regions
            shell: touch made-{{ item }}
            rollback:
              shell: rm made-{{ item }}
          - id: discover
            shell: |
              touch discovered; echo '["api", "web"]'
          - id: per_service
            foreach: steps.discover.json
            shell: touch svc-{{ item }}
    """)
    plan = engine.plan(path)
    assert plan.status == "planned" and not _changed(tmp_path)
    regions = plan.steps["per_region"]
    assert regions.status == "planned"
    assert {k: (h.status, h.description, h.rollback_action) for k, h in (regions.hosts or {}).items()} == {
        "eu": ("planned", "touch made-eu", "rm made-eu"), "us": ("planned", "touch made-us", "rm made-us")}
    services = plan.steps["per_service"]
    assert services.status == "planned" and services.hosts is None  # not known before discover runs
    assert any("items unknown until the run" in n for n in services.notes)
    assert services.description == "touch svc-<unknown: item>"
    # the command line shows each iteration of the plan
    done = runproc(tmp_path, str(path), "--dry-run", state=False)
    assert done.rc == 0, done.stderr
    assert "eu: would run: touch made-eu" in done.stdout and "us: would run: touch made-us" in done.stdout
    assert "items unknown until the run" in done.stdout
    assert not _changed(tmp_path)


def test_load_time_errors_are_located(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: typos
        params:
          regions: {type: list, default: [eu]}
        steps:
          - id: early
            foreach: steps.grid.results
            shell: echo {{ item }}
          - id: grid
            needs: []
            matrix:
              region: [eu, us]
              tier: [web, db]
              exclude:
                - {regoin: us}
            shell: echo {{ item.regoin }}
          - id: named
            foreach: params.regions
            as: region
            shell: echo {{ regoin }} {{ item }}
          - id: plain
            shell: echo {{ item }}
          - id: both
            foreach: [a]
            on: web
            shell: echo hi
          - id: typo
            foreach: {host: web}
            shell: echo {{ item }}
          - id: templated
            matrix:
              r: [eu, us]
              exclude:
                - {r: "{{ params.regoins[0] }}"}
            shell: echo {{ item.r }}
    """)
    done = runproc(tmp_path, "validate", str(path), state=False)
    assert done.rc == 2
    err = done.stderr
    name = str(path)
    assert f"{name}:6:14: steps[0].foreach: uses steps.grid but does not (transitively) need it" in err
    assert f"{name}:14:12: steps[1]: matrix.exclude: 'regoin' is not an axis (did you mean 'region'?)" in err
    assert f"{name}:15:12: steps[1].shell: item has no axis 'regoin' (did you mean 'region'?)" in err
    assert f"{name}:19:12: steps[2].shell: unknown name 'regoin' (did you mean 'region'?)" in err
    assert f"{name}:19:12: steps[2].shell: this loop names its item 'region' (as: region)" in err
    assert f"{name}:21:12: steps[3].shell: 'item' is only defined in a step with 'foreach:' or 'matrix:'" in err
    assert f"{name}:23:5: steps[4]: a 'foreach:' step cannot also fan out with 'on:'" in err
    assert f"{name}:27:14: steps[5].foreach: unknown key 'host' (did you mean 'hosts'?)" in err
    assert ":28:" not in err  # the refused loop is reported once, not again at its item
    assert f"{name}:33:15: steps[6].matrix.exclude[0].r: undeclared param 'regoins' (did you mean 'regions'?)" in err
    assert ":33:15: steps[6]: matrix.exclude" not in err  # a template is not compared with the values
    assert "Traceback" not in err


def test_resume_skips_completed_iterations(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: resumable
        steps:
          - id: each
            foreach: [a, b, c]
            shell: echo {{ item }} >> ran; test {{ item }} != b || test -e fixed
    """)
    state = f"sqlite:///{tmp_path}/state.db"
    first = engine.run(path, state=state, no_rollback=True)
    assert first.exit_code == 1 and _lines(tmp_path / "ran") == ["a", "b"]
    (tmp_path / "fixed").touch()
    again = engine.resume(first.run_id, state=state, yes=True)
    assert again.ok, again.error
    assert _lines(tmp_path / "ran") == ["a", "b", "b", "c"]  # a is not run again
    each = again.steps["each"]
    assert [h.status for h in (each.hosts or {}).values()] == ["ok", "ok", "ok"]
    assert any("not run again" in n for n in (each.hosts or {})["a"].notes)
    # `runproc show` lists the iterations of the resumed run
    shown = runproc(tmp_path, "show", again.run_id, "--state", state, "--output", "text")
    assert shown.rc == 0, shown.stderr
    assert "iteration a: ok" in shown.stdout and "iteration c: ok" in shown.stdout


def test_a_terminal_shows_a_row_per_iteration(tmp_path: Path) -> None:
    from tests.helpers.cli import state_args
    from tests.helpers.terminal import Terminal

    path = write(tmp_path, FAIL_ON_B)
    term = Terminal(tmp_path, [str(path), *state_args(tmp_path)])
    final = "\n".join(term.wait())
    assert term.code == 1, final
    assert term.shows(r"each\s+failed"), final
    assert term.shows(r"✔\s+ok\s+a\b") and term.shows(r"✖\s+failed\s+b: command exited with 1"), final
    assert term.shows(r"⊘\s+cancelled\s+c: not started: fail_fast"), final


def test_the_temporal_engine_refuses_loops(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: looped
        steps:
          - id: each
            foreach: [a]
            shell: echo {{ item }}
    """)
    # refused while the workflow's input is built, before any connection (nothing listens there)
    done = runproc(tmp_path, str(path), "--engine", "temporal://127.0.0.1:1", state=False)
    assert done.rc == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"{path}:3:5: step each: foreach and matrix loops do not run on the Temporal engine" in done.stderr


def test_morning_health_check_checks_each_critical_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.servers.http import HttpServer

    monkeypatch.setenv("DB_PASSWORD", "not-used-by-this-step")

    server = HttpServer()  # its own: the routes below must not meet another test's
    server.start()
    try:
        server.set_route("GET", "/templates", json=[])
        server.set_route("GET", "/api/v1/status", status=503, json={"status": "degraded"})
        root = Path(__file__).resolve().parents[2]
        result = engine.run(root / "procedures" / "morning-health-check.yml", only=["endpoints"],
                            params={"api_url": server.url})
    finally:
        server.stop()
    endpoints = result.steps["endpoints"]
    statuses = {k: h.status for k, h in (endpoints.hosts or {}).items()}
    assert statuses == {"/health": "ok", "/templates": "ok", "/api/v1/status": "failed"}  # all three checked
    assert endpoints.status == "failed" and "/api/v1/status" in (endpoints.error or "")


def test_when_is_judged_per_iteration(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: some
        steps:
          - id: some
            foreach: [1, 2, 3, 4]
            as: n
            when: n is even
            shell: echo {{ n }} >> ran
    """)
    some = engine.run(path).steps["some"]
    assert _lines(tmp_path / "ran") == ["2", "4"]
    assert [r["status"] for r in some.fields["results"]] == ["skipped", "ok", "skipped", "ok"]


def test_the_example_end_to_end(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[2] / "examples" / "loops" / "rollout.yml"
    work = tmp_path / "work"
    failed = runproc(tmp_path, str(example), "-p", f"workdir={work}", "-p", "fail_in=us-east", "--output", "json",
                     "--report-dir", str(tmp_path / "evidence"))
    assert failed.rc == 1, failed.stderr
    # the step's log in the evidence bundle: each iteration with its own status, attempts, error, undo
    log = (tmp_path / "evidence" / "steps" / "rollout.log").read_text()
    assert "--- iteration us-east: failed ---\n" in log and "attempts: 2\n" in log
    assert "--- iteration eu-west: rolled_back ---" in log and "rollback: ok: rm -f " in log
    rollout = failed.step("rollout")
    assert rollout["loop"] is True and {k: v["status"] for k, v in rollout["hosts"].items()} == {
        "eu-west": "rolled_back", "us-east": "failed", "ap-south": "cancelled"}
    assert rollout["hosts"]["us-east"]["attempts"] == 2 and not list(work.glob("*.conf"))
    done = runproc(tmp_path, str(example), "-p", f"workdir={work}", "-v")
    assert done.rc == 0, done.stderr
    # a line per iteration under its step, and each iteration's output under its label
    assert "6/6 iterations ok" in done.stdout and "region=ap-south,service=web" in done.stdout
    assert "[web_hosts@web-2] web-2 would be probed at 10.0.1.12:8081" in done.stdout
    assert "[report] 6/6 checks healthy" in done.stdout
    # a plan shows an iteration's two-line command line for line, as a step's (not run together)
    planned = runproc(tmp_path, str(example), "-p", f"workdir={work}", "--dry-run", state=False)
    assert planned.rc == 0, planned.stderr
    assert "eu-west: would run:\n" in planned.stdout and "; fi\n" in planned.stdout, planned.stdout
    assert "; fi echo" not in planned.stdout


def test_the_run_page_lists_iterations(tmp_path: Path) -> None:
    from engine.web.app import Settings
    from tests.helpers.web import app_client

    path = write(tmp_path, FAIL_ON_B)
    state = f"sqlite:///{tmp_path}/state.db"
    result = engine.run(path, state=state)
    with app_client(Settings(state=state, procedures=tmp_path)) as client:
        page = client.get(f"/runs/{result.run_id}")
    assert page.status_code == 200
    assert "<th>Iteration</th><th>Status</th>" in page.text and "<th>Host</th><th>Status</th>" not in page.text
    assert 'id="step-each-host-c"' in page.text and "not started: fail_fast" in page.text


def test_rollback_of_a_recorded_run_undoes_its_iterations(tmp_path: Path) -> None:
    path = write(tmp_path, """
        procedure: later
        steps:
          - id: each
            foreach: [a, b, c]
            shell: echo {{ item }} >> done
            rollback:
              shell: echo {{ item }} >> undone
          - id: gate
            shell: "false"
    """)
    state = f"sqlite:///{tmp_path}/state.db"
    first = engine.run(path, state=state, no_rollback=True)
    assert first.exit_code == 1 and not (tmp_path / "undone").exists()
    report, code = engine.rollback_run(first.run_id, state=state)
    assert code == 0, report
    # another process, with the items the report kept: most recent first
    assert _lines(tmp_path / "undone") == ["c", "b", "a"]


def test_apply_holds_each_iteration_to_the_saved_plan(tmp_path: Path) -> None:
    (tmp_path / "services.json").write_text('["api", "web"]')
    path = write(tmp_path, """
        procedure: held
        steps:
          - id: discover
            readonly: true
            shell: cat services.json
          - id: each
            foreach: steps.discover.json
            shell: echo {{ item }} >> done
    """)
    saved = runproc(tmp_path, str(path), "--dry-run", "--save-plan", "plan.json")
    assert saved.rc == 0, saved.stderr
    (tmp_path / "services.json").write_text('["api", "db"]')  # the items changed since the plan
    applied = runproc(tmp_path, "apply", "plan.json", "--yes", *["--state", f"sqlite:///{tmp_path}/state.db"],
                      "--output", "json")
    assert applied.rc == 1, applied.stderr
    hosts = applied.step("each")["hosts"]
    assert hosts["api"]["status"] == "ok" and hosts["db"]["status"] == "failed"
    assert "saved plan" in hosts["db"]["error"] and _lines(tmp_path / "done") == ["api"]
