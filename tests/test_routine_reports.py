"""Routine reports (brev.server.services.routine_reports): written by one Core UPDATE per batch,
with the same outcome as the full path, on both backends; and the reports that must take the
full path do."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from brev import api
from brev.server.db.engine import make_engine, make_sessionmaker
from brev.server.db.models import ApiToken, GpuSample, Instance
from brev.server.ingest import ReportIngest, _Item
from brev.server.services import agents
from tests.conftest import Plane, make_plane
from tests.seed import add_instances


@pytest.fixture
def plane(database_url: str, brev_home: Path) -> Iterator[Plane]:
    plane = make_plane(database_url, brev_home)
    yield plane
    plane.close()


def _report(second: int, utilization: float = 0.0, **extra: Any) -> dict[str, Any]:
    gpus = [
        {"index": i, "uuid": f"GPU-{i}", "name": "H200", "utilization_gpu_pct": utilization}
        for i in range(2)
    ]
    return {"collected_at": f"2026-12-04T00:00:{second:02}Z", "gpus": gpus, **extra}


def _token(plane: Plane, name: str) -> str:
    answer = plane.http(plane.admin_token).post(
        f"/api/v1/orgs/default/instances/{name}/agent-token"
    )
    token: str = answer.json()["token"]
    return token


def _post(plane: Plane, token: str, seq: int, report: dict[str, Any]) -> dict[str, Any]:
    body = {"reports": [{"seq": seq, "report": report}], "interval_seconds": 7}
    answer = plane.http(token).post("/api/v1/agent/reports", json=body)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _row(plane: Plane, name: str) -> Instance:
    engine = make_engine(plane.settings.database_url)
    try:
        with Session(engine) as session:
            return session.scalars(select(Instance).where(Instance.name == name)).one()
    finally:
        engine.dispose()


def _samples(plane: Plane, name: str) -> int:
    engine = make_engine(plane.settings.database_url)
    try:
        with Session(engine) as session:
            instance_id = select(Instance.id).where(Instance.name == name).scalar_subquery()
            query = select(func.count()).where(GpuSample.instance_id == instance_id)
            return session.scalars(query).one()
    finally:
        engine.dispose()


def _full_path_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(*_: object) -> None:
        raise AssertionError("a routine report took the full path")

    monkeypatch.setattr(agents, "accept_reports", refused)


def test_a_routine_report_moves_bookkeeping_only_and_stores_its_samples(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    token = _token(plane, "gpu-a")
    _post(plane, token, 1, _report(1))  # the first: the instance becomes healthy (full path)
    first = _row(plane, "gpu-a")
    assert first.health == "healthy" and first.idle_since is not None

    _full_path_refused(monkeypatch)
    assert _post(plane, token, 2, _report(2))["accepted"] == 1
    second = _row(plane, "gpu-a")
    assert second.telemetry == _report(2) and second.last_report_seq == 2
    assert second.report_interval_seconds == 7
    assert isinstance(second.last_heartbeat_at, datetime)
    assert first.last_heartbeat_at is not None
    assert second.last_heartbeat_at > first.last_heartbeat_at
    assert second.idle_since == first.idle_since  # still idle since the first
    assert second.updated_at == first.updated_at  # bookkeeping: no change of the instance
    assert _samples(plane, "gpu-a") == 4  # two GPUs, two reports

    assert _post(plane, token, 3, _report(3, utilization=90.0))["accepted"] == 1
    assert _row(plane, "gpu-a").idle_since is None  # busy
    resent = _post(plane, token, 3, _report(3, utilization=90.0))
    assert (resent["accepted"], resent["last_seq"]) == (0, 3)
    assert _samples(plane, "gpu-a") == 6


def test_faults_recoveries_and_first_host_keys_take_the_full_path(plane: Plane) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    token = _token(plane, "gpu-a")
    _post(plane, token, 1, _report(1))
    one_gpu = {**_report(2), "gpus": _report(2)["gpus"][:1]}
    _post(plane, token, 2, one_gpu)
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
    _post(plane, token, 3, {**one_gpu, "host": {"ssh_host_keys": [key]}})
    engine = make_engine(plane.settings.database_url)
    try:
        with engine.begin() as connection:
            connection.execute(update(Instance).values(health="unhealthy"))
    finally:
        engine.dispose()
    _post(plane, token, 4, one_gpu)
    detail = plane.client(plane.admin_token, org="default").instance("gpu-a")
    assert [e.details["uuid"] for e in detail.events if e.action == "gpu.vanished"] == ["GPU-1"]
    assert [e.action for e in detail.events if e.action == "instance.healthy"] == [
        "instance.healthy"
    ]
    assert detail.health == "healthy"
    assert _row(plane, "gpu-a").host_keys == key


def test_one_instance_twice_in_a_batch_is_stored_once_per_seq(plane: Plane) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a", "gpu-b"])
    a, b = _token(plane, "gpu-a"), _token(plane, "gpu-b")
    _post(plane, a, 1, _report(1))
    _post(plane, b, 1, _report(1))

    loop = asyncio.new_event_loop()  # the items' answers go nowhere: _commit is called alone

    def item(token: str, seq: int) -> _Item:
        body = api.AgentReports(reports=[api.AgentReportIn(seq=seq, report=_report(seq))])
        return _Item(token, body, loop.create_future())

    engine = make_engine(plane.settings.database_url)
    try:
        ingest = ReportIngest(make_sessionmaker(engine))
        # One batch as the writer takes it (ingest's queue decides batches by timing).
        batch = [item(a, 2), item(b, 2), item(a, 3), item(a, 3)]
        answers = [answer for _, answer in ingest._commit(batch)]
    finally:
        engine.dispose()
        loop.close()
    accepted = [x for x in answers if isinstance(x, api.AgentReportsAccepted)]
    assert [(x.accepted, x.last_seq) for x in accepted] == [(1, 2), (1, 2), (1, 3), (0, 3)]
    assert _row(plane, "gpu-a").last_report_seq == 3
    assert (_samples(plane, "gpu-a"), _samples(plane, "gpu-b")) == (6, 4)


def test_a_batch_of_routine_reports_writes_each_instance_its_own_row(
    plane: Plane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One UPDATE for the batch (on PostgreSQL over a VALUES list): each row gets its own
    report, seq, pace and heartbeat, and idleness moves only where its GPUs became busy."""
    names = ["gpu-a", "gpu-b", "gpu-c"]
    add_instances(plane.settings.database_url, "default", "admin@localhost", names)
    tokens = [_token(plane, name) for name in names]
    for token in tokens:
        _post(plane, token, 1, _report(1))
    before = {name: _row(plane, name) for name in names}
    _full_path_refused(monkeypatch)

    loop = asyncio.new_event_loop()  # the items' answers go nowhere: _commit is called alone
    reports = {"gpu-a": _report(2), "gpu-b": _report(3, utilization=80.0), "gpu-c": _report(4)}
    seqs = {"gpu-a": 2, "gpu-b": 5, "gpu-c": 9}
    paces = {"gpu-a": 5.0, "gpu-b": 6.5, "gpu-c": 30.0}
    batch = [
        _Item(
            token,
            api.AgentReports(
                reports=[api.AgentReportIn(seq=seqs[name], report=reports[name])],
                interval_seconds=paces[name],
            ),
            loop.create_future(),
        )
        for name, token in zip(names, tokens, strict=True)
    ]
    engine = make_engine(plane.settings.database_url)
    try:
        answers = [answer for _, answer in ReportIngest(make_sessionmaker(engine))._commit(batch)]
    finally:
        engine.dispose()
        loop.close()
    assert answers == [api.AgentReportsAccepted(accepted=1, last_seq=seqs[n]) for n in names]
    for name in names:
        row = _row(plane, name)
        assert row.telemetry == reports[name], name
        assert (row.last_report_seq, row.report_interval_seconds) == (seqs[name], paces[name])
        previous = before[name].last_heartbeat_at
        assert row.last_heartbeat_at is not None and previous is not None
        assert row.last_heartbeat_at > previous, name
        assert _samples(plane, name) == 4, name
    assert _row(plane, "gpu-b").idle_since is None  # busy now
    assert _row(plane, "gpu-a").idle_since == before["gpu-a"].idle_since
    assert _row(plane, "gpu-c").idle_since == before["gpu-c"].idle_since


def test_an_agent_tokens_last_use_is_recorded(plane: Plane) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    token = _token(plane, "gpu-a")
    _post(plane, token, 1, _report(1))
    engine = make_engine(plane.settings.database_url)
    try:
        with Session(engine) as session:
            used = session.scalars(
                select(ApiToken.last_used_at).where(ApiToken.kind == "agent")
            ).one()
    finally:
        engine.dispose()
    assert used is not None
