"""The dashboard's live updates: the SSE stream of fleet versions, fed from the database."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import update

from brev.server import fleet_watch
from brev.server.db.engine import make_engine, make_sessionmaker, transaction
from brev.server.db.models import Instance, Node, utcnow
from tests.conftest import LiveServer, Plane, start_server, stop_server
from tests.seed import add_instances

API = "/api/v1"


def _org_id(plane: Plane) -> str:
    return plane.client(plane.admin_token).orgs()[0].id


def test_a_stream_says_the_version_then_keeps_alive_then_each_change(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_watch, "POLL_S", 0.05)
    monkeypatch.setattr(fleet_watch, "KEEPALIVE_S", 0.3)
    database = plane.settings.database_url
    add_instances(database, "default", "admin@localhost", ["one"])
    watch = fleet_watch.FleetWatch(plane.app.state.sessions)
    org_id = _org_id(plane)

    async def read() -> list[bytes]:
        chunks: list[bytes] = []
        stream = watch.stream(org_id)
        chunks.append(await anext(stream))  # the version now
        chunks.append(await anext(stream))  # nothing changed: a keepalive
        with plane.app.state.sessions() as session, session.begin():
            session.execute(update(Node).values(price_per_hour=1.0))  # no node: no change
        add_instances(database, "default", "admin@localhost", ["two"])
        chunks.append(await asyncio.wait_for(anext(stream), 5))
        watch.close()
        chunks += [chunk async for chunk in stream]  # ends at once
        return chunks

    first, keepalive, changed, *rest = asyncio.run(read())
    assert first.startswith(b'retry: 1000\nevent: fleet\ndata: {"version": ')
    assert keepalive == b": keepalive\n\n"
    assert changed.startswith(b"event: fleet\ndata: ")
    assert changed.split(b"data: ")[1] != first.split(b"data: ")[1]
    assert rest == []


def test_agent_reports_are_readings_said_at_most_every_readings_s(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fleet_watch, "POLL_S", 0.05)
    monkeypatch.setattr(fleet_watch, "READINGS_S", 0.5)
    monkeypatch.setattr(fleet_watch, "KEEPALIVE_S", 5.0)
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["one"])
    http = plane.http(plane.admin_token)
    token = http.post(f"{API}/orgs/default/instances/one/agent-token").json()["token"]
    agent = plane.http(token)
    watch = fleet_watch.FleetWatch(plane.app.state.sessions)
    org_id = _org_id(plane)

    async def read() -> tuple[list[bytes], float]:
        stream = watch.stream(org_id)
        chunks = [await anext(stream)]
        started = time.monotonic()
        for seq in range(1, 6):  # a report every 0.1 s: readings, never a fleet change
            report = {"reports": [{"seq": seq, "report": {"gpus": [], "host": {}}}]}
            assert agent.post(f"{API}/agent/reports", json=report).status_code == 200
            await asyncio.sleep(0.1)
        chunks.append(await asyncio.wait_for(anext(stream), 5))
        said = time.monotonic() - started
        watch.close()
        chunks += [chunk async for chunk in stream]
        return chunks, said

    (first, readings, *rest), said = asyncio.run(read())
    assert first.startswith(b"retry: 1000\nevent: fleet\n")
    assert readings.startswith(b"event: readings\ndata: ")  # and no fleet event before it
    assert said < 2.0
    assert rest == []


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server(
        tmp_path_factory.mktemp("watch") / "home", env_extra={"BREV_RECONCILE": "0"}
    )
    yield live
    stop_server(live)


def _events(response: httpx.Response, found: list[tuple[float, str]]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the test closed the stream
        for line in response.iter_lines():
            if line.startswith("data: "):
                found.append((time.monotonic(), line))


def test_a_change_by_another_process_reaches_an_open_stream_within_2_s(
    server: LiveServer,
) -> None:
    database = f"sqlite:///{server.home / 'brev.db'}"
    add_instances(database, "default", "admin@localhost", ["before"])
    found: list[tuple[float, str]] = []
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    with (
        httpx.Client(base_url=server.url, headers=headers, timeout=10) as http,
        http.stream("GET", f"{API}/orgs/default/watch") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = threading.Thread(target=_events, args=(response, found), daemon=True)
        reader.start()
        deadline = time.monotonic() + 5
        while not found and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(found) == 1
        # This test process is the "other replica": it writes the database directly.
        engine = make_engine(database)
        with transaction(make_sessionmaker(engine)) as session:
            session.execute(update(Instance).values(status="stopping", updated_at=utcnow()))
        engine.dispose()
        changed_at = time.monotonic()
        while len(found) < 2 and time.monotonic() < changed_at + 5:
            time.sleep(0.02)
    assert len(found) == 2, found
    assert found[1][0] - changed_at < 2.0
    assert found[1][1] != found[0][1]


def test_the_stream_takes_the_session_cookie_and_open_streams_leave_room_for_requests(
    server: LiveServer,
) -> None:
    signed_in = httpx.post(f"{server.url}{API}/web/sessions", json={"token": server.admin_token})
    cookie = signed_in.cookies["brev_session"]
    streams: list[httpx.Response] = []
    clients: list[httpx.Client] = []
    try:
        # More open pages than the admission limit (20) admits requests at once.
        for _ in range(25):
            browser = httpx.Client(
                base_url=server.url, cookies={"brev_session": cookie}, timeout=10
            )
            clients.append(browser)
            response = browser.send(
                browser.build_request("GET", f"{API}/orgs/default/watch"), stream=True
            )
            assert response.status_code == 200
            streams.append(response)
        started = time.monotonic()
        answer = httpx.get(
            f"{server.url}{API}/whoami",
            headers={"Authorization": f"Bearer {server.admin_token}"},
            timeout=5,
        )
        assert answer.status_code == 200
        assert time.monotonic() - started < 2.0
    finally:
        for response in streams:
            response.close()
        for browser in clients:
            browser.close()
    assert httpx.get(f"{server.url}{API}/orgs/default/watch").status_code == 401


def test_a_stopping_server_ends_its_streams(tmp_path: Path) -> None:
    live = start_server(tmp_path / "home", env_extra={"BREV_RECONCILE": "0"})
    headers = {"Authorization": f"Bearer {live.admin_token}"}
    with (
        httpx.Client(base_url=live.url, headers=headers, timeout=10) as http,
        http.stream("GET", f"{API}/orgs/default/watch") as response,
    ):
        assert response.status_code == 200
        started = time.monotonic()
        live.process.terminate()
        # uvicorn re-raises the signal once it has shut down: -15 after a clean stop.
        assert live.process.wait(timeout=8) in (0, -15)
    assert time.monotonic() - started < 8
    assert "Application shutdown complete" in live.log.read_text()
