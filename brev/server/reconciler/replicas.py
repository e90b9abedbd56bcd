"""Replicas' heartbeats, so that fail-over takes seconds, not a lease.

Every replica (a server's reconciler) writes `replicas.heartbeat_at` on each pass. A lease whose
owner has not heartbeaten for `dead_after` is free at once (claims.claim_due): a SIGKILLed
replica's rows move to a live one within seconds instead of the lease's two minutes. A replica
keeps its id across restarts (the server's BREV_REPLICA_ID; by default host and port), and a
restarted one takes back its own rows at start: nothing of its earlier life is still running.

An owner with no replica row (a reconciler of an older release) keeps its lease until the lease
runs out, as before.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, CursorResult, Update, delete, select, update
from sqlalchemy.orm import Session

from brev.server.db.models import Instance, Replica, utcnow

log = logging.getLogger("brev.reconciler")

# A replica not seen for this long is gone for good: its row is removed (its leases are long
# free by then).
FORGET_AFTER = timedelta(days=1)


def join(session: Session, replica_id: str) -> int:
    """A replica starts: its heartbeat row, and its leases from an earlier life released.
    How many rows it took back."""
    now = utcnow()
    row = session.get(Replica, replica_id)
    if row is None:
        session.add(Replica(id=replica_id, started_at=now, heartbeat_at=now))
    else:
        row.started_at = row.heartbeat_at = now
    taken_back = _changed(
        session,
        update(Instance)
        .where(Instance.lease_owner == replica_id)
        .values(lease_owner=None, lease_expires_at=None),
    )
    session.execute(delete(Replica).where(Replica.heartbeat_at < now - FORGET_AFTER))
    if taken_back:
        log.info("replica %s restarted: took back %d of its rows", replica_id, taken_back)
    return taken_back


def beat(session: Session, replica_id: str) -> None:
    now = utcnow()
    if not _changed(
        session, update(Replica).where(Replica.id == replica_id).values(heartbeat_at=now)
    ):
        # removed meanwhile (an operator, or a day of silence): there again
        session.add(Replica(id=replica_id, started_at=now, heartbeat_at=now))


def leave(session: Session, replica_id: str) -> None:
    """A replica stops cleanly: its row goes, so nothing waits on it."""
    session.execute(delete(Replica).where(Replica.id == replica_id))


def _changed(session: Session, statement: Update) -> int:
    result = session.execute(statement)
    assert isinstance(result, CursorResult)  # what an UPDATE gives
    return result.rowcount


def silent_owner(dead_before: datetime) -> ColumnElement[bool]:
    """The lease's owner is a replica that stopped heartbeating before `dead_before`."""
    silent = select(Replica.id).where(Replica.heartbeat_at < dead_before)
    return Instance.lease_owner.in_(silent)
