"""Instances as the org sees them. Creating and driving them arrives with the providers."""

from __future__ import annotations

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from brev import api
from brev.server.db.models import Instance, User
from brev.server.errors import NotFound
from brev.server.services.scope import OrgContext


def _live(ctx: OrgContext) -> Select[Instance, str]:
    return (
        select(Instance, User.email)
        .join(User, User.id == Instance.created_by_id)
        .where(Instance.org_id == ctx.org.id, Instance.deleted_at.is_(None))
    )


def list_instances(session: Session, ctx: OrgContext) -> list[api.Instance]:
    rows = session.execute(_live(ctx).order_by(Instance.created_at, Instance.name)).all()
    return [to_api(instance, ctx.org.name, email) for instance, email in rows]


def get_instance(session: Session, ctx: OrgContext, name: str) -> api.Instance:
    row = session.execute(_live(ctx).where(Instance.name == name)).one_or_none()
    if row is None:
        raise NotFound(f"instance '{name}' not found in org '{ctx.org.name}'")
    return to_api(row[0], ctx.org.name, row[1])


def to_api(instance: Instance, org_name: str, creator_email: str) -> api.Instance:
    return api.Instance(
        id=instance.id,
        name=instance.name,
        org=org_name,
        status=api.InstanceStatus(instance.status),
        health=api.Health(instance.health),
        status_reason=instance.status_reason,
        gpu_spec=instance.gpu_spec,
        gpu_model=instance.gpu_model,
        gpu_count=instance.gpu_count,
        provider=instance.provider,
        region=instance.region,
        instance_type=instance.instance_type,
        price_per_hour=instance.price_per_hour,
        created_by=creator_email,
        created_at=instance.created_at,
        updated_at=instance.updated_at,
    )
