"""Agent tokens and reports: scoped to one instance, delivered once and in order, through an
outage of the plane."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text, update

from brev.client import BrevClient, Forbidden, Unauthenticated
from brev.server.db.models import Instance, utcnow
from brev.server.reconciler.health import mark_silent_instances
from tests.conftest import BREV, LiveServer, Plane, start_server, stop_server
from tests.seed import add_instances

STUB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "nvidia-smi" / "bin"


def _report(n: int) -> dict[str, object]:
    return {"collected_at": f"2026-11-28T00:00:{n:02}Z", "source": "nvidia-smi", "gpus": []}


def test_an_agent_reports_for_its_instance_only(plane: Plane, admin: BrevClient) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a", "gpu-b"])
    token = (
        plane.http(plane.admin_token)
        .post("/api/v1/orgs/default/instances/gpu-a/agent-token")
        .json()["token"]
    )
    agent = plane.http(token)
    body = {"reports": [{"seq": 1, "report": _report(1)}, {"seq": 2, "report": _report(2)}]}
    assert agent.post("/api/v1/agent/reports", json=body).json() == {
        "accepted": 2,
        "last_seq": 2,
        "assignments": None,
        "node_principals": None,
        "assignments_version": None,
    }
    # a re-send after a lost answer is not counted twice; an older one never overwrites
    resent = {"reports": [{"seq": 2, "report": _report(2)}, {"seq": 1, "report": _report(1)}]}
    answer = agent.post("/api/v1/agent/reports", json=resent).json()
    assert answer == {
        "accepted": 0,
        "last_seq": 2,
        "assignments": None,
        "node_principals": None,
        "assignments_version": None,
    }
    detail = admin.instance("gpu-a")
    assert detail.telemetry == _report(2) and detail.last_heartbeat_at is not None
    assert detail.health == "healthy"
    assert admin.instance("gpu-b").telemetry == {}
    # an agent token is good for nothing else
    with pytest.raises(Forbidden, match="agent token"):
        plane.client(token, org="default").instances()
    user_report = plane.http(plane.admin_token).post("/api/v1/agent/reports", json=body)
    assert user_report.status_code == 403
    # a new token replaces the old one
    plane.http(plane.admin_token).post("/api/v1/orgs/default/instances/gpu-a/agent-token")
    with pytest.raises(Unauthenticated, match="revoked"):
        plane.client(token).whoami()


def _agent_for(plane: Plane, name: str) -> httpx.Client:
    add_instances(plane.settings.database_url, "default", "admin@localhost", [name])
    token = (
        plane.http(plane.admin_token)
        .post(f"/api/v1/orgs/default/instances/{name}/agent-token")
        .json()["token"]
    )
    return plane.http(token)


def _silent_for(plane: Plane, seconds: float) -> None:
    engine = create_engine(plane.settings.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(Instance).values(last_heartbeat_at=utcnow() - timedelta(seconds=seconds))
            )
    finally:
        engine.dispose()


def test_three_missed_reports_make_an_instance_unhealthy_until_reports_resume(
    plane: Plane, admin: BrevClient
) -> None:
    agent = _agent_for(plane, "gpu-a")
    report = {"reports": [{"seq": 1, "report": _report(1)}], "interval_seconds": 1}
    agent.post("/api/v1/agent/reports", json=report)
    sessions = plane.app.state.sessions
    _silent_for(plane, 2.5)  # two missed reports: not yet
    assert mark_silent_instances(sessions) == 0
    _silent_for(plane, 3.5)
    assert mark_silent_instances(sessions) == 1
    assert admin.instance("gpu-a").health == "unhealthy"
    assert [i.health for i in admin.instances()] == ["unhealthy"]  # what brev ls shows
    assert mark_silent_instances(sessions) == 0  # marked once
    agent.post(
        "/api/v1/agent/reports",
        json={"reports": [{"seq": 2, "report": _report(2)}], "interval_seconds": 1},
    )
    instance = admin.instance("gpu-a")
    assert instance.health == "healthy"
    actions = [e.action for e in reversed(instance.events)]
    assert actions[-2:] == ["instance.unhealthy", "instance.healthy"]


def test_a_gpu_missing_from_a_report_is_a_fault_event(plane: Plane, admin: BrevClient) -> None:
    agent = _agent_for(plane, "gpu-a")
    two = {
        **_report(1),
        "gpus": [{"uuid": "GPU-0", "name": "H200"}, {"uuid": "GPU-1", "name": "H200"}],
    }
    one = {**_report(2), "gpus": [{"uuid": "GPU-0", "name": "H200"}]}
    agent.post("/api/v1/agent/reports", json={"reports": [{"seq": 1, "report": two}]})
    agent.post("/api/v1/agent/reports", json={"reports": [{"seq": 2, "report": one}]})
    vanished = [e for e in admin.instance("gpu-a").events if e.action == "gpu.vanished"]
    assert [e.details for e in vanished] == [{"uuid": "GPU-1", "name": "H200"}]


def test_a_member_cannot_take_the_agent_token_of_anothers_instance(
    plane: Plane, admin: BrevClient
) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    added = admin.add_member("carol@example.com")
    assert added.login_token is not None
    response = plane.http(added.login_token).post(
        "/api/v1/orgs/default/instances/gpu-a/agent-token"
    )
    assert response.status_code == 403


def _last_seq(server: LiveServer) -> int:
    engine = create_engine(f"sqlite:///{server.home / 'brev.db'}")
    try:
        with engine.connect() as connection:
            return int(
                connection.execute(text("SELECT last_report_seq FROM instances")).scalar() or 0
            )
    finally:
        engine.dispose()


def _wait(condition: Callable[[], bool], what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
@pytest.mark.skipif(not STUB.is_dir(), reason="no ../shared/fixtures beside the repo")
def test_reports_survive_an_outage_of_the_plane_in_order_and_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"BREV_RECONCILE": "0"}
    server = start_server(home, env_extra=env)
    port = int(server.url.rsplit(":", 1)[1])
    add_instances(f"sqlite:///{home / 'brev.db'}", "default", "admin@localhost", ["gpu-a"])
    token = httpx.post(
        f"{server.url}/api/v1/orgs/default/instances/gpu-a/agent-token",
        headers={"Authorization": f"Bearer {server.admin_token}"},
    ).json()["token"]
    log = tmp_path / "agent.log"
    agent_env = {**os.environ, "PATH": f"{STUB}{os.pathsep}{os.environ['PATH']}"}
    with log.open("w") as agent_log:
        agent = subprocess.Popen(
            [BREV, "agent", "run", "--url", server.url, "--token", token, "--interval", "1s"],
            env=agent_env,
            stdout=agent_log,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait(lambda: _last_seq(server) > 0, "a first report")
        stop_server(server)
        time.sleep(4)  # the agent keeps sampling: ~4 reports wait in its buffer
        server = start_server(home, env_extra=env, port=port)
        before = log.read_text().count("delivered")
        _wait(lambda: log.read_text().count("delivered") > before, "the buffered reports")
        shown = subprocess.run(
            [BREV, "show", "gpu-a"],
            env={**server.env(), "BREV_API_URL": server.url, "BREV_TOKEN": server.admin_token,
                 "BREV_ORG": "default"},
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert "Last agent report" in shown.stderr and "health healthy" in shown.stderr
        assert shown.stdout.count("NVIDIA H200") == 2  # the GPU table of the replayed host
        agent.terminate()
        agent.wait(timeout=15)
    finally:
        if agent.poll() is None:
            agent.kill()
        stop_server(server)
    output = log.read_text()
    assert "plane unreachable" in output
    batches = [line for line in output.splitlines() if "delivered" in line and "seq" in line]
    after_outage = next(line for line in batches if "delivered 1 report" not in line)
    assert int(after_outage.split("delivered ")[1].split(" ")[0]) >= 3
    # every report the agent made was delivered, and the plane holds the newest
    assert "0 undelivered" in output.splitlines()[-1]
    sequences = [int(b.split("seq ")[1].split("..")[1]) for b in batches]
    assert sequences == sorted(sequences)
    assert _last_seq(server) == sequences[-1]


def test_new_uncorrected_ecc_errors_are_fault_events(plane: Plane, admin: BrevClient) -> None:
    agent = _agent_for(plane, "gpu-a")

    def report(seq: int, ecc: float) -> dict[str, object]:
        gpu = {"uuid": "GPU-0", "name": "H200", "ecc_uncorrected": ecc}
        return {"reports": [{"seq": seq, "report": {**_report(seq), "gpus": [gpu]}}]}

    for seq, ecc in enumerate([0, 0, 2, 2, 3], start=1):
        agent.post("/api/v1/agent/reports", json=report(seq, ecc))
    faults = [e.details for e in admin.instance("gpu-a").events if e.action == "gpu.ecc_errors"]
    assert [(f["total"], f["new"]) for f in reversed(faults)] == [(2, 2), (3, 1)]
