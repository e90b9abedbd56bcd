"""Load, bounded: 1,000 agents reporting every 10 s to two `brev server` replicas on one
PostgreSQL while 20 users list, create (moto as AWS) and delete, for about 30 s (3 reports per
agent). Nothing is lost (every report's seq stored exactly once), no request fails, and every
machine the users made is gone at the end. Timings are printed, not asserted: bench/load.py
runs the same load longer and reports its percentiles (docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from bench.loadgen import (
    LIST,
    LoadShape,
    add_users,
    lost_reports,
    report_to_all,
    run_load,
    seed_fleet,
    stored_twice,
)
from brev import api
from tests.conftest import LiveServer, start_server, stop_server
from tests.databases import PostgresDatabases
from tests.moto import MotoServer
from tests.real_plane import admin, live_ids, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# 30 s at one report per agent every 10 s: every agent reports three times.
SHAPE = LoadShape(agents=1_000, interval_s=10.0, users=20, think_s=2.0, seconds=30.0)
REPLICA_ENV = {
    "BREV_RECONCILE": "1",
    "BREV_RECONCILE_INTERVAL": "1",
    "BREV_RECONCILE_POLL": "1",
    "BREV_RECONCILE_LEASE": "15",
}


@pytest.fixture
def replicas(
    tmp_path: Path, postgres_databases: PostgresDatabases, moto_server: MotoServer
) -> Iterator[tuple[str, list[LiveServer]]]:
    """Two replicas on one fresh PostgreSQL database (one secret key), moto as their AWS."""
    moto_server.reset()
    database_url = postgres_databases.fresh()
    env = {**REPLICA_ENV, "BREV_SECRET_KEY": Fernet.generate_key().decode()}
    started: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            started.append(start_server(tmp_path / name / "home", database_url, env))
        yield database_url, started
    finally:
        for server in started:
            stop_server(server)


def test_a_thousand_agents_and_twenty_users_on_two_replicas_lose_nothing(
    replicas: tuple[str, list[LiveServer]], moto_server: MotoServer
) -> None:
    database_url, servers = replicas
    first = servers[0]
    agents = seed_fleet(database_url, SHAPE.agents)
    with admin(first) as client:
        client.add_provider("aws", moto_server.config())
    users = add_users(first.url, first.admin_token, SHAPE.users)

    outcome = run_load([s.url for s in servers], agents, users, SHAPE)

    print(f"\n{len(agents)} agents, {len(users)} users, 2 replicas, {outcome.wall_s:.0f} s:")
    print("\n".join(outcome.summary()))
    assert outcome.failure_count == 0, "\n".join(outcome.failures)
    assert not outcome.server_errors()
    # Every agent reported in every round, and every report was acknowledged at last (a
    # report that timed out was sent again, as the agent does).
    assert min(outcome.sent) >= 3, f"an agent sent only {min(outcome.sent)} reports"
    assert outcome.acked == outcome.sent
    assert lost_reports(database_url, agents, outcome) == []
    # The users did all three, and took back all they made.
    assert outcome.latencies.get(LIST) and outcome.created
    assert sorted(outcome.deleted) == sorted(outcome.created)

    with admin(first) as client:

        def left() -> list[api.Instance]:
            return [i for i in client.instances() if i.name.startswith("load-")]

        def describe() -> str:
            # What each leftover is doing, its last events, and what both replicas logged
            # besides requests: a failure says where it stuck.
            lines = [f"{len(left())} left"]
            for instance in left()[:5]:
                kinds = [e.action for e in client.events(limit=5, instance=instance.name)]
                lines.append(f"{instance.name} {instance.status} {instance.status_reason} {kinds}")
            for server in servers:
                logged = server.log.read_text(errors="replace").splitlines()
                said = [line for line in logged if '" 200 OK' not in line and " 201 " not in line]
                lines += [f"--- {server.log.name}, not requests:", *said[-15:]]
            return "\n".join(lines)

        wait_for(
            first,
            "every instance the users made to be deleted",
            lambda: not left(),
            timeout=120.0,
            describe=describe,
        )
    wait_for(first, "moto to hold no live machine", lambda: not live_ids(moto_server))


def test_a_report_that_reaches_both_replicas_at_once_is_stored_once(
    replicas: tuple[str, list[LiveServer]],
) -> None:
    """An agent's re-send through the other replica of a load balancer while the first still
    writes it: one of the two stores it, the other drops it as seen (both stored it, samples
    and events twice, before the writer locked the rows it reads)."""
    database_url, servers = replicas
    agents = seed_fleet(database_url, 200)
    for seq in (1, 2):
        answers = report_to_all([s.url for s in servers], agents, seq)
        refused = [(a.status_code, a.text[:200]) for pair in answers for a in pair if a.is_error]
        assert refused == []
        accepted = [sum(a.json()["accepted"] for a in pair) for pair in answers]
        assert accepted == [1] * len(agents), "each report accepted by exactly one replica"
        assert all(a.json()["last_seq"] == seq for pair in answers for a in pair)
    assert stored_twice(database_url, agents) == {}
