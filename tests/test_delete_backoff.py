"""A delete's back-off starts afresh once the provider answers, as a converge's does: errors
before a terminate that went through do not lengthen the wait after the next one (2 s doubling
per failure in a run, up to 5 min: five throttled terminates made a later describe's first
error wait 64 s)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from brev.client import BrevClient
from brev.server.db.engine import make_engine
from brev.server.db.models import Instance, utcnow
from tests.conftest import Plane
from tests.moto import A100, MotoServer, live_machines
from tests.test_lifecycle import _due_now
from tests.test_provider_errors import _fail


def _wait_of(plane: Plane, name: str) -> timedelta:
    engine = make_engine(plane.settings.database_url)
    try:
        with engine.connect() as connection:
            due = connection.scalar(select(Instance.next_check_at).where(Instance.name == name))
    finally:
        engine.dispose()
    assert due is not None
    return due - utcnow()


def test_a_delete_that_got_through_backs_off_afresh(
    plane: Plane, aws_org: BrevClient, moto_server: MotoServer
) -> None:
    name = aws_org.create_instance(A100).name
    plane.settle()
    terminates = _fail(plane, aws_org, "TerminateInstances", "RequestLimitExceeded", 5, 503)
    aws_org.delete_instance(name)
    while aws_org.instance(name).status != "deleting":
        assert terminates["n"] <= 6, "the terminate never went through"
        _due_now(plane, name)
        plane.reconciler.run_once()
    _fail(plane, aws_org, "DescribeInstances", "RequestLimitExceeded", 1, 503)
    _due_now(plane, name)
    plane.reconciler.run_once()  # its look at the terminated machine is throttled
    assert _wait_of(plane, name) <= plane.reconciler._timing.backoff
    _due_now(plane, name)
    plane.settle()
    assert aws_org.instances() == []
    assert live_machines(moto_server) == []
