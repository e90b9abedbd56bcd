"""GPU metrics: a sample per GPU per report, raw for an hour, minutes for seven days, then gone;
storage per instance stays bounded whatever the instance's age."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.orm import Session, sessionmaker

from brev.client import BrevClient
from brev.server.db.models import GpuMinute, GpuSample, Instance, utcnow
from brev.server.reconciler.retention import Retention
from brev.server.services import gpu_metrics
from tests.conftest import Plane
from tests.seed import add_instances

GPUS = 8


def _gpu(index: int, util: float) -> dict[str, Any]:
    return {
        "index": index,
        "uuid": f"GPU-{index}",
        "name": "H200",
        "utilization_gpu_pct": util,
        "memory_used_mib": 1000.0 * (index + 1),
        "power_draw_w": 300.0,
        "temperature_c": 50 + index,
    }


def _post(plane: Plane, token: str, seq: int, collected_at: str, gpus: int = 2) -> None:
    report = {
        "collected_at": collected_at,
        "source": "nvml",
        "gpus": [_gpu(i, 10.0 * seq) for i in range(gpus)],
        "host": {"ssh_sessions": 0},
    }
    body = {"reports": [{"seq": seq, "report": report}]}
    assert plane.http(token).post("/api/v1/agent/reports", json=body).status_code == 200


def _agent_token(plane: Plane, name: str) -> str:
    add_instances(plane.settings.database_url, "default", "admin@localhost", [name])
    response = plane.http(plane.admin_token).post(
        f"/api/v1/orgs/default/instances/{name}/agent-token"
    )
    token: str = response.json()["token"]
    return token


def test_reports_become_a_series_per_gpu(plane: Plane, admin: BrevClient) -> None:
    token = _agent_token(plane, "gpu-a")
    now = utcnow()
    _post(plane, token, 1, (now - timedelta(seconds=30)).isoformat())
    _post(plane, token, 2, (now - timedelta(seconds=20)).isoformat())
    _post(plane, token, 3, "not a time")  # taken as now
    _post(plane, token, 3, (now - timedelta(seconds=5)).isoformat())  # a re-send: no sample
    series = admin.instance_metrics("gpu-a")
    assert [s.gpu_index for s in series] == [0, 1]
    points = series[1].points
    assert [p.utilization_pct for p in points] == [10.0, 20.0, 30.0]
    assert {p.resolution for p in points} == {"raw"}
    assert points[0].memory_used_mib == 2000.0 and points[0].temperature_c == 51.0
    assert points[0].power_w == 300.0
    assert abs((points[0].at - (now - timedelta(seconds=30))).total_seconds()) < 1
    assert points[-1].at >= now
    recent = admin.instance_metrics("gpu-a", since=now - timedelta(seconds=25))
    assert [p.utilization_pct for p in recent[0].points] == [20.0, 30.0]


def test_a_report_from_the_future_is_taken_as_now(plane: Plane, admin: BrevClient) -> None:
    token = _agent_token(plane, "gpu-a")
    _post(plane, token, 1, (utcnow() + timedelta(days=1)).isoformat(), gpus=1)
    (point,) = admin.instance_metrics("gpu-a")[0].points
    assert point.at <= utcnow()


def _instance_id(sessions: sessionmaker[Session], name: str) -> str:
    with sessions() as session:
        return session.scalars(select(Instance.id).where(Instance.name == name)).one()


def _insert_day(sessions: sessionmaker[Session], instance_id: str, now: datetime) -> int:
    """A day of samples every 10 s for 8 GPUs, as if the reports had come in all along."""
    rows = [
        {
            "instance_id": instance_id,
            "gpu_index": gpu,
            "at": now - timedelta(seconds=10 * k),
            "utilization_pct": float(k % 100),
            "memory_used_mib": float(k % 7),
            "power_w": 200.0,
            "temperature_c": 40.0 + k % 3,
        }
        for k in range(6 * 60 * 24)
        for gpu in range(GPUS)
    ]
    with sessions() as session, session.begin():
        session.execute(insert(GpuSample), rows)
    return len(rows)


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with sessions() as session:
        raw = session.scalar(select(func.count()).select_from(GpuSample)) or 0
        minutes = session.scalar(select(func.count()).select_from(GpuMinute)) or 0
    return raw, minutes


def _sqlite_bytes(plane: Plane, sessions: sessionmaker[Session]) -> int | None:
    """Bytes the database's live pages take (SQLite keeps freed pages in the file)."""
    if not plane.settings.database_url.startswith("sqlite"):
        return None
    with sessions() as session:
        pages = session.scalar(text("PRAGMA page_count")) or 0
        free = session.scalar(text("PRAGMA freelist_count")) or 0
        size = session.scalar(text("PRAGMA page_size")) or 0
    return int((pages - free) * size)


def test_storage_per_instance_stays_bounded(plane: Plane, admin: BrevClient) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    sessions: sessionmaker[Session] = plane.app.state.sessions
    instance_id = _instance_id(sessions, "gpu-a")
    now = utcnow().replace(second=30, microsecond=0)
    empty = _sqlite_bytes(plane, sessions)
    inserted = _insert_day(sessions, instance_id, now)
    before = _sqlite_bytes(plane, sessions)

    result = gpu_metrics.compact(sessions, now=now)
    raw, minutes = _counts(sessions)
    after = _sqlite_bytes(plane, sessions)
    print(
        f"\n{inserted} raw rows ({before and empty and before - empty} bytes) -> "
        f"{raw} raw + {minutes} minute rows ({after and empty and after - empty} bytes)"
    )
    # raw: the hour and the current minute; minutes: the rest of the day, one row a GPU
    assert raw <= (360 + 6) * GPUS
    assert minutes == result.minutes_written == (24 * 60 - 60) * GPUS
    assert raw + result.samples_rolled == inserted
    with sessions() as session:
        one = session.get_one(
            GpuMinute, (instance_id, now.replace(second=0) - timedelta(hours=2), 0)
        )
        assert one.samples == 6 and one.power_w == 200.0

    # idempotent: a second pass changes nothing
    again = gpu_metrics.compact(sessions, now=now)
    assert again.samples_rolled == 0 and _counts(sessions) == (raw, minutes)

    # the API: minutes for older ranges, raw where kept, oldest first, no minute overlapping raw
    series = admin.instance_metrics("gpu-a", since=now - timedelta(hours=2))
    assert len(series) == GPUS
    points = series[0].points
    kinds = [p.resolution for p in points]
    assert kinds == sorted(kinds, key=["minute", "raw"].index)
    assert kinds.count("minute") == 60 and kinds.count("raw") == raw // GPUS
    assert [p.at for p in points] == sorted(p.at for p in points)

    # seven days on, nothing is left; a minute at most ever held 1440 x 7 rows a GPU
    gone = gpu_metrics.compact(sessions, now=now + timedelta(days=8))
    assert gone.minutes_deleted >= minutes and _counts(sessions) == (0, 0)


def test_a_late_sample_is_merged_into_its_rolled_up_minute(plane: Plane) -> None:
    add_instances(plane.settings.database_url, "default", "admin@localhost", ["gpu-a"])
    sessions: sessionmaker[Session] = plane.app.state.sessions
    instance_id = _instance_id(sessions, "gpu-a")
    minute = utcnow().replace(second=0, microsecond=0) - timedelta(hours=2)

    def sample(second: int, util: float) -> None:
        with sessions() as session, session.begin():
            session.add(
                GpuSample(
                    instance_id=instance_id,
                    gpu_index=0,
                    at=minute + timedelta(seconds=second),
                    utilization_pct=util,
                    memory_used_mib=float(util),
                )
            )

    sample(0, 10.0)
    sample(10, 20.0)
    gpu_metrics.compact(sessions)
    sample(20, 60.0)  # an agent replaying its buffer after an outage
    gpu_metrics.compact(sessions)
    with sessions() as session:
        row = session.get_one(GpuMinute, (instance_id, minute, 0))
        assert row.samples == 3 and row.utilization_pct == pytest.approx(30.0)
        assert row.memory_used_mib == 60.0 and row.power_w is None
    assert _counts(sessions) == (0, 1)


def test_the_reconciler_compacts_at_most_once_a_minute(plane: Plane) -> None:
    retention = Retention(plane.app.state.sessions)
    assert retention.maybe_compact() is not None
    assert retention.maybe_compact() is None


def test_metrics_of_a_deleted_instance_go_with_its_row(plane: Plane) -> None:
    token = _agent_token(plane, "gpu-a")
    _post(plane, token, 1, utcnow().isoformat())
    sessions: sessionmaker[Session] = plane.app.state.sessions
    with sessions() as session, session.begin():
        session.delete(session.get_one(Instance, _instance_id(sessions, "gpu-a")))
    assert _counts(sessions) == (0, 0)
