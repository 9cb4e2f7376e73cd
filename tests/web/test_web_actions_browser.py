"""An action from the run page in a real browser (Playwright driving Debian's chromium against a
real ``runproc serve``): an operator rolls back a failed run through its confirmation page, the
rollback runs as a run of its own, and the audit entry shows on both runs' pages."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from engine.web import tokens
from tests.helpers.cli import runproc, write
from tests.helpers.web import History, serving
from tests.web.test_web_actions import STEPS

CHROMIUM = "/usr/bin/chromium"  # Debian's package (scripts/test installs it)
WAIT_MS = 30_000  # a bound on a hang for each expectation, never a measure of speed


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield launched
        launched.close()


def test_an_operator_rolls_back_a_failed_run_from_its_page(browser: Browser, tmp_path: Path) -> None:
    path = write(tmp_path, STEPS, "acts.yml")
    failed = runproc(tmp_path, str(path), "--no-rollback", "--output", "json", "--state",
                     f"sqlite:///{tmp_path}/state.db")
    assert failed.rc == 1, failed.stderr
    run_id = str(failed.json["run_id"])
    file = str(tmp_path / "tokens.conf")
    token = tokens.add_token(file, "olga", "operator")
    with serving(History(tmp_path, tmp_path), "--tokens", file) as base:
        page = browser.new_context().new_page()
        page.goto(f"{base}/login")
        page.fill("#token", token)
        page.click("form.login button[type=submit]")
        expect(page.locator("header .who")).to_contain_text("olga (operator)", timeout=WAIT_MS)
        page.goto(f"{base}/runs/{run_id}")
        page.click("nav.actions >> text=Roll back")
        expect(page.locator("section.preview")).to_contain_text("b, a", timeout=WAIT_MS)  # what will be undone
        assert not (tmp_path / "undo-order").exists()  # the confirmation page changed nothing
        page.click("button.confirm-action")
        # the rollback's own page: it runs, ends ok, and says who started it
        expect(page.locator("#run-title .badge")).to_have_text("ok", timeout=WAIT_MS)
        # the page reloads itself once the run has ended (live.js): wait for that page, the one
        # without the live marker, or the next goto races the reload (net::ERR_ABORTED)
        expect(page.locator("#live-run")).to_have_count(0, timeout=WAIT_MS)
        expect(page.locator("main > dl.facts").first).to_contain_text(f"rollback of run {run_id}")
        audit = page.locator("table.audit")
        expect(audit).to_contain_text("olga")
        expect(audit).to_contain_text("rollback")
        expect(audit).to_contain_text("started")
        page.goto(f"{base}/runs/{run_id}")
        expect(page.locator("table.audit")).to_contain_text("olga", timeout=WAIT_MS)
    assert (tmp_path / "undo-order").read_text() == "b\na\n"
