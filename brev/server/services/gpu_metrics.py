"""GPU metrics over time: a sample per GPU per agent report, kept an hour, then one-minute
aggregates, kept seven days, then gone. Bounded storage per instance, whatever its age."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from sqlalchemy import Table, delete, insert, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from brev import api
from brev.server.db.engine import transaction
from brev.server.db.models import GpuMinute, GpuSample, utcnow
from brev.server.services.instances import find
from brev.server.services.scope import OrgContext

if TYPE_CHECKING:
    import psycopg

RAW_RETENTION = timedelta(hours=1)
MINUTE_RETENTION = timedelta(days=7)
# What `series` returns when the caller gives no `since`: the raw hour.
DEFAULT_WINDOW = timedelta(hours=1)
# Bound parameters per IN (...): SQLite allows 32,766 at most, older builds 999.
_CHUNK = 500

T = TypeVar("T")


# -- ingest --------------------------------------------------------------------------------


def record(session: Session, instance_id: str, report: dict[str, Any]) -> int:
    """One sample per GPU of an accepted report; how many. Malformed GPUs are skipped: the
    report itself was accepted, and a missing figure must not cost the others."""
    at = _collected_at(report)
    rows = [
        (
            instance_id,
            gpu["index"],
            at,
            _number(gpu.get("utilization_gpu_pct")),
            _number(gpu.get("memory_used_mib")),
            _number(gpu.get("power_draw_w")),
            _number(gpu.get("temperature_c")),
        )
        for gpu in report.get("gpus") or []
        if isinstance(gpu, dict) and isinstance(gpu.get("index"), int)
    ]
    deferred = session.info.get(_DEFERRED)
    if isinstance(deferred, list):
        deferred.extend(rows)
    elif rows:
        # One executemany, not an ORM object per GPU: the ORM flushed eight single-row
        # INSERT ... RETURNING statements per report (PostgreSQL p99 at 100 reports/s: 106 ms).
        session.connection().execute(
            _INSERT, [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
        )
    return len(rows)


_DEFERRED = "brev.gpu_metrics.deferred_rows"
_COLUMNS = (
    "instance_id",
    "gpu_index",
    "at",
    "utilization_pct",
    "memory_used_mib",
    "power_w",
    "temperature_c",
)
_table = cast(Table, GpuSample.__table__)
_INSERT = insert(_table)
Sample = tuple[str, int, datetime, float | None, float | None, float | None, float | None]


@contextmanager
def deferred(session: Session) -> Iterator[None]:
    """Within it, `record` collects rows; at its end one statement writes them all (a batch
    of reports, brev.server.ingest)."""
    rows: list[Sample] = []
    session.info[_DEFERRED] = rows
    try:
        yield
    finally:
        del session.info[_DEFERRED]
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql":
        _copy(session, rows)
    else:
        _insert_sqlite(session, rows)


def _copy(session: Session, rows: list[Sample]) -> None:
    """The rows in one COPY, in the session's transaction. An executemany is a statement per
    row on psycopg (its pipeline): a third of the report writer's CPU at 64 reports a batch,
    a fifth at 8 (measured in-process; COPY brought it to 0.59 and 0.87 ms a report from 0.88
    and 1.09). Times are aware UTC already (_collected_at), what UTCDateTime would bind."""
    driver = cast("psycopg.Connection[Any]", session.connection().connection.dbapi_connection)
    statement = f"COPY {GpuSample.__tablename__} ({', '.join(_COLUMNS)}) FROM STDIN"
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


_NAMES, _PLACES = ", ".join(_COLUMNS), ", ".join("?" * len(_COLUMNS))
# The table's and columns' own names, no input: nothing to inject (S608).
_INSERT_SQLITE = f"INSERT INTO {GpuSample.__tablename__} ({_NAMES}) VALUES ({_PLACES})"  # noqa: S608


def _insert_sqlite(session: Session, rows: list[Sample]) -> None:
    """The rows as one executemany of the driver's own statement: Core's building and type
    processing of each row's parameters cost more than the insert. The report's one time is
    bound as the `at` column would bind it, once for the report's GPUs, not once for each."""
    connection = session.connection()
    bind_at = _table.c.at.type.bind_processor(connection.dialect)
    stored: dict[datetime, Any] = {}
    params = []
    for row in rows:
        instance_id, gpu_index, at, *figures = row
        if at not in stored:
            stored[at] = bind_at(at) if bind_at else at
        params.append((instance_id, gpu_index, stored[at], *figures))
    connection.exec_driver_sql(_INSERT_SQLITE, params)


def _collected_at(report: dict[str, Any]) -> datetime:
    """When the agent sampled (a replayed report after an outage is old), else now. Never in
    the future: a fast agent clock would otherwise keep its rows past their retention."""
    now = utcnow()
    text = report.get("collected_at")
    if not isinstance(text, str):
        return now
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        return now
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return min(at, now)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


# -- retention -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Compaction:
    samples_rolled: int
    minutes_written: int
    minutes_deleted: int


@dataclass
class _Sum:
    """A minute's figures; merges with a row of the same minute written before."""

    samples: int = 0
    util_sum: float = 0.0
    util_n: int = 0
    power_sum: float = 0.0
    power_n: int = 0
    memory_max: float | None = None
    temperature_max: float | None = None

    def add(
        self,
        util: float | None,
        memory: float | None,
        power: float | None,
        temperature: float | None,
        weight: int = 1,
    ) -> None:
        self.samples += weight
        if util is not None:
            self.util_sum += util * weight
            self.util_n += weight
        if power is not None:
            self.power_sum += power * weight
            self.power_n += weight
        self.memory_max = _max(self.memory_max, memory)
        self.temperature_max = _max(self.temperature_max, temperature)

    def write(self, row: GpuMinute) -> None:
        row.samples = self.samples
        row.utilization_pct = self.util_sum / self.util_n if self.util_n else None
        row.power_w = self.power_sum / self.power_n if self.power_n else None
        row.memory_used_mib = self.memory_max
        row.temperature_c = self.temperature_max


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def _minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def compact(sessions: sessionmaker[Session], now: datetime | None = None) -> Compaction:
    """Roll raw samples of whole minutes older than an hour into `gpu_minutes` and delete them,
    in one transaction, so a minute is never counted twice; drop minutes older than 7 days.

    A late sample (an agent replaying its buffer) of a minute rolled up before is merged into
    that minute, weighted by sample count. Rows are locked with SKIP LOCKED, so two planes
    compacting at once (PostgreSQL) never roll up the same sample."""
    now = now or utcnow()
    cutoff = _minute(now - RAW_RETENTION)
    with transaction(sessions) as session:
        samples = session.execute(
            select(
                GpuSample.id,
                GpuSample.instance_id,
                GpuSample.gpu_index,
                GpuSample.at,
                GpuSample.utilization_pct,
                GpuSample.memory_used_mib,
                GpuSample.power_w,
                GpuSample.temperature_c,
            )
            .where(GpuSample.at < cutoff)
            .with_for_update(skip_locked=True)
        ).all()
        sums: dict[tuple[str, datetime, int], _Sum] = {}
        for _, instance_id, gpu, at, util, memory, power, temperature in samples:
            key = (instance_id, _minute(at), gpu)
            sums.setdefault(key, _Sum()).add(util, memory, power, temperature)
        _merge_minutes(session, sums)
        for chunk in _chunks([s.id for s in samples]):
            session.execute(delete(GpuSample).where(GpuSample.id.in_(chunk)))
        expired = session.scalars(
            delete(GpuMinute)
            .where(GpuMinute.minute < now - MINUTE_RETENTION)
            .returning(GpuMinute.gpu_index)
        ).all()
        return Compaction(len(samples), len(sums), len(expired))


def _merge_minutes(session: Session, sums: dict[tuple[str, datetime, int], _Sum]) -> None:
    existing: dict[tuple[str, datetime, int], GpuMinute] = {}
    for chunk in _chunks(list(sums)):
        key = tuple_(GpuMinute.instance_id, GpuMinute.minute, GpuMinute.gpu_index)
        for row in session.scalars(select(GpuMinute).where(key.in_(chunk))):
            existing[(row.instance_id, row.minute, row.gpu_index)] = row
    for (instance_id, minute, gpu), total in sums.items():
        stored = existing.get((instance_id, minute, gpu))
        if stored is not None:
            # The stored averages carry their sample count as weight.
            total.add(
                stored.utilization_pct,
                stored.memory_used_mib,
                stored.power_w,
                stored.temperature_c,
                weight=stored.samples,
            )
        row = stored or GpuMinute(instance_id=instance_id, minute=minute, gpu_index=gpu)
        session.add(row)
        total.write(row)


def _chunks(items: Sequence[T]) -> Iterable[Sequence[T]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


# -- reading -------------------------------------------------------------------------------


def series(
    session: Session, ctx: OrgContext, name: str, since: datetime | None
) -> list[api.GpuSeries]:
    """Per GPU, its points since `since` (default: the last hour), oldest first: raw samples
    where they are still kept, minute aggregates before the first raw sample."""
    instance = find(session, ctx, name)
    if since is None:
        since = utcnow() - DEFAULT_WINDOW
    elif since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    points: dict[int, list[api.GpuPoint]] = {}
    raw = session.scalars(
        select(GpuSample)
        .where(GpuSample.instance_id == instance.id, GpuSample.at >= since)
        .order_by(GpuSample.at, GpuSample.id)
    ).all()
    first_raw: dict[int, datetime] = {}
    for sample in raw:
        first_raw.setdefault(sample.gpu_index, sample.at)
    minutes = session.scalars(
        select(GpuMinute)
        .where(GpuMinute.instance_id == instance.id, GpuMinute.minute >= _minute(since))
        .order_by(GpuMinute.minute)
    )
    for row in minutes:
        first = first_raw.get(row.gpu_index)
        if first is None or row.minute + timedelta(minutes=1) <= first:
            points.setdefault(row.gpu_index, []).append(_point(row, row.minute, "minute"))
    for sample in raw:
        points.setdefault(sample.gpu_index, []).append(_point(sample, sample.at, "raw"))
    return [api.GpuSeries(gpu_index=gpu, points=points[gpu]) for gpu in sorted(points)]


def _point(
    row: GpuSample | GpuMinute, at: datetime, resolution: Literal["raw", "minute"]
) -> api.GpuPoint:
    return api.GpuPoint(
        at=at,
        utilization_pct=row.utilization_pct,
        memory_used_mib=row.memory_used_mib,
        power_w=row.power_w,
        temperature_c=row.temperature_c,
        resolution=resolution,
    )
