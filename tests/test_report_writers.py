"""On PostgreSQL the plane writes reports with two writers (brev.server.ingest.WRITERS): a batch
that waits (on a row another transaction holds, on a slow commit) does not hold up the
reports of other agents."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import Plane, make_plane
from tests.databases import PostgresDatabases
from tests.seed import add_instances

pytestmark = pytest.mark.postgres


@pytest.fixture
def plane(postgres_databases: PostgresDatabases, brev_home: Path) -> Iterator[Plane]:
    plane = make_plane(postgres_databases.fresh(), brev_home)
    yield plane
    plane.close()


def _token(plane: Plane, name: str) -> str:
    admin = plane.http(plane.admin_token)
    token: str = admin.post(f"/api/v1/orgs/default/instances/{name}/agent-token").json()["token"]
    return token


def _report(plane: Plane, token: str, seq: int) -> int:
    body = {"reports": [{"seq": seq, "report": {"gpus": []}}]}
    status: int = plane.http(token).post("/api/v1/agent/reports", json=body).status_code
    return status


def test_a_batch_waiting_on_a_locked_row_does_not_hold_up_other_agents(plane: Plane) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a", "gpu-b"])
    a, b = _token(plane, "gpu-a"), _token(plane, "gpu-b")
    assert (_report(plane, a, 1), _report(plane, b, 1)) == (200, 200)

    holder = create_engine(plane.settings.database_url)
    try:
        with holder.connect() as connection:
            # What a reconciler step's write or a silent-agent pass does for a moment.
            connection.execute(text("SELECT id FROM instances WHERE name = 'gpu-a' FOR UPDATE"))
            blocked: list[int] = []
            waiting = threading.Thread(target=lambda: blocked.append(_report(plane, a, 2)))
            waiting.start()
            time.sleep(0.5)  # its batch has reached the lock
            assert blocked == []
            other: list[int] = []
            reporting = threading.Thread(target=lambda: other.append(_report(plane, b, 2)))
            reporting.start()
            reporting.join(timeout=5)
            stored_meanwhile = list(other)
            assert blocked == []  # still waiting, on its row
            connection.rollback()
        waiting.join(timeout=10)
        reporting.join(timeout=10)
    finally:
        holder.dispose()
    assert stored_meanwhile == [200], "another agent's report waited for the locked batch"
    assert blocked == [200]
