"""Two replicas marking the same silent fleet unhealthy: neither waits for the other.

Every replica marks silent agents on each pass. When a fleet falls silent at once (1,000 in
tests/test_load.py, 30 s after its load), each pass used to lock the silent rows one by one
in whatever order its scan gave: one replica's pass waited for the other's whole transaction,
with its heartbeat and claims held up behind it, and two passes could deadlock.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from brev import api
from brev.client import BrevClient
from brev.server.db.engine import make_engine
from brev.server.db.models import Instance, utcnow
from brev.server.reconciler.health import mark_silent_instances
from tests.conftest import Plane
from tests.seed import add_instances

pytestmark = pytest.mark.postgres

NAMES = [f"gpu-{n}" for n in range(5)]


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_pass_marks_the_silent_rows_it_can_lock_and_leaves_the_held_one_for_later(
    plane: Plane, admin: BrevClient, database_url: str
) -> None:
    add_instances(database_url, "default", "admin@localhost", NAMES)
    engine = make_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                update(Instance).values(
                    last_heartbeat_at=utcnow() - timedelta(seconds=60), report_interval_seconds=10
                )
            )
        # The other replica's pass (or a report being stored) holds one of them.
        other = engine.connect()
        other.execute(select(Instance.id).where(Instance.name == "gpu-2").with_for_update())
        counted: list[int] = []
        marking = threading.Thread(
            target=lambda: counted.append(mark_silent_instances(plane.app.state.sessions)),
            daemon=True,
        )
        marking.start()
        marking.join(timeout=10)
        blocked = marking.is_alive()
        other.rollback()
        other.close()
        marking.join(timeout=20)
    finally:
        engine.dispose()
    assert not blocked, "the pass waited for the row another transaction holds"
    assert counted == [len(NAMES) - 1]
    health = {i.name: i.health for i in admin.instances()}
    assert health == {
        n: api.Health.HEALTHY if n == "gpu-2" else api.Health.UNHEALTHY for n in NAMES
    }
    # Free again: the next pass marks it, once.
    assert mark_silent_instances(plane.app.state.sessions) == 1
    assert mark_silent_instances(plane.app.state.sessions) == 0
    assert {i.health for i in admin.instances()} == {api.Health.UNHEALTHY}
