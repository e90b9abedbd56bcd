"""The dashboard in a real browser (Debian's Chromium, driven by Playwright)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LiveServer
from tests.seed import add_instances

CHROMIUM = "/usr/bin/chromium"

pytestmark = pytest.mark.slow

if shutil.which(CHROMIUM) is None:
    message = "Chromium not found (make test installs Debian's chromium as root)"
    if os.environ.get("BREV_REQUIRE_SYSTEM_PACKAGES") == "1":
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)

from playwright.sync_api import Browser, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def _sign_in(page: Page, url: str, token: str) -> None:
    page.goto(url + "/")
    page.get_by_label("token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_a_wrong_token_is_refused_with_the_servers_message(
    live_server: LiveServer, page: Page
) -> None:
    _sign_in(page, live_server.url, "brev_wrong")
    expect(page.get_by_role("alert")).to_have_text("invalid token")
    expect(page.locator("#signin")).to_be_visible()
    expect(page.locator("#instances")).to_be_hidden()


def test_instances_of_the_chosen_org_are_listed(
    live_server: LiveServer, page: Page, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {live_server.admin_token}"}
    created = httpx.post(f"{live_server.url}/api/v1/orgs", json={"name": "vision"}, headers=headers)
    assert created.status_code == 201
    database = f"sqlite:///{live_server.home / 'brev.db'}"
    add_instances(database, "vision", "admin@localhost", ["h100-quick-fox", "a100-calm-owl"])

    _sign_in(page, live_server.url, live_server.admin_token)
    expect(page.locator("#who")).to_have_text("admin@localhost")
    expect(page.locator("#empty")).to_be_visible()  # the default org has none

    page.get_by_label("org").select_option("vision")
    rows = page.locator("#rows tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("h100-quick-fox")
    expect(rows.first).to_contain_text("running")
    expect(rows.first).to_contain_text("A100-80GB \u00d7 8")
    expect(rows.first).to_contain_text("40.97")
    expect(page.locator("#empty")).to_be_hidden()
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)  # kept for failures

    # The token lives in this tab only; signing out forgets it.
    page.get_by_role("button", name="Log out").click()
    expect(page.locator("#signin")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('brev-token')") is None
