"""Agents' reports take no admission slot (brev.server.admission): while more reports than the
plane admits requests wait for the report writer, a user's request is still answered."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx
import pytest

from brev.server.app import ADMITTED_REQUESTS
from brev.server.ingest import ReportIngest
from tests.conftest import Plane
from tests.seed import add_instances, agent_token

WAITING = ADMITTED_REQUESTS + 5


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reports_waiting_for_the_writer_leave_room_for_users(
    plane: Plane, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"gpu-{n}" for n in range(WAITING)]
    add_instances(database_url, "default", "admin@localhost", names)
    admin = plane.http(plane.admin_token)
    tokens = [agent_token(admin, name) for name in names]
    ingest: ReportIngest = plane.app.state.ingest
    release, queued = threading.Event(), []
    commit = ingest._commit

    def held_commit(batch: list[Any]) -> Any:  # a writer stuck on a slow database
        release.wait(timeout=30)
        return commit(batch)

    monkeypatch.setattr(ingest, "_commit", held_commit)
    submit = ingest.submit

    async def counted_submit(secret: str | None, body: Any) -> Any:
        queued.append(secret)
        return await submit(secret, body)

    monkeypatch.setattr(ingest, "submit", counted_submit)

    async def scenario() -> tuple[int, list[httpx.Response]]:
        transport = httpx.ASGITransport(app=plane.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://plane") as http:
            reports = [
                asyncio.create_task(
                    http.post(
                        "/api/v1/agent/reports",
                        json={"reports": [{"seq": 1, "report": {"gpus": []}}]},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                )
                for token in tokens
            ]
            for _ in range(500):  # every report inside, waiting for the writer
                if len(queued) == WAITING:
                    break
                await asyncio.sleep(0.01)
            assert len(queued) == WAITING, f"{len(queued)} of {WAITING} reports were let in"
            listed = await asyncio.wait_for(
                http.get(
                    "/api/v1/orgs/default/instances",
                    headers={"Authorization": f"Bearer {plane.admin_token}"},
                ),
                timeout=10,
            )
            release.set()
            return listed.status_code, await asyncio.gather(*reports)

    try:
        listed, answers = asyncio.run(scenario())
    finally:
        release.set()
    assert listed == 200
    assert [answer.status_code for answer in answers] == [200] * WAITING
    assert all(answer.json()["accepted"] == 1 for answer in answers)
