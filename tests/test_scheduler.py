"""Registered nodes' GPUs as offers, and their exclusive allocation: placements prefer nodes,
no GPU is ever given twice, stop/delete/autostop give GPUs back, offline nodes keep them.

The node agents here are simulated (reports posted with the node's real agent token, from
`brev register`'s endpoint); tests/test_nodes_e2e.py runs the real agent on real sshd boxes.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, select, update

from brev import api
from brev.client import BrevClient, Conflict, InvalidRequest, NoCapacity
from brev.server.db.models import GpuAllocation, Instance, Node, utcnow
from brev.server.errors import NoPlacement
from brev.server.reconciler.autostop import stop_idle_instances
from brev.server.reconciler.health import forget_abandoned_installs, mark_silent_instances
from brev.server.services import placements
from tests.conftest import Plane, start_server, stop_server

H200_MIB = 143771.0


def gpu(index: int, utilization: float = 0.0, name: str = "NVIDIA H200") -> dict[str, Any]:
    return {
        "index": index,
        "uuid": f"GPU-{index:04d}",
        "name": name,
        "memory_total_mib": H200_MIB,
        "memory_used_mib": 1.0,
        "unified_memory": False,
        "utilization_gpu_pct": utilization,
    }


def report(gpus: list[dict[str, Any]], instances: list[str] | None = None) -> dict[str, Any]:
    return {
        "source": "nvidia-smi",
        "driver_version": "580.95.05",
        "cuda_version": "13.0",
        "gpus": gpus,
        "host": {"os": "Ubuntu 24.04", "arch": "aarch64", "cpu_count": 20, "ssh_sessions": 0},
        "instances": instances or [],
    }


class FakeNode:
    """A node made through the register endpoint, whose agent is this object."""

    def __init__(self, http: httpx.Client | Any, token: str, name: str) -> None:
        self.http, self.token, self.name, self.seq = http, token, name, 0

    def report(self, body: dict[str, Any], interval: float = 10.0) -> api.AgentReportsAccepted:
        self.seq += 1
        response = self.http.post(
            "/api/v1/agent/reports",
            json={"reports": [{"seq": self.seq, "report": body}], "interval_seconds": interval},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        assert response.status_code == 200, response.text
        return api.AgentReportsAccepted.model_validate(response.json())


def register(http: Any, admin_token: str, name: str, gpus: int) -> FakeNode:
    body = {"name": name, "facts": {"os": "Ubuntu 24.04", "node_home": "/opt/brev-node"}}
    response = http.post(
        "/api/v1/orgs/default/nodes/register",
        json=body,
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert response.status_code == 201, response.text
    node = FakeNode(http, response.json()["token"], name)
    node.report(report([gpu(i) for i in range(gpus)]))
    return node


@pytest.fixture
def two_nodes(plane: Plane) -> tuple[FakeNode, FakeNode]:
    http = plane.http()
    return register(http, plane.admin_token, "spark-a", 2), register(
        http, plane.admin_token, "spark-b", 2
    )


def test_node_gpus_are_offers_and_create_prefers_them(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    offers = admin.offers("h200")
    local = [o for o in offers if o.provider == "local"]
    assert {(o.instance_type, o.gpu_count) for o in local} == {
        ("spark-a", 1),
        ("spark-a", 2),
        ("spark-b", 1),
        ("spark-b", 2),
    }
    assert all(o.price_per_hour == 0 and o.gpu_memory_gib == 140.4 for o in local)
    created = admin.create_instance(api.InstanceCreate(name="train", gpu="h200:2"))
    assert created.node == "spark-a" and created.provider == "local"
    assert created.status == api.InstanceStatus.STARTING
    assert [p.provider for p in created.plan] == ["local"]
    # the agent learns of it in the answer to its next report, and says when it made it
    a, _ = two_nodes
    answer = a.report(report([gpu(0), gpu(1)]))
    train_id = admin.instance("train").id
    assert answer.assignments == [
        api.Assignment(
            instance="train",
            gpu_indices=[0, 1],
            gpu_uuids=["GPU-0000", "GPU-0001"],
            principal=f"brev-i-{train_id}",
            active=True,
        )
    ]
    a.report(report([gpu(0), gpu(1)], instances=["train"]))
    assert admin.instance("train").status == api.InstanceStatus.RUNNING
    node = admin.node("spark-a")
    assert [g.instance for g in node.gpus] == ["train", "train"]
    assert node.instances == ["train"]
    assert [i.node for i in admin.instances()] == ["spark-a"]


def test_pinning_and_skipping_nodes(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    pinned = admin.create_instance(api.InstanceCreate(name="b1", gpu="h200", node="spark-b"))
    assert pinned.node == "spark-b"
    local = admin.create_instance(api.InstanceCreate(name="l1", gpu="h200", providers=["local"]))
    assert local.node == "spark-a"
    with pytest.raises(InvalidRequest, match="no credentials for aws"):
        admin.create_instance(api.InstanceCreate(name="x", gpu="h200", providers=["aws"]))
    with pytest.raises(InvalidRequest, match="no node 'nope'"):
        admin.create_instance(api.InstanceCreate(name="x", gpu="h200", node="nope"))
    cpu = admin.create_instance(api.InstanceCreate(name="c1", gpu="cpu"))
    assert cpu.node is not None and cpu.gpu_count == 0


def test_local_without_nodes_says_how_to_add_one(admin: BrevClient) -> None:
    with pytest.raises(InvalidRequest, match="no registered node: add one with `brev nodes add`"):
        admin.create_instance(api.InstanceCreate(gpu="h200", providers=["local"]))


def test_no_capacity_is_a_clear_409(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    for i in range(4):
        admin.create_instance(api.InstanceCreate(name=f"i{i}", gpu="h200:1"))
    with pytest.raises(NoCapacity, match="no capacity: no free H200:1 on this org's online nodes"):
        admin.create_instance(api.InstanceCreate(name="i5", gpu="h200:1"))
    assert len(admin.instances()) == 4  # nothing half-made


def test_stop_releases_start_reallocates_delete_releases(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    admin.create_instance(api.InstanceCreate(name="s", gpu="h200:2", node="spark-a"))
    assert admin.stop_instance("s").status == api.InstanceStatus.STOPPED
    assert all(g.instance is None for g in admin.node("spark-a").gpus)
    # the stopped instance keeps its directory: still listed, without GPUs
    answer = two_nodes[0].report(report([gpu(0), gpu(1)], instances=["s"]))
    [stopped] = answer.assignments or []
    assert (stopped.instance, stopped.gpu_indices, stopped.active) == ("s", [], False)
    taker = admin.create_instance(api.InstanceCreate(name="t", gpu="h200:1", node="spark-a"))
    with pytest.raises(Conflict, match="cannot start 's'"):
        admin.start_instance("s")
    admin.delete_instance(taker.name)
    assert admin.start_instance("s").status == api.InstanceStatus.STARTING
    deleted = admin.delete_instance("s")
    assert deleted.status == api.InstanceStatus.DELETED
    assert all(g.instance is None for g in admin.node("spark-a").gpus)
    assert two_nodes[0].report(report([gpu(0), gpu(1)])).assignments == []


def test_gpus_follow_the_reports(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    a, _ = two_nodes
    a.report(report([gpu(0), gpu(1), gpu(2)]))  # a card was added
    assert len(admin.node("spark-a").gpus) == 3
    assert {o.gpu_count for o in admin.offers("h200") if o.instance_type == "spark-a"} == {1, 2, 3}
    a.report(report([gpu(0)]))  # a driver reinstall lost two
    assert len(admin.node("spark-a").gpus) == 1


def test_unified_memory_node_is_a_gpu_node(plane: Plane, admin: BrevClient) -> None:
    spark = register(plane.http(), plane.admin_token, "dgx-spark", 0)
    gb10 = {**gpu(0, name="NVIDIA GB10"), "unified_memory": True, "memory_total_mib": 122572.0}
    spark.report(report([gb10]))
    node = admin.node("dgx-spark")
    assert node.gpus[0].model == "GB10" and node.gpus[0].unified_memory
    created = admin.create_instance(api.InstanceCreate(name="g", gpu="gb10"))
    assert created.node == "dgx-spark" and created.gpu_model == "GB10"


def test_offline_node_instances_turn_unhealthy_and_keep_gpus(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    a, _ = two_nodes
    admin.create_instance(api.InstanceCreate(name="o", gpu="h200:2", node="spark-a"))
    a.report(report([gpu(0), gpu(1)], instances=["o"]), interval=1.0)
    assert admin.instance("o").health == api.Health.HEALTHY
    engine = create_engine(plane.settings.database_url)
    past = utcnow() - timedelta(seconds=60)
    with engine.begin() as connection:
        connection.execute(update(Node).values(last_heartbeat_at=past))
        connection.execute(update(Instance).values(last_heartbeat_at=past))
    engine.dispose()
    assert mark_silent_instances(plane.app.state.sessions) == 1
    assert admin.instance("o").health == api.Health.UNHEALTHY
    node = admin.node("spark-a")
    assert node.status == api.NodeStatus.OFFLINE
    assert [g.instance for g in node.gpus] == ["o", "o"]
    # an offline node offers nothing
    assert not [o for o in admin.offers("h200") if o.instance_type == "spark-a"]
    a.report(report([gpu(0), gpu(1)], instances=["o"]))
    assert admin.instance("o").health == api.Health.HEALTHY


def test_autostop_on_a_node_releases_the_gpus(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    a, _ = two_nodes
    admin.create_instance(api.InstanceCreate(name="idle", gpu="h200:1", autostop_seconds=60))
    a.report(report([gpu(0), gpu(1, utilization=90)], instances=["idle"]))
    engine = create_engine(plane.settings.database_url)
    with engine.begin() as connection:
        connection.execute(update(Instance).values(idle_since=utcnow() - timedelta(minutes=5)))
    engine.dispose()
    assert stop_idle_instances(plane.app.state.sessions) == 1
    stopped = admin.instance("idle")
    assert stopped.status == api.InstanceStatus.STOPPED
    assert any(e.action == "instance.autostop" for e in stopped.events)
    assert all(g.instance is None for g in admin.node("spark-a").gpus)


def test_idle_is_judged_on_the_instances_own_gpus(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    a, _ = two_nodes
    admin.create_instance(api.InstanceCreate(name="mine", gpu="h200:1", node="spark-a"))
    a.report(report([gpu(0), gpu(1, utilization=95)], instances=["mine"]))
    shown = admin.instance("mine")
    assert [g["index"] for g in shown.telemetry["gpus"]] == [0]
    assert shown.idle_since is not None  # GPU 1 is busy, but it is not this instance's


def test_remove_refuses_while_instances_live_then_tells_the_agent(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    a, _ = two_nodes
    admin.create_instance(api.InstanceCreate(name="r", gpu="h200:1", node="spark-a"))
    with pytest.raises(Conflict, match="hosts 1 instance"):
        admin.remove_node("spark-a")
    admin.remove_node("spark-a", force=True)
    assert [n.name for n in admin.nodes()] == ["spark-b"]
    assert [i.name for i in admin.instances()] == []
    response = a.http.post(
        "/api/v1/agent/reports",
        json={"reports": [{"seq": 99, "report": report([gpu(0)])}]},
        headers={"Authorization": f"Bearer {a.token}"},
    )
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "node_removed"
    # the name is free again
    register(a.http, plane.admin_token, "spark-a", 1)


def test_an_install_that_never_reported_is_forgotten(plane: Plane, admin: BrevClient) -> None:
    """A plane (or `brev register`) that died mid-install leaves a node without a report."""
    body = {"name": "half", "facts": {}}
    response = plane.http(plane.admin_token).post("/api/v1/orgs/default/nodes/register", json=body)
    assert response.status_code == 201
    assert admin.node("half").status == api.NodeStatus.INSTALLING
    assert forget_abandoned_installs(plane.app.state.sessions) == 0  # still within its time
    engine = create_engine(plane.settings.database_url)
    with engine.begin() as connection:
        connection.execute(update(Node).values(created_at=utcnow() - timedelta(minutes=20)))
    engine.dispose()
    assert forget_abandoned_installs(plane.app.state.sessions) == 1
    assert admin.nodes() == []
    token = response.json()["token"]
    report_again = plane.http(token).post("/api/v1/agent/reports", json={"reports": []})
    # an agent left on the box hears it was removed, and uninstalls itself
    assert report_again.status_code == 410, report_again.text
    assert report_again.json()["error"]["code"] == "node_removed"


def test_node_agent_token_can_only_report(
    plane: Plane, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    a, _ = two_nodes
    response = plane.http(a.token).get("/api/v1/orgs/default/nodes")
    assert response.status_code == 403


def test_node_routes_are_org_scoped(plane: Plane, two_nodes: tuple[FakeNode, FakeNode]) -> None:
    admin = plane.client(plane.admin_token, org="default")
    admin.create_org("other")
    other = plane.client(plane.admin_token, org="other")
    assert other.nodes() == []
    assert not [o for o in other.offers("h200") if o.provider == "local"]
    with pytest.raises(InvalidRequest):
        other.create_instance(api.InstanceCreate(gpu="h200", node="spark-a"))


@pytest.mark.slow
def test_fifty_concurrent_creates_get_exactly_four_gpus(database_url: str, tmp_path: Any) -> None:
    """50 concurrent 1-GPU creates against 2 nodes x 2 GPUs: 4 succeed, 46 get "no capacity",
    no GPU is double-booked. On PostgreSQL the creates go to two server processes."""
    servers = [start_server(tmp_path / "home", database_url, {"BREV_RECONCILE": "0"})]
    if database_url.startswith("postgresql"):
        servers.append(start_server(tmp_path / "home2", database_url, {"BREV_RECONCILE": "0"}))
    try:
        token = servers[0].admin_token
        with httpx.Client(base_url=servers[0].url, timeout=60) as http:
            register(http, token, "n1", 2)
            register(http, token, "n2", 2)
        results: list[httpx.Response] = []
        lock = threading.Lock()

        def create(i: int) -> None:
            server = servers[i % len(servers)]
            response = httpx.post(
                f"{server.url}/api/v1/orgs/default/instances",
                json={"name": f"c{i}", "gpu": "h200:1"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=120,
            )
            with lock:
                results.append(response)

        threads = [threading.Thread(target=create, args=(i,)) for i in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        codes = sorted(r.status_code for r in results)
        assert codes == [201] * 4 + [409] * 46, [r.text for r in results if r.status_code >= 500]
        refused = [r.json()["error"] for r in results if r.status_code == 409]
        assert all(e["code"] == "no_capacity" for e in refused)
        engine = create_engine(database_url)
        with engine.connect() as connection:
            allocated = connection.execute(
                select(GpuAllocation.node_id, GpuAllocation.gpu_index)
            ).all()
            instances = connection.scalar(select(func.count()).select_from(Instance))
        engine.dispose()
        assert len(allocated) == len(set(allocated)) == 4
        assert instances == 4
    finally:
        for server in servers:
            stop_server(server)


def test_only_org_admins_manage_nodes(plane: Plane, admin: BrevClient) -> None:
    added = admin.add_member("member@example.com")
    assert added.login_token is not None
    member = plane.http(added.login_token)
    body = {"name": "mine", "facts": {}}
    assert member.post("/api/v1/orgs/default/nodes/register", json=body).status_code == 403
    add = {"name": "x", "host": "127.0.0.1", "user": "root", "host_key": "ssh-ed25519 AAAA"}
    assert member.post("/api/v1/orgs/default/nodes", json=add).status_code == 403
    probe = {"host": "127.0.0.1", "port": 22}
    assert member.post("/api/v1/orgs/default/nodes/host-key", json=probe).status_code == 403
    register(plane.http(), plane.admin_token, "shared", 1)
    assert member.delete("/api/v1/orgs/default/nodes/shared").status_code == 403


@pytest.mark.parametrize(
    "field",
    [
        {"ssh_host": "10.0.0.5\n    ProxyCommand sh -c id\nHost *"},
        {"ssh_host": "a b"},
        {"ssh_user": "root\nHost *"},
    ],
)
def test_what_lands_in_ssh_config_is_validated(plane: Plane, field: dict[str, str]) -> None:
    body = {"name": "evil", "facts": {}, "ssh_host": "box", **field}
    response = plane.http(plane.admin_token).post("/api/v1/orgs/default/nodes/register", json=body)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "bad",
    [
        {"gpus": 1},
        {"gpus": [1, 2]},
        {"host": "x"},
        {"instances": [1]},
        {"gpus": [{"index": 0, "xid_errors": "79"}]},
    ],
)
def test_a_malformed_report_is_a_422_and_stores_nothing(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode], bad: dict[str, Any]
) -> None:
    a, _ = two_nodes
    response = a.http.post(
        "/api/v1/agent/reports",
        json={"reports": [{"seq": 100, "report": bad}]},
        headers={"Authorization": f"Bearer {a.token}"},
    )
    assert response.status_code == 422
    assert len(admin.node("spark-a").gpus) == 2  # the last good report still stands
    assert admin.offers("h200")  # and the org's offers still work


def test_a_removed_node_gives_no_gpu(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    """A create that read the node before `nodes rm` committed gets no GPU from it."""
    from brev.server.db.engine import transaction
    from brev.server.services import scheduler

    with transaction(plane.app.state.sessions) as session:
        node = session.scalars(select(Node).where(Node.name == "spark-a")).one()
        instance = Instance(
            org_id=node.org_id, name="late", created_by_id=node.created_by_id, plan=[]
        )
        session.add(instance)
        session.flush()
        node.removed_at = utcnow()
        session.flush()
        with pytest.raises(NoPlacement, match="was removed"):
            scheduler.allocate(session, instance, node, "H200", 1)


def test_a_node_placement_names_its_node_not_an_instance_type(
    plane: Plane, admin: BrevClient, two_nodes: tuple[FakeNode, FakeNode]
) -> None:
    offers = [o for o in admin.offers("h200") if o.provider == "local"]
    assert offers and {o.node for o in offers} == {"spark-a", "spark-b"}
    # A plan stored before placements had `node` is read as naming the node in instance_type.
    old = {
        "provider": "local",
        "instance_type": "spark-a",
        "region": "local",
        "zone": None,
        "spot": False,
        "gpu_model": "H200",
        "gpu_count": 1,
        "price_per_hour": 0.0,
    }
    [placement] = placements.parse_plan([old])
    assert placement.node == "spark-a"
    cloud = {**old, "provider": "aws", "instance_type": "p5.48xlarge", "region": "us-east-1"}
    assert placements.parse_plan([cloud])[0].node is None
