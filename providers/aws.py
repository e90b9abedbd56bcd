"""Amazon EC2, through boto3 (by the lazy adaptor `sdks.AWS`: `brev --help` never pays for it,
and a plane without `brev[aws]` says so instead of failing on an import).

Config keys: `access_key_id`, `secret_access_key`, optional `session_token`, optional
`endpoint_url` (an EC2-compatible endpoint, e.g. moto in tests). `brev provider add aws` finds
them as the AWS CLI does: --profile, else AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else the
profile AWS_PROFILE or "default" of ~/.aws/credentials.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

from brev.providers.base import (
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_ORG,
    TAG_PLANE,
    ConfigKey,
    CredentialsError,
    InstanceSpec,
    InvalidRequest,
    Machine,
    MachineState,
    NoCapacity,
    NotFound,
    Placement,
    ProviderError,
    ProviderRef,
    QuotaExceeded,
    Transient,
)
from brev.providers.sdks import AWS

# Stored on every instance so a create retried after a crash finds the first one, even where
# ClientToken is not honoured (moto) or has expired.
TAG_IDEMPOTENCY_KEY = "brev-idempotency-key"
SECURITY_GROUP = "brev-ssh"
# The newest AWS Deep Learning AMI on Ubuntu: NVIDIA driver, CUDA and Docker preinstalled.
DEFAULT_IMAGE_NAME = "Deep Learning*Ubuntu*"

_ERRORS: dict[str, type[ProviderError]] = {
    "InsufficientInstanceCapacity": NoCapacity,
    "InsufficientCapacity": NoCapacity,
    "InsufficientHostCapacity": NoCapacity,
    "Unsupported": NoCapacity,  # the type is not offered in this zone
    "SpotMaxPriceTooLow": NoCapacity,
    "InstanceLimitExceeded": QuotaExceeded,
    "VcpuLimitExceeded": QuotaExceeded,
    "MaxSpotInstanceCountExceeded": QuotaExceeded,
    "AuthFailure": CredentialsError,
    "UnauthorizedOperation": CredentialsError,
    "InvalidClientTokenId": CredentialsError,
    "SignatureDoesNotMatch": CredentialsError,
    "ExpiredToken": CredentialsError,
    "OptInRequired": CredentialsError,
    "RequestLimitExceeded": Transient,
    "Throttling": Transient,
    "InternalError": Transient,
    "ServiceUnavailable": Transient,
    "Unavailable": Transient,
}

_STATES = {
    "pending": MachineState.PENDING,
    "running": MachineState.RUNNING,
    "stopping": MachineState.STOPPING,
    "stopped": MachineState.STOPPED,
    "shutting-down": MachineState.TERMINATED,
    "terminated": MachineState.TERMINATED,
}


def translate(error: Exception) -> ProviderError:
    """A botocore error as one of brev's typed errors, its message fit for a user."""
    if isinstance(error, ProviderError):
        return error  # already brev's (a missing SDK, a zone check)
    exceptions = AWS.load("botocore.exceptions")
    if isinstance(error, exceptions.ClientError):
        code = error.response.get("Error", {}).get("Code", "Unknown")
        message = error.response.get("Error", {}).get("Message", str(error))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return _kind_of(code, status)(f"AWS {code}: {message}", code=code)
    if isinstance(error, exceptions.EndpointConnectionError | exceptions.BotoCoreError):
        return Transient(f"AWS unreachable: {error}", code=type(error).__name__)
    return Transient(f"AWS call failed: {type(error).__name__}", code=type(error).__name__)


def _kind_of(code: str, status: int | None) -> type[ProviderError]:
    """Every code gets a class: the known ones by name, the rest by their shape and status."""
    known = _ERRORS.get(code)
    if known is not None:
        return known
    if code.endswith(".NotFound") or code.endswith("NotFound"):
        return NotFound
    if code.startswith("Invalid") or code.endswith(".Malformed"):
        return InvalidRequest
    if status is not None and status >= 500:
        return Transient
    return InvalidRequest  # a 4xx nobody listed: asking again will not help


@functools.cache
def _retry_config() -> Any:
    config = AWS.load("botocore.config")

    # One attempt per call: the reconciler decides what to retry (a capacity error should move
    # to the next zone at once, not wait out botocore's back-off).
    # As many connections as the reconciler has workers, which share one client per region.
    return config.Config(
        retries={"total_max_attempts": 1},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=64,
    )


class AwsProvider:
    name = "aws"
    display_name: ClassVar[str] = "AWS"
    sdk = AWS
    config_keys: ClassVar[tuple[ConfigKey, ...]] = (
        ConfigKey("access_key_id", "access key id", required=True, env="AWS_ACCESS_KEY_ID"),
        ConfigKey(
            "secret_access_key",
            "secret access key",
            required=True,
            secret=True,
            env="AWS_SECRET_ACCESS_KEY",
        ),
        ConfigKey("session_token", "session token", secret=True, env="AWS_SESSION_TOKEN"),
        ConfigKey("endpoint_url", "an EC2 endpoint other than AWS's own (tests, mirrors)"),
        ConfigKey("profile", "profile in ~/.aws/credentials", local=True),
    )

    @classmethod
    def discover(cls, values: dict[str, str]) -> dict[str, str]:
        """The keys from `--profile` when given, else from the environment (already in
        `values`), else from the profile AWS_PROFILE or "default"; ProviderError if none."""
        profile = values.pop("profile", None)
        if profile is None and values.get("access_key_id") and values.get("secret_access_key"):
            return values
        for key in ("access_key_id", "secret_access_key", "session_token"):
            values.pop(key, None)  # a profile's keys come together, never mixed with others
        return {**values, **_profile_keys(profile or os.environ.get("AWS_PROFILE") or "default")}

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._config = dict(config)
        self._clients: dict[str, Any] = {}
        self._clients_lock = threading.Lock()
        self._zone_names: dict[str, dict[str, str]] = {}
        # Looked up once per region: a create then makes two EC2 calls instead of four.
        self._default_images: dict[str, str] = {}
        self._security_groups: dict[str, str] = {}

    def _client(self, region: str, service: str = "ec2") -> Any:
        key = f"{service}:{region}"
        with self._clients_lock:
            if key in self._clients:
                return self._clients[key]
            session = AWS.load("boto3").session.Session(
                aws_access_key_id=self._config.get("access_key_id"),
                aws_secret_access_key=self._config.get("secret_access_key"),
                aws_session_token=self._config.get("session_token"),
                region_name=region,
            )
            self._clients[key] = session.client(
                service, endpoint_url=self._config.get("endpoint_url"), config=_retry_config()
            )
            return self._clients[key]

    def _call(self, region: str, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self._client(region), operation)(**kwargs)
        except Exception as error:
            raise translate(error) from None

    def validate(self) -> str:
        try:
            identity = self._client("us-east-1", "sts").get_caller_identity()
        except Exception as error:
            raise translate(error) from None
        return f"account {identity['Account']} as {identity['Arn']}"

    # -- create -------------------------------------------------------------------------

    def create(self, spec: InstanceSpec, placement: Placement, idempotency_key: str) -> Machine:
        region = placement.region
        existing = self._find_by_key(region, idempotency_key)
        if existing is not None:
            return existing
        request: dict[str, Any] = {
            "ImageId": spec.image
            or self._cached(self._default_images, region, self._default_image),
            "InstanceType": placement.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": idempotency_key[:64],
            "SecurityGroupIds": [
                self._cached(self._security_groups, region, self._ssh_security_group)
            ],
            # The script itself: botocore base64-encodes RunInstances' UserData on its own, and
            # encoding it here too would boot the machine with base64 text for a script.
            "UserData": user_data(spec),
            "BlockDeviceMappings": [
                {
                    "DeviceName": "/dev/sda1",
                    "Ebs": {"VolumeSize": spec.disk_gb, "VolumeType": "gp3"},
                }
            ],
            "TagSpecifications": [
                {"ResourceType": kind, "Tags": self._tags(spec, idempotency_key)}
                for kind in ("instance", "volume")
            ],
        }
        if placement.zone:
            request["Placement"] = {"AvailabilityZone": self._zone_name(region, placement.zone)}
        if placement.spot:
            request["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {"SpotInstanceType": "one-time"},
            }
        reply = self._call(region, "run_instances", **request)
        return self._machine(region, reply["Instances"][0])

    def _tags(self, spec: InstanceSpec, idempotency_key: str) -> list[dict[str, str]]:
        return [
            {"Key": "Name", "Value": f"brev-{spec.name}"},
            {"Key": TAG_INSTANCE_ID, "Value": spec.instance_id},
            {"Key": TAG_ORG, "Value": spec.org},
            {"Key": TAG_MANAGED, "Value": "true"},
            {"Key": TAG_PLANE, "Value": spec.plane_id},
            {"Key": TAG_IDEMPOTENCY_KEY, "Value": idempotency_key},
        ]

    @staticmethod
    def _cached(cache: dict[str, str], region: str, look_up: Callable[[str], str]) -> str:
        if region not in cache:
            cache[region] = look_up(region)
        return cache[region]

    def _find_by_key(self, region: str, idempotency_key: str) -> Machine | None:
        filters = [
            {"Name": f"tag:{TAG_IDEMPOTENCY_KEY}", "Values": [idempotency_key]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
        return next(self._instances(region, filters), None)

    def _default_image(self, region: str) -> str:
        images = self._call(
            region,
            "describe_images",
            Owners=["amazon"],
            Filters=[{"Name": "name", "Values": [DEFAULT_IMAGE_NAME]}],
        )["Images"]
        if not images:
            raise InvalidRequest(
                f"no AWS Deep Learning AMI found in {region}; pass --image ami-..."
            )
        return str(max(images, key=lambda image: image.get("CreationDate", ""))["ImageId"])

    def _ssh_security_group(self, region: str) -> str:
        """The group that opens SSH and nothing else, made once per region's default VPC."""
        found = self._call(
            region,
            "describe_security_groups",
            Filters=[{"Name": "group-name", "Values": [SECURITY_GROUP]}],
        )["SecurityGroups"]
        if found:
            return str(found[0]["GroupId"])
        try:
            created = self._client(region).create_security_group(
                GroupName=SECURITY_GROUP, Description="brev: SSH only"
            )
        except Exception as error:
            translated = translate(error)
            if translated.code == "InvalidGroup.Duplicate":  # made by a concurrent create
                return self._ssh_security_group(region)
            raise translated from None
        group_id = str(created["GroupId"])
        self._call(
            region,
            "authorize_security_group_ingress",
            GroupId=group_id,
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "SSH"}],
                }
            ],
        )
        return group_id

    def _zone_name(self, region: str, zone: str) -> str:
        """The catalog names zones by AZ ID (use1-az1), which differ per account from AZ names
        (us-east-1a); RunInstances wants the name."""
        if region not in self._zone_names:
            zones = self._call(region, "describe_availability_zones")["AvailabilityZones"]
            self._zone_names[region] = {z["ZoneId"]: z["ZoneName"] for z in zones if "ZoneId" in z}
        names = self._zone_names[region]
        if zone in names.values():
            return zone
        if zone not in names:
            raise NoCapacity(f"zone {zone} is not available to this AWS account in {region}")
        return names[zone]

    # -- lifecycle ----------------------------------------------------------------------

    def describe(self, ref: ProviderRef) -> Machine | None:
        try:
            reply = self._client(ref.region).describe_instances(InstanceIds=[ref.id])
        except Exception as error:
            translated = translate(error)
            if translated.code == "InvalidInstanceID.NotFound":
                return None
            raise translated from None
        machines = [i for r in reply["Reservations"] for i in r["Instances"]]
        return self._machine(ref.region, machines[0]) if machines else None

    def start(self, ref: ProviderRef) -> None:
        self._call(ref.region, "start_instances", InstanceIds=[ref.id])

    def stop(self, ref: ProviderRef) -> None:
        self._call(ref.region, "stop_instances", InstanceIds=[ref.id])

    def terminate(self, ref: ProviderRef) -> None:
        try:
            self._client(ref.region).terminate_instances(InstanceIds=[ref.id])
        except Exception as error:
            translated = translate(error)
            if translated.code != "InvalidInstanceID.NotFound":
                raise translated from None

    def list_owned(self, regions: Iterable[str]) -> Iterable[Machine]:
        filters = [
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "stopping", "stopped"],
            },
        ]
        for region in regions:
            yield from self._instances(region, filters)

    def _instances(self, region: str, filters: list[dict[str, Any]]) -> Iterator[Machine]:
        paginator = self._client(region).get_paginator("describe_instances")
        try:
            for page in paginator.paginate(Filters=filters):
                for reservation in page["Reservations"]:
                    for instance in reservation["Instances"]:
                        yield self._machine(region, instance)
        except ProviderError:
            raise
        except Exception as error:
            raise translate(error) from None

    def _machine(self, region: str, instance: Mapping[str, Any]) -> Machine:
        zone = instance.get("Placement", {}).get("AvailabilityZone")
        return Machine(
            ref=ProviderRef(
                provider=self.name, region=region, zone=zone, id=instance["InstanceId"]
            ),
            state=_STATES.get(instance["State"]["Name"], MachineState.PENDING),
            instance_type=instance.get("InstanceType"),
            public_ip=instance.get("PublicIpAddress"),
            private_ip=instance.get("PrivateIpAddress"),
            tags={t["Key"]: t["Value"] for t in instance.get("Tags", [])},
            launched_at=instance.get("LaunchTime"),
        )


def user_data(spec: InstanceSpec) -> str:
    """The first-boot script (cloud-init runs it once, as root)."""
    return spec.user_script()


def _profile_keys(name: str) -> dict[str, str]:
    path = Path(os.environ.get("AWS_SHARED_CREDENTIALS_FILE", Path.home() / ".aws" / "credentials"))
    import configparser  # here: only `brev provider add aws` reads ~/.aws

    parser = configparser.ConfigParser()
    parser.read(path)
    if not parser.has_section(name):
        raise CredentialsError(
            f"no AWS credentials: profile '{name}' is not in {path}, and AWS_ACCESS_KEY_ID / "
            f"AWS_SECRET_ACCESS_KEY are not set"
        )
    section = parser[name]
    if not section.get("aws_access_key_id") or not section.get("aws_secret_access_key"):
        raise CredentialsError(
            f"profile '{name}' in {path} has no aws_access_key_id / aws_secret_access_key"
        )
    keys = {
        "access_key_id": section["aws_access_key_id"],
        "secret_access_key": section["aws_secret_access_key"],
    }
    if section.get("aws_session_token"):
        keys["session_token"] = section["aws_session_token"]
    return keys
