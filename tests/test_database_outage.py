"""A database outage says so (issue 13, item 5): with PostgreSQL stopped every call was a
`500 internal_error`, /healthz included, and the CLI printed "internal error". Now: 503
`database_unavailable` with Retry-After, /healthz in its usual shape, one CLI line, one log
line when it goes and one when it returns, and the next request after it returns answered as
usual, without a restart. On a PostgreSQL cluster of these tests' own, stopped and started."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from brev.client import DatabaseUnavailable
from brev.server.unhandled import CODE as INTERNAL_ERROR
from tests.conftest import Plane, make_plane
from tests.postgres import PostgresCluster, postgres_bindir
from tests.seed import add_instances, agent_token

pytestmark = pytest.mark.postgres

_names = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """Stopping the session's cluster would stop every other PostgreSQL test of this worker."""
    bindir = postgres_bindir()
    if bindir is None:
        message = "PostgreSQL server binaries not found (make test installs them as root)"
        if os.environ.get("BREV_REQUIRE_SYSTEM_PACKAGES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    cluster = PostgresCluster.start(bindir)
    yield cluster
    cluster.stop()


def fresh_database(cluster: PostgresCluster) -> str:
    name = f"outage_{next(_names)}"
    engine = create_engine(cluster.url(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with engine.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return cluster.url(name)


@pytest.fixture
def outage_plane(cluster: PostgresCluster, brev_home: Path) -> Iterator[Plane]:
    plane = make_plane(fresh_database(cluster), brev_home, reconcile_interval=0.05)
    yield plane
    plane.close()


@contextmanager
def database_down(cluster: PostgresCluster) -> Iterator[None]:
    cluster.pause()
    try:
        yield
    finally:
        cluster.resume()


def _database_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "brev.server.database"]


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.exc_info]


def test_every_call_is_a_503_that_says_so_and_the_next_one_after_is_answered(
    outage_plane: Plane, cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    plane = outage_plane
    admin = plane.client(plane.admin_token, org="default")
    http = plane.http(plane.admin_token)
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    agent = plane.http(agent_token(http, "gpu-a"))
    report = {"reports": [{"seq": 1, "report": {"collected_at": "2026-12-03T00:00:00Z"}}]}
    assert admin.orgs()
    caplog.set_level(logging.INFO)

    with database_down(cluster):
        for answer in (
            http.get("/api/v1/orgs"),
            http.get("/api/v1/orgs/default/instances/gpu-a"),
            http.post("/api/v1/orgs", json={"name": "research"}),
            agent.post("/api/v1/agent/reports", json=report),  # through the batched ingest
        ):
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "5"
            error = answer.json()["error"]
            assert error == {
                "code": "database_unavailable",
                "message": "the plane's database is unreachable; this is temporary: "
                "try again shortly",
                "fields": [],
            }
        health = http.get("/healthz")
        assert health.status_code == 503
        assert health.headers["Retry-After"] == "5"
        body = health.json()
        assert body["status"] == "database_unavailable"
        assert body["database"] == "postgresql" and body["version"]
        assert body["error"]["code"] == "database_unavailable"
        with pytest.raises(DatabaseUnavailable) as raised:
            admin.orgs()
        assert raised.value.status == 503
        assert "unreachable" in raised.value.message and "temporary" in raised.value.message

    assert http.get("/healthz").json()["status"] == "ok"  # the first call after: no restart
    assert [org.name for org in admin.orgs()] == ["default"]
    assert agent.post("/api/v1/agent/reports", json=report).status_code == 200

    went, back = _database_lines(caplog)
    assert went.startswith("database unreachable (psycopg.OperationalError: ")
    assert back.startswith("database reachable again after ")
    assert "6 failed requests" in back
    assert _tracebacks(caplog) == []
    assert INTERNAL_ERROR not in caplog.text
