"""Answers to ``confirm`` steps from anywhere (issue 15, must-have 4): a local run with no
terminal waits (up to its step's timeout, or RUNPROC_APPROVAL_WAIT) for ``runproc approve RUN
STEP`` against the state or the run page's Approve / Reject; ``four_eyes`` refuses the user who
started the run, ``approvers`` anyone else not named; the first answer stands; a terminal's
question ends when the answer comes from elsewhere; every answer is journaled (who, how, when,
comment) and shown; the API answers with an approver's token only."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.execution.approvals import pending
from engine.execution.store import user_name
from engine.state.opening import open_store
from engine.web import tokens
from engine.web.app import Settings
from tests.helpers.cli import RUNPROC, child_env, runproc, write
from tests.helpers.web import TestClient, app_client

ME = user_name()  # who starts the runs here: four_eyes keeps them from approving

GATED = """
procedure: release
steps:
  - id: prepare
    shell: echo prepared
  - id: gate
    needs: [prepare]
    confirm:
      message: "Ship {{ params.what }}?"
      four_eyes: true
      approvers: [bob, approver]
    timeout: 60s
  - id: ship
    needs: [gate]
    shell: echo shipped
params:
  what: {type: str, default: v2}
"""

# no timeout of its own: it waits as long as RUNPROC_APPROVAL_WAIT says, or is refused at once
PLAIN = """
procedure: plain
steps:
  - id: gate
    confirm: Go?
  - id: after
    shell: echo after
"""


@dataclass
class Waiting:
    proc: subprocess.Popen[str]
    run_id: str
    request: dict[str, Any]

    def finish(self) -> tuple[int, str]:
        out, err = self.proc.communicate(timeout=60)
        return self.proc.returncode, err


def _state(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/state.db"


@contextmanager
def _waiting(tmp_path: Path, text: str, step: str, env: dict[str, str] | None = None) -> Iterator[Waiting]:
    """A run of ``text`` started with no terminal, once its ``step`` waits for an answer."""
    path = write(tmp_path, text, "proc.yml")
    proc = subprocess.Popen([*RUNPROC, str(path), "--output", "json", "--state", _state(tmp_path)], cwd=tmp_path,
                            env=child_env(env), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield _until_waiting(tmp_path, proc, step)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _until_waiting(tmp_path: Path, proc: subprocess.Popen[str], step: str) -> Waiting:
    store = open_store(_state(tmp_path))
    try:
        deadline = time.monotonic() + 60  # a bound on a hang, not a measure
        while time.monotonic() < deadline and proc.poll() is None:
            runs = store.runs(1)
            if runs:
                waits = pending(store.journal(runs[0]["id"]))
                if step in waits:
                    return Waiting(proc, runs[0]["id"], waits[step])
            time.sleep(0.05)
    finally:
        store.close()
    raise AssertionError(f"{step} never waited: {proc.communicate(timeout=60)}")


def _approve(tmp_path: Path, run_id: str, step: str, *args: str, user: str | None = None) -> Any:
    env = {"LOGNAME": user, "USER": user} if user else None
    return runproc(tmp_path, "approve", run_id, step, *args, env=env)


def _show(tmp_path: Path, run_id: str) -> dict[str, Any]:
    shown = runproc(tmp_path, "show", run_id, "--output", "json", "--state", _state(tmp_path))
    assert shown.rc == 0, shown.stderr
    return dict(shown.json)


def test_runproc_approve_answers_a_run_that_waits_without_a_terminal(tmp_path: Path) -> None:
    with _waiting(tmp_path, GATED, "gate") as w:
        assert w.request["message"] == "Ship v2?" and w.request["four_eyes"] is True
        assert w.request["started_by"] == ME and w.request["approvers"] == ["bob", "approver"]
        starter = _approve(tmp_path, w.run_id, "gate")
        assert starter.rc == 3 and "four_eyes" in starter.stderr and ME in starter.stderr
        assert len(starter.stderr.strip().splitlines()) == 1 and "Traceback" not in starter.stderr
        stranger = _approve(tmp_path, w.run_id, "gate", user="mallory")
        assert stranger.rc == 3 and "not among the approvers" in stranger.stderr
        wrong = _approve(tmp_path, w.run_id, "ship", user="bob")
        assert wrong.rc == 3 and "not waiting" in wrong.stderr and "gate" in wrong.stderr
        unknown = _approve(tmp_path, "0123456789ab", "gate", user="bob")
        assert unknown.rc == 2 and "no run" in unknown.stderr
        said = _approve(tmp_path, w.run_id[:6], "gate", "--comment", "graphs  look\nfine", user="bob")
        assert said.rc == 0 and f"approved gate of run {w.run_id} as bob" in said.stdout, said.stderr
        rc, err = w.finish()
        assert rc == 0, err
    late = _approve(tmp_path, w.run_id, "gate", "--reject", user="bob")
    assert late.rc == 3 and "has ended (ok)" in late.stderr
    run = _show(tmp_path, w.run_id)
    gate = next(s for s in run["steps"] if s["id"] == "gate")
    assert (gate["approved"], gate["by"], gate["how"], gate["comment"]) == (True, "bob", "runproc approve",
                                                                             "graphs look fine")
    answers = [e["data"] for e in run["journal"] if e["event"] == "approval"]
    assert answers == [{"approved": True, "by": "bob", "how": "runproc approve", "comment": "graphs look fine"}]


def test_a_rejection_refuses_the_run_and_a_wait_without_a_timeout_comes_from_the_environment(
        tmp_path: Path) -> None:
    with _waiting(tmp_path, PLAIN, "gate", env={"RUNPROC_APPROVAL_WAIT": "60s"}) as w:
        assert w.request["until"]  # the wait has an end, from RUNPROC_APPROVAL_WAIT
        said = _approve(tmp_path, w.run_id, "gate", "--reject", "--comment", "not today")  # the starter may reject
        assert said.rc == 0 and "rejected gate" in said.stdout, said.stderr
        rc, err = w.finish()
    assert rc == 3, err
    gate = next(s for s in _show(tmp_path, w.run_id)["steps"] if s["id"] == "gate")
    assert gate["approved"] is False and gate["by"] == ME and "not today" in gate["error"]
    # without a timeout and without the variable, nobody to ask: refused at once, as ever
    done = runproc(tmp_path, "proc.yml", "--output", "json")
    assert done.rc == 3 and "--yes" in done.json["steps"][0]["error"]


def test_no_answer_within_the_steps_timeout_times_it_out(tmp_path: Path) -> None:
    write(tmp_path, PLAIN.replace("    confirm: Go?", "    confirm: Go?\n    timeout: 1s"), "short.yml")
    done = runproc(tmp_path, "short.yml", "--output", "json")
    assert done.rc == 1, done.stderr
    gate = done.json["steps"][0]
    assert gate["status"] == "timed_out" and "no answer within the step's timeout" in gate["error"]


def test_a_terminals_question_ends_when_the_answer_comes_from_elsewhere(tmp_path: Path) -> None:
    import pty
    import select

    path = write(tmp_path, PLAIN, "proc.yml")
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(tmp_path)
        os.execvpe(RUNPROC[0], [*RUNPROC, str(path), "--state", _state(tmp_path)], child_env({"NO_COLOR": "1"}))
    seen = b""
    try:
        end = time.monotonic() + 60
        while b"[y/N]" not in seen and time.monotonic() < end:
            if select.select([fd], [], [], 0.2)[0]:
                seen += os.read(fd, 4096)
        assert b"Go? [y/N]" in seen, seen
        store = open_store(_state(tmp_path))
        try:
            run_id = store.runs(1)[0]["id"]
        finally:
            store.close()
        said = _approve(tmp_path, run_id, "gate", "--comment", "from the web team", user="carol")
        assert said.rc == 0, said.stderr
        while time.monotonic() < end:  # the run goes on by itself: nobody types anything
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, seen.decode(errors="replace")
    gate = _show(tmp_path, run_id)["steps"][0]
    assert (gate["approved"], gate["by"], gate["how"]) == (True, "carol", "runproc approve")


# ---------------------------------------------------------------- the web page and the API


def _tokens(tmp_path: Path) -> dict[str, str]:
    """Tokens for the starter (an approver, but four_eyes), bob and dave (approvers) and vic (a viewer)."""
    file = tmp_path / "tokens.yml"
    return {name: tokens.add_token(str(file), name, role)
            for name, role in ((ME, "approver"), ("bob", "approver"), ("dave", "approver"), ("vic", "viewer"))}


def _as(tmp_path: Path, token: str | None) -> TestClient:
    client = app_client(Settings(state=_state(tmp_path), tokens=str(tmp_path / "tokens.yml") if token else None))
    if token:
        client.headers["authorization"] = f"Bearer {token}"
    return client


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no form on the page"
    return found.group(1)


def _answer(client: TestClient, run_id: str, request: int, decision: str, comment: str = "",
            csrf: str | None = None) -> Any:
    page = client.get(f"/runs/{run_id}")
    form = {"csrf": csrf if csrf is not None else _csrf(page.text), "step": "gate", "request": str(request),
            "decision": decision, "comment": comment}
    return client.post(f"/runs/{run_id}/approvals", data=form, follow_redirects=False)


def test_the_run_page_approves_with_four_eyes_and_records_who(tmp_path: Path) -> None:
    keys = _tokens(tmp_path)
    with _waiting(tmp_path, GATED, "gate") as w:
        with _as(tmp_path, keys[ME]) as starter:
            page = starter.get(f"/runs/{w.run_id}").text
            assert 'id="waiting-gate"' in page and "Ship v2?" in page
            approve = re.search(r'<button type="submit" name="decision" value="approve"[^>]*>', page)
            assert approve and "disabled" in approve.group(0) and "four_eyes" in page  # not theirs to give
            refused = _answer(starter, w.run_id, w.request["request"], "approve")
            assert refused.status_code == 403 and "four_eyes" in refused.text
        with _as(tmp_path, keys["vic"]) as viewer:
            assert "may not answer" in viewer.get(f"/runs/{w.run_id}").text
            forced = _answer(viewer, w.run_id, w.request["request"], "approve", csrf=viewer.cookies["runproc_csrf"])
            assert forced.status_code == 403 and "may not answer" in forced.text
        with _as(tmp_path, keys["bob"]) as bob:
            forged = _answer(bob, w.run_id, w.request["request"], "approve", csrf="y" * 43)
            assert forged.status_code == 403 and "CSRF" in forged.text
            stale = _answer(bob, w.run_id, w.request["request"] - 1, "approve")
            assert stale.status_code == 409 and "reload" in stale.text
            done = _answer(bob, w.run_id, w.request["request"], "approve", "checked <the> graphs")
            assert done.status_code == 303 and done.headers["location"] == f"/runs/{w.run_id}#step-gate"
            rc, err = w.finish()
            assert rc == 0, err
            page = bob.get(f"/runs/{w.run_id}").text
            assert 'id="waiting-gate"' not in page
            row = page.split('<table class="approvals">', 1)[1].split("</table>", 1)[0]
            assert "approved" in row and "bob" in row and "(approver)" in row and ">web<" in row
            assert "checked &lt;the&gt; graphs" in row
            again = _answer(bob, w.run_id, w.request["request"], "reject", csrf=bob.cookies["runproc_csrf"])
            assert again.status_code == 409 and "has ended" in again.text


def test_the_api_answers_with_an_approvers_token_only(tmp_path: Path) -> None:
    keys = _tokens(tmp_path)
    with _waiting(tmp_path, GATED, "gate") as w:
        url = f"/api/v1/runs/{w.run_id}/approvals"
        with _as(tmp_path, None) as open_client:
            shown = open_client.get(url).json()
            assert [x["step"] for x in shown["waiting"]] == ["gate"] and shown["approvals"] == []
            r = open_client.post(url, json={"step": "gate", "approved": True})
            assert r.status_code == 401 and "token" in r.json()["error"]["message"]
        with _as(tmp_path, keys["vic"]) as viewer:
            assert viewer.post(url, json={"step": "gate", "approved": True}).status_code == 403
        with _as(tmp_path, keys["dave"]) as dave:  # not named, but holds a named role
            for body, status in (({"step": "gate"}, 400), ({"step": "gate", "approved": "yes"}, 400),
                                 ({"step": "", "approved": True}, 400), ([1], 400)):
                assert dave.post(url, json=body).status_code == status, body
            assert dave.post(url, content=b"step=gate", headers={"content-type": "text/plain"}).status_code == 415
            assert dave.post("/api/v1/runs/0123456789ab/approvals",
                             json={"step": "gate", "approved": True}).status_code == 404
            r = dave.post(url, json={"step": "gate", "approved": True, "comment": "by role"})
            assert r.status_code == 201, r.text
            assert {k: r.json()[k] for k in ("run_id", "step", "approved", "by", "role", "how", "comment")} == {
                "run_id": w.run_id, "step": "gate", "approved": True, "by": "dave", "role": "approver", "how": "api",
                "comment": "by role"}
            rc, err = w.finish()
            assert rc == 0, err
            answers = dave.get(url).json()
            assert answers["waiting"] == [] and answers["approvals"][0]["by"] == "dave"


def test_an_open_server_lets_the_local_user_reject_but_not_approve_their_own_run(tmp_path: Path) -> None:
    with _waiting(tmp_path, GATED, "gate") as w, _as(tmp_path, None) as local:
        assert _answer(local, w.run_id, w.request["request"], "approve").status_code == 403
        r = _answer(local, w.run_id, w.request["request"], "reject", "wrong window")
        assert r.status_code == 303
        rc, err = w.finish()
        assert rc == 3, err
        run = local.get(f"/api/v1/runs/{w.run_id}").json()
        assert run["status"] == "refused" and run["approvals"][0]["approved"] is False
        assert (run["approvals"][0]["by"], run["approvals"][0]["how"]) == (ME, "web")
