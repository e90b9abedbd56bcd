"""TTLs and run leases: set at create or later, renewed by `brev run`, and the reconciler's
pass that deletes what outlived either, on moto's EC2 (the machines counted there) and on a
registered node (its GPUs back in the pool, the agent told)."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from brev import api
from brev.client import BrevClient, Conflict, NotFound
from brev.providers.base import TAG_INSTANCE_ID
from brev.server.auth import hash_secret
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import ApiToken, Instance, utcnow
from brev.server.reconciler.expiry import delete_expired_instances
from tests.conftest import LiveServer, Plane
from tests.moto import MotoServer, live_machines
from tests.real_plane import admin as admin_of
from tests.real_plane import instance_status, live_ids, start_plane, stop_plane, wait_for
from tests.test_scheduler import FakeNode, gpu, register, report

T4 = api.InstanceCreate(gpu="t4", providers=["aws"], region="us-east-1")


def _rows(plane: Plane) -> list[Instance]:
    engine = make_engine(plane.settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            rows = list(session.scalars(select(Instance)))
            session.expunge_all()
    finally:
        engine.dispose()
    return rows


def _set(plane: Plane, name: str, **values: object) -> None:
    engine = make_engine(plane.settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            session.execute(update(Instance).where(Instance.name == name).values(**values))
    finally:
        engine.dispose()


def test_create_sets_the_ttl_the_lease_and_the_creating_token(
    plane: Plane, aws_org: BrevClient
) -> None:
    before = utcnow()
    body = T4.model_copy(update={"ttl_seconds": 3600, "run_lease_seconds": 60})
    created = aws_org.create_instance(body)
    after = utcnow()
    assert created.expires_at is not None and created.run_lease_until is not None
    assert before + timedelta(hours=1) <= created.expires_at <= after + timedelta(hours=1)
    assert before + timedelta(minutes=1) <= created.run_lease_until
    assert created.run_lease_until <= after + timedelta(minutes=1)
    [event] = [e for e in created.events if e.action == "instance.create"]
    assert event.details["ttl_seconds"] == 3600 and event.details["run_lease_seconds"] == 60
    [row] = _rows(plane)
    engine = make_engine(plane.settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            token_id = session.scalar(
                select(ApiToken.id).where(ApiToken.secret_hash == hash_secret(plane.admin_token))
            )
    finally:
        engine.dispose()
    assert row.created_by_token_id == token_id and row.run_lease_seconds == 60
    # the listing carries both, for `brev ls`
    [listed] = aws_org.instances()
    assert (listed.expires_at, listed.run_lease_until) == (
        created.expires_at,
        created.run_lease_until,
    )


def test_set_ttl_from_now_and_off_with_events(aws_org: BrevClient) -> None:
    name = aws_org.create_instance(T4).name
    assert aws_org.instance(name).expires_at is None
    before = utcnow()
    shown = aws_org.set_ttl(name, 7200)
    assert shown.expires_at is not None
    assert before + timedelta(hours=2) <= shown.expires_at <= utcnow() + timedelta(hours=2)
    assert aws_org.set_ttl(name, None).expires_at is None
    details = [e.details for e in aws_org.instance(name).events if e.action == "instance.ttl_set"]
    assert [d["seconds"] for d in details] == [None, 7200]  # newest first


def test_ttl_and_lease_of_another_orgs_instance_are_404(plane: Plane, aws_org: BrevClient) -> None:
    name = aws_org.create_instance(T4.model_copy(update={"run_lease_seconds": 60})).name
    aws_org.create_org("beta")
    added = aws_org.add_member("bob@example.com", org="beta")
    assert added.login_token is not None
    bob = plane.client(added.login_token, org="beta")
    for act in (lambda: bob.set_ttl(name, 60), lambda: bob.renew_lease(name)):
        with pytest.raises(NotFound, match=f"instance '{name}' not found in org 'beta'"):
            act()
    for act in (
        lambda: bob.set_ttl(name, 60, org="default"),
        lambda: bob.renew_lease(name, org="default"),
    ):
        with pytest.raises(NotFound, match="org 'default' not found"):
            act()
    assert aws_org.instance(name).expires_at is None


def test_a_lease_can_only_be_renewed_while_it_runs(plane: Plane, aws_org: BrevClient) -> None:
    plain = aws_org.create_instance(T4).name
    with pytest.raises(Conflict, match=f"'{plain}' has no run lease"):
        aws_org.renew_lease(plain)
    leased = aws_org.create_instance(T4.model_copy(update={"run_lease_seconds": 30})).name
    assert aws_org.renew_lease(leased).instance == leased
    _set(plane, leased, run_lease_until=utcnow() - timedelta(seconds=1))
    with pytest.raises(Conflict, match=r"lapsed at .*\(no renewal for 30 s\): it is being deleted"):
        aws_org.renew_lease(leased)


def test_a_reached_ttl_deletes_the_machine(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(T4.model_copy(update={"ttl_seconds": 7200})).name
    kept = aws_org.create_instance(T4.model_copy(update={"ttl_seconds": 7200})).name
    plane.settle()
    assert len(live_machines(moto_server)) == 2
    sessions = plane.app.state.sessions
    assert delete_expired_instances(sessions) == 0  # two hours to go
    # two hours later, as far as this instance knows
    start = utcnow() - timedelta(hours=2, seconds=1)
    _set(plane, name, created_at=start, expires_at=start + timedelta(hours=2))
    assert delete_expired_instances(sessions) == 1
    assert delete_expired_instances(sessions) == 0  # once
    [event] = [e for e in aws_org.instance(name).events if e.action == "instance.ttl_expired"]
    assert event.actor is None
    assert event.details["reason"] == "TTL of 2h reached"
    plane.settle()
    assert [i.name for i in aws_org.instances()] == [kept]
    assert [m["Tags"][TAG_INSTANCE_ID] for m in live_machines(moto_server)] == [
        aws_org.instance(kept).id
    ]


@pytest.fixture
def node(plane: Plane) -> FakeNode:
    return register(plane.http(), plane.admin_token, "spark", 2)


@pytest.mark.parametrize("end", ["ttl", "lease"])
def test_on_a_node_the_gpus_come_back_at_once(
    plane: Plane, admin: BrevClient, node: FakeNode, end: str
) -> None:
    body = api.InstanceCreate(name="job", gpu="h200:2", ttl_seconds=60, run_lease_seconds=60)
    admin.create_instance(body)
    node.report(report([gpu(0), gpu(1)], instances=["job"]))
    assert admin.instance("job").status == "running"
    assert all(g.instance == "job" for g in admin.node("spark").gpus)
    start = utcnow() - timedelta(seconds=61)  # a minute and a second ago
    ended = {"expires_at": start + timedelta(seconds=60), "run_lease_until": None}
    if end == "lease":
        ended = {"run_lease_until": utcnow() - timedelta(seconds=1)}
    _set(plane, "job", created_at=start, **ended)
    assert delete_expired_instances(plane.app.state.sessions) == 1
    assert [i.name for i in admin.instances()] == []
    assert all(g.instance is None for g in admin.node("spark").gpus)
    assert node.report(report([gpu(0), gpu(1)])).assignments == []
    action = {"ttl": "instance.ttl_expired", "lease": "instance.lease_lapsed"}[end]
    [event] = [e for e in admin.events() if e.action == action]
    reason = str(event.details["reason"])
    if end == "lease":
        assert reason == "the run's lease lapsed: no renewal from `brev run` for 60 s"
    else:
        assert reason == "TTL of 1m reached"
    assert any(e.action == "instance.deleted" for e in admin.events())


@pytest.mark.slow
def test_a_lapsed_lease_deletes_the_machine_on_a_real_plane(
    tmp_path: Path, moto_server: MotoServer
) -> None:
    """`brev server` reconciling every 0.2 s: an instance whose 5 s lease is renewed lives
    on; once the renewals stop, the plane deletes it and moto's machine with it."""
    moto_server.reset()
    server: LiveServer = start_plane(tmp_path / "home")
    try:
        with admin_of(server) as client:
            client.add_provider("aws", moto_server.config())
            leased = T4.model_copy(update={"run_lease_seconds": 5})
            name = client.create_instance(leased).name

            def renewed_and_running() -> bool:
                client.renew_lease(name)
                return client.instance(name).status == "running"

            wait_for(server, f"{name} to run", renewed_and_running)
            assert len(live_ids(moto_server)) == 1
            for _ in range(7):  # 7 s, longer than the lease: the renewals keep it
                client.renew_lease(name)
                time.sleep(1)
            assert instance_status(client, name) == "running"
            wait_for(server, f"{name} to go", lambda: instance_status(client, name) is None)
            wait_for(server, "moto to hold no machine", lambda: live_ids(moto_server) == [])
            [event] = [e for e in client.events() if e.action == "instance.lease_lapsed"]
            assert event.details["reason"] == (
                "the run's lease lapsed: no renewal from `brev run` for 5 s"
            )
    finally:
        stop_plane(server)
