"""The Lambda Cloud provider with real httpx against tests/fake_lambda.py's local Lambda API."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Callable, Iterator

import pytest

from brev.providers import lambda_cloud
from brev.providers.base import (
    TAG_INSTANCE_ID,
    TAG_MANAGED,
    TAG_ORG,
    TAG_PLANE,
    CredentialsError,
    Disposition,
    InstanceSpec,
    InvalidRequest,
    Machine,
    MachineState,
    NoCapacity,
    Placement,
    Provider,
    ProviderError,
    ProviderRef,
    QuotaExceeded,
    Transient,
    disposition,
)
from brev.providers.lambda_cloud import (
    CANNOT_STOP,
    GENERATED_KEY_NAME,
    LambdaProvider,
    ssh_key_name,
)
from tests.fake_lambda import CAPACITY, QUOTA, FakeLambda, fake_lambda_fixture  # noqa: F401

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGpH0Jt8o5hK0sYV7m2Lw0O3k7k2b5Yy6Z2a8s9d0f1g user@host"


@pytest.fixture
def provider(fake_lambda: FakeLambda) -> Iterator[LambdaProvider]:
    lambda_provider = LambdaProvider(
        {"api_key": fake_lambda.api_key, "endpoint_url": fake_lambda.url}
    )
    yield lambda_provider
    lambda_provider.close()


def spec(instance_id: str | None = None, **changes: object) -> InstanceSpec:
    values: dict[str, object] = {
        "instance_id": instance_id or uuid.uuid4().hex,
        "org": "Acme Corp",
        "name": "training box",
        "disk_gb": 200,
        "plane_id": "plane-1",
        "ssh_public_keys": (KEY,),
        "boot_script": "echo plane boot",
        "startup_script": "echo user start",
    }
    values.update(changes)
    return InstanceSpec(**values)  # type: ignore[arg-type]


def placement(instance_type: str = "gpu_1x_a10", region: str = "us-west-1") -> Placement:
    return Placement(instance_type, region, None, False, "A10", 1, 0.75)


def raised(call: Callable[[], object], kind: type[ProviderError]) -> ProviderError:
    with pytest.raises(kind) as info:
        call()
    return info.value


def test_declares_itself_as_a_provider() -> None:
    as_provider: Provider = LambdaProvider({"api_key": "k"})
    assert as_provider.name == "lambda"
    assert LambdaProvider.display_name == "Lambda Cloud"
    api_key = next(k for k in LambdaProvider.config_keys if k.name == "api_key")
    assert api_key.required and api_key.secret and api_key.env == "LAMBDA_API_KEY"
    assert {k.name for k in LambdaProvider.config_keys} == {"api_key", "endpoint_url"}


def test_validate_with_a_good_key(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    identity = provider.validate()
    assert identity == "Lambda Cloud account (3 instance types)"
    assert fake_lambda.api_key not in identity


def test_validate_with_a_bad_key_never_shows_the_key(fake_lambda: FakeLambda) -> None:
    wrong = "secret_wrongkey_fedcba9876543210.ABCDEFprivate"
    bad = LambdaProvider({"api_key": wrong, "endpoint_url": fake_lambda.url})
    error = raised(bad.validate, CredentialsError)
    assert error.code == "global/invalid-api-key"
    assert "Lambda Cloud" in error.message and "API key was invalid" in error.message
    for secret in (wrong, fake_lambda.api_key, "fedcba9876543210", "ABCDEFprivate"):
        assert secret not in error.message and secret not in str(error)
    assert disposition(error) == Disposition.FAIL
    # No key at all: refused before any request.
    error = raised(LambdaProvider({"endpoint_url": fake_lambda.url}).validate, CredentialsError)
    assert fake_lambda.requests == [("GET", "/instance-types")]


def test_create_describe_terminate(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    instance = spec()
    machine = provider.create(instance, placement(), "key-0")
    assert machine.state == MachineState.PENDING
    assert machine.ref == ProviderRef("lambda", "us-west-1", None, machine.ref.id)
    assert machine.tags[TAG_INSTANCE_ID] == instance.instance_id
    launch = fake_lambda.launches[0]
    assert launch["name"] == f"brev-{instance.instance_id}"
    assert launch["region_name"] == "us-west-1" and launch["instance_type_name"] == "gpu_1x_a10"
    assert launch["user_data"] == instance.user_script()
    assert "echo plane boot" in launch["user_data"] and "echo user start" in launch["user_data"]
    assert {t["key"]: t["value"] for t in launch["tags"]} == {
        TAG_INSTANCE_ID: instance.instance_id,
        TAG_ORG: "Acme Corp",
        TAG_PLANE: "plane-1",
        TAG_MANAGED: "true",
    }

    seen: list[Machine | None] = [provider.describe(machine.ref) for _ in range(4)]
    assert seen[0] is not None and seen[0].state == MachineState.PENDING
    assert seen[0].public_ip is None
    running = seen[-1]
    assert running is not None and running.state == MachineState.RUNNING
    assert running.public_ip and running.private_ip and running.instance_type == "gpu_1x_a10"
    assert running.tags[TAG_PLANE] == "plane-1" and running.tags[TAG_MANAGED] == "true"
    assert running.tags[TAG_INSTANCE_ID] == instance.instance_id

    provider.terminate(machine.ref)
    going = provider.describe(machine.ref)
    assert going is not None and going.state == MachineState.TERMINATED  # terminating
    assert provider.describe(machine.ref) is None  # terminated
    assert provider.describe(machine.ref) is None  # gone: 404
    provider.terminate(machine.ref)  # already gone: still a success


def test_create_twice_gives_one_machine(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    instance = spec()
    first = provider.create(instance, placement(), "key-0")
    again = provider.create(instance, placement(), "key-0")
    assert again.ref == first.ref
    assert len(fake_lambda.instances) == 1 and len(fake_lambda.launches) == 1


def test_a_dropped_launch_answer_heals(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    """Lambda launched it, the answer was lost (a crash, a cut connection): the retry finds it."""
    instance = spec()
    fake_lambda.drop_next_launch_response()
    error = raised(lambda: provider.create(instance, placement(), "key-0"), Transient)
    assert disposition(error) == Disposition.RETRY
    assert "Lambda Cloud could not launch gpu_1x_a10 in us-west-1" in error.message
    assert len(fake_lambda.instances) == 1
    (held,) = fake_lambda.instances

    machine = provider.create(instance, placement(), "key-0")
    assert machine.ref.id == held
    assert machine.tags[TAG_INSTANCE_ID] == instance.instance_id
    assert len(fake_lambda.instances) == 1 and len(fake_lambda.launches) == 1


def test_no_capacity_moves_on(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    fake_lambda.no_capacity_next_launch()
    error = raised(lambda: provider.create(spec(), placement(), "k"), NoCapacity)
    assert error.code == CAPACITY and disposition(error) == Disposition.NEXT_PLACEMENT
    assert error.message == (
        "Lambda Cloud could not launch gpu_1x_a10 in us-west-1: Not enough capacity to fulfill "
        "launch request. Choose an instance type with more availability, or try again later. "
        f"[{CAPACITY}]"
    )
    # A region the type has no capacity in, with no fault injected: the same answer.
    error = raised(lambda: provider.create(spec(), placement(region="us-south-1"), "k"), NoCapacity)
    assert disposition(error) == Disposition.NEXT_PLACEMENT
    assert fake_lambda.instances == {}


def test_quota_moves_on(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    fake_lambda.quota_next_launch()
    error = raised(lambda: provider.create(spec(), placement(), "k"), QuotaExceeded)
    assert error.code == QUOTA and disposition(error) == Disposition.NEXT_PLACEMENT
    assert "Quota exceeded" in error.message and "Contact Support" in error.message


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (503, None),
        (500, "global/internal-error"),
        (429, None),
        (502, "provider/internal-unavailable"),
    ],
)
def test_server_trouble_is_retried(
    provider: LambdaProvider, fake_lambda: FakeLambda, status: int, code: str | None
) -> None:
    fake_lambda.fail_next_launch(status, code, "Try again shortly")
    error = raised(lambda: provider.create(spec(), placement(), "k"), Transient)
    assert disposition(error) == Disposition.RETRY
    assert error.code == (code or f"http-{status}") and "Lambda Cloud" in error.message
    assert fake_lambda.instances == {}


def test_the_service_unavailable_shortcut(
    provider: LambdaProvider, fake_lambda: FakeLambda
) -> None:
    fake_lambda.unavailable_next_launch()
    error = raised(lambda: provider.create(spec(), placement(), "k"), Transient)
    assert error.code == "http-503" and "Service Unavailable" in error.message


def test_an_unreachable_or_slow_lambda_is_transient(fake_lambda: FakeLambda) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    gone = LambdaProvider({"api_key": "k", "endpoint_url": f"http://127.0.0.1:{port}/api/v1"})
    assert disposition(raised(gone.validate, Transient)) == Disposition.RETRY

    slow = LambdaProvider(
        {"api_key": fake_lambda.api_key, "endpoint_url": fake_lambda.url}, timeout_s=0.2
    )
    fake_lambda.fail_next(500, "global/internal-error", delay_s=0.6)
    error = raised(slow.validate, Transient)
    assert error.code == "ReadTimeout" and fake_lambda.api_key not in error.message


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "instance-operations/launch/some-new-refusal", InvalidRequest),
        (409, None, InvalidRequest),
        (400, "global/invalid-parameters", InvalidRequest),
        (403, "global/account-inactive", CredentialsError),
        (404, "global/object-does-not-exist", InvalidRequest),  # a key or image, not the machine
    ],
)
def test_refusals_fail(
    provider: LambdaProvider,
    fake_lambda: FakeLambda,
    status: int,
    code: str | None,
    kind: type[ProviderError],
) -> None:
    fake_lambda.fail_next_launch(status, code, "Refused", "Do something else")
    error = raised(lambda: provider.create(spec(), placement(), "k"), kind)
    assert type(error) is kind and disposition(error) == Disposition.FAIL
    assert error.code == (code or f"http-{status}")


def test_an_unknown_instance_type_is_invalid(provider: LambdaProvider) -> None:
    error = raised(lambda: provider.create(spec(), placement("gpu_9x_nope"), "k"), InvalidRequest)
    assert error.code == "global/invalid-parameters"


def test_spot_is_not_offered(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    spot = Placement("gpu_1x_a10", "us-west-1", None, True, "A10", 1, 0.5)
    error = raised(lambda: provider.create(spec(), spot, "k"), NoCapacity)
    assert disposition(error) == Disposition.NEXT_PLACEMENT and fake_lambda.instances == {}


def test_start_and_stop_are_refused(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    machine = provider.create(spec(), placement(), "k")
    for error in (
        raised(lambda: provider.start(machine.ref), InvalidRequest),
        raised(lambda: provider.stop(machine.ref), InvalidRequest),
    ):
        assert error.message == CANNOT_STOP and disposition(error) == Disposition.FAIL


def test_describe_and_terminate_of_unknown_machines(provider: LambdaProvider) -> None:
    ref = ProviderRef("lambda", "us-west-1", None, "0123456789abcdef0123456789abcdef")
    assert provider.describe(ref) is None
    provider.terminate(ref)


def test_unhealthy_counts_as_running(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    instance_id = fake_lambda.add_instance("brev-abc", "us-west-1", status="unhealthy")
    machine = provider.describe(ProviderRef("lambda", "us-west-1", None, instance_id))
    assert machine is not None and machine.state == MachineState.RUNNING


def test_list_owned_finds_brev_machines_in_the_regions(
    provider: LambdaProvider, fake_lambda: FakeLambda
) -> None:
    west = provider.create(spec(), placement(region="us-west-1"), "k")
    east = provider.create(spec(), placement(region="us-east-1"), "k")
    fake_lambda.add_instance("my notebook", "us-west-1")
    fake_lambda.add_instance(None, "us-west-1")
    fake_lambda.add_instance("brev", "us-west-1")
    lost = fake_lambda.add_instance("brev-0badc0ffee", "us-west-1")  # no tags: no plane
    fake_lambda.add_instance("brev-going", "us-west-1", status="terminating")

    owned = {m.ref.id: m for m in provider.list_owned(["us-west-1"])}
    assert set(owned) == {west.ref.id, lost}
    assert owned[west.ref.id].tags[TAG_PLANE] == "plane-1"
    assert owned[lost].tags == {TAG_INSTANCE_ID: "0badc0ffee", TAG_MANAGED: "true"}
    both = {m.ref.id for m in provider.list_owned(["us-west-1", "us-east-1"])}
    assert both == {west.ref.id, east.ref.id, lost}
    assert provider.list_owned(["us-south-1"]) == []


def test_regions_with_capacity(
    provider: LambdaProvider, fake_lambda: FakeLambda, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert provider.regions_with_capacity() == {
        "gpu_1x_a10": frozenset({"us-west-1", "us-east-1"}),
        "gpu_1x_h100_pcie": frozenset({"us-east-1"}),
        "gpu_8x_a100": frozenset(),
    }
    fake_lambda.set_capacity("gpu_8x_a100", ["us-south-1"])
    fake_lambda.set_capacity("gpu_1x_a10", [])
    # Within CAPACITY_TTL_S the answer is reused: Lambda allows about a request a second.
    asked = len([r for r in fake_lambda.requests if r[1].endswith("/instance-types")])
    assert provider.regions_with_capacity()["gpu_1x_a10"] == {"us-west-1", "us-east-1"}
    assert len([r for r in fake_lambda.requests if r[1].endswith("/instance-types")]) == asked
    monkeypatch.setattr(lambda_cloud, "CAPACITY_TTL_S", 0.0)
    capacity = provider.regions_with_capacity()
    assert capacity["gpu_8x_a100"] == {"us-south-1"} and capacity["gpu_1x_a10"] == frozenset()


def test_the_ssh_key_is_registered_once(provider: LambdaProvider, fake_lambda: FakeLambda) -> None:
    provider.create(spec(), placement(), "k")
    provider.create(spec(), placement(), "k")
    provider.create(
        spec(ssh_public_keys=(KEY.rsplit(" ", 1)[0] + " other@comment",)), placement(), "k"
    )
    assert fake_lambda.requests.count(("POST", "/ssh-keys")) == 1
    assert [k["name"] for k in fake_lambda.ssh_keys] == [ssh_key_name(KEY)]
    assert {tuple(launch["ssh_key_names"]) for launch in fake_lambda.launches} == {
        (ssh_key_name(KEY),)
    }


def test_a_key_the_account_already_has_is_reused(
    provider: LambdaProvider, fake_lambda: FakeLambda
) -> None:
    fake_lambda.ssh_keys.append({"id": "k0", "name": "my laptop", "public_key": KEY})
    provider.create(spec(), placement(), "k")
    assert fake_lambda.launches[0]["ssh_key_names"] == ["my laptop"]
    assert ("POST", "/ssh-keys") not in fake_lambda.requests


def test_without_a_key_lambda_generates_one(
    provider: LambdaProvider, fake_lambda: FakeLambda
) -> None:
    provider.create(spec(ssh_public_keys=()), placement(), "k")
    provider.create(spec(ssh_public_keys=()), placement(), "k")
    assert [k["name"] for k in fake_lambda.ssh_keys] == [GENERATED_KEY_NAME]
    assert all(launch["ssh_key_names"] == [GENERATED_KEY_NAME] for launch in fake_lambda.launches)


def test_an_image_is_passed_by_family_or_id(
    provider: LambdaProvider, fake_lambda: FakeLambda
) -> None:
    provider.create(spec(image="lambda-stack-22-04"), placement(), "k")
    provider.create(spec(image="0123456789abcdef0123456789abcdef"), placement(), "k")
    assert [launch["image"] for launch in fake_lambda.launches] == [
        {"family": "lambda-stack-22-04"},
        {"id": "0123456789abcdef0123456789abcdef"},
    ]
