"""A user's delete that arrives while a reconciler step is talking to the cloud is acted on at
the next pass, not when the step's own next check comes (a minute for a running machine), and
never undone by the step's write.

Seen in CI as tests/test_load.py's leftovers: under load a step's describe took seconds, a
user's delete landed inside it, and the step's "running, check again in a minute" write put
the delete off past the test's wait. The user's request is made from inside the provider call
(a botocore handler on moto's real EC2 API), where a slow cloud would let it land.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Connection, text, update

from brev.client import BrevClient
from brev.providers.aws import AwsProvider
from brev.server.db.engine import make_engine, make_sessionmaker
from brev.server.db.models import Instance, utcnow
from tests.conftest import Plane
from tests.moto import A100, MotoServer, ec2_error, live_machines


def _during(plane: Plane, client: BrevClient, operation: str, act: Callable[..., Any]) -> None:
    """`act` once, inside the next call of `operation` that the reconciler's AWS client makes
    (a botocore before-send handler); the call then goes on to moto, unless `act` answers it."""
    org_id = next(o.id for o in client.orgs() if o.name == client.org)
    provider = plane.reconciler.provider_for_org(org_id, "aws")
    assert isinstance(provider, AwsProvider)
    done = threading.Event()

    def handler(**kwargs: Any) -> Any:
        if done.is_set():
            return None
        done.set()
        return act(**kwargs)

    provider._client("us-east-1").meta.events.register(f"before-send.ec2.{operation}", handler)


def _starting(plane: Plane, client: BrevClient) -> str:
    """An instance whose machine moto made, one step before the plane calls it running."""
    name = client.create_instance(A100).name
    assert plane.reconciler.run_once() == 1
    assert client.instance(name).status == "starting"
    return name


def test_a_delete_during_the_step_that_finds_the_machine_running_is_done_at_once(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = _starting(plane, aws_org)

    def delete(**_: Any) -> None:
        aws_org.delete_instance(name)

    _during(plane, aws_org, "DescribeInstances", delete)
    assert plane.reconciler.run_once() == 1  # finds it running, as the delete lands

    # What the step found stands; its "look again in a minute" does not.
    instance = aws_org.instance(name)
    assert (instance.status, instance.desired_status) == ("running", "deleted")
    plane.settle()
    assert aws_org.instances() == []
    assert live_machines(moto_server) == []


def test_a_delete_during_a_start_that_finds_no_capacity_is_not_turned_into_a_stop(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(A100).name
    plane.settle()
    aws_org.stop_instance(name)
    plane.settle()
    assert aws_org.instance(name).status == "stopped"
    aws_org.start_instance(name)
    no_capacity = ec2_error("InsufficientInstanceCapacity", "no p4d.24xlarge now", 500)

    def delete_then_refuse(**kwargs: Any) -> Any:
        aws_org.delete_instance(name)
        return no_capacity(**kwargs)

    _during(plane, aws_org, "StartInstances", delete_then_refuse)
    assert plane.reconciler.run_once() == 1  # the start fails as the delete lands

    instance = aws_org.instance(name)
    assert instance.desired_status == "deleted", "the step's 'stay stopped' undid the delete"
    assert "start_failed" in {e.action.removeprefix("instance.") for e in instance.events}
    plane.settle()
    assert aws_org.instances() == []
    assert live_machines(moto_server) == []


@pytest.mark.postgres
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_delete_that_commits_while_the_step_writes_is_not_overwritten(
    plane: Plane, aws_org: BrevClient, database_url: str
) -> None:
    """The delete's transaction holds the row when the step comes to write, and commits only
    once the step waits for it: the step must then see the delete, not what it read before
    (PostgreSQL's row locks; SQLite has one writer at a time)."""
    name = _starting(plane, aws_org)
    engine = make_engine(database_url)
    request = engine.connect()
    try:

        def delete_not_yet_committed(**_: Any) -> None:
            # What DELETE .../instances/NAME writes (instance_actions._want), left open.
            request.execute(
                update(Instance)
                .where(Instance.name == name)
                .values(desired_status="deleted", next_check_at=None, updated_at=utcnow())
            )
            committer = threading.Thread(
                target=_commit_once_blocked, args=(request, database_url), daemon=True
            )
            committer.start()

        _during(plane, aws_org, "DescribeInstances", delete_not_yet_committed)
        assert plane.reconciler.run_once() == 1
    finally:
        request.close()
        engine.dispose()
    assert aws_org.instance(name).desired_status == "deleted"
    plane.settle()
    assert aws_org.instances() == []


def _commit_once_blocked(
    connection: Connection, database_url: str, timeout_s: float = 30.0
) -> None:
    """Commit `connection`'s transaction once another backend waits for a lock (the step's
    write, on the row), or after `timeout_s` (the test then fails on what it finds)."""
    watcher = make_engine(database_url)
    try:
        deadline = time.monotonic() + timeout_s
        with make_sessionmaker(watcher)() as session:
            while time.monotonic() < deadline:
                waiting = session.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                )
                session.rollback()
                if waiting:
                    break
                time.sleep(0.02)
    finally:
        watcher.dispose()
    connection.commit()
