"""`running` means reachable: a cloud machine the provider calls running is `starting` until
its agent reports (or its sshd answers); a first boot that never becomes reachable is given
back and the next placement tried. Through the API and the reconciler on moto's EC2 server,
the agent's report through the real agent API, the sshd probe against a real sshd."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import update

from brev.client import BrevClient
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Instance, utcnow
from brev.server.reconciler.boot import sshd_answers
from tests.conftest import Plane, make_plane
from tests.moto import A100, MotoServer, live_machines
from tests.seed import agent_token
from tests.sshbox import make_box


@pytest.fixture
def booting(database_url: str, brev_home: Path, moto_server: MotoServer) -> Iterator[Plane]:
    """A plane that waits for the agent, as the default does (moto's machines have no sshd to
    probe: "agent" keeps the probe from dialling moto's made-up addresses)."""
    moto_server.reset()
    plane = make_plane(database_url, brev_home, boot_probe="agent", boot_timeout=600.0)
    yield plane
    plane.close()


@pytest.fixture
def admin(booting: Plane, moto_server: MotoServer) -> BrevClient:
    client = booting.client(booting.admin_token, org="default")
    client.add_provider("aws", moto_server.config())
    return client


def _report_as_agent(plane: Plane, name: str, seq: int = 1) -> None:
    token = agent_token(plane.http(plane.admin_token), name)
    report = {"collected_at": utcnow().isoformat(), "source": "nvidia-smi", "gpus": []}
    answer = plane.http(token).post(
        "/api/v1/agent/reports", json={"reports": [{"seq": seq, "report": report}]}
    )
    assert answer.status_code == 200, answer.text


def _past_deadline(plane: Plane, name: str) -> None:
    engine = make_engine(plane.settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            session.execute(
                update(Instance)
                .where(Instance.name == name, Instance.deleted_at.is_(None))
                .values(boot_deadline_at=utcnow(), next_check_at=None)
            )
    finally:
        engine.dispose()


def test_a_machine_is_starting_until_its_agent_reports(
    booting: Plane, admin: BrevClient, moto_server: MotoServer
) -> None:
    name = admin.create_instance(A100).name
    booting.settle()
    instance = admin.instance(name)
    assert instance.status == "starting"  # the cloud runs it; nobody can get in yet
    assert live_machines(moto_server)[0]["State"]["Name"] == "running"
    _report_as_agent(booting, name)
    booting.settle()
    instance = admin.instance(name)
    assert instance.status == "running"
    running = next(e for e in instance.events if e.action == "instance.running")
    assert running.details == {"reachable_by": "agent"}


def test_a_first_boot_never_reachable_is_given_back_and_the_next_placement_tried(
    booting: Plane, admin: BrevClient, moto_server: MotoServer
) -> None:
    name = admin.create_instance(A100).name
    booting.settle()
    first = admin.instance(name)
    first_machine = first.provider_ref
    _past_deadline(booting, name)
    booting.settle()
    instance = admin.instance(name)
    unreachable = [e for e in instance.events if e.action == "instance.unreachable"]
    assert len(unreachable) == 1
    assert "not reachable 10 min after it started" in str(unreachable[0].details["reason"])
    assert instance.attempt == 1 and instance.status == "starting"
    assert instance.provider_ref != first_machine
    # The first machine is gone; the second boots.
    states = {m["InstanceId"]: m["State"]["Name"] for m in live_machines(moto_server)}
    assert first_machine not in states and list(states.values()) == ["running"]
    _report_as_agent(booting, name)
    booting.settle()
    assert admin.instance(name).status == "running"


def test_when_no_placement_becomes_reachable_the_instance_fails_and_nothing_runs(
    booting: Plane, admin: BrevClient, moto_server: MotoServer
) -> None:
    name = admin.create_instance(A100).name
    for _ in range(20):
        booting.settle()
        if admin.instance(name).status == "failed":
            break
        _past_deadline(booting, name)
    instance = admin.instance(name)
    assert instance.status == "failed", instance.status
    unreachable = [e for e in instance.events if e.action == "instance.unreachable"]
    assert len(unreachable) == len(instance.plan)
    assert live_machines(moto_server) == []


def test_a_restarted_machine_is_starting_until_its_agent_reports_again(
    booting: Plane, admin: BrevClient, moto_server: MotoServer
) -> None:
    name = admin.create_instance(A100).name
    booting.settle()
    _report_as_agent(booting, name)
    booting.settle()
    admin.stop_instance(name)
    booting.settle()
    admin.start_instance(name)
    booting.settle()
    assert admin.instance(name).status == "starting"  # the old report is from the last boot
    # A restart has no deadline: a machine with the user's disk on it is never given back.
    engine = make_engine(booting.settings.database_url)
    try:
        with make_sessionmaker(engine)() as session:
            row = session.query(Instance).filter(Instance.name == name).one()
            assert row.boot_started_at is not None and row.boot_deadline_at is None
    finally:
        engine.dispose()
    _report_as_agent(booting, name, seq=2)
    booting.settle()
    assert admin.instance(name).status == "running"
    assert len(live_machines(moto_server)) == 1


def test_the_sshd_probe_needs_an_ssh_banner(tmp_path: Path) -> None:
    box = make_box(tmp_path / "box")
    try:
        assert sshd_answers("127.0.0.1", box.port)
    finally:
        box.stop()
    assert not sshd_answers("127.0.0.1", box.port)  # nothing listens now
    # Something that accepts the connection but is not an SSH server.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def answer_http() -> None:
            connection, _ = listener.accept()
            with connection:
                connection.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

        thread = threading.Thread(target=answer_http, daemon=True)
        thread.start()
        assert not sshd_answers("127.0.0.1", port, timeout_s=2)
        thread.join(timeout=5)
