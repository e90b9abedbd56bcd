"""The dashboard's Nodes pages against a real plane: a node registered through the API and
reporting the real 2 x H200 capture (shared/fixtures/nvidia-smi) shows online with its GPUs,
driver and CUDA; an instance taking one of its GPUs shows on the node's page without a
reload; a member is offered no removal; an admin's removal is refused while the GPU is held,
with the plane's message, and goes through when forced."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from brev import api
from brev.agent.collect import collect
from brev.client import BrevClient
from tests.conftest import LiveServer
from tests.dashboard_browser import browser, page, screenshot, signed_in_page  # noqa: F401
from tests.node_plane import client, poll, server  # noqa: F401

pytestmark = pytest.mark.slow

STUB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"
NODE = "dgx-h200"
SCRIPT = "<script>window.__pwned = 1</script>"


def h200_report(monkeypatch: pytest.MonkeyPatch, state: str | None = None) -> dict[str, Any]:
    """What the agent's collector reports on the captured H200 host (idle, or `busy`)."""
    if not STUB.is_dir():
        pytest.skip("no ../shared/fixtures beside the repo")
    with monkeypatch.context() as m:
        m.setenv("PATH", f"{STUB}{os.pathsep}{os.environ['PATH']}")
        if state:
            m.setenv("NVSMI_STATE", state)
        else:
            m.delenv("NVSMI_STATE", raising=False)
        return collect(prefer_nvml=False).as_json()


class Agent:
    """The node's agent, posting reports with the node's own token."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token, self.seq = url, token, 0

    def report(self, report: dict[str, Any], instances: list[str] | None = None) -> None:
        self.seq += 1
        body = {
            "reports": [{"seq": self.seq, "report": {**report, "instances": instances or []}}],
            # a slow cadence: the node stays online through the test without a reporting loop
            "interval_seconds": 120,
        }
        response = httpx.post(
            self.url + "/api/v1/agent/reports",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 200, response.text


def register(plane: LiveServer, admin: BrevClient) -> Agent:
    registered = admin.register_node(
        api.NodeRegister(
            name=NODE, facts={"os": "Ubuntu 24.04", "node_home": SCRIPT}, price_per_hour=1.25
        )
    )
    return Agent(plane.url, registered.token)


def sign_out(tab: Page) -> None:
    tab.get_by_role("button", name="Sign out").click()
    expect(tab.get_by_label("token")).to_be_visible()


def test_nodes_list_detail_live_and_removal(
    server: LiveServer,  # noqa: F811
    client: BrevClient,  # noqa: F811
    page: Page,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No node yet: the page says how to register one.
    signed_in_page(page, server.url, server.admin_token)
    page.goto(server.url + "/#/nodes")
    expect(page.get_by_text("No nodes yet")).to_be_visible()
    expect(page.locator("main code", has_text="brev register")).to_be_visible()
    sign_out(page)

    idle = h200_report(monkeypatch)
    assert idle["driver_version"] == "580.159.04" and len(idle["gpus"]) == 2
    agent = register(server, client)
    agent.report(idle)
    poll(lambda: client.node(NODE).status == "online", "the node online")

    # A member sees the node and its GPUs, and is offered no removal.
    member = client.add_member("viewer@example.com", role=api.Role.MEMBER)
    assert member.login_token is not None
    signed_in_page(page, server.url, member.login_token)
    page.goto(server.url + f"/#/nodes/{NODE}")
    expect(page.get_by_role("heading", name=NODE)).to_be_visible()
    expect(page.locator("table.node-gpus tbody tr")).to_have_count(2)
    expect(page.get_by_role("button", name="Remove node")).to_have_count(0)
    sign_out(page)

    # The admin's list: online, 2 x H200 both free, driver and CUDA of the capture.
    signed_in_page(page, server.url, server.admin_token)
    page.goto(server.url + "/#/nodes")
    row = page.locator(f"tr[data-name='{NODE}']")
    expect(row.locator("td").nth(0)).to_have_text("online")
    expect(row).to_contain_text("2 \N{MULTIPLICATION SIGN} H200")
    expect(row).to_contain_text("2 of 2")
    expect(row).to_contain_text("580.159.04")
    expect(row).to_contain_text("13.0")
    expect(row).to_contain_text(re.compile(r"\d+[smh] ago"))
    expect(page.locator(".toolbar .count")).to_have_text("1 node, 1 online · 2 of 2 GPUs free")
    screenshot(page, "nodes")

    # The node's page: facts as text (a <script> in them stays text), both GPUs free.
    row.get_by_role("link", name=NODE).click()
    expect(page.get_by_role("heading", name=NODE)).to_be_visible()
    facts = page.locator("table.fields")
    expect(facts).to_contain_text("vm")  # the capture's hostname
    expect(facts).to_contain_text("Debian GNU/Linux 12")  # the report's OS over the facts'
    expect(facts).to_contain_text("580.159.04")
    expect(facts.get_by_text(SCRIPT)).to_be_visible()
    assert page.evaluate("window.__pwned") is None
    gpus = page.locator("table.node-gpus tbody tr")
    expect(gpus).to_have_count(2)
    expect(gpus.nth(0)).to_contain_text("H200")
    expect(gpus.nth(0).locator("td.free")).to_have_text("free")
    expect(gpus.nth(0)).to_contain_text("37 °C")  # the capture's temperature
    expect(gpus.nth(0)).to_contain_text("/ 700 W")

    # An instance takes one GPU: the page shows who holds it, then its load, without a reload.
    created = client.create_instance(api.InstanceCreate(name="train-h200", gpu="h200:1", node=NODE))
    assert created.node == NODE
    held = gpus.locator("td.held")
    expect(held).to_have_count(1)
    expect(held.get_by_role("link", name="train-h200")).to_have_attribute(
        "href", "#/instances/train-h200"
    )
    expect(gpus.locator("td.free")).to_have_count(1)
    agent.report(h200_report(monkeypatch, "busy"), instances=["train-h200"])
    expect(gpus.nth(0)).to_contain_text("100%")
    expect(page.locator("table.fields")).to_contain_text("train-h200")
    screenshot(page, "node")

    # Removal: refused while the GPU is held (the plane's message), then forced.
    page.get_by_role("button", name="Remove node").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Remove node {NODE}")
    dialog.get_by_role("button", name="Remove").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("hosts 1 instance(s) (train-h200)")
    assert client.node(NODE).status == "online"  # still there
    force = page.get_by_role("button", name="Remove anyway, deleting its instances")
    force.click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("delete every instance on it")
    dialog.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("heading", name=NODE)).to_be_visible()  # cancelled: nothing done
    force.click()
    page.get_by_role("dialog").get_by_role("button", name="Remove and delete").click()
    expect(page).to_have_url(re.compile(r"#/nodes$"))
    expect(page.get_by_text("No nodes yet")).to_be_visible()
    expect(page.locator(f"tr[data-name='{NODE}']")).to_have_count(0)
    assert [n.name for n in client.nodes()] == []
