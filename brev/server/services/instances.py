"""Instances as the org sees them. Creating and driving them arrives with the providers."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import Select, literal, select
from sqlalchemy.orm import Session

from brev import api
from brev.server.db.models import Instance, Node, User
from brev.server.errors import NotFound
from brev.server.services import events, placements, run_tokens
from brev.server.services.scope import OrgContext

# `brev ls` reads every live instance of an org: selecting just the API's columns and
# validating all rows in one pydantic call takes a third of the time of loading ORM objects
# and converting them one by one (1,000 instances on SQLite: 14 ms against 24 ms).
_AS_API = TypeAdapter(list[api.Instance])


def _live(ctx: OrgContext) -> Select[Any]:
    columns = [
        getattr(Instance, field).label(field)
        for field in api.Instance.model_fields
        if field not in ("org", "created_by", "node")
    ]
    return (
        select(
            *columns,
            literal(ctx.org.name).label("org"),
            User.email.label("created_by"),
            Node.name.label("node"),
        )
        .join(User, User.id == Instance.created_by_id)
        .outerjoin(Node, Node.id == Instance.node_id)
        .where(*run_tokens.visible(ctx), Instance.deleted_at.is_(None))
    )


def list_instances(session: Session, ctx: OrgContext) -> list[api.Instance]:
    rows = session.execute(_live(ctx).order_by(Instance.created_at, Instance.name)).mappings()
    return _AS_API.validate_python(list(rows))


def find(
    session: Session, ctx: OrgContext, name: str, *, include_deleted: bool = False
) -> Instance:
    """The org's instance called `name` (the newest, when deleted ones count); NotFound, also
    for one the caller may not see (another token's, for a run token)."""
    query = select(Instance).where(*run_tokens.visible(ctx), Instance.name == name)
    if not include_deleted:
        query = query.where(Instance.deleted_at.is_(None))
    row = session.scalars(query.order_by(Instance.created_at.desc()).limit(1)).first()
    if row is None:
        raise NotFound(f"instance '{name}' not found in org '{ctx.org.name}'")
    return row


def get_detail(
    session: Session, ctx: OrgContext, name: str, *, include_deleted: bool = False
) -> api.InstanceDetail:
    """Everything `brev show` prints: the instance, its plan, its public address, its events."""
    instance = find(session, ctx, name, include_deleted=include_deleted)
    creator = session.get_one(User, instance.created_by_id)
    history = events.for_object(session, ctx, instance.id)
    return api.InstanceDetail(
        **{field: getattr(instance, field) for field in _DETAIL_FIELDS},
        org=ctx.org.name,
        created_by=creator.email,
        provider_ref=instance.provider_ref,
        public_ip=instance.ssh_host,
        plan=list(placements.parse_plan(instance.plan)),
        events=history,
        node=session.get_one(Node, instance.node_id).name if instance.node_id else None,
    )


_DETAIL_FIELDS = [
    field
    for field in api.InstanceDetail.model_fields
    if field not in ("org", "created_by", "provider_ref", "public_ip", "plan", "events", "node")
]
