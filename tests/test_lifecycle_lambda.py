"""Lambda Cloud through the API and the reconciler: real httpx against tests/fake_lambda.py.
The plan skips regions Lambda says have no capacity now (no launch asked there), a launch
whose answer is lost is found again by its name, and a delete leaves nothing."""

from __future__ import annotations

import pytest

from brev import api
from brev.client import BrevClient
from tests.conftest import Plane
from tests.fake_lambda import FakeLambda, fake_lambda_fixture
from tests.test_lifecycle import _due_now

__all__ = ["fake_lambda_fixture"]

A10 = api.InstanceCreate(gpu="a10", providers=["lambda"])


@pytest.fixture
def lambda_org(admin: BrevClient, fake_lambda: FakeLambda) -> BrevClient:
    admin.add_provider("lambda", {"api_key": fake_lambda.api_key, "endpoint_url": fake_lambda.url})
    return admin


def _live(fake: FakeLambda) -> list[dict[str, object]]:
    return [i for i in fake.instances.values() if i["status"] != "terminated"]


def test_regions_without_capacity_now_are_skipped_without_a_launch(
    plane: Plane, lambda_org: BrevClient, fake_lambda: FakeLambda
) -> None:
    fake_lambda.set_capacity("gpu_1x_a10", ["us-east-1"])
    created = lambda_org.create_instance(A10)
    regions = [p.region for p in created.plan]
    assert "us-east-1" in regions and regions[0] != "us-east-1"
    plane.settle(max_passes=60)
    instance = lambda_org.instance(created.name)
    assert (instance.status, instance.region) == ("running", "us-east-1")
    skipped = [e for e in instance.events if e.action == "instance.attempt_failed"]
    assert len(skipped) == regions.index("us-east-1")
    assert all(e.details["code"] == "no-capacity-now" for e in skipped)
    assert [launch["region_name"] for launch in fake_lambda.launches] == ["us-east-1"]
    assert len(_live(fake_lambda)) == 1

    lambda_org.delete_instance(created.name)
    plane.settle()
    assert lambda_org.instances() == []
    assert _live(fake_lambda) == []


def test_a_launch_whose_answer_was_lost_is_found_again_not_doubled(
    plane: Plane, lambda_org: BrevClient, fake_lambda: FakeLambda
) -> None:
    fake_lambda.set_capacity("gpu_1x_a10", ["us-east-1"])
    fake_lambda.drop_next_launch_response()
    created = lambda_org.create_instance(A10.model_copy(update={"region": "us-east-1"}))
    for _ in range(10):
        plane.settle()
        if lambda_org.instance(created.name).status == "running":
            break
        _due_now(plane, created.name)
    instance = lambda_org.instance(created.name)
    assert instance.status == "running"
    assert len(fake_lambda.launches) == 1 and len(_live(fake_lambda)) == 1
    assert instance.provider_ref == next(iter(_live(fake_lambda)))["id"]
