"""Replica fail-over in seconds (brev.server.reconciler.replicas): a lease whose owner stopped
heartbeating is free at once, a restarted replica takes back its own rows at start, and an owner
that never heartbeats (an older release) keeps its lease until the lease runs out.

The end-to-end tests SIGKILL a real `brev server` mid-provisioning (moto as AWS) with a lease of
two minutes: every instance must run long before it, on one machine each."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from brev.client import BrevClient
from brev.providers.base import TAG_INSTANCE_ID
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Instance, Replica, utcnow
from brev.server.reconciler import claims, replicas
from tests.conftest import LiveServer, Plane, start_server
from tests.databases import PostgresDatabases
from tests.moto import A100, MotoServer, live_machines
from tests.real_plane import FAST_RECONCILER, admin, stop_plane, wait_for, wait_until_dead

LEASE = timedelta(minutes=2)


def _pending(plane: Plane, moto: MotoServer, count: int) -> list[str]:
    client = plane.client(plane.admin_token, org="default")
    client.add_provider("aws", moto.config())
    return [client.create_instance(A100).id for _ in range(count)]


def _claim(plane: Plane, owner: str) -> list[str]:
    with transaction(plane.app.state.sessions) as session:
        replicas.beat(session, owner)
        return claims.claim_due(session, owner, LEASE, limit=10)


def _silence(plane: Plane, owner: str, seconds: float) -> None:
    with transaction(plane.app.state.sessions) as session:
        session.execute(
            update(Replica)
            .where(Replica.id == owner)
            .values(heartbeat_at=utcnow() - timedelta(seconds=seconds))
        )


def test_a_silent_replicas_leases_are_free_and_a_live_ones_are_not(
    plane: Plane, moto_server: MotoServer
) -> None:
    ids = _pending(plane, moto_server, 3)
    assert sorted(_claim(plane, "a")) == sorted(ids)
    assert _claim(plane, "b") == []  # a heartbeats: its two-minute leases hold
    _silence(plane, "a", seconds=claims.DEAD_AFTER.total_seconds() - 2)
    assert _claim(plane, "b") == []  # quiet, not yet dead
    _silence(plane, "a", seconds=claims.DEAD_AFTER.total_seconds() + 1)
    assert sorted(_claim(plane, "b")) == sorted(ids)


def test_a_restarted_replica_takes_back_its_own_rows_at_once(
    plane: Plane, moto_server: MotoServer
) -> None:
    ids = _pending(plane, moto_server, 2)
    assert sorted(_claim(plane, "a")) == sorted(ids)
    with transaction(plane.app.state.sessions) as session:
        assert replicas.join(session, "a") == 2
        owners = session.scalars(select(Instance.lease_owner).where(Instance.id.in_(ids)))
        assert set(owners) == {None}
    assert sorted(_claim(plane, "b")) == sorted(ids)


def test_an_owner_that_never_heartbeats_keeps_its_lease_until_it_runs_out(
    plane: Plane, moto_server: MotoServer
) -> None:
    ids = _pending(plane, moto_server, 1)
    with transaction(plane.app.state.sessions) as session:  # no replica row: an older release
        assert claims.claim_due(session, "old", LEASE, limit=10) == ids
    assert _claim(plane, "b") == []
    with transaction(plane.app.state.sessions) as session:
        session.execute(update(Instance).values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    assert _claim(plane, "b") == ids


# -- a real SIGKILL ----------------------------------------------------------------------------


@pytest.fixture
def moto(moto_server: MotoServer) -> MotoServer:
    moto_server.reset()
    return moto_server


@pytest.fixture
def servers() -> Iterator[list[LiveServer]]:
    started: list[LiveServer] = []
    yield started
    for server in started:
        stop_plane(server)


def _server(
    started: list[LiveServer], home: Path, url: str | None, replica: str, **env: str
) -> LiveServer:
    extra = {
        **FAST_RECONCILER,
        "BREV_RECONCILE_LEASE": str(LEASE.total_seconds()),
        "BREV_REPLICA_ID": replica,
        **env,
    }
    server = start_server(home, url, extra)
    started.append(server)
    return server


def _all_running(client: BrevClient, names: list[str]) -> bool | None:
    statuses = {name: client.instance(name).status for name in names}
    assert "failed" not in statuses.values(), statuses
    return True if set(statuses.values()) == {"running"} else None


def _one_machine_each(client: BrevClient, moto: MotoServer, names: list[str]) -> None:
    machines = live_machines(moto)
    instances = [client.instance(name) for name in names]
    assert sorted(m["Tags"][TAG_INSTANCE_ID] for m in machines) == sorted(i.id for i in instances)
    assert {m["InstanceId"] for m in machines} == {i.provider_ref for i in instances}


@pytest.mark.slow
@pytest.mark.postgres
def test_a_replica_killed_mid_provisioning_hands_over_in_seconds_on_postgresql(
    tmp_path: Path,
    moto: MotoServer,
    postgres_databases: PostgresDatabases,
    servers: list[LiveServer],
) -> None:
    url = postgres_databases.fresh()
    home = tmp_path / "home"
    doomed = _server(servers, home, url, "doomed", BREV_FAULT_INJECTION="crash-after-create")
    client = admin(doomed)
    client.add_provider("aws", moto.config())
    names = [client.create_instance(A100).name for _ in range(6)]
    wait_until_dead(doomed, "after its first create")
    killed_at = time.monotonic()
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            held = session.scalars(select(Instance.id).where(Instance.lease_owner == "doomed"))
            assert list(held), "the killed replica held no lease: nothing to hand over"
    finally:
        engine.dispose()

    survivor = _server(servers, home, url, "survivor")
    client = admin(survivor)
    wait_for(survivor, "every instance to run", lambda: _all_running(client, names), timeout=60)
    handed_over_s = time.monotonic() - killed_at
    print(f"every instance running {handed_over_s:.1f} s after the kill")
    assert handed_over_s < LEASE.total_seconds() / 2, handed_over_s  # not the lease
    _one_machine_each(client, moto, names)


@pytest.mark.slow
def test_a_killed_replica_restarted_takes_its_rows_back_at_once(
    tmp_path: Path, moto: MotoServer, servers: list[LiveServer]
) -> None:
    """The same replica id after a restart: neither the lease (2 min) nor the silence (10 min
    here) has run out, and yet the instance runs: the restart took its rows back."""
    home = tmp_path / "home"
    quiet = {"BREV_REPLICA_TIMEOUT": "600"}
    doomed = _server(servers, home, None, "a", BREV_FAULT_INJECTION="crash-after-create", **quiet)
    client = admin(doomed)
    client.add_provider("aws", moto.config())
    name = client.create_instance(A100).name
    wait_until_dead(doomed, "after its create")
    restarted = _server(servers, home, None, "a", **quiet)
    client = admin(restarted)
    wait_for(restarted, "the instance to run", lambda: _all_running(client, [name]), timeout=60)
    _one_machine_each(client, moto, [name])
