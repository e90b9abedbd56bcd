"""`brev create` to `brev delete` through the API and the reconciler, on moto's EC2 server.

Every test counts the machines moto holds: the database and the cloud must agree.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from brev import api
from brev.client import BrevClient, Conflict, InvalidRequest
from brev.providers.aws import AwsProvider
from brev.providers.base import TAG_INSTANCE_ID, TAG_MANAGED, TAG_PLANE
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Instance
from tests.conftest import Plane
from tests.moto import A100, MotoServer, ec2_error, live_machines


def _fail_run_instances(plane: Plane, org_id: str, code: str, times: int) -> Callable[..., Any]:
    """Make the next `times` RunInstances calls of the org's AWS provider fail with `code`."""
    provider = plane.reconciler.provider_for_org(org_id, "aws")
    assert isinstance(provider, AwsProvider)
    failing = ec2_error(code, "injected by the test", 500)
    calls = {"n": 0}

    def handler(**kwargs: Any) -> Any:
        calls["n"] += 1
        return failing(**kwargs) if calls["n"] <= times else None

    provider._client("us-east-1").meta.events.register("before-send.ec2.RunInstances", handler)
    return handler


def _org_id(client: BrevClient) -> str:
    return next(o.id for o in client.orgs() if o.name == client.org)


def _due_now(plane: Plane, name: str) -> None:
    engine = make_engine(plane.settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            session.execute(
                update(Instance).where(Instance.name == name).values(next_check_at=None)
            )
    finally:
        engine.dispose()


def test_create_runs_on_the_cheapest_offer_and_tags_it(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    created = aws_org.create_instance(A100)
    assert created.status == "pending" and created.name.startswith("a100-")
    assert created.plan[0].instance_type == "p4d.24xlarge"  # the cheapest A100:8 on AWS
    plane.settle()
    instance = aws_org.instance(created.name)
    assert instance.status == "running"
    assert instance.provider == "aws" and instance.region == "us-east-1"
    [machine] = live_machines(moto_server)
    assert machine["InstanceId"] == instance.provider_ref
    assert machine["Tags"][TAG_INSTANCE_ID] == instance.id
    assert machine["Tags"][TAG_MANAGED] == "true"
    assert machine["Tags"][TAG_PLANE] == plane.reconciler.plane_id
    actions = [e.action for e in reversed(instance.events)]
    assert actions == [
        "instance.create",
        "instance.attempt",
        "instance.provisioned",
        "instance.running",
    ]
    assert [i.name for i in aws_org.instances()] == [created.name]


def test_no_capacity_fails_over_to_the_next_zone(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    created = aws_org.create_instance(A100)
    _fail_run_instances(plane, _org_id(aws_org), "InsufficientInstanceCapacity", times=2)
    plane.settle()
    instance = aws_org.instance(created.name)
    assert instance.status == "running"
    failed = [e for e in instance.events if e.action == "instance.attempt_failed"]
    assert len(failed) == 2
    assert all("InsufficientInstanceCapacity" in str(e.details["reason"]) for e in failed)
    zones_tried = [
        e.details["zone"] for e in reversed(instance.events) if e.action == "instance.attempt"
    ]
    assert len(zones_tried) == 3 and len(set(zones_tried)) == 3
    assert instance.attempt == 2
    assert len(live_machines(moto_server)) == 1


def test_when_every_placement_fails_the_instance_fails_and_nothing_runs(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    created = aws_org.create_instance(A100)
    _fail_run_instances(plane, _org_id(aws_org), "InsufficientInstanceCapacity", times=1000)
    plane.settle(max_passes=100)
    instance = aws_org.instance(created.name)
    assert instance.status == "failed"
    assert instance.status_reason is not None and "placement(s) failed" in instance.status_reason
    failed = [e for e in instance.events if e.action == "instance.attempt_failed"]
    assert len(failed) == len(instance.plan)
    assert live_machines(moto_server) == []


def test_a_quota_error_moves_on_and_bad_credentials_stop(plane: Plane, aws_org: BrevClient) -> None:
    created = aws_org.create_instance(A100)
    _fail_run_instances(plane, _org_id(aws_org), "UnauthorizedOperation", times=1000)
    plane.settle()
    instance = aws_org.instance(created.name)
    assert instance.status == "failed"
    assert "UnauthorizedOperation" in (instance.status_reason or "")
    assert len([e for e in instance.events if e.action == "instance.attempt"]) == 1


def test_stop_start_delete(plane: Plane, aws_org: BrevClient, moto_server: MotoServer) -> None:
    name = aws_org.create_instance(A100).name
    plane.settle()
    assert aws_org.stop_instance(name).desired_status == "stopped"
    plane.settle()
    assert aws_org.instance(name).status == "stopped"
    assert live_machines(moto_server)[0]["State"]["Name"] == "stopped"
    aws_org.start_instance(name)
    plane.settle()
    assert aws_org.instance(name).status == "running"
    aws_org.delete_instance(name)
    plane.settle()
    assert aws_org.instances() == []
    assert live_machines(moto_server) == []
    # the name is free again
    again = aws_org.create_instance(A100.model_copy(update={"name": name}))
    assert again.name == name


def test_the_same_idempotency_key_returns_the_first_instance(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    body = A100.model_copy(update={"idempotency_key": "ci-run-12345"})
    first = aws_org.create_instance(body)
    second = aws_org.create_instance(body)
    assert second.id == first.id
    plane.settle()
    assert len(live_machines(moto_server)) == 1


def test_dry_run_lists_placements_and_creates_nothing(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    plan = aws_org.plan_instance(api.InstanceCreate(gpu="a100", providers=["aws"]))
    prices = [p.price_per_hour or 0 for p in plan.placements]
    assert prices == sorted(prices) and len(plan.placements) >= 2
    assert all(p.gpu_model in ("A100", "A100-80GB") for p in plan.placements)
    assert aws_org.instances() == []
    assert live_machines(moto_server) == []


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"gpu": "a10O"}, "gpu", "unknown GPU 'a10O'; did you mean"),
        ({"gpu": "h100:3"}, "gpu", "no offer has 3"),
        ({"gpu": "a100", "disk_gb": -1}, "disk_gb", "greater than or equal to 20"),
        ({"gpu": "a100", "disk_gb": 10**9}, "disk_gb", "less than or equal to"),
        ({"gpu": "a100", "providers": ["gcp"]}, "providers", "no credentials for gcp"),
        ({"gpu": "a100", "providers": ["azur"]}, "providers", "unknown provider 'azur'"),
        ({"gpu": "a100", "region": "mars-1"}, "gpu", "no offer for A100"),
        ({"gpu": "a100", "max_price": 0.01}, "gpu", "under $0.01/h"),
        ({"gpu": "a100", "name": "Bad_Name"}, "name", "invalid name"),
    ],
)
def test_bad_input_is_a_422_naming_the_field_and_creates_nothing(
    plane: Plane,
    aws_org: BrevClient,
    moto_server: MotoServer,
    body: dict[str, Any],
    field: str,
    message: str,
) -> None:
    response = plane.http(plane.admin_token).post("/api/v1/orgs/default/instances", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["fields"][0]["field"] == field
    assert message in error["message"]
    assert aws_org.instances() == []
    plane.settle()
    assert live_machines(moto_server) == []


def test_a_name_already_used_is_a_conflict(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    aws_org.create_instance(A100.model_copy(update={"name": "train"}))
    with pytest.raises(Conflict, match="an instance named 'train' already exists"):
        aws_org.create_instance(A100.model_copy(update={"name": "train"}))
    plane.settle()
    assert len(live_machines(moto_server)) == 1


def test_without_any_credentials_create_says_what_to_do(plane: Plane, admin: BrevClient) -> None:
    with pytest.raises(
        InvalidRequest,
        match="no cloud credentials and no registered node yet: run `brev provider add aws`",
    ):
        admin.create_instance(api.InstanceCreate(gpu="a100"))


def _tagged_machine(moto: MotoServer, plane_id: str) -> str:
    ec2 = AwsProvider(moto.config())._client("us-east-1")
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    tags = {TAG_MANAGED: "true", TAG_INSTANCE_ID: "f" * 32, TAG_PLANE: plane_id}
    machine = ec2.run_instances(
        ImageId=image,
        InstanceType="p4d.24xlarge",
        MinCount=1,
        MaxCount=1,
        TagSpecifications=[
            {"ResourceType": "instance", "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}
        ],
    )
    return str(machine["Instances"][0]["InstanceId"])


def test_the_sweep_terminates_machines_the_database_does_not_know(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    kept = aws_org.create_instance(A100)
    gone = aws_org.create_instance(A100)
    plane.settle()
    aws_org.delete_instance(gone.name)
    plane.settle()
    # A machine tagged as ours that no row knows: what a crash or a bug could leave behind.
    stray = _tagged_machine(moto_server, plane_id=plane.reconciler.plane_id)
    # The same, made by another control plane sharing the account: not ours to judge.
    other_planes = _tagged_machine(moto_server, plane_id="another-plane")
    assert plane.reconciler.sweep() == 1
    remaining = {m["InstanceId"] for m in live_machines(moto_server)}
    assert remaining == {aws_org.instance(kept.name).provider_ref, other_planes}
    swept = [e for e in aws_org.events() if e.action == "sweep.terminate"]
    assert [e.details["machine"] for e in swept] == [stray]


def test_a_machine_terminated_outside_brev_marks_the_instance_failed(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(A100).name
    plane.settle()
    ref = aws_org.instance(name).provider_ref
    AwsProvider(moto_server.config())._client("us-east-1").terminate_instances(InstanceIds=[ref])
    _due_now(plane, name)  # rather than wait out the minute between checks of a running machine
    plane.settle()
    instance = aws_org.instance(name)
    assert instance.status == "failed"
    assert "terminated outside brev" in (instance.status_reason or "")


def test_a_create_whose_answer_was_lost_is_retried_without_a_second_instance(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    """The CLI re-sends a create after a dropped connection; the idempotency key makes the
    plane answer with the first instance instead of making another."""
    import httpx

    from brev.cli.instance_wait import create_with_retries

    inner = plane.http(plane.admin_token)
    lost = {"answers": 0}

    class LoseFirstAnswer(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response: httpx.Response = inner._transport.handle_request(request)
            if request.method == "POST" and lost["answers"] == 0:
                lost["answers"] += 1
                raise httpx.ReadError("connection reset after the request was sent")
            return response

    flaky = httpx.Client(base_url="http://testserver", transport=LoseFirstAnswer())
    client = BrevClient("http://testserver", plane.admin_token, org="default", http=flaky)
    body = A100.model_copy(update={"idempotency_key": "cli-lost-answer-1"})
    instance = create_with_retries(client, body)
    assert lost["answers"] == 1
    assert [i.id for i in aws_org.instances()] == [instance.id]
    plane.settle()
    assert len(live_machines(moto_server)) == 1


def test_two_reconcilers_never_step_the_same_instance(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    """Two replicas on one database: claims keep them apart, so every instance gets one
    attempt and one machine."""
    import threading

    from brev.providers.registry import make_provider
    from brev.server.reconciler.loop import Reconciler
    from brev.server.reconciler.snapshot import Timing

    names = [aws_org.create_instance(A100).name for _ in range(8)]
    replicas = [
        Reconciler(
            plane.app.state.sessions,
            plane.app.state.secrets,
            make_provider,
            workers=4,
            timing=Timing(poll=timedelta(0)),
        )
        for _ in range(2)
    ]
    start = threading.Barrier(len(replicas))

    def run(reconciler: Reconciler) -> None:
        start.wait()
        for _ in range(20):
            reconciler.run_once()

    threads = [threading.Thread(target=run, args=(r,)) for r in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for reconciler in replicas:
        reconciler.stop()
    plane.settle()
    for name in names:
        instance = aws_org.instance(name)
        assert instance.status == "running", name
        assert len([e for e in instance.events if e.action == "instance.attempt"]) == 1
    machines = live_machines(moto_server)
    assert len(machines) == len(names)
    assert len({m["Tags"][TAG_INSTANCE_ID] for m in machines}) == len(names)
