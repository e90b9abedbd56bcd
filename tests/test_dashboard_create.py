"""The dashboard's Create page against a real plane driving moto's EC2: search offers, click
Create, watch the new instance go to running without a reload, then stop and delete it."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from brev import api
from brev.client import BrevClient
from tests.conftest import LiveServer
from tests.dashboard_browser import screenshot, signed_in_page
from tests.moto import MotoServer
from tests.real_plane import live_ids, start_plane, stop_plane

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_plane(tmp_path_factory.mktemp("dashboard-create") / "home")
    yield server
    stop_plane(server)


@pytest.fixture
def aws_admin(plane: LiveServer, moto_server: MotoServer) -> Iterator[tuple[str, str]]:
    """An org of its own with moto as its AWS, and its admin's token."""
    moto_server.reset()
    org = f"org-{uuid.uuid4().hex[:8]}"
    with BrevClient(plane.url, plane.admin_token) as admin:
        admin.create_org(org)
        added = admin.add_member(f"{org}@example.com", role=api.Role.ADMIN, org=org)
    assert added.login_token is not None
    with BrevClient(plane.url, added.login_token, org=org) as client:
        client.add_provider("aws", moto_server.config())
        yield org, added.login_token
        for instance in client.instances():
            client.delete_instance(instance.name)


def test_create_from_an_offer_runs_live_then_stop_and_delete(
    plane: LiveServer, moto_server: MotoServer, aws_admin: tuple[str, str], page: Page
) -> None:
    org, token = aws_admin
    signed_in_page(page, plane.url, token, org)
    page.goto(plane.url + "/#/create")
    rows = page.locator("#offer-rows tr")
    expect(rows.first).to_contain_text("$")  # any GPU offer, cheapest first

    # A bad GPU spec is the plane's message.
    page.get_by_label("GPU", exact=True).fill("nosuchgpu")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_contain_text("nosuchgpu")

    page.get_by_label("GPU", exact=True).fill("a100:8")
    page.get_by_label("provider", exact=True).fill("aws")
    page.get_by_label("region", exact=True).fill("us-east-1")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_role("alert")).to_have_count(0)
    expect(rows.first).to_contain_text("aws")
    expect(rows.first).to_contain_text("\u00d7 8")
    prices = [
        float(t.replace("$", "").replace(",", ""))
        for t in page.locator("#offer-rows tr td:nth-child(8)").all_text_contents()
    ]
    assert prices == sorted(prices) and prices

    name = f"web-{uuid.uuid4().hex[:6]}"
    page.get_by_label("name (optional)").fill(name)
    rows.first.get_by_role("button", name="Create").click()
    expect(page.locator("#new-name")).to_have_text(name)
    # No reload: the page follows the instance to running by itself.
    expect(page.locator("#new-status")).to_have_text("running", timeout=60_000)
    attempts = page.locator("#attempts tbody tr")
    expect(attempts.first).to_contain_text("aws")
    # One placement is where it runs; the others (other zones) were never needed.
    expect(attempts.filter(has_text="running")).to_have_count(1)
    assert len(live_ids(moto_server)) == 1
    screenshot(page, "create")

    # Stop and delete, from the instance page the new name links to.
    page.locator("#new-name").click()
    expect(page).to_have_url(re.compile(rf"#/instances/{name}$"))
    page.get_by_role("button", name="Stop", exact=True).click()
    expect(page.locator(".status-line .status-stopped")).to_have_text("stopped", timeout=60_000)
    page.get_by_role("button", name="Delete", exact=True).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Delete").click()
    with BrevClient(plane.url, token, org=org) as client:
        deadline = time.monotonic() + 60
        while any(i.name == name for i in client.instances()):
            assert time.monotonic() < deadline, "still listed 60 s after the delete"
            time.sleep(0.3)
    assert live_ids(moto_server) == []
