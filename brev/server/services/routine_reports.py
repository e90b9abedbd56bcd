"""Routine reports, written without the ORM: most of what 1,000 agents send says only "still
here", with new readings. Such a report changes the instance's bookkeeping alone (its
telemetry, last seq, pace, heartbeat and idleness: INSTANCE_BOOKKEEPING, which moves no
`updated_at`), so a batch's routine reports become one UPDATE of those columns, from rows read
with Core. The ORM's unit of work for the same changes was half of the report writer's CPU
(in-process, batches of 8 on PostgreSQL: 1.05 ms a report with it, 0.49 without).

Anything else goes through brev.server.services.agents.accept_reports as before: a report
that records a fault, a recovery (unhealthy to healthy), the first host keys to pin, a
booting machine's first sign of life, an instance that is gone, an instance on a node, and an
instance reported twice in one batch (so that the two paths never hold two views of one row).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import Dialect, Table, bindparam, update
from sqlalchemy.orm import Session

from brev import api
from brev.server.db.engine import json_text
from brev.server.db.models import Instance, utcnow
from brev.server.services import gpu_metrics, report_seq
from brev.server.services.agents import fault_events, idle_since, reported_host_keys

_table = cast(Table, Instance.__table__)


class InstanceRow(NamedTuple):
    """What deciding and writing a routine report reads of its instance: the columns of
    INSTANCE_COLUMNS, in that order. Read with the batch's tokens and locked until the commit
    (brev.server.ingest)."""

    id: str
    status: str
    health: str
    node_id: str | None
    deleted_at: datetime | None
    telemetry: dict[str, Any]
    last_report_seq: int
    idle_since: datetime | None
    host_keys: str | None


INSTANCE_COLUMNS = tuple(_table.c[name] for name in InstanceRow._fields)
# The parameters of _WRITE and the columns they set (the first, the row's id, picks the row);
# on PostgreSQL also the VALUES list's columns, in this order.
_WRITTEN = {
    "row_id": _table.c.id,
    "new_telemetry": _table.c.telemetry,
    "new_seq": _table.c.last_report_seq,
    "new_interval": _table.c.report_interval_seconds,
    "new_heartbeat": _table.c.last_heartbeat_at,
    "new_idle_since": _table.c.idle_since,
}
_WRITE = (
    update(_table)
    .where(_table.c.id == bindparam("row_id"))
    .values({c.name: bindparam(name) for name, c in _WRITTEN.items() if name != "row_id"})
)


@dataclass
class RoutineBatch:
    """One batch's instance rows (locked) and the routine writes decided so far."""

    rows: dict[str, InstanceRow]
    repeated: set[str]
    writes: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def of(cls, rows: dict[str, InstanceRow], instance_ids: Sequence[str]) -> RoutineBatch:
        """The batch of the reports of `instance_ids` (an instance twice when two requests of
        the batch report it), from their instances' locked rows."""
        repeated = {key for key, count in Counter(instance_ids).items() if count > 1}
        return cls(rows, repeated)

    def accept(
        self, session: Session, instance_id: str, body: api.AgentReports
    ) -> api.AgentReportsAccepted | None:
        """The answer, when the reports are routine (their write joins the batch's UPDATE and
        their GPU samples the batch's COPY); None when accept_reports must take them."""
        row = self.rows.get(instance_id)
        if row is None or instance_id in self.repeated or not _plain_instance(row):
            return None
        fresh = report_seq.unseen(body.reports, row.last_report_seq)
        if not fresh:
            return api.AgentReportsAccepted(accepted=0, last_seq=row.last_report_seq)
        before = row.telemetry
        for item in fresh:
            if fault_events(before, item.report):
                return None
            before = item.report
        newest = body.reports[-1].report  # accept_reports' choice: the request's last
        if not row.host_keys and reported_host_keys(newest):
            return None  # the first keys to pin
        for item in fresh:
            gpu_metrics.record(session, instance_id, item.report)
        self.writes.append(
            {
                "row_id": instance_id,
                "new_telemetry": fresh[-1].report,
                "new_seq": fresh[-1].seq,
                "new_interval": body.interval_seconds,
                "new_heartbeat": utcnow(),
                "new_idle_since": idle_since(row.idle_since, newest),
            }
        )
        return api.AgentReportsAccepted(accepted=len(fresh), last_seq=fresh[-1].seq)

    def write(self, session: Session) -> None:
        """The routine reports' one UPDATE, in the batch's transaction."""
        if not self.writes:
            return
        connection = session.connection()
        if connection.dialect.name != "postgresql":
            # An executemany of Core's statement (past the ORM: its bulk-by-key mode wants no
            # WHERE).
            connection.execute(_WRITE, self.writes)
            return
        # One statement over a VALUES list: psycopg runs an executemany as a pipeline of one
        # statement a row, whose Python side cost more than the write (in-process, 8 reports
        # a batch: 0.67-0.69 ms of CPU a report with it, 0.62 with this). The rows are locked
        # already (brev.server.ingest), and the times aware UTC, what UTCDateTime would bind.
        parameters = tuple(
            json_text(write[name]) if name == "new_telemetry" else write[name]
            for write in self.writes
            for name in _WRITTEN
        )
        statement = _postgresql_write(connection.dialect, len(self.writes))
        connection.exec_driver_sql(statement, parameters)


@functools.cache
def _postgresql_write(dialect: Dialect, rows: int) -> str:
    """_WRITE for `rows` rows as one UPDATE ... FROM (VALUES ...) (psycopg's placeholders),
    each value cast to its column's type. Built from the table's own names (no input), once
    for each batch size (at most brev.server.ingest.MAX_BATCH)."""
    one = ", ".join(f"%s::{column.type.compile(dialect)}" for column in _WRITTEN.values())
    names = ", ".join(_WRITTEN)
    changes = ", ".join(
        f"{column.name} = v.{name}" for name, column in _WRITTEN.items() if name != "row_id"
    )
    rows_sql = ", ".join([f"({one})"] * rows)
    return (
        f"UPDATE {_table.name} SET {changes} FROM (VALUES {rows_sql}) AS v({names}) "  # noqa: S608
        f"WHERE {_table.name}.{_table.c.id.name} = v.row_id"
    )


def _plain_instance(row: InstanceRow) -> bool:
    """An instance whose routine report changes nothing but bookkeeping: not gone, not on a
    node, not booting (the first report makes it running), healthy already (else it becomes so)."""
    return (
        row.deleted_at is None
        and row.node_id is None
        and row.status != api.InstanceStatus.STARTING
        and row.health == api.Health.HEALTHY
    )
