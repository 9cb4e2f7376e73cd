"""Actions on a run from runproc serve (issue 15, must-have 5): resume, retry from a step, roll
back and cancel, each behind a confirmation (a page, or ``dry_run`` in the API, that changes
nothing), CSRF protected, for an operator's token only, started as runproc processes, and each
audited in the state: done or refused (a role, a forged form, a run that cannot)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

from engine.state.opening import open_store
from engine.web import tokens
from engine.web.app import Settings
from tests.helpers.cli import RUNPROC, child_env, runproc, write
from tests.helpers.web import TestClient, app_client

# a, b, then gate fails until the file `fixed` exists; run with --no-rollback it stops there
STEPS = """
procedure: acts
steps:
  - id: a
    shell: echo run >> count-a
    rollback: {shell: echo a >> undo-order}
  - id: b
    shell: echo run >> count-b
    rollback: {shell: echo b >> undo-order}
  - id: gate
    shell: test -e fixed
  - id: c
    shell: echo run >> count-c
"""

SLOW = """
procedure: slow
steps:
  - id: prep
    shell: echo prepared
    rollback: {shell: echo undone > undone}
  - id: wait
    shell: "echo waiting; while [ ! -e release ]; do sleep 0.05; done"
"""

BOUND = 60.0  # a bound on a hang, never a measure of speed


def _state(tmp: Path) -> str:
    return f"sqlite:///{tmp}/state.db"


def _failed_run(tmp: Path) -> str:
    path = write(tmp, STEPS, "acts.yml")
    done = runproc(tmp, str(path), "--no-rollback", "--output", "json", "--state", _state(tmp))
    assert done.rc == 1, done.stderr
    return str(done.json["run_id"])


def _keys(tmp: Path) -> dict[str, str]:
    file = tmp / "tokens.yml"
    return {name: tokens.add_token(str(file), name, role)
            for name, role in (("olga", "operator"), ("vic", "viewer"))}


def _client(tmp: Path, token: str | None = None, *, signed_in: bool = False) -> TestClient:
    client = app_client(Settings(state=_state(tmp), tokens=str(tmp / "tokens.yml")))
    if token and signed_in:
        client.cookies.set("runproc_token", token)
    elif token:
        client.headers["authorization"] = f"Bearer {token}"
    return client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form on the page"
    return found.group(1)


def _ended(tmp: Path, run_id: str) -> dict[str, Any]:
    store = open_store(_state(tmp))
    try:
        deadline = time.monotonic() + BOUND
        while time.monotonic() < deadline:
            meta = store.run_meta(run_id)
            if meta is not None and meta["status"] != "running":
                return dict(store.show(run_id) or {})
            time.sleep(0.05)
    finally:
        store.close()
    raise AssertionError(f"run {run_id} did not end")


def _audit(client: TestClient, run_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/runs/{run_id}/audit")
    assert r.status_code == 200, r.text
    return list(r.json()["audit"])


def test_resume_from_the_page_is_confirmed_csrf_checked_for_operators_and_audited(tmp_path: Path) -> None:
    run_id = _failed_run(tmp_path)
    keys = _keys(tmp_path)
    (tmp_path / "fixed").touch()
    with _client(tmp_path, keys["vic"], signed_in=True) as vic:
        page = vic.get(f"/runs/{run_id}")
        assert page.status_code == 200 and f"/runs/{run_id}/actions/resume" in page.text
        confirm = vic.get(f"/runs/{run_id}/actions/resume")
        assert confirm.status_code == 200 and "c" in re.search(r"Run: <strong>([^<]*)", confirm.text).group(1)
        assert re.search(r'class="confirm-action" disabled', confirm.text)  # a viewer sees why, greyed out
        forced = vic.post(f"/runs/{run_id}/actions/resume", data={"csrf": _csrf(confirm.text), "confirm": "yes"},
                          follow_redirects=False)
        assert forced.status_code == 403
    with _client(tmp_path, keys["olga"], signed_in=True) as olga:
        confirm = olga.get(f"/runs/{run_id}/actions/resume")
        assert "gate, c" in confirm.text and "not run again" in confirm.text.lower()
        forged = olga.post(f"/runs/{run_id}/actions/resume", data={"csrf": "x" * 43, "confirm": "yes"},
                           follow_redirects=False)
        assert forged.status_code == 403 and "CSRF" in forged.text
        assert not (tmp_path / "count-c").exists()  # refused: nothing ran
        done = olga.post(f"/runs/{run_id}/actions/resume", data={"csrf": _csrf(confirm.text), "confirm": "yes"},
                         follow_redirects=False)
        assert done.status_code == 303, done.text
        new_run = done.headers["location"].split("/runs/")[1].split("#")[0]
        assert new_run != run_id
        report = _ended(tmp_path, new_run)
        assert report["status"] == "ok" and report.get("user") == "olga"
        assert (tmp_path / "count-a").read_text() == "run\n" and (tmp_path / "count-c").read_text() == "run\n"
        entries = _audit(olga, run_id)
        assert [(e["user"], e["action"], e["result"][:13]) for e in reversed(entries)] == [
            ("vic", "resume", "refused (403)"), ("olga", "resume", "refused (403)"), ("olga", "resume", "started")]
        assert entries[0]["new_run"] == new_run and entries[0]["via"] == "web" and entries[0]["role"] == "operator"
        assert "CSRF" in entries[1]["detail"]
        # the run's page shows its audit; the resumed run's page too (it was started by it)
        shown = olga.get(f"/runs/{new_run}").text
        assert 'id="audit"' in shown and "started" in shown and "olga" in shown


def test_the_api_retries_from_a_step_and_rolls_back_with_dry_runs_that_change_nothing(tmp_path: Path) -> None:
    run_id = _failed_run(tmp_path)
    keys = _keys(tmp_path)
    (tmp_path / "fixed").touch()
    with _client(tmp_path) as anonymous:
        r = anonymous.post(f"/api/v1/runs/{run_id}/retry", json={"step": "b"})
        assert r.status_code == 401 and "www-authenticate" in r.headers
    with _client(tmp_path, keys["vic"]) as vic:
        assert vic.post(f"/api/v1/runs/{run_id}/rollback", json={}).status_code == 403
    with _client(tmp_path, keys["olga"]) as olga:
        runs_before = len(olga.get("/api/v1/runs").json()["runs"])
        preview = olga.post(f"/api/v1/runs/{run_id}/retry", json={"step": "b", "dry_run": True})
        assert preview.status_code == 200, preview.text
        assert preview.json()["possible"] and preview.json()["again"] == ["b", "gate", "c"]
        assert preview.json()["kept"] == ["a"]
        undo = olga.post(f"/api/v1/runs/{run_id}/rollback", json={"dry_run": True}).json()
        assert undo["again"] == ["b", "a"] and undo["possible"]
        # the dry runs changed nothing: no run, no file, and no audit entry of an action done
        assert len(olga.get("/api/v1/runs").json()["runs"]) == runs_before
        assert (tmp_path / "count-b").read_text() == "run\n" and not (tmp_path / "undo-order").exists()
        wrong = olga.post(f"/api/v1/runs/{run_id}/retry", json={"step": "nope"})
        assert wrong.status_code == 409 and "no step 'nope'" in wrong.json()["error"]["message"]
        retried = olga.post(f"/api/v1/runs/{run_id}/retry", json={"step": "b"})
        assert retried.status_code == 201, retried.text
        new_run = retried.json()["new_run"]
        assert _ended(tmp_path, new_run)["status"] == "ok"
        assert (tmp_path / "count-a").read_text() == "run\n" and (tmp_path / "count-b").read_text() == "run\nrun\n"
        # the original now belongs to its resume: rolling it back is refused, said and audited
        again = olga.post(f"/api/v1/runs/{run_id}/rollback", json={})
        assert again.status_code == 409 and new_run in again.json()["error"]["message"]
        rolled = olga.post(f"/api/v1/runs/{new_run}/rollback", json={})
        assert rolled.status_code == 201, rolled.text
        assert _ended(tmp_path, rolled.json()["new_run"])["status"] == "ok"
        assert (tmp_path / "undo-order").read_text() == "b\na\n"
        log = olga.get("/api/v1/audit").json()["audit"]
        assert [(e["action"], e["result"].split(" ")[0], e["via"]) for e in reversed(log)] == [
            ("retry", "refused", "api"), ("rollback", "refused", "api"), ("retry", "refused", "api"),
            ("retry", "started", "api"), ("rollback", "refused", "api"), ("rollback", "started", "api")]
        assert log[2]["step"] == "b" and log[2]["user"] == "olga" and log[-1]["user"] is None


def test_cancel_signals_a_running_run_of_this_machine_as_ctrl_c_would(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    path = write(tmp_path, SLOW, "slow.yml")
    proc = subprocess.Popen([*RUNPROC, str(path), "--state", _state(tmp_path)], cwd=tmp_path, env=child_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        store = open_store(_state(tmp_path))
        try:
            deadline = time.monotonic() + BOUND
            while not store.runs(1) or not any(e["event"] == "step_started" and e["step"] == "wait"
                                           for e in store.journal(store.runs(1)[0]["id"])):
                assert time.monotonic() < deadline and proc.poll() is None, "the run never started its step"
                time.sleep(0.05)
            run_id = store.runs(1)[0]["id"]
        finally:
            store.close()
        with _client(tmp_path, keys["olga"]) as olga:
            preview = olga.post(f"/api/v1/runs/{run_id}/cancel", json={"dry_run": True}).json()
            assert preview["possible"] and preview["process"]["pid"] == proc.pid
            assert proc.poll() is None  # the dry run signalled nothing
            assert olga.post(f"/api/v1/runs/{run_id}/resume", json={}).status_code == 409  # still running
            done = olga.post(f"/api/v1/runs/{run_id}/cancel", json={})
            assert done.status_code == 200 and done.json()["result"] == "signalled", done.text
            _, err = proc.communicate(timeout=BOUND)
            assert proc.returncode == 130, err
            report = _ended(tmp_path, run_id)
            assert report["rolled_back"] == ["prep"] and (tmp_path / "undone").exists()
            again = olga.post(f"/api/v1/runs/{run_id}/cancel", json={})
            assert again.status_code == 409 and "not running" in again.json()["error"]["message"]
            assert [e["result"].split(" ")[0] for e in _audit(olga, run_id)] == ["refused", "signalled", "refused"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_answers_to_a_confirm_step_are_audited_and_a_four_eyes_refusal_too(tmp_path: Path) -> None:
    from tests.web.test_web_approvals import GATED, ME, _answer, _as, _tokens, _waiting

    keys = _tokens(tmp_path)
    with _waiting(tmp_path, GATED, "gate") as w:
        with _as(tmp_path, keys[ME]) as starter:  # four_eyes: the starter may not approve
            assert _answer(starter, w.run_id, w.request["request"], "approve").status_code == 403
        with _as(tmp_path, keys["bob"]) as bob:
            assert _answer(bob, w.run_id, w.request["request"], "approve", "looks fine").status_code == 303
            entries = list(reversed(_audit(bob, w.run_id)))
        rc, err = w.finish()
        assert rc == 0, err
    assert [(e["user"], e["action"], e["result"]) for e in entries] == [
        (ME, "answer", "refused (403)"), ("bob", "approve", "recorded")]
    assert "four_eyes" in entries[0]["detail"] and entries[1]["detail"] == "looks fine"
    assert entries[1]["step"] == "gate" and entries[1]["role"] == "approver"
