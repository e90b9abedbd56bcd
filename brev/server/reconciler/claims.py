"""Which instances are due, and the lease that keeps two workers (or replicas) off one row."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from brev.api import InstanceStatus as S
from brev.server.db.models import Instance, utcnow


def claim_due(session: Session, owner: str, lease: timedelta, limit: int) -> list[str]:
    """Lease up to `limit` due instances to `owner`; their ids.

    On PostgreSQL the candidate rows are locked with SKIP LOCKED while the lease is written, so
    replicas claiming at the same moment take different rows. SQLite ignores FOR UPDATE, and
    needs none: it runs one server process, whose claims happen on one thread.
    """
    now = utcnow()
    candidates = (
        select(Instance.id)
        .where(
            Instance.deleted_at.is_(None),
            # failed instances wait for a person, unless that person asked to delete them
            or_(Instance.status != S.FAILED, Instance.desired_status == S.DELETED),
            or_(Instance.next_check_at.is_(None), Instance.next_check_at <= now),
            or_(Instance.lease_expires_at.is_(None), Instance.lease_expires_at < now),
        )
        .order_by(Instance.next_check_at.is_not(None), Instance.next_check_at, Instance.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(candidates))
    if ids:
        session.execute(
            update(Instance)
            .where(Instance.id.in_(ids))
            .values(lease_owner=owner, lease_expires_at=now + lease)
        )
    return ids


def release(session: Session, instance: Instance, owner: str) -> None:
    if instance.lease_owner == owner:
        instance.lease_owner = None
        instance.lease_expires_at = None


def still_mine(session: Session, instance_id: str, owner: str, now: datetime) -> bool:
    """False when the lease ran out and another worker may have taken the row."""
    return (
        session.scalar(
            select(Instance.id).where(
                and_(
                    Instance.id == instance_id,
                    Instance.lease_owner == owner,
                    Instance.lease_expires_at > now,
                )
            )
        )
        is not None
    )
