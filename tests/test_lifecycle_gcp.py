"""`brev create` to `brev delete` on GCP: the API, the reconciler and the real
google-cloud-compute client, against the local Compute endpoint of tests/gcp_fake.py.

Every test looks at what the fake holds afterwards: the database and the cloud must agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from brev import api
from brev.client import BrevClient
from brev.providers.base import TAG_INSTANCE_ID, TAG_MANAGED, TAG_ORG, TAG_PLANE
from brev.providers.gcp import instance_name, label_value, region_of
from tests.conftest import Plane, start_server
from tests.gcp_fake import FakeCompute

PROJECT = "p"
A100 = api.InstanceCreate(gpu="a100:8", providers=["gcp"])
CAPACITY = "ZONE_RESOURCE_POOL_EXHAUSTED"
# Concurrent creates sent to a real server: more than its connection pool (SQLite: 15) and
# anyio's 40 worker threads together.
BURST = 80
BURST_TIMEOUT_S = 15.0  # the stall lasts 30 s (pool and SQLite timeouts); a fixed server needs ~3
# The words GCP itself puts in a stockout, without the code (the fake's default names it).
STOCKOUT_MESSAGE = (
    "The zone '{zone}' does not have enough resources available to fulfill the request. "
    "Try a different zone, or try again later."
)


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute(project=PROJECT) as server:
        yield server


@pytest.fixture
def gcp_org(plane: Plane, admin: BrevClient, fake: FakeCompute) -> BrevClient:
    admin.add_provider("gcp", {"project": PROJECT, "endpoint_url": fake.url})
    return admin


def _inserts(fake: FakeCompute) -> list[dict[str, Any]]:
    """The bodies of every instances.insert the fake received (start and stop are not)."""
    return [
        r.body or {} for r in fake.requests if r.method == "POST" and r.path.endswith("/instances")
    ]


def _statuses(fake: FakeCompute) -> dict[str, str]:
    """Instance name -> the GCP status the fake holds."""
    return {name: str(i["status"]) for (_, name), i in fake.instances.items()}


def _actions(instance: api.InstanceDetail) -> list[str]:
    return [e.action for e in reversed(instance.events)]


def test_create_runs_on_an_a2_type_with_our_labels(
    plane: Plane, gcp_org: BrevClient, fake: FakeCompute
) -> None:
    created = gcp_org.create_instance(A100)
    assert created.status == "pending"
    assert created.plan and all(p.provider == "gcp" for p in created.plan)

    plane.settle()

    instance = gcp_org.instance(created.name)
    assert instance.status == "running"
    assert instance.provider == "gcp"
    assert instance.instance_type is not None and instance.instance_type.startswith("a2-")
    assert instance.zone is not None and instance.zone == created.plan[0].zone
    assert instance.region == region_of(instance.zone)
    assert instance.gpu_model is not None and instance.gpu_model.startswith("A100")
    assert instance.gpu_count == 8
    assert instance.provider_ref == instance_name(instance.id)
    assert instance.public_ip is not None and instance.public_ip.startswith("203.0.113.")
    [body] = _inserts(fake)
    assert body["name"] == instance.provider_ref
    assert body["machineType"] == f"zones/{instance.zone}/machineTypes/{instance.instance_type}"
    assert body["labels"] == {
        TAG_INSTANCE_ID: instance.id,
        TAG_ORG: "default",
        TAG_PLANE: label_value(plane.reconciler.plane_id),
        TAG_MANAGED: "true",
    }
    assert "guestAccelerators" not in body  # a2 machines carry their GPUs
    assert _statuses(fake) == {instance.provider_ref: "RUNNING"}
    assert _actions(instance) == [
        "instance.create",
        "instance.attempt",
        "instance.provisioned",
        "instance.running",
    ]


def test_a_stockout_in_the_first_zone_fails_over_to_the_next(
    plane: Plane, gcp_org: BrevClient, fake: FakeCompute
) -> None:
    created = gcp_org.create_instance(A100)
    first, second = created.plan[0], created.plan[1]
    assert first.zone is not None and second.zone is not None and first.zone != second.zone
    fake.fail_next_insert(first.zone, CAPACITY)

    plane.settle()

    instance = gcp_org.instance(created.name)
    assert instance.status == "running"
    assert instance.attempt == 1
    assert instance.zone == second.zone and instance.instance_type == second.instance_type
    # The insert's answer is its operation: the stockout comes from asking about it later.
    assert _actions(instance) == [
        "instance.create",
        "instance.attempt",
        "instance.provisioned",
        "instance.attempt_failed",
        "instance.attempt",
        "instance.provisioned",
        "instance.running",
    ]
    [failed] = [e for e in instance.events if e.action == "instance.attempt_failed"]
    assert failed.details["zone"] == first.zone
    assert failed.details["attempt"] == 1
    assert CAPACITY in str(failed.details["reason"])
    tried = [e.details["zone"] for e in reversed(instance.events) if e.action == "instance.attempt"]
    assert tried == [first.zone, second.zone]
    # Two inserts, one per zone, each its own request; only the second made a machine.
    assert [b["machineType"].split("/")[1] for b in _inserts(fake)] == [first.zone, second.zone]
    assert {zone for zone, _ in fake.instances} == {second.zone}
    assert _statuses(fake) == {instance_name(instance.id): "RUNNING"}


def test_no_worker_waits_out_an_insert_its_operation_is_asked_about_later(
    plane: Plane, gcp_org: BrevClient, fake: FakeCompute
) -> None:
    fake.operation_polls = 3
    created = gcp_org.create_instance(A100)
    plane.reconciler.run_once()  # the attempt and the insert: one short step
    instance = gcp_org.instance(created.name)
    assert instance.status == "starting" and instance.provider_ref is not None
    assert not [r for r in fake.requests if r.path.endswith("/wait")]
    plane.settle()
    assert gcp_org.instance(created.name).status == "running"
    asked = [r for r in fake.requests if "/operations/" in r.path and r.method == "GET"]
    assert len(asked) == 4  # three RUNNING answers, then DONE: one per step, none waited on


def test_a_delete_during_the_insert_waits_for_it_and_leaves_nothing(
    plane: Plane, gcp_org: BrevClient, fake: FakeCompute
) -> None:
    fake.operation_polls = 4
    created = gcp_org.create_instance(A100)
    plane.reconciler.run_once()
    gcp_org.delete_instance(created.name)
    plane.reconciler.run_once()  # the insert still runs: no terminate yet
    assert not [r for r in fake.requests if r.method == "DELETE"]
    plane.settle()
    assert gcp_org.instances() == []
    assert [r for r in fake.requests if r.method == "DELETE"]
    assert _statuses(fake) == {}


def test_the_failed_attempt_names_the_gcp_code_when_the_message_does_not(
    plane: Plane, gcp_org: BrevClient, fake: FakeCompute
) -> None:
    created = gcp_org.create_instance(A100)
    zone = created.plan[0].zone
    assert zone is not None
    fake.fail_next_insert(zone, CAPACITY, message=STOCKOUT_MESSAGE.format(zone=zone))

    plane.settle()

    instance = gcp_org.instance(created.name)
    assert instance.status == "running"  # the failover itself works
    [failed] = [e for e in instance.events if e.action == "instance.attempt_failed"]
    assert CAPACITY in str(failed.details)


def test_stop_start_delete_converge_and_leave_nothing(
    plane: Plane, gcp_org: BrevClient, fake: FakeCompute
) -> None:
    name = gcp_org.create_instance(A100).name
    plane.settle()
    machine = gcp_org.instance(name).provider_ref
    assert machine is not None
    assert _statuses(fake) == {machine: "RUNNING"}

    assert gcp_org.stop_instance(name).desired_status == "stopped"
    plane.settle()
    stopped = gcp_org.instance(name)
    assert stopped.status == "stopped" and stopped.public_ip is None
    assert _statuses(fake) == {machine: "TERMINATED"}  # GCP's word for stopped

    assert gcp_org.start_instance(name).desired_status == "running"
    plane.settle()
    assert gcp_org.instance(name).status == "running"
    assert _statuses(fake) == {machine: "RUNNING"}

    gcp_org.delete_instance(name)
    plane.settle()
    assert gcp_org.instances() == []
    assert fake.instances == {}
    assert len(_inserts(fake)) == 1  # one machine over the whole life
    verbs = [
        (r.method, r.path.rpartition("/")[2])
        for r in fake.requests
        if r.method in ("POST", "DELETE") and f"/instances/{machine}" in r.path
    ]
    assert verbs == [("POST", "stop"), ("POST", "start"), ("DELETE", machine)]
    actions = [e.action for e in gcp_org.events() if e.object_name == name]
    for action in ("instance.stopped", "instance.starting", "instance.deleted"):
        assert action in actions


def test_the_sweep_deletes_a_labelled_machine_no_row_knows(
    plane: Plane, gcp_org: BrevClient, fake: FakeCompute
) -> None:
    kept = gcp_org.create_instance(A100)
    plane.settle()
    kept_machine = gcp_org.instance(kept.name).provider_ref
    assert kept_machine is not None
    # The sweep looks in the regions this org planned into: put the stray in one of them.
    zone = kept.plan[0].zone
    assert zone is not None
    ours = label_value(plane.reconciler.plane_id)
    stray = "brev-" + "f" * 32
    fake.add_instance(
        zone, stray, {TAG_MANAGED: "true", TAG_INSTANCE_ID: "f" * 32, TAG_PLANE: ours}
    )
    # Left alone: another plane's machine in the same project, and machines not managed by brev.
    others = {
        "another-planes": {TAG_MANAGED: "true", TAG_INSTANCE_ID: "d" * 32, TAG_PLANE: "other"},
        "not-managed": {TAG_MANAGED: "false", TAG_INSTANCE_ID: "e" * 32, TAG_PLANE: ours},
        "someone-elses": {"team": "ml"},
    }
    for name, labels in others.items():
        fake.add_instance(zone, name, labels)

    assert plane.reconciler.sweep() == 1

    assert sorted(_statuses(fake)) == sorted([kept_machine, *others])
    deletes = [r.path for r in fake.requests if r.method == "DELETE"]
    assert deletes == [f"/compute/v1/projects/{PROJECT}/zones/{zone}/instances/{stray}"]
    [swept] = [e for e in gcp_org.events() if e.action == "sweep.terminate"]
    assert swept.details["machine"] == stray
    assert swept.details["provider"] == "gcp"
    assert swept.details["region"] == region_of(zone)
    assert "no instance in the database" in str(swept.details["reason"])
    assert gcp_org.instance(kept.name).status == "running"
    assert plane.reconciler.sweep() == 0  # nothing left to find


@pytest.mark.slow
def test_a_burst_of_creates_on_a_real_server_is_answered(tmp_path: Path, fake: FakeCompute) -> None:
    server = start_server(tmp_path / "home", env_extra={"BREV_RECONCILE": "0"})
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    try:
        http = httpx.Client(base_url=server.url, timeout=BURST_TIMEOUT_S, limits=limits)
        with BrevClient(server.url, server.admin_token, org="default", http=http) as client:
            client.add_provider("gcp", {"project": PROJECT, "endpoint_url": fake.url})

            def create(number: int) -> api.InstanceDetail:
                return client.create_instance(A100.model_copy(update={"name": f"b-{number:03d}"}))

            with ThreadPoolExecutor(max_workers=BURST) as pool:
                created = list(pool.map(create, range(BURST)))
            assert len({c.id for c in created}) == BURST
            assert len(client.instances()) == BURST
    finally:
        # Killed, not stopped: a stalled server would hold its graceful shutdown for 30 s.
        server.process.kill()
        server.process.wait(timeout=10)
