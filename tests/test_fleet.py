"""The dashboard's data: the fleet overview, conditional GETs, audit-log filters, member roles."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from brev import api, client
from brev.api.fleet import FleetOverview
from brev.server.db.models import (
    Event,
    GpuAllocation,
    Instance,
    Node,
    Org,
    User,
    utcnow,
)
from tests.conftest import Plane

API = "/api/v1"


def _ids(plane: Plane, org: str = "default") -> tuple[str, str]:
    with plane.app.state.sessions() as session:
        org_id = session.scalars(select(Org.id).where(Org.name == org)).one()
        user_id = session.scalars(select(User.id).where(User.email == "admin@localhost")).one()
        return org_id, user_id


def _gpu(index: int, utilization: float, used: float = 1024.0) -> dict[str, Any]:
    return {
        "index": index,
        "name": "NVIDIA H200",
        "uuid": f"GPU-{index}",
        "memory_total_mib": 143771.0,
        "memory_used_mib": used,
        "utilization_gpu_pct": utilization,
    }


def _instance(org_id: str, user_id: str, name: str, **values: Any) -> Instance:
    defaults: dict[str, Any] = {
        "status": "running",
        "health": "healthy",
        "gpu_model": "H100",
        "gpu_count": 2,
        "provider": "aws",
        "region": "us-east-1",
        "price_per_hour": 10.0,
    }
    return Instance(org_id=org_id, name=name, created_by_id=user_id, **{**defaults, **values})


def _seed_fleet(plane: Plane) -> None:
    """A cloud instance with 2 GPUs (one busy, one idle for 20 minutes), and a node with 2
    H200s: one held by an instance, one free."""
    org_id, user_id = _ids(plane)
    now = utcnow()
    with plane.app.state.sessions() as session, session.begin():
        cloud = _instance(
            org_id,
            user_id,
            "train-big",
            telemetry={"gpus": [_gpu(0, 87.0), _gpu(1, 2.0)]},
            idle_since=now - timedelta(minutes=20),
        )
        node = Node(
            org_id=org_id,
            name="dgx-1",
            created_by_id=user_id,
            status="online",
            hardware={"gpus": [_gpu(0, 55.0, 70000.0), _gpu(1, 0.0)], "driver_version": "570"},
            last_heartbeat_at=now,
            report_interval_seconds=10.0,
            price_per_hour=1.5,
        )
        session.add_all([cloud, node])
        session.flush()
        on_node = _instance(
            org_id,
            user_id,
            "on-dgx",
            provider="local",
            node_id=node.id,
            gpu_count=1,
            gpu_model="H200",
            price_per_hour=1.5,
        )
        session.add(on_node)
        session.flush()
        session.add(GpuAllocation(node_id=node.id, gpu_index=0, instance_id=on_node.id))
        # Another org's machine: never in this org's picture.
        other = Org(name="elsewhere")
        session.add(other)
        session.flush()
        session.add(_instance(other.id, user_id, "not-yours", price_per_hour=99.0))


def test_the_overview_shows_every_gpu_cloud_and_owned(plane: Plane) -> None:
    _seed_fleet(plane)
    answer = plane.http(plane.admin_token).get(f"{API}/orgs/default/fleet")
    assert answer.status_code == 200
    fleet = FleetOverview.model_validate(answer.json())
    cells = {(g.instance, g.node, g.index): g for g in fleet.gpus}
    assert set(cells) == {
        ("train-big", None, 0),
        ("train-big", None, 1),
        ("on-dgx", "dgx-1", 0),
        (None, "dgx-1", 1),
    }
    busy = cells[("train-big", None, 0)]
    assert (busy.source, busy.utilization_pct, busy.model, busy.idle) == (
        "instance",
        87.0,
        "H100",
        False,
    )
    assert busy.memory_total_mib == 143771.0
    idle = cells[("train-big", None, 1)]
    assert idle.idle and idle.idle_since is not None  # under 5 % for over 10 minutes
    held = cells[("on-dgx", "dgx-1", 0)]
    assert (held.source, held.utilization_pct, held.model, held.status) == (
        "node",
        55.0,
        "H200",
        "running",
    )
    free = cells[(None, "dgx-1", 1)]
    assert (free.status, free.idle) == ("online", False)  # free is not idle: nobody pays
    assert fleet.cost_per_hour == pytest.approx(11.5)
    assert fleet.idle_gpus == 1
    assert fleet.idle_threshold_pct == 5.0


def test_spend_counts_running_time_of_the_last_seven_days(plane: Plane) -> None:
    org_id, user_id = _ids(plane)
    now = utcnow()

    def event(instance: Instance, action: str, at: datetime) -> Event:
        return Event(
            org_id=org_id,
            action=action,
            object_type="instance",
            object_id=instance.id,
            object_name=instance.name,
            created_at=at,
        )

    with plane.app.state.sessions() as session, session.begin():
        # Ran 2 h, three and one hours ago: 2 h x $2.
        short = _instance(org_id, user_id, "short", status="stopped", price_per_hour=2.0)
        short.created_at = now - timedelta(hours=4)
        # Running since before the window, no change within it: 7 days x $1.
        long = _instance(
            org_id,
            user_id,
            "long",
            price_per_hour=1.0,
            gpu_count=0,
            created_at=now - timedelta(days=9),
        )
        # Made an hour ago and running since, its events never written: 1 h x $4, not 7 days.
        new = _instance(org_id, user_id, "new", price_per_hour=4.0, gpu_count=0)
        new.created_at = now - timedelta(hours=1)
        # Stopped 9 days ago: nothing this week.
        old = _instance(org_id, user_id, "old", status="stopped", price_per_hour=50.0)
        session.add_all([short, long, old, new])
        session.flush()
        session.add_all(
            [
                event(short, "instance.running", now - timedelta(hours=3)),
                event(short, "instance.stopping", now - timedelta(hours=1)),
                event(short, "instance.stopped", now - timedelta(minutes=55)),
                event(long, "instance.running", now - timedelta(days=9)),
                event(old, "instance.running", now - timedelta(days=10)),
                event(old, "instance.stopped", now - timedelta(days=9)),
            ]
        )
    fleet = plane.http(plane.admin_token).get(f"{API}/orgs/default/fleet").json()
    assert fleet["spend_7d"] == pytest.approx(2 * 2.0 + 7 * 24 * 1.0 + 4.0, abs=0.05)
    assert fleet["cost_per_hour"] == pytest.approx(5.0)


@pytest.mark.parametrize("path", ["/fleet", "/instances", "/nodes"])
def test_lists_answer_if_none_match_with_304_until_they_change(plane: Plane, path: str) -> None:
    _seed_fleet(plane)
    http = plane.http(plane.admin_token)
    first = http.get(f"{API}/orgs/default{path}")
    tag = first.headers["etag"]
    assert tag.startswith('W/"')
    same = http.get(f"{API}/orgs/default{path}", headers={"If-None-Match": tag})
    assert same.status_code == 304
    assert same.content == b""
    assert same.headers["etag"] == tag
    with plane.app.state.sessions() as session, session.begin():
        session.execute(update(Instance).values(health="unhealthy"))
        session.execute(update(Node).values(price_per_hour=3.0))
        session.execute(
            update(Instance).where(Instance.name == "train-big").values(telemetry={"gpus": []})
        )
    changed = http.get(f"{API}/orgs/default{path}", headers={"If-None-Match": tag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != tag


def test_an_agent_report_is_not_a_change_of_the_instances_list(plane: Plane) -> None:
    """Reports are bookkeeping (brev.server.db.models.INSTANCE_BOOKKEEPING): a fleet of agents
    must not make every open page re-read the list. What the instance is still moves it."""
    _seed_fleet(plane)
    http = plane.http(plane.admin_token)
    token = http.post(f"{API}/orgs/default/instances/train-big/agent-token").json()["token"]
    listed = http.get(f"{API}/orgs/default/instances")
    before = {i["name"]: i["updated_at"] for i in listed.json()}
    report = {"collected_at": utcnow().isoformat(), "gpus": [_gpu(0, 50.0)], "host": {}}
    sent = plane.http(token).post(
        f"{API}/agent/reports", json={"reports": [{"seq": 1, "report": report}]}
    )
    assert sent.status_code == 200 and sent.json()["accepted"] == 1
    same = http.get(
        f"{API}/orgs/default/instances", headers={"If-None-Match": listed.headers["etag"]}
    )
    assert same.status_code == 304
    detail = http.get(f"{API}/orgs/default/instances/train-big").json()
    assert detail["last_heartbeat_at"] is not None
    assert detail["updated_at"] == before["train-big"]
    assert http.post(f"{API}/orgs/default/instances/train-big/stop").status_code == 200
    stopped = http.get(f"{API}/orgs/default/instances/train-big").json()
    assert stopped["updated_at"] > before["train-big"]


def test_another_orgs_fleet_is_not_found(plane: Plane) -> None:
    _seed_fleet(plane)
    added = plane.http(plane.admin_token).post(
        f"{API}/orgs/default/members", json={"email": "bo@example.com"}
    )
    bo = plane.http(added.json()["login_token"])
    assert bo.get(f"{API}/orgs/elsewhere/fleet").status_code == 404
    assert bo.get(f"{API}/orgs/elsewhere/watch").status_code == 404


def _seed_events(plane: Plane) -> None:
    org_id, user_id = _ids(plane)
    with plane.app.state.sessions() as session, session.begin():
        for action, name, actor in [
            ("instance.create", "alpha", user_id),
            ("instance.running", "alpha", None),
            ("instance.create", "beta", user_id),
            ("member.add", "ann@example.com", user_id),
            ("instance.failed", "beta", None),
        ]:
            session.add(
                Event(
                    org_id=org_id,
                    actor_id=actor,
                    action=action,
                    object_type="user" if action.startswith("member") else "instance",
                    object_name=name,
                )
            )


def test_the_audit_log_filters_and_pages(admin: client.BrevClient, plane: Plane) -> None:
    _seed_events(plane)
    alpha = admin.events(instance="alpha")
    assert [e.action for e in alpha] == ["instance.running", "instance.create"]
    assert {e.action for e in admin.events(kind="member.")} == {"member.add"}
    by_plane = admin.events(actor="plane", kind="instance.")
    assert [e.object_name for e in by_plane] == ["beta", "alpha"]
    mine = admin.events(actor="ADMIN@localhost", kind="instance.")
    assert {e.action for e in mine} == {"instance.create"}
    newest = admin.events(limit=2)
    older = admin.events(limit=2, before=newest[-1].id)
    assert all(e.id < newest[-1].id for e in older)
    assert len(older) == 2
    assert admin.events(kind="100%_") == []  # a prefix, not a pattern


def test_admins_change_roles_but_never_leave_an_org_without_one(
    admin: client.BrevClient, plane: Plane
) -> None:
    added = admin.add_member("cy@example.com")
    assert added.login_token is not None
    made = admin.set_member_role("cy@example.com", api.Role.ADMIN)
    assert made.role == api.Role.ADMIN
    assert admin.events(kind="member.role")[0].details == {"role": "admin"}
    back = admin.set_member_role("CY@example.com", api.Role.MEMBER)
    assert back.role == api.Role.MEMBER
    with pytest.raises(client.Conflict, match="last admin"):
        admin.set_member_role("admin@localhost", api.Role.MEMBER)
    cy = plane.client(added.login_token, org="default")
    with pytest.raises(client.Forbidden, match="admin role"):
        cy.set_member_role("cy@example.com", api.Role.ADMIN)
    with pytest.raises(client.NotFound):
        admin.set_member_role("nobody@example.com", api.Role.ADMIN)
