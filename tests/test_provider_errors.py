"""One classification of provider errors (providers/base.py `disposition`), and the one policy
create, converge and delete take from it: through the API and the reconciler on moto's EC2
server, with AWS's errors injected at botocore's boundary so its real parsing and brev's real
translation run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from brev.client import BrevClient
from brev.providers.aws import AwsProvider, translate
from brev.providers.base import (
    CredentialsError,
    Disposition,
    InvalidRequest,
    NoCapacity,
    NotFound,
    ProviderError,
    QuotaExceeded,
    SdkMissing,
    Transient,
    disposition,
)
from tests.conftest import Plane
from tests.moto import A100, MotoServer, ec2_error, live_machines
from tests.test_lifecycle import _due_now, _org_id


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (NoCapacity("no p4d here"), Disposition.NEXT_PLACEMENT),
        (QuotaExceeded("vCPU limit"), Disposition.NEXT_PLACEMENT),
        (Transient("throttled"), Disposition.RETRY),
        (InvalidRequest("bad image"), Disposition.FAIL),
        (CredentialsError("expired"), Disposition.FAIL),
        (SdkMissing("AWS", "aws"), Disposition.FAIL),
        (NotFound("gone"), Disposition.GONE),
        (ProviderError("a plug-in's untyped error"), Disposition.FAIL),
    ],
)
def test_every_error_class_has_one_disposition(error: ProviderError, expected: Disposition) -> None:
    assert disposition(error) == expected


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("InsufficientInstanceCapacity", 500, NoCapacity),
        ("SomethingNewAndBroken", 503, Transient),  # a code nobody listed, by its status
        ("SomethingNewAndRefused", 400, InvalidRequest),
        ("InvalidVolume.NotFound", 400, NotFound),
        ("InvalidAMIID.Malformed", 400, InvalidRequest),
        ("RequestLimitExceeded", 503, Transient),
    ],
)
def test_unknown_aws_codes_are_classified_not_left_untyped(
    moto_server: MotoServer, code: str, status: int, kind: type[ProviderError]
) -> None:
    client = AwsProvider(moto_server.config())._client("us-east-1")
    client.meta.events.register("before-send.ec2.DescribeRegions", ec2_error(code, "x", status))
    with pytest.raises(Exception) as raised:
        client.describe_regions()
    translated = translate(raised.value)
    assert type(translated) is kind, translated
    assert translated.code == code and code in translated.message


def _fail(
    plane: Plane, client: BrevClient, operation: str, code: str, times: int, status: int = 400
) -> dict[str, int]:
    """The next `times` calls of `operation` by the org's AWS provider fail with `code`."""
    provider = plane.reconciler.provider_for_org(_org_id(client), "aws")
    assert isinstance(provider, AwsProvider)
    failing = ec2_error(code, "injected by the test", status)
    calls = {"n": 0}

    def handler(**kwargs: Any) -> Any:
        calls["n"] += 1
        return failing(**kwargs) if calls["n"] <= times else None

    provider._client("us-east-1").meta.events.register(f"before-send.ec2.{operation}", handler)
    return calls


def _settle_through_backoff(plane: Plane, name: str, until: Callable[[], bool]) -> None:
    """Step the reconciler, making each back-off due at once, until `until()` (max 20 rounds)."""
    for _ in range(20):
        plane.settle()
        if until():
            return
        _due_now(plane, name)
    raise AssertionError("never settled")


def test_a_transient_create_error_is_retried_on_the_same_placement(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(A100).name
    _fail(plane, aws_org, "RunInstances", "SomethingNewAndBroken", times=2, status=503)
    _settle_through_backoff(plane, name, lambda: aws_org.instance(name).status == "running")
    instance = aws_org.instance(name)
    assert instance.attempt == 0  # the same placement, not the next one
    errors = [e for e in instance.events if e.action == "instance.provider_error"]
    assert len(errors) == 2 and errors[0].details["code"] == "SomethingNewAndBroken"
    assert len(live_machines(moto_server)) == 1


def test_no_capacity_to_start_again_leaves_it_stopped_saying_why(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(A100).name
    plane.settle()
    aws_org.stop_instance(name)
    plane.settle()
    assert aws_org.instance(name).status == "stopped"
    _fail(plane, aws_org, "StartInstances", "InsufficientInstanceCapacity", times=1, status=500)
    aws_org.start_instance(name)
    plane.settle()
    instance = aws_org.instance(name)
    assert (instance.status, instance.desired_status) == ("stopped", "stopped")
    assert "could not start" in (instance.status_reason or "")
    assert "InsufficientInstanceCapacity" in (instance.status_reason or "")
    assert [e.action for e in instance.events].count("instance.start_failed") == 1
    # Asked again once capacity is back, it starts.
    aws_org.start_instance(name)
    plane.settle()
    assert aws_org.instance(name).status == "running"
    assert live_machines(moto_server)[0]["State"]["Name"] == "running"


def test_a_throttled_delete_backs_off_says_it_once_and_finishes(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(A100).name
    plane.settle()
    calls = _fail(plane, aws_org, "TerminateInstances", "RequestLimitExceeded", 3, status=503)
    aws_org.delete_instance(name)
    _settle_through_backoff(plane, name, lambda: aws_org.instances() == [])
    assert calls["n"] >= 4  # three refusals, then the terminate that went through
    assert live_machines(moto_server) == []
    said = [e.action for e in aws_org.events(instance=name)]
    assert said.count("instance.provider_error") == 1 and "instance.deleted" in said


def test_a_delete_the_credentials_refuse_is_kept_and_said_until_fixed(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    """The machine still costs money: the delete is never given up, and the instance says why."""
    name = aws_org.create_instance(A100).name
    plane.settle()
    _fail(plane, aws_org, "TerminateInstances", "UnauthorizedOperation", times=2)
    aws_org.delete_instance(name)
    plane.settle()
    instance = aws_org.instance(name)
    assert instance.desired_status == "deleted" and instance.status != "deleted"
    assert "cannot delete yet" in (instance.status_reason or "")
    assert "UnauthorizedOperation" in (instance.status_reason or "")
    assert len(live_machines(moto_server)) == 1  # not forgotten, not pretended gone
    _settle_through_backoff(plane, name, lambda: aws_org.instances() == [])
    assert live_machines(moto_server) == []
    said = [e.action for e in aws_org.events(instance=name)]
    assert said.count("instance.provider_error") == 1 and "instance.deleted" in said


def test_deleting_a_machine_already_gone_is_a_delete_done(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(A100).name
    plane.settle()
    _fail(plane, aws_org, "TerminateInstances", "InvalidInstanceID.NotFound", times=5)
    aws_org.delete_instance(name)
    plane.settle()
    assert aws_org.instances() == []


def test_a_failure_is_one_line_naming_provider_placement_and_what_to_do(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(A100).name
    _fail(plane, aws_org, "RunInstances", "UnauthorizedOperation", times=1000)
    plane.settle()
    instance = aws_org.instance(name)
    reason = instance.status_reason or ""
    assert instance.status == "failed" and "\n" not in reason
    first = instance.plan[0]
    assert reason.startswith(
        f"AWS {first.instance_type} in {first.zone}: AWS UnauthorizedOperation"
    )
    assert reason.endswith("fix the credentials with `brev provider add aws`, then create again")
    [failed] = [e for e in instance.events if e.action == "instance.failed"]
    assert failed.details["code"] == "UnauthorizedOperation"
    assert live_machines(moto_server) == []
