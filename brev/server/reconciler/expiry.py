"""TTLs and run leases: an instance past its `expires_at`, or whose `brev run` stopped renewing
its lease, is deleted, with the reason recorded. The next reconcile pass (a cloud) or this
one (a node) does the deleting."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, sessionmaker

from brev.api import InstanceStatus as S
from brev.duration import format_duration_exact
from brev.server.db.engine import transaction
from brev.server.db.models import Instance, utcnow
from brev.server.services import events, node_instances


def delete_expired_instances(sessions: sessionmaker[Session]) -> int:
    """Mark every live instance past its TTL or lease for deletion; how many it marked."""
    now = utcnow()
    acted = 0
    with transaction(sessions) as session:
        expired = session.scalars(
            select(Instance)
            .where(
                Instance.deleted_at.is_(None),
                Instance.desired_status != S.DELETED,
                or_(Instance.expires_at <= now, Instance.run_lease_until <= now),
            )
            # On PostgreSQL: a row a request is writing (a renewal) waits for the next pass.
            .with_for_update(skip_locked=True)
        )
        for instance in expired:
            action, reason = _why(instance, now)
            instance.desired_status = S.DELETED
            instance.next_check_at = None  # the reconciler deletes it at its next pass
            instance.updated_at = now
            events.about_instance(session, instance, action, {"reason": reason})
            if instance.node_id is not None:  # no reconciler step: release the GPUs now
                node_instances.apply_desired(session, instance)
            acted += 1
    return acted


def _why(instance: Instance, now: datetime) -> tuple[str, str]:
    """The event of whichever ran out first: the TTL or the lease."""
    ttl_end = instance.expires_at if instance.expires_at and instance.expires_at <= now else None
    lease_end = instance.run_lease_until
    if lease_end is not None and lease_end <= now and (ttl_end is None or lease_end < ttl_end):
        return (
            "instance.lease_lapsed",
            f"the run's lease lapsed: no renewal from `brev run` for "
            f"{instance.run_lease_seconds} s",
        )
    assert ttl_end is not None
    lived = format_duration_exact((ttl_end - instance.created_at).total_seconds())
    return "instance.ttl_expired", f"TTL of {lived} reached"
