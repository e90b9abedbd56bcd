"""brev top: the GPU table of an instance refreshed, one block per refresh in a pipe."""

from __future__ import annotations

import json

import httpx
import pytest

from brev.server.db.models import utcnow
from tests.cli_runner import brev, ok
from tests.conftest import LiveServer
from tests.seed import add_instances


@pytest.fixture(scope="module")
def reporting(live_server: LiveServer) -> dict[str, str]:
    """Instance `top-a` with one agent report of two GPUs; the env to run `brev` against it."""
    add_instances(
        f"sqlite:///{live_server.home / 'brev.db'}", "default", "admin@localhost", ["top-a"]
    )
    token = httpx.post(
        f"{live_server.url}/api/v1/orgs/default/instances/top-a/agent-token",
        headers={"Authorization": f"Bearer {live_server.admin_token}"},
    ).json()["token"]
    gpus = [
        {
            "index": i,
            "uuid": f"GPU-{i}",
            "name": "NVIDIA H200",
            "utilization_gpu_pct": 40.0 + 20 * i,
            "memory_used_mib": 1024.0,
            "memory_total_mib": 143771.0,
            "power_draw_w": 300.0,
            "power_limit_w": 700.0,
            "temperature_c": 50.0,
        }
        for i in range(2)
    ]
    report = {"collected_at": utcnow().isoformat(), "source": "nvml", "gpus": gpus}
    response = httpx.post(
        f"{live_server.url}/api/v1/agent/reports",
        headers={"Authorization": f"Bearer {token}"},
        json={"reports": [{"seq": 1, "report": report}]},
    )
    assert response.status_code == 200
    return live_server.env(
        BREV_API_URL=live_server.url, BREV_TOKEN=live_server.admin_token, BREV_ORG="default"
    )


def test_top_of_an_instance_prints_a_block_per_refresh(reporting: dict[str, str]) -> None:
    result = ok(brev("top", "top-a", "--iterations", "2", "--interval", "1s", env=reporting))
    out = result.stdout
    assert "\x1b[" not in out  # a pipe gets no screen clearing
    assert out.count("top-a: running, health healthy; last report") == 2
    assert out.count("NVIDIA H200") == 4 and "60%" in out
    assert len(out.split("\n\n")) == 2


def test_top_json_prints_one_snapshot(reporting: dict[str, str]) -> None:
    snapshot = json.loads(ok(brev("top", "top-a", "--json", env=reporting)).stdout)
    assert snapshot["name"] == "top-a" and snapshot["last_report_at"] is not None
    assert [g["utilization_gpu_pct"] for g in snapshot["gpus"]] == [40.0, 60.0]


def test_top_of_all_running_instances(reporting: dict[str, str]) -> None:
    fleet = json.loads(ok(brev("top", "--json", env=reporting)).stdout)["instances"]
    (row,) = [i for i in fleet if i["name"] == "top-a"]
    assert row["gpus"] == 2 and row["utilization_pct"] == 50.0
    assert row["memory_used_mib"] == 2048.0
    table = ok(brev("top", "--iterations", "1", env=reporting)).stdout
    assert "top-a" in table and "50%" in table and "2.0/280.8 GiB" in table


def test_a_bad_interval_is_one_line_error(reporting: dict[str, str]) -> None:
    result = brev("top", "top-a", "--interval", "soon", env=reporting)
    assert result.returncode == 1 and "--interval" in result.stderr
