"""Autostop: an instance idle for its whole window (every GPU under 5 %, no SSH session) is
stopped (or deleted), and a busy report or an SSH session restarts the window."""

from __future__ import annotations

import os
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update

from brev import api
from brev.client import BrevClient
from brev.server.db.models import Instance, utcnow
from brev.server.reconciler.autostop import stop_idle_instances
from tests.conftest import BREV, Plane
from tests.moto import MotoServer
from tests.real_plane import admin as admin_of
from tests.real_plane import start_plane, stop_plane, wait_for
from tests.seed import add_instances

STUB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"


def _report(utilization: float, ssh_sessions: int = 0) -> dict[str, Any]:
    return {
        "source": "nvidia-smi",
        "gpus": [{"uuid": "GPU-0", "name": "H200", "utilization_gpu_pct": utilization}],
        "host": {"ssh_sessions": ssh_sessions},
    }


class Agent:
    def __init__(self, plane: Plane, name: str) -> None:
        token = (
            plane.http(plane.admin_token)
            .post(f"/api/v1/orgs/default/instances/{name}/agent-token")
            .json()["token"]
        )
        self._http = plane.http(token)
        self._seq = 0

    def reports(self, report: dict[str, Any]) -> None:
        self._seq += 1
        body = {"reports": [{"seq": self._seq, "report": report}], "interval_seconds": 1}
        assert self._http.post("/api/v1/agent/reports", json=body).status_code == 200


def _idle_for(plane: Plane, seconds: float) -> None:
    engine = create_engine(plane.settings.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(Instance)
                .where(Instance.idle_since.is_not(None))
                .values(idle_since=utcnow() - timedelta(seconds=seconds))
            )
    finally:
        engine.dispose()


@pytest.fixture
def idle_box(plane: Plane, admin: BrevClient) -> Agent:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["box"])
    admin.set_autostop("box", 60)
    return Agent(plane, "box")


def test_idle_for_the_whole_window_stops_the_instance(
    plane: Plane, admin: BrevClient, idle_box: Agent
) -> None:
    idle_box.reports(_report(0))
    assert admin.instance("box").idle_since is not None
    _idle_for(plane, 59)
    assert stop_idle_instances(plane.app.state.sessions) == 0
    _idle_for(plane, 61)
    assert stop_idle_instances(plane.app.state.sessions) == 1
    instance = admin.instance("box")
    assert instance.desired_status == "stopped"
    [event] = [e for e in instance.events if e.action == "instance.autostop"]
    assert event.details["action"] == "stop"
    assert "every GPU under 5 %" in str(event.details["reason"])


@pytest.mark.parametrize("busy", [_report(37), _report(0, ssh_sessions=1)], ids=["gpu", "ssh"])
def test_a_busy_gpu_or_an_ssh_session_restarts_the_window(
    plane: Plane, admin: BrevClient, idle_box: Agent, busy: dict[str, Any]
) -> None:
    idle_box.reports(_report(0))
    _idle_for(plane, 3600)
    idle_box.reports(busy)
    assert admin.instance("box").idle_since is None
    assert stop_idle_instances(plane.app.state.sessions) == 0
    idle_box.reports(_report(1))
    assert admin.instance("box").idle_since is not None  # a new window begins now
    assert stop_idle_instances(plane.app.state.sessions) == 0


def test_off_means_never_and_delete_means_delete(
    plane: Plane, admin: BrevClient, idle_box: Agent
) -> None:
    idle_box.reports(_report(0))
    admin.set_autostop("box", None)
    _idle_for(plane, 3600)
    assert stop_idle_instances(plane.app.state.sessions) == 0
    admin.set_autostop("box", 60, delete=True)
    assert stop_idle_instances(plane.app.state.sessions) == 1
    assert admin.instance("box").desired_status == "deleted"


@pytest.mark.slow
@pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_a_real_agent_on_a_gpu_that_goes_idle_gets_its_instance_stopped(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    """The real plane, the real agent, moto; the replayed H200 host is busy, then idle."""
    moto_server.reset()
    server = start_plane(tmp_path / "home")
    state = tmp_path / "gpu-state"
    state.write_text("busy")
    agent: subprocess.Popen[bytes] | None = None
    try:
        client = admin_of(server)
        client.add_provider("aws", moto_server.config())
        create = api.InstanceCreate(
            gpu="a100:8", providers=["aws"], region="us-east-1", autostop_seconds=3
        )
        name = client.create_instance(create).name
        wait_for(server, f"{name} to run", lambda: client.instance(name).status == "running")
        token = httpx.post(
            f"{server.url}/api/v1/orgs/default/instances/{name}/agent-token",
            headers={"Authorization": f"Bearer {server.admin_token}"},
        ).json()["token"]
        env = {
            **os.environ,
            "PATH": f"{STUB}{os.pathsep}{os.environ['PATH']}",
            "NVSMI_STATE_FILE": str(state),
        }
        agent = subprocess.Popen(
            [BREV, "agent", "run", "--url", server.url, "--token", token, "--interval", "1s"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(server, "a busy report", lambda: client.instance(name).last_heartbeat_at)
        assert client.instance(name).idle_since is None  # 100 % busy: no window yet
        state.write_text("idle")
        wait_for(server, f"{name} to be stopped", lambda: client.instance(name).status == "stopped")
        events = [e.action for e in client.instance(name).events]
        assert "instance.autostop" in events
    finally:
        if agent is not None:
            agent.terminate()
            agent.wait(timeout=15)
        stop_plane(server)
