"""The fleet overview, the instances list and an instance's page, in a real browser against a
real `brev server`: rows seeded in its database, GPU readings posted by the agent API from
the real 2 x H200 nvidia-smi capture, changes made in the database shown without a reload."""

from __future__ import annotations

import dataclasses
import os
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect
from sqlalchemy import select, update

from brev import api
from brev.agent.collect import collect
from brev.client import BrevClient
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Instance, Org, User, utcnow
from tests.conftest import LiveServer, start_server, stop_server
from tests.dashboard_browser import problems, screenshot, signed_in_page, watch

pytestmark = pytest.mark.slow

NVIDIA_SMI = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    # No reconciler: the seeded rows have no machine behind them for it to find.
    home = tmp_path_factory.mktemp("dashboard-instances") / "home"
    server = start_server(home, env_extra={"BREV_RECONCILE": "0"})
    yield server
    stop_server(server)


@pytest.fixture
def org(plane: LiveServer) -> str:
    """A fresh org of the bootstrap admin's, so each test sees only its own rows."""
    name = f"org-{uuid.uuid4().hex[:8]}"
    with BrevClient(plane.url, plane.admin_token) as admin:
        admin.create_org(name)
    return name


def _database(plane: LiveServer) -> str:
    return f"sqlite:///{plane.home / 'brev.db'}"


def _seed(plane: LiveServer, org: str, rows: list[dict[str, Any]]) -> None:
    engine = make_engine(_database(plane))
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id = session.scalars(select(Org.id).where(Org.name == org)).one()
            user_id = session.scalars(select(User.id).where(User.email == "admin@localhost")).one()
            for row in rows:
                values: dict[str, Any] = {
                    "status": "running",
                    "health": "healthy",
                    "gpu_model": "H100",
                    "gpu_count": 1,
                    "provider": "aws",
                    "region": "us-east-1",
                    "instance_type": "p5.4xlarge",
                    "price_per_hour": 4.0,
                    **row,
                }
                session.add(Instance(org_id=org_id, created_by_id=user_id, **values))
    finally:
        engine.dispose()


def _set_status(plane: LiveServer, org: str, name: str, **values: Any) -> None:
    """A change as a reconciler on any replica makes it: in the database, updated_at moving."""
    engine = make_engine(_database(plane))
    try:
        with transaction(make_sessionmaker(engine)) as session:
            org_id = session.scalars(select(Org.id).where(Org.name == org)).one()
            session.execute(
                update(Instance)
                .where(Instance.org_id == org_id, Instance.name == name)
                .values(updated_at=utcnow(), **values)
            )
    finally:
        engine.dispose()


def _gpu(index: int, utilization: float) -> dict[str, Any]:
    return {
        "index": index,
        "name": "NVIDIA H100 80GB HBM3",
        "uuid": f"GPU-{index}",
        "memory_total_mib": 81559.0,
        "memory_used_mib": 1024.0 + 20000 * index,
        "utilization_gpu_pct": utilization,
    }


def _rows(page: Page) -> list[str]:
    return page.locator("#instance-rows > [role=row]:visible [role=rowheader]").all_text_contents()


def test_the_overview_shows_every_gpu_its_cost_and_the_idle_ones(
    plane: LiveServer, org: str, page: Page
) -> None:
    now = utcnow()
    _seed(
        plane,
        org,
        [
            {
                "name": "train-big",
                "gpu_count": 2,
                "price_per_hour": 10.0,
                "telemetry": {"gpus": [_gpu(0, 87.0), _gpu(1, 2.0)]},
                "idle_since": now - timedelta(minutes=20),
            },
            {"name": "notebook", "telemetry": {"gpus": [_gpu(0, 41.0)]}, "price_per_hour": 2.5},
            {"name": "parked", "status": "stopped", "telemetry": {}},
        ],
    )
    signed_in_page(page, plane.url, plane.admin_token, org)
    expect(page.get_by_role("heading", name="Fleet")).to_be_visible()
    cells = page.locator(".gpu-grid .gpu-cell")
    expect(cells).to_have_count(3)  # running instances' GPUs; the stopped one has none now
    expect(page.locator(".cards")).to_contain_text("$12.50")  # per hour, now
    busy = page.get_by_role(
        "link", name=re.compile(r"^H100 0, instance train-big, utilization 87%")
    )
    expect(busy).to_have_class(re.compile(r"\bu5\b"))
    expect(page.locator(".idle-list")).to_contain_text("train-big GPU 1")
    screenshot(page, "overview")
    busy.click()
    expect(page).to_have_url(re.compile(r"#/instances/train-big$"))


def test_the_list_filters_sorts_and_follows_changes_without_a_reload(
    plane: LiveServer, org: str, page: Page
) -> None:
    _seed(
        plane,
        org,
        [
            {"name": "alpha-a100", "gpu_model": "A100", "price_per_hour": 3.0},
            {"name": "beta-h100", "price_per_hour": 9.0},
            {"name": "gamma-h100", "price_per_hour": 1.0, "status": "stopped"},
            {"name": "delta-cpu", "gpu_model": None, "gpu_count": 0, "price_per_hour": 0.1},
        ],
    )
    signed_in_page(page, plane.url, plane.admin_token, org)
    page.goto(plane.url + "/#/instances")
    expect(page.locator(".count")).to_have_text("4 instances")
    row = page.locator("[data-name=alpha-a100]")
    expect(row).to_contain_text("A100 \u00d7 1")
    expect(row).to_contain_text("aws / us-east-1")
    expect(row).to_contain_text("$3.00")
    expect(row).to_contain_text("admin@localhost")

    page.get_by_role("button", name="$/h").click()
    expect(page.locator("[role=columnheader][aria-sort=ascending]")).to_have_text("$/h")
    assert _rows(page) == ["delta-cpu", "gamma-h100", "alpha-a100", "beta-h100"]
    page.get_by_role("button", name="$/h").click()
    assert _rows(page) == ["beta-h100", "alpha-a100", "gamma-h100", "delta-cpu"]

    page.get_by_label("Filter").fill("h100")
    expect(page.locator(".count")).to_have_text("2 of 4 instances")
    page.get_by_label("Status").select_option("stopped")
    expect(page.locator(".count")).to_have_text("1 of 4 instances")
    assert _rows(page) == ["gamma-h100"]
    page.get_by_label("Filter").fill("")
    page.get_by_label("Status").select_option("")
    screenshot(page, "instances")

    # Another process changes the database: the open page shows it, no reload.
    page.evaluate("window.stayed = true")
    _set_status(plane, org, "beta-h100", status="stopping", health="unhealthy")
    expect(page.locator("[data-name=beta-h100]")).to_contain_text("stopping", timeout=4000)
    expect(page.locator("[data-name=beta-h100] .health-unhealthy")).to_have_text("unhealthy")
    _seed(plane, org, [{"name": "epsilon-new"}])
    expect(page.locator(".count")).to_have_text("5 instances", timeout=4000)
    assert page.evaluate("window.stayed") is True


def test_the_list_is_usable_from_the_keyboard_and_follows_dark_mode(
    plane: LiveServer, org: str, browser: Browser
) -> None:
    _seed(
        plane,
        org,
        [
            {"name": "alpha-a100", "gpu_model": "A100", "price_per_hour": 3.0},
            {"name": "beta-h100", "price_per_hour": 9.0},
        ],
    )
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="dark")
    try:
        page = context.new_page()
        watch(page)
        signed_in_page(page, plane.url, plane.admin_token, org)
        page.goto(plane.url + "/#/instances")
        expect(page.locator(".count")).to_have_text("2 instances")
        # The system's dark mode: light text on a dark page, not the light theme's colours.
        colours = page.evaluate(
            "[getComputedStyle(document.body).backgroundColor,"
            " getComputedStyle(document.body).color]"
        )
        background, text = (_luminance(c) for c in colours)
        assert background < 0.1 < 0.7 < text, colours

        # Sorting, then opening an instance, with keys alone.
        page.get_by_role("button", name="$/h").focus()
        page.keyboard.press("Enter")
        expect(page.locator("[role=columnheader][aria-sort=ascending]")).to_have_text("$/h")
        assert _rows(page) == ["alpha-a100", "beta-h100"]
        page.keyboard.press("Enter")
        assert _rows(page) == ["beta-h100", "alpha-a100"]
        page.get_by_role("link", name="alpha-a100").focus()
        page.keyboard.press("Enter")
        expect(page).to_have_url(re.compile(r"#/instances/alpha-a100$"))
        expect(page.get_by_role("heading", name="alpha-a100")).to_be_visible()
        assert problems(page) == []
    finally:
        context.close()


def _luminance(css_colour: str) -> float:
    """0 (black) to 1 (white), from an "rgb(r, g, b)" computed style."""
    red, green, blue = (int(part) for part in re.findall(r"\d+", css_colour)[:3])
    return (0.2126 * red + 0.7152 * green + 0.0722 * blue) / 255


def _post_h200_reports(plane: LiveServer, org: str, name: str) -> None:
    """Six reports a minute apart from the H200 capture, busy then idle, as an agent sends them."""
    token = httpx.post(
        f"{plane.url}/api/v1/orgs/{org}/instances/{name}/agent-token",
        headers={"Authorization": f"Bearer {plane.admin_token}"},
    ).json()["token"]
    saved = dict(os.environ)
    os.environ["PATH"] = f"{NVIDIA_SMI}{os.pathsep}{os.environ['PATH']}"
    try:
        readings = []
        for state in ("busy", "busy", "busy", "idle", "idle", "idle"):
            os.environ["NVSMI_STATE"] = state
            readings.append(collect(prefer_nvml=False))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    now = utcnow()
    for seq, report in enumerate(readings, start=1):
        at = (now - timedelta(minutes=len(readings) - seq)).isoformat()
        body = {
            "reports": [
                {"seq": seq, "report": dataclasses.replace(report, collected_at=at).as_json()}
            ]
        }
        answer = httpx.post(
            f"{plane.url}/api/v1/agent/reports",
            json=body,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200, answer.text


@pytest.mark.skipif(not NVIDIA_SMI.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_an_instance_page_shows_its_gpus_charts_events_and_acts(
    plane: LiveServer, org: str, page: Page
) -> None:
    _seed(
        plane,
        org,
        [{"name": "h200-box", "gpu_model": "H200", "gpu_count": 2, "price_per_hour": 7.91}],
    )
    _post_h200_reports(plane, org, "h200-box")
    signed_in_page(page, plane.url, plane.admin_token, org)
    page.goto(plane.url + "/#/instances/h200-box")
    expect(page.get_by_role("heading", name="h200-box", level=1)).to_be_visible()
    gpus = page.locator("table.gpus tbody tr")
    expect(gpus).to_have_count(2)
    expect(gpus.first).to_contain_text("NVIDIA H200")
    expect(gpus.first).to_contain_text("/140.4 GiB")
    # One chart per metric, one line per GPU, drawn by uPlot on a canvas.
    charts = page.locator("figure.chart")
    expect(charts).to_have_count(4)
    expect(charts.first.locator("canvas")).to_have_count(1)
    expect(charts.first.locator(".u-legend")).to_contain_text("GPU 1")
    page.get_by_role("button", name="Day").click()
    expect(page.get_by_role("button", name="Day")).to_have_attribute("aria-pressed", "true")
    expect(charts).to_have_count(4)

    commands = page.locator("ul.commands")
    for command in ("brev shell h200-box", "ssh h200-box", "brev jupyter h200-box"):
        expect(commands).to_contain_text(command)
    expect(page.get_by_role("link", name=re.compile("VS Code"))).to_have_attribute(
        "href", "vscode://vscode-remote/ssh-remote+h200-box/home/ubuntu"
    )

    page.get_by_label("Autostop after (minutes idle)").fill("45")
    page.get_by_role("button", name="Set autostop").click()
    expect(page.get_by_text("now: stop after 45 min idle")).to_be_visible()
    page.get_by_label("Delete in (hours from now)").fill("2")
    page.get_by_role("button", name="Set TTL").click()
    expect(page.get_by_role("button", name="Remove TTL")).to_be_visible()
    with BrevClient(plane.url, plane.admin_token, org=org) as admin:
        detail = admin.instance("h200-box")
    assert detail.autostop_idle_seconds == 45 * 60 and detail.expires_at is not None
    # The timeline shows what the plane recorded, newest first.
    expect(page.locator("ol.timeline li").first).to_contain_text("instance.ttl")
    screenshot(page, "instance")
    # Past a year the form itself refuses (the plane's own limit), and nothing is sent.
    hours = page.get_by_label("Delete in (hours from now)")
    hours.fill("100000")
    page.get_by_role("button", name="Set TTL").click()
    assert hours.evaluate("input => input.validity.rangeOverflow") is True

    # Delete asks first; Cancel keeps the instance.
    page.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("Delete h200-box?")
    expect(dialog.get_by_role("button", name="Cancel")).to_be_focused()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    with BrevClient(plane.url, plane.admin_token, org=org) as admin:
        assert admin.instance("h200-box").desired_status == api.InstanceStatus.RUNNING
