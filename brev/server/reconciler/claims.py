"""Which instances are due, and the lease that keeps two workers (or replicas) off one row."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, or_, select, true, update
from sqlalchemy.orm import Session

from brev.api import InstanceStatus as S
from brev.server.db.models import Instance, utcnow
from brev.server.reconciler import replicas


class LeaseLost(Exception):
    """The row's lease ran out and another worker took it: this step must not write."""


# A replica that has not heartbeaten for this long is taken for dead: its leases are free.
DEAD_AFTER = timedelta(seconds=10)


def _lease_free(now: datetime, dead_after: timedelta) -> ColumnElement[bool]:
    return or_(
        Instance.lease_expires_at.is_(None),
        Instance.lease_expires_at < now,
        replicas.silent_owner(now - dead_after),
    )


def claim_due(
    session: Session,
    owner: str,
    lease: timedelta,
    limit: int,
    busy: Collection[str] = (),
    dead_after: timedelta = DEAD_AFTER,
) -> list[str]:
    """Lease up to `limit` due instances to `owner`; the ids it won. `busy`: rows this owner is
    stepping right now, never claimed twice even if their lease ran out. A lease is free once
    it runs out, or once its owner stopped heartbeating `dead_after` ago (replicas.py).

    The claim is the conditional UPDATE (lease still free), so two claimers can never both win
    a row, on any backend; the ids are read back afterwards. On PostgreSQL the candidates are
    also locked with SKIP LOCKED, so replicas claiming at the same moment pick different rows
    instead of contending for the same ones.
    """
    now = utcnow()
    candidates = (
        select(Instance.id)
        .where(
            Instance.deleted_at.is_(None),
            # instances on registered nodes change in the request (services.node_instances)
            Instance.node_id.is_(None),
            # failed instances wait for a person, unless that person asked to delete them
            or_(Instance.status != S.FAILED, Instance.desired_status == S.DELETED),
            or_(Instance.next_check_at.is_(None), Instance.next_check_at <= now),
            _lease_free(now, dead_after),
            Instance.id.not_in(busy) if busy else true(),
        )
        # Longest-waiting first: a new row (no check time yet) queues behind rows due since
        # before it was made, so a stream of creates cannot starve the polls of older ones.
        .order_by(func.coalesce(Instance.next_check_at, Instance.created_at), Instance.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list(session.scalars(candidates))
    if not ids:
        return []
    expires = now + lease
    session.execute(
        update(Instance)
        .where(Instance.id.in_(ids), _lease_free(now, dead_after))
        .values(lease_owner=owner, lease_expires_at=expires)
    )
    won = select(Instance.id).where(
        Instance.id.in_(ids), Instance.lease_owner == owner, Instance.lease_expires_at == expires
    )
    return list(session.scalars(won))


def extend(session: Session, ids: Collection[str], owner: str, lease: timedelta) -> None:
    """Keep the leases of steps still in progress (a provider call can outlast a lease)."""
    if ids:
        session.execute(
            update(Instance)
            .where(Instance.id.in_(list(ids)), Instance.lease_owner == owner)
            .values(lease_expires_at=utcnow() + lease)
        )


def renew(instance: Instance, owner: str, lease: timedelta) -> None:
    """Before a step writes: still ours? Then the lease runs again from now."""
    if instance.lease_owner != owner:
        raise LeaseLost(instance.id)
    instance.lease_expires_at = utcnow() + lease


def release(instance: Instance, owner: str) -> None:
    if instance.lease_owner == owner:
        instance.lease_owner = None
        instance.lease_expires_at = None
