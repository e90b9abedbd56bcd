"""Autostop: an instance idle for its whole window (every GPU under 5 %, no SSH session, by
its agent's reports) is stopped, or deleted when asked, with the reason recorded."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from brev.api import InstanceStatus as S
from brev.server.db.engine import transaction
from brev.server.db.models import Instance, utcnow
from brev.server.services import events, node_instances


def stop_idle_instances(sessions: sessionmaker[Session]) -> int:
    now = utcnow()
    acted = 0
    with transaction(sessions) as session:
        idle = session.scalars(
            select(Instance).where(
                Instance.autostop_idle_seconds.is_not(None),
                Instance.idle_since.is_not(None),
                Instance.status == S.RUNNING,
                Instance.desired_status == S.RUNNING,
                Instance.deleted_at.is_(None),
            )
        )
        for instance in idle:
            assert instance.idle_since and instance.autostop_idle_seconds
            window = timedelta(seconds=instance.autostop_idle_seconds)
            if now - instance.idle_since < window:
                continue
            instance.desired_status = S.DELETED if instance.autostop_delete else S.STOPPED
            instance.next_check_at = None
            details = {
                "action": "delete" if instance.autostop_delete else "stop",
                "reason": f"idle for {window}: every GPU under 5 % and no SSH session",
            }
            events.about_instance(session, instance, "instance.autostop", details)
            if instance.node_id is not None:  # no reconciler step: release the GPUs now
                node_instances.apply_desired(session, instance)
            acted += 1
    return acted
