"""The audit log: one row for every change a person or the plane makes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session

from brev import api
from brev.server.db.models import Event, Instance, User
from brev.server.services.scope import OrgContext


def record(
    session: Session,
    *,
    org_id: str | None,
    actor_id: str | None,
    action: str,
    object_type: str,
    object_id: str | None = None,
    object_name: str | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        Event(
            org_id=org_id,
            actor_id=actor_id,
            action=action,
            object_type=object_type,
            object_id=object_id,
            object_name=object_name,
            details=details or {},
        )
    )


def about_instance(
    session: Session,
    instance: Instance,
    action: str,
    details: dict[str, Any] | None = None,
    *,
    actor_id: str | None = None,
) -> None:
    """An event about one instance; `actor_id` None: the plane did it."""
    record(
        session,
        org_id=instance.org_id,
        actor_id=actor_id,
        action=action,
        object_type="instance",
        object_id=instance.id,
        object_name=instance.name,
        details=details,
    )


@dataclass(frozen=True)
class EventQuery:
    """The audit log's filters; None: any."""

    instance: str | None = None
    kind: str | None = None  # a prefix of the action
    actor: str | None = None  # an email, or PLANE_ACTOR
    before: int | None = None  # an event id: only older ones (paging)


PLANE_ACTOR = "plane"


def list_events(
    session: Session, ctx: OrgContext, limit: int, query: EventQuery | None = None
) -> list[api.Event]:
    query = query or EventQuery()
    conditions: list[ColumnElement[bool]] = []
    if query.instance is not None:
        conditions += [Event.object_type == "instance", Event.object_name == query.instance]
    if query.kind:
        conditions.append(Event.action.startswith(query.kind, autoescape=True))
    if query.actor == PLANE_ACTOR:
        conditions.append(Event.actor_id.is_(None))
    elif query.actor is not None:
        conditions.append(User.email == query.actor.lower())
    if query.before is not None:
        conditions.append(Event.id < query.before)
    return _newest_first(session, ctx, limit, *conditions)


def for_object(
    session: Session, ctx: OrgContext, object_id: str, limit: int = 200
) -> list[api.Event]:
    return _newest_first(session, ctx, limit, Event.object_id == object_id)


def _newest_first(
    session: Session, ctx: OrgContext, limit: int, *conditions: ColumnElement[bool]
) -> list[api.Event]:
    rows = session.execute(
        select(Event, User.email)
        .outerjoin(User, User.id == Event.actor_id)
        .where(Event.org_id == ctx.org.id, *conditions)
        .order_by(Event.id.desc())
        .limit(limit)
    ).all()
    return [
        api.Event(
            id=event.id,
            created_at=event.created_at,
            actor=email,
            action=event.action,
            object_type=event.object_type,
            object_name=event.object_name,
            details=event.details,
        )
        for event, email in rows
    ]
