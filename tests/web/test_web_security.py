"""runproc serve's security basics: secrets never rendered (a canary through every page and
API answer), tokens hashed at rest and checked on every request when configured, a sign-in
form with CSRF protection, an open server answering loopback names only, headers that keep
pages to their own resources, and a bug answered as a 500 without a traceback."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from engine.web import tokens
from engine.web.app import MAX_BODY, Settings, Who
from tests.helpers.web import CANARY, CANARY_PARAM, History, TestClient, app_client

NEEDLES = (CANARY, CANARY.upper(), CANARY.lower(), base64.b64encode(CANARY.encode()).decode(), CANARY_PARAM,
           CANARY_PARAM.upper())


def _leaks(text: str) -> list[str]:
    return [n for n in NEEDLES if n in text]


def _every_url(client: TestClient, history: History) -> list[str]:
    urls = ["/runs", "/runs?procedure=canary", "/procedures", "/api/v1/runs", "/api/v1/procedures",
            "/api/v1/openapi.json"]
    for run_id in history.every():
        # the event stream too: a finished run's replays its whole journal, then closes
        urls += [f"/runs/{run_id}", f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/steps",
                 f"/api/v1/runs/{run_id}/events", f"/api/v1/runs/{run_id}/approvals",
                 # the actions' confirmation pages (their previews) and the audit
                 f"/runs/{run_id}/actions/retry", f"/runs/{run_id}/actions/rollback", f"/api/v1/runs/{run_id}/audit"]
    canary = history.ids["canary"][0]  # each step's logs: the output kept in the state, and as text
    urls += [f"/api/v1/runs/{canary}/steps/show/logs", f"/api/v1/runs/{canary}/steps/show/logs/stdout",
             f"/api/v1/runs/{canary}/steps/fail/logs", f"/api/v1/runs/{canary}/steps/fail/logs/stderr"]
    for p in client.get("/api/v1/procedures").json()["procedures"]:
        if p["ok"]:  # an invalid file has no page of its own
            urls += [f"/procedures/{p['name']}", f"/api/v1/procedures/{p['name']}", f"/procedures/{p['name']}/start"]
    return urls


def test_no_page_and_no_api_answer_holds_a_secret(client: TestClient, history: History) -> None:
    run_id = history.ids["canary"][0]
    steps = client.get(f"/api/v1/runs/{run_id}/steps").json()["steps"]
    show = next(s for s in steps if s["id"] == "show")
    # the proof that the run did use the secrets: their masks are where they were
    assert show["action"].startswith("echo *** ***") and "***" in show["fields"]["stdout"]
    assert client.get(f"/api/v1/runs/{run_id}").json()["params"]["token"] == "***"
    stream = client.get(f"/api/v1/runs/{run_id}/events").text
    assert "echo *** ***" in stream and '"event":"step_finished"' in stream  # the stream carries outputs
    assert client.get("/api/v1/procedures/canary").json()["params"][0]["default"] == "***"
    leaks = {}
    urls = _every_url(client, history)
    assert len(urls) > 25
    for url in urls:
        r = client.get(url)
        assert r.status_code == 200, (url, r.status_code)
        if _leaks(r.text):
            leaks[url] = _leaks(r.text)
    assert leaks == {}
    assert CANARY_PARAM in (history.procedures / "canary.yml").read_text()  # it was there to leak


def test_an_open_server_answers_loopback_names_only(history: History) -> None:
    settings = Settings(state=history.state, procedures=history.procedures)
    for base in ("http://127.0.0.1:8480", "http://localhost:8480", "http://[::1]:8480", "http://127.0.0.2"):
        with app_client(settings, base) as c:
            assert c.get("/api/v1/runs").status_code == 200, base
    # a page elsewhere whose name points at 127.0.0.1 (DNS rebinding) reads nothing
    with app_client(settings, "http://rebound.example:8480") as c:
        r = c.get("/api/v1/runs")
        assert r.status_code == 421 and "loopback" in r.json()["error"]["message"]
        assert c.get("/runs").status_code == 421


def test_pages_and_answers_carry_headers_that_keep_them_to_their_own_resources(client: TestClient) -> None:
    for url in ("/runs", "/api/v1/runs", "/api/v1/runs/0123456789ab", "/nowhere"):
        r = client.get(url)
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        # scripts and event streams from this server only: no inline script, no other origin
        assert "script-src 'self';" in csp and "connect-src 'self';" in csp and "unsafe" not in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["referrer-policy"] == "same-origin"


def test_open_means_reading_only(history: History) -> None:
    assert Who(open=True).can("read") and not Who(open=True).can("start") and not Who(open=True).can("approve")
    assert Who("bob", "viewer").can("read") and not Who("bob", "viewer").can("cancel")
    assert Who("ann", "operator").can("rollback") and not Who("ann", "operator").can("approve")
    assert Who("cy", "approver").can("approve") and not Who("cy", "approver").can("start")


# ---------------------------------------------------------------- tokens


@pytest.fixture
def secured(history: History, tmp_path: Path) -> tuple[Path, str, str]:
    """A tokens file with a viewer and an operator: (file, viewer's token, operator's token)."""
    path = tmp_path / "tokens.yml"
    return path, tokens.add_token(path, "vera", "viewer"), tokens.add_token(path, "otto", "operator")


def test_with_tokens_every_request_needs_a_valid_one(history: History, secured: tuple[Path, str, str]) -> None:
    path, viewer, operator = secured
    stored = path.read_text()
    assert viewer not in stored and operator not in stored and tokens.token_hash(viewer) in stored
    assert path.stat().st_mode & 0o077 == 0  # only its owner reads it
    with app_client(Settings(state=history.state, tokens=str(path))) as c:
        r = c.get("/api/v1/runs")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert "needs a token" in r.json()["error"]["message"]
        bad = c.get("/api/v1/runs", headers={"authorization": f"Bearer {viewer}x"})
        assert bad.status_code == 401 and "not valid" in bad.json()["error"]["message"]
        basic = c.get("/api/v1/runs", headers={"authorization": "Basic dXNlcjpwYXNz"})
        assert basic.status_code == 401 and "Bearer" in basic.json()["error"]["message"]
        for token in (viewer, operator):
            ok = c.get("/api/v1/runs", headers={"authorization": f"Bearer {token}"})
            assert ok.status_code == 200 and len(ok.json()["runs"]) == len(history.every())
        page = c.get("/runs", follow_redirects=False)  # a browser without a token: the sign-in form
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2Fruns"
        named = c.get("/runs", headers={"authorization": f"Bearer {operator}"})
        assert "otto <span class=\"role\">(operator)</span>" in named.text
        # a token added or removed while the server runs counts at once
        late = tokens.add_token(path, "lena", "approver")
        assert c.get("/api/v1/runs", headers={"authorization": f"Bearer {late}"}).status_code == 200
        tokens.remove_token(path, "vera")
        assert c.get("/api/v1/runs", headers={"authorization": f"Bearer {viewer}"}).status_code == 401
        # a file that can no longer be read lets nobody in (it does not open the server)
        path.write_text("tokens: [oops\n")
        broken = c.get("/api/v1/runs", headers={"authorization": f"Bearer {operator}"})
        assert broken.status_code == 503 and "tokens file" in broken.json()["error"]["message"]


def test_a_server_beyond_loopback_whose_tokens_were_all_removed_lets_nobody_in(
        history: History, secured: tuple[Path, str, str]) -> None:
    path, viewer, operator = secured
    with app_client(Settings(state=history.state, tokens=str(path), loopback=False)) as c:
        assert c.get("/api/v1/runs", headers={"authorization": f"Bearer {viewer}"}).status_code == 200
        tokens.remove_token(path, "vera")
        tokens.remove_token(path, "otto")
        r = c.get("/api/v1/runs")
        assert r.status_code == 503 and "nobody is let in" in r.json()["error"]["message"]


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def test_signing_in_with_a_token_sets_a_cookie_guarded_by_csrf(history: History,
                                                               secured: tuple[Path, str, str]) -> None:
    path, viewer, _ = secured
    with app_client(Settings(state=history.state, tokens=str(path))) as c:
        form = c.get("/login", params={"next": "/runs?status=failed"})
        assert form.status_code == 200 and 'type="password"' in form.text
        assert "httponly" in form.headers["set-cookie"].lower() and "samesite=strict" in form.headers["set-cookie"].lower()
        csrf = _csrf(form.text)
        assert 'name="next" value="/runs?status=failed"' in form.text
        wrong = c.post("/login", data={"csrf": csrf, "token": "rpt_nope", "next": "/runs"})
        assert wrong.status_code == 401 and "That token is not valid here." in wrong.text
        forged = c.post("/login", data={"csrf": "x" * 43, "token": viewer, "next": "/runs"})
        assert forged.status_code == 403 and "CSRF" in forged.text
        elsewhere = c.post("/login", data={"csrf": csrf, "token": viewer}, headers={"origin": "http://evil.example"})
        assert elsewhere.status_code == 403
        done = c.post("/login", data={"csrf": csrf, "token": viewer, "next": "/runs?status=failed"},
                      follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == "/runs?status=failed"
        cookie = done.headers["set-cookie"].lower()
        assert "runproc_token=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
        page = c.get("/runs")
        assert page.status_code == 200 and "vera" in page.text and "Sign out" in page.text
        out = c.post("/logout", data={"csrf": csrf}, follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert c.get("/runs", follow_redirects=False).status_code == 303
        # after signing in, only a path of this server: never another site
        again = c.post("/login", data={"csrf": csrf, "token": viewer, "next": "//evil.example/x"},
                       follow_redirects=False)
        assert again.headers["location"] == "/runs"


def test_a_body_too_large_or_not_a_form_is_refused(history: History, secured: tuple[Path, str, str]) -> None:
    path, _, _ = secured
    with app_client(Settings(state=history.state, tokens=str(path))) as c:
        csrf = _csrf(c.get("/login").text)
        big = c.post("/login", data={"csrf": csrf, "token": "x" * (MAX_BODY + 1)})
        assert big.status_code == 413 and "larger than" in big.text
        as_json = c.post("/login", json={"token": "x"})
        assert as_json.status_code == 415


def test_without_tokens_the_sign_in_form_has_nothing_to_do(client: TestClient) -> None:
    r = client.get("/login", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/runs"


def test_a_bug_is_a_500_without_a_traceback_and_a_crash_file(history: History, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    with app_client(Settings(state=history.state)) as c:
        def broken(*args: object, **kwargs: object) -> list[dict[str, object]]:
            raise RuntimeError("a bug in the store")

        monkeypatch.setattr(c.app.state.store, "runs", broken)  # type: ignore[attr-defined]
        for url in ("/api/v1/runs", "/runs"):
            r = c.get(url)
            assert r.status_code == 500 and "internal error (reference" in r.text
            assert "Traceback" not in r.text and "a bug in the store" not in r.text
            assert r.headers["content-security-policy"]
        assert c.get("/api/v1/runs").json()["error"]["status"] == 500
    logged = capsys.readouterr().err
    assert "runproc serve: internal error" in logged and "RuntimeError" in logged and "Traceback" not in logged
    crashes = list((tmp_path / "xdg" / "runproc" / "crashes").glob("runproc-serve-crash-*.txt"))
    assert crashes and "a bug in the store" in crashes[0].read_text()
