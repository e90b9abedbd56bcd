"""The GCP provider with the real google-cloud-compute client against a local Compute endpoint."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from brev.providers.base import (
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_ORG,
    TAG_PLANE,
    CredentialsError,
    InstanceSpec,
    InvalidRequest,
    Machine,
    MachineState,
    NoCapacity,
    NotFound,
    Placement,
    Provider,
    ProviderFactory,
    ProviderRef,
    QuotaExceeded,
    Transient,
)
from brev.providers.gcp import (
    GcpProvider,
    instance_name,
    label_value,
)
from tests.gcp_fake import FakeCompute

ZONE = "us-central1-a"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpH0Jt8o5hK0sYV7m2Lw0O3k7k2b5Yy6Z2a8s9d0f1g user@host"


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute() as server:
        yield server


@pytest.fixture
def provider(fake: FakeCompute) -> GcpProvider:
    config = {"project": fake.project, "endpoint_url": fake.url}
    return GcpProvider(config, operation_timeout_s=5, poll_interval_s=0.01)


def created(provider: GcpProvider, wanted: InstanceSpec, where: Placement, key: str) -> Machine:
    """A create as the reconciler sees it through: the insert, its operation asked about
    until it ends (its error raised), and the machine described."""
    machine = provider.create(wanted, where, key)
    if machine.operation is not None:
        deadline = time.monotonic() + 10
        while not provider.operation_done(machine.ref, machine.operation):
            assert time.monotonic() < deadline, "the operation never ended"
            time.sleep(0.01)
    described = provider.describe(machine.ref)
    assert described is not None
    return described


def spec(instance_id: str | None = None, **changes: object) -> InstanceSpec:
    values: dict[str, object] = {
        "instance_id": instance_id or uuid.uuid4().hex,
        "org": "Acme Corp",
        "name": "training box",
        "disk_gb": 200,
        "plane_id": "plane-1",
    }
    values.update(changes)
    return InstanceSpec(**values)  # type: ignore[arg-type]


def placement(
    instance_type: str = "a2-highgpu-1g",
    zone: str | None = ZONE,
    *,
    spot: bool = False,
    gpu_model: str | None = "A100",
    gpu_count: int = 1,
) -> Placement:
    region = zone.rpartition("-")[0] if zone else "us-central1"
    return Placement(instance_type, region, zone, spot, gpu_model, gpu_count, 3.67)


def test_importing_the_provider_does_not_import_google() -> None:
    code = (
        "import sys; from importlib.metadata import entry_points; "
        "factory = entry_points(group='brev.providers')['gcp'].load(); "
        "assert factory.__name__ == 'GcpProvider'; "
        "assert 'google.cloud' not in sys.modules and 'google.api_core' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


def test_validate_names_the_project(provider: GcpProvider) -> None:
    factory: ProviderFactory = GcpProvider  # mypy checks that both fit the interface
    as_provider: Provider = provider
    assert factory is GcpProvider
    assert as_provider.validate() == "project test-project"


def test_create_sends_labels_spot_metadata_and_no_accelerators_for_a2(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    wanted = spec(ssh_public_keys=(KEY,))
    machine = created(provider, wanted, placement(spot=True), "key-1")

    [request] = [r for r in fake.requests if r.method == "POST" and r.path.endswith("/instances")]
    body = request.body or {}
    assert str(uuid.UUID(request.query["requestId"])) == request.query["requestId"]
    assert body["name"] == f"brev-{wanted.instance_id}"
    assert body["machineType"] == f"zones/{ZONE}/machineTypes/a2-highgpu-1g"
    assert body["labels"] == {
        TAG_INSTANCE_ID: wanted.instance_id,
        TAG_ORG: "acme-corp",
        TAG_PLANE: "plane-1",
        TAG_MANAGED: "true",
    }
    assert body["scheduling"]["provisioningModel"] == "SPOT"
    assert body["scheduling"]["instanceTerminationAction"] == "STOP"
    assert body["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert "guestAccelerators" not in body  # a2 machines carry their GPUs
    disk = body["disks"][0]
    assert disk["boot"] is True
    assert disk["initializeParams"]["diskSizeGb"] == "200"  # int64 travels as a JSON string
    assert "deeplearning-platform-release" in disk["initializeParams"]["sourceImage"]
    items = {i["key"]: i["value"] for i in body["metadata"]["items"]}
    assert items["startup-script"] == wanted.user_script()
    assert items["startup-script"].startswith("#!/bin/bash\n")
    assert items["ssh-keys"] == f"ubuntu:{KEY}"

    assert machine.ref == ProviderRef("gcp", "us-central1", ZONE, body["name"])
    assert machine.state is MachineState.RUNNING
    assert machine.instance_type == "a2-highgpu-1g"
    assert machine.public_ip is not None and machine.public_ip.startswith("203.0.113.")
    assert machine.private_ip is not None and machine.private_ip.startswith("10.0.0.")
    assert machine.tags[TAG_INSTANCE_ID] == wanted.instance_id
    assert machine.launched_at is not None


def test_n1_gets_explicit_accelerators_and_the_given_script_and_image(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    wanted = spec(startup_script="echo hi", image="projects/p/global/images/family/mine")
    created(provider, wanted, placement("n1-standard-8", gpu_model="T4", gpu_count=2), "k")

    [body] = fake.bodies("POST", "/instances")
    assert body["guestAccelerators"] == [
        {"acceleratorType": f"zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 2}
    ]
    assert body["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert "provisioningModel" not in body["scheduling"]
    assert body["disks"][0]["initializeParams"]["sourceImage"] == wanted.image
    [item] = body["metadata"]["items"]
    assert item["key"] == "startup-script" and item["value"] == wanted.user_script()
    assert item["value"].endswith("# the user's startup script\necho hi\n")


def test_the_same_key_twice_makes_one_instance(fake: FakeCompute, provider: GcpProvider) -> None:
    wanted = spec()
    first = created(provider, wanted, placement(), "same-key")
    second = created(provider, wanted, placement(), "same-key")

    assert first == second
    assert len(fake.instances) == 1
    ids = {r.query["requestId"] for r in fake.requests if r.path.endswith("/instances")}
    assert len(ids) == 1


def test_a_new_key_after_a_crash_adopts_our_instance(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    wanted = spec()
    first = created(provider, wanted, placement(), "attempt-1")
    again = created(provider, wanted, placement(), "attempt-2")  # insert answers 409

    assert again.ref == first.ref
    assert len(fake.instances) == 1


def test_a_name_taken_by_another_instance_is_refused(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    wanted = spec()
    fake.add_instance(ZONE, instance_name(wanted.instance_id), {TAG_INSTANCE_ID: "someone-else"})

    with pytest.raises(InvalidRequest, match="belongs to another instance"):
        created(provider, wanted, placement(), "k")


@pytest.mark.parametrize(
    "code",
    ["ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "STOCKOUT"],
)
def test_no_capacity_in_a_zone(fake: FakeCompute, provider: GcpProvider, code: str) -> None:
    message = "The zone 'us-central1-a' does not have enough resources available."
    fake.fail_next_insert(ZONE, code, message=message)
    wanted = spec()

    with pytest.raises(NoCapacity) as caught:
        created(provider, wanted, placement(), "k")

    assert caught.value.code == code
    assert caught.value.message == (
        f"create a2-highgpu-1g in {ZONE}: zone {ZONE} has no capacity now ({message})"
    )
    assert fake.instances == {}
    # The next placement, same key: another zone is another request.
    machine = created(provider, wanted, placement(zone="us-central1-b"), "k")
    assert machine.ref.zone == "us-central1-b"


def test_an_accelerator_missing_from_the_zone_is_no_capacity(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    missing = f"projects/test-project/zones/{ZONE}/acceleratorTypes/nvidia-tesla-t4"
    text = f"The resource '{missing}' was not found"
    fake.fail_next_insert(ZONE, "RESOURCE_NOT_FOUND", http_status=404, message=text)

    with pytest.raises(NoCapacity, match="acceleratorTypes"):
        created(provider, spec(), placement("n1-standard-4", gpu_model="T4"), "k")


def test_quota(fake: FakeCompute, provider: GcpProvider) -> None:
    text = "Quota 'NVIDIA_A100_GPUS' exceeded.  Limit: 0.0 in region us-central1."
    fake.fail_next_insert(ZONE, "QUOTA_EXCEEDED", http_status=403, message=text)

    with pytest.raises(QuotaExceeded, match="NVIDIA_A100_GPUS") as caught:
        created(provider, spec(), placement(), "k")
    assert caught.value.code == "QUOTA_EXCEEDED"


def test_a_quota_refused_at_once_is_quota(fake: FakeCompute, provider: GcpProvider) -> None:
    fake.fail_next(403, reason="quotaExceeded", message="Quota 'CPUS' exceeded", method="POST")

    with pytest.raises(QuotaExceeded, match="CPUS"):
        created(provider, spec(), placement(), "k")


def test_forbidden_is_a_credentials_error(fake: FakeCompute, provider: GcpProvider) -> None:
    fake.fail_next(403, reason="forbidden", message="Required 'compute.instances.create'")
    with pytest.raises(CredentialsError, match=r"compute\.instances\.create"):
        created(provider, spec(), placement(), "k")

    fake.fail_next(403, reason="forbidden", message="Required 'compute.projects.get'")
    with pytest.raises(CredentialsError, match=r"compute\.projects\.get") as caught:
        provider.validate()
    assert "http://" not in caught.value.message  # the API's words, not the library's URL


@pytest.mark.parametrize(("status", "reason"), [(503, "backendError"), (429, "rateLimitExceeded")])
def test_throttling_and_outages_are_transient(
    fake: FakeCompute, provider: GcpProvider, status: int, reason: str
) -> None:
    fake.fail_next(status, reason=reason, method="POST")
    with pytest.raises(Transient) as caught:
        created(provider, spec(), placement(), "k")
    assert caught.value.retryable

    fake.fail_next(status, reason=reason, method="GET")
    with pytest.raises(Transient):
        provider.describe(ProviderRef("gcp", "us-central1", ZONE, "brev-x"))


def test_a_bad_request_is_invalid(fake: FakeCompute, provider: GcpProvider) -> None:
    fake.fail_next(400, reason="invalid", message="Invalid value for field 'resource.disks'")
    with pytest.raises(InvalidRequest, match=r"resource\.disks"):
        created(provider, spec(), placement(), "k")


def test_a_placement_without_a_zone_is_invalid(provider: GcpProvider) -> None:
    with pytest.raises(InvalidRequest, match="zone"):
        created(provider, spec(), placement(zone=None), "k")


def test_lifecycle(fake: FakeCompute, provider: GcpProvider) -> None:
    ref = created(provider, spec(), placement(), "k").ref

    provider.stop(ref)
    stopped = provider.describe(ref)
    assert stopped is not None and stopped.state is MachineState.STOPPED  # GCP says TERMINATED
    provider.start(ref)
    started = provider.describe(ref)
    assert started is not None and started.state is MachineState.RUNNING
    provider.terminate(ref)
    assert provider.describe(ref) is None
    provider.terminate(ref)  # gone already: still success

    with pytest.raises(NotFound, match="was not found"):  # the plane: the machine is lost
        provider.start(ref)


def test_a_create_returns_its_operation_at_once_and_is_asked_about_later(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    fake.operation_polls = 3
    machine = provider.create(spec(), placement(), "k")
    assert machine.state is MachineState.PENDING and machine.operation is not None
    assert not [r for r in fake.requests if r.path.endswith("/wait")]  # nothing waited on
    answers = [provider.operation_done(machine.ref, machine.operation) for _ in range(4)]
    assert answers == [False, False, False, True]
    gets = [r for r in fake.requests if "/operations/" in r.path and r.method == "GET"]
    assert len(gets) == 4 and not [r for r in fake.requests if r.path.endswith("/wait")]


def test_stop_still_waits_for_its_operation(fake: FakeCompute, provider: GcpProvider) -> None:
    machine = created(provider, spec(), placement(), "k")
    fake.operation_polls = 3
    provider.stop(machine.ref)
    waits = [r for r in fake.requests if r.path.endswith("/wait")]
    assert len(waits) == 4  # three RUNNING answers, then DONE
    assert all(r.path.startswith("/compute/v1/projects/test-project/zones/") for r in waits)


def test_a_stop_whose_operation_never_ends_is_transient(fake: FakeCompute) -> None:
    config = {"project": fake.project, "endpoint_url": fake.url}
    provider = GcpProvider(config, operation_timeout_s=0.2, poll_interval_s=0.05)
    machine = created(provider, spec(), placement(), "k")
    fake.operation_polls = 1_000

    with pytest.raises(Transient, match="still running"):
        provider.stop(machine.ref)


def test_list_owned_finds_only_labelled_instances_in_the_regions(
    fake: FakeCompute, provider: GcpProvider
) -> None:
    here = created(provider, spec(), placement(), "a")
    there = created(provider, spec(), placement(zone="europe-west4-b"), "b")
    also = created(provider, spec(org="Other"), placement(zone="us-central1-c"), "c")
    fake.add_instance(ZONE, "someone-elses", {"team": "ml"})
    fake.add_instance(ZONE, "unmanaged", {TAG_MANAGED: "false"})
    fake.page_size = 1  # the pager must follow nextPageToken

    found = provider.list_owned(["us-central1"])

    assert sorted(m.ref.id for m in found) == sorted([here.ref.id, also.ref.id])
    assert {m.tags[TAG_ORG] for m in found} == {"acme-corp", "other"}
    everywhere = provider.list_owned(["us-central1", "europe-west4"])
    assert there.ref.id in {m.ref.id for m in everywhere}
    assert provider.list_owned([]) == []
    listing = [r for r in fake.requests if r.path.endswith("/aggregated/instances")]
    assert listing[0].query["filter"] == f"labels.{TAG_MANAGED}=true"


def test_a_bad_service_account_key_is_a_credentials_error_without_its_text() -> None:
    provider = GcpProvider({"project": "p", "credentials_json": '{"private_key": "s3cret"'})
    with pytest.raises(CredentialsError) as caught:
        provider.validate()
    assert "s3cret" not in str(caught.value)


def test_names_and_labels_follow_gcp_rules() -> None:
    assert instance_name("ABC_def.42") == "brev-abc-def-42"
    assert len(instance_name("x" * 100)) == 63
    assert not instance_name("a" * 57 + "-b").endswith("-")
    assert label_value("Acme Corp / ML") == "acme-corp---ml"
    assert len(label_value("y" * 100)) == 63
