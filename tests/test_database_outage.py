"""A database outage says so (issue 13, item 5): with PostgreSQL stopped every call was a
`500 internal_error`, /healthz included, and the CLI printed "internal error". Now: 503
`database_unavailable` with Retry-After, /healthz in its usual shape, one CLI line, one log
line when it goes and one when it returns, and the next request after it returns answered as
usual, without a restart. On a PostgreSQL cluster of these tests' own, stopped and started."""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from brev.client import DatabaseUnavailable
from brev.server import assignment_watch
from brev.server.reconciler import loop, loop_errors
from brev.server.unhandled import CODE as INTERNAL_ERROR
from tests.cli_runner import brev, ok, one_line_error
from tests.conftest import Plane, make_plane, start_server, stop_server
from tests.postgres import PostgresCluster, started_cluster
from tests.seed import add_instances, agent_token

pytestmark = pytest.mark.postgres

CLI_LINE = "error: the plane's database is unreachable; this is temporary: try again shortly"
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster() -> Iterator[PostgresCluster]:
    """Stopping the session's cluster would stop every other PostgreSQL test of this worker."""
    yield from started_cluster()


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


def test_a_report_after_a_restart_the_writer_slept_through_is_answered(
    outage_plane: Plane, cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A restart while the report writer is idle costs no report: the pool's ping finds the
    connections it ended before the next batch uses one (brev.server.ingest). A writer that
    kept its connection from batch to batch, tried this stop, must keep this true."""
    plane = outage_plane
    http = plane.http(plane.admin_token)
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    agent = plane.http(agent_token(http, "gpu-a"))

    def report(seq: int) -> int:
        body = {"reports": [{"seq": seq, "report": {"collected_at": "2026-12-03T00:00:00Z"}}]}
        status: int = agent.post("/api/v1/agent/reports", json=body).status_code
        return status

    assert report(1) == 200  # the pool now keeps a connection, which the restart ends
    with database_down(cluster):
        pass  # no report meanwhile: the writer does not know
    caplog.set_level(logging.INFO)
    assert report(2) == 200
    assert report(3) == 200
    assert _tracebacks(caplog) == []


def test_the_reconciler_backs_off_while_the_database_is_away(
    outage_plane: Plane,
    cluster: PostgresCluster,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(loop_errors, "MAX_PAUSE_S", 0.4)  # the test's outage is short
    pauses: list[float] = []
    paused = threading.Condition()

    def noting_pause(interval: float, passes_without_database: int) -> float:
        wait = loop_errors.pause_between_passes(interval, passes_without_database)
        with paused:
            pauses.append(wait)
            paused.notify_all()
        return wait

    monkeypatch.setattr(loop, "pause_between_passes", noting_pause)
    caplog.set_level(logging.INFO)
    reconciler = outage_plane.reconciler
    reconciler.start()  # it joins the replicas in the database: before the outage
    try:
        with database_down(cluster), paused:
            assert paused.wait_for(lambda: sum(p > 0.05 for p in pauses) >= 4, timeout=60)
        with paused:
            seen = len(pauses)
            assert paused.wait_for(lambda: pauses[seen:].count(0.05) > 0, timeout=60)
    finally:
        reconciler.stop()
    assert [p for p in pauses if p > 0.05][:4] == [0.2, 0.4, 0.4, 0.4]  # doubling, capped
    went, back = _database_lines(caplog)
    assert went.startswith("database unreachable (")
    assert back.startswith("database reachable again after ")
    assert _tracebacks(caplog) == []


def test_a_step_the_outage_cut_short_leaves_no_instance_in_flight(
    outage_plane: Plane, cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    plane = outage_plane
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    admin = plane.client(plane.admin_token, org="default")
    instance_id = admin.instance("gpu-a").id
    reconciler = plane.reconciler
    reconciler._in_flight.add(instance_id)  # as dispatch() hands it to a worker
    caplog.set_level(logging.INFO)
    with database_down(cluster):
        reconciler._step_and_release(instance_id)  # could neither step nor release it
    # Left in flight, its lease was extended by every pass and it was never stepped again.
    assert instance_id not in reconciler._in_flight
    assert _tracebacks(caplog) == []


@pytest.mark.slow
def test_the_cli_says_so_in_one_line_and_the_server_logs_it_once(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "home", database_url=fresh_database(cluster))
    try:
        env = server.env(BREV_API_URL=server.url, BREV_TOKEN=server.admin_token, BREV_ORG="default")
        ok(brev("ls", env=env))
        with database_down(cluster):
            assert one_line_error(brev("ls", env=env)) == CLI_LINE
            assert one_line_error(brev("org", "ls", env=env)) == CLI_LINE
            assert httpx.get(f"{server.url}/healthz").status_code == 503
        ok(brev("ls", env=env))  # the first try after, on the same server process
    finally:
        stop_server(server)
    log = server.log.read_text()
    assert log.count("database unreachable (") == 1, log
    assert log.count("database reachable again") == 1, log
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log


def test_a_watchs_poller_says_the_outage_as_the_one_line_not_a_traceback(
    outage_plane: Plane, cluster: PostgresCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The agents' long-poll (brev.server.assignment_watch) polls every 0.5 s while anyone
    waits; with the database away its failed polls are the process's one outage line."""
    watch = assignment_watch.AssignmentWatch(outage_plane.app.state.sessions)
    loop = asyncio.new_event_loop()
    caplog.set_level(logging.INFO)
    try:
        with database_down(cluster):
            watch._register(assignment_watch._Waiter("no-such-node", 0, loop), 0)
            time.sleep(assignment_watch.POLL_S * 4)
    finally:
        watch.close()
        loop.close()
    assert _tracebacks(caplog) == []
    assert any("database unreachable (" in line for line in _database_lines(caplog))
