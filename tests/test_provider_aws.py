"""The AWS provider against moto's EC2 server; errors injected at botocore's boundary."""

from __future__ import annotations

import subprocess
import sys

import pytest

from brev.providers.aws import AwsProvider
from brev.providers.base import (
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_ORG,
    CredentialsError,
    InstanceSpec,
    MachineState,
    NoCapacity,
    Placement,
    QuotaExceeded,
    Transient,
)
from tests.moto import MotoServer, ec2_error

SPEC = InstanceSpec(
    instance_id="a" * 32, org="research", name="a100-brisk-otter", disk_gb=200, plane_id="p1"
)
P4D = Placement(
    instance_type="p4d.24xlarge",
    region="us-east-1",
    zone="use1-az1",  # an AZ ID, as the catalog has them
    spot=False,
    gpu_model="A100",
    gpu_count=8,
    price_per_hour=21.96,
)


@pytest.fixture
def aws(moto_server: MotoServer) -> AwsProvider:
    moto_server.reset()
    return AwsProvider(moto_server.config())


def _inject(aws: AwsProvider, operation: str, code: str, status: int = 400) -> None:
    client = aws._client("us-east-1")
    client.meta.events.register(f"before-send.ec2.{operation}", ec2_error(code, "injected", status))


def test_validate_names_the_account(aws: AwsProvider) -> None:
    assert aws.validate().startswith("account 123456789012")


def test_create_tags_opens_only_ssh_and_places_in_the_zone(aws: AwsProvider) -> None:
    machine = aws.create(SPEC, P4D, "key-1")
    assert machine.ref.provider == "aws" and machine.ref.id.startswith("i-")
    assert machine.tags[TAG_INSTANCE_ID] == SPEC.instance_id
    assert machine.tags[TAG_ORG] == "research" and machine.tags[TAG_MANAGED] == "true"
    assert machine.instance_type == "p4d.24xlarge"
    # use1-az1 is the AZ ID; the instance lands in the AZ of that name for this account
    zones = aws._client("us-east-1").describe_availability_zones()["AvailabilityZones"]
    assert machine.ref.zone == next(z["ZoneName"] for z in zones if z["ZoneId"] == "use1-az1")
    group = aws._client("us-east-1").describe_security_groups(GroupNames=["brev-ssh"])
    rules = group["SecurityGroups"][0]["IpPermissions"]
    assert [(r["FromPort"], r["ToPort"]) for r in rules] == [(22, 22)]


def test_the_same_key_twice_is_one_instance(aws: AwsProvider) -> None:
    first = aws.create(SPEC, P4D, "key-1")
    again = aws.create(SPEC, P4D, "key-1")
    assert again.ref == first.ref
    assert len(list(aws.list_owned(["us-east-1"]))) == 1


def test_spot_and_disk_are_requested(aws: AwsProvider) -> None:
    spot = Placement(**{**P4D.__dict__, "spot": True})
    machine = aws.create(InstanceSpec(**{**SPEC.__dict__, "disk_gb": 512}), spot, "key-spot")
    described = aws._client("us-east-1").describe_instances(InstanceIds=[machine.ref.id])
    instance = described["Reservations"][0]["Instances"][0]
    assert instance.get("InstanceLifecycle") == "spot"
    volume_id = instance["BlockDeviceMappings"][0]["Ebs"]["VolumeId"]
    volume = aws._client("us-east-1").describe_volumes(VolumeIds=[volume_id])["Volumes"][0]
    assert volume["Size"] == 512


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("InsufficientInstanceCapacity", 500, NoCapacity),
        ("Unsupported", 400, NoCapacity),
        ("VcpuLimitExceeded", 400, QuotaExceeded),
        ("UnauthorizedOperation", 403, CredentialsError),
        ("RequestLimitExceeded", 503, Transient),
    ],
)
def test_run_instances_errors_are_typed(
    aws: AwsProvider, code: str, status: int, error: type[Exception]
) -> None:
    _inject(aws, "RunInstances", code, status)
    with pytest.raises(error, match=f"AWS {code}: injected"):
        aws.create(SPEC, P4D, "key-err")
    assert list(aws.list_owned(["us-east-1"])) == []


def test_lifecycle_and_terminate_twice(aws: AwsProvider) -> None:
    machine = aws.create(SPEC, P4D, "key-1")
    aws.stop(machine.ref)
    stopped = aws.describe(machine.ref)
    assert stopped is not None and stopped.state in (MachineState.STOPPING, MachineState.STOPPED)
    aws.start(machine.ref)
    started = aws.describe(machine.ref)
    assert started is not None and started.state in (MachineState.PENDING, MachineState.RUNNING)
    aws.terminate(machine.ref)
    aws.terminate(machine.ref)
    gone = aws.describe(machine.ref)
    assert gone is None or gone.state == MachineState.TERMINATED
    assert list(aws.list_owned(["us-east-1"])) == []


def test_describe_of_an_unknown_instance_is_none(aws: AwsProvider) -> None:
    from brev.providers.base import ProviderRef

    ref = ProviderRef(provider="aws", region="us-east-1", zone=None, id="i-0123456789abcdef0")
    assert aws.describe(ref) is None
    aws.terminate(ref)  # gone already: not an error


def test_list_owned_ignores_machines_without_our_tag(aws: AwsProvider) -> None:
    client = aws._client("us-east-1")
    image = client.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    client.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    mine = aws.create(SPEC, P4D, "key-1")
    assert [m.ref.id for m in aws.list_owned(["us-east-1", "us-west-2"])] == [mine.ref.id]


def test_importing_the_provider_does_not_import_boto3() -> None:
    code = "import brev.providers.aws, sys; assert 'boto3' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
