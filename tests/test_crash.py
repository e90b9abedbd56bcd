"""Crash tests: a real `brev server` (SQLite, moto as AWS) kills itself with SIGKILL between a
provider call and the database write that records it; a restarted server must finish the job
without a second machine, and without leaving one running that no row knows.

The fault is `BREV_FAULT_INJECTION` (see `fault()` in brev/server/reconciler/steps.py): the
server dies right after the provider's create or terminate returned, before the commit.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from brev import api
from brev.client import BrevClient
from brev.providers.registry import make_provider
from brev.server.db.engine import make_engine, make_sessionmaker
from brev.server.reconciler.loop import Reconciler
from brev.server.secrets import Secrets
from tests.cli_runner import brev, ok
from tests.conftest import LiveServer
from tests.moto import A100, MotoServer
from tests.real_plane import (
    CLI_TIMEOUT_SECONDS,
    LEASE_SECONDS,
    TAKEOVER_LEASE_SECONDS,
    admin,
    events,
    instance_row,
    instance_status,
    live_ids,
    log_tail,
    start_plane,
    stop_plane,
    the_machine_of,
    untracked,
    wait_for,
    wait_until_dead,
)

pytestmark = pytest.mark.slow

KILLED = -signal.SIGKILL


class Planes:
    """The servers a test starts on one home, one after another; all stopped at the end."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.started: list[LiveServer] = []
        self.clients: list[BrevClient] = []

    def start(self, fault: str | None = None, lease: float = LEASE_SECONDS) -> LiveServer:
        server = start_plane(self.home, fault=fault, lease=lease)
        self.started.append(server)
        return server

    def client(self, server: LiveServer) -> BrevClient:
        client = admin(server)
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for server in self.started:
            stop_plane(server)


@pytest.fixture
def planes(tmp_path: Path, moto_server: MotoServer) -> Iterator[Planes]:
    moto_server.reset()
    planes = Planes(tmp_path / "home")
    yield planes
    planes.close()


def _died_at_the_fault(server: LiveServer, fault: str) -> None:
    status = wait_until_dead(server, f"at {fault}")
    assert status == KILLED, (
        f"expected the server to SIGKILL itself at {fault}, it exited {status}"
        f"\n--- server log ---\n{log_tail(server)}"
    )


def _running(client: BrevClient, name: str) -> api.InstanceDetail | None:
    instance = client.instance(name)
    assert instance.status != "failed", f"{name} failed: {instance.status_reason}"
    return instance if instance.status == "running" else None


def _sweep(home: Path) -> int:
    """One sweep, run in this process against the (stopped) server's database and key."""
    engine = make_engine(f"sqlite:///{home / 'brev.db'}")
    reconciler = Reconciler(
        make_sessionmaker(engine), Secrets.for_home(home), make_provider, workers=1
    )
    try:
        return reconciler.sweep()
    finally:
        reconciler.stop()
        engine.dispose()


def test_killed_after_create_the_restarted_server_adopts_the_machine(
    planes: Planes, moto_server: MotoServer
) -> None:
    doomed = planes.start(fault="crash-after-create", lease=TAKEOVER_LEASE_SECONDS)
    client = planes.client(doomed)
    client.add_provider("aws", moto_server.config())
    created = client.create_instance(A100)
    _died_at_the_fault(doomed, "crash-after-create")

    # The cloud has the machine; the database never heard of it.
    orphan = the_machine_of(moto_server, created.id)
    row = instance_row(planes.home, created.id)
    assert row["provider_ref"] is None
    assert row["status"] == "provisioning"
    assert row["deleted_at"] is None

    restarted = planes.start()
    client = planes.client(restarted)
    instance = wait_for(
        restarted,
        f"{created.name} to run after the restart",
        lambda: _running(client, created.name),
    )

    # The same machine, adopted through the idempotency key: not a second one.
    machine = the_machine_of(moto_server, created.id)
    assert machine["InstanceId"] == orphan["InstanceId"]
    assert instance.provider_ref == machine["InstanceId"]
    assert instance_row(planes.home, created.id)["provider_ref"] == machine["InstanceId"]
    assert len(live_ids(moto_server)) == 1
    assert untracked(moto_server, planes.home) == []
    provisioned = [e for e in instance.events if e.action == "instance.provisioned"]
    assert [e.details["machine"] for e in provisioned] == [orphan["InstanceId"]]

    # The sweep (it ran at the restart; run it once more) finds nothing to terminate.
    stop_plane(restarted)
    assert _sweep(planes.home) == 0
    assert live_ids(moto_server) == [orphan["InstanceId"]]


def test_killed_after_create_then_deleted_the_delete_finds_the_unrecorded_machine(
    planes: Planes, moto_server: MotoServer
) -> None:
    # A long claim: the restarted server cannot take the row over before it is deleted, so
    # the delete finds no machine recorded and must look for it by its tags.
    doomed = planes.start(fault="crash-after-create", lease=TAKEOVER_LEASE_SECONDS + 4)
    client = planes.client(doomed)
    client.add_provider("aws", moto_server.config())
    created = client.create_instance(A100)
    _died_at_the_fault(doomed, "crash-after-create")
    orphan = the_machine_of(moto_server, created.id)

    restarted = planes.start()
    client = planes.client(restarted)
    client.delete_instance(created.name)
    wait_for(
        restarted,
        f"{created.name} to leave `brev ls`",
        lambda: instance_status(client, created.name) is None,
    )
    row = instance_row(planes.home, created.id)
    assert row["status"] == "deleted" and row["deleted_at"] is not None
    assert row["provider_ref"] is None, (
        "the restarted server adopted the machine before the delete reached it (its restart "
        "took longer than the killed server's claim): this test did not reach the lookup"
    )
    # The delete itself found the machine by its tags and terminated it, with an event; the
    # sweep (the last line of defence) then has nothing left to do.
    assert live_ids(moto_server) == []
    found = events(planes.home, "instance.terminated_unrecorded")
    assert [e["details"]["machine"] for e in found] == [orphan["InstanceId"]]
    stop_plane(restarted)
    _sweep(planes.home)
    assert untracked(moto_server, planes.home) == []
    assert events(planes.home, "sweep.terminate") == []


def test_killed_after_terminate_the_restarted_server_finishes_the_delete(
    planes: Planes, moto_server: MotoServer
) -> None:
    first = planes.start()
    client = planes.client(first)
    client.add_provider("aws", moto_server.config())
    created = client.create_instance(A100)
    instance = wait_for(first, f"{created.name} to run", lambda: _running(client, created.name))
    assert the_machine_of(moto_server, created.id)["InstanceId"] == instance.provider_ref
    stop_plane(first)

    doomed = planes.start(fault="crash-after-terminate", lease=TAKEOVER_LEASE_SECONDS)
    client = planes.client(doomed)
    client.delete_instance(created.name)
    _died_at_the_fault(doomed, "crash-after-terminate")

    # The cloud terminated the machine; the database still thinks it runs.
    assert live_ids(moto_server) == []
    row = instance_row(planes.home, created.id)
    assert row["status"] == "running"
    assert row["desired_status"] == "deleted"
    assert row["deleted_at"] is None

    restarted = planes.start()
    client = planes.client(restarted)
    wait_for(
        restarted,
        f"{created.name} to leave `brev ls`",
        lambda: instance_status(client, created.name) is None,
    )
    assert client.instances() == []
    cli = {
        "BREV_HOME": str(planes.home.parent / "cli-home"),
        "BREV_API_URL": restarted.url,
        "BREV_TOKEN": restarted.admin_token,
        "BREV_ORG": "default",
    }
    listed = ok(brev("ls", "--json", env=restarted.env(**cli), timeout=CLI_TIMEOUT_SECONDS))
    assert json.loads(listed.stdout) == []
    row = instance_row(planes.home, created.id)
    assert row["status"] == "deleted" and row["deleted_at"] is not None
    assert live_ids(moto_server) == []
    assert untracked(moto_server, planes.home) == []


def test_a_step_that_outlives_its_claim_is_not_run_twice(
    planes: Planes, moto_server: MotoServer
) -> None:
    # A claim shorter than a first create (boto3's import and the image look-up: ~1.6 s).
    server = planes.start(lease=0.1)
    client = planes.client(server)
    client.add_provider("aws", moto_server.config())
    created = client.create_instance(A100)
    wait_for(server, f"{created.name} to run", lambda: _running(client, created.name))
    time.sleep(1)  # let any step still in flight finish
    instance = client.instance(created.name)
    machine = the_machine_of(moto_server, created.id)
    assert machine["InstanceId"] == instance.provider_ref
    attempts = [e for e in instance.events if e.action == "instance.attempt"]
    assert len(attempts) == 1
