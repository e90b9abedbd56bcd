"""A node agent's long-poll for its assignments (GET /api/v1/agent/assignments): at once when
the agent is behind, a wait that ends with the same version, a wake on a bump by this process
or another one, 410 for a removed node, agent tokens of nodes only, and no admission slot
taken while it waits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, update

from brev import api
from brev.client import BrevClient
from brev.server.db.models import Node
from tests.conftest import Plane, start_server, stop_server
from tests.databases import PostgresDatabases
from tests.test_scheduler import FakeNode, gpu, register

WATCH = "/api/v1/agent/assignments"


@pytest.fixture
def node(plane: Plane) -> FakeNode:
    return register(plane.http(), plane.admin_token, "spark", 2)


def _watch(node: FakeNode, after: int, wait: float = 20) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = node.http.get(
        WATCH,
        params={"after": after, "wait": wait},
        headers={"Authorization": f"Bearer {node.token}"},
    )
    return response, time.monotonic() - started


def _state(response: httpx.Response) -> api.AssignmentsWatch:
    assert response.status_code == 200, response.text
    return api.AssignmentsWatch.model_validate(response.json())


def _in_thread(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()), daemon=True)
    thread.start()
    return thread, result


def _waiting(plane: Plane, count: int = 1) -> None:
    """Until `count` long-polls wait in the plane."""
    deadline = time.monotonic() + 5
    while True:
        watch = getattr(plane.app.state, "assignment_watch", None)
        waiting = sum(len(w) for w in watch._waiters.values()) if watch else 0
        if waiting >= count:
            return
        assert time.monotonic() < deadline, f"{waiting} of {count} long-polls wait"
        time.sleep(0.01)


def test_at_once_when_behind_then_a_wait_that_ends_with_the_same_version(
    plane: Plane, admin: BrevClient, node: FakeNode
) -> None:
    first, took = _watch(node, after=-1)
    state = _state(first)
    assert took < 1 and state.assignments == []
    assert state.node_principals and state.node_principals[0].startswith("brev-n-")
    admin.create_instance(api.InstanceCreate(name="job", gpu="h200:1", node="spark"))
    behind, took = _watch(node, after=state.version)
    now = _state(behind)
    assert took < 1 and now.version > state.version
    assert [(a.instance, a.gpu_indices, a.active) for a in now.assignments] == [("job", [0], True)]
    # the report's answer carries the same version, so the agent can order the two answers
    assert node.report({"gpus": [gpu(0), gpu(1)], "instances": []}).assignments_version == (
        now.version
    )
    same, took = _watch(node, after=now.version, wait=1)
    assert _state(same).version == now.version and 0.9 < took < 3
    assert _state(same).assignments == now.assignments


def test_a_bump_wakes_the_wait_at_once_stop_start_delete(
    plane: Plane, admin: BrevClient, node: FakeNode
) -> None:
    version = _state(_watch(node, after=-1)[0]).version
    admin.create_instance(api.InstanceCreate(name="job", gpu="h200:2", node="spark"))
    steps: list[tuple[Callable[[], object], list[tuple[str, list[int], bool]]]] = [
        (lambda: admin.stop_instance("job"), [("job", [], False)]),
        (lambda: admin.start_instance("job"), [("job", [0, 1], True)]),
        (lambda: admin.delete_instance("job"), []),
    ]
    version = _state(_watch(node, after=version)[0]).version
    for act, expected in steps:
        thread, result = _in_thread(lambda v=version: _watch(node, after=v))  # type: ignore[misc]
        _waiting(plane)
        acted = time.monotonic()
        act()
        thread.join(timeout=10)
        response, _ = result[0]
        woke = time.monotonic() - acted
        state = _state(response)
        assert state.version > version and woke < 1, (woke, state)
        assert [(a.instance, a.gpu_indices, a.active) for a in state.assignments] == expected
        version = state.version


def test_a_bump_by_another_server_is_seen_within_a_second(plane: Plane, node: FakeNode) -> None:
    version = _state(_watch(node, after=-1)[0]).version
    thread, result = _in_thread(lambda: _watch(node, after=version))
    _waiting(plane)
    other = create_engine(plane.settings.database_url)  # another replica: no notify here
    with other.begin() as connection:
        connection.execute(update(Node).values(assignments_version=Node.assignments_version + 1))
    bumped = time.monotonic()
    other.dispose()
    thread.join(timeout=10)
    response, _ = result[0]
    assert _state(response).version == version + 1
    assert time.monotonic() - bumped < 1.5


def test_a_removed_node_is_told_at_once(plane: Plane, admin: BrevClient, node: FakeNode) -> None:
    admin.create_instance(api.InstanceCreate(name="held", gpu="h200:1", node="spark"))
    version = _state(_watch(node, after=-1)[0]).version
    thread, result = _in_thread(lambda: _watch(node, after=version))
    _waiting(plane)
    removed = time.monotonic()
    admin.remove_node("spark", force=True)
    thread.join(timeout=10)
    response, _ = result[0]
    assert response.status_code == 410 and response.json()["error"]["code"] == "node_removed"
    assert time.monotonic() - removed < 1
    again, took = _watch(node, after=version)
    assert again.status_code == 410 and took < 1


def test_only_a_nodes_agent_token_may_watch(plane: Plane, node: FakeNode) -> None:
    assert plane.http().get(WATCH).status_code == 401
    assert plane.http(plane.admin_token).get(WATCH).status_code == 403
    from tests.seed import add_instances

    add_instances(plane.settings.database_url, "default", "admin@localhost", ["cloudy"])
    token = (
        plane.http(plane.admin_token)
        .post("/api/v1/orgs/default/instances/cloudy/agent-token")
        .json()["token"]
    )
    refused = plane.http(token).get(WATCH)
    assert refused.status_code == 403 and "node's agent" in refused.json()["error"]["message"]
    bad = node.http.get(
        WATCH, params={"wait": -1}, headers={"Authorization": f"Bearer {node.token}"}
    )
    assert bad.status_code == 422


@pytest.mark.slow
def test_waiting_long_polls_take_no_admission_slot_and_end_with_the_server(
    tmp_path: Path,
) -> None:
    """A real `brev server`: 30 long-polls wait (more than the 20 requests it admits), other
    requests are answered meanwhile, and stopping the server answers the long-polls at once
    instead of waiting for them."""
    server = start_server(tmp_path / "home", env_extra={"BREV_RECONCILE": "0"})
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            node = register(http, server.admin_token, "spark", 1)
            version = _state(_watch(node, after=-1)[0]).version
            polls = [_in_thread(lambda: _watch(node, after=version, wait=30)) for _ in range(30)]
            time.sleep(1)  # all of them waiting
            started = time.monotonic()
            listed = http.get(
                "/api/v1/orgs/default/nodes",
                headers={"Authorization": f"Bearer {server.admin_token}"},
            )
            assert listed.status_code == 200 and time.monotonic() - started < 2
            assert all(thread.is_alive() for thread, _ in polls)
            stopping = time.monotonic()
            stop_server(server)
            assert time.monotonic() - stopping < 5
            for thread, result in polls:
                thread.join(timeout=5)
                assert _state(result[0][0]).version == version
    finally:
        stop_server(server)


@pytest.mark.slow
@pytest.mark.postgres
def test_a_create_on_another_replica_reaches_the_waiting_agent(
    postgres_databases: PostgresDatabases, tmp_path: Path
) -> None:
    """Two `brev server` processes on one PostgreSQL: the agent waits on one, the create goes
    to the other, and the first one's poller sees the bump within a second."""
    url = postgres_databases.fresh()
    env = {"BREV_RECONCILE": "0"}
    servers = [start_server(tmp_path / "a", url, env)]
    servers.append(start_server(tmp_path / "b", url, env))
    try:
        with httpx.Client(base_url=servers[0].url, timeout=60) as a:
            node = register(a, servers[0].admin_token, "spark", 1)
            version = _state(_watch(node, after=-1)[0]).version
            thread, result = _in_thread(lambda: _watch(node, after=version))
            time.sleep(0.5)  # waiting on server a
            created = httpx.post(
                f"{servers[1].url}/api/v1/orgs/default/instances",
                json={"name": "far", "gpu": "h200", "node": "spark"},
                headers={"Authorization": f"Bearer {servers[0].admin_token}"},
            )
            assert created.status_code == 201, created.text
            committed = time.monotonic()
            thread.join(timeout=10)
            response, took = result[0]
            state = _state(response)
            assert [a.instance for a in state.assignments] == ["far"]
            assert state.version > version and time.monotonic() - committed < 1.2, took
    finally:
        for server in servers:
            stop_server(server)
