"""runproc serve in a real browser: Playwright driving Debian's chromium against a real
``runproc serve`` while real ``runproc`` runs go on beside it. A step turns green on the page
by itself; a confirm step with ``four_eyes`` is approved from a second browser signed in as
another person while the starter's Approve stays refused, and both pages show the answer; a
dry run is started from the form made from the procedure's params."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from engine.execution.store import user_name
from engine.web import tokens
from tests.helpers.cli import RUNPROC, child_env, write
from tests.helpers.web import GATED, History, serving

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/test installs it)
WAIT_MS = 30_000  # a bound on a hang for each expectation, never a measure of speed


FOUR_EYES = """
procedure: release
steps:
  - id: prepare
    shell: echo prepared
  - id: gate
    needs: [prepare]
    confirm: {message: "Ship it?", four_eyes: true}
    timeout: 120s
  - id: ship
    needs: [gate]
    shell: echo shipped
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        # root (a CI container) cannot use chromium's sandbox
        launched = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield launched
        launched.close()


def _run(tmp_path: Path, text: str) -> subprocess.Popen[str]:
    path = write(tmp_path, text, "proc.yml")
    return subprocess.Popen([*RUNPROC, str(path), "--output", "json", "--state", f"sqlite:///{tmp_path}/state.db"],
                            cwd=tmp_path, env=child_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _first_run(page: Page, base: str) -> str:
    """The newest run's id, once the runs page lists it (live: no reload by hand)."""
    page.goto(f"{base}/runs")
    link = page.locator("table.runs tbody tr a.mono").first
    expect(link).to_be_visible(timeout=WAIT_MS)
    return str(link.text_content())


def _ended(proc: subprocess.Popen[str], rc: int) -> None:
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == rc, err


def test_a_step_turns_green_live(browser: Browser, tmp_path: Path) -> None:
    go = tmp_path / "go"
    proc = _run(tmp_path, GATED.format(go=go))
    try:
        with serving(History(tmp_path, tmp_path)) as base:
            page = browser.new_page()
            run_id = _first_run(page, base)
            page.goto(f"{base}/runs/{run_id}")
            hold = page.locator('svg.dag g.node[data-step="hold"]')
            expect(hold).to_have_class("node st-running", timeout=WAIT_MS)
            go.touch()
            expect(hold).to_have_class("node st-ok", timeout=WAIT_MS)  # green, without a reload by hand
            expect(page.locator("#run-title .badge")).to_have_text("ok", timeout=WAIT_MS)
            expect(page.locator("#step-last")).to_contain_text("last words", timeout=WAIT_MS)
            page.close()
        _ended(proc, 0)
    finally:
        go.touch()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _signed_in(browser: Browser, base: str, name: str, token: str, role: str = "approver") -> Page:
    page = browser.new_context().new_page()  # a context of its own: its own cookies, another person
    page.goto(f"{base}/login")
    page.fill("#token", token)
    page.click("form.login button[type=submit]")
    expect(page.locator("header .who")).to_contain_text(f"{name} ({role})", timeout=WAIT_MS)
    return page


def test_four_eyes_refuses_the_starter_and_a_second_person_approves(browser: Browser, tmp_path: Path) -> None:
    file = str(tmp_path / "tokens.conf")  # beside the procedure, not read as one
    me = user_name()  # the starter: the OS user of the run
    starter_token = tokens.add_token(file, me, "approver")
    bob_token = tokens.add_token(file, "bob", "approver")
    proc = _run(tmp_path, FOUR_EYES)
    try:
        with serving(History(tmp_path, tmp_path), "--tokens", file) as base:
            starter = _signed_in(browser, base, me, starter_token)
            run_id = _first_run(starter, base)
            starter.goto(f"{base}/runs/{run_id}")
            waiting = starter.locator("#waiting-gate")
            expect(waiting).to_contain_text("Ship it?", timeout=WAIT_MS)
            expect(waiting.locator("button.approve")).to_be_disabled()
            expect(waiting).to_contain_text("four_eyes")
            bob = _signed_in(browser, base, "bob", bob_token)
            bob.goto(f"{base}/runs/{run_id}")
            bob.fill("#waiting-gate textarea[name=comment]", "checked the canary")
            bob.click("#waiting-gate button.approve")
            for page in (bob, starter):  # the starter's page learns of it live
                audit = page.locator("table.approvals")
                expect(audit).to_contain_text("bob", timeout=WAIT_MS)
                expect(audit).to_contain_text("checked the canary")
                expect(audit).to_contain_text("web")
            expect(starter.locator("#run-title .badge")).to_have_text("ok", timeout=WAIT_MS)
        _ended(proc, 0)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_dry_run_started_from_the_form(browser: Browser, tmp_path: Path) -> None:
    write(tmp_path, FOUR_EYES.replace("steps:", "params:\n  version: {type: str, required: true}\nsteps:", 1)
          .replace("echo shipped", "echo shipping {{ params.version }}"), "release.yml")
    file = str(tmp_path / "tokens.conf")
    token = tokens.add_token(file, "olga", "operator")
    with serving(History(tmp_path, tmp_path), "--tokens", file) as base:
        page = _signed_in(browser, base, "olga", token, role="operator")
        page.goto(f"{base}/procedures/release")
        page.click("text=Start a run or a dry run")
        page.fill("#f-version", "v9")
        page.click("form.start button[value=dry_run]")
        expect(page.locator("#run-title .badge")).to_have_text("planned", timeout=WAIT_MS)
        expect(page.locator("#step-ship")).to_contain_text("echo shipping v9")
        expect(page.locator("main > dl.facts")).to_contain_text("olga on")  # started by the signed-in person
