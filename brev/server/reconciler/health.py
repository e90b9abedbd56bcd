"""Health from heartbeats: an instance whose agent missed three reports in a row is unhealthy
until reports resume (brev.server.services.agents marks it healthy again); a node whose agent
never reported after its install was abandoned is forgotten."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brev.api import Health
from brev.server.db.engine import transaction
from brev.server.db.models import Instance, Node, utcnow
from brev.server.services import events, nodes

MISSED_REPORTS = 3


def mark_silent_instances(sessions: sessionmaker[Session]) -> int:
    """Mark healthy instances whose agent fell silent unhealthy; how many were marked."""
    now = utcnow()
    marked = 0
    with transaction(sessions) as session:
        # Three columns of every reporting instance, and whole rows only of the silent ones: a
        # row carries its last report (KiBs of JSON), and this runs every pass (with 1,000
        # instances, loading them all was a quarter of a replica's time under load).
        reporting = session.execute(
            select(Instance.id, Instance.last_heartbeat_at, Instance.report_interval_seconds).where(
                Instance.health == Health.HEALTHY,
                Instance.deleted_at.is_(None),
                Instance.last_heartbeat_at.is_not(None),
                Instance.report_interval_seconds.is_not(None),
            )
        ).all()
        for instance_id, last_heartbeat_at, interval_s in reporting:
            assert last_heartbeat_at is not None and interval_s is not None  # the query's where
            silence = now - last_heartbeat_at
            if silence <= timedelta(seconds=MISSED_REPORTS * interval_s):
                continue
            instance = session.get(Instance, instance_id, with_for_update=True)
            if (
                instance is None
                or instance.health != Health.HEALTHY
                or instance.last_heartbeat_at != last_heartbeat_at
            ):
                continue  # a report arrived meanwhile
            instance.health = Health.UNHEALTHY
            reason = f"no agent report for {silence.total_seconds():.0f} s"
            events.about_instance(session, instance, "instance.unhealthy", {"reason": reason})
            marked += 1
    return marked


# An install (`brev nodes add`, `brev register`) either sees the agent's first report within
# minutes or rolls itself back. A node still without a report after this long was left by a
# plane or CLI that died mid-install: it is forgotten, so its name and token do not linger.
ABANDONED_INSTALL = timedelta(minutes=15)


def forget_abandoned_installs(sessions: sessionmaker[Session]) -> int:
    cutoff = utcnow() - ABANDONED_INSTALL
    with transaction(sessions) as session:
        abandoned = list(
            session.scalars(
                select(Node.id).where(
                    Node.removed_at.is_(None),
                    Node.last_heartbeat_at.is_(None),
                    Node.created_at < cutoff,
                )
            )
        )
        for node_id in abandoned:
            nodes.forget(session, node_id)
    return len(abandoned)
