"""Health from heartbeats: an instance whose agent missed three reports in a row is unhealthy
until reports resume (brev.server.services.agents marks it healthy again); a node whose agent
never reported after its install was abandoned is forgotten."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brev.api import Health
from brev.server.db.engine import transaction
from brev.server.db.models import Instance, Node, utcnow
from brev.server.services import events, nodes

MISSED_REPORTS = 3


# Silent instances locked per statement: under SQLite's limit on bound parameters.
LOCKED_AT_ONCE = 500


def mark_silent_instances(sessions: sessionmaker[Session]) -> int:
    """Mark healthy instances whose agent fell silent unhealthy; how many were marked.

    Every replica runs this each pass, and 1,000 agents fall silent together when a fleet's
    network goes: the silent rows are locked in one statement, in id order, skipping those
    another transaction holds (the other replica marking them, or a report being stored,
    which makes them alive). Row by row, in the order a scan happened to give, one replica's
    pass waited for the other's whole transaction (its heartbeat and its claims with it), and
    two could deadlock."""
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
        silent: dict[str, datetime] = {}
        for instance_id, last_heartbeat_at, interval_s in reporting:
            assert last_heartbeat_at is not None and interval_s is not None  # the query's where
            if now - last_heartbeat_at > timedelta(seconds=MISSED_REPORTS * interval_s):
                silent[instance_id] = last_heartbeat_at
        ids = sorted(silent)
        for start in range(0, len(ids), LOCKED_AT_ONCE):
            locked = session.scalars(
                select(Instance)
                .where(
                    Instance.id.in_(ids[start : start + LOCKED_AT_ONCE]),
                    Instance.health == Health.HEALTHY,
                )
                .order_by(Instance.id)
                .with_for_update(skip_locked=True)
            )
            for instance in locked:
                heard_at = silent[instance.id]
                if instance.last_heartbeat_at != heard_at:
                    continue  # a report arrived meanwhile
                instance.health = Health.UNHEALTHY
                reason = f"no agent report for {(now - heard_at).total_seconds():.0f} s"
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
